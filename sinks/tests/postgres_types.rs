//! PostgreSQL sink against a private server: tables created from every data
//! type (native and mapped), values and NULLs of every type round-tripped.

mod common;

use std::sync::Arc;

use chrono::{NaiveDate, TimeZone, Utc};
use common::*;
use engine::{DataType, Dialect, Interval, PartialUpdate, Row, Sink, TableSchema, Value};
use sinks::postgres::{PgSinkOptions, UpsertStrategy};

fn dec(p: u32, s: u32) -> DataType {
    DataType::Decimal {
        precision: Some(p),
        scale: Some(s),
    }
}

/// One column of every type: (column, expected target type).
fn every_type(dialect: Dialect) -> (Arc<TableSchema>, Vec<&'static str>) {
    let pg = dialect == Dialect::Postgres;
    let n = |pg_native: &'static str, other: &'static str| if pg { pg_native } else { other };
    let arr = |e: DataType| DataType::Array(Box::new(e));
    let cols = vec![
        (int8("id"), "bigint", "bigint"),
        (
            col("b", DataType::Bool, n("boolean", "tinyint(1)"), true),
            "boolean",
            "boolean",
        ),
        (
            col("i2", DataType::Int16, n("smallint", "smallint(6)"), true),
            "smallint",
            "smallint",
        ),
        (
            col("i4", DataType::Int32, n("integer", "int(11)"), true),
            "integer",
            "integer",
        ),
        (
            col("f4", DataType::Float32, n("real", "float"), true),
            "real",
            "real",
        ),
        (
            col(
                "f8",
                DataType::Float64,
                n("double precision", "double"),
                true,
            ),
            "double precision",
            "double precision",
        ),
        (
            col("dec", dec(10, 2), n("numeric(10,2)", "decimal(10,2)"), true),
            "numeric(10,2)",
            "numeric(10,2)",
        ),
        (
            col(
                "dec_any",
                DataType::Decimal {
                    precision: None,
                    scale: None,
                },
                "numeric",
                true,
            ),
            "numeric",
            "numeric",
        ),
        (
            col(
                "vc",
                DataType::Text { max_len: Some(20) },
                n("character varying(20)", "varchar(20)"),
                true,
            ),
            "character varying(20)",
            "character varying(20)",
        ),
        (text("t"), "text", "text"),
        (
            col(
                "ch",
                DataType::Char { len: Some(3) },
                n("character(3)", "char(3)"),
                true,
            ),
            "character(3)",
            "character(3)",
        ),
        (
            col("by", DataType::Bytes, n("bytea", "blob"), true),
            "bytea",
            "bytea",
        ),
        (col("d", DataType::Date, "date", true), "date", "date"),
        (
            col(
                "tm",
                DataType::Time { precision: Some(3) },
                n("time(3) without time zone", "time(3)"),
                true,
            ),
            "time(3) without time zone",
            "time(3) without time zone",
        ),
        (
            col(
                "ts",
                DataType::Timestamp { precision: None },
                n("timestamp without time zone", "datetime"),
                true,
            ),
            "timestamp without time zone",
            "timestamp without time zone",
        ),
        (
            col(
                "tstz",
                DataType::TimestampTz { precision: Some(3) },
                n("timestamp(3) with time zone", "timestamp(3)"),
                true,
            ),
            "timestamp(3) with time zone",
            "timestamp(3) with time zone",
        ),
        (
            col("iv", DataType::Interval, "interval", true),
            "interval",
            "interval",
        ),
        (
            col("u", DataType::Uuid, n("uuid", "char(36)"), true),
            "uuid",
            "uuid",
        ),
        (col("j", DataType::Json, "json", true), "json", "json"),
        (
            col("jb", DataType::Jsonb, n("jsonb", "json"), true),
            "jsonb",
            "jsonb",
        ),
        (
            col("arr", arr(DataType::Int32), n("integer[]", "json"), true),
            "integer[]",
            "integer[]",
        ),
        (
            col(
                "tarr",
                arr(DataType::Text { max_len: None }),
                n("text[]", "json"),
                true,
            ),
            "text[]",
            "text[]",
        ),
        (
            col(
                "mood",
                DataType::Other {
                    name: "mood".into(),
                },
                "mood",
                true,
            ),
            "text",
            "text",
        ),
        (
            col("pos", DataType::Int32, n("posint", "int unsigned"), true),
            "integer",
            "integer",
        ),
        (
            col("nn", DataType::Text { max_len: None }, "text", false),
            "text",
            "text",
        ),
    ];
    let expected = cols
        .iter()
        .map(|(_, p, o)| if pg { *p } else { *o })
        .collect();
    let name = if pg { "types_pg" } else { "types_mapped" };
    let mut t = table(
        "app",
        name,
        cols.into_iter().map(|(c, _, _)| c).collect(),
        &[0],
    );
    Arc::make_mut(&mut t).dialect = dialect;
    (t, expected)
}

fn full_row(id: i64) -> Row {
    let ts = NaiveDate::from_ymd_opt(2024, 2, 29)
        .unwrap()
        .and_hms_micro_opt(23, 59, 58, 123_456)
        .unwrap();
    vec![
        Value::Int64(id),
        Value::Bool(true),
        Value::Int16(-32768),
        Value::Int32(2_147_483_647),
        Value::Float32(1.5),
        Value::Float64(-0.1),
        Value::Decimal("12345678.90".into()),
        Value::Decimal("-0.000123456789012345678901234567890".into()),
        Value::Text("tab\there\nnew\\line ü".into()),
        Value::Text("a \"quoted\" 'text' \r\n with \\N inside".into()),
        Value::Text("abc".into()),
        Value::Bytes(vec![0, 1, 255, b'\\', b'\t', b'\n']),
        Value::Date(NaiveDate::from_ymd_opt(1999, 12, 31).unwrap()),
        Value::Time(chrono::NaiveTime::from_hms_milli_opt(13, 14, 15, 160).unwrap()),
        Value::Timestamp(ts),
        Value::TimestampTz(
            Utc.with_ymd_and_hms(2030, 1, 2, 3, 4, 5).unwrap()
                + chrono::Duration::milliseconds(678),
        ),
        Value::Interval(Interval {
            months: 14,
            days: -3,
            micros: 4_000_005,
        }),
        Value::Uuid(*b"0123456789abcdef"),
        Value::Json("{\"b\": [1, 2],  \"a\" : null}".into()),
        Value::Json("{\"a\": null, \"b\": [1, 2]}".into()),
        Value::Array(vec![Value::Int32(1), Value::Null, Value::Int32(-3)]),
        Value::Array(vec![
            Value::Text("a,b".into()),
            Value::Text("q\"uote".into()),
            Value::Text("back\\slash\ttab".into()),
            Value::Text(String::new()),
            Value::Text("NULL".into()),
            Value::Null,
        ]),
        Value::Other("happy".into()),
        Value::Int32(5),
        Value::Text("not null".into()),
    ]
}

fn null_row(t: &TableSchema, id: i64) -> Row {
    let mut row = vec![Value::Null; t.columns.len()];
    row[0] = Value::Int64(id);
    *row.last_mut().unwrap() = Value::Text(String::new());
    row
}

async fn check_round_trip(c: &tokio_postgres::Client, t: &TableSchema, want: &[Row]) {
    let got = rows(c, &format!("SELECT * FROM app.{} ORDER BY id", t.id.name)).await;
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(want) {
        for ((text, value), column) in g.iter().zip(w).zip(&t.columns) {
            let back = match text {
                None => Value::Null,
                Some(s) => engine::pgtext::parse(&column.data_type, s).unwrap(),
            };
            assert_eq!(&back, value, "column {} (text {text:?})", column.name);
        }
    }
}

#[tokio::test]
async fn creates_tables_with_every_type_and_round_trips_values() {
    let pg = server().await;
    let c = client(&pg).await;
    for dialect in [Dialect::Postgres, Dialect::MySql] {
        let (t, expected) = every_type(dialect);
        let name = format!("app.{}", t.id.name);
        let mut want = Vec::new();
        let strategies = [
            (UpsertStrategy::Copy, true),
            (UpsertStrategy::Copy, false),
            (UpsertStrategy::InsertValues, false),
        ];
        for (n, (upsert, likely_new)) in strategies.into_iter().enumerate() {
            let opts = PgSinkOptions {
                upsert,
                ..Default::default()
            };
            let mut s = sink_with(&pg, opts).await;
            s.begin().await.unwrap();
            s.ensure_table(&t).await.unwrap();
            let id = n as i64 * 2;
            let batch = vec![full_row(id + 1), null_row(&t, id + 2)];
            want.extend(batch.clone());
            s.apply(&upserts(&t, batch, likely_new)).await.unwrap();
            s.commit().await.unwrap();
        }
        let types = rows(
            &c,
            &format!(
                "SELECT format_type(atttypid, atttypmod), attnotnull FROM pg_attribute \
                 WHERE attrelid = '{name}'::regclass AND attnum > 0 ORDER BY attnum"
            ),
        )
        .await;
        let got: Vec<&str> = types.iter().map(|r| r[0].as_deref().unwrap()).collect();
        assert_eq!(got, expected, "{dialect:?}");
        let not_null: Vec<bool> = types.iter().map(|r| r[1].as_deref() == Some("t")).collect();
        let want_nn: Vec<bool> = t.columns.iter().map(|c| !c.nullable).collect();
        assert_eq!(not_null, want_nn);
        let pk = scalar(
            &c,
            &format!(
                "SELECT pg_get_constraintdef(oid) FROM pg_constraint \
                 WHERE conrelid = '{name}'::regclass AND contype = 'p'"
            ),
        )
        .await;
        assert_eq!(pk.as_deref(), Some("PRIMARY KEY (id)"));
        check_round_trip(&c, &t, &want).await;
    }
}

#[tokio::test]
async fn nulls_in_every_type_through_every_path() {
    let pg = server().await;
    let c = client(&pg).await;
    let (t, _) = every_type(Dialect::Postgres);
    let mut s = sink(&pg).await;
    s.begin().await.unwrap();
    s.ensure_table(&t).await.unwrap();
    // Partial update of a full row to NULLs everywhere but the key.
    s.apply(&upserts(&t, vec![full_row(1)], false))
        .await
        .unwrap();
    let mut nulls = null_row(&t, 1);
    nulls[5] = Value::Unchanged;
    s.apply(&partial(
        &t,
        vec![PartialUpdate {
            old_key: vec![Value::Int64(1)],
            row: nulls.clone(),
        }],
    ))
    .await
    .unwrap();
    s.commit().await.unwrap();
    let got = rows(&c, "SELECT * FROM app.types_pg").await;
    let nonnull: Vec<&str> = got[0]
        .iter()
        .zip(&t.columns)
        .filter(|(v, _)| v.is_some())
        .map(|(_, c)| c.name.as_str())
        .collect();
    assert_eq!(nonnull, vec!["id", "f8", "nn"]);
}
