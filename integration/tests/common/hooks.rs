//! The one panic hook of the suite: it records panics on goctx's helper
//! threads (a library bug unless a test meant it) so a test can assert
//! there were none, and lets the previous hook print them as usual.

use std::panic::PanicHookInfo;
use std::sync::{Mutex, MutexGuard, Once};
use std::thread;

static HELPER_PANICS: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Installs the hook, once per test binary (later calls do nothing, so
/// every call in one binary must pass the same `silence`). A panic for
/// which `silence` is true (an intended one) is neither recorded nor
/// printed; any other panic on a thread named `goctx-…` is recorded.
pub fn record_helper_panics(silence: fn(&PanicHookInfo<'_>) -> bool) {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if silence(info) {
                return;
            }
            if let Some(name) = thread::current().name()
                && name.starts_with("goctx-")
            {
                HELPER_PANICS
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(format!("{name}: {info}"));
            }
            previous(info);
        }));
    });
}

/// The helper-thread panics recorded so far, `"thread name: panic"` each.
pub fn helper_panics() -> MutexGuard<'static, Vec<String>> {
    HELPER_PANICS.lock().unwrap_or_else(|p| p.into_inner())
}
