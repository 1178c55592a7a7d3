//! The `http::HeaderMap` forms of [`TraceContext`] and [`RequestId`]:
//! read from a request's headers, written to outgoing ones.

use http::{HeaderMap, HeaderValue};

use super::{TRACEPARENT, TRACESTATE, X_REQUEST_ID};
use crate::propagation::{RequestId, TraceContext};

impl TraceContext {
    /// What the server layer does: a [`child`](TraceContext::child) of
    /// the inbound `traceparent`/`tracestate` if the `traceparent`
    /// [`parse`](TraceContext::parse)s, else a [`new_root`](TraceContext::new_root).
    /// Header names match in any case; more than one `traceparent` line is
    /// invalid.
    ///
    /// See the type's example.
    pub fn from_headers(headers: &HeaderMap) -> TraceContext {
        let mut parents = headers.get_all(TRACEPARENT).iter();
        let single = match (parents.next(), parents.next()) {
            (Some(value), None) => Some(value),
            _ => None,
        };
        TraceContext::from_parent_header(single, headers)
    }

    /// `from_headers`, given the `traceparent` value if there is exactly
    /// one (`tracestate` is read from `headers` only then).
    pub(crate) fn from_parent_header(
        traceparent: Option<&HeaderValue>,
        headers: &HeaderMap,
    ) -> TraceContext {
        TraceContext::remote_from_header(traceparent, headers)
            .map_or_else(TraceContext::new_root, |remote| remote.child())
    }

    /// The caller's trace as the headers carry it (the span id is the
    /// caller's), given the `traceparent` value if there is exactly one.
    pub(crate) fn remote_from_header(
        traceparent: Option<&HeaderValue>,
        headers: &HeaderMap,
    ) -> Option<TraceContext> {
        let traceparent = traceparent?.to_str().ok()?;
        let states: Vec<&str> = headers
            .get_all(TRACESTATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        let state = (!states.is_empty()).then(|| states.join(","));
        TraceContext::parse(traceparent, state.as_deref())
    }

    /// Adds `traceparent` (and `tracestate`, if any) to outgoing headers,
    /// replacing any there.
    ///
    /// # Examples
    ///
    /// ```
    /// let trace = goctx::http::TraceContext::new_root();
    /// let mut headers = http::HeaderMap::new();
    /// trace.insert_into(&mut headers);
    /// assert_eq!(headers["traceparent"], trace.traceparent().as_str());
    /// ```
    pub fn insert_into(&self, headers: &mut HeaderMap) {
        if let Ok(value) = HeaderValue::from_str(&self.traceparent()) {
            headers.insert(TRACEPARENT, value);
        }
        headers.remove(TRACESTATE);
        if let Some(state) = self.tracestate()
            && let Ok(value) = HeaderValue::from_str(state)
        {
            headers.insert(TRACESTATE, value);
        }
    }
}

impl RequestId {
    /// The first `x-request-id` header if [`parse`](RequestId::parse)
    /// accepts it, else a [`generate`](RequestId::generate)d one.
    ///
    /// See the type's example.
    pub fn from_headers(headers: &HeaderMap) -> RequestId {
        RequestId::from_header(headers.get(X_REQUEST_ID))
    }

    /// `from_headers`, given the first `x-request-id` value.
    pub(crate) fn from_header(value: Option<&HeaderValue>) -> RequestId {
        value
            .and_then(|v| v.to_str().ok())
            .and_then(RequestId::parse)
            .unwrap_or_else(RequestId::generate)
    }

    /// The id as a header value, for outgoing requests and responses.
    ///
    /// # Examples
    ///
    /// ```
    /// use goctx::http::{RequestId, X_REQUEST_ID};
    ///
    /// let id = RequestId::parse("req-7").ok_or("invalid")?;
    /// let mut headers = http::HeaderMap::new();
    /// headers.insert(X_REQUEST_ID, id.header_value());
    /// assert_eq!(headers[X_REQUEST_ID], "req-7");
    /// # Ok::<(), &'static str>(())
    /// ```
    pub fn header_value(&self) -> HeaderValue {
        // Only visible ASCII gets in (`parse`, `generate`), all of it
        // valid in a header value.
        HeaderValue::from_str(self.as_str()).unwrap_or_else(|_| HeaderValue::from_static("-"))
    }
}
