use chrono::{NaiveDate, TimeZone, Utc};

use super::*;
use crate::value::Value;

fn cols() -> Vec<Column> {
    let c = |n: &str, ty: DataType| Column { name: n.into(), ty };
    vec![
        c("id", DataType::Int64),
        c("status", DataType::Text { max_len: None }),
        c(
            "price",
            DataType::Decimal {
                precision: Some(10),
                scale: Some(2),
            },
        ),
        c("created_at", DataType::TimestampTz { precision: None }),
        c("born", DataType::Date),
        c("score", DataType::Float64),
        c("vip", DataType::Bool),
        c("note", DataType::Text { max_len: None }),
        c("data", DataType::Bytes),
        c("Mixed", DataType::Int32),
    ]
}

fn row() -> Vec<Value> {
    vec![
        Value::Int64(42),
        Value::Text("ACTIVE".into()),
        Value::Decimal("19.99".into()),
        Value::TimestampTz(Utc.with_ymd_and_hms(2024, 3, 1, 12, 0, 0).unwrap()),
        Value::Date(NaiveDate::from_ymd_opt(1990, 5, 17).unwrap()),
        Value::Float64(0.5),
        Value::Bool(true),
        Value::Null,
        Value::Bytes(vec![1, 2]),
        Value::Int32(7),
    ]
}

fn bound(text: &str) -> Expr {
    let e = parse_condition(text).unwrap_or_else(|e| panic!("{text}: {e}"));
    bind(&e, &cols(), true).unwrap_or_else(|e| panic!("{text}: {e}"))
}

fn t(text: &str) -> Truth {
    truth(&bound(text), &row()[..]).unwrap_or_else(|e| panic!("{text}: {e}"))
}

#[track_caller]
fn yes(text: &str) {
    assert_eq!(t(text), Truth::True, "{text}");
}

#[track_caller]
fn no(text: &str) {
    assert_eq!(t(text), Truth::False, "{text}");
}

#[test]
fn comparisons() {
    yes("status = 'ACTIVE'");
    no("status = 'active'");
    yes("status <> 'CLOSED' AND status != 'X'");
    yes("id = 42 AND id >= 42 AND id <= 42 AND id > 41 AND id < 43");
    yes("price > 10 AND price < 20.5 AND price = 19.990");
    yes("price > '19.98'");
    yes("score = 0.5 AND score < price");
    yes("vip = true AND vip");
    yes("42 = id");
    yes("\"Mixed\" = 7 AND mixed = 7");
}

#[test]
fn dates_and_timestamps() {
    yes("created_at > '2024-01-01'");
    yes("created_at > '2024-03-01 11:59:59'");
    yes("created_at < '2024-03-01 12:00:01+00'");
    no("created_at > '2024-03-01 14:00:00+01'");
    yes("created_at > DATE '2024-02-29'");
    yes("created_at = TIMESTAMP '2024-03-01 12:00:00'");
    yes("born BETWEEN '1990-01-01' AND '1990-12-31'");
    yes("born < created_at");
}

#[test]
fn logic_in_between_like_null() {
    yes("NOT (status = 'CLOSED')");
    yes("status = 'X' OR id = 42");
    no("status = 'X' OR id = 1");
    yes("status IN ('NEW', 'ACTIVE')");
    no("status NOT IN ('NEW', 'ACTIVE')");
    yes("id IN (1, 42, 3)");
    yes("id BETWEEN 40 AND 50");
    yes("id NOT BETWEEN 1 AND 5");
    yes("status LIKE 'ACT%'");
    yes("status LIKE '%TIV%' AND status LIKE '_CTIVE' AND status LIKE 'A%V_'");
    no("status LIKE 'act%'");
    yes("status ILIKE 'act%'");
    yes("status NOT LIKE 'X%'");
    yes("'50%' LIKE '50!%' ESCAPE '!'");
    yes("note IS NULL AND status IS NOT NULL AND data IS NOT NULL");
    // NULL is not true: the row is out.
    no("note = 'x'");
    no("note <> 'x'");
    no("NOT (note = 'x')");
    yes("note IS NULL OR note = 'x'");
    no("id IN (1, NULL)");
    yes("vip IS TRUE AND (note = 'x') IS NOT TRUE");
}

#[test]
fn arithmetic_and_functions() {
    yes("price * 2 = 39.98");
    yes("price * 1.1 = 21.989");
    yes("id + 1 = 43 AND id - 2 = 40 AND id / 5 = 8 AND id % 5 = 2");
    yes("id / 5.0 = 8.4");
    yes("-id = -42 AND -price < 0");
    yes("score * 2 = 1");
    yes("LOWER(status) = 'active' AND UPPER('x') = 'X'");
    yes("LENGTH(status) = 6 AND CHAR_LENGTH('héé') = 3");
    yes("COALESCE(note, status) = 'ACTIVE'");
    yes("COALESCE(note, NULL) IS NULL");
    yes("ABS(-price) = price");
    yes("status || '-' || id = 'ACTIVE-42'");
    yes("CAST(price * 100 AS integer) = 1999 AND CAST('7' AS int) = 7");
    yes("id::text = '42'");
    yes("9223372036854775807 + 1 > 9223372036854775807");
}

#[test]
fn runtime_errors_name_no_values() {
    let e = truth(&bound("id / (id - 42) = 1"), &row()[..]).unwrap_err();
    assert_eq!(e.0, "division by zero");
    let e = truth(&bound("CAST(status AS integer) = 1"), &row()[..]).unwrap_err();
    assert!(e.0.contains("CAST"), "{e}");
    assert!(!e.0.contains("ACTIVE"), "the value leaked: {e}");
}

#[test]
fn unknown_columns_are_unknown_not_false() {
    let mut r = row();
    r[1] = Value::Unchanged;
    let f = bound("status = 'ACTIVE'");
    assert_eq!(truth(&f, &r[..]).unwrap(), Truth::Unknown);
    // Decided by the known part.
    assert_eq!(
        truth(&bound("status = 'ACTIVE' AND id = 1"), &r[..]).unwrap(),
        Truth::False
    );
    assert_eq!(
        truth(&bound("status = 'ACTIVE' OR id = 42"), &r[..]).unwrap(),
        Truth::True
    );
    // With the old image, the unsent value is known.
    let before = row();
    let w = WithFallback {
        row: &r,
        before: Some(&before),
    };
    assert_eq!(truth(&f, &w).unwrap(), Truth::True);
}

#[test]
fn load_time_errors_carry_positions() {
    let err = |text: &str| parse_condition(text).unwrap_err();
    let e = err("status = 'A' AND");
    assert!(
        e.contains("found: EOF at the end (line 1, column 17)"),
        "{e}"
    );
    let e = err("a = = 1");
    assert!(e.contains("Line: 1, Column: 5"), "{e}");
    let e = err("a = 1 AND\n (b = 2");
    assert!(e.contains("line 2, column 8"), "{e}");
    let e = err("status = 'A' garbage");
    assert!(e.contains("unexpected") && e.contains("column 14"), "{e}");
    let e = err("NOW() > created_at");
    assert!(
        e.contains("unknown function NOW") && e.contains("line 1, column 1"),
        "{e}"
    );
    let e = err("id IN (SELECT 1)");
    assert!(e.contains("not supported"), "{e}");
    let e = err("t.id = 1");
    assert!(e.contains("qualified name"), "{e}");
    let e = err("'a' LIKE 'x\\'");
    assert!(e.contains("escape"), "{e}");
    let e = err("");
    assert!(e.contains("empty"), "{e}");
    // Type errors found without the schema.
    let e =
        parse_condition("1 + 'a' > 0").and_then(|x| check_condition(&x, &|_| Ty::Any).map(|_| x));
    assert!(e.unwrap_err().contains("arithmetic needs numbers"));
    let e = parse_condition("flag").and_then(|x| check_condition(&x, &|_| Ty::Any).map(|_| x));
    assert!(e.is_ok(), "an unbound column may be boolean");
    let e = parse_condition("1 + 2").and_then(|x| check_condition(&x, &|_| Ty::Any).map(|_| x));
    assert!(e.unwrap_err().contains("not boolean"));
}

#[test]
fn bind_time_errors() {
    let b = |text: &str| bind(&parse_condition(text).unwrap(), &cols(), true).unwrap_err();
    assert!(b("nope = 1").contains("unknown column nope at line 1, column 1"));
    assert!(b("status > 5").contains("cannot compare text with number"));
    assert!(
        b("id = 'abc'").contains("text literal compared at line 1, column 1 is not a valid bigint")
    );
    assert!(b("born = '2024-13-45'").contains("not a valid date"));
    assert!(b("data = 'x'").contains("cannot compare"));
    assert!(b("status").contains("not boolean"));
    assert!(b("id LIKE 'x'").contains("LIKE needs text"));
    assert!(b("LOWER(id) = 'x'").contains("LOWER cannot take number"));
}

#[test]
fn long_and_deep_expressions() {
    let long = vec!["id > 0"; 300].join(" AND ");
    assert_eq!(t(&long), Truth::True);
    let deep = format!("{}id > 0{}", "(".repeat(200), ")".repeat(200));
    assert!(parse_condition(&deep)
        .unwrap_err()
        .contains("nested too deeply"));
}

#[test]
fn scripts_parse() {
    let s = parse_script("SET vip = price > 10, note = LOWER(status) WHERE id > 0").unwrap();
    assert_eq!(s.assignments.len(), 2);
    assert!(s.keep.is_some());
    let s = parse_script("WHERE id > 0").unwrap();
    assert!(s.assignments.is_empty() && s.keep.is_some());
    let s = parse_script("id > 0 AND vip").unwrap();
    assert!(s.keep.is_some());
    assert!(parse_script("SET a = 1, a = 2")
        .unwrap_err()
        .contains("twice"));
    assert!(parse_script("SET a = ").is_err());
    let s = parse_script("SET note = :greeting").unwrap();
    let mut params = crate::config::Params::new();
    params.insert("greeting".into(), serde_json::json!("hi"));
    let e = bind_params(&s.assignments[0].1, &params).unwrap();
    assert!(matches!(e, Expr::Lit(Lit::Str(ref x)) if x == "hi"));
    assert!(bind_params(&s.assignments[0].1, &Default::default())
        .unwrap_err()
        .contains("unknown script parameter :greeting"));
}
