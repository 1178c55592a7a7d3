//! Retry with exponential backoff and jitter, bounded by a context.
//!
//! - The backoff wait races `ctx.done()`: a cancel or a deadline cuts it
//!   short, and the error says which.
//! - No attempt starts once the context is done, so no retry begins after
//!   the deadline.

use std::future::Future;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// How an attempt ended, when it did not succeed.
#[derive(Clone, Debug, PartialEq)]
pub enum TaskError {
    /// The context ended the attempt: canceled or out of time.
    Context(goctx::Error),
    /// The work itself failed; worth another attempt.
    Failed(String),
}

impl From<goctx::Error> for TaskError {
    fn from(err: goctx::Error) -> Self {
        TaskError::Context(err)
    }
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct RetryPolicy {
    /// Attempts after the first one.
    pub max_retries: u32,
    /// The backoff before the first retry (before jitter); doubles after.
    pub base: Duration,
    /// The backoff never grows beyond this (before jitter).
    pub max_delay: Duration,
}

impl RetryPolicy {
    /// The wait before retry number `retry` (1-based): "equal jitter", half
    /// of the exponential step plus a random part of the other half, so
    /// that tasks failing together do not retry in lockstep.
    pub fn delay(&self, retry: u32) -> Duration {
        let factor = 2u32.saturating_pow(retry.saturating_sub(1));
        let step = self.base.saturating_mul(factor).min(self.max_delay);
        let half = step / 2;
        half + half.mul_f64(random_unit())
    }
}

/// A number in [0, 1), different on every call. The standard library's
/// randomly keyed hasher is randomness enough for jitter.
fn random_unit() -> f64 {
    static CALLS: AtomicU64 = AtomicU64::new(0);
    let bits = RandomState::new().hash_one(CALLS.fetch_add(1, Ordering::Relaxed));
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

/// A failed attempt that will be retried after `delay`.
#[derive(Clone, Debug)]
pub struct RetryNotice {
    /// The attempt that failed (1-based).
    pub attempt: u32,
    pub error: String,
    pub delay: Duration,
}

/// What came of all the attempts.
#[derive(Debug)]
pub struct Retried<T> {
    pub result: Result<T, TaskError>,
    /// Attempts started (0 if the context was done before the first).
    pub attempts: u32,
}

/// Runs `attempt(n)` for n = 1, 2, ... until it succeeds, the context ends
/// it, or `policy.max_retries` retries failed too. `on_retry` hears of each
/// failure that will be retried, before the backoff starts.
pub async fn retry<T, F, Fut>(
    ctx: &goctx::Ctx,
    policy: &RetryPolicy,
    mut attempt: F,
    mut on_retry: impl FnMut(RetryNotice),
) -> Retried<T>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<T, TaskError>>,
{
    let mut attempts = 0;
    loop {
        // The deadline may have passed during the backoff.
        if let Some(err) = ctx.err() {
            return Retried {
                result: Err(TaskError::Context(err)),
                attempts,
            };
        }
        attempts += 1;
        let error = match attempt(attempts).await {
            Err(TaskError::Failed(error)) if attempts <= policy.max_retries => error,
            result => return Retried { result, attempts },
        };
        let delay = policy.delay(attempts);
        on_retry(RetryNotice {
            attempt: attempts,
            error,
            delay,
        });
        if let Err(err) = ctx.run(tokio::time::sleep(delay)).await {
            return Retried {
                result: Err(TaskError::Context(err)),
                attempts,
            };
        }
    }
}
