//! The data path: writing one [`TableChanges`] into the open transaction.
//!
//! Rows travel as bound parameters (binary protocol) or as `LOAD DATA` text,
//! both built by [`values::to_param`]; never as SQL text. After every data
//! statement the warning count is checked: MySQL reports some lossy
//! conversions (and, under `LOAD DATA LOCAL`, every bad field) only as warnings.
//!
//! Parameters are built here, on the pipeline's task; the statements run on
//! the [`Writer`] task, which executes one while the next is being built.

use std::sync::Arc;

use bytes::Bytes;
use engine::mapping::UpsertMode;
use engine::{PartialUpdate, Row, TableChanges, TableSchema, Value};
use futures::StreamExt;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Params, Value as MyValue};
use tracing::debug;

use super::error::{class_of_code, describe_server_error, MyFailure, MysqlSinkError};
use super::sql::{ServerInfo, TableSql};
use super::values::{self, ColKind, Param};
use super::writer::{Job, JobFuture, Writer};
use super::MysqlSinkOptions;

/// MySQL's limit on parameters per prepared statement.
const MAX_PARAMS: usize = 65_535;
/// Bytes of `LOAD DATA` text per chunk handed to the driver.
const LOAD_CHUNK: usize = 256 * 1024;

/// Everything prepared for one target table.
pub(crate) struct TableState {
    pub schema: Arc<TableSchema>,
    pub sql: TableSql,
    /// The target column kind of every source column.
    pub kinds: Vec<ColKind>,
    /// The session's staging table exists (with the rows of an earlier batch).
    pub stage_exists: bool,
}

/// What the apply functions share.
pub(crate) struct Ctx<'a> {
    pub w: &'a mut Writer,
    pub opts: &'a MysqlSinkOptions,
    pub server: &'a ServerInfo,
}

fn convert<'a>(st: &TableState, col: usize, v: &'a Value) -> Result<Param<'a>, MysqlSinkError> {
    values::to_param(v, st.kinds[col], st.schema.dialect).map_err(|r| {
        MysqlSinkError::InvalidValue {
            table: st.schema.id.clone(),
            column: st.schema.columns[col].name.clone(),
            reason: r.0,
        }
    })
}

/// Checks the shape of every row before anything is sent.
pub(crate) fn validate(changes: &TableChanges) -> Result<(), MysqlSinkError> {
    let schema = &changes.table;
    let bad = |message: String| MysqlSinkError::InvalidRow {
        table: schema.id.clone(),
        message,
    };
    let ncols = schema.columns.len();
    let nkey = schema.key.len();
    for row in &changes.upserts {
        if row.len() != ncols {
            return Err(bad(format!(
                "an upserted row has {} values for {ncols} columns (a bug upstream of the sink)",
                row.len()
            )));
        }
        if let Some(i) = row.iter().position(|v| matches!(v, Value::Unchanged)) {
            return Err(bad(format!(
                "an upserted row has an unchanged-value marker in column {} \
                 (a bug upstream of the sink: only partial updates may carry it)",
                schema.columns[i].name
            )));
        }
    }
    for key in &changes.deletes {
        if key.len() != nkey
            || key
                .iter()
                .any(|v| matches!(v, Value::Unchanged | Value::Null))
        {
            return Err(bad(format!(
                "a deleted key does not have {nkey} non-null values (a bug upstream of the sink)"
            )));
        }
    }
    for pu in &changes.partial_updates {
        if pu.row.len() != ncols
            || pu.old_key.len() != nkey
            || pu
                .old_key
                .iter()
                .any(|v| matches!(v, Value::Unchanged | Value::Null))
        {
            return Err(bad(
                "a partial update does not match the table's columns and key \
                 (a bug upstream of the sink)"
                    .into(),
            ));
        }
    }
    Ok(())
}

/// Applies deletes, then partial updates, then upserts, as the changes'
/// [`engine::ConflictPolicy`] says:
///
/// | policy | upserts | partial updates | deletes |
/// |---|---|---|---|
/// | `UPSERT` | `INSERT ... ON DUPLICATE KEY UPDATE c = new c` | `UPDATE` | `DELETE` |
/// | `INSERT_ONLY` | `INSERT ... ON DUPLICATE KEY UPDATE k = k` (a no-op) | skipped | skipped |
/// | `UPDATE_ONLY` | rows to a stage, `UPDATE target JOIN stage` | `UPDATE` | skipped |
/// | `IGNORE` | `INSERT ... ON DUPLICATE KEY UPDATE k = k` | skipped | `DELETE` |
///
/// (Truncates are not sent for policies that keep rows.)
pub(crate) async fn apply(
    cx: &mut Ctx<'_>,
    st: &mut TableState,
    changes: &TableChanges,
) -> Result<(), MysqlSinkError> {
    validate(changes)?;
    let policy = changes.policy;
    if !changes.deletes.is_empty() && policy.applies_deletes() {
        deletes(cx, st, &changes.deletes).await?;
    }
    if !changes.partial_updates.is_empty() && policy.applies_partial_updates() {
        partial_updates(cx, st, &changes.partial_updates).await?;
    }
    if !changes.upserts.is_empty() {
        let rows = &changes.upserts;
        let overwrite = match policy.upsert_mode() {
            UpsertMode::InsertOrOverwrite => true,
            UpsertMode::InsertIfAbsent => false,
            UpsertMode::UpdateIfPresent => return update_existing(cx, st, rows).await,
        };
        if cx
            .opts
            .use_load(rows.len(), changes.likely_new, cx.server.local_infile)
        {
            upsert_load(cx, st, rows, changes.likely_new, overwrite).await?;
        } else {
            upsert_values(cx, st, rows, overwrite).await?;
        }
    }
    Ok(())
}

/// Fails when the last statement left warnings: the first one, described
/// without values.
pub(crate) async fn check_warnings(
    conn: &mut Conn,
    schema: &TableSchema,
    action: &'static str,
) -> Result<(), MysqlSinkError> {
    if conn.get_warnings() == 0 {
        return Ok(());
    }
    let first: Option<(String, u16, String)> = conn
        .query_first("SHOW WARNINGS LIMIT 1")
        .await
        .map_err(|e| MysqlSinkError::statement(&schema.id, action, &e))?;
    let (code, text) = match first {
        Some((_, code, message)) => (Some(code), describe_server_error(code, &message)),
        None => (None, "the server reported a warning".to_string()),
    };
    Err(MysqlSinkError::Statement {
        table: schema.id.clone(),
        action,
        failure: MyFailure {
            class: code.map_or(engine::ErrorClass::Definite, class_of_code),
            code,
            text: format!("{text} [reported as a warning]"),
        },
    })
}

/// Makes a [`Job`] of a closure over the connection.
pub(crate) fn job<F>(f: F) -> Job
where
    F: for<'c> FnOnce(&'c mut Conn) -> JobFuture<'c> + Send + 'static,
{
    Box::new(f)
}

/// A prepared data statement and its warning check, as a job.
fn exec_job(
    schema: Arc<TableSchema>,
    action: &'static str,
    sql: String,
    params: Vec<MyValue>,
) -> Job {
    job(move |conn| {
        Box::pin(async move {
            conn.exec_drop(sql, Params::Positional(params))
                .await
                .map_err(|e| MysqlSinkError::statement(&schema.id, action, &e))?;
            check_warnings(conn, &schema, action).await
        })
    })
}

/// A text statement (no values), optionally with its warning check, as a job.
pub(crate) fn query_job(
    schema: Arc<TableSchema>,
    action: &'static str,
    sql: String,
    warnings: bool,
) -> Job {
    job(move |conn| {
        Box::pin(async move {
            query(conn, &schema, action, &sql).await?;
            if warnings {
                check_warnings(conn, &schema, action).await?;
            }
            Ok(())
        })
    })
}

async fn query(
    conn: &mut Conn,
    schema: &TableSchema,
    action: &'static str,
    sql: &str,
) -> Result<(), MysqlSinkError> {
    conn.query_drop(sql)
        .await
        .map_err(|e| MysqlSinkError::statement(&schema.id, action, &e))
}

/// The largest power of two not above `n` (`n` > 0).
fn floor_pow2(n: usize) -> usize {
    1usize << (usize::BITS - 1 - n.leading_zeros())
}

/// Splits `n` items into statement sizes: full statements of `per`, then
/// powers of two (so that few distinct statements are prepared).
pub(crate) fn statement_sizes(n: usize, per: usize) -> Vec<usize> {
    let mut sizes = vec![per; n / per];
    let mut rest = n % per;
    while rest > 0 {
        let p = floor_pow2(rest);
        sizes.push(p);
        rest -= p;
    }
    sizes
}

async fn deletes(cx: &mut Ctx<'_>, st: &TableState, keys: &[Row]) -> Result<(), MysqlSinkError> {
    let nkey = st.schema.key.len();
    let per = cx.opts.delete_keys.min(MAX_PARAMS / nkey).max(1);
    let mut start = 0;
    for n in statement_sizes(keys.len(), per) {
        let mut params = Vec::with_capacity(n * nkey);
        for key in &keys[start..start + n] {
            for (j, v) in key.iter().enumerate() {
                params.push(convert(st, st.schema.key[j], v)?.to_mysql());
            }
        }
        let sql = st.sql.delete_keys(n, nkey);
        cx.w.submit(exec_job(st.schema.clone(), "delete", sql, params))
            .await?;
        start += n;
    }
    Ok(())
}

async fn partial_updates(
    cx: &mut Ctx<'_>,
    st: &TableState,
    updates: &[PartialUpdate],
) -> Result<(), MysqlSinkError> {
    for pu in updates {
        let mask: Vec<bool> = pu
            .row
            .iter()
            .map(|v| !matches!(v, Value::Unchanged))
            .collect();
        if !mask.iter().any(|&c| c) {
            continue;
        }
        let mut params = Vec::with_capacity(pu.row.len() + pu.old_key.len());
        for (i, v) in pu.row.iter().enumerate() {
            if mask[i] {
                params.push(convert(st, i, v)?.to_mysql());
            }
        }
        for (j, v) in pu.old_key.iter().enumerate() {
            params.push(convert(st, st.schema.key[j], v)?.to_mysql());
        }
        let sql = st.sql.partial_update(&st.schema, &mask);
        cx.w.submit(exec_job(st.schema.clone(), "partial update", sql, params))
            .await?;
    }
    Ok(())
}

/// Rows per `INSERT ... VALUES` statement for `ncols` columns.
pub(crate) fn values_rows_per_statement(ncols: usize, max_rows: usize) -> usize {
    (MAX_PARAMS / ncols.max(1)).min(max_rows).max(1)
}

/// Runs `rows` through multi-row statements built by `sql_for(rows, ncols)`.
async fn insert_rows(
    cx: &mut Ctx<'_>,
    st: &TableState,
    rows: &[Row],
    action: &'static str,
    sql_for: impl Fn(usize, usize) -> String,
) -> Result<(), MysqlSinkError> {
    let ncols = st.schema.columns.len();
    let per = values_rows_per_statement(ncols, cx.opts.values_rows);
    let mut start = 0;
    while start < rows.len() {
        // As many rows as fit the statement's byte budget, rounded down to a
        // full statement or a power of two.
        let mut n = 0;
        let mut bytes = 0;
        while start + n < rows.len() && n < per && bytes < cx.opts.statement_bytes {
            bytes += engine::value::row_size(&rows[start + n]);
            n += 1;
        }
        if n < per {
            n = floor_pow2(n);
        }
        let mut params = Vec::with_capacity(n * ncols);
        for row in &rows[start..start + n] {
            for (i, v) in row.iter().enumerate() {
                params.push(convert(st, i, v)?.to_mysql());
            }
        }
        cx.w.submit(exec_job(
            st.schema.clone(),
            action,
            sql_for(n, ncols),
            params,
        ))
        .await?;
        start += n;
    }
    Ok(())
}

async fn upsert_values(
    cx: &mut Ctx<'_>,
    st: &TableState,
    rows: &[Row],
    overwrite: bool,
) -> Result<(), MysqlSinkError> {
    insert_rows(cx, st, rows, "upsert", |n, ncols| {
        st.sql.upsert_values(n, ncols, overwrite)
    })
    .await
}

/// The statements that make a fresh, empty stage: temporary tables cannot
/// be truncated inside a transaction (TRUNCATE commits implicitly, even for
/// them), so the old one is dropped (`DROP/CREATE TEMPORARY TABLE` do not
/// commit).
fn fresh_stage_sql(st: &mut TableState) -> String {
    let mut ddl = String::new();
    if st.stage_exists {
        ddl.push_str(&st.sql.drop_stage);
        ddl.push_str("; ");
    }
    ddl.push_str(&st.sql.create_stage);
    st.stage_exists = true;
    ddl
}

/// `UPDATE_ONLY` upserts: the rows go to a stage (`LOAD DATA` where the
/// server allows it, else `INSERT`), then `UPDATE target JOIN stage`
/// overwrites the rows that exist; absent keys match nothing.
async fn update_existing(
    cx: &mut Ctx<'_>,
    st: &mut TableState,
    rows: &[Row],
) -> Result<(), MysqlSinkError> {
    let Some(update) = st.sql.update_from_stage.clone() else {
        // Every column is a key column: an existing row already equals the change.
        return Ok(());
    };
    let schema = st.schema.clone();
    let stage = fresh_stage_sql(st);
    cx.w.submit(query_job(
        schema.clone(),
        "creating a staging table",
        stage,
        false,
    ))
    .await?;
    if cx.opts.use_load(rows.len(), false, cx.server.local_infile) {
        let data = render_load(st, rows)?;
        let sql = st.sql.load_stage.clone();
        let action = "loading rows to stage";
        let s2 = schema.clone();
        cx.w.submit(job(move |conn| {
            Box::pin(async move {
                load(conn, &sql, data)
                    .await
                    .map_err(|e| MysqlSinkError::statement(&s2.id, action, &e))?;
                check_warnings(conn, &s2, action).await
            })
        }))
        .await?;
    } else {
        insert_rows(cx, st, rows, "copying rows to stage", |n, ncols| {
            st.sql.stage_values(n, ncols)
        })
        .await?;
    }
    cx.w.submit(query_job(schema, "update of existing rows", update, true))
        .await
}

/// Renders `rows` as `LOAD DATA` text, in chunks.
fn render_load(st: &TableState, rows: &[Row]) -> Result<Vec<Bytes>, MysqlSinkError> {
    let mut chunks = Vec::new();
    let mut buf = Vec::with_capacity(LOAD_CHUNK + 4096);
    for row in rows {
        for (i, v) in row.iter().enumerate() {
            if i > 0 {
                buf.push(b'\t');
            }
            convert(st, i, v)?.write_load_field(&mut buf);
        }
        buf.push(b'\n');
        if buf.len() >= LOAD_CHUNK {
            let full = std::mem::replace(&mut buf, Vec::with_capacity(LOAD_CHUNK + 4096));
            chunks.push(Bytes::from(full));
        }
    }
    if !buf.is_empty() {
        chunks.push(Bytes::from(buf));
    }
    Ok(chunks)
}

/// Runs a `LOAD DATA LOCAL INFILE` statement with `data` as the file.
async fn load(conn: &mut Conn, sql: &str, data: Vec<Bytes>) -> Result<(), mysql_async::Error> {
    conn.set_infile_handler(
        async move { Ok(futures::stream::iter(data.into_iter().map(Ok)).boxed()) },
    );
    conn.query_drop(sql).await
}

async fn upsert_load(
    cx: &mut Ctx<'_>,
    st: &mut TableState,
    rows: &[Row],
    likely_new: bool,
    overwrite: bool,
) -> Result<(), MysqlSinkError> {
    let data = render_load(st, rows)?;
    // Sequential decisions on the server's answers: borrow the connection.
    let mut lent = cx.w.lend().await?;
    let r = upsert_load_on(&mut lent.conn, st, rows.len(), data, likely_new, overwrite).await;
    lent.give_back();
    r
}

async fn upsert_load_on(
    conn: &mut Conn,
    st: &mut TableState,
    nrows: usize,
    data: Vec<Bytes>,
    likely_new: bool,
    overwrite: bool,
) -> Result<(), MysqlSinkError> {
    let schema = st.schema.clone();
    if likely_new {
        // Straight into the target; any warning (an existing key is one:
        // LOAD DATA LOCAL skips duplicates) undoes it and merges instead.
        query(conn, &schema, "bulk load", "SAVEPOINT dbsync_bulk").await?;
        load(conn, &st.sql.load_target, data.clone())
            .await
            .map_err(|e| MysqlSinkError::statement(&schema.id, "bulk load", &e))?;
        if conn.get_warnings() == 0 {
            return Ok(());
        }
        debug!(table = %schema.id, rows = nrows, "bulk load met existing keys or warnings, merging instead");
        query(
            conn,
            &schema,
            "bulk load",
            "ROLLBACK TO SAVEPOINT dbsync_bulk",
        )
        .await?;
    }
    let stage = fresh_stage_sql(st);
    query(conn, &schema, "creating a staging table", &stage).await?;
    load(conn, &st.sql.load_stage, data)
        .await
        .map_err(|e| MysqlSinkError::statement(&schema.id, "loading rows to stage", &e))?;
    check_warnings(conn, &schema, "loading rows to stage").await?;
    let merge = if overwrite {
        &st.sql.merge
    } else {
        &st.sql.merge_keep
    };
    query(conn, &schema, "upsert", merge).await?;
    check_warnings(conn, &schema, "upsert").await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statement_sizes_use_full_statements_then_powers_of_two() {
        assert_eq!(statement_sizes(0, 500), Vec::<usize>::new());
        assert_eq!(statement_sizes(1300, 500), vec![500, 500, 256, 32, 8, 4]);
        for n in 0..300 {
            assert_eq!(statement_sizes(n, 100).iter().sum::<usize>(), n);
        }
    }

    #[test]
    fn rows_per_statement_respects_the_parameter_limit() {
        assert_eq!(values_rows_per_statement(10, 1000), 1000);
        assert_eq!(values_rows_per_statement(100, 1000), 655);
        assert_eq!(values_rows_per_statement(70_000, 1000), 1);
        assert_eq!(floor_pow2(1), 1);
        assert_eq!(floor_pow2(999), 512);
    }
}
