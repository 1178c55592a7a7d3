//! `goctx::propagation`: a context written into a carrier and read back
//! (issue 19): every field through `HashMap` and (feature `http`)
//! `HeaderMap`, both deadline forms, the clamp, malformed input, and a
//! property test of the round trip.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use goctx::propagation::{
    Carrier, DeadlineForm, Propagated, Propagator, RequestId, TraceContext, extract, inject, keys,
};
use goctx::{Ctx, Error, background, with_timeout, with_value};
use proptest::prelude::*;

#[derive(Clone, Debug, PartialEq)]
struct Tenant(String);

impl Propagated for Tenant {
    const KEY: &'static str = "x-tenant";
    fn encode(&self) -> String {
        self.0.clone()
    }
    fn decode(text: &str) -> Option<Self> {
        let ok = (1..=64).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_alphanumeric());
        ok.then(|| Tenant(text.to_owned()))
    }
}

#[derive(Clone, Debug, PartialEq)]
struct Priority(u8);

impl Propagated for Priority {
    const KEY: &'static str = "x-priority";
    fn encode(&self) -> String {
        self.0.to_string()
    }
    fn decode(text: &str) -> Option<Self> {
        text.parse().ok().map(Priority)
    }
}

/// A caller's context: a deadline `left` from now, a trace, an id and a
/// tenant.
fn caller(left: Duration) -> (Ctx, goctx::CancelFunc) {
    let (ctx, cancel) = with_timeout(&background(), left);
    let ctx = with_value(&ctx, TraceContext::new_root());
    let ctx = with_value(&ctx, RequestId::parse("req-7").unwrap());
    (with_value(&ctx, Tenant("acme".into())), cancel)
}

fn map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[test]
fn every_field_round_trips_through_a_map() {
    let propagator = Propagator::new().value::<Tenant>();
    let (ctx, _cancel) = caller(Duration::from_secs(30));
    let mut carrier = HashMap::new();
    let before = Instant::now();
    propagator.inject(&ctx, &mut carrier);
    let (remote, _cancel) = propagator.extract(&background(), &carrier);
    let after = Instant::now();

    let (ours, theirs) = (
        ctx.value::<TraceContext>().unwrap(),
        remote.value::<TraceContext>().unwrap(),
    );
    assert_eq!(theirs.trace_id(), ours.trace_id());
    assert_eq!(theirs.parent_span_id(), Some(ours.span_id()));
    assert_ne!(theirs.span_id(), ours.span_id(), "a new span for the hop");
    assert_eq!(remote.value::<RequestId>().unwrap().as_str(), "req-7");
    assert_eq!(remote.value::<Tenant>(), Some(&Tenant("acme".into())));
    // Relative: the callee's deadline is its time of reading plus what
    // was left at writing, rounded down; never more than the transit.
    let deadline = remote.deadline().unwrap();
    assert!(deadline <= ctx.deadline().unwrap() + (after - before));
    assert!(deadline + Duration::from_secs(1) > ctx.deadline().unwrap());
    assert_eq!(remote.err(), None);
    // Only what was asked for is written.
    let mut written: Vec<&str> = carrier.keys().map(String::as_str).collect();
    written.sort_unstable();
    assert_eq!(
        written,
        ["grpc-timeout", "traceparent", "x-request-id", "x-tenant"]
    );
}

#[test]
fn the_free_functions_use_the_default_settings() {
    let (ctx, _cancel) = caller(Duration::from_secs(5));
    let mut carrier = HashMap::new();
    inject(&ctx, &mut carrier);
    assert!(
        !carrier.contains_key("x-tenant"),
        "values are opted in, not carried by default"
    );
    let (remote, _cancel) = extract(&background(), &carrier, &Propagator::new());
    assert_eq!(remote.value::<RequestId>().unwrap().as_str(), "req-7");
    assert!(remote.value::<Tenant>().is_none());
    assert!(remote.deadline().is_some());
}

#[test]
fn absolute_deadline_is_never_later_and_counts_time_in_the_queue() {
    let propagator = Propagator::new().deadline_form(DeadlineForm::Absolute);
    let (ctx, _cancel) = caller(Duration::from_millis(1500));
    let mut carrier = HashMap::new();
    propagator.inject(&ctx, &mut carrier);
    assert!(!carrier.contains_key(keys::GRPC_TIMEOUT));
    let at: u128 = carrier[keys::DEADLINE].parse().unwrap();
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis();
    assert!(
        (1000..=1500).contains(&(at - now_ms)),
        "{at} vs now {now_ms}"
    );
    let (remote, _cancel) = propagator.extract(&background(), &carrier);
    assert!(remote.deadline().unwrap() <= ctx.deadline().unwrap());
    assert!(remote.deadline().unwrap() + Duration::from_millis(50) > ctx.deadline().unwrap());
}

#[test]
fn a_deadline_that_passed_in_the_queue_is_born_deadline_exceeded() {
    let past_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis()
        - 5;
    let carrier = map(&[(keys::DEADLINE, &past_ms.to_string())]);
    let (remote, _cancel) = extract(&background(), &carrier, &Propagator::new());
    assert_eq!(remote.err(), Some(Error::DeadlineExceeded));
    // So is a relative one of zero.
    let carrier = map(&[(keys::GRPC_TIMEOUT, "0n")]);
    let (remote, _cancel) = extract(&background(), &carrier, &Propagator::new());
    assert_eq!(remote.err(), Some(Error::DeadlineExceeded));
}

#[test]
fn the_soonest_deadline_wins_and_max_timeout_caps_it() {
    let propagator = Propagator::new().max_timeout(Duration::from_secs(10));
    let far_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis()
        + 3_600_000;
    let cases = [
        // (carrier, expected time left, about)
        (map(&[(keys::GRPC_TIMEOUT, "3S")]), Duration::from_secs(3)),
        (map(&[(keys::GRPC_TIMEOUT, "1H")]), Duration::from_secs(10)),
        (
            map(&[(keys::DEADLINE, &far_ms.to_string())]),
            Duration::from_secs(10),
        ),
        (
            map(&[
                (keys::GRPC_TIMEOUT, "5S"),
                (keys::CONNECT_TIMEOUT_MS, "2000"),
            ]),
            Duration::from_secs(2),
        ),
        (map(&[]), Duration::from_secs(10)),
    ];
    for (carrier, expected) in cases {
        let (remote, _cancel) = propagator.extract(&background(), &carrier);
        // Measured after: the deadline was set from an earlier `now`.
        let left = remote.deadline().unwrap() - Instant::now();
        assert!(
            left <= expected && left + Duration::from_secs(1) > expected,
            "{carrier:?}: {left:?} left, expected about {expected:?}"
        );
    }
    // Without a cap, no deadline in, none out.
    let (remote, _cancel) = extract(&background(), &map(&[]), &Propagator::new());
    assert_eq!(remote.deadline(), None);
}

#[test]
fn malformed_fields_are_left_out_and_never_panic() {
    let propagator = Propagator::new().value::<Tenant>().value::<Priority>();
    let garbage = [
        "",
        " ",
        "-",
        "00",
        "\u{1F6A8}",
        "99999999999999999999999999",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "1e3",
        "-5",
        "5s",
        "123456789S",
        "has space",
        &"x".repeat(10_000),
    ];
    let all_keys = [
        keys::TRACEPARENT,
        keys::TRACESTATE,
        keys::REQUEST_ID,
        keys::GRPC_TIMEOUT,
        keys::CONNECT_TIMEOUT_MS,
        keys::DEADLINE,
        Tenant::KEY,
        Priority::KEY,
    ];
    for bad in garbage {
        let carrier: HashMap<String, String> = all_keys
            .iter()
            .map(|k| ((*k).to_owned(), bad.to_owned()))
            .collect();
        let (remote, _cancel) = propagator.extract(&background(), &carrier);
        // The context is made; each bad field is as if absent.
        let id = remote.value::<RequestId>().unwrap();
        if bad.len() > 128 || bad.is_empty() || bad.contains(' ') || !bad.is_ascii() {
            assert_eq!(id.as_str().len(), 32, "{bad:?}: a made id");
        }
        assert_eq!(
            remote.value::<TraceContext>().unwrap().parent_span_id(),
            None,
            "{bad:?}: a new trace"
        );
        assert!(
            remote.value::<Tenant>().is_none() || bad.bytes().all(|b| b.is_ascii_alphanumeric())
        );
        if remote.deadline().is_some() {
            // Only the digit strings are deadlines (absolute or Connect's).
            assert!(bad.bytes().all(|b| b.is_ascii_digit()), "{bad:?}");
        }
    }
    // A deadline too far for an `Instant` is no deadline, not a panic.
    let carrier = map(&[(keys::DEADLINE, "9999999999999999")]);
    let (remote, _cancel) = extract(&background(), &carrier, &Propagator::new());
    assert!(remote.err().is_none());
}

#[test]
fn restart_trace_ignores_the_callers_trace_but_keeps_the_id() {
    let (ctx, _cancel) = caller(Duration::from_secs(5));
    let mut carrier = HashMap::new();
    inject(&ctx, &mut carrier);
    let (remote, _cancel) = Propagator::new()
        .restart_trace(true)
        .extract(&background(), &carrier);
    let trace = remote.value::<TraceContext>().unwrap();
    assert_ne!(
        trace.trace_id(),
        ctx.value::<TraceContext>().unwrap().trace_id()
    );
    assert_eq!(trace.parent_span_id(), None);
    assert_eq!(remote.value::<RequestId>().unwrap().as_str(), "req-7");
}

#[test]
fn a_missing_id_is_made_on_first_read_and_then_kept() {
    let (remote, _cancel) = extract(&background(), &map(&[]), &Propagator::new());
    let first = remote.value::<RequestId>().unwrap().clone();
    assert_eq!(first.as_str().len(), 32);
    assert_eq!(remote.value::<RequestId>(), Some(&first));
    // Written out as it was read.
    let mut carrier = HashMap::new();
    inject(&remote, &mut carrier);
    assert_eq!(carrier[keys::REQUEST_ID], first.as_str());
}

#[test]
fn the_extracted_context_ends_with_its_base_and_its_cancel() {
    let (base, stop) = goctx::with_cancel(&background());
    let (remote, cancel) = extract(&base, &map(&[]), &Propagator::new());
    let (other, _cancel) = extract(&base, &map(&[]), &Propagator::new());
    cancel.cancel();
    assert_eq!(remote.err(), Some(Error::Canceled));
    assert_eq!(other.err(), None);
    stop.cancel();
    assert_eq!(other.err(), Some(Error::Canceled));
}

#[test]
fn a_carrier_of_ones_own() {
    /// Keys kept in the order written, as a message's headers might be.
    #[derive(Default)]
    struct Pairs(Vec<(String, String)>);
    impl Carrier for Pairs {
        fn get(&self, key: &str) -> Option<&str> {
            self.0
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
        }
        fn set(&mut self, key: &str, value: String) {
            self.0.retain(|(k, _)| k != key);
            self.0.push((key.to_owned(), value));
        }
        fn keys(&self) -> Vec<&str> {
            self.0.iter().map(|(k, _)| k.as_str()).collect()
        }
    }
    let (ctx, _cancel) = caller(Duration::from_secs(5));
    let mut pairs = Pairs::default();
    inject(&ctx, &mut pairs);
    inject(&ctx, &mut pairs); // replaces, does not repeat
    assert_eq!(pairs.keys().len(), 3);
    // Through `&mut dyn Carrier` too.
    let dynamic: &mut dyn Carrier = &mut pairs;
    inject(&ctx, dynamic);
    let (remote, _cancel) = extract(&background(), &pairs, &Propagator::new());
    assert_eq!(remote.value::<RequestId>().unwrap().as_str(), "req-7");
}

#[test]
#[should_panic(expected = "use lowercase letters, digits and '-'")]
fn a_key_a_carrier_would_change_is_refused_where_it_is_registered() {
    #[derive(Clone)]
    struct Shouty;
    impl Propagated for Shouty {
        const KEY: &'static str = "X-Shouty";
        fn encode(&self) -> String {
            String::new()
        }
        fn decode(_: &str) -> Option<Self> {
            Some(Shouty)
        }
    }
    let _ = Propagator::new().value::<Shouty>();
}

#[test]
fn a_propagator_is_debug_and_lists_its_values() {
    let p = Propagator::new().value::<Tenant>().value::<Tenant>();
    let text = format!("{p:?}");
    assert!(text.contains("x-tenant"), "{text}");
    assert_eq!(text.matches("x-tenant").count(), 1, "added once: {text}");
}

proptest! {
    // extract(inject(ctx)) keeps the deadline (absolute form: never
    // later; relative: never later than the time between the two calls),
    // the trace, the request id and the opted-in values.
    #[test]
    fn extract_of_inject_keeps_what_it_carries(
        left_ms in 1u64..86_400_000,
        absolute in any::<bool>(),
        id in "[!-~]{1,128}",
        tenant in proptest::option::of("[a-zA-Z0-9]{1,64}"),
        priority in proptest::option::of(any::<u8>()),
        sampled in any::<bool>(),
    ) {
        let propagator = Propagator::new()
            .deadline_form(if absolute { DeadlineForm::Absolute } else { DeadlineForm::Relative })
            .value::<Tenant>()
            .value::<Priority>();
        let (ctx, _cancel) = with_timeout(&background(), Duration::from_millis(left_ms));
        let flags = if sampled { "01" } else { "00" };
        let parent = format!("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-{flags}");
        let trace = TraceContext::parse(&parent, Some("k=v")).unwrap().child();
        let mut ctx = with_value(&ctx, trace.clone());
        ctx = with_value(&ctx, RequestId::parse(&id).unwrap());
        if let Some(t) = &tenant { ctx = with_value(&ctx, Tenant(t.clone())); }
        if let Some(p) = priority { ctx = with_value(&ctx, Priority(p)); }

        let mut carrier = HashMap::new();
        let before = Instant::now();
        propagator.inject(&ctx, &mut carrier);
        let (remote, _cancel) = propagator.extract(&background(), &carrier);
        let transit = before.elapsed();

        let (sent, got) = (ctx.deadline().unwrap(), remote.deadline().unwrap());
        if absolute {
            prop_assert!(got <= sent, "later by {:?}", got - sent);
        } else {
            prop_assert!(got <= sent + transit, "later by {:?}", got - sent);
        }
        prop_assert!(got + Duration::from_secs(1) > sent, "early by {:?}", sent - got);
        let theirs = remote.value::<TraceContext>().unwrap();
        prop_assert_eq!(theirs.trace_id(), trace.trace_id());
        prop_assert_eq!(theirs.parent_span_id(), Some(trace.span_id()));
        prop_assert_eq!(theirs.sampled(), sampled);
        prop_assert_eq!(theirs.tracestate(), Some("k=v"));
        prop_assert_eq!(remote.value::<RequestId>().unwrap().as_str(), id.as_str());
        prop_assert_eq!(remote.value::<Tenant>().map(|t| t.0.clone()), tenant);
        prop_assert_eq!(remote.value::<Priority>().map(|p| p.0), priority);
    }
}

mod over_http_headers {
    use super::*;
    use http::{HeaderMap, HeaderValue};

    #[test]
    fn every_field_round_trips_through_a_header_map() {
        let propagator = Propagator::new().value::<Tenant>();
        let (ctx, _cancel) = caller(Duration::from_secs(30));
        let mut headers = HeaderMap::new();
        propagator.inject(&ctx, &mut headers);
        assert_eq!(headers["x-request-id"], "req-7");
        assert_eq!(headers["x-tenant"], "acme");
        let (remote, _cancel) = propagator.extract(&background(), &headers);
        assert_eq!(remote.value::<RequestId>().unwrap().as_str(), "req-7");
        assert_eq!(remote.value::<Tenant>(), Some(&Tenant("acme".into())));
        assert_eq!(
            remote.value::<TraceContext>().unwrap().trace_id(),
            ctx.value::<TraceContext>().unwrap().trace_id()
        );
        assert!(remote.deadline().is_some());
    }

    #[test]
    fn header_names_match_in_any_case_and_bad_values_are_skipped() {
        let mut headers = HeaderMap::new();
        headers.insert("X-Request-Id", HeaderValue::from_static("abc"));
        headers.insert(
            "Traceparent",
            HeaderValue::from_bytes(b"00-\xff").unwrap(), // not text: ignored
        );
        assert_eq!(Carrier::get(&headers, "x-request-id"), Some("abc"));
        let (remote, _cancel) = extract(&background(), &headers, &Propagator::new());
        assert_eq!(remote.value::<RequestId>().unwrap().as_str(), "abc");
        assert_eq!(
            remote.value::<TraceContext>().unwrap().parent_span_id(),
            None
        );
        // A value that cannot be a header is not written, and no panic.
        let mut headers = HeaderMap::new();
        Carrier::set(&mut headers, "x-tenant", "line\nbreak".to_owned());
        Carrier::set(&mut headers, "bad name", "v".to_owned());
        assert!(headers.is_empty());
    }

    // As the server layer reads them: a repeated `traceparent` is invalid
    // (a new trace), repeated `tracestate` lines are joined.
    #[test]
    fn repeated_trace_headers_are_read_as_the_layer_reads_them() {
        let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let mut headers = HeaderMap::new();
        headers.append("traceparent", HeaderValue::from_static(parent));
        headers.append("tracestate", HeaderValue::from_static("a=1"));
        headers.append("tracestate", HeaderValue::from_static("b=2"));
        let (remote, _cancel) = extract(&background(), &headers, &Propagator::new());
        let trace = remote.value::<TraceContext>().unwrap();
        assert_eq!(trace.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(trace.tracestate(), Some("a=1,b=2"));
        headers.append("traceparent", HeaderValue::from_static(parent));
        let (remote, _cancel) = extract(&background(), &headers, &Propagator::new());
        assert_eq!(
            remote.value::<TraceContext>().unwrap().parent_span_id(),
            None,
            "two traceparent lines: a new trace"
        );
    }

    // What `inject` writes, the server layer reads: the same trace, id and
    // deadline reach the handler's context.
    #[tokio::test]
    async fn the_server_layer_reads_what_inject_writes() {
        use tower::{Service, ServiceExt};
        let (ctx, _cancel) = caller(Duration::from_secs(30));
        let mut request = http::Request::new(String::new());
        inject(&ctx, request.headers_mut());
        let (seen_tx, seen_rx) = std::sync::mpsc::channel();
        let layer = goctx::http::RequestContextLayer::new(&background());
        let mut service = tower::Layer::layer(
            &layer,
            tower::service_fn(
                move |req: http::Request<goctx::http::RequestBody<String>>| {
                    let ctx = req.extensions().get::<Ctx>().unwrap().clone();
                    seen_tx.send(ctx).unwrap();
                    async { Ok::<_, std::convert::Infallible>(http::Response::new(String::new())) }
                },
            ),
        );
        let _response = service.ready().await.unwrap().call(request).await.unwrap();
        let handler = seen_rx.recv().unwrap();
        assert_eq!(handler.value::<RequestId>().unwrap().as_str(), "req-7");
        assert_eq!(
            handler.value::<TraceContext>().unwrap().parent_span_id(),
            Some(ctx.value::<TraceContext>().unwrap().span_id())
        );
        let (sent, got) = (ctx.deadline().unwrap(), handler.deadline().unwrap());
        assert!(got <= sent + Duration::from_millis(500) && got + Duration::from_secs(1) > sent);
    }

    // What the client layer sends, `extract` reads.
    #[tokio::test]
    async fn extract_reads_what_the_client_layer_sends() {
        use tower::{Service, ServiceExt};
        let (ctx, _cancel) = caller(Duration::from_secs(30));
        let (sent_tx, sent_rx) = std::sync::mpsc::channel();
        let mut client = tower::Layer::layer(
            &goctx::http::PropagateLayer::new().grpc_timeout_for_http(true),
            tower::service_fn(
                move |req: http::Request<goctx::http::PropagateBody<String>>| {
                    sent_tx.send(req.headers().clone()).unwrap();
                    async { Ok::<_, std::convert::Infallible>(http::Response::new(String::new())) }
                },
            ),
        );
        let request = goctx::http::with_context(http::Request::new(String::new()), &ctx);
        client.ready().await.unwrap().call(request).await.unwrap();
        let headers = sent_rx.recv().unwrap();
        let (remote, _cancel) = extract(&background(), &headers, &Propagator::new());
        assert_eq!(remote.value::<RequestId>().unwrap().as_str(), "req-7");
        assert_eq!(
            remote.value::<TraceContext>().unwrap().parent_span_id(),
            Some(ctx.value::<TraceContext>().unwrap().span_id())
        );
        assert!(remote.deadline().is_some());
    }
}
