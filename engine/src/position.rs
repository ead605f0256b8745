//! Source positions, offsets and checkpoints.
//!
//! Every event carries an [`Offset`]: the position of its transaction's commit
//! in the source log plus its ordinal inside that transaction. Offsets of one
//! source are totally ordered; offsets of different source kinds are not
//! comparable (`partial_cmp` returns `None`), so mixing logs is caught instead
//! of silently mis-ordered.
//!
//! A *resume offset* `R` means: every event ordered before `R` is durable in the
//! target, no event at or after `R` is. After a transaction commits at the
//! target, the pipeline checkpoints the transaction's `resume` offset (for
//! PostgreSQL the end LSN of the commit record, ordinal 0).

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A PostgreSQL WAL location.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(into = "String", try_from = "String")]
pub struct Lsn(pub u64);

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xffff_ffff)
    }
}

impl std::str::FromStr for Lsn {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (hi, lo) = s
            .split_once('/')
            .ok_or_else(|| format!("invalid LSN {s:?}: expected the form 16/B374D848"))?;
        let hi = u64::from_str_radix(hi, 16).map_err(|_| format!("invalid LSN {s:?}"))?;
        let lo = u64::from_str_radix(lo, 16).map_err(|_| format!("invalid LSN {s:?}"))?;
        if hi > u32::MAX as u64 || lo > u32::MAX as u64 {
            return Err(format!("invalid LSN {s:?}: part out of range"));
        }
        Ok(Lsn((hi << 32) | lo))
    }
}

impl From<Lsn> for String {
    fn from(l: Lsn) -> String {
        l.to_string()
    }
}

impl TryFrom<String> for Lsn {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

/// A position in a MySQL/MariaDB binlog: file and byte offset, plus the GTID
/// set executed up to there when GTIDs are on.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BinlogPosition {
    /// Binlog file name, e.g. `mysql-bin.000003`.
    pub file: Arc<str>,
    pub pos: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gtid_set: Option<Arc<str>>,
}

impl BinlogPosition {
    /// Numeric suffix of the file name (`mysql-bin.000003` → 3), which orders files.
    pub fn file_seq(&self) -> Option<u64> {
        self.file.rsplit_once('.').and_then(|(_, n)| n.parse().ok())
    }
}

/// A typed position in one source's log. Positions of different variants
/// are not comparable.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "source", rename_all = "lowercase")]
pub enum SourcePosition {
    Postgres { lsn: Lsn },
    Mysql(BinlogPosition),
}

impl PartialOrd for SourcePosition {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        match (self, other) {
            (SourcePosition::Postgres { lsn: a }, SourcePosition::Postgres { lsn: b }) => {
                Some(a.cmp(b))
            }
            (SourcePosition::Mysql(a), SourcePosition::Mysql(b)) => {
                let fa = a.file_seq()?;
                let fb = b.file_seq()?;
                Some((fa, a.pos).cmp(&(fb, b.pos)))
            }
            _ => None,
        }
    }
}

impl fmt::Display for SourcePosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SourcePosition::Postgres { lsn } => write!(f, "lsn {lsn}"),
            SourcePosition::Mysql(p) => write!(f, "{}:{}", p.file, p.pos),
        }
    }
}

/// The total-order key of an event: the commit position of its transaction
/// and its ordinal inside that transaction (`0` = the transaction's begin).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Offset {
    pub commit: SourcePosition,
    pub ordinal: u64,
}

impl Offset {
    pub fn new(commit: SourcePosition, ordinal: u64) -> Self {
        Self { commit, ordinal }
    }

    pub fn postgres(lsn: Lsn, ordinal: u64) -> Self {
        Self::new(SourcePosition::Postgres { lsn }, ordinal)
    }

    /// The PostgreSQL LSN, when this is a PostgreSQL offset.
    pub fn pg_lsn(&self) -> Option<Lsn> {
        match self.commit {
            SourcePosition::Postgres { lsn } => Some(lsn),
            _ => None,
        }
    }
}

impl PartialOrd for Offset {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        match self.commit.partial_cmp(&other.commit)? {
            Ordering::Equal => Some(self.ordinal.cmp(&other.ordinal)),
            o => Some(o),
        }
    }
}

impl fmt::Display for Offset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} #{}", self.commit, self.ordinal)
    }
}

/// Progress of the initial copy of one table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableSnapshotProgress {
    /// Key of the last row of the last chunk durably copied, in the source's
    /// own text form, key column by key column; `None` before the first chunk.
    pub last_key: Option<Vec<String>>,
    pub rows_copied: u64,
    pub done: bool,
}

/// State of the initial snapshot of a task.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotState {
    /// Set once every table has been copied; the stream then owns the task.
    pub completed: bool,
    /// Where the stream must start so that it covers every change the copy
    /// may have missed (the replication slot's consistent point).
    pub consistent_point: Option<Offset>,
    /// Per source table (`schema.table`).
    pub tables: BTreeMap<String, TableSnapshotProgress>,
}

/// What is durably done for one task. Written by the pipeline only after the
/// sink committed everything it describes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Resume offset of the change stream (see the module doc); `None` until
    /// the stream has been positioned.
    pub stream: Option<Offset>,
    pub snapshot: SnapshotState,
    /// Source-specific facts needed to resume (e.g. the replication slot name).
    #[serde(default)]
    pub source_state: BTreeMap<String, String>,
    pub updated_at: DateTime<Utc>,
}

impl Checkpoint {
    pub fn empty() -> Self {
        Self {
            stream: None,
            snapshot: SnapshotState::default(),
            source_state: BTreeMap::new(),
            updated_at: Utc::now(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsn_round_trips_through_text() {
        let l: Lsn = "16/B374D848".parse().unwrap();
        assert_eq!(l.0, (0x16 << 32) | 0xB374D848);
        assert_eq!(l.to_string(), "16/B374D848");
        assert!("16B374D848".parse::<Lsn>().is_err());
        assert!("1/ZZ".parse::<Lsn>().is_err());
    }

    #[test]
    fn offsets_order_by_commit_then_ordinal() {
        let a = Offset::postgres(Lsn(100), 5);
        let b = Offset::postgres(Lsn(100), 6);
        let c = Offset::postgres(Lsn(101), 0);
        assert!(a < b && b < c);
    }

    #[test]
    fn offsets_of_different_logs_do_not_compare() {
        let pg = Offset::postgres(Lsn(1), 0);
        let my = Offset::new(
            SourcePosition::Mysql(BinlogPosition {
                file: "bin.000001".into(),
                pos: 4,
                gtid_set: None,
            }),
            0,
        );
        assert_eq!(pg.partial_cmp(&my), None);
    }

    #[test]
    fn binlog_positions_order_across_files() {
        let p = |f: &str, pos| {
            SourcePosition::Mysql(BinlogPosition {
                file: f.into(),
                pos,
                gtid_set: None,
            })
        };
        assert!(p("bin.000001", 900) < p("bin.000002", 4));
        assert!(p("bin.000002", 4) < p("bin.000002", 5));
    }

    #[test]
    fn checkpoint_serialization_is_stable() {
        let cp = Checkpoint {
            stream: Some(Offset::postgres(Lsn(0x1_0000_0010), 0)),
            snapshot: SnapshotState::default(),
            source_state: BTreeMap::new(),
            updated_at: DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
        };
        let json = serde_json::to_string(&cp).unwrap();
        assert_eq!(
            json,
            r#"{"stream":{"commit":{"source":"postgres","lsn":"1/10"},"ordinal":0},"snapshot":{"completed":false,"consistent_point":null,"tables":{}},"source_state":{},"updated_at":"2023-11-14T22:13:20Z"}"#
        );
        let back: Checkpoint = serde_json::from_str(&json).unwrap();
        assert_eq!(back, cp);
    }
}
