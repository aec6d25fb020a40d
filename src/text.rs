//! Text that reaches a person's terminal or a log: which characters could
//! move the cursor, clear the screen, start a new line or reorder what is
//! shown (control characters and Unicode bidirectional overrides), and
//! how to show them harmlessly.

use std::borrow::Cow;

/// Control characters (C0, DEL, C1), line and paragraph separators, and
/// the bidirectional embeddings, overrides, isolates and marks
/// (U+061C, U+200E, U+200F, U+202A–U+202E, U+2066–U+2069).
pub fn is_unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061C}'
                | '\u{200E}'
                | '\u{200F}'
                | '\u{2028}'
                | '\u{2029}'
                | '\u{202A}'..='\u{202E}'
                | '\u{2066}'..='\u{2069}'
        )
}

/// The first character of `text` that [`is_unsafe_char`], if any.
pub fn find_unsafe(text: &str) -> Option<char> {
    text.chars().find(|c| is_unsafe_char(*c))
}

/// `text` with every unsafe character written as an escape (`\n`, `\r`,
/// `\t`, else `\u{1b}`), so that it prints on one line as it is.
pub fn escape(text: &str) -> Cow<'_, str> {
    if find_unsafe(text).is_none() {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if is_unsafe_char(c) => out.extend(c.escape_unicode()),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// A log writer for text-format events: each write is one formatted
/// event, written with its control characters escaped except the newline
/// that ends it, so a client id with `\n` cannot forge a second line.
pub struct OneLine<W>(pub W);

impl<W: std::io::Write> std::io::Write for OneLine<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        let (body, end) = match text.strip_suffix('\n') {
            Some(body) => (body, "\n"),
            None => (&*text, ""),
        };
        self.0.write_all(escape(body).as_bytes())?;
        self.0.write_all(end.as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsafe_characters_are_escaped() {
        assert_eq!(escape("plain text, ünïcode"), "plain text, ünïcode");
        assert_eq!(escape("a\nb\rc\td"), "a\\nb\\rc\\td");
        assert_eq!(escape("\x1b[2J"), "\\u{1b}[2J");
        assert_eq!(escape("x\u{9b}y\u{7f}"), "x\\u{9b}y\\u{7f}");
        assert_eq!(escape("\u{202e}abc\u{2066}"), "\\u{202e}abc\\u{2066}");
        assert_eq!(find_unsafe("ok"), None);
        assert_eq!(find_unsafe("o\u{0}k"), Some('\0'));
        assert_eq!(find_unsafe("\u{2069}"), Some('\u{2069}'));
    }

    #[test]
    fn one_event_is_one_line() {
        use std::io::Write;
        let mut out = OneLine(Vec::new());
        out.write_all(b"INFO client connected client_id=a\nERROR forged\n")
            .unwrap();
        out.write_all(b"INFO next\n").unwrap();
        let text = String::from_utf8(out.0).unwrap();
        assert_eq!(
            text,
            "INFO client connected client_id=a\\nERROR forged\nINFO next\n"
        );
    }
}
