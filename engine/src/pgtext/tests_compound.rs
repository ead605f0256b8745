//! Unit tests of arrays, COPY text format and whole-value round trips.

use chrono::{NaiveDate, NaiveTime};

use super::tests::{p, r, Rng};
use super::*;
use crate::value::Interval;

fn arr(elem: DataType) -> DataType {
    DataType::Array(Box::new(elem))
}

fn text() -> DataType {
    DataType::Text { max_len: None }
}

fn t(s: &str) -> Value {
    Value::Text(s.into())
}

fn copy(v: &Value) -> String {
    let mut out = Vec::new();
    render_copy(v, &mut out);
    String::from_utf8(out).unwrap()
}

fn split(line: &str) -> Vec<Option<String>> {
    let mut fields = vec![Some("stale".to_string())];
    split_copy_line(line.as_bytes(), &mut fields).unwrap();
    fields
}

#[test]
fn arrays_parse() {
    let ints = arr(DataType::Int32);
    assert_eq!(
        p(&ints, "{1,2,NULL}"),
        Value::Array(vec![Value::Int32(1), Value::Int32(2), Value::Null])
    );
    assert_eq!(p(&ints, "{}"), Value::Array(vec![]));
    assert_eq!(p(&ints, " { } "), Value::Array(vec![]));
    assert_eq!(
        p(&ints, "{ 1 , -2 }"),
        Value::Array(vec![Value::Int32(1), Value::Int32(-2)])
    );
    assert_eq!(
        p(&ints, "{{1,2},{3,NULL}}"),
        Value::Array(vec![
            Value::Array(vec![Value::Int32(1), Value::Int32(2)]),
            Value::Array(vec![Value::Int32(3), Value::Null]),
        ])
    );
    assert_eq!(
        p(&ints, "{{{1}},{{2}}}"),
        Value::Array(vec![
            Value::Array(vec![Value::Array(vec![Value::Int32(1)])]),
            Value::Array(vec![Value::Array(vec![Value::Int32(2)])]),
        ])
    );
    // Explicit bounds stay exact.
    assert_eq!(p(&ints, "[0:1]={1,2}"), Value::Other("[0:1]={1,2}".into()));
    assert_eq!(
        p(
            &arr(text()),
            r#"{"a b","c\"d","e\\f","",NULL,"NULL",null,plain, x y ,"{}"}"#
        ),
        Value::Array(vec![
            t("a b"),
            t("c\"d"),
            t("e\\f"),
            t(""),
            Value::Null,
            t("NULL"),
            Value::Null,
            t("plain"),
            t("x y"),
            t("{}"),
        ])
    );
    // Escapes outside quotes, kept escaped trailing whitespace, mixed quoting.
    assert_eq!(
        p(&arr(text()), r#"{a\,b,c\ ,  "q"  ,ab"c d"e,\N,ü\ü}"#),
        Value::Array(vec![
            t("a,b"),
            t("c "),
            t("q"),
            t("abc de"),
            t("N"),
            t("üü"),
        ])
    );
    assert_eq!(
        p(&arr(DataType::Bytes), r#"{"\\x0001",NULL}"#),
        Value::Array(vec![Value::Bytes(vec![0, 1]), Value::Null])
    );
    assert_eq!(
        p(&arr(DataType::Date), "{2024-01-02,infinity}"),
        Value::Array(vec![
            Value::Date(NaiveDate::from_ymd_opt(2024, 1, 2).unwrap()),
            Value::Other("infinity".into()),
        ])
    );
    assert_eq!(
        p(&arr(DataType::Json), r#"{"{\"a\": [1, 2]}",null}"#),
        Value::Array(vec![Value::Json("{\"a\": [1, 2]}".into()), Value::Null])
    );
}

#[test]
fn arrays_malformed() {
    let ints = arr(DataType::Int32);
    for bad in [
        "",
        "1,2",
        "{1,2",
        "{1,2}x",
        "{,}",
        "{1,,2}",
        "{1,{2}}",
        "{{1},2}",
        "{1 2}",
        "{\"1}",
        "{1\\",
        "{a}",
        "{{{{{{{1}}}}}}}",
        "{1}}",
    ] {
        assert!(parse(&ints, bad).is_err(), "{bad:?} should not parse");
    }
    assert!(parse(&arr(text()), "{a{b}").is_err());
    assert!(parse(&arr(text()), "{\"a\\").is_err());
    // Six dimensions are PostgreSQL's maximum and fine.
    assert!(parse(&ints, "{{{{{{1}}}}}}").is_ok());
}

#[test]
fn arrays_render_with_quoting() {
    let v = Value::Array(vec![
        t("plain"),
        t(""),
        t("NULL"),
        t("null"),
        t("a b"),
        t("a,b"),
        t("{x}"),
        t("q\"q"),
        t("back\\slash"),
        t("tab\t"),
        t("ünï"),
        Value::Null,
    ]);
    assert_eq!(
        r(&v),
        concat!(
            r#"{plain,"","NULL","null","a b","a,b","{x}","q\"q","back\\slash","tab"#,
            "\t",
            r#"",ünï,NULL}"#
        )
    );
    assert_eq!(
        p(&arr(text()), &r(&v)),
        v,
        "text array round trip through its rendering"
    );
    let nested = Value::Array(vec![
        Value::Array(vec![Value::Int64(1), Value::Null]),
        Value::Array(vec![Value::Int64(-3), Value::Int64(4)]),
    ]);
    assert_eq!(r(&nested), "{{1,NULL},{-3,4}}");
    assert_eq!(r(&Value::Array(vec![])), "{}");
    let ts = NaiveDate::from_ymd_opt(2024, 1, 2)
        .unwrap()
        .and_hms_opt(3, 4, 5)
        .unwrap();
    assert_eq!(
        r(&Value::Array(vec![
            Value::TimestampTz(ts.and_utc()),
            Value::Bytes(vec![1]),
            Value::Float64(f64::NAN),
        ])),
        r#"{"2024-01-02 03:04:05+00","\\x01",NaN}"#
    );
}

#[test]
fn render_copy_escapes() {
    assert_eq!(copy(&Value::Null), "\\N");
    assert_eq!(copy(&t("\\N")), "\\\\N");
    assert_eq!(copy(&t("a\tb\nc\rd\\e")), "a\\tb\\nc\\rd\\\\e");
    assert_eq!(copy(&t("")), "");
    assert_eq!(copy(&Value::Bytes(vec![0, 255])), "\\\\x00ff");
    assert_eq!(copy(&Value::Int32(-5)), "-5");
    assert_eq!(copy(&Value::Float64(f64::NEG_INFINITY)), "-Infinity");
    assert_eq!(copy(&Value::Bool(true)), "t");
    assert_eq!(
        copy(&Value::Array(vec![t("a\"b\\c"), t("x\ty")])),
        "{\"a\\\\\"b\\\\\\\\c\",\"x\\ty\"}"
    );
    assert_eq!(
        copy(&Value::Json("{\"a\":\"\\n\"}".into())),
        "{\"a\":\"\\\\n\"}"
    );
    assert_eq!(
        copy(&Value::Interval(Interval {
            months: 1,
            days: 2,
            micros: 3
        })),
        "P1M2DT0.000003S"
    );
}

#[test]
fn split_copy_lines() {
    assert_eq!(split(""), vec![Some(String::new())]);
    assert_eq!(
        split("1\tabc\t\\N\t"),
        vec![Some("1".into()), Some("abc".into()), None, Some("".into())]
    );
    assert_eq!(
        split("a\\tb\\nc\\rd\\\\e\\bf\\fg\\vh"),
        vec![Some("a\tb\nc\rd\\e\u{8}f\u{c}g\u{b}h".into())]
    );
    assert_eq!(
        split("\\\\N\t\\Nx"),
        vec![Some("\\N".into()), Some("Nx".into())]
    );
    // Octal and hex escapes (bytes, then UTF-8).
    assert_eq!(split("\\101\\7\\0101"), vec![Some("A\u{7}\u{8}1".into())]);
    assert_eq!(
        split("\\x41\\x4\\xg\\xC3\\xBC"),
        vec![Some("A\u{4}xgü".into())]
    );
    assert_eq!(split("\\303\\274"), vec![Some("ü".into())]);
    // A backslash before a literal tab escapes the tab.
    assert_eq!(
        split("a\\\tb\tc"),
        vec![Some("a\tb".into()), Some("c".into())]
    );
    assert_eq!(split("\\q"), vec![Some("q".into())]);
    assert_eq!(
        split("ünï\tcødé"),
        vec![Some("ünï".into()), Some("cødé".into())]
    );

    let mut fields = Vec::new();
    for bad in [&b"abc\\"[..], b"a\tb\\", b"\xff", b"ok\t\\377"] {
        let e = split_copy_line(bad, &mut fields).unwrap_err();
        assert_eq!(e.type_name, "COPY line");
    }
}

fn sample_values(rng: &mut Rng) -> Vec<(DataType, Value)> {
    let texts = [
        "",
        "plain",
        "NULL",
        "a\tb",
        "line\nbreak\r\n",
        "back\\slash",
        "q\"uote",
        " lead",
        "{brace}",
        "comma,",
        "ünïcødé ✓",
        "\\N",
        "\u{b}\u{c}",
    ];
    let text_v = texts[rng.below(texts.len() as u64) as usize].to_string();
    let date = NaiveDate::from_ymd_opt(1 + rng.below(9999) as i32, 1 + rng.below(12) as u32, 1)
        .unwrap()
        + chrono::Days::new(rng.below(28));
    let time = NaiveTime::from_num_seconds_from_midnight_opt(
        rng.below(86_400) as u32,
        rng.below(1_000_000) as u32 * 1000,
    )
    .unwrap();
    let ts = date.and_time(time);
    let iv = Interval {
        months: rng.next() as i32 >> rng.below(32),
        days: rng.next() as i32 >> rng.below(32),
        micros: rng.next() as i64 >> rng.below(64),
    };
    let bytes: Vec<u8> = (0..rng.below(20)).map(|_| rng.next() as u8).collect();
    let mut uuid = [0u8; 16];
    uuid.iter_mut().for_each(|b| *b = rng.next() as u8);
    let decimal = format!("{}.{:03}", rng.next() as i64, rng.below(1000));
    vec![
        (DataType::Bool, Value::Bool(rng.below(2) == 0)),
        (DataType::Int16, Value::Int16(rng.next() as i16)),
        (DataType::Int32, Value::Int32(rng.next() as i32)),
        (DataType::Int64, Value::Int64(rng.next() as i64)),
        (DataType::Float32, Value::Float32(rng.next() as f32 / 7.0)),
        (
            DataType::Float64,
            Value::Float64(f64::from_bits(rng.next() >> 2)),
        ),
        (
            DataType::Decimal {
                precision: None,
                scale: None,
            },
            Value::Decimal(decimal.clone()),
        ),
        (text(), Value::Text(text_v.clone())),
        (DataType::Bytes, Value::Bytes(bytes.clone())),
        (DataType::Date, Value::Date(date)),
        (DataType::Time { precision: None }, Value::Time(time)),
        (
            DataType::Timestamp { precision: None },
            Value::Timestamp(ts),
        ),
        (
            DataType::TimestampTz { precision: None },
            Value::TimestampTz(ts.and_utc()),
        ),
        (DataType::Interval, Value::Interval(iv)),
        (DataType::Uuid, Value::Uuid(uuid)),
        (
            DataType::Json,
            Value::Json(format!("{{\"k\": {text_v:?}}}")),
        ),
        (
            arr(text()),
            Value::Array(vec![Value::Text(text_v), Value::Null, t("x")]),
        ),
        (
            arr(DataType::Bytes),
            Value::Array(vec![Value::Bytes(bytes), Value::Null]),
        ),
        (
            arr(DataType::TimestampTz { precision: None }),
            Value::Array(vec![Value::TimestampTz(ts.and_utc())]),
        ),
        (
            arr(DataType::Interval),
            Value::Array(vec![
                Value::Array(vec![Value::Interval(iv), Value::Null]),
                Value::Array(vec![Value::Interval(iv), Value::Interval(iv)]),
            ]),
        ),
        (
            arr(DataType::Decimal {
                precision: None,
                scale: None,
            }),
            Value::Array(vec![Value::Decimal(decimal), Value::Decimal("NaN".into())]),
        ),
        (arr(DataType::Int32), Value::Array(vec![])),
    ]
}

#[test]
fn parse_of_render_is_identity() {
    let mut rng = Rng(7);
    for _ in 0..2_000 {
        for (dt, v) in sample_values(&mut rng) {
            assert_eq!(p(&dt, &r(&v)), v, "{dt:?}");
        }
    }
}

#[test]
fn copy_line_round_trip() {
    let mut rng = Rng(11);
    let mut fields = Vec::new();
    for _ in 0..2_000 {
        let row = sample_values(&mut rng);
        let mut line = Vec::new();
        for (n, (_, v)) in row.iter().enumerate() {
            if n > 0 {
                line.push(b'\t');
            }
            render_copy(v, &mut line);
        }
        line.extend_from_slice(b"\t");
        render_copy(&Value::Null, &mut line);
        assert!(!line.contains(&b'\n') && !line.contains(&b'\r'));
        split_copy_line(&line, &mut fields).unwrap();
        assert_eq!(fields.len(), row.len() + 1);
        assert_eq!(fields.last(), Some(&None));
        for ((dt, v), field) in row.iter().zip(&fields) {
            let text = field.as_deref().expect("not null");
            assert_eq!(&p(dt, text), v, "{dt:?}");
        }
    }
}

#[test]
#[should_panic(expected = "has no text form")]
#[cfg(debug_assertions)]
fn render_of_unchanged_is_a_bug() {
    render(&Value::Unchanged, &mut String::new());
}
