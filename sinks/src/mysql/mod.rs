//! The MySQL / MariaDB sink: writes coalesced changes into MySQL 8 or MariaDB
//! inside one target transaction per pipeline batch.
//!
//! # Session
//! Every connection runs `SET NAMES utf8mb4`, `time_zone = '+00:00'` (so
//! `TIMESTAMP` columns store the UTC instant the source had) and
//! `sql_mode = 'STRICT_ALL_TABLES,NO_BACKSLASH_ESCAPES,ERROR_FOR_DIVISION_BY_ZERO,
//! NO_ENGINE_SUBSTITUTION,NO_AUTO_VALUE_ON_ZERO'` ([`SQL_MODE`]):
//! - `STRICT_ALL_TABLES`: out-of-range, too-long and malformed values are
//!   errors, never silently clipped;
//! - `NO_BACKSLASH_ESCAPES`: the few literals dbsync writes (enum members in
//!   DDL) only double their quotes;
//! - `NO_AUTO_VALUE_ON_ZERO`: a replicated key 0 in an `AUTO_INCREMENT`
//!   column stays 0;
//! - `NO_ZERO_DATE`/`NO_ZERO_IN_DATE` are left out on purpose: typed values
//!   can never be zero dates, and a MySQL source configured with
//!   `zero_dates = "text"` sends them so that the replica keeps them.
//!
//! Besides strict mode, every data statement's warning count is checked:
//! any warning (e.g. a decimal rounded, a `LOAD DATA` field clipped) fails
//! the batch with the column named, so nothing changes silently.
//!
//! # Transactions
//! `begin` opens nothing; `START TRANSACTION` goes out with the first write,
//! `commit` sends `COMMIT` (durable as far as the server's
//! `innodb_flush_log_at_trx_commit` and `sync_binlog` make it: 1 is needed for
//! a commit to survive a target crash — that is the server's business).
//! MySQL commits implicitly on DDL, even on `TRUNCATE` of a temporary table,
//! so: tables are created and extended on a second connection of their own;
//! `truncate` is a transactional `DELETE FROM`; staging tables are temporary
//! tables dropped and created (`DROP/CREATE TEMPORARY TABLE` do not commit).
//! When columns must be added or widened in a table the open transaction
//! already wrote to (its metadata lock would block the `ALTER`), the
//! transaction is rolled back, the table is altered, and a transient error
//! makes the pipeline replay it. `rename_table` runs `RENAME TABLE` on the
//! DDL connection at the start of a fresh transaction.
//!
//! # Overlap and parallelism
//! Statements run on a writer task that owns the data connection
//! (`writer.rs`): the pipeline maps, coalesces and encodes the next rows
//! while the server executes the previous statement (bounded: at most a few
//! statements queued). A statement's error surfaces at a later call, at the
//! latest at `commit`, which waits for every statement and never commits
//! after a failure. Rows of the initial copy ([`engine::TableChanges::snapshot`])
//! are spread over [`MysqlSinkOptions::snapshot_connections`] connections,
//! each with its own transaction, all committed at `commit` (extra ones
//! first); stream changes always use the main connection, so a source
//! transaction is never split. No session setting trades durability:
//! `COMMIT` is as durable as the server makes it, and `unique_checks` /
//! `foreign_key_checks` stay on: InnoDB always checks the primary key (the
//! only unique index of the tables dbsync creates), so `unique_checks = 0`
//! would only skip checks of other unique indexes (silent duplicates on
//! tables made by hand), and dbsync's tables have no foreign keys.
//!
//! # Writes
//! - Upserts: multi-row `INSERT ... VALUES (?, ...), ... ON DUPLICATE KEY
//!   UPDATE` with values bound as parameters (binary protocol) — the measured
//!   best — or, when chosen ([`UpsertStrategy`]), `LOAD DATA LOCAL INFILE`
//!   (into the target under a savepoint for probably-new keys, else into a
//!   temporary stage merged with `INSERT ... SELECT ... ON DUPLICATE KEY
//!   UPDATE`).
//!   `ON DUPLICATE KEY UPDATE` fires on any unique index, not only the key:
//!   a target table with further unique indexes may see rows merged where
//!   PostgreSQL's `ON CONFLICT (key)` would fail.
//! - Deletes: `DELETE ... WHERE key IN (...)` (`(k1, k2) IN ((?, ?), ...)`
//!   for composite keys) in chunks.
//! - Partial updates set only the columns that carry a value.
//!
//! Identifiers are always quoted with backticks; values never appear in SQL
//! text. mysql_async's `tracing` feature stays off (it would log statement
//! parameters at debug level).
//!
//! # MySQL 8 (not run here) versus MariaDB
//! Where MySQL 8 behaves differently the code says so: the `INSERT ... AS
//! alias` upsert syntax (`VALUES()` is deprecated and warns), the
//! `utf8mb4_0900_bin` key collation, `local_infile` off by default (the
//! `LOAD DATA` strategies then fall back to `INSERT`), the native `JSON` type
//! (normalizes documents; MariaDB keeps the text in a checked `LONGTEXT`),
//! `TIME` ending at 838:59:59.000000, and `CREATE TEMPORARY TABLE` inside a
//! transaction needing `binlog_format = ROW` when GTIDs are enforced.

mod apply;
pub mod ddl;
mod error;
mod sink;
pub mod sql;
pub mod values;
mod writer;

pub use error::{class_of_code, describe_server_error, MyFailure, MysqlSinkError};
pub use sink::MysqlSink;
pub use sql::ServerInfo;

/// The session `sql_mode` (see the module documentation).
pub const SQL_MODE: &str = "STRICT_ALL_TABLES,NO_BACKSLASH_ESCAPES,ERROR_FOR_DIVISION_BY_ZERO,\
                            NO_ENGINE_SUBSTITUTION,NO_AUTO_VALUE_ON_ZERO";

/// How upserts are written.
///
/// Measured against MariaDB 10.11 on 2 shared cores (`sinks/tests/mysql_perf.rs`:
/// 100k rows of `id bigint, name varchar(64), price decimal(10,2), ts
/// datetime(6)` in batches of 10000, 5000, 1000 and 100; CPU time of dbsync's
/// side plus mariadbd per row, which stays steady on a busy machine, and
/// rows/s, which does not):
///
/// | | new keys | all keys conflicting |
/// |---|---|---|
/// | `INSERT ... ON DUPLICATE KEY UPDATE`, 1000-row statements | 2.0-2.4 µs/row, 170k-250k rows/s | 4.1-4.5 µs/row, 115k-250k rows/s |
/// | `LOAD DATA LOCAL` (new keys: straight into the target; conflicts: stage + merge) | 2.0-2.5 µs/row, 100k-360k rows/s | 5.5-6.5 µs/row, 100k-175k rows/s |
///
/// `LOAD DATA` saves nothing for new keys at any batch size and costs about a
/// third more for conflicting keys (the stage is written, then read), so
/// [`UpsertStrategy::Auto`] writes `INSERT` statements; it also needs no
/// `local_infile` (off by default in MySQL 8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpsertStrategy {
    /// The measured best: `InsertValues`, or `LoadData` for `likely_new`
    /// batches of at least [`MysqlSinkOptions::load_min_rows_new`] rows and
    /// other batches of at least [`MysqlSinkOptions::load_min_rows`] rows
    /// (both never by default) when the server allows `LOAD DATA LOCAL`.
    Auto,
    /// Multi-row `INSERT ... ON DUPLICATE KEY UPDATE` with bound parameters.
    InsertValues,
    /// `LOAD DATA LOCAL INFILE` (straight into the target for `likely_new`
    /// batches, under a savepoint; else into a staging table, then merged).
    /// Falls back to `InsertValues` when the server has `local_infile` off.
    LoadData,
}

/// Tuning of the MySQL sink. The defaults are the measured best; the
/// alternatives exist for measurement.
#[derive(Debug, Clone)]
pub struct MysqlSinkOptions {
    /// How upserts are written.
    pub upsert: UpsertStrategy,
    /// With [`UpsertStrategy::Auto`]: `likely_new` batches of at least this
    /// many rows are loaded straight into the target.
    pub load_min_rows_new: usize,
    /// With [`UpsertStrategy::Auto`]: other batches of at least this many rows
    /// are loaded into a staging table and merged.
    pub load_min_rows: usize,
    /// Most rows per `INSERT ... VALUES` statement (fewer when the table has
    /// many columns: a statement takes at most 65535 parameters).
    pub values_rows: usize,
    /// An `INSERT ... VALUES` statement ends once its values reach this many bytes.
    pub statement_bytes: usize,
    /// Most keys per `DELETE` statement (MariaDB turns `IN` lists of 1000 or
    /// more into a join with a derived table: stay below).
    pub delete_keys: usize,
    /// Connections that write rows of the initial copy at the same time (the
    /// main one included; 1 = only the main one). See `docs/BENCHMARKS.md`
    /// (MariaDB) for the measurement behind the default.
    pub snapshot_connections: usize,
}

impl Default for MysqlSinkOptions {
    fn default() -> Self {
        Self {
            upsert: UpsertStrategy::Auto,
            load_min_rows_new: usize::MAX,
            load_min_rows: usize::MAX,
            values_rows: 1000,
            statement_bytes: 4 * 1024 * 1024,
            delete_keys: 500,
            snapshot_connections: 2,
        }
    }
}

impl MysqlSinkOptions {
    /// Whether a batch of `rows` upserts goes through `LOAD DATA` on a server
    /// that allows it (`local_infile`).
    pub fn use_load(&self, rows: usize, likely_new: bool, local_infile: bool) -> bool {
        if !local_infile {
            return false;
        }
        match self.upsert {
            UpsertStrategy::LoadData => true,
            UpsertStrategy::InsertValues => false,
            UpsertStrategy::Auto if likely_new => rows >= self.load_min_rows_new,
            UpsertStrategy::Auto => rows >= self.load_min_rows,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_loads_only_from_its_thresholds_and_when_allowed() {
        let o = MysqlSinkOptions::default();
        assert!(
            !o.use_load(1_000_000, true, true),
            "measured: INSERT by default"
        );
        assert!(!o.use_load(1_000_000, false, true));
        let o = MysqlSinkOptions {
            load_min_rows_new: 5_000,
            load_min_rows: 20_000,
            ..Default::default()
        };
        assert!(o.use_load(5_000, true, true));
        assert!(!o.use_load(4_999, true, true));
        assert!(o.use_load(20_000, false, true));
        assert!(!o.use_load(19_999, false, true));
        assert!(!o.use_load(10_000, true, false), "local_infile off");
        let load = MysqlSinkOptions {
            upsert: UpsertStrategy::LoadData,
            ..Default::default()
        };
        assert!(load.use_load(1, false, true));
        assert!(!load.use_load(1, false, false));
        let values = MysqlSinkOptions {
            upsert: UpsertStrategy::InsertValues,
            ..Default::default()
        };
        assert!(!values.use_load(100_000, true, true));
    }
}
