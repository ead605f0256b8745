//! Helpers shared by the PostgreSQL sink integration tests.

#![allow(dead_code)]

use std::sync::Arc;

use engine::config::{ConnUrl, PostgresTargetConfig};
use engine::{
    ColumnSchema, ConflictPolicy, DataType, Dialect, PartialUpdate, Row, TableChanges, TableId,
    TableSchema,
};
use sinks::postgres::{PgSinkOptions, PostgresSink};
use testkit::{PgOptions, PgServer};
use tokio_postgres::{Client, SimpleQueryMessage};

pub const DB: &str = "target";

/// A private server with an empty `target` database.
pub async fn server() -> PgServer {
    let pg = PgServer::start(PgOptions::default());
    pg.create_database(DB).await;
    pg
}

pub fn target_config(pg: &PgServer) -> PostgresTargetConfig {
    PostgresTargetConfig {
        url: ConnUrl::new(pg.url(DB)),
        password_env: None,
        create_tables: true,
    }
}

pub async fn sink(pg: &PgServer) -> PostgresSink {
    PostgresSink::connect(&target_config(pg))
        .await
        .expect("connecting the sink")
}

pub async fn sink_with(pg: &PgServer, opts: PgSinkOptions) -> PostgresSink {
    PostgresSink::connect_with(&target_config(pg), opts)
        .await
        .expect("connecting the sink")
}

/// A plain client with the session settings dbsync uses (so that text
/// output parses with `engine::pgtext::parse`).
pub async fn client(pg: &PgServer) -> Client {
    let c = pg.connect(DB).await;
    let mut set = String::new();
    for (k, v) in engine::pgtext::SESSION_SETTINGS {
        set.push_str(&format!("SET {k} = '{v}'; "));
    }
    c.batch_execute(&set).await.unwrap();
    c
}

pub fn col(name: &str, data_type: DataType, native: &str, nullable: bool) -> ColumnSchema {
    ColumnSchema {
        name: name.into(),
        data_type,
        nullable,
        native_type: native.into(),
        default: None,
    }
}

pub fn int8(name: &str) -> ColumnSchema {
    col(name, DataType::Int64, "bigint", false)
}

pub fn text(name: &str) -> ColumnSchema {
    col(name, DataType::Text { max_len: None }, "text", true)
}

pub fn table(
    schema: &str,
    name: &str,
    columns: Vec<ColumnSchema>,
    key: &[usize],
) -> Arc<TableSchema> {
    Arc::new(TableSchema {
        id: TableId::new(schema, name),
        columns,
        key: key.to_vec(),
        dialect: Dialect::Postgres,
    })
}

pub fn upserts(t: &Arc<TableSchema>, rows: Vec<Row>, likely_new: bool) -> TableChanges {
    TableChanges {
        table: t.clone(),
        deletes: Vec::new(),
        partial_updates: Vec::new(),
        upserts: rows,
        likely_new,
        policy: ConflictPolicy::Upsert,
        snapshot: false,
    }
}

pub fn deletes(t: &Arc<TableSchema>, keys: Vec<Row>) -> TableChanges {
    TableChanges {
        table: t.clone(),
        deletes: keys,
        partial_updates: Vec::new(),
        upserts: Vec::new(),
        likely_new: false,
        policy: ConflictPolicy::Upsert,
        snapshot: false,
    }
}

pub fn partial(t: &Arc<TableSchema>, updates: Vec<PartialUpdate>) -> TableChanges {
    TableChanges {
        table: t.clone(),
        deletes: Vec::new(),
        partial_updates: updates,
        upserts: Vec::new(),
        likely_new: false,
        policy: ConflictPolicy::Upsert,
        snapshot: false,
    }
}

/// Rows of a query in text form (`None` for NULL).
pub async fn rows(c: &Client, sql: &str) -> Vec<Vec<Option<String>>> {
    let mut out = Vec::new();
    for msg in c
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e:?}"))
    {
        if let SimpleQueryMessage::Row(r) = msg {
            out.push((0..r.len()).map(|i| r.get(i).map(str::to_string)).collect());
        }
    }
    out
}

/// The single value of a query.
pub async fn scalar(c: &Client, sql: &str) -> Option<String> {
    let r = rows(c, sql).await;
    assert_eq!(r.len(), 1, "{sql} returned {} rows", r.len());
    r[0][0].clone()
}

pub async fn count(c: &Client, table: &str) -> i64 {
    scalar(c, &format!("SELECT count(*) FROM {table}"))
        .await
        .unwrap()
        .parse()
        .unwrap()
}

/// Rows of `(id, v)` two-column tables, ordered by the first column.
pub async fn pairs(c: &Client, table: &str) -> Vec<(String, Option<String>)> {
    rows(c, &format!("SELECT * FROM {table} ORDER BY 1"))
        .await
        .into_iter()
        .map(|r| (r[0].clone().unwrap(), r[1].clone()))
        .collect()
}
