//! Contexts for HTTP servers: one [`Ctx`](crate::Ctx) per request, ended
//! when the response is complete or the client goes away, plus the header
//! codecs that carry deadlines between services.
//!
//! See `docs/http.md` for the whole story (trust rules, graceful shutdown,
//! what cannot be detected).

mod grpc_timeout;

pub use grpc_timeout::{
    CONNECT_TIMEOUT_MS, GRPC_TIMEOUT, InvalidTimeout, decode_connect_timeout_ms,
    decode_grpc_timeout, encode_connect_timeout_ms, encode_grpc_timeout,
};
