//! Standard output: aligned tables for people, JSON for scripts. A reader
//! that goes away early (`gatehouse user list | head -1`) ends the command
//! quietly with exit 0 instead of a panic: every write goes through here
//! and turns a broken pipe into [`closed`].

use gatehouse::text::escape;
use serde_json::Value;
use std::io::Write;

use super::{CliError, Exit, Result};

/// The error that stands for "standard output was closed": exit 0, no message.
pub fn closed() -> CliError {
    CliError::new(Exit::Ok, "")
}

fn write_all(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(CliError::from)
}

/// One line; control characters and bidirectional overrides in it (a
/// client id, a device's text) are escaped, so it stays one line and
/// cannot repaint the terminal.
pub fn line(text: impl std::fmt::Display) -> Result<()> {
    let text = text.to_string();
    write_all(&format!("{}\n", escape_lines(&text)))
}

/// Multi-line text (pretty JSON, a report) with each line escaped.
fn escape_lines(text: &str) -> String {
    text.split('\n')
        .map(|l| escape(l).into_owned())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Text as it is (e.g. a PEM, or TOML).
pub fn raw(text: &str) -> Result<()> {
    write_all(text)
}

/// Pretty JSON. Control characters and bidirectional overrides that
/// serde_json leaves raw (DEL, C1, U+202E...) are written as `\uXXXX`
/// escapes: still the same JSON, harmless on a terminal.
pub fn json(value: &Value) -> Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(|e| CliError::failed(e.to_string()))?;
    write_all(&format!("{}\n", json_escaped(&text)))
}

fn json_escaped(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c != '\n' && gatehouse::text::is_unsafe_char(c) {
            // Outside strings JSON has only ASCII whitespace and
            // punctuation, so such a character is inside a string; all
            // of them are in the Basic Multilingual Plane.
            out.push_str(&format!("\\u{:04x}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

/// Columns padded to their widest cell, two spaces apart; `-` for empty.
/// Control characters and bidirectional overrides in a cell are escaped
/// (`\n`, `\u{1b}`): a cell never spans lines or moves the cursor.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> Result<()> {
    write_all(&table_text(headers, rows))
}

fn table_text(headers: &[&str], rows: &[Vec<String>]) -> String {
    let cell = |s: &str| {
        if s.is_empty() {
            "-".to_owned()
        } else {
            escape(s).into_owned()
        }
    };
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, c) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell(c).chars().count());
        }
    }
    let mut text = String::new();
    let mut push = |cells: Vec<String>| {
        let last = cells.len() - 1;
        for (i, c) in cells.into_iter().enumerate() {
            text.push_str(&c);
            if i < last {
                let pad = widths[i] - c.chars().count() + 2;
                text.extend(std::iter::repeat_n(' ', pad));
            }
        }
        text.push('\n');
    };
    push(headers.iter().map(|h| h.to_string()).collect());
    for row in rows {
        push(row.iter().map(|c| cell(c)).collect());
    }
    text
}

/// A JSON string field, or "".
pub fn s(value: &Value, key: &str) -> String {
    match &value[key] {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// A Unix-millisecond field as UTC `YYYY-MM-DD HH:MM:SS`, or "".
pub fn time(value: &Value, key: &str) -> String {
    let Some(ms) = value[key].as_u64() else {
        return String::new();
    };
    let Ok(t) = time::OffsetDateTime::from_unix_timestamp((ms / 1000) as i64) else {
        return ms.to_string();
    };
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// `context operation resource` (+ ` deny`) of a permission object.
pub fn permission(p: &Value) -> String {
    let deny = if p["effect"] == "deny" { " deny" } else { "" };
    format!(
        "{} {} {}{deny}",
        s(p, "context"),
        s(p, "operation"),
        s(p, "resource")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_with_control_characters_stay_in_their_row() {
        let rows = vec![
            vec![
                "dev-1".to_owned(),
                "\x1b[2J\nfake-device  123456".to_owned(),
            ],
            vec!["dev\u{202e}2".to_owned(), String::new()],
        ];
        let text = table_text(&["NAME", "CONTEXT"], &rows);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(
            !text.contains('\x1b') && !text.contains('\u{202e}'),
            "{text}"
        );
        assert_eq!(lines[1], "dev-1         \\u{1b}[2J\\nfake-device  123456");
        assert_eq!(lines[2], "dev\\u{202e}2  -");
        assert_eq!(escape_lines("a\u{7}\nb"), "a\\u{7}\nb");
        let json = json_escaped(
            &serde_json::to_string_pretty(&serde_json::json!({"c": "a\u{202e}\u{9b}\n"})).unwrap(),
        );
        assert!(
            !json.contains('\u{202e}') && !json.contains('\u{9b}'),
            "{json}"
        );
        let back: Value = serde_json::from_str(&json).unwrap();
        assert_eq!(back["c"], "a\u{202e}\u{9b}\n");
    }
}
