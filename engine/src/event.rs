//! The normalized change stream.
//!
//! A source emits, per transaction: `Begin`, then row changes (`Insert`,
//! `Update`, `Delete`, `Truncate`) and `Relation` (schema) events, then
//! `Commit`. Every event carries its [`Offset`]: the commit position of its
//! transaction and its ordinal inside it, so that the stream is totally ordered
//! and a resume never skips or repeats an event. Snapshot rows travel as
//! [`SnapshotChunk`]s before the stream starts.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::position::{Offset, TableSnapshotProgress};
use crate::schema::TableSchema;
use crate::value::{row_size, Row};

#[derive(Debug, Clone)]
pub struct Begin {
    pub offset: Offset,
    pub commit_time: Option<DateTime<Utc>>,
    /// Source transaction id, for diagnostics.
    pub xid: Option<u64>,
}

#[derive(Debug, Clone)]
pub struct Insert {
    pub offset: Offset,
    pub table: Arc<TableSchema>,
    pub row: Row,
}

#[derive(Debug, Clone)]
pub struct Update {
    pub offset: Offset,
    pub table: Arc<TableSchema>,
    /// The old row (all columns, or only the key columns with the others
    /// `Unchanged`), when the source sends it. PostgreSQL sends it when the key
    /// changed or with `REPLICA IDENTITY FULL`.
    pub before: Option<Row>,
    /// The new row; columns the source did not send are `Value::Unchanged`.
    pub after: Row,
}

#[derive(Debug, Clone)]
pub struct Delete {
    pub offset: Offset,
    pub table: Arc<TableSchema>,
    /// The old row: at least the key columns; others may be `Unchanged`.
    pub before: Row,
}

#[derive(Debug, Clone)]
pub struct Truncate {
    pub offset: Offset,
    pub tables: Vec<Arc<TableSchema>>,
}

/// The schema of a table as of this point of the stream (first sighting or a change).
#[derive(Debug, Clone)]
pub struct Relation {
    pub offset: Offset,
    pub table: Arc<TableSchema>,
}

/// A table was renamed at the source (MySQL `RENAME TABLE`, `ALTER TABLE
/// ... RENAME TO`): the rows the target holds under the old table's name
/// belong to the new one. `from` is the table as it was (its columns as of
/// the rename), `to` the table afterwards. Sent before any `Relation` or row
/// of `to`, inside the DDL's transaction.
#[derive(Debug, Clone)]
pub struct Rename {
    pub offset: Offset,
    pub from: Arc<TableSchema>,
    pub to: Arc<TableSchema>,
}

#[derive(Debug, Clone)]
pub struct Commit {
    pub offset: Offset,
    /// Resume offset once this transaction is durable in the target.
    pub resume: Offset,
    pub commit_time: Option<DateTime<Utc>>,
}

/// The source has nothing pending before `resume` (idle stream, keepalive):
/// once everything before it is durable, `resume` may be checkpointed.
#[derive(Debug, Clone)]
pub struct Heartbeat {
    pub resume: Offset,
}

/// A chunk of rows of the initial copy of one table.
#[derive(Debug, Clone)]
pub struct SnapshotChunk {
    pub table: Arc<TableSchema>,
    pub rows: Vec<Row>,
    /// The table's progress once this chunk is durable.
    pub progress: TableSnapshotProgress,
}

/// Every table has been copied; the stream will start at `consistent_point`.
#[derive(Debug, Clone)]
pub struct SnapshotDone {
    pub consistent_point: Offset,
}

#[derive(Debug, Clone)]
pub enum ChangeEvent {
    Begin(Begin),
    Insert(Insert),
    Update(Update),
    Delete(Delete),
    Truncate(Truncate),
    Relation(Relation),
    Rename(Rename),
    Commit(Commit),
    Heartbeat(Heartbeat),
    SnapshotChunk(SnapshotChunk),
    SnapshotDone(SnapshotDone),
}

impl ChangeEvent {
    /// The event's place in the total order, when it has one inside the stream.
    pub fn offset(&self) -> Option<&Offset> {
        match self {
            ChangeEvent::Begin(e) => Some(&e.offset),
            ChangeEvent::Insert(e) => Some(&e.offset),
            ChangeEvent::Update(e) => Some(&e.offset),
            ChangeEvent::Delete(e) => Some(&e.offset),
            ChangeEvent::Truncate(e) => Some(&e.offset),
            ChangeEvent::Relation(e) => Some(&e.offset),
            ChangeEvent::Rename(e) => Some(&e.offset),
            ChangeEvent::Commit(e) => Some(&e.offset),
            ChangeEvent::Heartbeat(e) => Some(&e.resume),
            ChangeEvent::SnapshotChunk(_) | ChangeEvent::SnapshotDone(_) => None,
        }
    }

    /// Number of row changes this event carries.
    pub fn row_count(&self) -> usize {
        match self {
            ChangeEvent::Insert(_) | ChangeEvent::Update(_) | ChangeEvent::Delete(_) => 1,
            ChangeEvent::SnapshotChunk(c) => c.rows.len(),
            _ => 0,
        }
    }

    /// Approximate memory held by the event, for byte-bounded queues and batches.
    pub fn approx_size(&self) -> usize {
        64 + match self {
            ChangeEvent::Insert(e) => row_size(&e.row),
            ChangeEvent::Update(e) => row_size(&e.after) + e.before.as_deref().map_or(0, row_size),
            ChangeEvent::Delete(e) => row_size(&e.before),
            ChangeEvent::SnapshotChunk(c) => c.rows.iter().map(|r| row_size(r)).sum(),
            _ => 0,
        }
    }
}
