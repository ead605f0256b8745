//! The data path: writing one [`TableChanges`] into the open transaction.
//!
//! Rows travel as `COPY` text (built by [`engine::pgtext::render_copy`] into
//! large buffers) or as text-format bound parameters (built by
//! [`engine::pgtext::render`] into one string per batch); never as SQL text.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use engine::mapping::UpsertMode;
use engine::pgtext;
use engine::{PartialUpdate, Row, TableChanges, TableSchema, Value};
use futures::{future::try_join_all, SinkExt};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{to_sql_checked, Format, IsNull, ToSql, Type};
use tokio_postgres::CopyInSink;
use tokio_postgres::{Client, Statement};
use tracing::debug;

use super::error::PgSinkError;
use super::sql::TableSql;
use super::{DeleteStrategy, PgSinkOptions};

/// Bytes of COPY data rendered before they are handed to the connection
/// (rendering overlaps with sending and with the server's work).
const COPY_CHUNK: usize = 256 * 1024;
/// PostgreSQL's limit on bind parameters per statement.
const MAX_PARAMS: usize = 65_535;
/// Distinct partial-update column sets whose statements are kept prepared.
const MAX_PARTIAL_STATEMENTS: usize = 64;

/// A session temp table and what this transaction did with it.
#[derive(Debug, Default)]
pub(crate) struct Stage {
    /// The transaction number in which it was created, once it exists.
    pub created_in: Option<u64>,
    /// Holds rows written in the open transaction (`ON COMMIT DELETE ROWS`
    /// empties it at commit; a second use in the same transaction truncates).
    pub dirty: bool,
}

/// Statements prepared once per table.
#[derive(Default)]
pub(crate) struct Statements {
    copy_target: Option<Statement>,
    pub(super) copy_stage: Option<Statement>,
    merge: Option<Statement>,
    /// `merge` with `ON CONFLICT DO NOTHING`.
    merge_nothing: Option<Statement>,
    /// `UPDATE ... FROM stage` (`UPDATE_ONLY`).
    pub(super) update_stage: Option<Statement>,
    copy_key_stage: Option<Statement>,
    delete_staged: Option<Statement>,
    delete_unnest: Option<Statement>,
    /// `INSERT ... VALUES` by (rows per statement, `DO NOTHING`).
    insert_values: HashMap<(usize, bool), Statement>,
    /// Partial updates by changed-column mask.
    partial: HashMap<Vec<bool>, Statement>,
}

/// Everything prepared for one target table.
pub(crate) struct TableState {
    pub schema: Arc<TableSchema>,
    pub sql: TableSql,
    /// The transaction in which `ensure_table` changed the target (created
    /// it, added columns): a rollback of it forgets this state.
    pub ddl_in: Option<u64>,
    pub stage: Stage,
    pub key_stage: Stage,
    pub(super) stmts: Statements,
}

impl TableState {
    pub fn new(schema: Arc<TableSchema>, sql: TableSql, ddl_in: Option<u64>) -> Self {
        Self {
            schema,
            sql,
            ddl_in,
            stage: Stage::default(),
            key_stage: Stage::default(),
            stmts: Statements::default(),
        }
    }
}

/// What the apply functions share.
pub(crate) struct Ctx<'a> {
    pub client: &'a Client,
    pub opts: &'a PgSinkOptions,
    /// The open transaction's number.
    pub txn: u64,
}

/// A value bound as text: the server parses it with the parameter type's
/// input function, exactly like `COPY` text. `Debug` hides the value (the
/// driver logs parameters at debug level).
struct TextParam<'a>(Option<&'a str>);

impl fmt::Debug for TextParam<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() { "<value>" } else { "NULL" })
    }
}

impl ToSql for TextParam<'_> {
    fn to_sql(
        &self,
        _ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self.0 {
            None => Ok(IsNull::Yes),
            Some(s) => {
                out.put_slice(s.as_bytes());
                Ok(IsNull::No)
            }
        }
    }

    fn accepts(_ty: &Type) -> bool {
        true
    }

    fn encode_format(&self, _ty: &Type) -> Format {
        Format::Text
    }

    to_sql_checked!();
}

/// Values rendered as text into one string; `None` ranges are NULLs.
#[derive(Default)]
struct TextValues {
    text: String,
    ranges: Vec<Option<(usize, usize)>>,
}

impl TextValues {
    fn push(&mut self, v: &Value) {
        if v.is_null() {
            self.ranges.push(None);
        } else {
            let start = self.text.len();
            pgtext::render(v, &mut self.text);
            self.ranges.push(Some((start, self.text.len())));
        }
    }

    fn params(&self) -> Vec<TextParam<'_>> {
        self.ranges
            .iter()
            .map(|r| TextParam(r.map(|(a, b)| &self.text[a..b])))
            .collect()
    }
}

pub(super) async fn prepare(
    client: &Client,
    slot: &mut Option<Statement>,
    sql: &str,
    schema: &TableSchema,
) -> Result<Statement, PgSinkError> {
    if let Some(s) = slot {
        return Ok(s.clone());
    }
    let stmt = client
        .prepare(sql)
        .await
        .map_err(|e| PgSinkError::statement(&schema.id, "preparing a statement", &e))?;
    *slot = Some(stmt.clone());
    Ok(stmt)
}

/// Checks the shape of every row before anything is sent, so that a bad
/// batch never leaves a half-written `COPY` behind.
pub(crate) fn validate(changes: &TableChanges) -> Result<(), PgSinkError> {
    let schema = &changes.table;
    let bad = |message: String| PgSinkError::InvalidRow {
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
            || pu.old_key.iter().any(|v| matches!(v, Value::Unchanged))
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
/// [`engine::ConflictPolicy`] says.
pub(crate) async fn apply(
    cx: &Ctx<'_>,
    st: &mut TableState,
    changes: &TableChanges,
) -> Result<(), PgSinkError> {
    validate(changes)?;
    let policy = changes.policy;
    if !changes.deletes.is_empty() && policy.applies_deletes() {
        let unnest = cx.opts.delete == DeleteStrategy::Unnest && st.sql.delete_unnest.is_some();
        if unnest {
            delete_unnest(cx, st, &changes.deletes).await?;
        } else {
            delete_staged(cx, st, &changes.deletes).await?;
        }
    }
    if !changes.partial_updates.is_empty() && policy.applies_partial_updates() {
        partial_updates(cx, st, &changes.partial_updates).await?;
    }
    if !changes.upserts.is_empty() {
        let rows = &changes.upserts;
        let nothing = match policy.upsert_mode() {
            UpsertMode::InsertOrOverwrite => false,
            UpsertMode::InsertIfAbsent => true,
            UpsertMode::UpdateIfPresent => {
                return super::policy::update_existing(cx, st, rows).await
            }
        };
        if cx.opts.use_copy(rows.len(), changes.likely_new) {
            upsert_copy(cx, st, rows, changes.likely_new, nothing).await?;
        } else {
            upsert_values(cx, st, rows, nothing).await?;
        }
    }
    Ok(())
}

/// Sends `rows` (every value of each row) as text-format data of a started
/// `COPY ... FROM STDIN` and completes it.
async fn copy_data(sink: CopyInSink<Bytes>, rows: &[Row]) -> Result<u64, tokio_postgres::Error> {
    futures::pin_mut!(sink);
    let mut buf = Vec::with_capacity(COPY_CHUNK + 4096);
    for row in rows {
        for (i, v) in row.iter().enumerate() {
            if i > 0 {
                buf.push(b'\t');
            }
            pgtext::render_copy(v, &mut buf);
        }
        buf.push(b'\n');
        if buf.len() >= COPY_CHUNK {
            let full = std::mem::replace(&mut buf, Vec::with_capacity(COPY_CHUNK + 4096));
            sink.feed(Bytes::from(full)).await?;
        }
    }
    if !buf.is_empty() {
        sink.feed(Bytes::from(buf)).await?;
    }
    sink.as_mut().finish().await
}

/// Runs `sql` (simple protocol) when given.
async fn maybe_simple(client: &Client, sql: Option<&str>) -> Result<(), tokio_postgres::Error> {
    match sql {
        Some(sql) => client.batch_execute(sql).await,
        None => Ok(()),
    }
}

/// Starts a prepared `COPY`, preceded by `before` in the same round trip
/// (requests on one connection are executed in order).
pub(super) async fn start_copy(
    client: &Client,
    schema: &TableSchema,
    action: &'static str,
    before: Option<&str>,
    stmt: &Statement,
) -> Result<CopyInSink<Bytes>, PgSinkError> {
    let (pre, sink) = tokio::join!(
        maybe_simple(client, before),
        client.copy_in::<_, Bytes>(stmt)
    );
    let err = |e: tokio_postgres::Error| PgSinkError::statement(&schema.id, action, &e);
    pre.map_err(err)?;
    sink.map_err(err)
}

/// Copies `rows` through a started `COPY` and runs `then` right behind it
/// (one round trip); the copy's error wins over the follow-up's.
pub(super) async fn copy_then(
    client: &Client,
    schema: &TableSchema,
    sink: CopyInSink<Bytes>,
    rows: &[Row],
    copy_action: &'static str,
    then: &Statement,
    then_action: &'static str,
) -> Result<(), PgSinkError> {
    let (copied, then) = tokio::join!(copy_data(sink, rows), client.execute(then, &[]));
    copied.map_err(|e| PgSinkError::statement(&schema.id, copy_action, &e))?;
    then.map_err(|e| PgSinkError::statement(&schema.id, then_action, &e))?;
    Ok(())
}

pub(super) async fn simple(
    cx: &Ctx<'_>,
    schema: &TableSchema,
    action: &'static str,
    sql: &str,
) -> Result<(), PgSinkError> {
    cx.client
        .batch_execute(sql)
        .await
        .map_err(|e| PgSinkError::statement(&schema.id, action, &e))
}

/// Makes a stage usable in this transaction. Creates it when missing;
/// returns the `TRUNCATE` to send before the next `COPY` into it when it
/// already holds rows of this transaction.
pub(super) async fn ready_stage<'a>(
    cx: &Ctx<'_>,
    schema: &TableSchema,
    stage: &mut Stage,
    create: &str,
    truncate: &'a str,
) -> Result<Option<&'a str>, PgSinkError> {
    let pending = if stage.created_in.is_none() {
        simple(cx, schema, "creating a staging table", create).await?;
        stage.created_in = Some(cx.txn);
        None
    } else {
        stage.dirty.then_some(truncate)
    };
    stage.dirty = true;
    Ok(pending)
}

/// Upserts through `COPY` (`nothing`: existing keys are left as they are).
async fn upsert_copy(
    cx: &Ctx<'_>,
    st: &mut TableState,
    rows: &[Row],
    likely_new: bool,
    nothing: bool,
) -> Result<(), PgSinkError> {
    let schema = st.schema.clone();
    if likely_new {
        let stmt = prepare(
            cx.client,
            &mut st.stmts.copy_target,
            &st.sql.copy_target,
            &schema,
        )
        .await?;
        let sink = start_copy(
            cx.client,
            &schema,
            "bulk copy",
            Some("SAVEPOINT dbsync_bulk"),
            &stmt,
        )
        .await?;
        let (copied, released) = tokio::join!(
            copy_data(sink, rows),
            cx.client.batch_execute("RELEASE SAVEPOINT dbsync_bulk")
        );
        match copied {
            Ok(_) => {
                return released.map_err(|e| PgSinkError::statement(&schema.id, "bulk copy", &e));
            }
            Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
                debug!(table = %schema.id, rows = rows.len(), "bulk copy met existing keys, merging instead");
                simple(
                    cx,
                    &schema,
                    "bulk copy",
                    "ROLLBACK TO SAVEPOINT dbsync_bulk; RELEASE SAVEPOINT dbsync_bulk",
                )
                .await?;
            }
            Err(e) => return Err(PgSinkError::statement(&schema.id, "bulk copy", &e)),
        }
    }
    // The stage must exist before statements that read it are prepared.
    let truncate = ready_stage(
        cx,
        &schema,
        &mut st.stage,
        &st.sql.create_stage,
        &st.sql.truncate_stage,
    )
    .await?;
    let copy = prepare(
        cx.client,
        &mut st.stmts.copy_stage,
        &st.sql.copy_stage,
        &schema,
    )
    .await?;
    let merge = if nothing {
        prepare(
            cx.client,
            &mut st.stmts.merge_nothing,
            &st.sql.merge_nothing,
            &schema,
        )
        .await?
    } else {
        prepare(cx.client, &mut st.stmts.merge, &st.sql.merge, &schema).await?
    };
    let sink = start_copy(cx.client, &schema, "copying rows to stage", truncate, &copy).await?;
    copy_then(
        cx.client,
        &schema,
        sink,
        rows,
        "copying rows to stage",
        &merge,
        "upsert",
    )
    .await
}

/// Rows per `INSERT ... VALUES` statement for `ncols` columns.
pub(crate) fn values_rows_per_statement(ncols: usize, max_rows: usize) -> usize {
    (MAX_PARAMS / ncols.max(1)).min(max_rows).max(1)
}

/// Splits `n` rows into statement sizes: full statements of `per`, then
/// powers of two (so that at most a handful of statements per table are prepared).
pub(crate) fn statement_sizes(n: usize, per: usize) -> Vec<usize> {
    let mut sizes = vec![per; n / per];
    let mut rest = n % per;
    while rest > 0 {
        let p = 1usize << (usize::BITS - 1 - rest.leading_zeros());
        sizes.push(p);
        rest -= p;
    }
    sizes
}

async fn upsert_values(
    cx: &Ctx<'_>,
    st: &mut TableState,
    rows: &[Row],
    nothing: bool,
) -> Result<(), PgSinkError> {
    let schema = st.schema.clone();
    let ncols = schema.columns.len();
    let per = values_rows_per_statement(ncols, cx.opts.values_rows);
    let sizes = statement_sizes(rows.len(), per);
    let mut stmts = Vec::with_capacity(sizes.len());
    for &size in &sizes {
        let stmt = match st.stmts.insert_values.get(&(size, nothing)) {
            Some(s) => s.clone(),
            None => {
                let sql = st.sql.insert_values(size, ncols, nothing);
                let mut slot = None;
                let s = prepare(cx.client, &mut slot, &sql, &schema).await?;
                st.stmts.insert_values.insert((size, nothing), s.clone());
                s
            }
        };
        stmts.push(stmt);
    }
    let mut values = TextValues::default();
    values.ranges.reserve(rows.len() * ncols);
    for row in rows {
        for v in row {
            values.push(v);
        }
    }
    let params = values.params();
    let mut start = 0;
    let mut calls = Vec::with_capacity(sizes.len());
    for (stmt, size) in stmts.iter().zip(&sizes) {
        let slice = &params[start * ncols..(start + size) * ncols];
        start += size;
        calls.push(cx.client.execute_raw(stmt, slice.iter()));
    }
    try_join_all(calls)
        .await
        .map_err(|e| PgSinkError::statement(&schema.id, "upsert", &e))?;
    Ok(())
}

async fn delete_staged(cx: &Ctx<'_>, st: &mut TableState, keys: &[Row]) -> Result<(), PgSinkError> {
    let schema = st.schema.clone();
    let truncate = ready_stage(
        cx,
        &schema,
        &mut st.key_stage,
        &st.sql.create_key_stage,
        &st.sql.truncate_key_stage,
    )
    .await?;
    let copy = prepare(
        cx.client,
        &mut st.stmts.copy_key_stage,
        &st.sql.copy_key_stage,
        &schema,
    )
    .await?;
    let delete = prepare(
        cx.client,
        &mut st.stmts.delete_staged,
        &st.sql.delete_staged,
        &schema,
    )
    .await?;
    let sink = start_copy(cx.client, &schema, "copying keys to stage", truncate, &copy).await?;
    copy_then(
        cx.client,
        &schema,
        sink,
        keys,
        "copying keys to stage",
        &delete,
        "delete",
    )
    .await
}

/// Appends `v` as an element of an array literal: `"..."` with `\` and `"`
/// escaped (or `NULL`). `scratch` is reused between calls.
fn push_array_element(v: &Value, scratch: &mut String, out: &mut String) {
    if v.is_null() {
        out.push_str("NULL");
        return;
    }
    scratch.clear();
    pgtext::render(v, scratch);
    out.push('"');
    for c in scratch.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
}

async fn delete_unnest(cx: &Ctx<'_>, st: &mut TableState, keys: &[Row]) -> Result<(), PgSinkError> {
    let schema = st.schema.clone();
    let Some(sql) = st.sql.delete_unnest.as_deref() else {
        return delete_staged(cx, st, keys).await;
    };
    let stmt = prepare(cx.client, &mut st.stmts.delete_unnest, sql, &schema).await?;
    let mut arrays: Vec<String> = vec![String::from("{"); schema.key.len()];
    let mut scratch = String::new();
    for (n, key) in keys.iter().enumerate() {
        for (arr, v) in arrays.iter_mut().zip(key) {
            if n > 0 {
                arr.push(',');
            }
            push_array_element(v, &mut scratch, arr);
        }
    }
    for arr in &mut arrays {
        arr.push('}');
    }
    let params: Vec<TextParam<'_>> = arrays.iter().map(|a| TextParam(Some(a))).collect();
    cx.client
        .execute_raw(&stmt, params.iter())
        .await
        .map_err(|e| PgSinkError::statement(&schema.id, "delete", &e))?;
    Ok(())
}

async fn partial_updates(
    cx: &Ctx<'_>,
    st: &mut TableState,
    updates: &[PartialUpdate],
) -> Result<(), PgSinkError> {
    let schema = st.schema.clone();
    let mut values = TextValues::default();
    // (statement, first param, param count) per update.
    let mut calls = Vec::with_capacity(updates.len());
    for pu in updates {
        let mask: Vec<bool> = pu
            .row
            .iter()
            .map(|v| !matches!(v, Value::Unchanged))
            .collect();
        if !mask.iter().any(|&c| c) {
            continue;
        }
        let stmt = match st.stmts.partial.get(&mask) {
            Some(s) => s.clone(),
            None => {
                let sql = st.sql.partial_update(&schema, &mask);
                let mut slot = None;
                let s = prepare(cx.client, &mut slot, &sql, &schema).await?;
                if st.stmts.partial.len() >= MAX_PARTIAL_STATEMENTS {
                    st.stmts.partial.clear();
                }
                st.stmts.partial.insert(mask, s.clone());
                s
            }
        };
        let first = values.ranges.len();
        for v in pu.row.iter().filter(|v| !matches!(v, Value::Unchanged)) {
            values.push(v);
        }
        for v in &pu.old_key {
            values.push(v);
        }
        calls.push((stmt, first, values.ranges.len() - first));
    }
    let params = values.params();
    let futures = calls.iter().map(|(stmt, first, n)| {
        cx.client
            .execute_raw(stmt, params[*first..first + n].iter())
    });
    try_join_all(futures)
        .await
        .map_err(|e| PgSinkError::statement(&schema.id, "partial update", &e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statement_sizes_use_full_statements_then_powers_of_two() {
        assert_eq!(statement_sizes(0, 1000), Vec::<usize>::new());
        assert_eq!(
            statement_sizes(2500, 1000),
            vec![1000, 1000, 256, 128, 64, 32, 16, 4]
        );
        assert_eq!(statement_sizes(7, 1000), vec![4, 2, 1]);
        assert_eq!(statement_sizes(3, 2), vec![2, 1]);
        for n in 0..300 {
            assert_eq!(statement_sizes(n, 100).iter().sum::<usize>(), n);
        }
    }

    #[test]
    fn rows_per_statement_respects_the_parameter_limit() {
        assert_eq!(values_rows_per_statement(10, 1000), 1000);
        assert_eq!(values_rows_per_statement(100, 1000), 655);
        assert_eq!(values_rows_per_statement(70_000, 1000), 1);
    }

    #[test]
    fn text_params_hide_values_in_debug() {
        assert_eq!(format!("{:?}", TextParam(Some("secret"))), "<value>");
        assert_eq!(format!("{:?}", TextParam(None)), "NULL");
    }
}
