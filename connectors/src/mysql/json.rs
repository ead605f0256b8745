//! MySQL's binary JSON (the `JSON` column format in row images) → JSON text,
//! formatted the way MySQL prints JSON (`{"a": 1, "b": [1, 2]}`), so that a
//! value reads the same whether it came from the snapshot (the server's text)
//! or from the binlog.
//!
//! Not exercised against a live MySQL here (MariaDB stores JSON as text);
//! the double formatting follows MySQL's documented `print_double` (shortest
//! round-trip digits, `.0` appended to integral values).

use super::binlog::{DecodeError, Reader};

const MAX_DEPTH: usize = 150;

fn err<T>(msg: &str) -> Result<T, DecodeError> {
    Err(DecodeError(format!("binary JSON: {msg}")))
}

/// Converts a binary JSON document to text.
pub fn to_text(doc: &[u8]) -> Result<String, DecodeError> {
    if doc.is_empty() {
        return Ok("null".into());
    }
    let mut out = String::with_capacity(doc.len() * 2);
    value(doc[0], &doc[1..], &mut out, 0)?;
    Ok(out)
}

fn value(ty: u8, data: &[u8], out: &mut String, depth: usize) -> Result<(), DecodeError> {
    if depth > MAX_DEPTH {
        return err("nested too deeply");
    }
    let mut r = Reader::new(data, "binary JSON");
    match ty {
        0x00 => container(data, false, true, out, depth),
        0x01 => container(data, true, true, out, depth),
        0x02 => container(data, false, false, out, depth),
        0x03 => container(data, true, false, out, depth),
        0x04 => {
            out.push_str(match r.u8()? {
                0 => "null",
                1 => "true",
                2 => "false",
                _ => return err("unknown literal"),
            });
            Ok(())
        }
        0x05 => push_display(out, r.u16()? as i16),
        0x06 => push_display(out, r.u16()?),
        0x07 => push_display(out, r.u32()? as i32),
        0x08 => push_display(out, r.u32()?),
        0x09 => push_display(out, r.u64()? as i64),
        0x0a => push_display(out, r.u64()?),
        0x0b => {
            push_double(out, f64::from_bits(r.u64()?));
            Ok(())
        }
        0x0c => {
            let len = var_len(&mut r)?;
            let s = std::str::from_utf8(r.take(len)?)
                .map_err(|_| DecodeError("binary JSON: string is not UTF-8".into()))?;
            push_string(out, s);
            Ok(())
        }
        0x0f => opaque(&mut r, out),
        _ => err("unknown value type"),
    }
}

fn push_display(out: &mut String, v: impl std::fmt::Display) -> Result<(), DecodeError> {
    use std::fmt::Write;
    let _ = write!(out, "{v}");
    Ok(())
}

fn var_len(r: &mut Reader<'_>) -> Result<usize, DecodeError> {
    let mut len = 0usize;
    for i in 0..5 {
        let b = r.u8()?;
        len |= usize::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(len);
        }
    }
    err("variable length too long")
}

fn container(
    data: &[u8],
    large: bool,
    object: bool,
    out: &mut String,
    depth: usize,
) -> Result<(), DecodeError> {
    let w = if large { 4 } else { 2 };
    let mut r = Reader::new(data, "binary JSON");
    let count = r.uint(w)? as usize;
    let size = r.uint(w)? as usize;
    if size > data.len() {
        return err("container size exceeds the document");
    }
    let data = &data[..size];
    let key_entry = w + 2;
    let value_entry = 1 + w;
    let header = 2 * w
        + count.saturating_mul(if object { key_entry } else { 0 })
        + count.saturating_mul(value_entry);
    if header > size {
        return err("container header exceeds its size");
    }
    out.push(if object { '{' } else { '[' });
    for i in 0..count {
        if i > 0 {
            out.push_str(", ");
        }
        if object {
            let mut kr = Reader::new(&data[2 * w + i * key_entry..], "binary JSON key");
            let off = kr.uint(w)? as usize;
            let len = kr.u16()? as usize;
            let key = data
                .get(off..off + len)
                .ok_or_else(|| DecodeError("binary JSON: key out of bounds".into()))?;
            let key = std::str::from_utf8(key)
                .map_err(|_| DecodeError("binary JSON: key is not UTF-8".into()))?;
            push_string(out, key);
            out.push_str(": ");
        }
        let base = 2 * w + if object { count * key_entry } else { 0 } + i * value_entry;
        let mut vr = Reader::new(&data[base..], "binary JSON value entry");
        let ty = vr.u8()?;
        let inlined = matches!(ty, 0x04..=0x06) || (large && matches!(ty, 0x07 | 0x08));
        if inlined {
            let v = vr.take(w)?;
            value(ty, v, out, depth + 1)?;
        } else {
            let off = vr.uint(w)? as usize;
            let v = data
                .get(off..)
                .ok_or_else(|| DecodeError("binary JSON: value out of bounds".into()))?;
            value(ty, v, out, depth + 1)?;
        }
    }
    out.push(if object { '}' } else { ']' });
    Ok(())
}

fn opaque(r: &mut Reader<'_>, out: &mut String) -> Result<(), DecodeError> {
    use super::tablemap::col;
    let field_type = r.u8()?;
    let len = var_len(r)?;
    let data = r.take(len)?;
    match field_type {
        col::NEWDECIMAL => {
            let mut dr = Reader::new(data, "JSON decimal");
            let p = dr.u8()?;
            let s = dr.u8()?;
            out.push_str(&super::values::decode_decimal(
                &mut dr,
                u32::from(p),
                u32::from(s),
            )?);
        }
        col::DATE | col::TIME | col::DATETIME | col::TIMESTAMP => {
            let packed = Reader::new(data, "JSON temporal").u64()? as i64;
            out.push('"');
            out.push_str(&packed_temporal(field_type, packed));
            out.push('"');
        }
        _ => {
            // MySQL prints other opaque values as base64 with their type.
            out.push_str(&format!("\"base64:type{field_type}:{}\"", base64(data)));
        }
    }
    Ok(())
}

fn packed_temporal(ty: u8, packed: i64) -> String {
    use super::tablemap::col;
    let neg = packed < 0;
    let p = packed.unsigned_abs();
    let frac = p % (1 << 24);
    let int = p >> 24;
    if ty == col::TIME {
        let hms = int;
        return format!(
            "{}{:02}:{:02}:{:02}.{frac:06}",
            if neg { "-" } else { "" },
            (hms >> 12) % (1 << 10),
            (hms >> 6) % 64,
            hms % 64
        );
    }
    let ymd = int >> 17;
    let ym = ymd >> 5;
    let hms = int % (1 << 17);
    let date = format!("{:04}-{:02}-{:02}", ym / 13, ym % 13, ymd % 32);
    if ty == col::DATE {
        date
    } else {
        format!(
            "{date} {:02}:{:02}:{:02}.{frac:06}",
            hms >> 12,
            (hms >> 6) % 64,
            hms % 64
        )
    }
}

fn base64(b: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::with_capacity(b.len().div_ceil(3) * 4);
    for c in b.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                s.push(char::from(T[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                s.push('=');
            }
        }
    }
    s
}

/// Appends a JSON string literal with MySQL's escaping.
pub fn push_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A double as MySQL prints it in JSON: shortest round-trip digits,
/// scientific notation below 1e-4 or from 1e17, `.0` on integral values.
pub fn push_double(out: &mut String, d: f64) {
    let sci = format!("{d:e}");
    let exp: i32 = sci
        .rsplit_once('e')
        .and_then(|(_, e)| e.parse().ok())
        .unwrap_or(0);
    if d != 0.0 && !(-4..17).contains(&exp) {
        out.push_str(&sci);
    } else {
        let s = format!("{d}");
        let integral = s.bytes().all(|b| b.is_ascii_digit() || b == b'-');
        out.push_str(&s);
        if integral {
            out.push_str(".0");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalars_and_containers_print_like_mysql() {
        // {"a": 1, "b": [true, "x"]} in small format, built by hand.
        let mut arr = vec![2u8, 0, 0, 0]; // count 2, size (patched)
        arr.extend([0x04, 1, 0]); // true, inlined
        arr.extend([0x0c, 10, 0]); // string at offset 10
        arr.extend([1, b'x']);
        let alen = arr.len() as u16;
        arr[2..4].copy_from_slice(&alen.to_le_bytes());
        let mut obj = vec![2u8, 0, 0, 0];
        // key entries: offset, len
        let keys_at = 4 + 2 * 4 + 2 * 3;
        obj.extend((keys_at as u16).to_le_bytes());
        obj.extend(1u16.to_le_bytes());
        obj.extend((keys_at as u16 + 1).to_le_bytes());
        obj.extend(1u16.to_le_bytes());
        obj.extend([0x05, 1, 0]); // int16 1 inlined
        let arr_at = keys_at as u16 + 2;
        obj.push(0x02);
        obj.extend(arr_at.to_le_bytes());
        obj.extend(b"ab");
        obj.extend(&arr);
        let size = obj.len() as u16;
        obj[2..4].copy_from_slice(&size.to_le_bytes());
        let mut doc = vec![0x00];
        doc.extend(obj);
        assert_eq!(to_text(&doc).unwrap(), r#"{"a": 1, "b": [true, "x"]}"#);
    }

    #[test]
    fn doubles_strings_and_garbage() {
        let mut s = String::new();
        push_double(&mut s, 1.5);
        s.push(' ');
        push_double(&mut s, 3.0);
        s.push(' ');
        push_double(&mut s, 1e20);
        assert_eq!(s, "1.5 3.0 1e20");
        let mut s = String::new();
        push_string(&mut s, "a\"b\\\n\u{1}é");
        assert_eq!(s, r#""a\"b\\\n\u0001é""#);
        for bad in [
            &[0x00u8, 5, 0][..],
            &[0x0c, 0x85],
            &[0x42],
            &[0x02, 0xff, 0xff, 0xff, 0xff],
        ] {
            assert!(to_text(bad).is_err(), "{bad:?}");
        }
        assert_eq!(base64(b"ab"), "YWI=");
    }
}
