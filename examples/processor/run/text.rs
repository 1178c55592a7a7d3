//! Task names and other user text on a terminal: control characters
//! escaped, width measured in terminal columns, long text cut short.
//!
//! A task name comes from a file the processor did not write. Printed raw,
//! a newline in it splits a log line (the second half has no request ID),
//! an escape sequence recolours or moves around the terminal, and a wide
//! or very long name pushes every table column out of line.

use std::borrow::Cow;
use std::fmt::Write;

use unicode_width::UnicodeWidthChar;

/// `text` with every control character written as an escape: `\n`, `\r`,
/// `\t`, `\x1b`, `\u{202e}`. Covers the C0 and C1 controls, DEL, and the
/// Unicode format characters that reorder or hide text (bidi overrides,
/// zero-width joiners stay: emoji need them). Borrowed when nothing
/// needed escaping, the usual case.
pub fn escape(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if needs_escape(c) && (c as u32) < 0x100 => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if needs_escape(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

fn needs_escape(c: char) -> bool {
    c.is_control()
        // Bidi embeddings, overrides and isolates: they reorder what
        // follows on the line.
        || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// Columns `text` takes on a terminal (CJK and most emoji take two).
pub fn width(text: &str) -> usize {
    text.chars().map(|c| c.width().unwrap_or(0)).sum()
}

/// `text` cut to at most `max` columns, ending in `…` when cut.
pub fn truncate(text: &str, max: usize) -> Cow<'_, str> {
    if width(text) <= max {
        return Cow::Borrowed(text);
    }
    let mut out = String::new();
    let mut used = 0;
    for c in text.chars() {
        let w = c.width().unwrap_or(0);
        // Leave one column for the ellipsis.
        if used + w + 1 > max {
            break;
        }
        out.push(c);
        used += w;
    }
    out.push('…');
    Cow::Owned(out)
}

/// [`escape`], then [`truncate`]: user text for a table cell or a bar.
pub fn cell(text: &str, max: usize) -> String {
    truncate(&escape(text), max).into_owned()
}
