//! The one small named error type the tests give as a cancel cause.

use std::fmt;

use goctx::Cause;

/// A user cause whose message is its payload: `Why("stop waiting")`, or
/// `Why(7)` for a numbered one. Go's `errors.New` / `fmt.Errorf`.
#[derive(Debug)]
pub struct Why<T = &'static str>(pub T);

impl<T: fmt::Display> fmt::Display for Why<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl<T: fmt::Debug + fmt::Display> std::error::Error for Why<T> {}

/// A shared cause whose identity a test can check later with
/// `Cause::ptr_eq`, like Go comparing error values with `==`.
pub fn cause(text: &'static str) -> Cause {
    Cause::new(Why(text))
}

/// Defines a unit cause type with a fixed message, for tests that tell
/// causes apart by their type (`downcast_ref`) rather than their text.
// Each test file uses only some of these.
#[allow(unused_macros)]
macro_rules! unit_cause {
    ($(#[$doc:meta])* $name:ident, $message:literal) => {
        $(#[$doc])*
        #[derive(Debug)]
        struct $name;

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str($message)
            }
        }

        impl std::error::Error for $name {}
    };
}
#[allow(unused_imports)]
pub(crate) use unit_cause;
