use super::*;
use chrono::{NaiveDate, NaiveTime, TimeZone, Utc};

fn load(p: &Param<'_>) -> String {
    let mut out = Vec::new();
    p.write_load_field(&mut out);
    String::from_utf8(out).unwrap()
}

fn pg(v: &Value, kind: ColKind) -> Result<Param<'_>, Refused> {
    to_param(v, kind, Dialect::Postgres)
}

#[test]
fn catalog_kinds() {
    assert_eq!(ColKind::from_catalog("INT", None, None, None), ColKind::Int);
    assert_eq!(
        ColKind::from_catalog("decimal", Some(30), Some(10), None),
        ColKind::Decimal {
            precision: 30,
            scale: 10
        }
    );
    assert_eq!(
        ColKind::from_catalog("varbinary", None, None, Some(16)),
        ColKind::Binary { len: Some(16) }
    );
    assert_eq!(
        ColKind::from_catalog("enum", None, None, None),
        ColKind::Text
    );
    assert_eq!(
        ColKind::from_catalog("point", None, None, None),
        ColKind::Other
    );
}

#[test]
fn decimals_must_fit_exactly() {
    let k = ColKind::Decimal {
        precision: 5,
        scale: 2,
    };
    for ok in ["123.45", "-0.1", "123.450000", "000123.4", "0", ".5"] {
        assert!(pg(&Value::Decimal(ok.into()), k).is_ok(), "{ok}");
    }
    for bad in ["1234.5", "0.001", "NaN", "Infinity", "-Infinity"] {
        let err = pg(&Value::Decimal(bad.into()), k).unwrap_err();
        assert!(!err.0.contains(bad), "{err:?}");
    }
    assert_eq!(
        pg(&Value::Decimal("NaN".into()), ColKind::Text).unwrap(),
        Param::Bytes(Cow::Borrowed(b"NaN"))
    );
}

#[test]
fn floats_are_exact_and_non_finite_is_refused() {
    assert_eq!(
        pg(&Value::Float32(f32::MAX), ColKind::Float).unwrap(),
        Param::Float(f32::MAX)
    );
    assert_eq!(load(&Param::Float(f32::MAX)), "3.4028234663852886e38");
    assert_eq!(
        load(&Param::Double(1.7976931348623157e308)),
        "1.7976931348623157e308"
    );
    assert!(pg(&Value::Float64(f64::NAN), ColKind::Double).is_err());
    assert!(pg(&Value::Float32(f32::INFINITY), ColKind::Float).is_err());
    assert_eq!(
        load(&pg(&Value::Float64(f64::NEG_INFINITY), ColKind::Text).unwrap()),
        "-Infinity"
    );
}

#[test]
fn temporal_values() {
    let ts = NaiveDate::from_ymd_opt(2024, 2, 29)
        .unwrap()
        .and_hms_micro_opt(23, 59, 58, 123_456)
        .unwrap();
    let v = Value::Timestamp(ts);
    let p = pg(&v, ColKind::DateTime).unwrap();
    assert_eq!(load(&p), "2024-02-29 23:59:58.123456");
    let tz = Utc.from_utc_datetime(&ts);
    assert_eq!(pg(&Value::TimestampTz(tz), ColKind::Timestamp).unwrap(), p);
    let d = Value::Date(NaiveDate::from_ymd_opt(1, 1, 1).unwrap());
    assert_eq!(load(&pg(&d, ColKind::Date).unwrap()), "0001-01-01");
    let far = Value::Date(NaiveDate::from_ymd_opt(10000, 1, 1).unwrap());
    assert!(pg(&far, ColKind::Date).is_err());
    let t = Value::Time(NaiveTime::from_hms_micro_opt(1, 2, 3, 4).unwrap());
    assert_eq!(load(&pg(&t, ColKind::Time).unwrap()), "01:02:03.000004");
    let iv = Value::Interval(engine::Interval {
        months: 0,
        days: -1,
        micros: -3_600_000_001,
    });
    let p = pg(&iv, ColKind::Time).unwrap();
    assert_eq!(p, Param::Time(true, 1, 1, 0, 0, 1));
    assert_eq!(load(&p), "-25:00:00.000001");
    let months = Value::Interval(engine::Interval {
        months: 1,
        days: 0,
        micros: 0,
    });
    assert!(pg(&months, ColKind::Time).is_err());
    assert_eq!(load(&pg(&months, ColKind::Text).unwrap()), "P1M");
}

#[test]
fn other_values_only_into_text_unless_from_mysql() {
    let v = Value::Other("infinity".into());
    let err = pg(&v, ColKind::Date).unwrap_err();
    assert!(!err.0.contains("infinity\""), "{err:?}");
    assert!(pg(&v, ColKind::Text).is_ok());
    let zero = Value::Other("0000-00-00".into());
    assert!(to_param(&zero, ColKind::Date, Dialect::MySql).is_ok());
}

#[test]
fn uuids_by_column_kind() {
    let u = Value::Uuid([0xab; 16]);
    assert_eq!(
        pg(&u, ColKind::Binary { len: Some(16) }).unwrap(),
        Param::Bytes(Cow::Borrowed(&[0xab; 16][..]))
    );
    assert_eq!(
        load(&pg(&u, ColKind::Text).unwrap()),
        "abababab-abab-abab-abab-abababababab"
    );
}

#[test]
fn bits_from_bytes_and_integers() {
    assert_eq!(
        pg(&Value::Bytes(vec![1, 2]), ColKind::Bit).unwrap(),
        Param::UInt(258)
    );
    assert!(pg(&Value::Bytes(vec![0; 9]), ColKind::Bit).is_err());
    assert!(pg(&Value::Int64(-1), ColKind::Bit).is_err());
}

#[test]
fn load_escaping() {
    let mut out = Vec::new();
    escape_load(b"a\tb\nc\\d\re\0f", &mut out);
    assert_eq!(out, b"a\\tb\\nc\\\\d\\re\\0f");
    assert_eq!(load(&Param::Null), "\\N");
    assert_eq!(load(&Param::Bytes(Cow::Borrowed(b"\\N"))), "\\\\N");
}

#[test]
fn arrays_become_json() {
    let v = Value::Array(vec![
        Value::Int32(1),
        Value::Null,
        Value::Text("a\"b\\c\u{1}".into()),
        Value::Decimal("NaN".into()),
        Value::Decimal("-0.001".into()),
        Value::Float64(f64::INFINITY),
        Value::Array(vec![Value::Bool(true), Value::Json("{\"k\": 1}".into())]),
        Value::Date(NaiveDate::from_ymd_opt(2024, 1, 2).unwrap()),
    ]);
    let mut s = String::new();
    push_json(&v, &mut s);
    assert_eq!(
        s,
        r#"[1,null,"a\"b\\c\u0001","NaN",-0.001,"Infinity",[true,{"k": 1}],"2024-01-02"]"#
    );
    for (n, ok) in [
        ("0", true),
        ("-12.5e+3", true),
        ("01", false),
        ("1.", false),
        (".5", false),
        ("NaN", false),
    ] {
        assert_eq!(is_json_number(n), ok, "{n}");
    }
}

#[test]
fn debug_hides_values() {
    assert_eq!(
        format!("{:?}", Param::Bytes(Cow::Borrowed(b"secret"))),
        "<value>"
    );
}
