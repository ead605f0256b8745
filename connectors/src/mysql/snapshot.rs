//! The initial copy: one consistent-snapshot transaction, its binlog
//! position, and tables read in primary-key order in chunks
//! (`SELECT ... WHERE key > last ORDER BY key LIMIT n`, binary protocol), so
//! that an interrupted copy resumes after the last key that reached the target.
//!
//! Where the servers differ:
//! - **MariaDB** reports the binlog position of a `START TRANSACTION WITH
//!   CONSISTENT SNAPSHOT` in `binlog_snapshot_file`/`binlog_snapshot_position`
//!   (no lock at all); the GTID state there comes from `BINLOG_GTID_POS`.
//! - **MySQL** has no such status: dbsync takes `FLUSH TABLES WITH READ LOCK`
//!   for the moment it takes to start the snapshot and read `SHOW MASTER
//!   STATUS` (file, position, `Executed_Gtid_Set`), then unlocks (needs RELOAD).
//!
//! The snapshot transaction holds metadata locks on the tables it has read
//! until it ends, so DDL on them waits for the copy (writes do not).

use std::sync::Arc;
use std::time::Instant;

use engine::event::SnapshotChunk;
use engine::position::BinlogPosition;
use engine::{ChangeEvent, EventSender, Row, TableSchema, TableSnapshotProgress};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Row as MyRow, Value as MyValue};
use tokio_util::sync::CancellationToken;
use tracing::info;

use super::catalog::{current_position, maria_gtid_at};
use super::client::{qualified, quote_ident, Flavor};
use super::error::MysqlSourceError;
use super::schema::TableDef;
use super::types::ColType;
use super::values::{from_protocol, ValueOpts};

/// The most rows in one emitted [`SnapshotChunk`] (bounded memory per event).
pub const EMIT_ROWS: usize = 5_000;

fn q(what: &'static str) -> impl Fn(mysql_async::Error) -> MysqlSourceError {
    move |e| MysqlSourceError::query(what, e)
}

/// Starts the consistent snapshot on `conn` and returns its binlog position.
pub async fn begin(conn: &mut Conn, flavor: Flavor) -> Result<BinlogPosition, MysqlSourceError> {
    conn.query_drop("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        .await
        .map_err(q("setting the snapshot isolation level"))?;
    match flavor {
        Flavor::MariaDb => {
            conn.query_drop("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
                .await
                .map_err(q("starting the consistent snapshot"))?;
            let rows: Vec<(String, String)> = conn
                .query("SHOW STATUS LIKE 'binlog_snapshot_%'")
                .await
                .map_err(q("reading binlog_snapshot_file/position"))?;
            let get = |n: &str| {
                rows.iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(n))
                    .map(|(_, v)| v.clone())
            };
            let file = get("binlog_snapshot_file").unwrap_or_default();
            let pos = get("binlog_snapshot_position")
                .and_then(|p| p.parse().ok())
                .unwrap_or(0);
            if file.is_empty() || pos == 0 {
                return Err(MysqlSourceError::Prerequisite(
                    "the server reports no binlog snapshot position: enable log_bin".into(),
                ));
            }
            let mut p = BinlogPosition {
                file: file.into(),
                pos,
                gtid_set: None,
            };
            p.gtid_set = maria_gtid_at(conn, &p).await?.map(Into::into);
            Ok(p)
        }
        Flavor::MySql => {
            conn.query_drop("FLUSH TABLES WITH READ LOCK")
                .await
                .map_err(q("FLUSH TABLES WITH READ LOCK (needs RELOAD)"))?;
            let started = async {
                conn.query_drop("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
                    .await
                    .map_err(q("starting the consistent snapshot"))?;
                current_position(conn, Flavor::MySql).await
            }
            .await;
            let unlocked = conn
                .query_drop("UNLOCK TABLES")
                .await
                .map_err(q("UNLOCK TABLES"));
            let p = started?;
            unlocked?;
            Ok(p)
        }
    }
}

/// Ends the snapshot transaction.
pub async fn commit(conn: &mut Conn) -> Result<(), MysqlSourceError> {
    conn.query_drop("COMMIT")
        .await
        .map_err(q("ending the snapshot transaction"))
}

/// The text form of a key value (stored in [`TableSnapshotProgress::last_key`]).
pub fn key_text(v: &MyValue, ct: &ColType) -> Result<String, String> {
    Ok(match v {
        MyValue::NULL => return Err("a key column is NULL".into()),
        MyValue::Int(i) => i.to_string(),
        MyValue::UInt(u) => u.to_string(),
        MyValue::Float(f) => f.to_string(),
        MyValue::Double(d) => d.to_string(),
        MyValue::Date(y, m, d, h, i, s, us) => {
            format!("{y:04}-{m:02}-{d:02} {h:02}:{i:02}:{s:02}.{us:06}")
        }
        MyValue::Time(neg, d, h, m, s, us) => format!(
            "{}{}:{m:02}:{s:02}.{us:06}",
            if *neg { "-" } else { "" },
            u64::from(*d) * 24 + u64::from(*h)
        ),
        MyValue::Bytes(b) => match ct {
            ColType::Enum { values, .. } => {
                let s = String::from_utf8_lossy(b);
                (values.iter().position(|x| *x == s).map_or(0, |i| i + 1)).to_string()
            }
            ColType::Set { values, .. } => {
                let s = String::from_utf8_lossy(b);
                let mut mask = 0u64;
                for part in s.split(',').filter(|p| !p.is_empty()) {
                    if let Some(i) = values.iter().position(|x| x == part) {
                        mask |= 1 << i;
                    }
                }
                mask.to_string()
            }
            ColType::Bit { .. } => b
                .iter()
                .fold(0u64, |a, &x| (a << 8) | u64::from(x))
                .to_string(),
            t if t.charset().is_none_or(|c| c.is_binary())
                && !matches!(t, ColType::Decimal { .. } | ColType::Int { .. }) =>
            {
                hex::encode(b)
            }
            _ => String::from_utf8(b.clone()).map_err(|_| "key text is not UTF-8".to_string())?,
        },
    })
}

/// The SQL placeholder and parameter that compare a column with a stored key text.
pub fn key_param(text: &str, ct: &ColType) -> Result<(String, MyValue), String> {
    let bad = || "stored snapshot key does not fit the column type".to_string();
    Ok(match ct {
        ColType::Int {
            unsigned: false, ..
        }
        | ColType::Year => ("?".into(), MyValue::Int(text.parse().map_err(|_| bad())?)),
        ColType::Int { unsigned: true, .. }
        | ColType::Bit { .. }
        | ColType::Enum { .. }
        | ColType::Set { .. } => ("?".into(), MyValue::UInt(text.parse().map_err(|_| bad())?)),
        ColType::Decimal {
            precision, scale, ..
        } => (
            format!("CAST(? AS DECIMAL({precision},{scale}))"),
            MyValue::Bytes(text.as_bytes().to_vec()),
        ),
        ColType::Float { .. } | ColType::Double { .. } => (
            "?".into(),
            MyValue::Double(text.parse().map_err(|_| bad())?),
        ),
        ColType::Date => (
            "CAST(? AS DATE)".into(),
            MyValue::Bytes(text.as_bytes().to_vec()),
        ),
        ColType::DateTime { .. } | ColType::Timestamp { .. } => (
            "CAST(? AS DATETIME(6))".into(),
            MyValue::Bytes(text.as_bytes().to_vec()),
        ),
        ColType::Time { .. } => (
            "CAST(? AS TIME(6))".into(),
            MyValue::Bytes(text.as_bytes().to_vec()),
        ),
        ColType::Json | ColType::Geometry { .. } => {
            return Err("JSON and geometry columns cannot be keys".into())
        }
        t if t.charset().is_some_and(|c| !c.is_binary()) => {
            ("?".into(), MyValue::Bytes(text.as_bytes().to_vec()))
        }
        _ => (
            "?".into(),
            MyValue::Bytes(hex::decode(text).map_err(|_| bad())?),
        ),
    })
}

/// The chunk query and its parameters.
pub fn chunk_query(
    schema: &TableSchema,
    def: &TableDef,
    last_key: Option<&[String]>,
    limit: usize,
) -> Result<(String, Vec<MyValue>), String> {
    let cols = schema
        .columns
        .iter()
        .map(|c| quote_ident(&c.name))
        .collect::<Vec<_>>()
        .join(", ");
    let keys: Vec<String> = schema.key_names().map(quote_ident).collect();
    let mut sql = format!("SELECT {cols} FROM {}", qualified(&schema.id));
    let mut params = Vec::new();
    if let Some(last) = last_key {
        if last.len() != schema.key.len() {
            return Err("stored snapshot key has the wrong number of columns".into());
        }
        let typed: Vec<(String, MyValue)> = schema
            .key
            .iter()
            .zip(last)
            .map(|(&i, text)| key_param(text, &def.columns[i].ty))
            .collect::<Result<_, _>>()?;
        // k1 >= a AND (k1 > a OR (k1 = a AND k2 > b) OR ...): the first
        // conjunct lets the optimizer use a range on the key.
        let mut ors = Vec::new();
        for n in 0..keys.len() {
            let mut and = Vec::new();
            for (j, key) in keys.iter().enumerate().take(n) {
                and.push(format!("{key} = {}", typed[j].0));
                params.push(typed[j].1.clone());
            }
            and.push(format!("{} > {}", keys[n], typed[n].0));
            params.push(typed[n].1.clone());
            ors.push(format!("({})", and.join(" AND ")));
        }
        sql.push_str(&format!(
            " WHERE {} >= {} AND ({})",
            keys[0],
            typed[0].0,
            ors.join(" OR ")
        ));
        params.insert(0, typed[0].1.clone());
    }
    sql.push_str(&format!(" ORDER BY {} LIMIT {limit}", keys.join(", ")));
    Ok((sql, params))
}

/// Copies one table in key order.
pub struct TableCopier<'a> {
    pub conn: &'a mut Conn,
    pub table: Arc<TableSchema>,
    pub def: TableDef,
    pub chunk_rows: usize,
    pub progress: TableSnapshotProgress,
    pub opts: ValueOpts,
}

impl TableCopier<'_> {
    /// Copies the table into `events` (waiting when the pipeline is behind).
    pub async fn run(
        mut self,
        events: &mut EventSender,
        shutdown: &CancellationToken,
    ) -> Result<u64, MysqlSourceError> {
        let id = self.table.id.clone();
        let started = Instant::now();
        let mut copied = 0u64;
        loop {
            let (sql, params) = chunk_query(
                &self.table,
                &self.def,
                self.progress.last_key.as_deref(),
                self.chunk_rows,
            )
            .map_err(|e| MysqlSourceError::Decode(format!("{id}: {e}")))?;
            let mut rows: Vec<Row> = Vec::with_capacity(EMIT_ROWS.min(self.chunk_rows));
            let mut in_chunk = 0usize;
            let mut last_key: Option<Vec<String>> = None;
            let mut result = self
                .conn
                .exec_iter(sql.as_str(), params)
                .await
                .map_err(|e| MysqlSourceError::query(format!("copying {id}"), e))?;
            while let Some(row) = result
                .next()
                .await
                .map_err(|e| MysqlSourceError::query(format!("copying {id}"), e))?
            {
                let (row, key) = decode_row(&self.table, &self.def, row, &self.opts)?;
                last_key = Some(key);
                rows.push(row);
                in_chunk += 1;
                if rows.len() >= EMIT_ROWS {
                    copied += rows.len() as u64;
                    emit(
                        &mut self.progress,
                        &self.table,
                        events,
                        shutdown,
                        &mut rows,
                        last_key.clone(),
                        false,
                    )
                    .await?;
                }
            }
            drop(result);
            let done = in_chunk < self.chunk_rows;
            copied += rows.len() as u64;
            if !rows.is_empty() || done {
                let key = last_key.or_else(|| self.progress.last_key.clone());
                emit(
                    &mut self.progress,
                    &self.table,
                    events,
                    shutdown,
                    &mut rows,
                    key,
                    done,
                )
                .await?;
            }
            if done {
                break;
            }
        }
        let secs = started.elapsed().as_secs_f64();
        info!(table = %id, rows = copied, rows_per_sec = (copied as f64 / secs.max(1e-9)) as u64, "table copied");
        Ok(copied)
    }
}

fn decode_row(
    table: &TableSchema,
    def: &TableDef,
    row: MyRow,
    opts: &ValueOpts,
) -> Result<(Row, Vec<String>), MysqlSourceError> {
    let values = row.unwrap();
    if values.len() != def.columns.len() {
        return Err(MysqlSourceError::Decode(format!(
            "{}: the snapshot read {} columns for {}",
            table.id,
            values.len(),
            def.columns.len()
        )));
    }
    let mut key = Vec::with_capacity(table.key.len());
    for &k in &table.key {
        key.push(key_text(&values[k], &def.columns[k].ty).map_err(|e| {
            MysqlSourceError::Decode(format!("{} column {}: {e}", table.id, def.columns[k].name))
        })?);
    }
    let mut out = Vec::with_capacity(values.len());
    for (v, c) in values.into_iter().zip(&def.columns) {
        out.push(from_protocol(v, &c.ty, opts).map_err(|e| {
            MysqlSourceError::Decode(format!("{} column {}: {e}", table.id, c.name))
        })?);
    }
    Ok((out, key))
}

async fn emit(
    progress: &mut TableSnapshotProgress,
    table: &Arc<TableSchema>,
    events: &mut EventSender,
    shutdown: &CancellationToken,
    rows: &mut Vec<Row>,
    last_key: Option<Vec<String>>,
    done: bool,
) -> Result<(), MysqlSourceError> {
    *progress = TableSnapshotProgress {
        last_key,
        rows_copied: progress.rows_copied + rows.len() as u64,
        done,
    };
    let chunk = SnapshotChunk {
        table: table.clone(),
        rows: std::mem::replace(rows, Vec::with_capacity(EMIT_ROWS)),
        progress: progress.clone(),
    };
    tokio::select! {
        biased;
        _ = shutdown.cancelled() => Err(MysqlSourceError::Stopped),
        r = events.push(ChangeEvent::SnapshotChunk(chunk)) => r.map_err(|_| MysqlSourceError::Stopped),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mysql::schema::ColumnDef;
    use crate::mysql::types::Charset;
    use engine::TableId;

    fn def() -> TableDef {
        let c = |n: &str, ty| ColumnDef {
            name: n.into(),
            ty,
            nullable: false,
            default: None,
        };
        TableDef {
            columns: vec![
                c(
                    "a",
                    ColType::Int {
                        bytes: 4,
                        unsigned: false,
                        zerofill: false,
                    },
                ),
                c(
                    "b",
                    ColType::VarChar {
                        len: 5,
                        charset: Charset::Utf8mb4,
                    },
                ),
                c(
                    "c",
                    ColType::Decimal {
                        precision: 10,
                        scale: 2,
                        unsigned: false,
                    },
                ),
            ],
            key: vec!["b".into(), "c".into()],
            charset: Charset::Utf8mb4,
        }
    }

    #[test]
    fn chunk_queries_start_after_the_last_key() {
        let d = def();
        let s = d.to_schema(&TableId::new("shop", "t`x"));
        let (sql, p) = chunk_query(&s, &d, None, 10).unwrap();
        assert_eq!(
            sql,
            "SELECT `a`, `b`, `c` FROM `shop`.`t``x` ORDER BY `b`, `c` LIMIT 10"
        );
        assert!(p.is_empty());
        let (sql, p) = chunk_query(&s, &d, Some(&["it's".into(), "1.50".into()]), 10).unwrap();
        assert_eq!(
            sql,
            "SELECT `a`, `b`, `c` FROM `shop`.`t``x` WHERE `b` >= ? AND ((`b` > ?) OR (`b` = ? AND `c` > CAST(? AS DECIMAL(10,2)))) ORDER BY `b`, `c` LIMIT 10"
        );
        assert_eq!(p.len(), 4);
        assert!(chunk_query(&s, &d, Some(&["x".into()]), 10).is_err());
    }

    #[test]
    fn key_texts_round_trip_into_parameters() {
        let bin = ColType::VarChar {
            len: 4,
            charset: Charset::Binary,
        };
        assert_eq!(
            key_text(&MyValue::Bytes(vec![0, 255]), &bin).unwrap(),
            "00ff"
        );
        assert_eq!(
            key_param("00ff", &bin).unwrap().1,
            MyValue::Bytes(vec![0, 255])
        );
        let e = ColType::Enum {
            values: vec!["x".into(), "y".into()],
            charset: Charset::Utf8mb4,
        };
        assert_eq!(key_text(&MyValue::Bytes(b"y".to_vec()), &e).unwrap(), "2");
        assert_eq!(key_param("2", &e).unwrap().1, MyValue::UInt(2));
        let dt = ColType::DateTime { fsp: 6 };
        let t = key_text(&MyValue::Date(2024, 2, 29, 1, 2, 3, 4), &dt).unwrap();
        assert_eq!(t, "2024-02-29 01:02:03.000004");
        assert_eq!(key_param(&t, &dt).unwrap().0, "CAST(? AS DATETIME(6))");
        assert!(key_text(&MyValue::NULL, &dt).is_err());
        assert!(key_param(
            "zz",
            &ColType::Int {
                bytes: 4,
                unsigned: false,
                zerofill: false
            }
        )
        .is_err());
    }
}
