//! Housekeeping of the metadata database: monthly `sync_metrics` partitions
//! created ahead, and retention (metrics 3 months, audit 1 year).

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use tokio_postgres::Client;

use super::error::{MetaError, MetaResult};

/// Months of `sync_metrics` kept.
pub const METRICS_RETENTION_MONTHS: u32 = 3;
/// Days of `audit_logs` kept.
pub const AUDIT_RETENTION_DAYS: i64 = 365;

fn month_start(d: NaiveDate) -> NaiveDate {
    NaiveDate::from_ymd_opt(d.year(), d.month(), 1).unwrap_or(d)
}

fn add_months(d: NaiveDate, months: i32) -> NaiveDate {
    let total = d.year() * 12 + d.month0() as i32 + months;
    NaiveDate::from_ymd_opt(total.div_euclid(12), total.rem_euclid(12) as u32 + 1, 1).unwrap_or(d)
}

fn partition_name(month: NaiveDate) -> String {
    format!("sync_metrics_{:04}{:02}", month.year(), month.month())
}

/// Creates the partitions of the current month and `ahead` following months
/// (idempotent); returns the names created.
pub async fn ensure_metric_partitions(
    client: &Client,
    now: DateTime<Utc>,
    ahead: u32,
) -> MetaResult<Vec<String>> {
    let first = month_start(now.date_naive());
    let mut created = Vec::new();
    for i in 0..=ahead as i32 {
        let from = add_months(first, i);
        let to = add_months(first, i + 1);
        let name = partition_name(from);
        let exists: bool = client
            .query_one("SELECT to_regclass($1) IS NOT NULL", &[&name])
            .await
            .map_err(|e| MetaError::query("look up a metrics partition", e))?
            .get(0);
        if exists {
            continue;
        }
        // Names and bounds are generated here from dates, never from input.
        let sql = format!(
            "CREATE TABLE IF NOT EXISTS {name} PARTITION OF sync_metrics \
             FOR VALUES FROM ('{from} 00:00:00+00') TO ('{to} 00:00:00+00')"
        );
        client
            .batch_execute(&sql)
            .await
            .map_err(|e| MetaError::query(format!("create partition {name}"), e))?;
        created.push(name);
    }
    Ok(created)
}

/// What a retention run removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RetentionReport {
    pub dropped_partitions: Vec<String>,
    pub audit_rows_deleted: u64,
}

/// Drops metrics partitions wholly older than [`METRICS_RETENTION_MONTHS`]
/// and deletes audit rows older than [`AUDIT_RETENTION_DAYS`].
pub async fn run_retention(client: &Client, now: DateTime<Utc>) -> MetaResult<RetentionReport> {
    let keep_from = add_months(
        month_start(now.date_naive()),
        -(METRICS_RETENTION_MONTHS as i32),
    );
    let rows = client
        .query(
            "SELECT c.relname FROM pg_inherits i \
             JOIN pg_class c ON c.oid = i.inhrelid \
             JOIN pg_class p ON p.oid = i.inhparent \
             WHERE p.relname = 'sync_metrics' AND c.relname ~ '^sync_metrics_[0-9]{6}$'",
            &[],
        )
        .await
        .map_err(|e| MetaError::query("list metrics partitions", e))?;
    let mut report = RetentionReport::default();
    for r in rows {
        let name: String = r.get(0);
        let digits = &name["sync_metrics_".len()..];
        let (Ok(y), Ok(m)) = (digits[..4].parse::<i32>(), digits[4..].parse::<u32>()) else {
            continue;
        };
        let Some(month) = NaiveDate::from_ymd_opt(y, m, 1) else {
            continue;
        };
        // A partition goes when its whole month is before the retention start.
        if add_months(month, 1) <= keep_from {
            client
                .batch_execute(&format!("DROP TABLE IF EXISTS {name}"))
                .await
                .map_err(|e| MetaError::query(format!("drop partition {name}"), e))?;
            report.dropped_partitions.push(name);
        }
    }
    report.dropped_partitions.sort();
    let cutoff = now - chrono::Duration::days(AUDIT_RETENTION_DAYS);
    report.audit_rows_deleted = client
        .execute("DELETE FROM audit_logs WHERE operated_at < $1", &[&cutoff])
        .await
        .map_err(|e| MetaError::query("delete old audit rows", e))?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_roll_over_years_both_ways() {
        let d = NaiveDate::from_ymd_opt(2026, 11, 22).unwrap();
        assert_eq!(
            add_months(month_start(d), 2),
            NaiveDate::from_ymd_opt(2027, 1, 1).unwrap()
        );
        assert_eq!(
            add_months(month_start(d), -11),
            NaiveDate::from_ymd_opt(2025, 12, 1).unwrap()
        );
        assert_eq!(
            partition_name(NaiveDate::from_ymd_opt(2027, 1, 1).unwrap()),
            "sync_metrics_202701"
        );
    }
}
