//! Helpers shared by the MySQL sink integration tests (a private MariaDB).

#![allow(dead_code)]

use std::sync::Arc;

use engine::config::{ConnUrl, MysqlTargetConfig};
use engine::{
    ColumnSchema, ConflictPolicy, DataType, Dialect, PartialUpdate, Row, TableChanges, TableId,
    TableSchema,
};
use mysql_async::prelude::Queryable;
use mysql_async::Conn;
use sinks::mysql::{MysqlSink, MysqlSinkOptions};
use testkit::{MariaDbOptions, MariaDbServer};

/// The target database of the tests (a target table `target.x` lives there).
pub const DB: &str = "target";

/// A private server without binlog and an empty `target` database.
pub fn server() -> MariaDbServer {
    let s = MariaDbServer::start(MariaDbOptions {
        binlog: false,
        ..Default::default()
    });
    s.create_database(DB);
    s
}

pub fn target_config(s: &MariaDbServer) -> MysqlTargetConfig {
    MysqlTargetConfig {
        url: ConnUrl::new(s.url(DB)),
        password_env: None,
        create_tables: true,
    }
}

pub async fn sink(s: &MariaDbServer) -> MysqlSink {
    MysqlSink::connect(&target_config(s))
        .await
        .expect("connecting the sink")
}

pub async fn sink_with(s: &MariaDbServer, opts: MysqlSinkOptions) -> MysqlSink {
    MysqlSink::connect_with(&target_config(s), opts)
        .await
        .expect("connecting the sink")
}

/// A plain client in UTC.
pub async fn client(s: &MariaDbServer) -> Conn {
    let mut c = Conn::from_url(s.url(DB)).await.expect("client connection");
    c.query_drop("SET time_zone = '+00:00'").await.unwrap();
    c
}

fn text(v: mysql_async::Value) -> Option<String> {
    match v {
        mysql_async::Value::NULL => None,
        mysql_async::Value::Bytes(b) => Some(String::from_utf8(b).expect("utf-8 result")),
        other => Some(other.as_sql(true)),
    }
}

/// Rows of a query as text (text protocol; use HEX() for binary columns).
pub async fn rows(c: &mut Conn, sql: &str) -> Vec<Vec<Option<String>>> {
    let rs: Vec<mysql_async::Row> = c.query(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    rs.into_iter()
        .map(|r| r.unwrap().into_iter().map(text).collect())
        .collect()
}

pub async fn scalar(c: &mut Conn, sql: &str) -> Option<String> {
    rows(c, sql)
        .await
        .into_iter()
        .next()
        .and_then(|r| r.into_iter().next().flatten())
}

pub async fn count(c: &mut Conn, table: &str) -> i64 {
    scalar(c, &format!("SELECT count(*) FROM {table}"))
        .await
        .unwrap()
        .parse()
        .unwrap()
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

pub fn text_col(name: &str) -> ColumnSchema {
    col(name, DataType::Text { max_len: None }, "text", true)
}

/// A PostgreSQL-dialect table `target.name`.
pub fn table(name: &str, columns: Vec<ColumnSchema>, key: &[usize]) -> Arc<TableSchema> {
    table_in(DB, name, columns, key, Dialect::Postgres)
}

pub fn table_in(
    db: &str,
    name: &str,
    columns: Vec<ColumnSchema>,
    key: &[usize],
    dialect: Dialect,
) -> Arc<TableSchema> {
    Arc::new(TableSchema {
        id: TableId::new(db, name),
        columns,
        key: key.to_vec(),
        dialect,
    })
}

pub fn changes(
    t: &Arc<TableSchema>,
    deletes: Vec<Row>,
    partial_updates: Vec<PartialUpdate>,
    upserts: Vec<Row>,
    likely_new: bool,
) -> TableChanges {
    TableChanges {
        table: t.clone(),
        deletes,
        partial_updates,
        upserts,
        likely_new,
        policy: ConflictPolicy::Upsert,
        snapshot: false,
    }
}

pub fn upserts(t: &Arc<TableSchema>, rows: Vec<Row>, likely_new: bool) -> TableChanges {
    changes(t, Vec::new(), Vec::new(), rows, likely_new)
}

pub fn deletes(t: &Arc<TableSchema>, keys: Vec<Row>) -> TableChanges {
    changes(t, keys, Vec::new(), Vec::new(), false)
}

/// Applies `changes` and expects a failure: a statement's error surfaces at
/// the call that waits for the server — the `apply` itself or, at the
/// latest, the `commit` (statements run on the sink's writer task).
pub async fn apply_fails(sink: &mut MysqlSink, changes: &TableChanges) -> engine::Error {
    use engine::Sink;
    match sink.apply(changes).await {
        Err(e) => e,
        Ok(()) => match sink.commit().await {
            Err(e) => e,
            Ok(()) => panic!("neither apply nor commit failed"),
        },
    }
}
