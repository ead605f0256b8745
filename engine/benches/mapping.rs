//! Cost per row of the mapping (transform) stage alone.
//!
//! `cargo bench -p engine --bench mapping` reports rows/s (criterion's
//! `elem/s`) for:
//! - `identity`: a mapping that only routes (the baseline, no per-row work);
//! - `typical`: 5 renames, a row filter and 3 transform rules (MASK,
//!   MULTIPLY on a decimal, UPPER) over an 8-column row, ~90% of rows kept;
//! - `sql_script`: one SQL script (`SET ... WHERE ...`);
//! - `js_script`: one JavaScript `transform(record)` that changes two columns.
//!
//! Rows are prepared outside the timed loop (`iter_batched`).

use std::sync::Arc;

use chrono::{TimeZone, Utc};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use engine::config::MappingConfig;
use engine::mapping::{MappedChange, TableRouter};
use engine::{ColumnSchema, DataType, Dialect, Row, TableId, TableSchema, Value};

const ROWS: usize = 1000;

fn schema() -> Arc<TableSchema> {
    let col = |n: &str, t: DataType| ColumnSchema {
        name: n.into(),
        data_type: t,
        nullable: true,
        native_type: String::new(),
        default: None,
    };
    let text = || DataType::Text { max_len: None };
    Arc::new(TableSchema {
        id: TableId::new("public", "customers"),
        columns: vec![
            col("id", DataType::Int64),
            col("name", text()),
            col("email", text()),
            col("phone", text()),
            col(
                "price",
                DataType::Decimal {
                    precision: Some(10),
                    scale: Some(2),
                },
            ),
            col("status", text()),
            col("created_at", DataType::TimestampTz { precision: None }),
            col("qty", DataType::Int32),
        ],
        key: vec![0],
        dialect: Dialect::Postgres,
    })
}

fn rows() -> Vec<Row> {
    (0..ROWS as i64)
        .map(|i| {
            vec![
                Value::Int64(i),
                Value::Text(format!("customer number {i}")),
                Value::Text(format!("user{i}@example.com")),
                Value::Text(format!("138-{:04}-{:04}", i % 10_000, (i * 7) % 10_000)),
                Value::Decimal(format!("{}.{:02}", 5 + i % 500, i % 100)),
                Value::Text(if i % 10 == 0 { "CLOSED" } else { "ACTIVE" }.into()),
                Value::TimestampTz(Utc.timestamp_opt(1_700_000_000 + i, 0).unwrap()),
                Value::Int32((i % 50) as i32),
            ]
        })
        .collect()
}

fn mapping(toml_text: &str) -> MappingConfig {
    toml::from_str(toml_text).expect("bench mapping parses")
}

const TYPICAL: &str = r#"
source = "public.customers"
target = "crm.clients"
column_mappings = [
  { source_column = "name", target_column = "full_name" },
  { source_column = "email", target_column = "mail" },
  { source_column = "phone", target_column = "tel" },
  { source_column = "price", target_column = "amount" },
  { source_column = "qty", target_column = "quantity" },
]
row_filter_condition = "status = 'ACTIVE' AND price > 10"
transform_rules = [
  { column = "phone", transform_type = "MASK", params = { pattern = "***-****-####" } },
  { column = "price", transform_type = "MULTIPLY", params = { factor = 1.1 } },
  { column = "name", transform_type = "UPPER" },
]
"#;

const SQL_SCRIPT: &str = r#"
source = "public.customers"
[[script]]
script_name = "vip"
script_type = "SQL"
trigger_phase = "AFTER_TRANSFORM"
script_content = "SET qty = qty + 1, status = LOWER(status) WHERE price > 10"
"#;

const JS_SCRIPT: &str = r#"
source = "public.customers"
[[script]]
script_name = "js"
script_type = "JAVASCRIPT"
trigger_phase = "BEFORE_WRITE"
script_content = """
function transform(r) {
  r.qty = r.qty + 1;
  r.status = r.status.toLowerCase();
  return r;
}
"""
"#;

fn bench_one(c: &mut Criterion, name: &str, cfg: Option<&str>) {
    let mut router = TableRouter::try_new(&cfg.map(mapping).into_iter().collect::<Vec<_>>())
        .expect("bench mapping compiles");
    let table = router
        .route(&schema())
        .expect("routes")
        .expect("table is mapped");
    let input = rows();
    let mut g = c.benchmark_group("mapping");
    g.throughput(Throughput::Elements(ROWS as u64));
    g.bench_function(name, |b| {
        b.iter_batched(
            || input.clone(),
            |rows| {
                let mut kept = 0usize;
                for r in rows {
                    if let MappedChange::Insert(r) = table.map_insert(r).expect("maps") {
                        kept += r.len();
                    }
                }
                kept
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

fn benches(c: &mut Criterion) {
    bench_one(c, "identity", None);
    bench_one(c, "typical", Some(TYPICAL));
    bench_one(c, "sql_script", Some(SQL_SCRIPT));
    bench_one(c, "js_script", Some(JS_SCRIPT));
}

criterion_group!(mapping_benches, benches);
criterion_main!(mapping_benches);
