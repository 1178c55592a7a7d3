//! Go's `context` package for Rust: cancellation, deadlines, causes and
//! typed request-scoped values, flowing through async and threaded code.
//!
//! A [`Ctx`] is a cheap handle to a node in a tree. Roots come from
//! [`background()`] (or [`todo()`]); every other context is derived from a
//! parent and ends when its parent does:
//!
//! | Go | goctx |
//! |---|---|
//! | `context.Background()`, `context.TODO()` | [`background()`], [`todo()`] |
//! | `ctx, cancel := context.WithCancel(p)` | `let (ctx, cancel) = `[`with_cancel`]`(&p);` |
//! | `context.WithCancelCause(p)` / `cancel(err)` | [`with_cancel_cause`] / [`CancelFunc::cancel_with_cause`] |
//! | `context.WithDeadline(p, t)`, `WithTimeout(p, d)` | [`with_deadline`], [`with_timeout`] (and `*_cause`) |
//! | `context.WithValue(p, key, v)` / `ctx.Value(key).(T)` | [`with_value`]`(&p, v)` / [`ctx.value::<T>()`](Ctx::value) |
//! | `context.WithoutCancel(p)` | [`without_cancel`] |
//! | `mergeCancel(ctx, other)` (the `AfterFunc` recipe; `Merge` was declined) | `let (ctx, cancel) = `[`merge`]`(&ctx, &other);` |
//! | `stop := context.AfterFunc(ctx, f)` | `let h = `[`after_func`]`(&ctx, f); h.stop()` |
//! | `<-ctx.Done()` | [`ctx.done().await`](Ctx::done) ([`done_owned`](Ctx::done_owned) to move into a task), or [`ctx.wait()`](Ctx::wait) on a plain thread |
//! | `ctx.Err()`, `context.Cause(ctx)`, `ctx.Deadline()` | [`ctx.err()`](Ctx::err), [`ctx.cause()`](Ctx::cause), [`ctx.deadline()`](Ctx::deadline) |
//! | `context.Canceled`, `context.DeadlineExceeded` | [`Error::Canceled`], [`Error::DeadlineExceeded`] |
//! | `defer cancel()` | nothing: dropping the last [`CancelFunc`] cancels |
//!
//! Every observable behaviour follows Go 1.27 (see `docs/go-mapping.md`
//! for the few deliberate differences). Rust adds:
//!
//! - **RAII cancel**: dropping the last clone of a [`CancelFunc`] cancels
//!   its context; [`CancelFunc::detach`] opts out.
//! - **No leaks**: a context whose handles are all gone leaves its parent's
//!   registry and the timer (a pending `after_func` callback counts as a
//!   handle until it starts or is stopped).
//! - **Cheap checks**: [`Ctx::err`] is one atomic load.
//! - **Any runtime, or none**: `done()` is a plain future, [`Ctx::wait`]
//!   blocks a thread, and deadlines are driven by one lazily started helper
//!   thread, not by an async runtime.
//! - **Typed values**: the key is the value's type.
//!
//! # Optional features
//!
//! Off by default (`docs/features.md` says why each exists):
//!
//! - `tokio`: the `goctx::tokio` module (`after_func_async`), and
//!   [`Ctx::wait`] panics instead of hanging on a thread tokio is polling.
//! - `tokio-util`: the `goctx::tokio_util` module, bridges
//!   between [`Ctx`] and tokio-util's `CancellationToken`.
//! - `http`: the `goctx::http` module: a request context per HTTP request
//!   (`RequestContextLayer`, a tower layer for servers), contexts carried
//!   by outgoing calls (`PropagateLayer`, for any tower HTTP client), and
//!   the deadline, trace and request-id header codecs. `docs/http.md` has
//!   the lifecycle, the header rules and the shutdown recipe;
//!   `cargo run -p integration --example http_server` shows it end to end.
//! - `axum` (implies `http`): [`Ctx`] as an axum extractor.
//! - `reqwest` (implies `http`): `.context(&ctx)` on a reqwest request.
//! - `postgres`: `goctx::postgres`, queries on tokio-postgres that the
//!   server stops when the context ends (a CancelRequest), and the
//!   deadline as the transaction's `statement_timeout`.
//! - `rusqlite`: `goctx::rusqlite`, SQLite statements interrupted when the
//!   context ends.
//!
//! [`merge`] (no feature) joins a request context with a server's
//! shutdown context.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//!
//! #[derive(Debug)]
//! struct RequestId(String);
//!
//! async fn fetch(ctx: &goctx::Ctx) -> Result<String, goctx::Error> {
//!     let id = ctx.value::<RequestId>().map_or("-", |id| id.0.as_str()).to_owned();
//!     // Stand-in for real I/O that may take long: it races the context.
//!     ctx.run(async move { format!("[{id}] done") }).await
//! }
//!
//! # futures::executor::block_on(async {
//! let root = goctx::background();
//! let ctx = goctx::with_value(&root, RequestId("req-1".into()));
//! let (ctx, cancel) = goctx::with_timeout(&ctx, Duration::from_secs(5));
//! assert_eq!(fetch(&ctx).await.as_deref(), Ok("[req-1] done"));
//!
//! cancel.cancel();
//! assert_eq!(fetch(&ctx).await, Err(goctx::Error::Canceled));
//! # });
//! ```
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![deny(missing_docs)]
#![warn(missing_debug_implementations, rust_2018_idioms, unreachable_pub)]
#![doc(test(attr(deny(warnings))))]

mod after;
mod cancel;
mod clock;
mod context;
pub mod custom;
mod deadline;
mod done;
mod drained;
mod error;
pub mod group;
#[cfg(feature = "tokio")]
mod may_block;
mod merge;
mod name;
pub mod propagation;
mod spawn;
mod stream;
mod sync;
mod timer;
#[cfg(feature = "tokio")]
mod tokio_clock;
mod tree;
mod value;
mod wheel;

#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub mod http;
#[cfg(feature = "nats")]
#[cfg_attr(docsrs, doc(cfg(feature = "nats")))]
pub mod nats;
#[cfg(feature = "opentelemetry")]
#[cfg_attr(docsrs, doc(cfg(feature = "opentelemetry")))]
pub mod opentelemetry;
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub mod postgres;
#[cfg(feature = "rusqlite")]
#[cfg_attr(docsrs, doc(cfg(feature = "rusqlite")))]
pub mod rusqlite;
#[cfg(feature = "tokio")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
pub mod tokio;
#[cfg(feature = "tokio-util")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio-util")))]
pub mod tokio_util;
#[cfg(feature = "tonic")]
#[cfg_attr(docsrs, doc(cfg(feature = "tonic")))]
pub mod tonic;

pub use after::{AfterFunc, after_func, max_callback_threads, set_max_callback_threads};
pub use cancel::{CancelFunc, with_cancel, with_cancel_cause, without_cancel};
pub use context::{Ctx, background, todo};
pub use deadline::{with_deadline, with_deadline_cause, with_timeout, with_timeout_cause};
pub use error::{CancelFuncDropped, Cause, Error, ExtendError};
pub use merge::merge;
pub use value::with_value;

pub mod future {
    //! The futures (and the stream) a context's methods return, by name: for
    //! a struct field, a `select!` arm kept across loops, or a hand-written
    //! `poll`. Most code only `.await`s them and never names them (tokio and
    //! `futures` keep theirs in a module like this one).
    //!
    //! | method | borrows the context | owns a clone |
    //! |---|---|---|
    //! | [`Ctx::done`](crate::Ctx::done), [`Ctx::done_owned`](crate::Ctx::done_owned) | [`Done`] | [`DoneOwned`] |
    //! | [`Ctx::run`](crate::Ctx::run), [`Ctx::run_owned`](crate::Ctx::run_owned) | [`Run`] | [`RunOwned`] |
    //! | [`Ctx::drained`](crate::Ctx::drained) | | [`Drained`] |
    //! | [`Ctx::stream`](crate::Ctx::stream) | | [`UntilDone`] (a stream) |

    pub use crate::done::{Done, DoneOwned, Run, RunOwned};
    pub use crate::drained::Drained;
    pub use crate::stream::UntilDone;
}

/// The loom models of every known race (`--cfg loom` test builds only).
#[cfg(all(test, loom))]
mod loom_models;

/// The Rust blocks of the README, compiled and run as doctests: the first
/// code a newcomer copies must build.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
mod readme {}
