//! `Propagator`: what [`inject`] writes into a carrier and [`extract`]
//! reads back, with the limits an extracting side puts on it.

use std::any::TypeId;
use std::fmt;
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::carrier::Carrier;
use super::keys;
use super::timeout::{decode_connect_timeout_ms, decode_grpc_timeout, encode_grpc_timeout};
use super::values::{LazyRequestId, Values};
use super::{RequestId, TraceContext};
use crate::cancel::{CancelFunc, with_cancel_cause};
use crate::clock::Clock;
use crate::context::Ctx;
use crate::deadline::with_deadline;

/// A value of the caller's that crosses process boundaries with the
/// context: a tenant, a locale, a feature flag. Opted in per
/// [`Propagator`] with [`Propagator::value`]; carried under [`KEY`](Propagated::KEY)
/// as the text [`encode`](Propagated::encode) makes, and put back in the
/// extracted context with `with_value` when [`decode`](Propagated::decode)
/// accepts it.
///
/// Every carrier crosses a trust boundary: `decode` sees whatever a
/// caller sent, so it should check the text and bound its size.
///
/// # Examples
///
/// ```
/// use std::collections::HashMap;
/// use goctx::propagation::{Propagated, Propagator};
///
/// #[derive(Clone, Debug, PartialEq)]
/// struct Tenant(String);
///
/// impl Propagated for Tenant {
///     const KEY: &'static str = "x-tenant";
///     fn encode(&self) -> String {
///         self.0.clone()
///     }
///     fn decode(text: &str) -> Option<Self> {
///         let ok = (1..=64).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_alphanumeric());
///         ok.then(|| Tenant(text.to_owned()))
///     }
/// }
///
/// let propagator = Propagator::new().value::<Tenant>();
/// let ctx = goctx::with_value(&goctx::background(), Tenant("acme".into()));
/// let mut headers = HashMap::new();
/// propagator.inject(&ctx, &mut headers);
/// assert_eq!(headers["x-tenant"], "acme");
///
/// let (remote, _cancel) = propagator.extract(&goctx::background(), &headers);
/// assert_eq!(remote.value::<Tenant>(), Some(&Tenant("acme".into())));
/// ```
pub trait Propagated: Clone + Send + Sync + 'static {
    /// The carrier key: lowercase ASCII letters, digits and `-`, valid as
    /// an HTTP header name.
    const KEY: &'static str;

    /// The value as text. Visible ASCII if it is to travel in HTTP
    /// headers: a carrier that cannot hold a value leaves it out (an
    /// `http::HeaderMap` drops a line break; one that is not ASCII is
    /// written but cannot be read back), so encode anything else
    /// (percent-encoding, base64).
    fn encode(&self) -> String;

    /// The value from its text, or `None` to leave it out.
    fn decode(text: &str) -> Option<Self>;
}

/// Which form [`Propagator::inject`] writes a deadline in. [`extract`]
/// reads both, whichever it finds, and takes the sooner.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DeadlineForm {
    /// The time left, as gRPC's `grpc-timeout` (rounded down): for calls,
    /// where the callee starts on it at once. Time in transit is not
    /// counted (the callee cannot know it), as in gRPC. The default.
    #[default]
    Relative,
    /// The moment itself, as milliseconds since the Unix epoch in
    /// [`keys::DEADLINE`] (rounded down): for messages that wait in a
    /// queue, where the time spent waiting must count. It relies on the
    /// two machines' clocks agreeing: a receiver whose clock is ahead by
    /// `d` ends the work `d` early, one that is behind, `d` late (keep
    /// them synchronised, with NTP; [`Propagator::max_timeout`] bounds
    /// what a clock far behind can do).
    Absolute,
    /// No deadline is written.
    Omit,
}

/// What crosses a boundary with a context, and the limits put on what
/// comes in. [`inject`](Propagator::inject) writes a context into a
/// [`Carrier`]; [`extract`](Propagator::extract) makes a context from
/// one. The free functions [`inject`] and [`extract`] use
/// [`Propagator::new`]'s settings.
///
/// | field | key | written when | read as |
/// |---|---|---|---|
/// | deadline, relative | [`keys::GRPC_TIMEOUT`] | the context has a deadline ([`DeadlineForm::Relative`], the default) | the time left, from now |
/// | deadline, relative | [`keys::CONNECT_TIMEOUT_MS`] | never | the time left, from now |
/// | deadline, absolute | [`keys::DEADLINE`] | the context has a deadline ([`DeadlineForm::Absolute`]) | a Unix time in ms |
/// | trace | [`keys::TRACEPARENT`], [`keys::TRACESTATE`] | the context has a [`TraceContext`] | continued as a child span; a new trace if absent or malformed |
/// | request id | [`keys::REQUEST_ID`] | the context has a [`RequestId`] | kept if valid; otherwise one is made when first read |
/// | a [`Propagated`] value | its [`KEY`](Propagated::KEY) | opted in with [`value`](Propagator::value), and the context has one | [`decode`](Propagated::decode)d |
///
/// Malformed fields are left out, never an error and never a panic: a
/// context is always made. The deadline is the soonest of those found,
/// capped by [`max_timeout`](Propagator::max_timeout); one already past
/// makes a context born done with `DeadlineExceeded`, so work whose
/// deadline passed while it waited never starts.
///
/// The extracted context is a child of the base (cancel it to end all),
/// with two nodes: the cancel node, with the deadline if there is one,
/// and one value node for the id, the trace and the values.
///
/// # Examples
///
/// ```
/// use std::collections::HashMap;
/// use std::time::Duration;
/// use goctx::propagation::{DeadlineForm, Propagator};
///
/// // A producer puts a task on a queue; the time it waits there counts.
/// let propagator = Propagator::new()
///     .deadline_form(DeadlineForm::Absolute)
///     .max_timeout(Duration::from_secs(600));
/// let (ctx, _cancel) = goctx::with_timeout(&goctx::background(), Duration::from_secs(30));
/// let mut message_headers = HashMap::new();
/// propagator.inject(&ctx, &mut message_headers);
/// assert!(message_headers.contains_key("deadline-unix-ms"));
///
/// // A worker, later, maybe elsewhere.
/// let (task_ctx, _cancel) = propagator.extract(&goctx::background(), &message_headers);
/// assert!(task_ctx.deadline() <= ctx.deadline());
/// ```
#[derive(Clone)]
pub struct Propagator {
    deadline_form: DeadlineForm,
    max_timeout: Option<Duration>,
    restart_trace: bool,
    values: Vec<ValueCodec>,
}

/// One opted-in value type's two directions, type-erased.
#[derive(Clone, Copy)]
struct ValueCodec {
    key: &'static str,
    name: &'static str,
    type_id: TypeId,
    inject: fn(&Ctx, &mut dyn Carrier),
    extract: fn(&Ctx, &dyn Carrier) -> Option<Ctx>,
}

impl ValueCodec {
    fn of<V: Propagated>() -> ValueCodec {
        ValueCodec {
            key: V::KEY,
            name: std::any::type_name::<V>(),
            type_id: TypeId::of::<V>(),
            inject: |ctx, carrier| {
                if let Some(value) = ctx.value::<V>() {
                    carrier.set(V::KEY, value.encode());
                }
            },
            extract: |ctx, carrier| {
                let value = V::decode(carrier.get(V::KEY)?)?;
                Some(crate::with_value(ctx, value))
            },
        }
    }
}

impl Default for Propagator {
    fn default() -> Self {
        Propagator::new()
    }
}

impl Propagator {
    /// The deadline in its relative form, the trace context and the
    /// request id; no values; no cap on the deadline; inbound traces
    /// continued.
    pub const fn new() -> Propagator {
        Propagator {
            deadline_form: DeadlineForm::Relative,
            max_timeout: None,
            restart_trace: false,
            values: Vec::new(),
        }
    }

    /// The form [`inject`](Propagator::inject) writes a deadline in
    /// (see [`DeadlineForm`]); [`extract`](Propagator::extract) reads
    /// both either way.
    pub fn deadline_form(mut self, form: DeadlineForm) -> Self {
        self.deadline_form = form;
        self
    }

    /// Caps an extracted context's deadline at `max` from now, and gives
    /// a context without one that deadline: a caller can only shorten
    /// it, and a clock far behind cannot stretch it.
    pub fn max_timeout(mut self, max: Duration) -> Self {
        self.max_timeout = Some(max);
        self
    }

    /// Ignore inbound trace context: start a new trace on every extract
    /// (at a trust boundary, where callers may not pick your trace ids or
    /// sampling). The request id is still read.
    pub fn restart_trace(mut self, restart: bool) -> Self {
        self.restart_trace = restart;
        self
    }

    /// Carries values of type `V` too (a second call for the same type
    /// changes nothing).
    ///
    /// # Panics
    ///
    /// If `V::KEY` is not a valid lowercase key (1 or more of `a-z`,
    /// `0-9`, `-`): a key that a carrier would change or drop (HTTP
    /// headers lowercase names and refuse spaces) would lose the value
    /// without a sign, so the mistake is reported where it is made.
    pub fn value<V: Propagated>(mut self) -> Self {
        assert!(
            !V::KEY.is_empty()
                && V::KEY
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
            "goctx: Propagated::KEY of {} is {:?}; use lowercase letters, digits and '-'",
            std::any::type_name::<V>(),
            V::KEY
        );
        let codec = ValueCodec::of::<V>();
        if !self
            .values
            .iter()
            .any(|known| known.type_id == codec.type_id)
        {
            self.values.push(codec);
        }
        self
    }

    /// Writes `ctx`'s deadline, trace context, request id and opted-in
    /// values into `carrier`, replacing those keys (see the table at
    /// [`Propagator`]). A field the context lacks is not written, and a
    /// stale one already in the carrier is left as it was. A context
    /// already done is written as it is: its deadline, if it has one, as
    /// already past.
    ///
    /// Each hop's span: the trace written is the context's own span, so
    /// the receiver's span becomes its child.
    pub fn inject<C: Carrier + ?Sized>(&self, ctx: &Ctx, carrier: &mut C) {
        self.inject_dyn(ctx, &mut Dyn(carrier));
    }

    fn inject_dyn(&self, ctx: &Ctx, carrier: &mut dyn Carrier) {
        if let Some(deadline) = ctx.deadline() {
            match self.deadline_form {
                DeadlineForm::Relative => {
                    let left = deadline.saturating_duration_since(Clock::current().now());
                    carrier.set(keys::GRPC_TIMEOUT, encode_grpc_timeout(left));
                }
                DeadlineForm::Absolute => {
                    // The wall clock first, then the deadline's clock:
                    // any gap between the two reads makes the result
                    // earlier, never later.
                    let wall = SystemTime::now();
                    let left = deadline.saturating_duration_since(Clock::current().now());
                    if let Some(ms) = unix_ms(wall, left) {
                        carrier.set(keys::DEADLINE, ms.to_string());
                    }
                }
                DeadlineForm::Omit => {}
            }
        }
        if let Some(trace) = ctx.value::<TraceContext>() {
            carrier.set(keys::TRACEPARENT, trace.traceparent());
            if let Some(state) = trace.tracestate() {
                carrier.set(keys::TRACESTATE, state.to_owned());
            }
        }
        if let Some(id) = ctx.value::<RequestId>() {
            carrier.set(keys::REQUEST_ID, id.as_str().to_owned());
        }
        for codec in &self.values {
            (codec.inject)(ctx, carrier);
        }
    }

    /// A new context under `base` from what `carrier` holds (see the table
    /// at [`Propagator`]), and the function that cancels it. It ends when
    /// `base` does, at its deadline, or when canceled.
    ///
    /// Never fails: a malformed field is left out, and a context is made
    /// with what remains.
    pub fn extract<C: Carrier + ?Sized>(&self, base: &Ctx, carrier: &C) -> (Ctx, CancelFunc) {
        self.extract_dyn(base, &DynRef(carrier))
    }

    fn extract_dyn(&self, base: &Ctx, carrier: &dyn Carrier) -> (Ctx, CancelFunc) {
        let (ctx, cancel) = match self.deadline(carrier) {
            Some(at) => with_deadline(base, at),
            None => with_cancel_cause(base),
        };
        let trace = if self.restart_trace {
            TraceContext::new_root()
        } else {
            remote_trace(carrier).map_or_else(TraceContext::new_root, |remote| remote.child())
        };
        let id = carrier.get(keys::REQUEST_ID).and_then(RequestId::parse);
        let id = LazyRequestId(id.map_or_else(OnceLock::new, OnceLock::from));
        let mut ctx = Values {
            id,
            trace,
            extra: (),
        }
        .attach(&ctx);
        for codec in &self.values {
            if let Some(with_value) = (codec.extract)(&ctx, carrier) {
                ctx = with_value;
            }
        }
        (ctx, cancel)
    }

    /// The soonest deadline the carrier names, capped by `max_timeout`.
    fn deadline(&self, carrier: &dyn Carrier) -> Option<Instant> {
        // The deadline's clock first, then the wall clock: any gap between
        // the two reads makes the result earlier, never later.
        let now = Clock::current().now();
        let relative = [
            carrier
                .get(keys::GRPC_TIMEOUT)
                .and_then(|v| decode_grpc_timeout(v).ok()),
            carrier
                .get(keys::CONNECT_TIMEOUT_MS)
                .and_then(|v| decode_connect_timeout_ms(v).ok()),
        ];
        let absolute = carrier
            .get(keys::DEADLINE)
            .and_then(parse_unix_ms)
            .map(|at| {
                at.duration_since(SystemTime::now())
                    .unwrap_or(Duration::ZERO)
            });
        let left = relative
            .into_iter()
            .chain([absolute, self.max_timeout])
            .flatten()
            .min()?;
        // A deadline beyond what an `Instant` can hold is no deadline.
        now.checked_add(left)
    }
}

/// The caller's trace: exactly one valid `traceparent` (a repeated one is
/// invalid, as the HTTP layer reads it), with the `tracestate` lines
/// joined.
fn remote_trace(carrier: &dyn Carrier) -> Option<TraceContext> {
    let parents = carrier.get_all(keys::TRACEPARENT);
    let [parent] = parents.as_slice() else {
        return None;
    };
    let states = carrier.get_all(keys::TRACESTATE);
    let state = match states.as_slice() {
        [] => None,
        [one] => Some(std::borrow::Cow::Borrowed(*one)),
        several => Some(std::borrow::Cow::Owned(several.join(","))),
    };
    TraceContext::parse(parent, state.as_deref())
}

/// Milliseconds since the Unix epoch of `wall + left`, rounded down.
fn unix_ms(wall: SystemTime, left: Duration) -> Option<u128> {
    let at = wall.checked_add(left)?;
    Some(at.duration_since(UNIX_EPOCH).ok()?.as_millis())
}

/// A [`keys::DEADLINE`] value: 1 to 16 ASCII digits of milliseconds since
/// the Unix epoch.
fn parse_unix_ms(text: &str) -> Option<SystemTime> {
    let ok = (1..=16).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_digit());
    let ms: u64 = text.parse().ok().filter(|_| ok)?;
    UNIX_EPOCH.checked_add(Duration::from_millis(ms))
}

impl fmt::Debug for Propagator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let values: Vec<_> = self.values.iter().map(|v| (v.key, v.name)).collect();
        f.debug_struct("Propagator")
            .field("deadline_form", &self.deadline_form)
            .field("max_timeout", &self.max_timeout)
            .field("restart_trace", &self.restart_trace)
            .field("values", &values)
            .finish()
    }
}

/// `inject` with [`Propagator::new`]'s settings: `ctx`'s deadline (as
/// `grpc-timeout`), trace context and request id into `carrier`.
///
/// # Examples
///
/// ```
/// use std::collections::HashMap;
/// use std::time::Duration;
///
/// let (ctx, _cancel) = goctx::with_timeout(&goctx::background(), Duration::from_secs(2));
/// let ctx = goctx::with_value(&ctx, goctx::propagation::RequestId::generate());
/// let mut carrier = HashMap::new();
/// goctx::propagation::inject(&ctx, &mut carrier);
/// assert!(carrier["grpc-timeout"].ends_with('u') || carrier["grpc-timeout"].ends_with('m'));
/// assert_eq!(carrier["x-request-id"].len(), 32);
/// ```
pub fn inject<C: Carrier + ?Sized>(ctx: &Ctx, carrier: &mut C) {
    Propagator::new().inject(ctx, carrier);
}

/// A context under `base` from `carrier`, read with `propagator`'s
/// settings and limits ([`Propagator::extract`]).
///
/// # Examples
///
/// ```
/// use std::collections::HashMap;
/// use goctx::propagation::{Propagator, TraceContext, extract};
///
/// let carrier = HashMap::from([
///     ("traceparent".to_owned(), "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_owned()),
///     ("grpc-timeout".to_owned(), "5S".to_owned()),
/// ]);
/// let (ctx, _cancel) = extract(&goctx::background(), &carrier, &Propagator::new());
/// let trace = ctx.value::<TraceContext>().unwrap();
/// assert_eq!(trace.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
/// assert!(ctx.deadline().is_some());
/// ```
pub fn extract<C: Carrier + ?Sized>(
    base: &Ctx,
    carrier: &C,
    propagator: &Propagator,
) -> (Ctx, CancelFunc) {
    propagator.extract(base, carrier)
}

/// A `Carrier + ?Sized` seen as a `dyn Carrier` (a sized wrapper), so the
/// bodies of `inject` and `extract` are compiled once, not per carrier.
struct Dyn<'a, C: ?Sized>(&'a mut C);

impl<C: Carrier + ?Sized> Carrier for Dyn<'_, C> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key)
    }
    fn get_all(&self, key: &str) -> Vec<&str> {
        self.0.get_all(key)
    }
    fn set(&mut self, key: &str, value: String) {
        self.0.set(key, value);
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys()
    }
}

/// The read-only form of [`Dyn`], for `extract`.
struct DynRef<'a, C: ?Sized>(&'a C);

impl<C: Carrier + ?Sized> Carrier for DynRef<'_, C> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key)
    }
    fn get_all(&self, key: &str) -> Vec<&str> {
        self.0.get_all(key)
    }
    fn set(&mut self, _key: &str, _value: String) {
        // `extract` only reads.
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys()
    }
}
