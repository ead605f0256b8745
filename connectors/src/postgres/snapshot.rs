//! The initial copy: tables read with `COPY (SELECT ... ORDER BY key LIMIT n)
//! TO STDOUT` inside one repeatable-read transaction, in key order, so that an
//! interrupted copy resumes after the last key that reached the target.
//!
//! The transaction imports the replication slot's exported snapshot on a first
//! run, so the copy and the stream meet exactly at the slot's consistent point.
//! A resumed copy reads the remaining rows from a newer snapshot; the stream
//! then replays every change since the consistent point on top of it, and
//! since upserts and deletes by key are idempotent, the target converges to
//! the source with no gap.

use std::sync::Arc;
use std::time::{Duration, Instant};

use engine::event::SnapshotChunk;
use engine::pgtext::{parse, split_copy_line};
use engine::{ChangeEvent, EventSender, Row, TableId, TableSchema, TableSnapshotProgress, Value};
use futures::{pin_mut, TryStreamExt};
use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use super::catalog::{qualified, typed_literal};
use super::client::quote_ident;
use super::error::PgSourceError;

/// The most rows in one emitted [`SnapshotChunk`] (bounded memory per event).
pub const EMIT_ROWS: usize = 5_000;

/// When a table copy logs its first progress line, then how often.
pub const PROGRESS_FIRST: Duration = Duration::from_secs(1);
pub const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// Tables without statistics up to this many pages (128 MiB) are counted exactly.
const COUNT_EXACT_PAGES: f64 = 16_384.0;

/// Estimated rows of a table, the way the planner sees it: rows per page from
/// the statistics (`pg_class.reltuples / relpages`) times the table's pages
/// now. A table without usable statistics (never analyzed) is counted:
/// exactly up to [`COUNT_EXACT_PAGES`], else from a 1 % block sample. Runs
/// outside the snapshot transaction (a failure must not abort it); `None`
/// when no estimate is available.
pub async fn estimate_rows(client: &Client, oid: u32, id: &TableId) -> Option<u64> {
    let stats = client
        .query_opt(
            "SELECT reltuples::float8, relpages::float8,
                    pg_relation_size(oid)::float8 / current_setting('block_size')::float8
               FROM pg_class WHERE oid = $1",
            &[&oid],
        )
        .await;
    let (tuples, pages, pages_now): (f64, f64, f64) = match stats {
        Ok(Some(row)) => (row.get(0), row.get(1), row.get(2)),
        Ok(None) => return None,
        Err(e) => {
            debug!(table = %id, error = %e, "reading the table's statistics failed");
            return None;
        }
    };
    if let Some(n) = rows_from_statistics(tuples, pages, pages_now) {
        return Some(n);
    }
    let sql = if pages_now <= COUNT_EXACT_PAGES {
        format!("SELECT count(*)::float8 FROM {}", qualified(id))
    } else {
        format!(
            "SELECT (count(*) * 100)::float8 FROM {} TABLESAMPLE SYSTEM (1)",
            qualified(id)
        )
    };
    match client.query_one(&sql, &[]).await {
        Ok(row) => Some(row.get::<_, f64>(0).max(0.0) as u64),
        Err(e) => {
            debug!(table = %id, error = %e, "counting the table's rows failed");
            None
        }
    }
}

/// Rows from the statistics scaled to the table's current size, or `None`
/// when they cannot tell (never analyzed, or analyzed empty and grown since).
fn rows_from_statistics(tuples: f64, pages: f64, pages_now: f64) -> Option<u64> {
    if tuples < 0.0 {
        None
    } else if pages > 0.0 {
        Some((tuples / pages * pages_now).round() as u64)
    } else if pages_now == 0.0 {
        Some(tuples.round() as u64)
    } else {
        None
    }
}

/// Logs a copy's progress (rows, rows/s, ETA) after [`PROGRESS_FIRST`],
/// then every [`PROGRESS_EVERY`].
struct ProgressLog {
    started: Instant,
    next: Instant,
}

impl ProgressLog {
    fn new() -> Self {
        let now = Instant::now();
        Self {
            started: now,
            next: now + PROGRESS_FIRST,
        }
    }

    fn maybe_log(&mut self, id: &TableId, copied_now: u64, total: u64, estimated: Option<u64>) {
        let now = Instant::now();
        if now < self.next {
            return;
        }
        self.next = now + PROGRESS_EVERY;
        let p = Progress::new(copied_now, self.started.elapsed(), total, estimated);
        info!(
            table = %id,
            rows = total,
            estimated_rows = estimated,
            percent = p.percent,
            rows_per_sec = p.rows_per_sec,
            eta_secs = p.eta_secs,
            "copying table"
        );
    }
}

/// Rate, completion and ETA of a copy.
#[derive(Debug, PartialEq)]
struct Progress {
    rows_per_sec: u64,
    percent: Option<u64>,
    eta_secs: Option<u64>,
}

impl Progress {
    /// `copied_now` rows in `elapsed` by this run; `total` durable or sent so
    /// far (earlier runs included); `estimated` rows in the table.
    fn new(copied_now: u64, elapsed: Duration, total: u64, estimated: Option<u64>) -> Self {
        let rate = copied_now as f64 / elapsed.as_secs_f64().max(1e-3);
        let eta_secs = estimated
            .filter(|_| rate > 0.0)
            .map(|e| (e.saturating_sub(total) as f64 / rate).ceil() as u64);
        let percent = estimated
            .filter(|e| *e > 0)
            .map(|e| ((total as f64 / e as f64) * 100.0).min(100.0).floor() as u64);
        Self {
            rows_per_sec: rate as u64,
            percent,
            eta_secs,
        }
    }
}

/// Starts the snapshot transaction, importing `snapshot_name` when given.
pub async fn begin(client: &Client, snapshot_name: Option<&str>) -> Result<(), PgSourceError> {
    client
        .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .await
        .map_err(|e| PgSourceError::query("starting the snapshot transaction", e))?;
    if let Some(name) = snapshot_name {
        client
            .batch_execute(&format!(
                "SET TRANSACTION SNAPSHOT '{}'",
                name.replace('\'', "''")
            ))
            .await
            .map_err(|e| PgSourceError::query("importing the slot's exported snapshot", e))?;
    }
    Ok(())
}

pub async fn commit(client: &Client) -> Result<(), PgSourceError> {
    client
        .batch_execute("COMMIT")
        .await
        .map_err(|e| PgSourceError::query("ending the snapshot transaction", e))
}

/// The `COPY` statement reading the next `limit` rows after `last_key`.
pub fn chunk_sql(schema: &TableSchema, last_key: Option<&[String]>, limit: usize) -> String {
    let cols = schema
        .columns
        .iter()
        .map(|c| quote_ident(&c.name))
        .collect::<Vec<_>>()
        .join(", ");
    let key_cols: Vec<String> = schema.key_names().map(quote_ident).collect();
    let mut sql = format!("COPY (SELECT {cols} FROM {}", qualified(&schema.id));
    if let Some(last) = last_key {
        let lits: Vec<String> = schema
            .key
            .iter()
            .zip(last)
            .map(|(&i, v)| typed_literal(v, &schema.columns[i].native_type))
            .collect();
        sql.push_str(&format!(
            " WHERE ({}) > ({})",
            key_cols.join(", "),
            lits.join(", ")
        ));
    }
    sql.push_str(&format!(
        " ORDER BY {} LIMIT {limit}) TO STDOUT",
        key_cols.join(", ")
    ));
    sql
}

/// Reads a table's rows after `progress.last_key` in chunks and hands each
/// batch of at most [`EMIT_ROWS`] rows to `emit` as a `SnapshotChunk` whose
/// progress points at its last row.
pub struct TableCopier<'a> {
    pub client: &'a Client,
    pub table: Arc<TableSchema>,
    pub chunk_rows: usize,
    pub progress: TableSnapshotProgress,
    /// Estimated rows of the table (for progress lines), see [`estimate_rows`].
    pub estimated_rows: Option<u64>,
}

impl TableCopier<'_> {
    /// Copies the table into `events` (waiting when the pipeline is behind);
    /// returns `PgSourceError::Stopped` when `shutdown` fires.
    pub async fn run(
        mut self,
        events: &mut EventSender,
        shutdown: &CancellationToken,
    ) -> Result<u64, PgSourceError> {
        let id = self.table.id.clone();
        let started = Instant::now();
        let mut log = ProgressLog::new();
        let mut copied = 0u64;
        let mut fields: Vec<Option<String>> = Vec::with_capacity(self.table.columns.len());
        let mut line = Vec::new();
        loop {
            let sql = chunk_sql(
                &self.table,
                self.progress.last_key.as_deref(),
                self.chunk_rows,
            );
            let stream = self
                .client
                .copy_out(sql.as_str())
                .await
                .map_err(|e| PgSourceError::query(format!("copying {id}"), e))?;
            pin_mut!(stream);
            let mut rows: Vec<Row> = Vec::with_capacity(EMIT_ROWS.min(self.chunk_rows));
            let mut in_chunk = 0usize;
            let mut last_key: Option<Vec<String>> = None;
            while let Some(bytes) = stream
                .try_next()
                .await
                .map_err(|e| PgSourceError::query(format!("copying {id}"), e))?
            {
                line.extend_from_slice(&bytes);
                // A CopyData message normally holds exactly one row; be general.
                let mut start = 0;
                while let Some(nl) = memchr::memchr(b'\n', &line[start..]) {
                    let end = start + nl;
                    split_copy_line(&line[start..end], &mut fields)
                        .map_err(|e| PgSourceError::Decode(format!("{id}: {e}")))?;
                    let row = self.decode_row(&mut fields)?;
                    last_key = Some(
                        self.table
                            .key
                            .iter()
                            .map(|&i| text_of(&fields, i))
                            .collect(),
                    );
                    rows.push(row);
                    in_chunk += 1;
                    start = end + 1;
                    if rows.len() >= EMIT_ROWS {
                        copied += rows.len() as u64;
                        self.emit_rows(events, shutdown, &mut rows, last_key.clone(), false)
                            .await?;
                        let total = self.progress.rows_copied;
                        log.maybe_log(&id, copied, total, self.estimated_rows);
                    }
                }
                line.drain(..start);
            }
            let done = in_chunk < self.chunk_rows;
            copied += rows.len() as u64;
            if !rows.is_empty() || done {
                let key = last_key.or_else(|| self.progress.last_key.clone());
                self.emit_rows(events, shutdown, &mut rows, key, done)
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

    fn decode_row(&self, fields: &mut [Option<String>]) -> Result<Row, PgSourceError> {
        if fields.len() != self.table.columns.len() {
            return Err(PgSourceError::Decode(format!(
                "{}: COPY returned {} fields for {} columns",
                self.table.id,
                fields.len(),
                self.table.columns.len()
            )));
        }
        let mut row = Vec::with_capacity(fields.len());
        for (col, f) in self.table.columns.iter().zip(fields.iter()) {
            row.push(match f {
                None => Value::Null,
                Some(text) => parse(&col.data_type, text).map_err(|e| {
                    PgSourceError::Decode(format!("{} column {}: {e}", self.table.id, col.name))
                })?,
            });
        }
        Ok(row)
    }

    async fn emit_rows(
        &mut self,
        events: &mut EventSender,
        shutdown: &CancellationToken,
        rows: &mut Vec<Row>,
        last_key: Option<Vec<String>>,
        done: bool,
    ) -> Result<(), PgSourceError> {
        self.progress = TableSnapshotProgress {
            last_key,
            rows_copied: self.progress.rows_copied + rows.len() as u64,
            done,
        };
        let chunk = SnapshotChunk {
            table: self.table.clone(),
            rows: std::mem::replace(rows, Vec::with_capacity(EMIT_ROWS)),
            progress: self.progress.clone(),
        };
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => Err(PgSourceError::Stopped),
            r = events.push(ChangeEvent::SnapshotChunk(chunk)) => r.map_err(|_| PgSourceError::Stopped),
        }
    }
}

fn text_of(fields: &[Option<String>], i: usize) -> String {
    fields[i].clone().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine::{ColumnSchema, DataType, Dialect, TableId};

    fn schema() -> TableSchema {
        let col = |n: &str, t: &str| ColumnSchema {
            name: n.into(),
            data_type: DataType::Int32,
            nullable: false,
            native_type: t.into(),
            default: None,
        };
        TableSchema {
            id: TableId::new("public", "Order s"),
            columns: vec![col("a", "integer"), col("b", "text"), col("c", "integer")],
            key: vec![1, 0],
            dialect: Dialect::Postgres,
        }
    }

    #[test]
    fn estimates_scale_the_statistics_to_the_current_size() {
        // Analyzed at 100 pages / 10,000 rows, now 150 pages.
        assert_eq!(rows_from_statistics(10_000.0, 100.0, 150.0), Some(15_000));
        // Never analyzed, or analyzed empty and grown since: count instead.
        assert_eq!(rows_from_statistics(-1.0, 0.0, 150.0), None);
        assert_eq!(rows_from_statistics(0.0, 0.0, 150.0), None);
        assert_eq!(rows_from_statistics(0.0, 0.0, 0.0), Some(0));
    }

    #[test]
    fn progress_has_rate_percent_and_eta() {
        let p = Progress::new(10_000, Duration::from_secs(2), 15_000, Some(40_000));
        assert_eq!(
            p,
            Progress {
                rows_per_sec: 5_000,
                percent: Some(37),
                eta_secs: Some(5)
            }
        );
        // No estimate, a table larger than estimated, nothing copied yet.
        let p = Progress::new(100, Duration::from_secs(1), 100, None);
        assert_eq!((p.percent, p.eta_secs), (None, None));
        let p = Progress::new(500, Duration::from_secs(1), 500, Some(400));
        assert_eq!((p.percent, p.eta_secs), (Some(100), Some(0)));
        let p = Progress::new(0, Duration::ZERO, 0, Some(0));
        assert_eq!((p.rows_per_sec, p.percent, p.eta_secs), (0, None, None));
    }

    #[test]
    fn first_chunk_has_no_lower_bound() {
        assert_eq!(
            chunk_sql(&schema(), None, 100),
            "COPY (SELECT \"a\", \"b\", \"c\" FROM \"public\".\"Order s\" ORDER BY \"b\", \"a\" LIMIT 100) TO STDOUT"
        );
    }

    #[test]
    fn later_chunks_start_after_the_last_key_with_typed_quoted_literals() {
        let last = vec!["it's".to_string(), "7".to_string()];
        assert_eq!(
            chunk_sql(&schema(), Some(&last), 10),
            "COPY (SELECT \"a\", \"b\", \"c\" FROM \"public\".\"Order s\" WHERE (\"b\", \"a\") > ('it''s'::text, '7'::integer) ORDER BY \"b\", \"a\" LIMIT 10) TO STDOUT"
        );
    }
}
