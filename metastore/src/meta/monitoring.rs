//! Monitoring rows of the metadata database: `sync_metrics` (per-minute rows
//! and their roll-ups), the runtime columns of `sync_tasks`
//! (`health_status`, `total_records_synced`, `last_sync_time`),
//! `alert_records` (open / resolve), and the hourly housekeeping run.
//!
//! ## `sync_metrics`
//! The daemon writes one row per task, metric type and minute with
//! `time_window = '1MIN'` and `recorded_at` = the start of the window.
//! `metric_value` per type (1MIN rows; `null` = not measured):
//!
//! | type | fields |
//! |---|---|
//! | THROUGHPUT | `records_per_second`, `bytes_per_second`, `records`, `window_seconds` |
//! | LATENCY | `p50`, `p95`, `p99`, `max` (ms, end-to-end per target transaction), `samples` |
//! | LAG | `consumer_lag` (source log bytes behind), `time_lag_ms` |
//! | ERROR_RATE | `errors`, `records`, `rate` = errors / (errors + records) |
//! | CPU | `percent` (100 = one core), `scope: "process"` |
//! | MEMORY | `rss_bytes`, `scope: "process"` |
//!
//! Roll-ups (5MIN, 15MIN, 1HOUR, 1DAY, windows aligned on UTC) are computed
//! in SQL from the 1MIN rows of each closed window ([`roll_up`]): rates,
//! CPU and memory are averaged (`max_percent`, `max_rss_bytes` keep the
//! peak); LAG keeps the worst minute; latency percentiles are the largest
//! per-minute percentile — an upper bound of the window's true percentile —
//! and `max` the largest; ERROR_RATE adds errors and records and recomputes
//! the rate. Every roll-up row carries `minutes`, the 1MIN rows it covers.
//!
//! The table has no unique key on (task, type, window, start), so writes are
//! made idempotent here: each runs in a transaction holding a per-task
//! advisory lock and inserts only rows that do not exist yet. A retried
//! write never duplicates a row.

use chrono::{DateTime, TimeZone, Utc};
use serde_json::Value as Json;
use tokio_postgres::{Client, GenericClient, Transaction};
use uuid::Uuid;

use super::error::{MetaError, MetaResult};
use super::maintenance::{self, RetentionReport};
use super::pool::MetaDb;

/// Who the daemon's writes are attributed to (`resolved_by`, `created_by`).
pub const DAEMON_USER: &str = "dbsync";
/// Advisory lock (bigint form) held by the one daemon doing housekeeping.
pub const HOUSEKEEPING_LOCK: i64 = 0x6462_7379_6e63_686b; // "dbsynchk"
/// First key of the per-task advisory locks (two-int form) around metric writes.
const METRICS_LOCK_CLASS: i32 = 0x6462_6d74; // "dbmt"
/// `alert_title` is varchar(300).
const TITLE_MAX_CHARS: usize = 300;

/// `sync_metrics.metric_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MetricType {
    Throughput,
    Latency,
    Lag,
    ErrorRate,
    Cpu,
    Memory,
}

impl MetricType {
    pub const ALL: [MetricType; 6] = [
        MetricType::Throughput,
        MetricType::Latency,
        MetricType::Lag,
        MetricType::ErrorRate,
        MetricType::Cpu,
        MetricType::Memory,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            MetricType::Throughput => "THROUGHPUT",
            MetricType::Latency => "LATENCY",
            MetricType::Lag => "LAG",
            MetricType::ErrorRate => "ERROR_RATE",
            MetricType::Cpu => "CPU",
            MetricType::Memory => "MEMORY",
        }
    }
}

/// `sync_metrics.time_window` (the daemon writes 1MIN rows and rolls them up).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TimeWindow {
    OneMin,
    FiveMin,
    FifteenMin,
    OneHour,
    OneDay,
}

impl TimeWindow {
    /// The roll-up windows, shortest first.
    pub const ROLLUPS: [TimeWindow; 4] = [
        TimeWindow::FiveMin,
        TimeWindow::FifteenMin,
        TimeWindow::OneHour,
        TimeWindow::OneDay,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TimeWindow::OneMin => "1MIN",
            TimeWindow::FiveMin => "5MIN",
            TimeWindow::FifteenMin => "15MIN",
            TimeWindow::OneHour => "1HOUR",
            TimeWindow::OneDay => "1DAY",
        }
    }

    /// Length in seconds.
    pub fn seconds(self) -> i64 {
        match self {
            TimeWindow::OneMin => 60,
            TimeWindow::FiveMin => 300,
            TimeWindow::FifteenMin => 900,
            TimeWindow::OneHour => 3600,
            TimeWindow::OneDay => 86_400,
        }
    }

    /// The start of the window holding `t` (windows are aligned on the Unix
    /// epoch, so on UTC minutes, hours and days).
    pub fn start_of(self, t: DateTime<Utc>) -> DateTime<Utc> {
        let secs = self.seconds();
        let start = t.timestamp().div_euclid(secs) * secs;
        Utc.timestamp_opt(start, 0).single().unwrap_or(t)
    }
}

/// One row to write.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricRow {
    pub task_id: Uuid,
    pub metric_type: MetricType,
    pub value: Json,
    /// The start of the window the row describes.
    pub recorded_at: DateTime<Utc>,
}

/// One stored row (reads).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredMetric {
    pub task_id: Uuid,
    pub metric_type: String,
    pub time_window: String,
    pub value: Json,
    pub recorded_at: DateTime<Utc>,
}

/// Takes the per-task advisory locks of `task_ids` in a fixed order (no
/// deadlock between two writers), until the transaction ends.
async fn lock_tasks(tx: &Transaction<'_>, task_ids: &[Uuid]) -> MetaResult<()> {
    tx.query(
        "SELECT pg_advisory_xact_lock($1, h) FROM \
         (SELECT DISTINCT hashtext(t::text) AS h FROM unnest($2::uuid[]) AS t ORDER BY 1) s",
        &[&METRICS_LOCK_CLASS, &task_ids],
    )
    .await
    .map_err(|e| MetaError::query("lock the tasks' metrics", e))?;
    Ok(())
}

/// Writes `rows` with `time_window = window`, skipping rows that already
/// exist (same task, type, window and `recorded_at`) and rows of tasks that
/// no longer exist (one deleted task never blocks the others). Returns the rows
/// inserted. The month partitions of `recorded_at` must exist
/// ([`maintenance::ensure_metric_partitions`]).
pub async fn insert_metrics(
    c: &mut Client,
    window: TimeWindow,
    rows: &[MetricRow],
) -> MetaResult<u64> {
    if rows.is_empty() {
        return Ok(0);
    }
    let ids: Vec<Uuid> = rows.iter().map(|r| r.task_id).collect();
    let types: Vec<&str> = rows.iter().map(|r| r.metric_type.as_str()).collect();
    let values: Vec<&Json> = rows.iter().map(|r| &r.value).collect();
    let times: Vec<DateTime<Utc>> = rows.iter().map(|r| r.recorded_at).collect();
    let tx = c
        .transaction()
        .await
        .map_err(|e| MetaError::query("begin writing metrics", e))?;
    lock_tasks(&tx, &ids).await?;
    let inserted = tx
        .execute(
            "INSERT INTO sync_metrics (task_id, metric_type, metric_value, time_window, recorded_at) \
             SELECT DISTINCT ON (r.task_id, r.metric_type, r.recorded_at) \
                    r.task_id, r.metric_type, r.metric_value, $5::text, r.recorded_at \
             FROM unnest($1::uuid[], $2::text[], $3::jsonb[], $4::timestamptz[]) \
                  AS r(task_id, metric_type, metric_value, recorded_at) \
             WHERE NOT EXISTS (SELECT 1 FROM sync_metrics s \
                 WHERE s.task_id = r.task_id AND s.metric_type = r.metric_type \
                   AND s.time_window = $5 AND s.recorded_at = r.recorded_at) \
               AND EXISTS (SELECT 1 FROM sync_tasks t WHERE t.task_id = r.task_id)",
            &[&ids, &types, &values, &times, &window.as_str()],
        )
        .await
        .map_err(|e| MetaError::query("write metrics rows", e))?;
    tx.commit()
        .await
        .map_err(|e| MetaError::query("commit metrics rows", e))?;
    Ok(inserted)
}

/// A numeric field of `metric_value`; null when absent or not a number (a
/// row edited by hand never breaks a roll-up).
fn num(field: &str) -> String {
    format!(
        "(CASE jsonb_typeof(metric_value -> '{field}') WHEN 'number' \
         THEN (metric_value ->> '{field}')::float8 END)"
    )
}

/// The aggregate of a group of 1MIN rows of one type (see the module doc).
fn rollup_value_sql() -> String {
    let (avg, max, sum) = (
        |f: &str| format!("avg({})", num(f)),
        |f: &str| format!("max({})", num(f)),
        |f: &str| format!("sum({})", num(f)),
    );
    format!(
        "CASE metric_type \
         WHEN 'THROUGHPUT' THEN jsonb_build_object('records_per_second', {}, \
             'bytes_per_second', {}, 'records', {}) \
         WHEN 'LATENCY' THEN jsonb_build_object('p50', {}, 'p95', {}, 'p99', {}, 'max', {}, \
             'samples', {}) \
         WHEN 'LAG' THEN jsonb_build_object('consumer_lag', {}, 'time_lag_ms', {}) \
         WHEN 'ERROR_RATE' THEN jsonb_build_object('errors', {errors}, 'records', {records}, \
             'rate', coalesce({errors} / nullif({errors} + {records}, 0), 0)) \
         WHEN 'CPU' THEN jsonb_build_object('percent', {}, 'max_percent', {}, \
             'scope', 'process') \
         WHEN 'MEMORY' THEN jsonb_build_object('rss_bytes', {}, 'max_rss_bytes', {}, \
             'scope', 'process') \
         END || jsonb_build_object('minutes', count(*))",
        avg("records_per_second"),
        avg("bytes_per_second"),
        sum("records"),
        max("p50"),
        max("p95"),
        max("p99"),
        max("max"),
        sum("samples"),
        max("consumer_lag"),
        max("time_lag_ms"),
        avg("percent"),
        max("percent"),
        avg("rss_bytes"),
        max("rss_bytes"),
        errors = sum("errors"),
        records = sum("records"),
    )
}

/// Rolls the 1MIN rows of `task_ids` up into `window` rows, for every window
/// that starts at or after `from` and ends at or before `until` (both are
/// aligned down to the window first, so only closed windows are written
/// when `until` is now). Idempotent: a window already rolled up is skipped.
/// Returns the rows inserted.
pub async fn roll_up(
    c: &mut Client,
    task_ids: &[Uuid],
    window: TimeWindow,
    from: DateTime<Utc>,
    until: DateTime<Utc>,
) -> MetaResult<u64> {
    let (from, until) = (window.start_of(from), window.start_of(until));
    if task_ids.is_empty() || from >= until || window == TimeWindow::OneMin {
        return Ok(0);
    }
    let value = rollup_value_sql();
    let sql = format!(
        "INSERT INTO sync_metrics (task_id, metric_type, metric_value, time_window, recorded_at) \
         SELECT g.task_id, g.metric_type, g.metric_value, $2::text, g.bucket FROM ( \
             SELECT task_id, metric_type, bucket, {value} AS metric_value FROM ( \
                 SELECT task_id, metric_type, metric_value, \
                        to_timestamp(floor(extract(epoch FROM recorded_at)::float8 / $3) * $3) \
                            AS bucket \
                 FROM sync_metrics \
                 WHERE task_id = ANY($1) AND time_window = '1MIN' \
                   AND recorded_at >= $4 AND recorded_at < $5) m \
             GROUP BY task_id, metric_type, bucket) g \
         WHERE NOT EXISTS (SELECT 1 FROM sync_metrics s \
             WHERE s.task_id = g.task_id AND s.metric_type = g.metric_type \
               AND s.time_window = $2 AND s.recorded_at = g.bucket)"
    );
    let secs = window.seconds() as f64;
    let tx = c
        .transaction()
        .await
        .map_err(|e| MetaError::query("begin a metrics roll-up", e))?;
    lock_tasks(&tx, task_ids).await?;
    let inserted = tx
        .execute(&sql, &[&task_ids, &window.as_str(), &secs, &from, &until])
        .await
        .map_err(|e| MetaError::query(format!("roll metrics up to {}", window.as_str()), e))?;
    tx.commit()
        .await
        .map_err(|e| MetaError::query("commit a metrics roll-up", e))?;
    Ok(inserted)
}

/// Rows of one task and window with `recorded_at` in `[from, until)`, oldest first.
pub async fn metrics_between(
    c: &impl GenericClient,
    task_id: Uuid,
    window: TimeWindow,
    from: DateTime<Utc>,
    until: DateTime<Utc>,
) -> MetaResult<Vec<StoredMetric>> {
    let rows = c
        .query(
            "SELECT task_id, metric_type, time_window, metric_value, recorded_at \
             FROM sync_metrics WHERE task_id = $1 AND time_window = $2 \
               AND recorded_at >= $3 AND recorded_at < $4 \
             ORDER BY recorded_at, metric_type",
            &[&task_id, &window.as_str(), &from, &until],
        )
        .await
        .map_err(|e| MetaError::query("read metrics rows", e))?;
    Ok(rows
        .iter()
        .map(|r| StoredMetric {
            task_id: r.get(0),
            metric_type: r.get(1),
            time_window: r.get(2),
            value: r.get(3),
            recorded_at: r.get(4),
        })
        .collect())
}

/// `sync_tasks.health_status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HealthStatus {
    Healthy,
    Degraded,
    Unhealthy,
    Unknown,
}

impl HealthStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            HealthStatus::Healthy => "HEALTHY",
            HealthStatus::Degraded => "DEGRADED",
            HealthStatus::Unhealthy => "UNHEALTHY",
            HealthStatus::Unknown => "UNKNOWN",
        }
    }
}

/// The runtime columns of one task to write.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskStatusUpdate {
    pub task_id: Uuid,
    pub health: HealthStatus,
    /// Added to `total_records_synced` (rows committed since the last write).
    pub records_delta: i64,
    /// The last target commit; `last_sync_time` never moves backward.
    pub last_sync_time: Option<DateTime<Utc>>,
}

/// Writes `health_status`, adds to `total_records_synced` and advances
/// `last_sync_time`, touching only rows where something changes. These are
/// runtime figures: the audit columns (`updated_at`, `updated_by`) are left
/// to configuration changes, and no configuration notification fires.
/// Returns the rows changed.
pub async fn update_task_status(
    c: &impl GenericClient,
    updates: &[TaskStatusUpdate],
) -> MetaResult<u64> {
    if updates.is_empty() {
        return Ok(0);
    }
    let ids: Vec<Uuid> = updates.iter().map(|u| u.task_id).collect();
    let health: Vec<&str> = updates.iter().map(|u| u.health.as_str()).collect();
    let deltas: Vec<i64> = updates.iter().map(|u| u.records_delta.max(0)).collect();
    let last: Vec<Option<DateTime<Utc>>> = updates.iter().map(|u| u.last_sync_time).collect();
    c.execute(
        "UPDATE sync_tasks t SET health_status = u.health, \
             total_records_synced = t.total_records_synced + u.delta, \
             last_sync_time = GREATEST(t.last_sync_time, u.last_sync) \
         FROM unnest($1::uuid[], $2::text[], $3::int8[], $4::timestamptz[]) \
              AS u(task_id, health, delta, last_sync) \
         WHERE t.task_id = u.task_id AND t.deleted_at IS NULL \
           AND (t.health_status <> u.health OR u.delta <> 0 \
                OR t.last_sync_time IS DISTINCT FROM GREATEST(t.last_sync_time, u.last_sync))",
        &[&ids, &health, &deltas, &last],
    )
    .await
    .map_err(|e| MetaError::query("update task health and totals", e))
}

/// `alert_records.alert_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AlertType {
    HighLag,
    HighErrorRate,
    ConnectorFailed,
    HighLatency,
    ResourceExhausted,
}

impl AlertType {
    pub const ALL: [AlertType; 5] = [
        AlertType::HighLag,
        AlertType::HighErrorRate,
        AlertType::ConnectorFailed,
        AlertType::HighLatency,
        AlertType::ResourceExhausted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AlertType::HighLag => "HIGH_LAG",
            AlertType::HighErrorRate => "HIGH_ERROR_RATE",
            AlertType::ConnectorFailed => "CONNECTOR_FAILED",
            AlertType::HighLatency => "HIGH_LATENCY",
            AlertType::ResourceExhausted => "RESOURCE_EXHAUSTED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// P0 service down, P1 sync affected, P2 performance.
    pub fn level(self) -> &'static str {
        match self {
            AlertType::ConnectorFailed => "P0",
            AlertType::HighLag | AlertType::HighErrorRate | AlertType::ResourceExhausted => "P1",
            AlertType::HighLatency => "P2",
        }
    }
}

/// An alert to open.
#[derive(Debug, Clone, PartialEq)]
pub struct NewAlert {
    pub task_id: Uuid,
    pub alert_type: AlertType,
    pub title: String,
    pub message: String,
    /// E.g. `{"current_value", "threshold", "duration_seconds"}`; no secrets.
    pub details: Json,
}

/// Opens an alert unless one of the same type is already OPEN or
/// ACKNOWLEDGED for the task (the partial unique index
/// `uq_alert_records_active` decides, so two daemons cannot both open one).
/// Returns the new alert's id, or `None` when one was already active.
pub async fn open_alert(c: &impl GenericClient, alert: &NewAlert) -> MetaResult<Option<Uuid>> {
    let title: String = alert.title.chars().take(TITLE_MAX_CHARS).collect();
    let row = c
        .query_opt(
            "INSERT INTO alert_records (task_id, alert_type, alert_level, alert_title, \
                 alert_message, alert_details, status, created_by, updated_by) \
             VALUES ($1, $2, $3, $4, $5, $6, 'OPEN', $7, $7) \
             ON CONFLICT (task_id, alert_type) WHERE status IN ('OPEN', 'ACKNOWLEDGED') \
             DO NOTHING RETURNING alert_id",
            &[
                &alert.task_id,
                &alert.alert_type.as_str(),
                &alert.alert_type.level(),
                &title,
                &alert.message,
                &alert.details,
                &DAEMON_USER,
            ],
        )
        .await
        .map_err(|e| MetaError::query("open an alert", e))?;
    Ok(row.map(|r| r.get(0)))
}

/// Resolves the task's active alert of `alert_type` (`resolved_by =
/// 'dbsync'`). Returns whether there was one.
pub async fn resolve_alert(
    c: &impl GenericClient,
    task_id: Uuid,
    alert_type: AlertType,
    note: &str,
) -> MetaResult<bool> {
    let n = c
        .execute(
            "UPDATE alert_records SET status = 'RESOLVED', resolved_at = now(), \
                 resolved_by = $3, resolution_note = $4, updated_at = now(), updated_by = $3 \
             WHERE task_id = $1 AND alert_type = $2 AND status IN ('OPEN', 'ACKNOWLEDGED')",
            &[&task_id, &alert_type.as_str(), &DAEMON_USER, &note],
        )
        .await
        .map_err(|e| MetaError::query("resolve an alert", e))?;
    Ok(n > 0)
}

/// The (task, type) pairs with an OPEN or ACKNOWLEDGED alert among `task_ids`.
pub async fn active_alerts(
    c: &impl GenericClient,
    task_ids: &[Uuid],
) -> MetaResult<Vec<(Uuid, AlertType)>> {
    if task_ids.is_empty() {
        return Ok(Vec::new());
    }
    let rows = c
        .query(
            "SELECT task_id, alert_type FROM alert_records \
             WHERE task_id = ANY($1) AND status IN ('OPEN', 'ACKNOWLEDGED')",
            &[&task_ids],
        )
        .await
        .map_err(|e| MetaError::query("read active alerts", e))?;
    Ok(rows
        .iter()
        .filter_map(|r| Some((r.get(0), AlertType::parse(r.get(1))?)))
        .collect())
}

/// What one housekeeping run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HousekeepingReport {
    pub partitions_created: Vec<String>,
    pub retention: RetentionReport,
}

/// Housekeeping on a connection of its own (the advisory lock goes with the
/// session, whatever happens): see [`housekeeping_on`].
pub async fn housekeeping(
    db: &MetaDb,
    now: DateTime<Utc>,
    months_ahead: u32,
) -> MetaResult<Option<HousekeepingReport>> {
    let (client, connection) = db.connect_dedicated().await?;
    let driver = tokio::spawn(async move {
        // Ends when the client is dropped; an error here shows in the queries.
        let _ = connection.await;
    });
    let result = housekeeping_on(&client, now, months_ahead).await;
    drop(client);
    let _ = driver.await;
    result
}

/// Creates the metrics partitions of this month and `months_ahead` more and
/// applies retention, if `pg_try_advisory_lock` gives this session
/// [`HOUSEKEEPING_LOCK`]; `None` when another daemon is at it.
pub async fn housekeeping_on(
    client: &Client,
    now: DateTime<Utc>,
    months_ahead: u32,
) -> MetaResult<Option<HousekeepingReport>> {
    let locked: bool = client
        .query_one("SELECT pg_try_advisory_lock($1)", &[&HOUSEKEEPING_LOCK])
        .await
        .map_err(|e| MetaError::query("take the housekeeping lock", e))?
        .get(0);
    if !locked {
        return Ok(None);
    }
    let result = async {
        let partitions_created =
            maintenance::ensure_metric_partitions(client, now, months_ahead).await?;
        let retention = maintenance::run_retention(client, now).await?;
        Ok(HousekeepingReport {
            partitions_created,
            retention,
        })
    }
    .await;
    client
        .execute("SELECT pg_advisory_unlock($1)", &[&HOUSEKEEPING_LOCK])
        .await
        .map_err(|e| MetaError::query("release the housekeeping lock", e))?;
    result.map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_align_on_utc_boundaries() {
        let t = Utc.with_ymd_and_hms(2026, 11, 22, 13, 47, 31).unwrap();
        let at = |h, m| Utc.with_ymd_and_hms(2026, 11, 22, h, m, 0).unwrap();
        assert_eq!(TimeWindow::OneMin.start_of(t), at(13, 47));
        assert_eq!(TimeWindow::FiveMin.start_of(t), at(13, 45));
        assert_eq!(TimeWindow::FifteenMin.start_of(t), at(13, 45));
        assert_eq!(TimeWindow::OneHour.start_of(t), at(13, 0));
        assert_eq!(TimeWindow::OneDay.start_of(t), at(0, 0));
        assert_eq!(TimeWindow::FiveMin.start_of(at(13, 45)), at(13, 45));
    }

    #[test]
    fn alert_types_round_trip_and_have_levels() {
        for t in AlertType::ALL {
            assert_eq!(AlertType::parse(t.as_str()), Some(t));
        }
        assert_eq!(AlertType::ConnectorFailed.level(), "P0");
        assert_eq!(AlertType::HighLatency.level(), "P2");
        assert_eq!(AlertType::HighLag.level(), "P1");
        assert_eq!(AlertType::parse("NOPE"), None);
    }

    #[test]
    fn every_metric_type_has_a_rollup_branch() {
        let value = rollup_value_sql();
        assert!(value.contains(
            "(CASE jsonb_typeof(metric_value -> 'p99') WHEN 'number' \
             THEN (metric_value ->> 'p99')::float8 END)"
        ));
        for t in MetricType::ALL {
            assert!(value.contains(&format!("WHEN '{}'", t.as_str())), "{t:?}");
        }
    }
}
