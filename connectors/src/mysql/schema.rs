//! The source schema dbsync tracks: every table of the replicated databases
//! with its columns in binlog order, key and default charset, as of one
//! position of the binlog. Kept up to date by the DDL in the stream
//! (`ddl.rs`) and stored per position (`history.rs`).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use engine::{ColumnSchema, Dialect, TableId, TableSchema};
use serde::{Deserialize, Serialize};

use super::types::{Charset, ColType};

/// One column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnDef {
    pub name: String,
    pub ty: ColType,
    pub nullable: bool,
    /// The constant default as text (see [`engine::ColumnSchema::default`]):
    /// only known for columns added or created by DDL dbsync followed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
}

/// One table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableDef {
    /// In table (= binlog) order.
    pub columns: Vec<ColumnDef>,
    /// Primary key column names, in key order (empty: no key).
    pub key: Vec<String>,
    /// The table's default charset (for columns added without one).
    pub charset: Charset,
}

impl TableDef {
    /// Index of a column (names compare case-insensitively, as in MySQL).
    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns
            .iter()
            .position(|c| c.name.eq_ignore_ascii_case(name))
    }

    /// The engine schema of this table.
    pub fn to_schema(&self, id: &TableId) -> TableSchema {
        TableSchema {
            id: id.clone(),
            columns: self
                .columns
                .iter()
                .map(|c| ColumnSchema {
                    name: c.name.clone(),
                    data_type: c.ty.data_type(),
                    nullable: c.nullable,
                    native_type: c.ty.native(),
                    default: c.default.clone(),
                })
                .collect(),
            key: self
                .key
                .iter()
                .filter_map(|k| self.column_index(k))
                .collect(),
            dialect: Dialect::MySql,
        }
    }
}

/// The tracked tables and database charsets at one position.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Catalog {
    /// `(database, table)` → definition.
    #[serde(with = "table_map")]
    pub tables: BTreeMap<TableId, TableDef>,
    /// Default charset per database (for tables created without one).
    pub db_charsets: BTreeMap<String, Charset>,
}

mod table_map {
    use super::*;
    use serde::{Deserializer, Serializer};

    #[derive(Serialize, Deserialize)]
    struct Entry {
        db: String,
        table: String,
        def: TableDef,
    }

    pub fn serialize<S: Serializer>(
        m: &BTreeMap<TableId, TableDef>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        let v: Vec<Entry> = m
            .iter()
            .map(|(k, d)| Entry {
                db: k.schema.clone(),
                table: k.name.clone(),
                def: d.clone(),
            })
            .collect();
        v.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeMap<TableId, TableDef>, D::Error> {
        let v: Vec<Entry> = Vec::deserialize(d)?;
        Ok(v.into_iter()
            .map(|e| (TableId::new(e.db, e.table), e.def))
            .collect())
    }
}

impl Catalog {
    /// The default charset of a database (utf8mb4 when unknown).
    pub fn db_charset(&self, db: &str) -> Charset {
        self.db_charsets
            .get(db)
            .cloned()
            .unwrap_or(Charset::Utf8mb4)
    }
}

/// The catalog plus the engine schemas built from it (shared by every event
/// of a table until its next schema change).
#[derive(Debug, Default)]
pub struct Schemas {
    pub catalog: Catalog,
    engine: HashMap<TableId, Arc<TableSchema>>,
}

impl Schemas {
    /// Starts from `catalog`.
    pub fn new(catalog: Catalog) -> Self {
        Self {
            catalog,
            engine: HashMap::new(),
        }
    }

    /// A tracked table's definition.
    pub fn get(&self, id: &TableId) -> Option<&TableDef> {
        self.catalog.tables.get(id)
    }

    /// The engine schema of a tracked table.
    pub fn schema(&mut self, id: &TableId) -> Option<Arc<TableSchema>> {
        if let Some(s) = self.engine.get(id) {
            return Some(s.clone());
        }
        let def = self.catalog.tables.get(id)?;
        let s = Arc::new(def.to_schema(id));
        self.engine.insert(id.clone(), s.clone());
        Some(s)
    }

    /// Forgets the engine schema of a table whose definition changed.
    pub fn invalidate(&mut self, id: &TableId) {
        self.engine.remove(id);
    }

    /// Replaces (or adds) a table's definition.
    pub fn set(&mut self, id: TableId, def: TableDef) {
        self.engine.remove(&id);
        self.catalog.tables.insert(id, def);
    }

    /// Stops tracking a table.
    pub fn remove(&mut self, id: &TableId) -> Option<TableDef> {
        self.engine.remove(id);
        self.catalog.tables.remove(id)
    }
}
