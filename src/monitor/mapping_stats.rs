//! `table_mappings.total_rows_synced`/`last_sync_time` and the statistics of
//! `transform_scripts` (`execution_count`, `average_execution_time_ms`,
//! `last_execution_time`), written each window as deltas of the running
//! tasks' in-memory counters (which restart from zero with each run).

use std::collections::HashMap;

use metastore::meta::{runstate, MetaDb, MetaError};
use uuid::Uuid;

use crate::registry::Registry;

/// Counter values already written, per (task, mapping or script id).
#[derive(Default)]
pub struct MappingStatsSync {
    mappings: HashMap<(String, Uuid), u64>,
    /// (runs, total milliseconds).
    scripts: HashMap<(String, Uuid), (u64, f64)>,
}

impl MappingStatsSync {
    /// Writes what changed since the last call; on error the same deltas are
    /// tried again next time.
    pub async fn flush(&mut self, db: &MetaDb, registry: &Registry) -> Result<(), MetaError> {
        let mut map_updates = Vec::new();
        let mut script_updates = Vec::new();
        for entry in registry.tasks() {
            if entry.meta.is_none() {
                continue;
            }
            let Some(stats) = entry.mapping_stats() else {
                continue;
            };
            for m in stats.mappings() {
                let Some(id) = m.mapping_id.as_deref().and_then(|s| s.parse::<Uuid>().ok()) else {
                    continue;
                };
                let prev = self
                    .mappings
                    .get(&(entry.name.clone(), id))
                    .copied()
                    .unwrap_or(0);
                // A new run counts from zero again.
                let delta = if m.total_rows_synced >= prev {
                    m.total_rows_synced - prev
                } else {
                    m.total_rows_synced
                };
                if delta > 0 {
                    map_updates.push((
                        (entry.name.clone(), id),
                        m.total_rows_synced,
                        delta,
                        m.last_sync_time,
                    ));
                }
            }
            for s in stats.scripts() {
                let Some(id) = s.script_id.as_deref().and_then(|s| s.parse::<Uuid>().ok()) else {
                    continue;
                };
                let total_ms = s.average_execution_time_ms * s.execution_count as f64;
                let (prev_n, prev_ms) = self
                    .scripts
                    .get(&(entry.name.clone(), id))
                    .copied()
                    .unwrap_or((0, 0.0));
                let (dn, dms) = if s.execution_count >= prev_n {
                    (s.execution_count - prev_n, (total_ms - prev_ms).max(0.0))
                } else {
                    (s.execution_count, total_ms)
                };
                if dn > 0 {
                    script_updates.push((
                        (entry.name.clone(), id),
                        (s.execution_count, total_ms),
                        dn,
                        dms,
                        s.last_execution_time,
                    ));
                }
            }
        }
        if map_updates.is_empty() && script_updates.is_empty() {
            return Ok(());
        }
        let conn = db.get().await?;
        for (key, now, delta, last) in map_updates {
            runstate::add_mapping_stats(&*conn, key.1, delta as i64, last).await?;
            self.mappings.insert(key, now);
        }
        for (key, now, dn, dms, last) in script_updates {
            runstate::add_script_stats(&*conn, key.1, dn as i64, dms, last).await?;
            self.scripts.insert(key, now);
        }
        Ok(())
    }
}
