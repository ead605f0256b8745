//! Target table DDL for MySQL and MariaDB: column types (see `docs/TYPES.md`),
//! `CREATE TABLE`, reading an existing table from `information_schema` and
//! checking it against the source schema.
//!
//! MySQL commits implicitly before and after DDL, so the sink runs these
//! statements on a connection of their own (see `sink.rs`).

use std::fmt::Write as _;

use engine::{ColumnSchema, DataType, Dialect, TableId, TableSchema};
use mysql_async::prelude::Queryable;
use mysql_async::Conn;

use super::error::MysqlSinkError;
use super::sql::{push_ident, qualified, quote_ident, quote_literal};
use super::values::ColKind;

/// InnoDB's limit on the bytes of one index key (DYNAMIC row format).
pub const KEY_BYTES: u32 = 3072;
/// The most characters of an unbounded text key column (`KEY_BYTES` / 4 bytes
/// per utf8mb4 character).
pub const MAX_TEXT_KEY_CHARS: u32 = KEY_BYTES / 4;
/// MySQL's limit on the bytes of a row (text and blob columns count about 12).
const ROW_BYTES: u32 = 65_535;

/// How a key column uses the index key budget.
enum KeyShape {
    /// A fixed most-bytes figure.
    Fixed(u32),
    /// Unbounded text: gets a share of what is left, as `varchar(n)`.
    Text,
    /// Unbounded binary: gets a share of what is left, as `varbinary(n)`.
    Binary,
}

fn decimal_type(precision: Option<u32>, scale: Option<u32>) -> String {
    match precision {
        None => "decimal(65,30)".into(),
        Some(p) => {
            // PostgreSQL allows a negative scale (numeric(5,-2)) and a scale
            // above the precision (numeric(3,5)).
            let s = i64::from(scale.unwrap_or(0));
            let int_digits = (i64::from(p) - s).max(0);
            let frac = s.max(0);
            let total = (int_digits + frac).max(1);
            if total <= 65 && frac <= 30 {
                format!("decimal({total},{frac})")
            } else {
                // Beyond MySQL's DECIMAL: kept exactly as text.
                "longtext".into()
            }
        }
    }
}

fn time_precision(p: Option<u32>) -> u32 {
    p.unwrap_or(6).min(6)
}

/// The MySQL type for a [`DataType`] (non-key columns).
pub fn mapped_type(dt: &DataType) -> String {
    match dt {
        DataType::Bool => "tinyint(1)".into(),
        DataType::Int16 => "smallint".into(),
        DataType::Int32 => "int".into(),
        DataType::Int64 => "bigint".into(),
        DataType::Float32 => "float".into(),
        DataType::Float64 => "double".into(),
        DataType::Decimal { precision, scale } => decimal_type(*precision, *scale),
        DataType::Text { max_len: Some(n) } | DataType::Char { len: Some(n) } if *n > 16_383 => {
            if u64::from(*n) * 4 <= 16_777_215 {
                "mediumtext".into()
            } else {
                "longtext".into()
            }
        }
        DataType::Text { max_len: Some(n) } => format!("varchar({n})"),
        DataType::Char { len: Some(n) } if *n <= 255 => format!("char({n})"),
        DataType::Char { len: Some(n) } => format!("varchar({n})"),
        DataType::Text { max_len: None } | DataType::Char { len: None } => "longtext".into(),
        DataType::Bytes => "longblob".into(),
        DataType::Date => "date".into(),
        DataType::Time { precision } => format!("time({})", time_precision(*precision)),
        DataType::Timestamp { precision } | DataType::TimestampTz { precision } => {
            format!("datetime({})", time_precision(*precision))
        }
        DataType::Interval => "varchar(64)".into(),
        DataType::Uuid => "char(36) CHARACTER SET ascii COLLATE ascii_bin".into(),
        DataType::Json | DataType::Jsonb | DataType::Array(_) => "json".into(),
        DataType::Other { .. } => "longtext".into(),
    }
}

fn mapped_key_shape(dt: &DataType, ty: &str) -> KeyShape {
    match dt {
        DataType::Bytes => KeyShape::Binary,
        DataType::Text { max_len: Some(n) } | DataType::Char { len: Some(n) } => {
            if *n <= MAX_TEXT_KEY_CHARS {
                KeyShape::Fixed(n * 4)
            } else {
                KeyShape::Text
            }
        }
        DataType::Text { max_len: None }
        | DataType::Char { len: None }
        | DataType::Json
        | DataType::Jsonb
        | DataType::Array(_)
        | DataType::Other { .. } => KeyShape::Text,
        DataType::Decimal { .. } if ty == "longtext" => KeyShape::Text,
        DataType::Decimal { .. } => KeyShape::Fixed(32),
        DataType::Interval => KeyShape::Fixed(256),
        DataType::Uuid => KeyShape::Fixed(36),
        _ => KeyShape::Fixed(8),
    }
}

/// Parses a MySQL `COLUMN_TYPE` (`int(10) unsigned`, `enum('a','it''s')`,
/// `decimal(30,10)`) and renders it again for a `NO_BACKSLASH_ESCAPES`
/// session. `None` when it is anything else (never pasted into DDL).
pub fn native_mysql_type(native: &str) -> Option<String> {
    let mut out = String::with_capacity(native.len());
    let mut chars = native.chars().peekable();
    let mut depth = 0i32;
    while let Some(c) = chars.next() {
        match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '_' | ' ' | ',' => out.push(c),
            '(' => {
                depth += 1;
                out.push(c);
            }
            ')' => {
                depth -= 1;
                if depth < 0 {
                    return None;
                }
                out.push(c);
            }
            '\'' if depth > 0 => {
                // COLUMN_TYPE doubles quotes and backslash-escapes.
                let mut member = String::new();
                loop {
                    match chars.next()? {
                        '\'' if chars.peek() == Some(&'\'') => {
                            chars.next();
                            member.push('\'');
                        }
                        '\'' => break,
                        '\\' => member.push(match chars.next()? {
                            'n' => '\n',
                            't' => '\t',
                            'r' => '\r',
                            '0' => '\0',
                            'Z' => '\u{1a}',
                            'b' => '\u{8}',
                            other => other,
                        }),
                        other => member.push(other),
                    }
                }
                out.push_str(&quote_literal(&member));
            }
            _ => return None,
        }
    }
    let base = out.split(['(', ' ']).next().unwrap_or("");
    (depth == 0 && !base.is_empty() && base.chars().all(|c| c.is_ascii_alphanumeric()))
        .then_some(out)
}

fn native_base(ty: &str) -> String {
    ty.split(['(', ' '])
        .next()
        .unwrap_or("")
        .to_ascii_lowercase()
}

fn native_key_shape(base: &str, ty: &str) -> KeyShape {
    match base {
        "tinytext" | "text" | "mediumtext" | "longtext" | "json" => KeyShape::Text,
        "tinyblob" | "blob" | "mediumblob" | "longblob" => KeyShape::Binary,
        "char" | "varchar" | "binary" | "varbinary" => {
            let n: u32 = ty
                .split_once('(')
                .and_then(|(_, r)| r.split(')').next())
                .and_then(|n| n.trim().parse().ok())
                .unwrap_or(255);
            KeyShape::Fixed(if base.ends_with("binary") {
                n
            } else {
                n.saturating_mul(4)
            })
        }
        _ => KeyShape::Fixed(8),
    }
}

/// The type of every column of a table dbsync creates, in column order.
///
/// Source tables of MySQL itself keep their exact `COLUMN_TYPE`. Text key
/// columns get a binary NO PAD collation (`key_collation`); key columns of an
/// unbounded text or binary type become `varchar(n)`/`varbinary(n)` with `n`
/// an equal share of the 3072 bytes InnoDB allows a key, after the other key
/// columns (at most 768 characters). Without a native type, when the row
/// would exceed MySQL's 65535 bytes, the widest non-key `varchar` columns
/// become `text`/`mediumtext`.
pub fn column_types(schema: &TableSchema, key_collation: &str) -> Vec<String> {
    let mut types: Vec<String> = schema
        .columns
        .iter()
        .map(|c| base_type(c, schema.dialect))
        .collect();
    // Key columns.
    let shapes: Vec<(usize, KeyShape)> = schema
        .key
        .iter()
        .filter(|&&i| i < schema.columns.len())
        .map(|&i| {
            let col = &schema.columns[i];
            let shape = if native_type_of(col, schema.dialect).is_some() {
                native_key_shape(&native_base(&types[i]), &types[i])
            } else {
                mapped_key_shape(&col.data_type, &types[i])
            };
            (i, shape)
        })
        .collect();
    let fixed: u32 = shapes
        .iter()
        .map(|(_, s)| if let KeyShape::Fixed(b) = s { *b } else { 0 })
        .fold(0, u32::saturating_add);
    let unbounded = shapes
        .iter()
        .filter(|(_, s)| !matches!(s, KeyShape::Fixed(_)))
        .count() as u32;
    let share = KEY_BYTES.saturating_sub(fixed) / unbounded.max(1);
    for (i, shape) in &shapes {
        let ty = &mut types[*i];
        match shape {
            KeyShape::Text => {
                *ty = format!("varchar({})", (share / 4).clamp(16, MAX_TEXT_KEY_CHARS))
            }
            KeyShape::Binary => *ty = format!("varbinary({})", share.clamp(16, KEY_BYTES)),
            KeyShape::Fixed(_) => {}
        }
        let base = native_base(ty);
        if (base == "varchar" || base == "char") && !ty.contains("CHARACTER SET") {
            let _ = write!(ty, " CHARACTER SET utf8mb4 COLLATE {key_collation}");
        }
    }
    if schema.dialect != Dialect::MySql {
        fit_row(schema, &mut types);
    }
    types
}

/// Most bytes a column takes toward the row size limit.
fn row_bytes(ty: &str) -> u32 {
    let base = native_base(ty);
    let n = || -> u32 {
        ty.split_once('(')
            .and_then(|(_, r)| r.split(')').next())
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(1)
    };
    match base.as_str() {
        "varchar" => {
            let per = if ty.contains("ascii") { 1 } else { 4 };
            n().saturating_mul(per).saturating_add(2)
        }
        "char" => n().saturating_mul(if ty.contains("ascii") { 1 } else { 4 }),
        "varbinary" => n().saturating_add(2),
        _ => 12,
    }
}

fn fit_row(schema: &TableSchema, types: &mut [String]) {
    let mut total: u32 = types
        .iter()
        .map(|t| row_bytes(t))
        .fold(0, u32::saturating_add);
    while total > ROW_BYTES - 2048 {
        let widest = types
            .iter()
            .enumerate()
            .filter(|(i, t)| !schema.key.contains(i) && native_base(t) == "varchar")
            .max_by_key(|(_, t)| row_bytes(t));
        let Some((i, _)) = widest else { return };
        let before = row_bytes(&types[i]);
        types[i] = if before <= 65_535 {
            "text".into()
        } else {
            "mediumtext".into()
        };
        total = total.saturating_sub(before).saturating_add(12);
    }
}

fn native_type_of(col: &ColumnSchema, dialect: Dialect) -> Option<String> {
    (dialect == Dialect::MySql)
        .then(|| native_mysql_type(&col.native_type))
        .flatten()
}

fn base_type(col: &ColumnSchema, dialect: Dialect) -> String {
    native_type_of(col, dialect).unwrap_or_else(|| mapped_type(&col.data_type))
}

/// ` DEFAULT <literal>` for a column with a constant default, else nothing:
/// numbers unquoted into numeric columns, anything else a string literal the
/// server converts to the column's type. `TEXT`/`BLOB`/`JSON` columns take
/// the parenthesized (expression) form, the only one MySQL 8.0.13+ accepts
/// for them (MariaDB 10.2+ takes both).
pub fn default_clause(col: &ColumnSchema, ty: &str) -> String {
    let Some(text) = &col.default else {
        return String::new();
    };
    let base = native_base(ty);
    let numeric_type = matches!(
        base.as_str(),
        "tinyint"
            | "smallint"
            | "mediumint"
            | "int"
            | "integer"
            | "bigint"
            | "decimal"
            | "numeric"
            | "float"
            | "double"
            | "bit"
            | "year"
    );
    let plain_number = !text.is_empty()
        && text
            .trim_start_matches('-')
            .chars()
            .all(|c| c.is_ascii_digit() || c == '.')
        && text.chars().filter(|&c| c == '.').count() <= 1
        && text.chars().any(|c| c.is_ascii_digit());
    let lit = if numeric_type && plain_number {
        text.clone()
    } else {
        quote_literal(text)
    };
    if base.ends_with("text") || base.ends_with("blob") || base == "json" {
        format!(" DEFAULT ({lit})")
    } else {
        format!(" DEFAULT {lit}")
    }
}

fn column_def(sql: &mut String, col: &ColumnSchema, ty: &str, not_null: bool) {
    push_ident(sql, &col.name);
    sql.push(' ');
    sql.push_str(ty);
    // Explicit NULL: a `timestamp` column is NOT NULL by default on servers
    // with explicit_defaults_for_timestamp off.
    sql.push_str(if not_null { " NOT NULL" } else { " NULL" });
    sql.push_str(&default_clause(col, ty));
}

/// `CREATE TABLE IF NOT EXISTS` with the key as primary key, InnoDB, utf8mb4.
pub fn create_table_sql(schema: &TableSchema, types: &[String]) -> String {
    let mut sql = format!("CREATE TABLE IF NOT EXISTS {} (", qualified(&schema.id));
    for (i, (col, ty)) in schema.columns.iter().zip(types).enumerate() {
        column_def(&mut sql, col, ty, !col.nullable || schema.key.contains(&i));
        sql.push_str(", ");
    }
    sql.push_str("PRIMARY KEY (");
    for (i, name) in schema.key_names().enumerate() {
        if i > 0 {
            sql.push_str(", ");
        }
        push_ident(&mut sql, name);
    }
    sql.push_str(")) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4");
    sql
}

/// `CREATE DATABASE IF NOT EXISTS` for a target table's schema.
pub fn create_database_sql(db: &str) -> String {
    format!(
        "CREATE DATABASE IF NOT EXISTS {} CHARACTER SET utf8mb4",
        quote_ident(db)
    )
}

/// `ALTER TABLE ... ADD COLUMN ...` for the columns at `missing`, added
/// nullable; with the source's constant default, which the rows already
/// there get (as they did in the source), else NULL.
pub fn add_columns_sql(schema: &TableSchema, missing: &[usize], types: &[String]) -> String {
    let mut sql = format!("ALTER TABLE {}", qualified(&schema.id));
    let cols = missing
        .iter()
        .filter_map(|&i| Some((schema.columns.get(i)?, types.get(i)?)));
    for (n, (col, ty)) in cols.enumerate() {
        sql.push_str(if n == 0 {
            " ADD COLUMN "
        } else {
            ", ADD COLUMN "
        });
        column_def(&mut sql, col, ty, false);
    }
    sql
}

/// `ALTER TABLE ...` adding the columns at `missing` (see
/// [`add_columns_sql`]) and widening the columns at `widen` to `types`
/// (`MODIFY COLUMN`, nullable unless a key column). Widening rebuilds the
/// table on both servers except where they can do it in place (MariaDB
/// 10.4+ and MySQL 8 extend a `VARCHAR` in place while its length bytes do
/// not change); either way it runs on the DDL connection, outside the data
/// transaction.
pub fn alter_sql(
    schema: &TableSchema,
    missing: &[usize],
    widen: &[usize],
    types: &[String],
) -> String {
    let mut sql = add_columns_sql(schema, missing, types);
    let cols = widen
        .iter()
        .filter_map(|&i| Some((i, schema.columns.get(i)?, types.get(i)?)));
    for (n, (i, col, ty)) in cols.enumerate() {
        sql.push_str(if n == 0 && missing.is_empty() {
            " MODIFY COLUMN "
        } else {
            ", MODIFY COLUMN "
        });
        column_def(&mut sql, col, ty, schema.key.contains(&i));
    }
    sql
}

/// A MySQL column type for comparison: lowercase, single spaces, without
/// integer display widths (`int(11)`) or a character set and collation.
/// (MySQL 8.0.19+ no longer shows display widths in `COLUMN_TYPE`, MariaDB
/// does; both normalize to the same text.)
pub fn normalize_type(ty: &str) -> String {
    let lower = ty.to_ascii_lowercase();
    let cut = [" character set", " collate"]
        .iter()
        .filter_map(|w| lower.find(w))
        .min()
        .unwrap_or(lower.len());
    let mut s = lower[..cut].trim().to_string();
    if int_bytes(&native_base(&s)).is_some() {
        if let (Some(a), Some(b)) = (s.find('('), s.find(')')) {
            if a < b {
                s.replace_range(a..=b, "");
            }
        }
    }
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn int_bytes(base: &str) -> Option<u8> {
    Some(match base {
        "tinyint" => 1,
        "smallint" => 2,
        "mediumint" => 3,
        "int" | "integer" => 4,
        "bigint" => 8,
        _ => return None,
    })
}

/// Whether MySQL type `new` holds every value of `old` when both map to the
/// same engine type (`tinytext` → `text`, `int unsigned` → `bigint`, an
/// `enum` with members appended).
fn native_widens(old: &str, new: &str) -> bool {
    let (o, n) = (normalize_type(old), normalize_type(new));
    let lob = |t: &str| -> Option<(bool, u8)> {
        let b = native_base(t);
        let blob = b.ends_with("blob");
        let size = match b.trim_end_matches("text").trim_end_matches("blob") {
            "tiny" => 1,
            "" => 2,
            "medium" => 3,
            "long" => 4,
            _ => return None,
        };
        (b.ends_with("text") || blob).then_some((blob, size))
    };
    if let (Some(a), Some(b)) = (lob(&o), lob(&n)) {
        return a.0 == b.0 && b.1 >= a.1;
    }
    if let (Some(ob), Some(nb)) = (int_bytes(&native_base(&o)), int_bytes(&native_base(&n))) {
        let (ou, nu) = (o.contains("unsigned"), n.contains("unsigned"));
        return (ou == nu && nb >= ob) || (ou && !nu && nb > ob);
    }
    for kind in ["enum(", "set("] {
        if o.starts_with(kind) && n.starts_with(kind) {
            let prefix = o.trim_end_matches(')');
            return n.starts_with(prefix) && n[prefix.len()..].starts_with([',', ')']);
        }
    }
    false
}

/// The columns whose target type must be widened because their source type
/// changed from `old` to `schema` (target `types` as [`column_types`] gives
/// them). A narrowing needs nothing (the target column still holds every
/// value); any other change fails with what to do, unless the target column
/// already has the type.
pub fn plan_widen(
    old: &TableSchema,
    schema: &TableSchema,
    target: &TargetTable,
    types: &[String],
) -> Result<Vec<usize>, MysqlSinkError> {
    let mut out = Vec::new();
    for (i, col) in schema.columns.iter().enumerate() {
        let Some(was) = old
            .columns
            .iter()
            .find(|o| o.name.eq_ignore_ascii_case(&col.name))
        else {
            continue;
        };
        if was.data_type == col.data_type && was.native_type == col.native_type {
            continue;
        }
        let (Some(current), Some(want)) = (target.column(&col.name), types.get(i)) else {
            continue;
        };
        if normalize_type(&current.column_type) == normalize_type(want) {
            continue;
        }
        let native = was.data_type == col.data_type;
        let narrower = if native {
            native_widens(&col.native_type, &was.native_type)
        } else {
            col.data_type.widens_to(&was.data_type)
        };
        if narrower {
            // The target column (as wide as the old type) holds every new value.
            continue;
        }
        let safe = if native {
            schema.dialect == Dialect::MySql && native_widens(&was.native_type, &col.native_type)
        } else {
            was.data_type.widens_to(&col.data_type)
        };
        if !safe {
            return Err(MysqlSinkError::Schema(format!(
                "source column {} of {} changed type ({} to {}); dbsync only widens target \
                 columns and cannot convert target column {} ({}) safely: change it yourself \
                 (ALTER TABLE {} MODIFY COLUMN {} {}), then restart the task",
                col.name,
                schema.id,
                describe(was),
                describe(col),
                col.name,
                current.column_type,
                qualified(&schema.id),
                quote_ident(&col.name),
                want
            )));
        }
        out.push(i);
    }
    Ok(out)
}

fn describe(c: &ColumnSchema) -> String {
    if c.native_type.is_empty() {
        format!("{:?}", c.data_type)
    } else {
        c.native_type.clone()
    }
}

/// A column of an existing target table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetColumn {
    /// The column name.
    pub name: String,
    /// `COLUMN_TYPE`, e.g. `int(10) unsigned`.
    pub column_type: String,
    /// What the column takes.
    pub kind: ColKind,
}

/// What `information_schema` says about an existing target table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetTable {
    /// `BASE TABLE`, `VIEW`, ...
    pub table_type: String,
    /// The storage engine (`None` for views).
    pub engine: Option<String>,
    /// Columns in table order.
    pub columns: Vec<TargetColumn>,
    /// Column names of every unique index on whole columns (no prefix), the
    /// primary key included.
    pub unique_keys: Vec<Vec<String>>,
}

impl TargetTable {
    /// The target column a source column writes to (MySQL column names are
    /// case-insensitive).
    pub fn column(&self, name: &str) -> Option<&TargetColumn> {
        self.columns
            .iter()
            .find(|c| c.name.eq_ignore_ascii_case(name))
    }
}

fn key_list(schema: &TableSchema) -> String {
    schema.key_names().collect::<Vec<_>>().join(", ")
}

/// Engines with transactions: anything else would make half of a source
/// transaction visible.
const TRANSACTIONAL_ENGINES: &[&str] = &["innodb", "rocksdb", "tokudb", "ndbcluster", "ndb"];

/// Checks an existing target table against the source schema; returns the
/// indexes of source columns missing in the target.
pub fn plan_existing(
    schema: &TableSchema,
    target: &TargetTable,
) -> Result<Vec<usize>, MysqlSinkError> {
    let id = &schema.id;
    // MariaDB lists system-versioned tables apart; they take writes alike.
    if target.table_type != "BASE TABLE" && target.table_type != "SYSTEM VERSIONED" {
        return Err(MysqlSinkError::Schema(format!(
            "target {id} exists but is not a table ({}): map the source table to another target name",
            target.table_type
        )));
    }
    let engine = target.engine.as_deref().unwrap_or("");
    if !TRANSACTIONAL_ENGINES.contains(&engine.to_ascii_lowercase().as_str()) {
        return Err(MysqlSinkError::Schema(format!(
            "target table {id} uses the {engine} engine, which has no transactions (a source \
             transaction could become half-visible): convert it with ALTER TABLE {} ENGINE=InnoDB",
            qualified(id)
        )));
    }
    for name in schema.key_names() {
        if target.column(name).is_none() {
            return Err(MysqlSinkError::Schema(format!(
                "target table {id} has no column {name}, which is part of the key ({}): add the \
                 column with a primary key or unique index on ({}), or drop the table and let \
                 dbsync create it",
                key_list(schema),
                key_list(schema)
            )));
        }
    }
    let covered = target.unique_keys.iter().any(|u| {
        u.len() == schema.key.len()
            && schema
                .key_names()
                .all(|k| u.iter().any(|c| c.eq_ignore_ascii_case(k)))
    });
    if !covered {
        return Err(MysqlSinkError::Schema(format!(
            "target table {id} has no primary key or unique index on ({}) (prefix indexes do \
             not count): add one (ALTER TABLE {} ADD PRIMARY KEY ({})), or let dbsync create \
             the table",
            key_list(schema),
            qualified(id),
            schema
                .key_names()
                .map(quote_ident)
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    Ok(schema
        .columns
        .iter()
        .enumerate()
        .filter(|(_, c)| target.column(&c.name).is_none())
        .map(|(i, _)| i)
        .collect())
}

type ColumnRow = (
    String,
    String,
    String,
    Option<u64>,
    Option<u64>,
    Option<u64>,
);

/// Reads a table from `information_schema`; `None` when it does not exist.
pub async fn read_target(
    conn: &mut Conn,
    id: &TableId,
) -> Result<Option<TargetTable>, MysqlSinkError> {
    let err = |e: mysql_async::Error| MysqlSinkError::statement(id, "reading the catalog", &e);
    let params = (id.schema.as_str(), id.name.as_str());
    let table: Option<(String, Option<String>)> = conn
        .exec_first(
            "SELECT TABLE_TYPE, ENGINE FROM information_schema.TABLES \
             WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
            params,
        )
        .await
        .map_err(err)?;
    let Some((table_type, engine)) = table else {
        return Ok(None);
    };
    let rows: Vec<ColumnRow> = conn
        .exec(
            "SELECT COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, NUMERIC_PRECISION, NUMERIC_SCALE, \
             CHARACTER_MAXIMUM_LENGTH FROM information_schema.COLUMNS \
             WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION",
            params,
        )
        .await
        .map_err(err)?;
    let columns = rows
        .into_iter()
        .map(|(name, data_type, column_type, p, s, len)| TargetColumn {
            kind: ColKind::from_catalog(&data_type, p, s, len),
            name,
            column_type,
        })
        .collect();
    let index_rows: Vec<(String, String, Option<u64>)> = conn
        .exec(
            "SELECT INDEX_NAME, COLUMN_NAME, SUB_PART FROM information_schema.STATISTICS \
             WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND NON_UNIQUE = 0 \
             ORDER BY INDEX_NAME, SEQ_IN_INDEX",
            params,
        )
        .await
        .map_err(err)?;
    let mut unique_keys: Vec<(String, Vec<String>, bool)> = Vec::new();
    for (index, column, sub_part) in index_rows {
        match unique_keys.last_mut() {
            Some((name, cols, full)) if *name == index => {
                cols.push(column);
                *full &= sub_part.is_none();
            }
            _ => unique_keys.push((index, vec![column], sub_part.is_none())),
        }
    }
    Ok(Some(TargetTable {
        table_type,
        engine,
        columns,
        unique_keys: unique_keys
            .into_iter()
            .filter(|(_, _, full)| *full)
            .map(|(_, cols, _)| cols)
            .collect(),
    }))
}

/// Whether a database exists (checked first so that a target user without
/// `CREATE` can use an existing one).
pub async fn database_exists(conn: &mut Conn, id: &TableId) -> Result<bool, MysqlSinkError> {
    conn.exec_first::<u8, _, _>(
        "SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?",
        (id.schema.as_str(),),
    )
    .await
    .map(|r| r.is_some())
    .map_err(|e| MysqlSinkError::statement(id, "reading the catalog", &e))
}

#[cfg(test)]
#[path = "ddl_tests.rs"]
mod tests;
