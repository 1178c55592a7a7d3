//! A bounded worker pool: at most `size` jobs run at once.
//!
//! Go's version is N goroutines reading one channel, plus a `WaitGroup`.
//! Here a semaphore holds the N slots and a [`JoinSet`] is the wait group:
//! the dispatcher takes a slot (racing the context, so a canceled run stops
//! dispatching at once), then spawns the job, which gives the slot back
//! when it ends.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::{JoinError, JoinSet};

/// A free slot in the pool, to be handed to [`WorkerPool::spawn`].
pub struct Slot(OwnedSemaphorePermit);

pub struct WorkerPool<T> {
    slots: Arc<Semaphore>,
    running: JoinSet<T>,
}

impl<T: Send + 'static> WorkerPool<T> {
    /// `size` must be at least 1 and at most [`Semaphore::MAX_PERMITS`]
    /// (the CLI checks).
    pub fn new(size: usize) -> Self {
        WorkerPool {
            slots: Arc::new(Semaphore::new(size)),
            running: JoinSet::new(),
        }
    }

    /// Waits for a free slot, or for `ctx` to be done.
    pub async fn ready(&self, ctx: &goctx::Ctx) -> Result<Slot, goctx::Error> {
        match ctx.run(self.slots.clone().acquire_owned()).await? {
            Ok(permit) => Ok(Slot(permit)),
            // The semaphore is never closed; treat it like a cancel anyway.
            Err(_closed) => Err(goctx::Error::Canceled),
        }
    }

    /// Runs `job` on the runtime, holding `slot` until it ends.
    pub fn spawn<F>(&mut self, slot: Slot, job: F)
    where
        F: Future<Output = T> + Send + 'static,
    {
        let Slot(permit) = slot;
        self.running.spawn(async move {
            let output = job.await;
            drop(permit);
            output
        });
    }

    /// Waits for every job (the `WaitGroup.Wait()`), in completion order.
    pub async fn join_all(mut self) -> Vec<Result<T, JoinError>> {
        let mut results = Vec::new();
        while let Some(result) = self.running.join_next().await {
            results.push(result);
        }
        results
    }
}
