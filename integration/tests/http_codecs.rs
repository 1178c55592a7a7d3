//! The header codecs of `goctx::http`: `grpc-timeout` (gRPC's spec and
//! grpc-go's decoder, tonic's test vectors) and `connect-timeout-ms`.

use std::time::Duration;

use goctx::http::{
    InvalidTimeout, decode_connect_timeout_ms, decode_grpc_timeout, encode_connect_timeout_ms,
    encode_grpc_timeout,
};
use proptest::prelude::*;

const H: u64 = 3600;

/// tonic's vectors (`grpc_timeout.rs` tests) and a few of grpc-go's.
#[test]
fn grpc_timeout_decodes_the_spec_vectors() {
    let cases = [
        ("3H", Duration::from_secs(3 * H)),
        ("1M", Duration::from_secs(60)),
        ("42S", Duration::from_secs(42)),
        ("13m", Duration::from_millis(13)),
        ("2u", Duration::from_micros(2)),
        ("82n", Duration::from_nanos(82)),
        ("1S", Duration::from_secs(1)),
        ("0S", Duration::ZERO),
        ("00000001S", Duration::from_secs(1)),
        ("99999999H", Duration::from_secs(99_999_999 * H)),
    ];
    for (value, want) in cases {
        assert_eq!(decode_grpc_timeout(value), Ok(want), "{value:?}");
    }
}

#[test]
fn grpc_timeout_rejects_everything_else() {
    let cases = [
        ("82f", InvalidTimeout::Unit),
        ("123456789H", InvalidTimeout::TooLong),
        ("oneH", InvalidTimeout::Digits),
        ("", InvalidTimeout::Empty),
        ("S", InvalidTimeout::Empty),
        ("-1S", InvalidTimeout::Digits),
        ("+1S", InvalidTimeout::Digits),
        ("1.5S", InvalidTimeout::Digits),
        (" 1S", InvalidTimeout::Digits),
        ("1 S", InvalidTimeout::Digits),
        ("5", InvalidTimeout::Unit),
        ("5x", InvalidTimeout::Unit),
        ("1s", InvalidTimeout::Unit),
        ("1h", InvalidTimeout::Unit),
        ("1SS", InvalidTimeout::Digits),
        ("١S", InvalidTimeout::Digits), // a non-ASCII digit
        ("1é", InvalidTimeout::Unit),
    ];
    for (value, want) in cases {
        assert_eq!(decode_grpc_timeout(value), Err(want), "{value:?}");
    }
}

#[test]
fn grpc_timeout_encodes_the_vectors() {
    let cases = [
        (Duration::from_secs(3 * H), "3H"),
        (Duration::from_secs(60), "1M"),
        (Duration::from_secs(42), "42S"),
        (Duration::from_millis(13), "13m"),
        (Duration::from_micros(2), "2u"),
        (Duration::from_nanos(82), "82n"),
        (Duration::from_secs(90), "90S"),
        (Duration::from_millis(1500), "1500m"),
        (Duration::from_nanos(99_999_999), "99999999n"),
        (Duration::from_nanos(100_000_000), "100m"),
        // Not exact within eight digits: rounded down in the finest unit.
        (Duration::from_nanos(123_456_789), "123456u"),
        (Duration::from_nanos(100_000_001), "100000u"),
        (Duration::ZERO, "1n"),
        (Duration::from_secs(99_999_999 * H), "99999999H"),
        (Duration::from_secs(100_000_000 * H), "99999999H"),
        (Duration::MAX, "99999999H"),
    ];
    for (d, want) in cases {
        assert_eq!(encode_grpc_timeout(d), want, "{d:?}");
    }
}

#[test]
fn connect_timeout_ms_decodes_and_encodes() {
    assert_eq!(
        decode_connect_timeout_ms("250"),
        Ok(Duration::from_millis(250))
    );
    assert_eq!(decode_connect_timeout_ms("0"), Ok(Duration::ZERO));
    assert_eq!(
        decode_connect_timeout_ms("9999999999"),
        Ok(Duration::from_millis(9_999_999_999))
    );
    for (value, want) in [
        ("", InvalidTimeout::Empty),
        ("12345678901", InvalidTimeout::TooLong),
        ("1.5", InvalidTimeout::Digits),
        ("-1", InvalidTimeout::Digits),
        ("250ms", InvalidTimeout::Digits),
    ] {
        assert_eq!(decode_connect_timeout_ms(value), Err(want), "{value:?}");
    }
    assert_eq!(encode_connect_timeout_ms(Duration::from_millis(250)), "250");
    assert_eq!(encode_connect_timeout_ms(Duration::from_micros(1999)), "1");
    assert_eq!(encode_connect_timeout_ms(Duration::ZERO), "1");
    assert_eq!(encode_connect_timeout_ms(Duration::MAX), "9999999999");
}

/// The length in nanoseconds of a `grpc-timeout` value's unit.
fn unit_nanos(encoded: &str) -> u128 {
    match encoded.as_bytes().last() {
        Some(b'H') => 3_600_000_000_000,
        Some(b'M') => 60_000_000_000,
        Some(b'S') => 1_000_000_000,
        Some(b'm') => 1_000_000,
        Some(b'u') => 1_000,
        Some(b'n') => 1,
        other => panic!("no unit: {other:?}"),
    }
}

/// Durations up to the largest encodable one, spread over every scale.
fn durations() -> impl Strategy<Value = Duration> {
    prop_oneof![
        (0u64..1_000_000_000).prop_map(Duration::from_nanos),
        (0u64..10_000_000_000_000).prop_map(Duration::from_nanos),
        (0u64..99_999_999 * H, 0u32..1_000_000_000).prop_map(|(s, n)| Duration::new(s, n)),
        // Exact multiples of each unit.
        (0u64..100_000_000, 0usize..6).prop_map(|(v, u)| {
            let unit = [
                3_600_000_000_000u128,
                60_000_000_000,
                1_000_000_000,
                1_000_000,
                1_000,
                1,
            ][u];
            let nanos = (u128::from(v) * unit).min(99_999_999 * 3_600_000_000_000);
            Duration::from_nanos(nanos as u64)
        }),
    ]
}

proptest! {
    /// Never 0, at most eight digits, a value the decoder accepts, never
    /// more than the input, less than one unit below it, and exact when
    /// some unit expresses the input exactly in eight digits.
    #[test]
    fn grpc_timeout_round_trip(d in durations()) {
        let encoded = encode_grpc_timeout(d);
        let digits = &encoded[..encoded.len() - 1];
        prop_assert!(digits.len() <= 8, "{encoded}");
        prop_assert!(digits.bytes().any(|b| b != b'0'), "zero: {encoded}");
        let back = decode_grpc_timeout(&encoded).expect("decodes");
        prop_assert!(back > Duration::ZERO);
        let nanos = d.as_nanos();
        if nanos == 0 {
            prop_assert_eq!(encoded.as_str(), "1n");
            return Ok(());
        }
        prop_assert!(back <= d, "{d:?} -> {encoded} -> {back:?}");
        prop_assert!(nanos - back.as_nanos() < unit_nanos(&encoded), "{d:?} -> {encoded}");
        let exact_fits = [3_600_000_000_000u128, 60_000_000_000, 1_000_000_000, 1_000_000, 1_000, 1]
            .iter()
            .any(|u| nanos.is_multiple_of(*u) && nanos / u <= 99_999_999);
        if exact_fits {
            prop_assert_eq!(back, d, "{}", encoded);
        }
    }

    /// Whatever the decoder accepts re-encodes to the same duration.
    #[test]
    fn grpc_timeout_decode_then_encode(v in 0u64..100_000_000, unit in "[HMSmun]") {
        let d = decode_grpc_timeout(&format!("{v}{unit}")).expect("valid");
        if !d.is_zero() {
            prop_assert_eq!(decode_grpc_timeout(&encode_grpc_timeout(d)), Ok(d));
        }
    }

    /// Arbitrary strings never panic the decoders.
    #[test]
    fn decoders_never_panic(s in "\\PC{0,12}") {
        let _ = decode_grpc_timeout(&s);
        let _ = decode_connect_timeout_ms(&s);
    }
}

mod trace_context {
    use goctx::http::{RequestId, TraceContext};
    use http::{HeaderMap, HeaderValue};

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn parses_and_formats_the_spec_example() {
        let t = TraceContext::parse(VALID, None).expect("valid");
        assert_eq!(t.traceparent(), VALID);
        assert_eq!(t.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(t.flags(), 1);
        // A later version may carry more fields; the first four are read.
        let v2 = "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the-future-will-be";
        assert_eq!(
            TraceContext::parse(v2, None)
                .map(|t| t.traceparent())
                .as_deref(),
            Some(VALID)
        );
        // Unknown flag bits are cleared; the random bit is kept.
        let flags = TraceContext::parse(&VALID.replace("-01", "-ff"), None).expect("valid");
        assert_eq!(flags.flags(), 0x03);
    }

    /// OpenTelemetry's `extract_data_invalid` corpus, plus the spec's
    /// forbidden version; each starts a new trace.
    #[test]
    fn invalid_traceparents_start_a_new_trace() {
        let invalid = [
            "",
            "garbage",
            "00-ab00000000000000000000000000000000-cd00000000000000-01",
            "00-ab000000000000000000000000000000-cd0000000000000000-01",
            "00-ab000000000000000000000000000000-cd00000000000000-0100",
            "00-ab000000000000000000000000000000-cd00000000000000",
            "00-ab000000000000000000000000000000-cd00000000000000-",
            "00-qw000000000000000000000000000000-cd00000000000000-01",
            "00-ab000000000000000000000000000000-qw00000000000000-01",
            "00-ab000000000000000000000000000000-cd00000000000000-qw",
            "00-AB000000000000000000000000000000-cd00000000000000-01",
            "00-ab000000000000000000000000000000-CD00000000000000-01",
            "00-00000000000000000000000000000000-cd00000000000000-01",
            "00-ab000000000000000000000000000000-0000000000000000-01",
            "ff-ab000000000000000000000000000000-cd00000000000000-01",
            "0-ab000000000000000000000000000000-cd00000000000000-01",
            "00_ab000000000000000000000000000000-cd00000000000000-01",
            "cc-ab000000000000000000000000000000-cd00000000000000-01x",
        ];
        for value in invalid {
            assert_eq!(TraceContext::parse(value, None), None, "{value:?}");
            let mut headers = HeaderMap::new();
            if let Ok(v) = HeaderValue::from_str(value) {
                headers.insert("traceparent", v);
            }
            headers.insert("tracestate", HeaderValue::from_static("a=b"));
            let fresh = TraceContext::from_headers(&headers);
            assert_eq!(fresh.parent_span_id(), None, "{value:?}");
            assert_eq!(
                fresh.tracestate(),
                None,
                "tracestate dropped with the trace"
            );
            assert_ne!(fresh.trace_id_hex(), "ab000000000000000000000000000000");
        }
    }

    #[test]
    fn continued_trace_keeps_id_flags_and_tracestate() {
        let mut headers = HeaderMap::new();
        headers.insert("TraceParent", HeaderValue::from_static(VALID));
        headers.append("tracestate", HeaderValue::from_static("congo=t61rcWkgMzE"));
        headers.append(
            "tracestate",
            HeaderValue::from_static("rojo=00f067aa0ba902b7"),
        );
        let t = TraceContext::from_headers(&headers);
        assert_eq!(t.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(
            t.parent_span_id(),
            Some([0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7])
        );
        assert!(t.sampled());
        assert_eq!(
            t.tracestate(),
            Some("congo=t61rcWkgMzE,rojo=00f067aa0ba902b7")
        );
        let mut out = HeaderMap::new();
        t.insert_into(&mut out);
        assert_eq!(out["traceparent"], t.traceparent().as_str());
        assert_eq!(out["tracestate"], "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7");

        // Two traceparent lines: invalid.
        headers.append("traceparent", HeaderValue::from_static(VALID));
        assert_eq!(TraceContext::from_headers(&headers).parent_span_id(), None);
    }

    #[test]
    fn long_tracestate_is_cut_at_whole_entries() {
        let long = format!("big={}", "x".repeat(200));
        let entries: Vec<String> = (0..40).map(|i| format!("k{i}=v{i}")).collect();
        let state = format!("{long},{}", entries.join(","));
        let t = TraceContext::parse(VALID, Some(&state)).expect("valid");
        let kept = t.tracestate().expect("kept");
        assert!(!kept.contains("big="), "long entries go first");
        assert_eq!(kept.split(',').count(), 32);
        assert!(kept.len() <= 512);
        assert!(kept.split(',').all(|e| entries.contains(&e.to_owned())));
    }

    #[test]
    fn new_ids_are_unique_and_well_formed() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..10_000 {
            let t = TraceContext::new_root();
            assert!(TraceContext::parse(&t.traceparent(), None).is_some());
            assert!(seen.insert(t.trace_id()));
            let id = RequestId::generate();
            assert_eq!(id.as_str().len(), 32);
            assert!(seen.insert({
                let mut b = [0u8; 16];
                b.copy_from_slice(&id.as_str().as_bytes()[..16]);
                b
            }));
        }
    }

    #[test]
    fn request_id_rules() {
        let max = "a".repeat(128);
        for ok in ["r", "req-1", "~!#", max.as_str()] {
            assert_eq!(
                RequestId::parse(ok).as_ref().map(RequestId::as_str),
                Some(ok)
            );
        }
        let too_long = "a".repeat(129);
        for bad in ["", " ", "a b", "tab\t", "é", too_long.as_str()] {
            assert_eq!(RequestId::parse(bad), None, "{bad:?}");
        }
        let mut headers = HeaderMap::new();
        headers.insert("x-request-id", HeaderValue::from_static("abc-123"));
        assert_eq!(RequestId::from_headers(&headers).as_str(), "abc-123");
        headers.insert(
            "x-request-id",
            HeaderValue::from_str(&too_long).expect("header"),
        );
        assert_ne!(RequestId::from_headers(&headers).as_str(), too_long);
    }

    /// Every public type of `goctx::http` can cross threads (the layer's
    /// service is cloned per connection; contexts hold the values).
    #[test]
    fn public_types_are_send_sync() {
        fn send_sync<T: Send + Sync + 'static>() {}
        send_sync::<TraceContext>();
        send_sync::<RequestId>();
        send_sync::<goctx::http::PeerAddr>();
        send_sync::<goctx::http::RequestAbandoned>();
        send_sync::<goctx::http::ResponseComplete>();
        send_sync::<goctx::http::InvalidTimeout>();
        send_sync::<goctx::http::RequestContextLayer>();
        send_sync::<goctx::http::RequestContext<()>>();
        fn send<T: Send + Unpin>() {}
        send::<goctx::http::RequestContextFuture<std::future::Ready<()>>>();
        send::<goctx::http::RequestContextBody<http_body_util::Empty<axum::body::Bytes>>>();
    }
}
