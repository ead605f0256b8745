//! Regenerates the binlog fixtures of `tests/mysql_binlog_fixtures.rs`:
//! starts a private MariaDB (testkit), runs a known script of DDL and DML
//! over every column type, and copies the binlog file into
//! `tests/fixtures/`. Run with `cargo run -p connectors --example capture_mariadb_binlog`.

use std::path::Path;

use testkit::{MariaDbOptions, MariaDbServer};

/// The statements whose events the fixture holds (the decoding test asserts on them).
pub const SCRIPT: &str = "
CREATE DATABASE fx CHARACTER SET utf8mb4;
CREATE TABLE fx.t (id INT PRIMARY KEY, i8 TINYINT, u8 TINYINT UNSIGNED, u64 BIGINT UNSIGNED, d DECIMAL(12,3),
  f FLOAT, g DOUBLE, b BIT(10), c CHAR(4), v VARCHAR(300), l1 VARCHAR(5) CHARACTER SET latin1, bin BINARY(3),
  bl BLOB, dt DATE, tm TIME(3), dtm DATETIME(6), ts TIMESTAMP(2) NULL DEFAULT NULL, y YEAR, e ENUM('r','g','b'),
  s SET('a','b','c'), j JSON);
INSERT INTO fx.t VALUES (1, -1, 255, 18446744073709551615, -123456789.125, 1.5, -2.25, b'1000000001', 'ab',
  'héllo', 'é', x'0102', x'00ff', '2024-02-29', '-123:04:05.678', '2024-02-29 23:59:59.123456',
  '2001-02-03 04:05:06.07', 1999, 'g', 'a,c', '{\"k\": [1, \"v\"]}');
INSERT INTO fx.t (id) VALUES (2);
UPDATE fx.t SET v = REPEAT('x', 300), u64 = 7 WHERE id = 1;
ALTER TABLE fx.t ADD COLUMN extra INT AFTER id, DROP COLUMN g;
INSERT INTO fx.t (id, extra, v) VALUES (3, 42, 'after ddl');
DELETE FROM fx.t WHERE id = 2;
TRUNCATE fx.t;
RENAME TABLE fx.t TO fx.t2;
INSERT INTO fx.t2 (id, extra) VALUES (4, 4);
";

fn main() {
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    for (name, metadata) in [
        ("mariadb-10.11-minimal.bin", "MINIMAL"),
        ("mariadb-10.11-full.bin", "FULL"),
    ] {
        let db = MariaDbServer::start(MariaDbOptions {
            extra: vec![format!("binlog-row-metadata={metadata}")],
            ..Default::default()
        });
        db.exec(SCRIPT);
        db.exec("FLUSH LOGS");
        let src = db.binlog_dir().join("mysql-bin.000001");
        let bytes = std::fs::read(&src).expect("reading the binlog");
        std::fs::write(out.join(name), &bytes).expect("writing the fixture");
        println!("{name}: {} bytes", bytes.len());
    }
}
