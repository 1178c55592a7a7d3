//! Nothing to use: this package holds goctx's tests (`tests/`), benchmarks
//! (`benches/`) and the examples that need a database (`examples/`).
//!
//! Its library only compiles the Rust blocks of `docs/http.md` as
//! doctests, here because they need this package's dependencies (a tonic
//! server and client, sqlx, OpenTelemetry's SDK): the guide cannot drift
//! from the API.

/// The Rust blocks of `docs/http.md`, compiled (and, unless `no_run`, run).
#[cfg(doctest)]
#[doc = include_str!("../../docs/http.md")]
mod http_guide {}
