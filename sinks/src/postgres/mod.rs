//! The PostgreSQL sink: writes coalesced changes into a PostgreSQL target
//! inside one target transaction per pipeline batch.
//!
//! - Upserts of probably-new keys (`likely_new`, 100 rows or more) are
//!   copied straight into the target with `COPY ... FROM STDIN` (text
//!   format) under a savepoint; on a unique violation the savepoint is rolled
//!   back and the rows are merged instead.
//! - Other large upsert batches (5000 rows or more) are copied into a
//!   session temp staging table and merged with
//!   `INSERT ... SELECT ... ON CONFLICT (key) DO UPDATE`.
//! - Smaller batches use prepared multi-row `INSERT ... VALUES ... ON
//!   CONFLICT` statements with text parameters, pipelined (a `COPY` costs
//!   more round trips and a fixed server-side setup).
//! - Deletes bind one array per key column and join it with `unnest`.
//! - Partial updates set only the columns that carry a value.
//! - Each [`engine::TableChanges::policy`] is honored (see `policy`):
//!   `INSERT_ONLY`/`IGNORE` insert with `ON CONFLICT DO NOTHING`,
//!   `UPDATE_ONLY` updates existing rows from a staging table, and deletes
//!   and partial updates are skipped where the policy says so.
//! - `BEGIN` travels with the first statement of a transaction; follow-up
//!   statements are pipelined behind a `COPY`.
//!
//! Identifiers are always quoted; values never appear in SQL text.

mod apply;
pub mod ddl;
mod error;
mod policy;
mod sink;
pub mod sql;

pub use error::{class_of_sqlstate, PgFailure, PgSinkError};
pub use sink::PostgresSink;

/// How upserts are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpsertStrategy {
    /// `Copy` for batches of at least [`PgSinkOptions::copy_min_rows_new`]
    /// rows when `likely_new`, or [`PgSinkOptions::copy_min_rows`] rows
    /// otherwise; `InsertValues` for smaller batches (a `COPY` has a fixed
    /// cost of a few tenths of a millisecond and more round trips).
    Auto,
    /// `COPY` into a staging table, then `INSERT ... SELECT ... ON CONFLICT`
    /// (with the direct `COPY` fast path for `likely_new` batches).
    Copy,
    /// Prepared multi-row `INSERT ... VALUES ... ON CONFLICT` statements with
    /// text parameters, pipelined.
    InsertValues,
}

/// How deletes are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteStrategy {
    /// `DELETE ... USING unnest($1::type[], ...)`: one statement, one round trip.
    Unnest,
    /// `COPY` the keys into a staging table, then `DELETE ... USING` it.
    CopyStage,
}

/// Tuning of the PostgreSQL sink. The defaults are the measured best; the
/// alternatives exist for measurement.
#[derive(Debug, Clone)]
pub struct PgSinkOptions {
    /// How upserts are written.
    pub upsert: UpsertStrategy,
    /// How deletes are written.
    pub delete: DeleteStrategy,
    /// With [`UpsertStrategy::Auto`]: `likely_new` batches of at least this
    /// many rows are copied straight into the target.
    pub copy_min_rows_new: usize,
    /// With [`UpsertStrategy::Auto`]: other batches of at least this many rows
    /// go through the staging table.
    pub copy_min_rows: usize,
    /// Rows per `INSERT ... VALUES` statement (fewer when the table has many
    /// columns: a statement takes at most 65535 parameters).
    pub values_rows: usize,
}

impl Default for PgSinkOptions {
    fn default() -> Self {
        Self {
            upsert: UpsertStrategy::Auto,
            delete: DeleteStrategy::Unnest,
            copy_min_rows_new: 100,
            copy_min_rows: 5000,
            values_rows: 1000,
        }
    }
}

impl PgSinkOptions {
    /// Whether a batch of `rows` upserts goes through `COPY`.
    pub fn use_copy(&self, rows: usize, likely_new: bool) -> bool {
        match self.upsert {
            UpsertStrategy::Copy => true,
            UpsertStrategy::InsertValues => false,
            UpsertStrategy::Auto if likely_new => rows >= self.copy_min_rows_new,
            UpsertStrategy::Auto => rows >= self.copy_min_rows,
        }
    }
}
