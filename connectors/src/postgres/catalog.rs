//! Source catalog queries: table schemas, publications, replication slots.

use std::str::FromStr;
use std::sync::Arc;

use engine::{ColumnSchema, Dialect, Lsn, TableId, TableSchema};
use tokio_postgres::Client;

use super::client::{quote_ident, quote_literal};
use super::error::PgSourceError;
use super::types::data_type;

/// One source column with the catalog facts the stream needs to match
/// pgoutput relation messages against it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogColumn {
    pub type_oid: u32,
    pub type_mod: i32,
}

/// A source table as the catalog describes it now.
#[derive(Debug, Clone)]
pub struct CatalogTable {
    pub oid: u32,
    pub schema: Arc<TableSchema>,
    pub columns: Vec<CatalogColumn>,
    /// `d` default, `n` nothing, `f` full, `i` index.
    pub replica_identity: char,
    /// Whether a primary key (or the replica identity index) gave the key.
    pub has_key: bool,
}

const COLUMNS_SQL: &str = "
SELECT c.oid, c.relreplident::text, a.attname, a.atttypid, a.atttypmod, a.attnotnull,
       format_type(a.atttypid, a.atttypmod),
       CASE WHEN t.typcategory = 'A' THEN t.typelem ELSE 0::oid END,
       (SELECT array_position(i.indkey::int2[], a.attnum)
          FROM pg_index i
         WHERE i.indrelid = c.oid
           AND CASE WHEN c.relreplident = 'i' THEN i.indisreplident ELSE i.indisprimary END
         LIMIT 1)
  FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
                     AND a.attgenerated = ''
  JOIN pg_type t ON t.oid = a.atttypid
 WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')
 ORDER BY a.attnum";

/// Loads one table; `None` when it does not exist.
pub async fn load_table(
    client: &Client,
    id: &TableId,
) -> Result<Option<CatalogTable>, PgSourceError> {
    let rows = client
        .query(COLUMNS_SQL, &[&id.schema, &id.name])
        .await
        .map_err(|e| PgSourceError::query(format!("reading the columns of {id}"), e))?;
    let Some(first) = rows.first() else {
        return Ok(None);
    };
    let oid: u32 = first.get(0);
    let replident: String = first.get(1);
    let mut columns = Vec::with_capacity(rows.len());
    let mut cat_cols = Vec::with_capacity(rows.len());
    let mut key: Vec<(i32, usize)> = Vec::new();
    for (i, r) in rows.iter().enumerate() {
        let name: String = r.get(2);
        let type_oid: u32 = r.get(3);
        let type_mod: i32 = r.get(4);
        let not_null: bool = r.get(5);
        let formatted: String = r.get(6);
        let elem: u32 = r.get(7);
        let key_pos: Option<i32> = r.get(8);
        if let Some(p) = key_pos {
            key.push((p, i));
        }
        columns.push(ColumnSchema {
            name,
            data_type: data_type(type_oid, type_mod, elem, &formatted),
            nullable: !not_null,
            native_type: formatted,
            default: None,
        });
        cat_cols.push(CatalogColumn { type_oid, type_mod });
    }
    key.sort();
    let has_key = !key.is_empty();
    Ok(Some(CatalogTable {
        oid,
        schema: Arc::new(TableSchema {
            id: id.clone(),
            columns,
            key: key.into_iter().map(|(_, i)| i).collect(),
            dialect: Dialect::Postgres,
        }),
        columns: cat_cols,
        replica_identity: replident.chars().next().unwrap_or('d'),
        has_key,
    }))
}

/// `format_type()` and the array element type of a type the stream announced.
pub async fn describe_type(
    client: &Client,
    oid: u32,
    type_mod: i32,
) -> Result<(String, u32), PgSourceError> {
    let row = client
        .query_one(
            "SELECT format_type($1, $2), CASE WHEN typcategory = 'A' THEN typelem ELSE 0::oid END
               FROM pg_type WHERE oid = $1",
            &[&oid, &type_mod],
        )
        .await
        .map_err(|e| PgSourceError::query(format!("describing type oid {oid}"), e))?;
    Ok((row.get(0), row.get(1)))
}

/// Whether the publication exists, and whether it is `FOR ALL TABLES`.
pub async fn publication(client: &Client, name: &str) -> Result<Option<bool>, PgSourceError> {
    let row = client
        .query_opt(
            "SELECT puballtables FROM pg_publication WHERE pubname = $1",
            &[&name],
        )
        .await
        .map_err(|e| PgSourceError::query("reading pg_publication", e))?;
    Ok(row.map(|r| r.get(0)))
}

/// The tables a publication covers.
pub async fn publication_tables(
    client: &Client,
    name: &str,
) -> Result<Vec<TableId>, PgSourceError> {
    let rows = client
        .query(
            "SELECT schemaname::text, tablename::text FROM pg_publication_tables
              WHERE pubname = $1 ORDER BY 1, 2",
            &[&name],
        )
        .await
        .map_err(|e| PgSourceError::query("reading pg_publication_tables", e))?;
    Ok(rows
        .iter()
        .map(|r| TableId::new(r.get::<_, String>(0), r.get::<_, String>(1)))
        .collect())
}

/// Creates the publication for `tables` (or all tables) when it is missing.
/// Returns whether it was created.
pub async fn ensure_publication(
    client: &Client,
    name: &str,
    tables: Option<&[TableId]>,
    create: bool,
) -> Result<bool, PgSourceError> {
    if publication(client, name).await?.is_some() {
        return Ok(false);
    }
    if !create {
        return Err(PgSourceError::Prerequisite(format!(
            "publication {name} does not exist: run CREATE PUBLICATION {} FOR TABLE ... on the source, \
             or set create_publication = true",
            quote_ident(name)
        )));
    }
    let target = match tables {
        Some(ts) if !ts.is_empty() => format!(
            "FOR TABLE {}",
            ts.iter()
                .map(|t| format!("{}.{}", quote_ident(&t.schema), quote_ident(&t.name)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        _ => "FOR ALL TABLES".to_string(),
    };
    client
        .batch_execute(&format!("CREATE PUBLICATION {} {target}", quote_ident(name)))
        .await
        .map_err(|e| {
            PgSourceError::query(
                format!(
                    "creating publication {name} (needs CREATE on the database and ownership of the tables, \
                     or superuser for FOR ALL TABLES; or create it yourself)"
                ),
                e,
            )
        })?;
    Ok(true)
}

/// State of a replication slot.
#[derive(Debug, Clone)]
pub struct SlotState {
    pub plugin: Option<String>,
    pub database: Option<String>,
    pub confirmed_flush: Option<Lsn>,
    pub active: bool,
    /// `lost` when the server removed WAL the slot needed (PostgreSQL 13+).
    pub wal_status: Option<String>,
}

pub async fn slot(client: &Client, name: &str) -> Result<Option<SlotState>, PgSourceError> {
    let row = client
        .query_opt(
            "SELECT plugin::text, database::text, confirmed_flush_lsn::text, active,
                    (to_jsonb(s) ->> 'wal_status')
               FROM pg_replication_slots s WHERE slot_name = $1",
            &[&name],
        )
        .await
        .map_err(|e| PgSourceError::query("reading pg_replication_slots", e))?;
    Ok(row.map(|r| SlotState {
        plugin: r.get(0),
        database: r.get(1),
        confirmed_flush: r
            .get::<_, Option<String>>(2)
            .and_then(|s| Lsn::from_str(&s).ok()),
        active: r.get(3),
        wal_status: r.get(4),
    }))
}

/// The server's current WAL insert position.
pub async fn current_lsn(client: &Client) -> Result<Lsn, PgSourceError> {
    let s: String = client
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .await
        .map_err(|e| PgSourceError::query("reading pg_current_wal_lsn()", e))?
        .get(0);
    Lsn::from_str(&s).map_err(PgSourceError::Decode)
}

/// `"schema"."table"`.
pub fn qualified(id: &TableId) -> String {
    format!("{}.{}", quote_ident(&id.schema), quote_ident(&id.name))
}

/// A typed literal for a key value in its source text form.
pub fn typed_literal(text: &str, native_type: &str) -> String {
    format!("{}::{native_type}", quote_literal(text))
}
