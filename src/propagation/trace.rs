//! `TraceContext`: W3C Trace Context (`traceparent`, `tracestate`).

use std::fmt;
use std::sync::Arc;

use super::id::{hex, hex_into, random_u64};

/// The flags this crate knows and keeps: `sampled` (0x01) and Level 2's
/// `random-trace-id` (0x02). The spec says to send the others as zero.
const KNOWN_FLAGS: u8 = 0x03;

/// The most of `tracestate` kept: the spec asks for at least 512
/// characters, cut at whole list-members, at most 32 of them.
const TRACESTATE_MAX: usize = 512;

/// Where a request is in a distributed trace (W3C Trace Context): the
/// trace id, this hop's span id, the caller's span id, the flags and the
/// vendors' `tracestate`. Carried as a context value: put there by
/// [`extract`](crate::propagation::extract) and by the HTTP layer
/// (`goctx::http::RequestContextLayer`), written out by
/// [`inject`](crate::propagation::inject) and the HTTP client layer.
///
/// Both read it the same way: a valid inbound `traceparent` is
/// **continued** ([`parse`](TraceContext::parse), then
/// [`child`](TraceContext::child): same trace id and flags, `tracestate`
/// kept verbatim, a new span id for this hop); a missing or invalid one
/// starts a **new trace** ([`new_root`](TraceContext::new_root)).
/// Outgoing calls send [`traceparent()`](TraceContext::traceparent), whose
/// parent-id is this hop's span id.
///
/// Flags come from the caller and may be set by anyone: the spec calls
/// them recommendations, and an untrusted caller can set `sampled` on
/// every request. At a trust boundary restart the trace
/// ([`Propagator::restart_trace`](crate::propagation::Propagator::restart_trace),
/// or the HTTP layer's setting of the same name).
///
/// # Examples
///
/// ```
/// use goctx::propagation::TraceContext;
///
/// let inbound = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
/// let trace = TraceContext::parse(inbound, None).ok_or("invalid")?.child();
/// assert_eq!(trace.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
/// assert_eq!(trace.parent_span_id(), Some([0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]));
/// assert!(trace.sampled());
/// assert!(trace.traceparent().starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
///
/// assert!(TraceContext::parse("garbage", None).is_none());
/// # Ok::<(), &'static str>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct TraceContext {
    trace_id: [u8; 16],
    span_id: [u8; 8],
    parent_span_id: Option<[u8; 8]>,
    flags: u8,
    tracestate: Option<Arc<str>>,
}

impl TraceContext {
    /// A new trace: random trace and span ids, no parent, flags 0 (not
    /// sampled; the spec leaves sampling to the vendor), no `tracestate`.
    ///
    /// # Examples
    ///
    /// ```
    /// let t = goctx::propagation::TraceContext::new_root();
    /// assert_eq!(t.parent_span_id(), None);
    /// assert_eq!(t.traceparent().len(), 55);
    /// ```
    pub fn new_root() -> TraceContext {
        let mut trace_id = [0u8; 16];
        trace_id[..8].copy_from_slice(&random_u64().to_be_bytes());
        trace_id[8..].copy_from_slice(&random_u64().to_be_bytes());
        TraceContext {
            trace_id,
            span_id: random_u64().to_be_bytes(),
            parent_span_id: None,
            flags: 0,
            tracestate: None,
        }
    }

    /// Parses a `traceparent` value as it is on the wire: the result's
    /// span id is the header's parent-id (the caller's span). `tracestate`
    /// is kept if given (several header lines joined by commas), bounded
    /// to 512 characters and 32 entries by dropping whole entries, the
    /// longest (over 128 characters) first.
    ///
    /// `None` unless the value follows the spec: version `00` with exactly
    /// four fields, or a higher version (not `ff`) whose first four fields
    /// are read; lowercase hex only; trace id and parent id not all zeros.
    /// Unknown flag bits are accepted and cleared.
    ///
    /// # Examples
    ///
    /// ```
    /// use goctx::propagation::TraceContext;
    ///
    /// let t = TraceContext::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", Some("congo=t61rcWkgMzE"))
    ///     .ok_or("invalid")?;
    /// assert_eq!(t.span_id(), [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]);
    /// assert_eq!(t.tracestate(), Some("congo=t61rcWkgMzE"));
    /// // Uppercase hex, all-zero ids and version ff are invalid.
    /// assert!(TraceContext::parse("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", None).is_none());
    /// assert!(TraceContext::parse("00-00000000000000000000000000000000-00f067aa0ba902b7-01", None).is_none());
    /// assert!(TraceContext::parse("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", None).is_none());
    /// # Ok::<(), &'static str>(())
    /// ```
    pub fn parse(traceparent: &str, tracestate: Option<&str>) -> Option<TraceContext> {
        let b = traceparent.trim_matches([' ', '\t']).as_bytes();
        if b.len() < 55 || b[2] != b'-' || b[35] != b'-' || b[52] != b'-' {
            return None;
        }
        let version = hex_byte(&b[0..2])?;
        let rest_ok = match version {
            0xff => false,
            0x00 => b.len() == 55,
            // A later version may append fields after a dash.
            _ => b.len() == 55 || b[55] == b'-',
        };
        if !rest_ok {
            return None;
        }
        let mut trace_id = [0u8; 16];
        for (i, byte) in trace_id.iter_mut().enumerate() {
            *byte = hex_byte(&b[3 + 2 * i..5 + 2 * i])?;
        }
        let mut span_id = [0u8; 8];
        for (i, byte) in span_id.iter_mut().enumerate() {
            *byte = hex_byte(&b[36 + 2 * i..38 + 2 * i])?;
        }
        let flags = hex_byte(&b[53..55])?;
        if trace_id == [0; 16] || span_id == [0; 8] {
            return None;
        }
        Some(TraceContext {
            trace_id,
            span_id,
            parent_span_id: None,
            flags: flags & KNOWN_FLAGS,
            tracestate: tracestate.and_then(bound_tracestate),
        })
    }

    /// A trace context from its parts (for the OpenTelemetry bridge);
    /// `None` if an id is all zeros. `tracestate` is bounded as
    /// [`parse`](TraceContext::parse) bounds it.
    #[cfg_attr(
        not(all(feature = "opentelemetry", feature = "http")),
        allow(dead_code)
    )]
    pub(crate) fn from_parts(
        trace_id: [u8; 16],
        span_id: [u8; 8],
        parent_span_id: Option<[u8; 8]>,
        flags: u8,
        tracestate: Option<&str>,
    ) -> Option<TraceContext> {
        (trace_id != [0; 16] && span_id != [0; 8]).then(|| TraceContext {
            trace_id,
            span_id,
            parent_span_id,
            flags: flags & KNOWN_FLAGS,
            tracestate: tracestate.and_then(bound_tracestate),
        })
    }

    /// A new span in the same trace, whose parent is this one: same trace
    /// id, flags and `tracestate`, a new random span id.
    ///
    /// # Examples
    ///
    /// ```
    /// let root = goctx::propagation::TraceContext::new_root();
    /// let child = root.child();
    /// assert_eq!(child.trace_id(), root.trace_id());
    /// assert_eq!(child.parent_span_id(), Some(root.span_id()));
    /// ```
    pub fn child(&self) -> TraceContext {
        TraceContext {
            trace_id: self.trace_id,
            span_id: random_u64().to_be_bytes(),
            parent_span_id: Some(self.span_id),
            flags: self.flags,
            tracestate: self.tracestate.clone(),
        }
    }

    /// The `traceparent` value for an outgoing request: version `00`, this
    /// trace id, this span's id as the parent-id, the flags.
    ///
    /// # Examples
    ///
    /// ```
    /// use goctx::propagation::TraceContext;
    ///
    /// let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    /// assert_eq!(TraceContext::parse(tp, None).ok_or("invalid")?.traceparent(), tp);
    /// # Ok::<(), &'static str>(())
    /// ```
    pub fn traceparent(&self) -> String {
        // Built in place: one allocation, the result's.
        let mut out = *b"00-________________________________-________________-__";
        hex_into(&self.trace_id, &mut out[3..35]);
        hex_into(&self.span_id, &mut out[36..52]);
        hex_into(&[self.flags], &mut out[53..55]);
        // Hex digits and dashes: ASCII, never the fallback.
        String::from_utf8(out.to_vec()).unwrap_or_default()
    }

    /// The trace id (16 bytes, never all zeros).
    pub fn trace_id(&self) -> [u8; 16] {
        self.trace_id
    }

    /// The trace id as 32 lowercase hex digits, as logs usually show it.
    pub fn trace_id_hex(&self) -> String {
        hex(&self.trace_id)
    }

    /// This span's id (8 bytes, never all zeros).
    pub fn span_id(&self) -> [u8; 8] {
        self.span_id
    }

    /// The caller's span id: the inbound `traceparent`'s parent-id; `None`
    /// for a new trace.
    pub fn parent_span_id(&self) -> Option<[u8; 8]> {
        self.parent_span_id
    }

    /// The trace flags (only the `sampled` and `random-trace-id` bits).
    pub fn flags(&self) -> u8 {
        self.flags
    }

    /// Whether the caller asked for this trace to be recorded (flag 0x01).
    pub fn sampled(&self) -> bool {
        self.flags & 0x01 != 0
    }

    /// The vendors' `tracestate`, as received (within the bounds described
    /// at [`parse`](TraceContext::parse)).
    pub fn tracestate(&self) -> Option<&str> {
        self.tracestate.as_deref()
    }
}

impl fmt::Display for TraceContext {
    /// The `traceparent` form.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.traceparent())
    }
}

impl fmt::Debug for TraceContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TraceContext")
            .field("trace_id", &hex(&self.trace_id))
            .field("span_id", &hex(&self.span_id))
            .field("parent_span_id", &self.parent_span_id.map(|p| hex(&p)))
            .field("flags", &self.flags)
            .field("tracestate", &self.tracestate())
            .finish()
    }
}

/// Two lowercase hex digits.
fn hex_byte(two: &[u8]) -> Option<u8> {
    fn digit(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        }
    }
    Some(digit(two[0])? << 4 | digit(two[1])?)
}

/// `tracestate` within the bounds the spec asks vendors to keep, cut at
/// whole list-members; `None` if nothing is left.
fn bound_tracestate(state: &str) -> Option<Arc<str>> {
    let state = state.trim_matches([' ', '\t', ',']);
    if state.is_empty() {
        return None;
    }
    if state.len() <= TRACESTATE_MAX && state.split(',').count() <= 32 {
        return Some(state.into());
    }
    let members: Vec<&str> = state
        .split(',')
        .map(|m| m.trim_matches([' ', '\t']))
        .filter(|m| !m.is_empty())
        .collect();
    // Drop the long entries first, then whatever no longer fits.
    let mut kept = String::new();
    for member in members.iter().filter(|m| m.len() <= 128).take(32) {
        let extra = member.len() + usize::from(!kept.is_empty());
        if kept.len() + extra > TRACESTATE_MAX {
            break;
        }
        if !kept.is_empty() {
            kept.push(',');
        }
        kept.push_str(member);
    }
    (!kept.is_empty()).then(|| kept.into())
}
