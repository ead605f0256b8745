//! Conflict policies in the PostgreSQL sink ([`engine::ConflictPolicy`]).
//!
//! | policy | upserts | partial updates | deletes |
//! |---|---|---|---|
//! | `UPSERT` | `INSERT ... ON CONFLICT (key) DO UPDATE` | `UPDATE` | `DELETE` |
//! | `INSERT_ONLY` | `INSERT ... ON CONFLICT (key) DO NOTHING` | skipped | skipped |
//! | `UPDATE_ONLY` | `COPY` to a stage, `UPDATE ... FROM stage` (absent keys match nothing) | `UPDATE` | skipped |
//! | `IGNORE` | `INSERT ... ON CONFLICT (key) DO NOTHING` | skipped | `DELETE` |
//!
//! The `likely_new` bulk `COPY` straight into the target stays the first try
//! for the insert-if-absent policies: it succeeds only when no key exists
//! (then nothing was overwritten), and falls back to the `DO NOTHING` merge
//! on a unique violation. The gating of deletes and partial updates is in
//! [`super::apply`]; truncates are not sent for policies that keep rows.

use engine::Row;

use super::apply::{copy_then, prepare, ready_stage, start_copy, Ctx, TableState};
use super::error::PgSinkError;

/// `UPDATE_ONLY` upserts: overwrite the non-key columns of rows that exist;
/// rows whose key is absent are left out.
pub(super) async fn update_existing(
    cx: &Ctx<'_>,
    st: &mut TableState,
    rows: &[Row],
) -> Result<(), PgSinkError> {
    let schema = st.schema.clone();
    let Some(update_sql) = st.sql.update_from_stage.clone() else {
        // Every column is a key column: an existing row already equals the change.
        return Ok(());
    };
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
    let update = prepare(cx.client, &mut st.stmts.update_stage, &update_sql, &schema).await?;
    let sink = start_copy(cx.client, &schema, "copying rows to stage", truncate, &copy).await?;
    copy_then(
        cx.client,
        &schema,
        sink,
        rows,
        "copying rows to stage",
        &update,
        "update of existing rows",
    )
    .await
}
