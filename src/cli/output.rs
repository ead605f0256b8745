//! Output of the operator commands: aligned tables and `key: value` blocks
//! for people, JSON (`--json`) for programs. Everything shown comes from the
//! row types, whose serialization redacts passwords. A closed stdout (a pipe
//! into `head`) ends the output quietly instead of panicking.

use std::io::Write;

use chrono::{DateTime, SecondsFormat, Utc};
use metastore::secrets::redact_connection_config;
use serde::Serialize;
use serde_json::Value as Json;

/// Writes text to stdout; a broken pipe is not an error worth reporting.
pub fn emit(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}

/// Pretty JSON of a value, on stdout. Password-like fields are masked at
/// any depth (the row types already redact connection configs; this also
/// covers free-form JSON such as connector_config or script_params).
pub fn json(value: &impl Serialize) {
    let rendered = serde_json::to_value(value)
        .map(|v| redact_connection_config(&v))
        .and_then(|v| serde_json::to_string_pretty(&v));
    match rendered {
        Ok(s) => emit(&format!("{s}\n")),
        Err(e) => eprintln!("dbsync: cannot render JSON: {e}"),
    }
}

/// A table with a header row; columns are padded to their widest cell.
pub struct Table {
    headers: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(headers: &[&'static str]) -> Self {
        Self {
            headers: headers.to_vec(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn render(&self) -> String {
        let n = self.headers.len();
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for r in &self.rows {
            for (i, c) in r.iter().enumerate().take(n) {
                widths[i] = widths[i].max(c.chars().count());
            }
        }
        let line = |cells: &mut dyn Iterator<Item = &str>| {
            let mut s = String::new();
            for (i, c) in cells.enumerate().take(n) {
                if i + 1 == n {
                    s.push_str(c);
                } else {
                    s.push_str(c);
                    let pad = widths[i] - c.chars().count() + 2;
                    s.extend(std::iter::repeat_n(' ', pad));
                }
            }
            s.truncate(s.trim_end().len());
            s.push('\n');
            s
        };
        let mut out = line(&mut self.headers.iter().copied());
        for r in &self.rows {
            out.push_str(&line(&mut r.iter().map(String::as_str)));
        }
        if self.rows.is_empty() {
            out.push_str("(none)\n");
        }
        out
    }

    pub fn print(&self) {
        emit(&self.render());
    }
}

/// `key: value` lines with the values aligned.
pub fn fields(pairs: &[(&str, String)]) -> String {
    let w = pairs.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let mut out = String::new();
    for (k, v) in pairs {
        let mut lines = v.lines();
        out.push_str(&format!(
            "{k}:{}{}\n",
            " ".repeat(w - k.len() + 1),
            lines.next().unwrap_or("")
        ));
        for more in lines {
            out.push_str(&format!("{}{more}\n", " ".repeat(w + 2)));
        }
    }
    out
}

/// At most `max` characters on one line, with `…` when cut.
pub fn short(s: &str, max: usize) -> String {
    let one_line = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() <= max {
        return one_line;
    }
    let mut cut: String = one_line.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

pub fn opt(v: &Option<String>) -> String {
    v.clone().unwrap_or_else(|| "-".into())
}

pub fn time(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

pub fn opt_time(t: &Option<DateTime<Utc>>) -> String {
    t.as_ref().map_or_else(|| "-".into(), time)
}

/// Compact JSON on one line (`-` for null), password-like fields masked.
pub fn compact(v: &Json) -> String {
    if v.is_null() {
        "-".into()
    } else {
        redact_connection_config(v).to_string()
    }
}

/// A JSON array's length as a count (0 for anything else).
pub fn count(v: &Json) -> usize {
    v.as_array().map_or(0, Vec::len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_on_the_widest_cell() {
        let mut t = Table::new(&["CODE", "NAME"]);
        t.row(vec!["a".into(), "Alpha".into()]);
        t.row(vec!["ünïcode".into(), "B".into()]);
        assert_eq!(t.render(), "CODE     NAME\na        Alpha\nünïcode  B\n");
        assert_eq!(Table::new(&["X"]).render(), "X\n(none)\n");
    }

    #[test]
    fn fields_and_short_text() {
        let s = fields(&[("a", "1".into()), ("long key", "x\ny".into())]);
        assert_eq!(s, "a:        1\nlong key: x\n          y\n");
        assert_eq!(short("abc  def\nghi", 20), "abc def ghi");
        assert_eq!(short("abcdefghij", 5), "abcd…");
    }
}
