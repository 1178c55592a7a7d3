//! Tasks on NATS JetStream that carry their context (feature `nats`), on
//! the official `async-nats` client.
//!
//! A producer [`publish`]es a task with its context's deadline (absolute:
//! time spent in the stream counts), trace and request id in the message
//! headers (`goctx::propagation`, over NATS headers, which are a
//! [`Carrier`](crate::propagation::Carrier)). A worker [`process`]es each
//! message under the context those headers carry: a task whose deadline
//! passed in the stream never runs; while one runs, its lease is kept by
//! in-progress acks; when it ends, the cause picks the disposition (`Ack`,
//! `Nak` for another worker, `Term`; see [`process`]). A producer that
//! gives up tells the workers with [`cancel_when_done`], and their tasks
//! end with [`CanceledByProducer`].

mod headers;
mod task;

pub use task::{
    CANCEL_SUBJECT, CanceledByProducer, Disposition, Permanent, cancel_when_done, process,
    propagator, publish,
};
