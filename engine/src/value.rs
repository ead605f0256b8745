//! Typed column values and column data types.
//!
//! A [`Value`] is what one column of one row holds, independent of the source
//! or target dialect. Exact types stay exact: decimals are carried as their
//! canonical decimal text (any precision, `NaN`, `Infinity`), timestamps as
//! microseconds-resolution `chrono` values, JSON as its text.

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Utc};
use serde::{Deserialize, Serialize};

/// The logical type of a column. Sinks map it to their own DDL; a source of the
/// same dialect also records the exact native type in [`crate::ColumnSchema::native_type`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DataType {
    Bool,
    Int16,
    Int32,
    Int64,
    Float32,
    Float64,
    /// Exact decimal; `None` precision means unconstrained (PostgreSQL `numeric`).
    Decimal {
        precision: Option<u32>,
        scale: Option<u32>,
    },
    /// Variable-length text; `max_len` in characters (`varchar(n)`), `None` for `text`.
    Text {
        max_len: Option<u32>,
    },
    /// Fixed-length, blank-padded text (`char(n)`).
    Char {
        len: Option<u32>,
    },
    Bytes,
    Date,
    /// Time of day; `precision` = fractional second digits.
    Time {
        precision: Option<u32>,
    },
    Timestamp {
        precision: Option<u32>,
    },
    TimestampTz {
        precision: Option<u32>,
    },
    Interval,
    Uuid,
    Json,
    Jsonb,
    Array(Box<DataType>),
    /// A type dbsync does not model (enums, domains, geometric types, ...):
    /// the value travels as its source text and `name` is the source type name.
    Other {
        name: String,
    },
}

impl DataType {
    /// Whether every value of `self` is also a value of `new` (a column of
    /// this type can be retyped to `new` without losing or changing any
    /// value): equal types, wider integers and floats, decimals with at least
    /// as many integer and fraction digits, longer (or unbounded) text, and
    /// more fractional second digits.
    pub fn widens_to(&self, new: &DataType) -> bool {
        use DataType as D;
        /// Decimal digits an integer type needs.
        fn digits(t: &DataType) -> Option<u32> {
            match t {
                DataType::Int16 => Some(5),
                DataType::Int32 => Some(10),
                DataType::Int64 => Some(19),
                _ => None,
            }
        }
        let at_least = |old: Option<u32>, new: Option<u32>| match (old, new) {
            (_, None) => true,
            (Some(o), Some(n)) => n >= o,
            (None, Some(_)) => false,
        };
        if self == new {
            return true;
        }
        match (self, new) {
            (D::Int16, D::Int32 | D::Int64) | (D::Int32, D::Int64) | (D::Float32, D::Float64) => {
                true
            }
            (
                D::Int16 | D::Int32 | D::Int64,
                D::Decimal {
                    precision: p,
                    scale: s,
                },
            ) => match (digits(self), p) {
                (_, None) => true,
                (Some(d), Some(p)) => p.saturating_sub(s.unwrap_or(0)) >= d,
                (None, Some(_)) => false,
            },
            (
                D::Decimal {
                    precision: Some(p),
                    scale: s,
                },
                D::Decimal {
                    precision: Some(p2),
                    scale: s2,
                },
            ) => {
                let (s, s2) = (s.unwrap_or(0), s2.unwrap_or(0));
                s2 >= s && p2.saturating_sub(s2) >= p.saturating_sub(s)
            }
            (
                D::Decimal { .. },
                D::Decimal {
                    precision: None, ..
                },
            ) => true,
            (D::Text { max_len: o }, D::Text { max_len: n }) => at_least(*o, *n),
            (D::Char { len: o }, D::Char { len: n }) => at_least(*o, *n),
            (D::Char { len: o }, D::Text { max_len: n }) => at_least(*o, *n),
            (D::Time { precision: o }, D::Time { precision: n })
            | (D::Timestamp { precision: o }, D::Timestamp { precision: n })
            | (D::TimestampTz { precision: o }, D::TimestampTz { precision: n }) => {
                at_least(*o, *n)
            }
            _ => false,
        }
    }
}

/// A time interval as PostgreSQL models it: months, days and microseconds are
/// kept apart because they do not convert into each other exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Interval {
    pub months: i32,
    pub days: i32,
    pub micros: i64,
}

/// One column value.
///
/// `Unchanged` is never written to a target: it marks a column whose value the
/// source did not send because it did not change (a PostgreSQL TOAST value in an
/// update); sinks leave the target column as it is.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int16(i16),
    Int32(i32),
    Int64(i64),
    Float32(f32),
    Float64(f64),
    /// Canonical decimal text, e.g. `-12.340`, `NaN`, `Infinity`.
    Decimal(String),
    Text(String),
    Bytes(Vec<u8>),
    Date(NaiveDate),
    Time(NaiveTime),
    Timestamp(NaiveDateTime),
    TimestampTz(DateTime<Utc>),
    Interval(Interval),
    Uuid([u8; 16]),
    /// JSON document text (for `json` exactly as the source stored it).
    Json(String),
    /// Elements of a one-dimensional array; a multi-dimensional array nests `Array`s.
    Array(Vec<Value>),
    /// A value of a [`DataType::Other`] column, as source text.
    Other(String),
    /// The source did not send this column because it did not change.
    Unchanged,
}

impl Value {
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// Approximate heap + inline size, used for byte-based batch limits.
    pub fn approx_size(&self) -> usize {
        const BASE: usize = 24;
        BASE + match self {
            Value::Decimal(s) | Value::Text(s) | Value::Json(s) | Value::Other(s) => s.len(),
            Value::Bytes(b) => b.len(),
            Value::Array(items) => items.iter().map(Value::approx_size).sum(),
            _ => 0,
        }
    }

    /// A short type name for error messages (never the value itself: values
    /// are user data and must not reach logs).
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "bool",
            Value::Int16(_) => "int16",
            Value::Int32(_) => "int32",
            Value::Int64(_) => "int64",
            Value::Float32(_) => "float32",
            Value::Float64(_) => "float64",
            Value::Decimal(_) => "decimal",
            Value::Text(_) => "text",
            Value::Bytes(_) => "bytes",
            Value::Date(_) => "date",
            Value::Time(_) => "time",
            Value::Timestamp(_) => "timestamp",
            Value::TimestampTz(_) => "timestamptz",
            Value::Interval(_) => "interval",
            Value::Uuid(_) => "uuid",
            Value::Json(_) => "json",
            Value::Array(_) => "array",
            Value::Other(_) => "other",
            Value::Unchanged => "unchanged",
        }
    }
}

/// A row: one value per column of its [`crate::TableSchema`], in column order.
pub type Row = Vec<Value>;

/// Approximate size of a row in bytes.
pub fn row_size(row: &[Value]) -> usize {
    row.iter().map(Value::approx_size).sum()
}

#[cfg(test)]
mod widening_tests {
    use super::DataType as D;

    #[test]
    fn widening_keeps_every_value() {
        let dec = |p, s| D::Decimal {
            precision: p,
            scale: s,
        };
        assert!(D::Int32.widens_to(&D::Int64));
        assert!(!D::Int64.widens_to(&D::Int32));
        assert!(D::Int32.widens_to(&dec(Some(12), Some(2))));
        assert!(!D::Int64.widens_to(&dec(Some(20), Some(2))));
        assert!(dec(Some(10), Some(2)).widens_to(&dec(Some(12), Some(4))));
        assert!(!dec(Some(10), Some(2)).widens_to(&dec(Some(10), Some(4))));
        assert!(D::Text { max_len: Some(10) }.widens_to(&D::Text { max_len: Some(300) }));
        assert!(D::Text { max_len: Some(10) }.widens_to(&D::Text { max_len: None }));
        assert!(!D::Text { max_len: None }.widens_to(&D::Text { max_len: Some(10) }));
        assert!(D::Char { len: Some(3) }.widens_to(&D::Text { max_len: Some(3) }));
        assert!(D::Timestamp { precision: Some(0) }.widens_to(&D::Timestamp { precision: Some(6) }));
        assert!(!D::Float64.widens_to(&D::Float32));
        assert!(!D::Int32.widens_to(&D::Text { max_len: None }));
    }
}
