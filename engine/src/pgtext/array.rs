//! PostgreSQL array literals: `{1,2,NULL}`, `{"a b","c\"d"}`, `{{1,2},{3,4}}`.

use super::{parse, render_to, Out, ParseError};
use crate::value::{DataType, Value};

/// PostgreSQL's limit on array dimensions (`MAXDIM`).
const MAX_DIMS: usize = 6;

fn malformed(reason: &str) -> ParseError {
    ParseError::new("array", format!("malformed array literal: {reason}"))
}

/// Whitespace as PostgreSQL's `array_isspace` sees it.
#[inline]
fn is_ws(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && is_ws(b[i]) {
        i += 1;
    }
    i
}

fn trim_ws_end(s: &str) -> &str {
    s.trim_end_matches(|c: char| c.is_ascii() && is_ws(c as u8))
}

/// An array literal whose elements are of type `elem`. Multi-dimensional
/// arrays become nested [`Value::Array`]s; a literal with explicit bounds
/// (`[0:1]={1,2}`) stays exact as [`Value::Other`].
pub(super) fn parse_array(elem: &DataType, text: &str) -> Result<Value, ParseError> {
    let b = text.as_bytes();
    let mut p = Parser {
        text,
        pos: skip_ws(b, 0),
        elem,
    };
    match b.get(p.pos) {
        Some(b'[') => return Ok(Value::Other(text.to_owned())),
        Some(b'{') => {}
        _ => return Err(malformed("expected '{'")),
    }
    let v = p.array(1)?;
    if skip_ws(b, p.pos) != b.len() {
        return Err(malformed("text after the closing brace"));
    }
    Ok(v)
}

struct Parser<'a> {
    text: &'a str,
    pos: usize,
    elem: &'a DataType,
}

impl Parser<'_> {
    /// One `{...}` level; `self.pos` is at its `{`.
    fn array(&mut self, depth: usize) -> Result<Value, ParseError> {
        let b = self.text.as_bytes();
        self.pos = skip_ws(b, self.pos + 1);
        let mut items = Vec::new();
        if b.get(self.pos) == Some(&b'}') {
            self.pos += 1;
            return Ok(Value::Array(items));
        }
        let mut nested = None;
        loop {
            self.pos = skip_ws(b, self.pos);
            let sub = b.get(self.pos) == Some(&b'{');
            if *nested.get_or_insert(sub) != sub {
                return Err(malformed("mixed sub-arrays and elements"));
            }
            if sub {
                if depth >= MAX_DIMS {
                    return Err(malformed("more than 6 dimensions"));
                }
                items.push(self.array(depth + 1)?);
            } else {
                items.push(self.element()?);
            }
            self.pos = skip_ws(b, self.pos);
            match b.get(self.pos) {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    break;
                }
                _ => return Err(malformed("expected ',' or '}'")),
            }
        }
        Ok(Value::Array(items))
    }

    /// One element (leading whitespace already skipped); `self.pos` ends at
    /// the `,` or `}` after it.
    fn element(&mut self) -> Result<Value, ParseError> {
        let text = self.text;
        let b = text.as_bytes();
        let start = self.pos;
        let mut i = start;
        // Fast path: no quotes, no escapes; the element is a slice of the input.
        while i < b.len() {
            match b[i] {
                b',' | b'}' => break,
                b'"' | b'\\' => return self.quoted_element(),
                b'{' => return Err(malformed("unexpected '{'")),
                _ => i += 1,
            }
        }
        if i == b.len() {
            return Err(malformed("unterminated"));
        }
        self.pos = i;
        let raw = trim_ws_end(&text[start..i]);
        if raw.is_empty() {
            return Err(malformed("empty unquoted element"));
        }
        if raw.eq_ignore_ascii_case("NULL") {
            return Ok(Value::Null);
        }
        parse(self.elem, raw)
    }

    /// An element with double quotes and/or backslash escapes (never NULL).
    /// Unquoted trailing whitespace is dropped; quoted or escaped is kept.
    fn quoted_element(&mut self) -> Result<Value, ParseError> {
        let text = self.text;
        let b = text.as_bytes();
        let mut buf = String::new();
        // Length of `buf` without its trailing unquoted whitespace.
        let mut keep = 0;
        let mut in_quotes = false;
        let mut i = self.pos;
        let mut run = i;
        let flush = |buf: &mut String, keep: &mut usize, seg: &str, in_quotes: bool| {
            buf.push_str(seg);
            if in_quotes {
                *keep = buf.len();
            } else {
                let significant = trim_ws_end(seg);
                if !significant.is_empty() {
                    *keep = buf.len() - (seg.len() - significant.len());
                }
            }
        };
        loop {
            let Some(&c) = b.get(i) else {
                return Err(malformed("unterminated"));
            };
            match c {
                b'"' => {
                    flush(&mut buf, &mut keep, &text[run..i], in_quotes);
                    in_quotes = !in_quotes;
                    keep = buf.len();
                    i += 1;
                    run = i;
                }
                b'\\' => {
                    flush(&mut buf, &mut keep, &text[run..i], in_quotes);
                    let Some(ch) = text[i + 1..].chars().next() else {
                        return Err(malformed("unterminated"));
                    };
                    buf.push(ch);
                    keep = buf.len();
                    i += 1 + ch.len_utf8();
                    run = i;
                }
                b',' | b'}' if !in_quotes => {
                    flush(&mut buf, &mut keep, &text[run..i], in_quotes);
                    break;
                }
                b'{' if !in_quotes => return Err(malformed("unexpected '{'")),
                _ => i += 1,
            }
        }
        buf.truncate(keep);
        self.pos = i;
        parse(self.elem, &buf)
    }
}

/// `{...}` with elements quoted where PostgreSQL's `array_in` needs it and
/// `NULL` for null elements; nested arrays are sub-arrays.
pub(super) fn render_array<O: Out>(items: &[Value], out: &mut O) {
    let mut scratch = String::new();
    render_level(items, out, &mut scratch);
}

fn render_level<O: Out>(items: &[Value], out: &mut O, scratch: &mut String) {
    out.put_ascii(b'{');
    for (n, item) in items.iter().enumerate() {
        if n > 0 {
            out.put_ascii(b',');
        }
        match item {
            Value::Array(sub) => render_level(sub, out, scratch),
            Value::Null => out.put_str("NULL"),
            Value::Unchanged => {
                debug_assert!(false, "pgtext: unchanged value inside an array");
                out.put_str("NULL");
            }
            Value::Text(s) | Value::Json(s) | Value::Other(s) | Value::Decimal(s) => {
                put_element(s, out);
            }
            _ => {
                scratch.clear();
                render_to(item, scratch);
                put_element(scratch, out);
            }
        }
    }
    out.put_ascii(b'}');
}

fn needs_quotes(s: &str) -> bool {
    s.is_empty()
        || s.eq_ignore_ascii_case("NULL")
        || s.bytes()
            .any(|c| matches!(c, b'{' | b'}' | b',' | b'"' | b'\\') || is_ws(c))
}

fn put_element<O: Out>(s: &str, out: &mut O) {
    if !needs_quotes(s) {
        out.put_str(s);
        return;
    }
    out.put_ascii(b'"');
    let mut run = 0;
    for (i, c) in s.bytes().enumerate() {
        if c == b'"' || c == b'\\' {
            out.put_str(&s[run..i]);
            out.put_ascii(b'\\');
            out.put_ascii(c);
            run = i + 1;
        }
    }
    out.put_str(&s[run..]);
    out.put_ascii(b'"');
}
