//! `HeaderMap` as a [`Carrier`], for [`inject`](crate::propagation::inject)
//! and [`extract`](crate::propagation::extract).

use http::{HeaderMap, HeaderName, HeaderValue};

use crate::propagation::Carrier;

/// Headers as a carrier: names match in any case (`HeaderName` is
/// lowercase); [`get`](Carrier::get) reads the first line of a name
/// (and `None` for a value that is not visible ASCII),
/// [`get_all`](Carrier::get_all) every line; [`set`](Carrier::set)
/// replaces every line of it, and ignores a name or value that is not
/// valid in a header (it never panics). So a value that is not visible
/// ASCII (`"ünïcode"`, a line break) does not make the trip: encode it
/// (percent-encoding, base64) in [`Propagated::encode`](crate::propagation::Propagated::encode).
impl Carrier for HeaderMap {
    fn get(&self, key: &str) -> Option<&str> {
        HeaderMap::get(self, key).and_then(|value| value.to_str().ok())
    }

    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(key.as_bytes()),
            HeaderValue::try_from(value),
        ) {
            self.insert(name, value);
        }
    }

    fn keys(&self) -> Vec<&str> {
        HeaderMap::keys(self).map(HeaderName::as_str).collect()
    }

    fn get_all(&self, key: &str) -> Vec<&str> {
        HeaderMap::get_all(self, key)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .collect()
    }
}
