//! The client side: outgoing requests carry their context's deadline,
//! trace and request id, and end when the context does.
//!
//! The lifecycle, in ownership terms: the request's [`Ctx`](crate::Ctx)
//! rides in its extensions; [`Propagate::call`] reads it, writes the
//! headers and hands a [`DoneOwned`](crate::future::DoneOwned) of it to
//! the [`PropagateFuture`], which races it with the inner client's future;
//! with the response, the same `DoneOwned` moves into the
//! [`PropagateBody`], which races it with every frame. Whoever holds it
//! when the context ends drops the inner future or body: that drop is
//! what makes hyper close the connection or reset the stream.
//!
//! One concept a file: `layer.rs` (the layer and its settings),
//! `service.rs` (each call checked, its headers written, raced),
//! `outgoing.rs` (the context on a request and the headers written from
//! it), `future.rs` (the response future), `body.rs` (a body raced with
//! its context, both directions), `error.rs`, `reqwest.rs` (the same for
//! reqwest) and `otel.rs` (headers by the global propagator).

mod body;
mod error;
mod future;
mod layer;
#[cfg(feature = "opentelemetry")]
mod otel;
mod outgoing;
#[cfg(feature = "reqwest")]
mod reqwest;
mod service;

pub use body::PropagateBody;
pub use error::PropagateError;
pub use future::PropagateFuture;
pub use layer::PropagateLayer;
pub use outgoing::with_context;
#[cfg(feature = "reqwest")]
pub use reqwest::{ContextRequestBuilder, ContextResponse, RequestBuilderExt};
pub use service::Propagate;
