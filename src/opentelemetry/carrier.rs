//! Any goctx [`Carrier`] as OpenTelemetry's `Injector` and `Extractor`,
//! so OpenTelemetry's propagators write and read every carrier goctx's
//! own [`inject`](crate::propagation::inject) does.

use std::fmt;

use opentelemetry::propagation::{Extractor, Injector};

use crate::propagation::Carrier;

/// A [`Carrier`] seen as OpenTelemetry's [`Injector`] and
/// [`Extractor`].
///
/// # Examples
///
/// ```
/// use std::collections::HashMap;
/// use opentelemetry::propagation::TextMapPropagator;
/// use opentelemetry_sdk::propagation::BaggagePropagator;
/// use opentelemetry::baggage::BaggageExt;
///
/// let otel = opentelemetry::Context::new()
///     .with_baggage([opentelemetry::KeyValue::new("tenant", "acme")]);
/// let mut carrier: HashMap<String, String> = HashMap::new();
/// BaggagePropagator::new().inject_context(&otel, &mut goctx::opentelemetry::CarrierAdapter(&mut carrier));
/// assert_eq!(carrier["baggage"], "tenant=acme");
/// ```
pub struct CarrierAdapter<'a, C: ?Sized>(pub &'a mut C);

impl<C: Carrier + ?Sized> Injector for CarrierAdapter<'_, C> {
    fn set(&mut self, key: &str, value: String) {
        self.0.set(key, value);
    }
}

impl<C: Carrier + ?Sized> Extractor for CarrierAdapter<'_, C> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key)
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys()
    }

    fn get_all(&self, key: &str) -> Option<Vec<&str>> {
        let all = self.0.get_all(key);
        (!all.is_empty()).then_some(all)
    }
}

/// The read-only form, for extracting from a carrier held by `&`.
#[cfg(feature = "http")]
pub(crate) struct ReadAdapter<'a, C: ?Sized>(pub(crate) &'a C);

#[cfg(feature = "http")]
impl<C: Carrier + ?Sized> Extractor for ReadAdapter<'_, C> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key)
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys()
    }

    fn get_all(&self, key: &str) -> Option<Vec<&str>> {
        let all = self.0.get_all(key);
        (!all.is_empty()).then_some(all)
    }
}

impl<C: ?Sized> fmt::Debug for CarrierAdapter<'_, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CarrierAdapter").finish_non_exhaustive()
    }
}
