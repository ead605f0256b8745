use super::*;
use crate::mysql::tablemap::{col, MapColumn};

fn cell(ty: u8, meta: u16, meta2: u8, ct: &ColType, bytes: &[u8]) -> Result<Value, DecodeError> {
    let mut r = Reader::new(bytes, "test");
    let v = decode_cell(
        &mut r,
        &MapColumn { ty, meta, meta2 },
        ct,
        &ValueOpts::default(),
    )?;
    assert_eq!(r.remaining(), 0, "every byte consumed");
    Ok(v)
}

fn dec(p: u32, s: u32, bytes: &[u8]) -> String {
    let mut r = Reader::new(bytes, "test");
    decode_decimal(&mut r, p, s).unwrap()
}

#[test]
fn decimals_decode_exactly() {
    // The examples of MySQL's decimal2bin documentation.
    assert_eq!(
        dec(14, 4, &[0x81, 0x0D, 0xFB, 0x38, 0xD2, 0x04, 0xD2]),
        "1234567890.1234"
    );
    assert_eq!(
        dec(14, 4, &[0x7E, 0xF2, 0x04, 0xC7, 0x2D, 0xFB, 0x2D]),
        "-1234567890.1234"
    );
    assert_eq!(decimal_size(14, 4), 7);
    assert_eq!(decimal_size(65, 30), 30);
    // 0.50 as decimal(10,2): intg 8 → 4 bytes, frac 2 digits → 1 byte.
    assert_eq!(dec(10, 2, &[0x80, 0, 0, 0, 50]), "0.50");
    assert_eq!(dec(10, 0, &[0x80, 0, 0, 0, 7]), "7");
    let mut r = Reader::new(&[0x80, 0, 0, 0, 200], "t");
    assert!(
        decode_decimal(&mut r, 10, 2).is_err(),
        "fraction digits above 99"
    );
    let mut r = Reader::new(&[0x80], "t");
    assert!(decode_decimal(&mut r, 10, 2).is_err(), "truncated");
}

#[test]
fn integers_follow_signedness_and_width() {
    let s = |bytes| ColType::Int {
        bytes,
        unsigned: false,
        zerofill: false,
    };
    let u = |bytes| ColType::Int {
        bytes,
        unsigned: true,
        zerofill: false,
    };
    assert_eq!(
        cell(col::TINY, 0, 0, &s(1), &[0xff]).unwrap(),
        Value::Int16(-1)
    );
    assert_eq!(
        cell(col::TINY, 0, 0, &u(1), &[0xff]).unwrap(),
        Value::Int16(255)
    );
    assert_eq!(
        cell(col::SHORT, 0, 0, &u(2), &[0xff, 0xff]).unwrap(),
        Value::Int32(65535)
    );
    assert_eq!(
        cell(col::INT24, 0, 0, &s(3), &[0xff, 0xff, 0xff]).unwrap(),
        Value::Int32(-1)
    );
    assert_eq!(
        cell(col::INT24, 0, 0, &u(3), &[0xff, 0xff, 0xff]).unwrap(),
        Value::Int32(16_777_215)
    );
    assert_eq!(
        cell(col::LONG, 0, 0, &u(4), &[0xff; 4]).unwrap(),
        Value::Int64(4_294_967_295)
    );
    assert_eq!(
        cell(col::LONGLONG, 0, 0, &u(8), &[0xff; 8]).unwrap(),
        Value::Decimal("18446744073709551615".into())
    );
    assert_eq!(
        cell(col::LONGLONG, 0, 0, &s(8), &[0xff; 8]).unwrap(),
        Value::Int64(-1)
    );
    assert_eq!(
        cell(col::YEAR, 0, 0, &ColType::Year, &[124]).unwrap(),
        Value::Int16(2024)
    );
    assert!(cell(col::LONG, 0, 0, &s(4), &[1, 2]).is_err(), "truncated");
}

#[test]
fn temporal_values_decode_including_negative_and_long_times() {
    let t = |fsp| ColType::Time { fsp };
    // TIME2(0) '-838:59:59': intpart = -(838<<12 | 59<<6 | 59).
    let hms: i64 = (838 << 12) | (59 << 6) | 59;
    let v = (0x80_0000 - hms) as u32;
    let b = [(v >> 16) as u8, (v >> 8) as u8, v as u8];
    assert_eq!(
        cell(col::TIME2, 0, 0, &t(0), &b).unwrap(),
        Value::Interval(Interval {
            months: 0,
            days: 0,
            micros: -(838 * 3600 + 59 * 60 + 59) * 1_000_000
        })
    );
    // TIME2(6) '-00:00:00.000001'.
    let packed: i64 = 0x8000_0000_0000 - 1;
    let b: Vec<u8> = (0..6).rev().map(|i| (packed >> (8 * i)) as u8).collect();
    assert_eq!(
        cell(col::TIME2, 6, 0, &t(6), &b).unwrap(),
        Value::Interval(Interval {
            months: 0,
            days: 0,
            micros: -1
        })
    );
    // DATETIME2(0) 2024-02-29 13:14:15.
    let ym: u64 = 2024 * 13 + 2;
    let int = (((ym << 5) | 29) << 17) | (13 << 12) | (14 << 6) | 15;
    let v = int + 0x80_0000_0000;
    let b: Vec<u8> = (0..5).rev().map(|i| (v >> (8 * i)) as u8).collect();
    let dt = NaiveDate::from_ymd_opt(2024, 2, 29)
        .unwrap()
        .and_hms_opt(13, 14, 15)
        .unwrap();
    assert_eq!(
        cell(col::DATETIME2, 0, 0, &ColType::DateTime { fsp: 0 }, &b).unwrap(),
        Value::Timestamp(dt)
    );
    // TIMESTAMP2(3) 1970-01-01 00:00:01.5 UTC.
    let v = cell(
        col::TIMESTAMP2,
        3,
        0,
        &ColType::Timestamp { fsp: 3 },
        &[0, 0, 0, 1, 0x13, 0x88],
    )
    .unwrap();
    assert_eq!(
        v,
        Value::TimestampTz(DateTime::from_timestamp(1, 500_000_000).unwrap())
    );
    // DATE 2024-02-29 and the zero date under both policies.
    let d: u32 = (2024 << 9) | (2 << 5) | 29;
    assert_eq!(
        cell(col::DATE, 0, 0, &ColType::Date, &d.to_le_bytes()[..3]).unwrap(),
        Value::Date(NaiveDate::from_ymd_opt(2024, 2, 29).unwrap())
    );
    assert_eq!(
        cell(col::DATE, 0, 0, &ColType::Date, &[0, 0, 0]).unwrap(),
        Value::Null
    );
    let text = ValueOpts {
        zero_dates: ZeroDates::Text,
    };
    let mut r = Reader::new(&[0, 0, 0, 0, 0], "t");
    let m = MapColumn {
        ty: col::DATETIME2,
        meta: 0,
        meta2: 0,
    };
    // All-zero bytes are below the offset: a corrupt value, handled without panicking.
    let _ = decode_cell(&mut r, &m, &ColType::DateTime { fsp: 0 }, &text);
    assert_eq!(
        temporal(
            &ColType::DateTime { fsp: 2 },
            Parts {
                year: 2024,
                month: 0,
                day: 10,
                ..Parts::default()
            },
            &text
        ),
        Value::Other("2024-00-10 00:00:00.00".into())
    );
}

#[test]
fn strings_enums_sets_and_bits() {
    let vc = ColType::VarChar {
        len: 10,
        charset: Charset::Utf8mb4,
    };
    assert_eq!(
        cell(col::VARCHAR, 40, 0, &vc, b"\x03a\xc3\xa9").unwrap(),
        Value::Text("aé".into())
    );
    assert!(
        cell(col::VARCHAR, 40, 0, &vc, b"\x02\xff\xfe").is_err(),
        "invalid UTF-8 is an error"
    );
    let l1 = ColType::VarChar {
        len: 300,
        charset: Charset::Latin1,
    };
    assert_eq!(
        cell(col::VARCHAR, 300, 0, &l1, b"\x02\x00\xe9\x80").unwrap(),
        Value::Text("é€".into())
    );
    let bin = ColType::Char {
        len: 4,
        charset: Charset::Binary,
    };
    assert_eq!(
        cell(col::STRING, 4, 0, &bin, b"\x02ab").unwrap(),
        Value::Bytes(b"ab\0\0".to_vec())
    );
    let e = ColType::Enum {
        values: vec!["x".into(), "y".into()],
        charset: Charset::Utf8mb4,
    };
    assert_eq!(
        cell(col::ENUM, 1, 0, &e, &[2]).unwrap(),
        Value::Text("y".into())
    );
    assert_eq!(
        cell(col::ENUM, 1, 0, &e, &[0]).unwrap(),
        Value::Text(String::new())
    );
    assert!(cell(col::ENUM, 1, 0, &e, &[3]).is_err());
    let s = ColType::Set {
        values: vec!["r".into(), "w".into(), "x".into()],
        charset: Charset::Utf8mb4,
    };
    assert_eq!(
        cell(col::SET, 1, 0, &s, &[0b101]).unwrap(),
        Value::Text("r,x".into())
    );
    assert_eq!(
        cell(col::BIT, 0, 1, &ColType::Bit { bits: 1 }, &[1]).unwrap(),
        Value::Bool(true)
    );
    assert_eq!(
        cell(col::BIT, 1, 4, &ColType::Bit { bits: 12 }, &[0x0a, 0xbc]).unwrap(),
        Value::Bytes(vec![0x0a, 0xbc])
    );
    let blob = ColType::Lob {
        size: crate::mysql::types::LobSize::Normal,
        charset: Charset::Binary,
    };
    assert_eq!(
        cell(col::BLOB, 2, 0, &blob, &[2, 0, 0, 1]).unwrap(),
        Value::Bytes(vec![0, 1])
    );
    assert!(
        cell(col::BLOB, 2, 0, &blob, &[9, 0, 0]).is_err(),
        "length beyond the event"
    );
    assert_eq!(
        cell(col::BLOB, 4, 0, &ColType::Json, b"\x02\0\0\0{}").unwrap(),
        Value::Json("{}".into())
    );
    assert_eq!(
        decode_text(&[0, 0x41, 0xd8, 0x3d, 0xde, 0x00], &Charset::Utf16).unwrap(),
        "A😀"
    );
    assert!(decode_text(b"x", &Charset::Other("gbk".into())).is_err());
}

#[test]
fn protocol_values_match_the_binlog_forms() {
    let o = ValueOpts::default();
    let u8b = ColType::Int {
        bytes: 8,
        unsigned: true,
        zerofill: false,
    };
    assert_eq!(
        from_protocol(mysql_async::Value::UInt(u64::MAX), &u8b, &o).unwrap(),
        Value::Decimal("18446744073709551615".into())
    );
    assert_eq!(
        from_protocol(
            mysql_async::Value::Time(true, 34, 22, 59, 59, 1),
            &ColType::Time { fsp: 6 },
            &o
        )
        .unwrap(),
        Value::Interval(Interval {
            months: 0,
            days: 0,
            micros: -((838 * 3600 + 59 * 60 + 59) * 1_000_000 + 1)
        })
    );
    assert_eq!(
        from_protocol(
            mysql_async::Value::Date(0, 0, 0, 0, 0, 0, 0),
            &ColType::Timestamp { fsp: 0 },
            &o
        )
        .unwrap(),
        Value::Null
    );
    assert_eq!(
        from_protocol(
            mysql_async::Value::Bytes(vec![1]),
            &ColType::Bit { bits: 1 },
            &o
        )
        .unwrap(),
        Value::Bool(true)
    );
}
