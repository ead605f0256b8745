//! Type mapping of the MySQL sink against a private MariaDB: a PostgreSQL-
//! dialect schema with every `DataType` (mapped DDL), a MySQL-dialect schema
//! with native types used verbatim, NULL in every column, both write paths
//! storing the same thing, and values MySQL cannot hold refused by column.

mod mysql_support;

use chrono::{NaiveDate, NaiveTime, TimeZone, Utc};
use engine::{ColumnSchema, DataType, Dialect, Interval, Row, Sink, Value};
use mysql_async::prelude::Queryable;
use mysql_async::Value as My;
use mysql_support::*;
use sinks::mysql::{MysqlSinkOptions, UpsertStrategy};

fn c(name: &str, dt: DataType, native: &str) -> ColumnSchema {
    col(name, dt, native, true)
}

fn pg_columns() -> Vec<ColumnSchema> {
    let dec = |p, s| DataType::Decimal {
        precision: p,
        scale: s,
    };
    vec![
        col("id", DataType::Int32, "integer", false),
        c("c_bool", DataType::Bool, "boolean"),
        c("c_i16", DataType::Int16, "smallint"),
        c("c_i32", DataType::Int32, "integer"),
        c("c_i64", DataType::Int64, "bigint"),
        c("c_f32", DataType::Float32, "real"),
        c("c_f64", DataType::Float64, "double precision"),
        c("c_num", dec(None, None), "numeric"),
        c("c_num2", dec(Some(12), Some(4)), "numeric(12,4)"),
        c("c_num_big", dec(Some(80), Some(2)), "numeric(80,2)"),
        c("c_text", DataType::Text { max_len: None }, "text"),
        c(
            "c_varchar",
            DataType::Text { max_len: Some(20) },
            "character varying(20)",
        ),
        c("c_char", DataType::Char { len: Some(5) }, "character(5)"),
        c("c_bytes", DataType::Bytes, "bytea"),
        c("c_date", DataType::Date, "date"),
        c(
            "c_time",
            DataType::Time { precision: None },
            "time without time zone",
        ),
        c(
            "c_ts",
            DataType::Timestamp { precision: None },
            "timestamp without time zone",
        ),
        c(
            "c_ts3",
            DataType::Timestamp { precision: Some(3) },
            "timestamp(3) without time zone",
        ),
        c(
            "c_tstz",
            DataType::TimestampTz { precision: None },
            "timestamp with time zone",
        ),
        c("c_interval", DataType::Interval, "interval"),
        c("c_uuid", DataType::Uuid, "uuid"),
        c("c_json", DataType::Json, "json"),
        c("c_jsonb", DataType::Jsonb, "jsonb"),
        c(
            "c_int_arr",
            DataType::Array(Box::new(DataType::Int32)),
            "integer[]",
        ),
        c(
            "c_text_arr",
            DataType::Array(Box::new(DataType::Text { max_len: None })),
            "text[]",
        ),
        c(
            "c_2d",
            DataType::Array(Box::new(DataType::Array(Box::new(DataType::Int32)))),
            "integer[]",
        ),
        c(
            "c_other",
            DataType::Other {
                name: "mood".into(),
            },
            "mood",
        ),
    ]
}

const TEXT: &str = "tab\there\nnewline \\ backslash 'quote' \"dq\" ünïcödé 😀 \0 nul";

fn ts(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32, us: u32) -> chrono::NaiveDateTime {
    NaiveDate::from_ymd_opt(y, mo, d)
        .unwrap()
        .and_hms_micro_opt(h, mi, s, us)
        .unwrap()
}

fn pg_rows() -> Vec<Row> {
    let all_bytes: Vec<u8> = (0..=255).collect();
    let iv = Interval {
        months: -14,
        days: 3,
        micros: -14_706_700_000,
    };
    let full = vec![
        Value::Int32(1),
        Value::Bool(true),
        Value::Int16(i16::MIN),
        Value::Int32(i32::MIN),
        Value::Int64(i64::MIN),
        Value::Float32(f32::MAX),
        Value::Float64(f64::MAX),
        Value::Decimal("123456789012345678901234567890.123456789".into()),
        Value::Decimal("-1.5000".into()),
        Value::Decimal(
            "123456789012345678901234567890123456789012345678901234567890123456789.25".into(),
        ),
        Value::Text(TEXT.into()),
        Value::Text("varchar".into()),
        Value::Text("ab   ".into()),
        Value::Bytes(all_bytes),
        Value::Date(NaiveDate::from_ymd_opt(2024, 2, 29).unwrap()),
        Value::Time(NaiveTime::from_hms_micro_opt(23, 59, 59, 999_999).unwrap()),
        Value::Timestamp(ts(1999, 12, 31, 23, 59, 59, 123_456)),
        Value::Timestamp(ts(2001, 1, 1, 0, 0, 0, 123_000)),
        Value::TimestampTz(Utc.from_utc_datetime(&ts(2024, 6, 1, 10, 0, 0, 500_000))),
        Value::Interval(iv),
        Value::Uuid([
            0xa0, 0xee, 0xbc, 0x99, 0x9c, 0x0b, 0x4e, 0xf8, 0xbb, 0x6d, 0x6b, 0xb9, 0xbd, 0x38,
            0x0a, 0x11,
        ]),
        Value::Json("{\"b\": 1,  \"a\": [1, 2]}".into()),
        Value::Json("{\"a\": [1, 2], \"b\": 1}".into()),
        Value::Array(vec![Value::Int32(1), Value::Null, Value::Int32(3)]),
        Value::Array(vec![
            Value::Text("a,b".into()),
            Value::Text("c\"d".into()),
            Value::Text(String::new()),
            Value::Null,
            Value::Text("NULL".into()),
        ]),
        Value::Array(vec![
            Value::Array(vec![Value::Int32(1), Value::Int32(2)]),
            Value::Array(vec![Value::Int32(3), Value::Null]),
        ]),
        Value::Other("happy".into()),
    ];
    let mut nulls = vec![Value::Null; full.len()];
    nulls[0] = Value::Int32(2);
    let edge = vec![
        Value::Int32(3),
        Value::Bool(false),
        Value::Int16(i16::MAX),
        Value::Int32(i32::MAX),
        Value::Int64(i64::MAX),
        Value::Float32(-0.0),
        Value::Float64(5e-324),
        Value::Decimal("0.000000000000000000001".into()),
        Value::Decimal("99999999.9999".into()),
        Value::Decimal("NaN".into()),
        Value::Text(String::new()),
        Value::Text(String::new()),
        Value::Text(String::new()),
        Value::Bytes(Vec::new()),
        Value::Date(NaiveDate::from_ymd_opt(1, 1, 1).unwrap()),
        Value::Time(NaiveTime::from_hms_opt(0, 0, 0).unwrap()),
        Value::Timestamp(ts(9999, 12, 31, 23, 59, 59, 999_999)),
        Value::Timestamp(ts(1000, 1, 1, 0, 0, 0, 0)),
        Value::TimestampTz(Utc.from_utc_datetime(&ts(1970, 1, 1, 0, 0, 0, 0))),
        Value::Interval(Interval {
            months: 0,
            days: 0,
            micros: 0,
        }),
        Value::Uuid([0xff; 16]),
        Value::Json("null".into()),
        Value::Json("[]".into()),
        Value::Array(Vec::new()),
        Value::Array(Vec::new()),
        Value::Array(Vec::new()),
        Value::Other(String::new()),
    ];
    vec![full, nulls, edge]
}

/// Every column of every row through the binary protocol (exact floats,
/// dates and times as structured values).
async fn read_all(conn: &mut mysql_async::Conn, table: &str) -> Vec<Vec<My>> {
    let rs: Vec<mysql_async::Row> = conn
        .exec(format!("SELECT * FROM {table} ORDER BY 1"), ())
        .await
        .unwrap();
    rs.into_iter().map(|r| r.unwrap()).collect()
}

fn bytes(s: &str) -> My {
    My::Bytes(s.as_bytes().to_vec())
}

#[tokio::test]
async fn every_data_type_maps_and_both_write_paths_store_the_same() {
    let db = server();
    let mut conn = client(&db).await;
    let mut results = Vec::new();
    for (name, upsert) in [
        ("values", UpsertStrategy::InsertValues),
        ("load", UpsertStrategy::LoadData),
    ] {
        let t = table(&format!("types_{name}"), pg_columns(), &[0]);
        let mut sink = sink_with(
            &db,
            MysqlSinkOptions {
                upsert,
                ..Default::default()
            },
        )
        .await;
        sink.begin().await.unwrap();
        sink.ensure_table(&t).await.unwrap();
        sink.apply(&upserts(&t, pg_rows(), false)).await.unwrap();
        sink.commit().await.unwrap();
        results.push(read_all(&mut conn, &format!("target.types_{name}")).await);
    }
    assert_eq!(results[0], results[1], "both write paths store the same");
    let got = &results[0];
    let types: Vec<(String, String)> = conn
        .query(
            "SELECT COLUMN_NAME, COLUMN_TYPE FROM information_schema.COLUMNS \
             WHERE TABLE_SCHEMA = 'target' AND TABLE_NAME = 'types_values' ORDER BY ORDINAL_POSITION",
        )
        .await
        .unwrap();
    let ty = |n: &str| types.iter().find(|(c, _)| c == n).unwrap().1.clone();
    assert_eq!(ty("c_num"), "decimal(65,30)");
    assert_eq!(ty("c_num2"), "decimal(12,4)");
    assert_eq!(ty("c_num_big"), "longtext");
    assert_eq!(ty("c_tstz"), "datetime(6)");
    assert_eq!(ty("c_ts3"), "datetime(3)");
    assert_eq!(ty("c_uuid"), "char(36)");
    assert_eq!(
        ty("c_json"),
        "longtext",
        "MariaDB's JSON is a checked LONGTEXT"
    );

    let full = &got[0];
    let expect_full = vec![
        My::Int(1),
        My::Int(1),
        My::Int(i64::from(i16::MIN)),
        My::Int(i64::from(i32::MIN)),
        My::Int(i64::MIN),
        My::Float(f32::MAX),
        My::Double(f64::MAX),
        bytes("123456789012345678901234567890.123456789000000000000000000000"),
        bytes("-1.5000"),
        bytes("123456789012345678901234567890123456789012345678901234567890123456789.25"),
        bytes(TEXT),
        bytes("varchar"),
        bytes("ab"),
        My::Bytes((0..=255).collect()),
        My::Date(2024, 2, 29, 0, 0, 0, 0),
        My::Time(false, 0, 23, 59, 59, 999_999),
        My::Date(1999, 12, 31, 23, 59, 59, 123_456),
        My::Date(2001, 1, 1, 0, 0, 0, 123_000),
        My::Date(2024, 6, 1, 10, 0, 0, 500_000),
        bytes("P-1Y-2M3DT-4H-5M-6.7S"),
        bytes("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
        bytes("{\"b\": 1,  \"a\": [1, 2]}"),
        bytes("{\"a\": [1, 2], \"b\": 1}"),
        bytes("[1,null,3]"),
        bytes(r#"["a,b","c\"d","",null,"NULL"]"#),
        bytes("[[1,2],[3,null]]"),
        bytes("happy"),
    ];
    assert_eq!(full.len(), expect_full.len());
    for (i, (g, e)) in full.iter().zip(&expect_full).enumerate() {
        assert_eq!(g, e, "column {}", pg_columns()[i].name);
    }
    assert!(
        got[1][1..].iter().all(|v| *v == My::NULL),
        "NULL everywhere"
    );
    let edge = &got[2];
    assert_eq!(edge[5], My::Float(-0.0));
    assert_eq!(edge[6], My::Double(5e-324));
    assert_eq!(edge[7], bytes("0.000000000000000000001000000000"));
    assert_eq!(edge[9], bytes("NaN"), "NaN kept in a text column");
    assert_eq!(edge[14], My::Date(1, 1, 1, 0, 0, 0, 0));
    assert_eq!(edge[16], My::Date(9999, 12, 31, 23, 59, 59, 999_999));
    assert_eq!(edge[19], bytes("PT0S"));
    assert_eq!(edge[20], bytes("ffffffff-ffff-ffff-ffff-ffffffffffff"));
    assert_eq!(edge[23], bytes("[]"));
}

fn my_columns() -> Vec<(ColumnSchema, Value, My)> {
    let n =
        |name: &str, native: &str, dt: DataType, v: Value, want: My| (c(name, dt, native), v, want);
    let d = |p, s| DataType::Decimal {
        precision: Some(p),
        scale: Some(s),
    };
    vec![
        n(
            "id",
            "int(10) unsigned",
            DataType::Int64,
            Value::Int64(4_294_967_295),
            My::Int(4_294_967_295),
        ),
        n(
            "c_tiny",
            "tinyint(4)",
            DataType::Int16,
            Value::Int16(-128),
            My::Int(-128),
        ),
        n(
            "c_utiny",
            "tinyint(3) unsigned",
            DataType::Int16,
            Value::Int16(255),
            My::Int(255),
        ),
        n(
            "c_usmall",
            "smallint(5) unsigned",
            DataType::Int32,
            Value::Int32(65_535),
            My::Int(65_535),
        ),
        n(
            "c_medium",
            "mediumint(9)",
            DataType::Int32,
            Value::Int32(-8_388_608),
            My::Int(-8_388_608),
        ),
        n(
            "c_ubig",
            "bigint(20) unsigned",
            d(20, 0),
            Value::Decimal("18446744073709551615".into()),
            My::UInt(u64::MAX),
        ),
        n(
            "c_dec",
            "decimal(30,10)",
            d(30, 10),
            Value::Decimal("-12345678901234567890.0123456789".into()),
            bytes("-12345678901234567890.0123456789"),
        ),
        n(
            "c_float",
            "float",
            DataType::Float32,
            Value::Float32(f32::MIN_POSITIVE),
            My::Float(f32::MIN_POSITIVE),
        ),
        n(
            "c_double",
            "double",
            DataType::Float64,
            Value::Float64(0.1),
            My::Double(0.1),
        ),
        n(
            "c_bit8",
            "bit(8)",
            DataType::Bytes,
            Value::Bytes(vec![0xa5]),
            My::Bytes(vec![0xa5]),
        ),
        n(
            "c_bit64",
            "bit(64)",
            DataType::Int64,
            Value::Int64(i64::MAX),
            My::Bytes(i64::MAX.to_be_bytes().to_vec()),
        ),
        n(
            "c_bool",
            "tinyint(1)",
            DataType::Bool,
            Value::Bool(true),
            My::Int(1),
        ),
        n(
            "c_char",
            "char(3)",
            DataType::Char { len: Some(3) },
            Value::Text("äb".into()),
            bytes("äb"),
        ),
        n(
            "c_varchar",
            "varchar(20)",
            DataType::Text { max_len: Some(20) },
            Value::Text("😀x".into()),
            bytes("😀x"),
        ),
        n(
            "c_mtext",
            "mediumtext",
            DataType::Text { max_len: None },
            Value::Text(TEXT.into()),
            bytes(TEXT),
        ),
        n(
            "c_bin",
            "binary(4)",
            DataType::Bytes,
            Value::Bytes(vec![0, 1]),
            My::Bytes(vec![0, 1, 0, 0]),
        ),
        n(
            "c_varbin",
            "varbinary(10)",
            DataType::Bytes,
            Value::Bytes(vec![0xff, 0]),
            My::Bytes(vec![0xff, 0]),
        ),
        n(
            "c_blob",
            "blob",
            DataType::Bytes,
            Value::Bytes(vec![9; 300]),
            My::Bytes(vec![9; 300]),
        ),
        n(
            "c_date",
            "date",
            DataType::Date,
            Value::Date(NaiveDate::from_ymd_opt(1000, 1, 1).unwrap()),
            My::Date(1000, 1, 1, 0, 0, 0, 0),
        ),
        n(
            "c_time_neg",
            "time(6)",
            DataType::Time { precision: Some(6) },
            Value::Interval(Interval {
                months: 0,
                days: -34,
                micros: -22 * 3_600_000_000 - 59 * 60_000_000 - 59_000_001,
            }),
            My::Time(true, 34, 22, 59, 59, 1),
        ),
        n(
            "c_time",
            "time",
            DataType::Time { precision: Some(0) },
            Value::Time(NaiveTime::from_hms_opt(12, 34, 56).unwrap()),
            My::Time(false, 0, 12, 34, 56, 0),
        ),
        n(
            "c_dt3",
            "datetime(3)",
            DataType::Timestamp { precision: Some(3) },
            Value::Timestamp(ts(2024, 1, 2, 3, 4, 5, 678_000)),
            My::Date(2024, 1, 2, 3, 4, 5, 678_000),
        ),
        n(
            "c_ts6",
            "timestamp(6)",
            DataType::TimestampTz { precision: Some(6) },
            Value::TimestampTz(Utc.from_utc_datetime(&ts(2038, 1, 19, 3, 14, 7, 999_999))),
            My::Date(2038, 1, 19, 3, 14, 7, 999_999),
        ),
        n(
            "c_year",
            "year(4)",
            DataType::Int16,
            Value::Int16(2155),
            My::Int(2155),
        ),
        n(
            "c_enum",
            r"enum('a','it''s','back\\slash')",
            DataType::Text { max_len: None },
            Value::Text("it's".into()),
            bytes("it's"),
        ),
        n(
            "c_set",
            "set('x','y','z')",
            DataType::Text { max_len: None },
            Value::Text("x,z".into()),
            bytes("x,z"),
        ),
        n(
            "c_json",
            "longtext",
            DataType::Json,
            Value::Json("{\"k\": [1, 2.50]}".into()),
            bytes("{\"k\": [1, 2.50]}"),
        ),
        n(
            "c_zero",
            "date",
            DataType::Date,
            Value::Other("0000-00-00".into()),
            My::Date(0, 0, 0, 0, 0, 0, 0),
        ),
    ]
}

#[tokio::test]
async fn mysql_native_types_are_used_verbatim() {
    let db = server();
    let mut conn = client(&db).await;
    let cols = my_columns();
    for (name, upsert) in [
        ("values", UpsertStrategy::InsertValues),
        ("load", UpsertStrategy::LoadData),
    ] {
        let t = table_in(
            DB,
            &format!("native_{name}"),
            cols.iter().map(|(c, _, _)| c.clone()).collect(),
            &[0],
            Dialect::MySql,
        );
        let mut sink = sink_with(
            &db,
            MysqlSinkOptions {
                upsert,
                ..Default::default()
            },
        )
        .await;
        sink.begin().await.unwrap();
        sink.ensure_table(&t).await.unwrap();
        let row: Row = cols.iter().map(|(_, v, _)| v.clone()).collect();
        let mut nulls: Row = vec![Value::Null; cols.len()];
        nulls[0] = Value::Int64(1);
        sink.apply(&upserts(&t, vec![row, nulls], true))
            .await
            .unwrap();
        sink.commit().await.unwrap();
        let types: Vec<(String, String)> = conn
            .exec(
                "SELECT COLUMN_NAME, COLUMN_TYPE FROM information_schema.COLUMNS \
                 WHERE TABLE_SCHEMA = 'target' AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION",
                (format!("native_{name}"),),
            )
            .await
            .unwrap();
        for ((c, _, _), (tc, tt)) in cols.iter().zip(&types) {
            assert_eq!(&c.name, tc);
            assert_eq!(&c.native_type, tt, "{name}");
        }
        let got = read_all(&mut conn, &format!("target.native_{name}")).await;
        assert!(
            got[0][1..].iter().all(|v| *v == My::NULL),
            "{name}: NULL everywhere"
        );
        for (i, (c, _, want)) in cols.iter().enumerate() {
            assert_eq!(&got[1][i], want, "{name}: column {}", c.name);
        }
    }
}

#[tokio::test]
async fn values_mysql_cannot_hold_are_refused_by_column_without_the_value() {
    let db = server();
    let t = table(
        "refuse",
        vec![
            col("id", DataType::Int32, "integer", false),
            c(
                "num",
                DataType::Decimal {
                    precision: Some(10),
                    scale: Some(2),
                },
                "numeric(10,2)",
            ),
            c("f", DataType::Float64, "double precision"),
            c("d", DataType::Date, "date"),
        ],
        &[0],
    );
    let cases: Vec<(&str, Row)> = vec![
        (
            "num",
            vec![
                Value::Int32(1),
                Value::Decimal("NaN".into()),
                Value::Null,
                Value::Null,
            ],
        ),
        (
            "num",
            vec![
                Value::Int32(1),
                Value::Decimal("1.125".into()),
                Value::Null,
                Value::Null,
            ],
        ),
        (
            "num",
            vec![
                Value::Int32(1),
                Value::Decimal("123456789.5".into()),
                Value::Null,
                Value::Null,
            ],
        ),
        (
            "f",
            vec![
                Value::Int32(1),
                Value::Null,
                Value::Float64(f64::NAN),
                Value::Null,
            ],
        ),
        (
            "d",
            vec![
                Value::Int32(1),
                Value::Null,
                Value::Null,
                Value::Other("infinity".into()),
            ],
        ),
        (
            "d",
            vec![
                Value::Int32(1),
                Value::Null,
                Value::Null,
                Value::Date(NaiveDate::from_ymd_opt(12000, 1, 1).unwrap()),
            ],
        ),
    ];
    for (upsert, label) in [
        (UpsertStrategy::InsertValues, "values"),
        (UpsertStrategy::LoadData, "load"),
    ] {
        let mut sink = sink_with(
            &db,
            MysqlSinkOptions {
                upsert,
                ..Default::default()
            },
        )
        .await;
        for (column, row) in &cases {
            sink.begin().await.unwrap();
            sink.ensure_table(&t).await.unwrap();
            let err = apply_fails(&mut sink, &upserts(&t, vec![row.clone()], false)).await;
            sink.rollback().await.unwrap();
            let msg = err.to_string();
            assert!(!err.is_transient(), "{label}: {msg}");
            assert!(msg.contains(&format!("column {column} ")), "{label}: {msg}");
            for secret in ["NaN", "1.125", "123456789", "infinity", "12000"] {
                assert!(!msg.contains(secret), "{label}: value in message: {msg}");
            }
        }
    }
}
