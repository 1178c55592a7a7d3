//! NATS message headers as a [`Carrier`].

use std::str::FromStr;

use async_nats::{HeaderMap, HeaderName, HeaderValue};

use crate::propagation::Carrier;

/// NATS headers as a carrier: names match exactly (goctx writes
/// lowercase ones); [`set`](Carrier::set) replaces every value of a name
/// and leaves out a name or value NATS cannot hold (a `:` or a control
/// character in a name, a line break in a value) instead of panicking.
impl Carrier for HeaderMap {
    fn get(&self, key: &str) -> Option<&str> {
        HeaderMap::get(self, HeaderName::from_str(key).ok()?).map(HeaderValue::as_str)
    }

    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (HeaderName::from_str(key), HeaderValue::from_str(&value)) {
            self.insert(name, value);
        }
    }

    fn keys(&self) -> Vec<&str> {
        self.iter().map(|(name, _)| name.as_ref()).collect()
    }

    fn get_all(&self, key: &str) -> Vec<&str> {
        match HeaderName::from_str(key) {
            Ok(name) => HeaderMap::get_all(self, name)
                .map(HeaderValue::as_str)
                .collect(),
            Err(_) => Vec::new(),
        }
    }
}
