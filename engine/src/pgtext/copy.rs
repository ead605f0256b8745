//! `COPY` text format: field escaping for `COPY ... FROM STDIN` and line
//! splitting for `COPY ... TO STDOUT`.

use super::{hex_val, Out, ParseError};

const LINE: &str = "COPY line";

/// An [`Out`] that appends to a byte buffer with COPY text escaping of
/// backslash, tab, newline and carriage return.
pub(super) struct CopyEscape<'a>(pub &'a mut Vec<u8>);

#[inline]
fn escape_of(c: u8) -> Option<u8> {
    match c {
        b'\\' => Some(b'\\'),
        b'\t' => Some(b't'),
        b'\n' => Some(b'n'),
        b'\r' => Some(b'r'),
        _ => None,
    }
}

impl Out for CopyEscape<'_> {
    fn put_str(&mut self, s: &str) {
        let src = s.as_bytes();
        let out = &mut *self.0;
        let mut run = 0;
        for (i, &c) in src.iter().enumerate() {
            if let Some(e) = escape_of(c) {
                out.extend_from_slice(&src[run..i]);
                out.extend_from_slice(&[b'\\', e]);
                run = i + 1;
            }
        }
        out.extend_from_slice(&src[run..]);
    }

    fn put_ascii(&mut self, c: u8) {
        match escape_of(c) {
            Some(e) => self.0.extend_from_slice(&[b'\\', e]),
            None => self.0.push(c),
        }
    }
}

/// See [`super::split_copy_line`].
pub(super) fn split_line(line: &[u8], fields: &mut Vec<Option<String>>) -> Result<(), ParseError> {
    fields.clear();
    let mut start = 0;
    loop {
        // The field ends at the next tab that is not escaped (`\` + a literal
        // tab is a data tab).
        let mut i = start;
        let mut escaped = false;
        while let Some(off) = memchr::memchr2(b'\t', b'\\', &line[i..]) {
            i += off;
            if line[i] == b'\t' {
                break;
            }
            escaped = true;
            i += 2;
            if i > line.len() {
                return Err(ParseError::new(LINE, "backslash at end of line"));
            }
        }
        let end = if i < line.len() && line[i] == b'\t' {
            i
        } else {
            line.len()
        };
        let raw = &line[start..end];
        fields.push(if !escaped {
            Some(utf8(raw.to_vec())?)
        } else if raw == b"\\N" {
            None
        } else {
            Some(utf8(unescape(raw))?)
        });
        if end == line.len() {
            return Ok(());
        }
        start = end + 1;
    }
}

fn utf8(bytes: Vec<u8>) -> Result<String, ParseError> {
    String::from_utf8(bytes).map_err(|_| ParseError::new(LINE, "field is not valid UTF-8"))
}

/// Decodes the escapes of one field (which does not end in a lone backslash).
fn unescape(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while let Some(off) = memchr::memchr(b'\\', &raw[i..]) {
        out.extend_from_slice(&raw[i..i + off]);
        i += off + 1;
        let e = raw[i];
        i += 1;
        let byte = match e {
            b'b' => 0x08,
            b'f' => 0x0c,
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            b'v' => 0x0b,
            b'0'..=b'7' => {
                let mut v = u32::from(e - b'0');
                for _ in 0..2 {
                    match raw.get(i) {
                        Some(&d @ b'0'..=b'7') => {
                            v = v * 8 + u32::from(d - b'0');
                            i += 1;
                        }
                        _ => break,
                    }
                }
                (v & 0xff) as u8
            }
            b'x' => match raw.get(i).copied().and_then(hex_val) {
                Some(h) => {
                    i += 1;
                    match raw.get(i).copied().and_then(hex_val) {
                        Some(l) => {
                            i += 1;
                            h << 4 | l
                        }
                        None => h,
                    }
                }
                // `\x` without hex digits is a plain `x`, as in PostgreSQL.
                None => b'x',
            },
            other => other,
        };
        out.push(byte);
    }
    out.extend_from_slice(&raw[i..]);
    out
}
