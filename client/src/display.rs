//! Makes text from contacts safe to print on a terminal.
//!
//! A contact's message is untrusted: raw, it could carry escape sequences
//! (set the clipboard with OSC 52, hide text, move the cursor), bidi
//! overrides that reorder what is shown, or a newline followed by a forged
//! `[time] Name:` header that looks like a message from someone else.

/// Escapes control and bidi-formatting characters as `\u{..}` and indents
/// continuation lines, so one message can never look like several.
pub(crate) fn terminal_safe(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\n    "),
            '\t' => out.push('\t'),
            c if c.is_control() || is_bidi_or_invisible(c) => {
                out.push_str(&format!("\\u{{{:x}}}", u32::from(c)));
            }
            c => out.push(c),
        }
    }
    out
}

fn is_bidi_or_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2069}' | '\u{feff}'
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_controls_and_indents_lines() {
        assert_eq!(terminal_safe("hola, compa"), "hola, compa");
        assert_eq!(terminal_safe("¡Hola! ñ ü"), "¡Hola! ñ ü");
        assert_eq!(
            terminal_safe("a\x1b]52;c;ZXZpbA==\x07b"),
            "a\\u{1b}]52;c;ZXZpbA==\\u{7}b"
        );
        assert_eq!(
            terminal_safe("ok\n[2026-11-26 22:00 UTC] Ana: march moved"),
            "ok\n    [2026-11-26 22:00 UTC] Ana: march moved"
        );
        assert_eq!(terminal_safe("x\ry"), "x\\u{d}y");
        assert_eq!(terminal_safe("\u{202e}txt"), "\\u{202e}txt");
        assert_eq!(terminal_safe("\u{85}"), "\\u{85}");
    }
}
