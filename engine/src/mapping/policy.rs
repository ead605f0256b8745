//! `conflict_resolution`: what a sink does with the rows it is given.

use serde::{Deserialize, Serialize};

/// How a sink writes one table's changes (`table_mappings.conflict_resolution`),
/// carried by [`crate::TableChanges::policy`].
///
/// | change in [`crate::TableChanges`] | `UPSERT` | `INSERT_ONLY` | `UPDATE_ONLY` | `IGNORE` |
/// |---|---|---|---|---|
/// | `upserts` (inserts, snapshot rows, updates) | insert, or overwrite the existing row | insert when the key is absent, else nothing | overwrite the existing row, else nothing | insert when the key is absent, else nothing |
/// | `partial_updates` | update the existing row | nothing | update the existing row | nothing |
/// | `deletes` (incl. filter move-outs, the old key of a key change) | delete | nothing | nothing | delete |
/// | `TRUNCATE` | truncate | nothing | nothing | truncate |
///
/// - `INSERT_ONLY` keeps every row the target ever received as first
///   written: an append-only archive (deletes and truncates are not applied).
/// - `UPDATE_ONLY` only changes rows that exist in the target: it never adds
///   or removes rows.
/// - `IGNORE` never overwrites a target row but keeps the target's set of
///   keys in step with the source (deletes apply).
/// - Changes are coalesced per key inside a batch first (insert + update of
///   one key is one upsert of the final row; insert + delete is a delete), so
///   the policy sees each key's final change of the batch.
/// - A key change arrives as a delete of the old key and an upsert of the new
///   one; each follows the rules above (under `INSERT_ONLY` the old row stays).
///
/// Every policy is idempotent, so replays after a crash stay exact.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ConflictPolicy {
    /// Insert or overwrite; deletes apply.
    #[default]
    Upsert,
    /// Insert rows whose key is absent; never touch existing rows; no deletes.
    InsertOnly,
    /// Overwrite rows that exist; never insert; no deletes.
    UpdateOnly,
    /// Insert rows whose key is absent; never overwrite; deletes apply.
    Ignore,
}

/// What a sink does with an upserted row, by policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpsertMode {
    /// Insert, or overwrite every non-key column of the existing row.
    InsertOrOverwrite,
    /// Insert when the key is absent; leave an existing row as it is.
    InsertIfAbsent,
    /// Overwrite an existing row; do nothing when the key is absent.
    UpdateIfPresent,
}

impl ConflictPolicy {
    /// How `upserts` are written.
    pub fn upsert_mode(self) -> UpsertMode {
        match self {
            ConflictPolicy::Upsert => UpsertMode::InsertOrOverwrite,
            ConflictPolicy::InsertOnly | ConflictPolicy::Ignore => UpsertMode::InsertIfAbsent,
            ConflictPolicy::UpdateOnly => UpsertMode::UpdateIfPresent,
        }
    }

    /// Whether `deletes` (and truncates) are applied.
    pub fn applies_deletes(self) -> bool {
        matches!(self, ConflictPolicy::Upsert | ConflictPolicy::Ignore)
    }

    /// Whether `partial_updates` are applied.
    pub fn applies_partial_updates(self) -> bool {
        matches!(self, ConflictPolicy::Upsert | ConflictPolicy::UpdateOnly)
    }

    /// The spelling used in configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            ConflictPolicy::Upsert => "UPSERT",
            ConflictPolicy::InsertOnly => "INSERT_ONLY",
            ConflictPolicy::UpdateOnly => "UPDATE_ONLY",
            ConflictPolicy::Ignore => "IGNORE",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_table() {
        use ConflictPolicy::*;
        let rows: Vec<_> = [Upsert, InsertOnly, UpdateOnly, Ignore]
            .iter()
            .map(|p| {
                (
                    p.as_str(),
                    p.upsert_mode(),
                    p.applies_deletes(),
                    p.applies_partial_updates(),
                )
            })
            .collect();
        assert_eq!(
            rows,
            vec![
                ("UPSERT", UpsertMode::InsertOrOverwrite, true, true),
                ("INSERT_ONLY", UpsertMode::InsertIfAbsent, false, false),
                ("UPDATE_ONLY", UpsertMode::UpdateIfPresent, false, true),
                ("IGNORE", UpsertMode::InsertIfAbsent, true, false),
            ]
        );
        let p: ConflictPolicy = serde_json::from_str("\"UPDATE_ONLY\"").unwrap();
        assert_eq!(p, UpdateOnly);
        assert!(serde_json::from_str::<ConflictPolicy>("\"MERGE\"").is_err());
    }
}
