//! `Carrier`: where [`inject`](super::inject) writes a context's fields
//! and [`extract`](super::extract) reads them.

use std::collections::HashMap;

/// Text keys and values that travel with a call or a message: HTTP
/// headers, gRPC metadata, a queue message's headers, a job's JSON map.
/// OpenTelemetry calls the two halves `Injector` (`set`) and `Extractor`
/// (`get`, `keys`); one carrier is both here.
///
/// Keys are ASCII; goctx only ever uses lowercase ones (the names in
/// [`keys`](super::keys) and those of [`Propagated`](super::Propagated)
/// values). An implementation whose keys are case-insensitive (HTTP)
/// matches in any case.
///
/// Implemented for `HashMap<String, String>` and, with the `http`
/// feature, for `http::HeaderMap`. For another carrier, implement the
/// three methods; nothing else is needed.
///
/// # Examples
///
/// ```
/// use std::collections::BTreeMap;
/// use goctx::propagation::Carrier;
///
/// /// A job's metadata, kept sorted for stable JSON.
/// struct Meta(BTreeMap<String, String>);
///
/// impl Carrier for Meta {
///     fn get(&self, key: &str) -> Option<&str> {
///         self.0.get(key).map(String::as_str)
///     }
///     fn set(&mut self, key: &str, value: String) {
///         self.0.insert(key.to_owned(), value);
///     }
///     fn keys(&self) -> Vec<&str> {
///         self.0.keys().map(String::as_str).collect()
///     }
/// }
///
/// let mut meta = Meta(BTreeMap::new());
/// let ctx = goctx::with_value(&goctx::background(), goctx::propagation::RequestId::generate());
/// goctx::propagation::inject(&ctx, &mut meta);
/// assert!(meta.get("x-request-id").is_some());
/// ```
pub trait Carrier {
    /// The value of `key`, if the carrier has one (the first, if it can
    /// hold several).
    fn get(&self, key: &str) -> Option<&str>;

    /// Sets `key` to `value`, replacing what was there. A carrier that
    /// cannot hold the key or value (not valid in a header) leaves it
    /// out; it must not panic.
    fn set(&mut self, key: &str, value: String);

    /// Every key the carrier holds.
    fn keys(&self) -> Vec<&str>;

    /// Every value of `key`, for a carrier that can hold several (HTTP
    /// headers); by default the one [`get`](Carrier::get) returns. `extract`
    /// uses it where the count matters: a repeated `traceparent` is
    /// invalid, repeated `tracestate` lines are joined.
    fn get_all(&self, key: &str) -> Vec<&str> {
        self.get(key).into_iter().collect()
    }
}

/// A map as a carrier: keys match exactly, so use the lowercase keys goctx
/// writes (a key written by [`inject`](super::inject) is lowercase).
impl<S: std::hash::BuildHasher> Carrier for HashMap<String, String, S> {
    fn get(&self, key: &str) -> Option<&str> {
        HashMap::get(self, key).map(String::as_str)
    }

    fn set(&mut self, key: &str, value: String) {
        self.insert(key.to_owned(), value);
    }

    fn keys(&self) -> Vec<&str> {
        HashMap::keys(self).map(String::as_str).collect()
    }
}

impl<C: Carrier + ?Sized> Carrier for &mut C {
    fn get(&self, key: &str) -> Option<&str> {
        (**self).get(key)
    }

    fn set(&mut self, key: &str, value: String) {
        (**self).set(key, value);
    }

    fn keys(&self) -> Vec<&str> {
        (**self).keys()
    }

    fn get_all(&self, key: &str) -> Vec<&str> {
        (**self).get_all(key)
    }
}
