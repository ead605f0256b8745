//! How far a task's replication slot is behind its server, for metrics:
//! unacknowledged WAL (`confirmed_flush_lsn`) and retained WAL (`restart_lsn`).

use std::time::Duration;

use engine::metrics::SourceReporter;
use tokio_postgres::Client;
use tracing::debug;

/// How often the streaming source reads its slot's lag and retained WAL.
pub const POLL_EVERY: Duration = Duration::from_secs(5);
/// While messages keep arriving, the clock is looked at once per this many.
pub const CHECK_EVERY_MESSAGES: u32 = 1024;
/// The longest a lag query may take.
const QUERY_TIMEOUT: Duration = Duration::from_secs(5);

/// The slot's distance to the server's current WAL position. On a standby
/// the last received position stands in for the current one.
const SLOT_LAG_SQL: &str =
    "SELECT (w.lsn - s.confirmed_flush_lsn)::int8, (w.lsn - s.restart_lsn)::int8
   FROM pg_replication_slots s,
        (SELECT CASE WHEN pg_is_in_recovery() THEN pg_last_wal_receive_lsn()
                     ELSE pg_current_wal_lsn() END AS lsn) w
  WHERE s.slot_name = $1";

/// Reads the slot's lag and retained WAL (a cheap catalog query) and reports
/// them as `dbsync_source_lag_bytes` and `dbsync_slot_retained_wal_bytes`.
/// Failures only leave the metrics stale: the stream reports real
/// connection problems.
pub async fn report_slot_lag(client: &Client, slot: &str, reporter: &SourceReporter) {
    match tokio::time::timeout(QUERY_TIMEOUT, client.query_opt(SLOT_LAG_SQL, &[&slot])).await {
        Ok(Ok(Some(row))) => {
            if let Some(lag) = row.get::<_, Option<i64>>(0) {
                reporter.source_lag_bytes(lag.max(0) as u64);
            }
            if let Some(retained) = row.get::<_, Option<i64>>(1) {
                reporter.slot_retained_wal_bytes(retained.max(0) as u64);
            }
        }
        Ok(Ok(None)) => debug!(slot, "slot not found while reading its lag"),
        Ok(Err(e)) => debug!(slot, error = %e, "reading the slot's lag failed"),
        Err(_) => debug!(slot, "reading the slot's lag timed out"),
    }
}
