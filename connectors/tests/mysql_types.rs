//! Every MySQL/MariaDB type: the value the snapshot reads equals the value
//! the binlog decodes, cell by cell, and both are the documented engine values.

mod mysql_support;

use std::sync::Arc;

use engine::{DataType, Value};
use mysql_support::{mariadb, task_config, MemStore, Running};

const TYPES: &str = "CREATE TABLE shop.types_t (
 id INT PRIMARY KEY,
 c_tiny TINYINT, c_utiny TINYINT UNSIGNED, c_small SMALLINT, c_usmall SMALLINT UNSIGNED,
 c_med MEDIUMINT, c_umed MEDIUMINT UNSIGNED, c_int INT, c_uint INT UNSIGNED, c_big BIGINT, c_ubig BIGINT UNSIGNED,
 c_dec DECIMAL(65,30), c_dec2 DECIMAL(10,2), c_dec0 DECIMAL(5,0), c_float FLOAT, c_double DOUBLE,
 c_bit1 BIT(1), c_bit BIT(12), c_bool BOOL,
 c_char CHAR(5), c_varchar VARCHAR(20), c_text TEXT, c_latin1 VARCHAR(20) CHARACTER SET latin1,
 c_ascii CHAR(3) CHARACTER SET ascii, c_ucs2 VARCHAR(10) CHARACTER SET ucs2, c_utf16 VARCHAR(10) CHARACTER SET utf16,
 c_utf32 VARCHAR(10) CHARACTER SET utf32, c_long VARCHAR(300),
 c_binary BINARY(4), c_varbinary VARBINARY(10), c_blob BLOB, c_longtext LONGTEXT,
 c_date DATE, c_time TIME, c_time6 TIME(6), c_dt DATETIME, c_dt3 DATETIME(3), c_dt6 DATETIME(6),
 c_ts TIMESTAMP NULL DEFAULT NULL, c_ts6 TIMESTAMP(6) NULL DEFAULT NULL,
 c_year YEAR, c_enum ENUM('a','b','it''s'), c_set SET('x','y','z'), c_json JSON)";

fn rows(base: i32) -> String {
    format!(
        "SET NAMES utf8mb4; SET SESSION sql_mode = ''; INSERT INTO shop.types_t VALUES
 ({a}, -128, 255, -32768, 65535, -8388608, 16777215, -2147483648, 4294967295, -9223372036854775808,
  18446744073709551615, 12345678901234567890123456789012345.123456789012345678901234567891, -12345678.99, 99999,
  3.4028235e38, 1.7976931348623157e308, b'1', b'101010101010', 1,
  'ab', 'varchar ü 😀', 'tab\\there\\nnew ''q'' \\\\', 'café €', 'abc', 'uçs2', 'ütf16 😀', 'ütf32 😀', REPEAT('x', 300),
  x'00ff', x'000102', x'deadbeef', REPEAT('long ', 1000),
  '2024-02-29', '-838:59:59', '838:59:59.999999', '1000-01-01 00:00:00', '2024-06-01 12:34:56.789', '9999-12-31 23:59:59.999999',
  '1970-01-01 00:00:01', '2038-01-19 03:14:07.999999',
  2155, 'it''s', 'x,z', '{{\"b\": 1, \"a\": [1, 2.5, null, true], \"s\": \"\\u00e9\"}}'),
 ({b}, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, -0.5, -2.5e-300, b'0', b'0', 0,
  '', '', '', '', '', '', '', '', '', x'', x'', x'', '', '0000-00-00', '-00:00:00.5', '00:00:00', '0000-00-00 00:00:00',
  '2024-00-10 00:00:00', '0000-00-00 00:00:00', '0000-00-00 00:00:00', NULL, 0, '', '', '[]'),
 ({c}, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL),
 ({d}, 127, 1, 32767, 1, 8388607, 1, 2147483647, 1, 9223372036854775807, 9223372036854775808, -0.000000000000000000000000000001,
  0.5, -1, 1.5, 0.1, b'1', b'111111111111', -1, 'x    ', ' lead', REPEAT('é', 20000), 'ÿ', 'z', '', '', '', '',
  x'01', x'ff', REPEAT(x'00ff', 3000), '', '0001-01-01', '123:45:06.7', '-00:00:00.000001', '2000-01-01 00:00:00',
  '2000-01-01 00:00:00.001', '2000-02-29 12:00:00.000001', '2000-01-01 00:00:00', '1999-12-31 23:59:59.5',
  1901, 'a', 'x,y,z', '\"scalar\"')",
        a = base,
        b = base + 1,
        c = base + 2,
        d = base + 3
    )
}

fn without_id(mut r: Vec<Value>) -> Vec<Value> {
    r.remove(0);
    r
}

async fn snapshot_vs_stream(zero: &str) -> (Vec<Vec<Value>>, Vec<Arc<engine::TableSchema>>) {
    let db = mariadb(&[]);
    db.exec(TYPES);
    db.exec(&rows(1));
    let store = Arc::new(MemStore::default());
    let task = task_config(
        &db,
        "FULL_INCREMENTAL",
        &format!("zero_dates = \"{zero}\""),
        &[],
    );
    let run = Running::start(&task, store.clone());
    run.wait_for("snapshot", |t| t.rows("types_t").len() == 4)
        .await;
    db.exec(&rows(101));
    run.wait_for("stream", |t| t.rows("types_t").len() == 8)
        .await;
    let t = run.kill().await;
    let t = t.lock().unwrap();
    let all = t.rows("types_t");
    let get = |id: i32| {
        all.iter()
            .find(|r| r[0] == Value::Int32(id))
            .cloned()
            .unwrap()
    };
    let mut snap = Vec::new();
    for (a, b) in [(1, 101), (2, 102), (3, 103), (4, 104)] {
        let (s, c) = (without_id(get(a)), without_id(get(b)));
        for (i, (x, y)) in s.iter().zip(&c).enumerate() {
            assert_eq!(
                x,
                y,
                "row {a} column {} differs: snapshot {x:?} vs stream {y:?}",
                i + 1
            );
        }
        snap.push(get(a));
    }
    (snap, t.relations.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_type_reads_the_same_from_snapshot_and_binlog() {
    let (rows, relations) = snapshot_vs_stream("null").await;
    let r = &rows[0];
    assert_eq!(r[1], Value::Int16(-128));
    assert_eq!(r[2], Value::Int16(255));
    assert_eq!(r[4], Value::Int32(65535));
    assert_eq!(r[6], Value::Int32(16_777_215));
    assert_eq!(r[8], Value::Int64(4_294_967_295));
    assert_eq!(r[10], Value::Decimal("18446744073709551615".into()));
    assert_eq!(
        r[11],
        Value::Decimal("12345678901234567890123456789012345.123456789012345678901234567891".into())
    );
    assert_eq!(r[12], Value::Decimal("-12345678.99".into()));
    assert_eq!(r[14], Value::Float32(3.4028235e38));
    assert_eq!(r[16], Value::Bool(true));
    assert_eq!(r[17], Value::Bytes(vec![0x0a, 0xaa]));
    assert_eq!(r[22], Value::Text("café €".into()));
    assert_eq!(
        r[28],
        Value::Bytes(vec![0, 0xff, 0, 0]),
        "binary(4) is zero-padded"
    );
    assert_eq!(
        r[33],
        Value::Interval(engine::Interval {
            months: 0,
            days: 0,
            micros: -(838 * 3600 + 59 * 60 + 59) * 1_000_000
        })
    );
    assert_eq!(r[42], Value::Text("x,z".into()));
    let Value::Json(j) = &r[43] else {
        panic!("{:?}", r[43])
    };
    assert!(j.contains("\"a\": [1, 2.5, null, true]"), "{j}");
    // Zero dates are NULL by default.
    assert_eq!(rows[1][32], Value::Null);
    assert_eq!(rows[1][35], Value::Null);
    assert_eq!(rows[1][38], Value::Null, "zero timestamp");
    assert_eq!(rows[1][36], Value::Null, "partly zero date");
    // Types as the schema describes them.
    let s = relations.iter().find(|s| s.id.name == "types_t").unwrap();
    let ty = |n: &str| s.columns[s.column_index(n).unwrap()].clone();
    assert_eq!(
        ty("c_ubig").data_type,
        DataType::Decimal {
            precision: Some(20),
            scale: Some(0)
        }
    );
    assert_eq!(ty("c_ubig").native_type, "bigint unsigned");
    assert_eq!(ty("c_json").data_type, DataType::Json);
    assert_eq!(
        ty("c_ts6").data_type,
        DataType::TimestampTz { precision: Some(6) }
    );
    assert_eq!(ty("c_time6").data_type, DataType::Interval);
    assert_eq!(ty("c_enum").native_type, "enum('a','b','it''s')");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_dates_can_travel_as_text() {
    let (rows, _) = snapshot_vs_stream("text").await;
    assert_eq!(rows[1][32], Value::Other("0000-00-00".into()));
    assert_eq!(rows[1][35], Value::Other("0000-00-00 00:00:00".into()));
    assert_eq!(rows[1][36], Value::Other("2024-00-10 00:00:00.000".into()));
    assert_eq!(rows[1][38], Value::Other("0000-00-00 00:00:00".into()));
}
