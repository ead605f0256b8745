//! Throughput of `engine::pgtext` parsing and rendering on a typical row mix.
//!
//! `cargo bench -p engine --bench pgtext` prints values per second; no
//! external harness.

use std::hint::black_box;
use std::time::Instant;

use engine::pgtext::{parse, render, render_copy, split_copy_line};
use engine::{DataType, Value};

fn columns() -> Vec<(DataType, &'static str)> {
    vec![
        (DataType::Int64, "1234567890123"),
        (DataType::Int32, "-42"),
        (DataType::Bool, "t"),
        (DataType::Float64, "0.30000000000000004"),
        (
            DataType::Decimal {
                precision: Some(12),
                scale: Some(2),
            },
            "1234567.89",
        ),
        (DataType::Text { max_len: None }, "a customer name, typical"),
        (DataType::Uuid, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
        (DataType::Date, "2024-02-29"),
        (
            DataType::Timestamp { precision: None },
            "2024-01-02 03:04:05.123456",
        ),
        (
            DataType::TimestampTz { precision: None },
            "2024-01-02 03:04:05.123456+00",
        ),
        (DataType::Interval, "P1Y2M3DT4H5M6.5S"),
        (DataType::Bytes, "\\x00ff10203040"),
        (DataType::Json, "{\"a\": [1, 2, 3]}"),
        (DataType::Array(Box::new(DataType::Int32)), "{1,2,3,NULL}"),
    ]
}

fn rate(what: &str, values: usize, start: Instant) {
    let secs = start.elapsed().as_secs_f64();
    println!("{what:<28} {:>6.2} M values/s", values as f64 / secs / 1e6);
}

fn main() {
    let cols = columns();
    let rows = 200_000;
    let n = rows * cols.len();

    let start = Instant::now();
    let mut parsed = Vec::with_capacity(cols.len());
    for _ in 0..rows {
        parsed.clear();
        for (dt, text) in &cols {
            parsed.push(parse(dt, black_box(text)).expect("valid"));
        }
        black_box(&parsed);
    }
    rate("parse", n, start);

    let values: Vec<Value> = parsed.clone();
    let start = Instant::now();
    let mut out = String::new();
    for _ in 0..rows {
        out.clear();
        for v in &values {
            render(black_box(v), &mut out);
        }
        black_box(&out);
    }
    rate("render", n, start);

    let start = Instant::now();
    let mut line = Vec::new();
    for _ in 0..rows {
        line.clear();
        for v in &values {
            render_copy(black_box(v), &mut line);
            line.push(b'\t');
        }
        black_box(&line);
    }
    rate("render_copy", n, start);

    line.pop();
    let start = Instant::now();
    let mut fields = Vec::new();
    for _ in 0..rows {
        split_copy_line(black_box(&line), &mut fields).expect("valid");
        for ((dt, _), f) in cols.iter().zip(&fields) {
            black_box(parse(dt, f.as_deref().expect("not null")).expect("valid"));
        }
    }
    rate("split_copy_line + parse", n, start);
}
