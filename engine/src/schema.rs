//! Table identity and schema.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::value::DataType;

/// A schema-qualified table name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TableId {
    pub schema: String,
    pub name: String,
}

impl TableId {
    pub fn new(schema: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            schema: schema.into(),
            name: name.into(),
        }
    }

    /// Parses `schema.table` (or a bare `table`, which gets `default_schema`).
    pub fn parse(s: &str, default_schema: &str) -> Self {
        match s.split_once('.') {
            Some((schema, name)) => Self::new(schema, name),
            None => Self::new(default_schema, s),
        }
    }
}

impl fmt::Display for TableId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.schema, self.name)
    }
}

/// One column of a table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnSchema {
    pub name: String,
    pub data_type: DataType,
    pub nullable: bool,
    /// The exact source type as the source dialect spells it (e.g. PostgreSQL
    /// `format_type()`: `numeric(10,2)`, `character varying(20)[]`). A sink of the
    /// same dialect may use it verbatim for DDL.
    pub native_type: String,
    /// The column's constant default as text a target parses back into the
    /// column's type (numbers as digits, strings as they are, dates and times
    /// in ISO form); `None` when it has none (or `NULL`). A sink that adds
    /// this column to an existing table gives it this default, so that rows
    /// already there get the value the source gave them (e.g. MySQL's
    /// `ALTER TABLE ... ADD COLUMN c INT NOT NULL DEFAULT 5`). Sources that
    /// do not track defaults leave it `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
}

/// Which database family produced a schema; lets a sink of the same family use native types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dialect {
    Postgres,
    MySql,
    SqlServer,
    Oracle,
}

/// The schema of a table at one point of the source log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableSchema {
    pub id: TableId,
    pub columns: Vec<ColumnSchema>,
    /// Indexes into `columns` of the key used to identify rows (the primary
    /// key, or the replica identity), in key order. Never empty for a
    /// replicated table.
    pub key: Vec<usize>,
    pub dialect: Dialect,
}

impl TableSchema {
    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }

    pub fn key_names(&self) -> impl Iterator<Item = &str> {
        self.key.iter().map(|&i| self.columns[i].name.as_str())
    }

    /// True when two schemas have the same columns (names and types) and key.
    pub fn same_shape(&self, other: &TableSchema) -> bool {
        self.key == other.key
            && self.columns.len() == other.columns.len()
            && self
                .columns
                .iter()
                .zip(&other.columns)
                .all(|(a, b)| a.name == b.name && a.data_type == b.data_type)
    }
}
