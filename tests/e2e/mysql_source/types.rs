//! Every MariaDB type from the binlog source, into PostgreSQL (snapshot
//! and binlog paths compared in the target, documented column types) and into
//! MariaDB (exactly the source's rows and column types).

use std::process::Command;
use std::time::{Duration, Instant};

use super::{Dst, MyEnv};
use crate::T;

const MY_TYPES: &str = "CREATE TABLE shop.types_t (
 id INT PRIMARY KEY,
 c_tiny TINYINT, c_utiny TINYINT UNSIGNED, c_small SMALLINT, c_usmall SMALLINT UNSIGNED,
 c_med MEDIUMINT, c_umed MEDIUMINT UNSIGNED, c_int INT, c_uint INT UNSIGNED, c_big BIGINT, c_ubig BIGINT UNSIGNED,
 c_dec DECIMAL(65,30), c_dec2 DECIMAL(10,2), c_float FLOAT, c_double DOUBLE,
 c_bit1 BIT(1), c_bit BIT(12), c_bool BOOL,
 c_char CHAR(5), c_varchar VARCHAR(20), c_text TEXT, c_latin1 VARCHAR(20) CHARACTER SET latin1,
 c_utf16 VARCHAR(10) CHARACTER SET utf16,
 c_binary BINARY(4), c_varbinary VARBINARY(10), c_blob BLOB,
 c_date DATE, c_time TIME, c_time6 TIME(6), c_dt DATETIME, c_dt6 DATETIME(6),
 c_ts TIMESTAMP NULL DEFAULT NULL, c_ts6 TIMESTAMP(6) NULL DEFAULT NULL,
 c_year YEAR, c_enum ENUM('a','b','it''s'), c_set SET('x','y','z'), c_json JSON)";

fn my_type_rows(base: i32) -> String {
    format!(
        "SET NAMES utf8mb4; INSERT INTO shop.types_t VALUES
 ({a}, -128, 255, -32768, 65535, -8388608, 16777215, -2147483648, 4294967295, -9223372036854775808,
  18446744073709551615, 12345678901234567890123456789012345.123456789012345678901234567891, -12345678.99,
  3.40282e38, 1.7976931348623157e308, b'1', b'101010101010', 1,
  'ab', 'varchar ü 😀', 'tab\\there\\nnew ''q'' \\\\', 'café €', 'ütf16 😀',
  x'00ff', x'000102', x'deadbeef',
  '2024-02-29', '-838:59:59', '838:59:59.999999', '1000-01-01 00:00:00', '9999-12-31 23:59:59.999999',
  '1970-01-01 00:00:01', '2038-01-19 03:14:07.999999',
  2155, 'it''s', 'x,z', '{{\"b\": 1, \"a\": [1, 2.5, null, true]}}'),
 ({b}, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, -0.5, -2.5e-300, b'0', b'0', 0,
  '', '', '', '', '', x'', x'', x'', '0001-01-01', '-00:00:01', '00:00:00', '2000-01-01 00:00:00',
  '2000-02-29 12:00:00.000001', '2000-01-01 00:00:00', '1999-12-31 23:59:59.5', 1901, 'a', '', '[]'),
 ({c}, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)",
        a = base,
        b = base + 1,
        c = base + 2
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maria_to_pg_every_type_arrives_the_same_by_snapshot_and_stream() {
    let env = MyEnv::new(true, &[]);
    env.ready().await;
    env.src.exec(MY_TYPES);
    env.src.exec(&my_type_rows(1));
    let cfg = env.write_config("FULL_INCREMENTAL", "", "", &["types_t"]);
    let d = env.spawn(&cfg);
    env.wait_log("streaming changes", T).await;
    env.src.exec(&my_type_rows(101));
    let Dst::Pg(pg) = &env.dst else {
        unreachable!()
    };
    let c = pg.connect("reporting").await;
    let start = Instant::now();
    while c
        .query_one("SELECT count(*) FROM public.types_t", &[])
        .await
        .map(|r| r.get::<_, i64>(0))
        .unwrap_or(0)
        < 6
    {
        assert!(start.elapsed() < T, "types not replicated:\n{}", env.log());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for (a, b) in [(1, 101), (2, 102), (3, 103)] {
        let same: bool = c
            .query_one(
                "SELECT (SELECT (x.*)::text FROM public.types_t x WHERE id = $1) IS NOT DISTINCT FROM
                        replace((SELECT (x.*)::text FROM public.types_t x WHERE id = $2), '(' || $2::text || ',', '(' || $1::text || ',')",
                &[&a, &b],
            )
            .await
            .unwrap()
            .get(0);
        assert!(
            same,
            "row {a} (snapshot) and row {b} (binlog) differ in PostgreSQL"
        );
    }
    // The documented mapping.
    let ty = |col: &'static str| {
        let c = &c;
        async move {
            c.query_one(
                "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = 'public.types_t'::regclass AND attname = $1",
                &[&col],
            )
            .await
            .unwrap()
            .get::<_, String>(0)
        }
    };
    assert_eq!(ty("c_ubig").await, "numeric(20,0)");
    assert_eq!(ty("c_uint").await, "bigint");
    assert_eq!(ty("c_utiny").await, "smallint");
    assert_eq!(ty("c_dec").await, "numeric(65,30)");
    assert_eq!(ty("c_time6").await, "interval");
    assert_eq!(ty("c_dt6").await, "timestamp(6) without time zone");
    assert_eq!(ty("c_ts").await, "timestamp(0) with time zone");
    assert_eq!(ty("c_json").await, "json");
    assert_eq!(ty("c_bit1").await, "boolean");
    assert_eq!(ty("c_enum").await, "text");
    let row: String = c
        .query_one(
            "SELECT concat_ws('|', c_ubig, c_time, c_ts6, c_enum, c_set, encode(c_binary, 'hex'), c_latin1) FROM public.types_t WHERE id = 101",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        row,
        "18446744073709551615|-838:59:59|2038-01-19 03:14:07.999999+00|it's|x,z|00ff0000|café €"
    );
    drop(d);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maria_to_maria_every_type_round_trips_exactly() {
    let env = MyEnv::new(false, &[]);
    env.src.exec(MY_TYPES);
    env.src.exec(&my_type_rows(1));
    let cfg = env.write_config("FULL_INCREMENTAL", "", "", &["types_t"]);
    let d = env.spawn(&cfg);
    env.wait_log("streaming changes", T).await;
    env.src.exec(&my_type_rows(101));
    env.src.exec("UPDATE shop.types_t SET c_varchar = 'updated', c_time = '-12:00:00' WHERE id = 102; DELETE FROM shop.types_t WHERE id = 103");
    let Dst::Maria(m) = &env.dst else {
        unreachable!()
    };
    let q = |db: &str| format!("SET NAMES utf8mb4; SELECT * FROM {db}.types_t ORDER BY id");
    let start = Instant::now();
    loop {
        let s = env.src.exec(&q("shop"));
        let out = Command::new("mariadb")
            .arg("--no-defaults")
            .arg(format!("--socket={}", m.socket().display()))
            .args([
                "-uroot",
                "--batch",
                "--skip-column-names",
                "-e",
                &q("reporting"),
            ])
            .output()
            .unwrap();
        let t = String::from_utf8_lossy(&out.stdout).into_owned();
        if s == t {
            break;
        }
        assert!(
            start.elapsed() < T,
            "types differ:\nsource:\n{s}\ntarget:\n{t}\n{}",
            env.log()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // Exact column types.
    let cols = |sock: &std::path::Path, db: &str| {
        let out = Command::new("mariadb")
            .arg("--no-defaults")
            .arg(format!("--socket={}", sock.display()))
            .args([
                "-uroot",
                "--batch",
                "--skip-column-names",
                "-e",
                &format!(
                    "SELECT COLUMN_NAME, COLUMN_TYPE FROM information_schema.COLUMNS \
                     WHERE TABLE_SCHEMA = '{db}' AND TABLE_NAME = 'types_t' ORDER BY ORDINAL_POSITION"
                ),
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let src_types = cols(&env.src.socket(), "shop").replace("tinyint(1)", "tinyint(4)");
    let dst_types = cols(&m.socket(), "reporting").replace("tinyint(1)", "tinyint(4)");
    assert_eq!(src_types, dst_types);
    drop(d);
}
