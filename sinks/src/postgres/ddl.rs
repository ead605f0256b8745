//! Target table DDL: column types, `CREATE TABLE`, reading an existing
//! table from the catalog and checking it against the source schema.

use std::collections::HashSet;
use std::fmt::Write as _;

use engine::{ColumnSchema, DataType, Dialect, TableId, TableSchema};
use tokio_postgres::Client;

use super::error::PgSinkError;
use super::sql::{push_ident, qualified, quote_ident, quote_literal};

/// PostgreSQL built-in type names as `format_type` spells them, with type
/// modifiers and array brackets removed. A native type outside this list
/// (an enum, a domain, an extension type) may not exist in the target.
const BUILTIN_TYPES: &[&str] = &[
    "boolean",
    "smallint",
    "integer",
    "bigint",
    "real",
    "double precision",
    "numeric",
    "character varying",
    "character",
    "bpchar",
    "text",
    "bytea",
    "date",
    "time without time zone",
    "time with time zone",
    "timestamp without time zone",
    "timestamp with time zone",
    "interval",
    "uuid",
    "json",
    "jsonb",
];

/// Strips `(…)` modifiers and `[]` suffixes: `timestamp(3) with time zone[]`
/// → `timestamp with time zone`. `None` for text that is not a plain type name.
fn base_type_name(native: &str) -> Option<String> {
    let ok = native.chars().all(|c| {
        c.is_ascii_lowercase()
            || c.is_ascii_digit()
            || matches!(c, ' ' | '(' | ')' | ',' | '[' | ']')
    });
    if !ok || native.is_empty() {
        return None;
    }
    let mut out = String::with_capacity(native.len());
    let mut depth = 0usize;
    for c in native.chars() {
        match c {
            '(' | '[' => depth += 1,
            ')' | ']' => depth = depth.checked_sub(1)?,
            c if depth == 0 => out.push(c),
            _ => {}
        }
    }
    if depth != 0 {
        return None;
    }
    let base = out.split_whitespace().collect::<Vec<_>>().join(" ");
    // `interval` may carry fields: `interval day to second`.
    if base.starts_with("interval") {
        return Some("interval".into());
    }
    Some(base)
}

fn mentions_other(dt: &DataType) -> bool {
    match dt {
        DataType::Other { .. } => true,
        DataType::Array(e) => mentions_other(e),
        _ => false,
    }
}

/// The type a column gets in a table dbsync creates.
pub fn column_type(col: &ColumnSchema, dialect: Dialect) -> String {
    if dialect == Dialect::Postgres && !mentions_other(&col.data_type) {
        if let Some(base) = base_type_name(&col.native_type) {
            if BUILTIN_TYPES.contains(&base.as_str()) {
                return col.native_type.clone();
            }
        }
    }
    mapped_type(&col.data_type)
}

fn precision_suffix(p: Option<u32>) -> String {
    p.map(|p| format!("({p})")).unwrap_or_default()
}

/// The PostgreSQL type for a [`DataType`].
pub fn mapped_type(dt: &DataType) -> String {
    match dt {
        DataType::Bool => "boolean".into(),
        DataType::Int16 => "smallint".into(),
        DataType::Int32 => "integer".into(),
        DataType::Int64 => "bigint".into(),
        DataType::Float32 => "real".into(),
        DataType::Float64 => "double precision".into(),
        DataType::Decimal {
            precision: Some(p),
            scale: Some(s),
        } => format!("numeric({p},{s})"),
        DataType::Decimal {
            precision: Some(p),
            scale: None,
        } => format!("numeric({p})"),
        DataType::Decimal {
            precision: None, ..
        } => "numeric".into(),
        DataType::Text { max_len: Some(n) } => format!("character varying({n})"),
        DataType::Text { max_len: None } => "text".into(),
        DataType::Char { len: Some(n) } => format!("character({n})"),
        DataType::Char { len: None } => "bpchar".into(),
        DataType::Bytes => "bytea".into(),
        DataType::Date => "date".into(),
        DataType::Time { precision } => {
            format!("time{} without time zone", precision_suffix(*precision))
        }
        DataType::Timestamp { precision } => {
            format!(
                "timestamp{} without time zone",
                precision_suffix(*precision)
            )
        }
        DataType::TimestampTz { precision } => {
            format!("timestamp{} with time zone", precision_suffix(*precision))
        }
        DataType::Interval => "interval".into(),
        DataType::Uuid => "uuid".into(),
        DataType::Json => "json".into(),
        DataType::Jsonb => "jsonb".into(),
        DataType::Array(e) => {
            let mut inner: &DataType = e;
            while let DataType::Array(x) = inner {
                inner = x;
            }
            format!("{}[]", mapped_type(inner))
        }
        DataType::Other { .. } => "text".into(),
    }
}

/// ` DEFAULT '<text>'` for a column with a constant default (the server
/// reads the literal as the column's type; `bytea` in hex form), else nothing.
pub fn default_clause(col: &ColumnSchema) -> String {
    match &col.default {
        Some(text) if col.data_type == DataType::Bytes => {
            format!(" DEFAULT '\\x{}'", hex::encode(text.as_bytes()))
        }
        Some(text) => format!(" DEFAULT {}", quote_literal(text)),
        None => String::new(),
    }
}

/// `CREATE TABLE IF NOT EXISTS "s"."t" (... , PRIMARY KEY (...))`.
pub fn create_table_sql(schema: &TableSchema) -> String {
    let mut sql = format!("CREATE TABLE IF NOT EXISTS {} (", qualified(&schema.id));
    for col in &schema.columns {
        push_ident(&mut sql, &col.name);
        sql.push(' ');
        sql.push_str(&column_type(col, schema.dialect));
        sql.push_str(&default_clause(col));
        if !col.nullable {
            sql.push_str(" NOT NULL");
        }
        sql.push_str(", ");
    }
    sql.push_str("PRIMARY KEY (");
    for (i, name) in schema.key_names().enumerate() {
        if i > 0 {
            sql.push_str(", ");
        }
        push_ident(&mut sql, name);
    }
    sql.push_str("))");
    sql
}

/// `ALTER TABLE "s"."t" ADD COLUMN IF NOT EXISTS ...` for the columns at
/// `missing`, added nullable; with the source's constant default, which the
/// rows already there get (as they did in the source), else NULL.
pub fn add_columns_sql(schema: &TableSchema, missing: &[usize]) -> String {
    let mut sql = format!("ALTER TABLE {}", qualified(&schema.id));
    for (n, &i) in missing.iter().enumerate() {
        let col = &schema.columns[i];
        sql.push_str(if n == 0 { " " } else { ", " });
        let _ = write!(
            sql,
            "ADD COLUMN IF NOT EXISTS {} {}{}",
            quote_ident(&col.name),
            column_type(col, schema.dialect),
            default_clause(col)
        );
    }
    sql
}

/// `ALTER TABLE ... ALTER COLUMN ... TYPE ...` for the columns at `widen`.
pub fn widen_columns_sql(schema: &TableSchema, widen: &[usize]) -> String {
    let mut sql = format!("ALTER TABLE {}", qualified(&schema.id));
    for (n, &i) in widen.iter().enumerate() {
        let col = &schema.columns[i];
        sql.push_str(if n == 0 { " " } else { ", " });
        let _ = write!(
            sql,
            "ALTER COLUMN {} TYPE {}",
            quote_ident(&col.name),
            column_type(col, schema.dialect)
        );
    }
    sql
}

/// The columns whose target type must be widened because their source type
/// changed from `old` to `schema`. A narrowing needs nothing (the target
/// column still holds every value); any other change fails with what to do,
/// unless the target column already has the type.
pub fn plan_widen(
    old: &TableSchema,
    schema: &TableSchema,
    target: &TargetTable,
) -> Result<Vec<usize>, PgSinkError> {
    let mut out = Vec::new();
    for (i, col) in schema.columns.iter().enumerate() {
        let Some(was) = old.columns.iter().find(|o| o.name == col.name) else {
            continue;
        };
        if was.data_type == col.data_type {
            continue;
        }
        let Some(current) = target.columns.iter().find(|t| t.name == col.name) else {
            continue;
        };
        let want = column_type(col, schema.dialect);
        if current.type_name == want {
            continue;
        }
        if col.data_type.widens_to(&was.data_type) {
            // Narrowed: the target column (as wide as the old type) holds every new value.
            continue;
        }
        if !was.data_type.widens_to(&col.data_type) {
            return Err(PgSinkError::Schema(format!(
                "source column {} of {} changed type ({:?} to {:?}); dbsync only widens target \
                 columns and cannot convert target column {} ({}) safely: change it yourself \
                 (ALTER TABLE {} ALTER COLUMN {} TYPE {} USING ...), then restart the task",
                col.name,
                schema.id,
                was.data_type,
                col.data_type,
                col.name,
                current.type_name,
                qualified(&schema.id),
                quote_ident(&col.name),
                want
            )));
        }
        out.push(i);
    }
    Ok(out)
}

/// A column of an existing target table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetColumn {
    /// The column name.
    pub name: String,
    /// `format_type` spelling.
    pub type_name: String,
    /// Whether the type is an array type.
    pub is_array: bool,
}

/// What the catalog says about an existing target table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetTable {
    /// Columns in table order.
    pub columns: Vec<TargetColumn>,
    /// Column names of every usable unique index (primary key included):
    /// valid, immediate, without predicate or expressions.
    pub unique_keys: Vec<Vec<String>>,
}

/// What `ensure_table` has to do to an existing table, or why it cannot use it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TablePlan {
    /// Indexes of source columns missing in the target.
    pub missing: Vec<usize>,
    /// Target type of every key column, in key order; `None` when one is an array.
    pub key_types: Option<Vec<String>>,
}

fn key_list(schema: &TableSchema) -> String {
    schema.key_names().collect::<Vec<_>>().join(", ")
}

/// Checks an existing target table against the source schema.
pub fn plan_existing(schema: &TableSchema, target: &TargetTable) -> Result<TablePlan, PgSinkError> {
    let id = &schema.id;
    let mut key_types = Some(Vec::with_capacity(schema.key.len()));
    for name in schema.key_names() {
        let Some(col) = target.columns.iter().find(|c| c.name == name) else {
            return Err(PgSinkError::Schema(format!(
                "target table {id} has no column {name}, which is part of the key ({}): \
                 add the column with a primary key or unique constraint on ({}), \
                 or drop the table and let dbsync create it",
                key_list(schema),
                key_list(schema)
            )));
        };
        if col.is_array {
            key_types = None;
        } else if let Some(types) = key_types.as_mut() {
            types.push(col.type_name.clone());
        }
    }
    let key: HashSet<&str> = schema.key_names().collect();
    let covered = target
        .unique_keys
        .iter()
        .any(|u| u.len() == key.len() && u.iter().all(|c| key.contains(c.as_str())));
    if !covered {
        return Err(PgSinkError::Schema(format!(
            "target table {id} has no primary key or unique constraint on ({}): \
             add one, or let dbsync create the table",
            key_list(schema)
        )));
    }
    let missing = schema
        .columns
        .iter()
        .enumerate()
        .filter(|(_, c)| !target.columns.iter().any(|t| t.name == c.name))
        .map(|(i, _)| i)
        .collect();
    Ok(TablePlan { missing, key_types })
}

/// Reads a table from the catalog; `None` when it does not exist.
pub async fn read_target(
    client: &Client,
    id: &TableId,
) -> Result<Option<TargetTable>, PgSinkError> {
    let err = |e: tokio_postgres::Error| PgSinkError::statement(id, "reading the catalog", &e);
    let rel = client
        .query_opt(
            "SELECT c.oid, c.relkind::text FROM pg_catalog.pg_class c \
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND c.relname = $2",
            &[&id.schema, &id.name],
        )
        .await
        .map_err(err)?;
    let Some(rel) = rel else { return Ok(None) };
    let oid: u32 = rel.get(0);
    let kind: String = rel.get(1);
    if kind != "r" && kind != "p" {
        return Err(PgSinkError::Schema(format!(
            "target {id} exists but is not a table (relkind {kind}): \
             map the source table to another target name"
        )));
    }
    let columns = client
        .query(
            "SELECT a.attname::text, pg_catalog.format_type(a.atttypid, a.atttypmod), \
             t.typcategory = 'A' \
             FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_type t ON t.oid = a.atttypid \
             WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
            &[&oid],
        )
        .await
        .map_err(err)?
        .iter()
        .map(|r| TargetColumn {
            name: r.get(0),
            type_name: r.get(1),
            is_array: r.get(2),
        })
        .collect();
    let unique_keys = client
        .query(
            "SELECT ARRAY(SELECT a.attname::text \
               FROM unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, n) \
               JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum \
               WHERE k.n <= i.indnkeyatts ORDER BY k.n) \
             FROM pg_catalog.pg_index i \
             WHERE i.indrelid = $1 AND i.indisunique AND i.indimmediate AND i.indisvalid \
               AND i.indpred IS NULL AND i.indexprs IS NULL",
            &[&oid],
        )
        .await
        .map_err(err)?
        .iter()
        .map(|r| r.get::<_, Vec<String>>(0))
        .collect();
    Ok(Some(TargetTable {
        columns,
        unique_keys,
    }))
}

/// Whether a schema exists (checked first so that a target user without
/// `CREATE` on the database can use an existing schema).
pub async fn schema_exists(client: &Client, id: &TableId) -> Result<bool, PgSinkError> {
    client
        .query_opt(
            "SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = $1",
            &[&id.schema],
        )
        .await
        .map(|r| r.is_some())
        .map_err(|e| PgSinkError::statement(id, "reading the catalog", &e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(name: &str, dt: DataType, native: &str) -> ColumnSchema {
        ColumnSchema {
            name: name.into(),
            data_type: dt,
            nullable: true,
            native_type: native.into(),
            default: None,
        }
    }

    #[test]
    fn native_builtin_types_are_used_verbatim() {
        let cases = [
            (
                DataType::Decimal {
                    precision: Some(10),
                    scale: Some(2),
                },
                "numeric(10,2)",
            ),
            (
                DataType::Text { max_len: Some(20) },
                "character varying(20)",
            ),
            (
                DataType::TimestampTz { precision: Some(3) },
                "timestamp(3) with time zone",
            ),
            (DataType::Array(Box::new(DataType::Int32)), "integer[]"),
            (
                DataType::Array(Box::new(DataType::Text { max_len: Some(5) })),
                "character varying(5)[]",
            ),
            (DataType::Interval, "interval day to second(3)"),
            (DataType::Float64, "double precision"),
        ];
        for (dt, native) in cases {
            assert_eq!(
                column_type(&col("c", dt, native), Dialect::Postgres),
                native
            );
        }
    }

    #[test]
    fn user_defined_or_foreign_types_are_mapped() {
        let other = DataType::Other {
            name: "mood".into(),
        };
        assert_eq!(
            column_type(&col("c", other.clone(), "mood"), Dialect::Postgres),
            "text"
        );
        assert_eq!(
            column_type(
                &col("c", DataType::Array(Box::new(other)), "mood[]"),
                Dialect::Postgres
            ),
            "text[]"
        );
        // A domain over a built-in type: its name is not a built-in.
        assert_eq!(
            column_type(
                &col("c", DataType::Int32, "positive_int"),
                Dialect::Postgres
            ),
            "integer"
        );
        // Another dialect's native spelling is never used.
        assert_eq!(
            column_type(&col("c", DataType::Int32, "integer"), Dialect::MySql),
            "integer"
        );
        assert_eq!(
            column_type(
                &col("c", DataType::Int64, "bigint; drop table x"),
                Dialect::Postgres
            ),
            "bigint"
        );
        assert_eq!(
            column_type(
                &col("c", DataType::Int64, "public.\"int8\""),
                Dialect::Postgres
            ),
            "bigint"
        );
    }

    #[test]
    fn mapped_types() {
        let cases = [
            (DataType::Bool, "boolean"),
            (DataType::Int16, "smallint"),
            (DataType::Float32, "real"),
            (
                DataType::Decimal {
                    precision: Some(12),
                    scale: Some(4),
                },
                "numeric(12,4)",
            ),
            (
                DataType::Decimal {
                    precision: Some(12),
                    scale: None,
                },
                "numeric(12)",
            ),
            (
                DataType::Decimal {
                    precision: None,
                    scale: None,
                },
                "numeric",
            ),
            (DataType::Text { max_len: Some(3) }, "character varying(3)"),
            (DataType::Text { max_len: None }, "text"),
            (DataType::Char { len: Some(2) }, "character(2)"),
            (DataType::Bytes, "bytea"),
            (DataType::Date, "date"),
            (DataType::Time { precision: None }, "time without time zone"),
            (
                DataType::Timestamp { precision: Some(6) },
                "timestamp(6) without time zone",
            ),
            (
                DataType::TimestampTz { precision: None },
                "timestamp with time zone",
            ),
            (DataType::Uuid, "uuid"),
            (DataType::Json, "json"),
            (DataType::Jsonb, "jsonb"),
            (
                DataType::Array(Box::new(DataType::Array(Box::new(DataType::Int64)))),
                "bigint[]",
            ),
        ];
        for (dt, want) in cases {
            assert_eq!(mapped_type(&dt), want, "{dt:?}");
        }
    }

    fn table() -> TableSchema {
        TableSchema {
            id: TableId::new("public", "orders"),
            columns: vec![
                col("id", DataType::Int64, "bigint"),
                col("note", DataType::Text { max_len: None }, "text"),
                ColumnSchema {
                    nullable: false,
                    ..col("qty", DataType::Int32, "integer")
                },
            ],
            key: vec![0],
            dialect: Dialect::Postgres,
        }
    }

    #[test]
    fn create_table_has_not_null_and_primary_key() {
        assert_eq!(
            create_table_sql(&table()),
            "CREATE TABLE IF NOT EXISTS \"public\".\"orders\" (\"id\" bigint, \"note\" text, \
             \"qty\" integer NOT NULL, PRIMARY KEY (\"id\"))"
        );
        assert_eq!(
            add_columns_sql(&table(), &[1, 2]),
            "ALTER TABLE \"public\".\"orders\" ADD COLUMN IF NOT EXISTS \"note\" text, \
             ADD COLUMN IF NOT EXISTS \"qty\" integer"
        );
    }

    fn target(cols: &[&str], uniques: &[&[&str]]) -> TargetTable {
        TargetTable {
            columns: cols
                .iter()
                .map(|c| TargetColumn {
                    name: c.to_string(),
                    type_name: "bigint".into(),
                    is_array: false,
                })
                .collect(),
            unique_keys: uniques
                .iter()
                .map(|u| u.iter().map(|s| s.to_string()).collect())
                .collect(),
        }
    }

    #[test]
    fn existing_table_plans() {
        let plan = plan_existing(&table(), &target(&["id", "qty", "extra"], &[&["id"]])).unwrap();
        assert_eq!(plan.missing, vec![1]);
        assert_eq!(plan.key_types, Some(vec!["bigint".to_string()]));

        let err = plan_existing(&table(), &target(&["id", "note", "qty"], &[]))
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "target table public.orders has no primary key or unique constraint on (id): \
             add one, or let dbsync create the table"
        );
        // A unique index on more columns than the key cannot serve ON CONFLICT (id).
        assert!(plan_existing(&table(), &target(&["id", "qty"], &[&["id", "qty"]])).is_err());
        let err = plan_existing(&table(), &target(&["note", "qty"], &[]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("has no column id"), "{err}");
    }

    #[test]
    fn added_columns_get_defaults_and_changed_types_widen() {
        let mut t = table();
        t.columns[1].default = Some("it's".into());
        t.columns[2].default = Some("-5".into());
        assert_eq!(
            add_columns_sql(&t, &[1, 2]),
            "ALTER TABLE \"public\".\"orders\" ADD COLUMN IF NOT EXISTS \"note\" text \
             DEFAULT 'it''s', ADD COLUMN IF NOT EXISTS \"qty\" integer DEFAULT '-5'"
        );
        let bytes = ColumnSchema {
            default: Some("ab".into()),
            ..col("b", DataType::Bytes, "bytea")
        };
        assert_eq!(default_clause(&bytes), " DEFAULT '\\x6162'");

        let old = table();
        let mut new = table();
        new.columns[2] = col("qty", DataType::Int64, "bigint");
        let mut tgt = target(&["id", "note", "qty"], &[&["id"]]);
        tgt.columns[2].type_name = "integer".into();
        assert_eq!(plan_widen(&old, &new, &tgt).unwrap(), vec![2]);
        assert_eq!(
            widen_columns_sql(&new, &[2]),
            "ALTER TABLE \"public\".\"orders\" ALTER COLUMN \"qty\" TYPE bigint"
        );
        // Already bigint (a replay), or narrowed back: nothing to do.
        tgt.columns[2].type_name = "bigint".into();
        assert!(plan_widen(&old, &new, &tgt).unwrap().is_empty());
        assert!(plan_widen(&new, &old, &tgt).unwrap().is_empty());
        // Another kind of type: stop, saying what to run.
        new.columns[2] = col("qty", DataType::Text { max_len: None }, "text");
        let err = plan_widen(&old, &new, &tgt).unwrap_err().to_string();
        assert!(
            err.contains("only widens") && err.contains("TYPE text"),
            "{err}"
        );
    }
}
