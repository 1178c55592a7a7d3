//! `signal_context`: a context that ends when the process is asked to
//! stop, with a cause that names the signal.

use std::fmt;

use crate::cancel::{CancelFunc, with_cancel_cause};
use crate::context::Ctx;
use crate::merge::merge;

/// A signal that asks the process to stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Signal {
    /// `SIGINT`: Ctrl+C in a terminal (on Windows, Ctrl+C).
    Interrupt,
    /// `SIGTERM`: what service managers and `kill` send (Unix only).
    Terminate,
}

impl Signal {
    /// The signal's conventional name: `"SIGINT"`, `"SIGTERM"`.
    pub fn name(self) -> &'static str {
        match self {
            Signal::Interrupt => "SIGINT",
            Signal::Terminate => "SIGTERM",
        }
    }

    /// The exit status a shell reports for a process this signal killed:
    /// 128 + its number (130 for `SIGINT`, 143 for `SIGTERM`).
    pub fn exit_code(self) -> i32 {
        match self {
            Signal::Interrupt => 130,
            Signal::Terminate => 143,
        }
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The cause of a [`signal_context`] ended by a signal.
///
/// Go's `signal.NotifyContext` ends its context with plain `Canceled` and
/// no cause (golang/go#60756); this one says which signal it was.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
#[error("context canceled: received {signal}")]
pub struct SignalReceived {
    signal: Signal,
}

impl SignalReceived {
    /// The signal that was received.
    pub fn signal(&self) -> Signal {
        self.signal
    }
}

/// A child of `parent` that ends when the process receives `SIGINT` or
/// `SIGTERM` (on Windows: Ctrl+C), with [`SignalReceived`] as its cause;
/// or, like any child, when `parent` ends or the returned [`CancelFunc`]
/// is called or dropped. Go: `signal.NotifyContext(parent, os.Interrupt,
/// syscall.SIGTERM)`, whose `stop` is the `CancelFunc` here.
///
/// The signals are listened for from this call on, by a task spawned on
/// the current runtime that ends when the context does. As with every
/// tokio signal listener, the process's default reaction to these signals
/// (terminating) does not come back afterwards, even once the context
/// ended: to exit on a second Ctrl+C, listen for it (see the example).
///
/// # Panics
///
/// Outside a tokio runtime with its I/O driver enabled
/// (`Builder::enable_io`, included in `#[tokio::main]`), as
/// `tokio::signal` does. If the operating system refuses the listener,
/// the context is born canceled with that error as its cause.
///
/// # Examples
///
/// ```no_run
/// # #[tokio::main]
/// # async fn main() {
/// let (ctx, _stop) = goctx::tokio::signal_context(&goctx::background());
/// // ... serve until a signal arrives ...
/// ctx.done().await;
/// let cause = ctx.cause().expect("done");
/// if let Some(received) = cause.downcast_ref::<goctx::tokio::SignalReceived>() {
///     eprintln!("{}: shutting down (again to quit at once)", received.signal());
///     let signal = received.signal();
///     tokio::spawn(async move {
///         // The second signal: exit now, as a shell expects.
///         let (again, _stop) = goctx::tokio::signal_context(&goctx::background());
///         again.done().await;
///         std::process::exit(signal.exit_code());
///     });
/// }
/// // ... drain, then return ...
/// # }
/// ```
#[doc(alias = "NotifyContext")]
pub fn signal_context(parent: &Ctx) -> (Ctx, CancelFunc) {
    // The signal's own context, canceled only by the listener task; the
    // caller's context is done when either it or `parent` is.
    let (signaled, on_signal) = with_cancel_cause(&crate::background());
    let (ctx, stop) = merge(parent, &signaled);
    match Listener::new() {
        Ok(listener) => {
            let watched = ctx.clone();
            ::tokio::spawn(async move {
                // Ends with the context, whatever ended it: the listener
                // (and this task's hold on the context) go with it.
                if let Ok(signal) = watched.run(listener.recv()).await {
                    on_signal.cancel_with_cause(SignalReceived { signal });
                }
            });
        }
        Err(err) => on_signal.cancel_with_cause(err),
    }
    (ctx, stop)
}

/// The registered listeners.
struct Listener {
    #[cfg(unix)]
    interrupt: ::tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: ::tokio::signal::unix::Signal,
}

impl Listener {
    #[cfg(unix)]
    fn new() -> std::io::Result<Listener> {
        use ::tokio::signal::unix::{SignalKind, signal};
        Ok(Listener {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
        })
    }

    #[cfg(not(unix))]
    fn new() -> std::io::Result<Listener> {
        Ok(Listener {})
    }

    /// The next signal. (A listener whose stream ended, which tokio does
    /// not do while the runtime lives, waits forever: the context still
    /// ends with its parent or its `CancelFunc`.)
    #[cfg(unix)]
    async fn recv(mut self) -> Signal {
        std::future::poll_fn(|cx| {
            if let std::task::Poll::Ready(Some(())) = self.interrupt.poll_recv(cx) {
                return std::task::Poll::Ready(Signal::Interrupt);
            }
            if let std::task::Poll::Ready(Some(())) = self.terminate.poll_recv(cx) {
                return std::task::Poll::Ready(Signal::Terminate);
            }
            std::task::Poll::Pending
        })
        .await
    }

    #[cfg(not(unix))]
    async fn recv(self) -> Signal {
        match ::tokio::signal::ctrl_c().await {
            Ok(()) => Signal::Interrupt,
            Err(_) => std::future::pending().await,
        }
    }
}
