//! The cost of `goctx::http::RequestContextLayer` per request: a no-op
//! tower service called directly (`bare`) beside the same service wrapped
//! in the layer (`layer`), for issue 9 ("under 1% throughput loss"; the
//! numbers and the loopback load test are in docs/PERFORMANCE.md).
//!
//! Every iteration is one request's whole life, the same for both rows:
//! build the `http::Request`, `call` the service, poll the response
//! future to its end, poll the response body until it has no more frames
//! (with the layer, that end cancels the request context with
//! `ResponseComplete`), and drop everything. No runtime: the futures are
//! ready at their first poll and are polled by hand with a no-op waker.
//!
//! Groups (`RequestContext/<variant>`), each with `bare` and `layer`:
//! - `empty-body`: an empty response body, no inbound headers;
//! - `full-body`: a 5-byte response body (one data frame), no headers;
//! - `trace-and-id`: inbound `traceparent` and `x-request-id` (parsed,
//!   stored as values) instead of generated ones;
//! - `grpc-timeout`: inbound `grpc-timeout: 5S` (parsed; a deadline, so
//!   the timer wheel is armed and disarmed per request);
//! - `max_timeout`: the layer's own 30 s bound, no header (a deadline per
//!   request, as above);
//! - `opentelemetry` (issue 19): the `trace-and-id` request through the
//!   layer as it is (`layer`), with `.opentelemetry(true)` and
//!   OpenTelemetry's W3C propagator as the global one (`layer, otel`),
//!   and the bare service plus that propagator's `extract` of the same
//!   headers (`bare + propagator`): the OpenTelemetry path should cost the
//!   layer no more than the propagator costs on its own.
//!
//! Run with `cargo bench -p integration --bench http -- --warm-up-time 1
//! --measurement-time 3`.

use std::cell::RefCell;
use std::convert::Infallible;
use std::future::{Future, Ready, ready};
use std::hint::black_box;
use std::pin::pin;
use std::rc::Rc;
use std::task::{Context as TaskContext, Poll, Waker};
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use goctx::http::{GRPC_TIMEOUT, RequestContextLayer, ResponseComplete, TRACEPARENT, X_REQUEST_ID};
use http::{HeaderValue, Request, Response};
use http_body::Body;
use http_body_util::{Empty, Full};
use tower_layer::Layer;
use tower_service::Service;

/// The label of the rows without the layer.
const BARE: &str = "bare";
/// The label of the rows with it.
const LAYER: &str = "layer";

/// The request body: never read, by either service.
type ReqBody = Empty<&'static [u8]>;

/// A service that answers every request at once with `make()`'s body and
/// reads nothing from the request: what is left to measure is the layer.
#[derive(Clone, Copy)]
struct Noop<B>(fn() -> B);

// Any request body: the layer hands on its own wrapper of `ReqBody`.
impl<B, RB> Service<Request<RB>> for Noop<B> {
    type Response = Response<B>;
    type Error = Infallible;
    type Future = Ready<Result<Response<B>, Infallible>>;

    fn poll_ready(&mut self, _: &mut TaskContext<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<RB>) -> Self::Future {
        drop(req);
        ready(Ok(Response::new((self.0)())))
    }
}

fn empty_body() -> Empty<&'static [u8]> {
    Empty::new()
}

fn full_body() -> Full<&'static [u8]> {
    Full::new(&b"hello"[..])
}

/// The inbound headers of a variant (added to every request, bare or not).
#[derive(Clone, Copy)]
enum Inbound {
    None,
    TraceAndId,
    GrpcTimeout,
}

fn request(inbound: Inbound) -> Request<ReqBody> {
    let mut req = Request::new(Empty::new());
    let headers = req.headers_mut();
    match inbound {
        Inbound::None => {}
        Inbound::TraceAndId => {
            headers.insert(
                TRACEPARENT,
                HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
            );
            headers.insert(
                X_REQUEST_ID,
                HeaderValue::from_static("7f3c9a2e-5b1d-4c8e-9f0a-1d2e3f4a5b6c"),
            );
        }
        Inbound::GrpcTimeout => {
            headers.insert(GRPC_TIMEOUT, HeaderValue::from_static("5S"));
        }
    }
    req
}

/// One request's whole life through `svc`: call, poll the response future
/// to its end, poll the body to its end, drop. Panics if anything is not
/// ready at once (a no-op service never makes anything wait).
fn one_request<S, B>(svc: &mut S, inbound: Inbound)
where
    S: Service<Request<ReqBody>, Response = Response<B>, Error = Infallible>,
    B: Body,
{
    let mut cx = TaskContext::from_waker(Waker::noop());
    let Poll::Ready(Ok(())) = svc.poll_ready(&mut cx) else {
        panic!("no-op service not ready");
    };
    let future = svc.call(request(inbound));
    let Poll::Ready(Ok(res)) = pin!(future).poll(&mut cx) else {
        panic!("response future not ready");
    };
    let mut body = pin!(res.into_body());
    loop {
        match body.as_mut().poll_frame(&mut cx) {
            Poll::Ready(Some(frame)) => drop(black_box(frame)),
            Poll::Ready(None) => break,
            Poll::Pending => panic!("response body not ready"),
        }
    }
}

/// One group: `bare` then `layer`, the same requests through each.
fn pair<B: Body>(
    c: &mut Criterion,
    name: &str,
    body: fn() -> B,
    layer: RequestContextLayer,
    inbound: Inbound,
) {
    let mut g = c.benchmark_group(format!("RequestContext/{name}"));
    let mut bare = Noop(body);
    g.bench_function(BARE, |b| b.iter(|| one_request(&mut bare, inbound)));
    let mut wrapped = layer.layer(Noop(body));
    g.bench_function(LAYER, |b| b.iter(|| one_request(&mut wrapped, inbound)));
    g.finish();
}

fn request_context(c: &mut Criterion) {
    let base = goctx::background();
    let plain = || RequestContextLayer::new(&base);
    pair(c, "empty-body", empty_body, plain(), Inbound::None);
    pair(c, "full-body", full_body, plain(), Inbound::None);
    pair(c, "trace-and-id", full_body, plain(), Inbound::TraceAndId);
    pair(c, "grpc-timeout", full_body, plain(), Inbound::GrpcTimeout);
    let bounded = plain().max_timeout(Duration::from_secs(30));
    pair(c, "max_timeout", full_body, bounded, Inbound::None);
    opentelemetry(c);
}

/// The `opentelemetry` group (see the file's comment).
fn opentelemetry(c: &mut Criterion) {
    use opentelemetry::propagation::TextMapPropagator;
    use opentelemetry_sdk::propagation::TraceContextPropagator;
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let inbound = Inbound::TraceAndId;
    let mut g = c.benchmark_group("RequestContext/opentelemetry");
    let base = goctx::background();
    let mut bare = Noop(full_body);
    g.bench_function(BARE, |b| b.iter(|| one_request(&mut bare, inbound)));
    let mut plain = RequestContextLayer::new(&base).layer(Noop(full_body));
    g.bench_function(LAYER, |b| b.iter(|| one_request(&mut plain, inbound)));
    let mut otel = RequestContextLayer::new(&base)
        .opentelemetry(true)
        .layer(Noop(full_body));
    g.bench_function("layer, otel", |b| {
        b.iter(|| one_request(&mut otel, inbound))
    });
    let propagator = TraceContextPropagator::new();
    let mut extracting = ExtractFirst(Noop(full_body), propagator.clone());
    g.bench_function("bare + propagator", |b| {
        b.iter(|| one_request(&mut extracting, inbound))
    });
    g.finish();

    /// The bare service, after the propagator's `extract` of the headers.
    struct ExtractFirst<S>(S, TraceContextPropagator);
    impl<S: Service<Request<RB>>, RB> Service<Request<RB>> for ExtractFirst<S> {
        type Response = S::Response;
        type Error = S::Error;
        type Future = S::Future;
        fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), S::Error>> {
            self.0.poll_ready(cx)
        }
        fn call(&mut self, mut req: Request<RB>) -> S::Future {
            let otel = self
                .1
                .extract(&goctx::opentelemetry::CarrierAdapter(req.headers_mut()));
            black_box(otel);
            self.0.call(req)
        }
    }
}

/// Checks, once and outside the timings, that the `layer` rows measure what
/// they claim: the handler sees a live request context, and polling the
/// body to its end cancels it with `ResponseComplete`.
fn check_lifecycle() {
    #[derive(Clone, Default)]
    struct Capture(Rc<RefCell<Option<goctx::Ctx>>>);
    impl<RB> Service<Request<RB>> for Capture {
        type Response = Response<Full<&'static [u8]>>;
        type Error = Infallible;
        type Future = Ready<Result<Self::Response, Infallible>>;
        fn poll_ready(&mut self, _: &mut TaskContext<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }
        fn call(&mut self, req: Request<RB>) -> Self::Future {
            let ctx = req
                .extensions()
                .get::<goctx::Ctx>()
                .expect("no request context");
            assert_eq!(ctx.err(), None, "request context done before the response");
            *self.0.borrow_mut() = Some(ctx.clone());
            ready(Ok(Response::new(full_body())))
        }
    }
    let seen = Capture::default();
    let mut svc = RequestContextLayer::new(&goctx::background()).layer(seen.clone());
    one_request(&mut svc, Inbound::TraceAndId);
    let ctx = seen.0.borrow_mut().take().expect("handler not called");
    assert_eq!(ctx.err(), Some(goctx::Error::Canceled));
    let cause = ctx.cause().expect("no cause");
    assert!(
        cause.downcast_ref::<ResponseComplete>().is_some(),
        "ended with {cause:?}, not ResponseComplete"
    );
}

fn benches(c: &mut Criterion) {
    check_lifecycle();
    request_context(c);
}

criterion_group!(all, benches);
criterion_main!(all);
