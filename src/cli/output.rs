//! Standard output: aligned tables for people, JSON for scripts. A reader
//! that goes away early (`gatehouse user list | head -1`) ends the command
//! quietly with exit 0 instead of a panic: every write goes through here
//! and turns a broken pipe into [`closed`].

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

/// One line.
pub fn line(text: impl std::fmt::Display) -> Result<()> {
    write_all(&format!("{text}\n"))
}

/// Text as it is (e.g. a PEM, or TOML).
pub fn raw(text: &str) -> Result<()> {
    write_all(text)
}

/// Pretty JSON.
pub fn json(value: &Value) -> Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(|e| CliError::failed(e.to_string()))?;
    line(text)
}

/// Columns padded to their widest cell, two spaces apart; `-` for empty.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> Result<()> {
    let cell = |s: &str| {
        if s.is_empty() {
            "-".to_owned()
        } else {
            s.to_owned()
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
    write_all(&text)
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
