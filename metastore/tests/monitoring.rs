//! `meta::monitoring` against a private PostgreSQL: metrics rows and their
//! roll-ups, task health and totals, alerts, housekeeping.

use chrono::{DateTime, Datelike, Duration, TimeZone, Utc};
use metastore::meta::maintenance::AUDIT_RETENTION_DAYS;
use metastore::meta::monitoring::{
    self as mon, AlertType, HealthStatus, MetricRow, MetricType, NewAlert, TaskStatusUpdate,
    TimeWindow,
};
use serde_json::{json, Value as Json};
use testkit::{PgOptions, PgServer};
use tokio_postgres::Client;
use uuid::Uuid;

async fn setup() -> (PgServer, Client, Uuid) {
    let pg = PgServer::start(PgOptions::default());
    pg.create_database("meta").await;
    let mut c = pg.connect("meta").await;
    metastore::meta::migrate(&mut c).await.unwrap();
    let task = new_task(&c, "orders").await;
    (pg, c, task)
}

async fn new_task(c: &Client, code: &str) -> Uuid {
    c.query_one(
        "INSERT INTO sync_tasks (tenant_id, task_name, task_code, source_db_type, target_db_type, \
             source_connection_config, target_connection_config) \
         SELECT tenant_id, $1, $1, 'POSTGRESQL', 'POSTGRESQL', '{}', '{}' FROM tenants \
         WHERE tenant_code = 'default' RETURNING task_id",
        &[&code],
    )
    .await
    .unwrap()
    .get(0)
}

/// 10:00 on the 2nd of the current month (its partition exists after migrate).
fn base_time() -> DateTime<Utc> {
    let now = Utc::now();
    Utc.with_ymd_and_hms(now.year(), now.month(), 2, 10, 0, 0)
        .unwrap()
}

/// The 1MIN rows of minute `i` (values vary with `i`).
fn minute_rows(task: Uuid, t0: DateTime<Utc>, i: i64) -> Vec<MetricRow> {
    let at = t0 + Duration::minutes(i);
    let v = i as f64;
    let row = |metric_type, value| MetricRow {
        task_id: task,
        metric_type,
        value,
        recorded_at: at,
    };
    vec![
        row(
            MetricType::Throughput,
            json!({"records_per_second": 10.0 * v, "bytes_per_second": null,
                   "records": 600 * i, "window_seconds": 60.0}),
        ),
        row(
            MetricType::Latency,
            json!({"p50": v, "p95": 2.0 * v, "p99": 3.0 * v, "max": 4.0 * v, "samples": 10}),
        ),
        row(
            MetricType::Lag,
            json!({"consumer_lag": 100 * i, "time_lag_ms": 5 * i}),
        ),
        row(
            MetricType::ErrorRate,
            json!({"errors": i % 2, "records": 99, "rate": 0.0}),
        ),
        row(MetricType::Cpu, json!({"percent": v, "scope": "process"})),
        row(
            MetricType::Memory,
            json!({"rss_bytes": 1000 + i, "scope": "process"}),
        ),
    ]
}

/// A JSON number as f64 (PostgreSQL writes 20.0 as 20).
fn num(v: &Json) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

fn of_type(rows: &[mon::StoredMetric], t: MetricType) -> Vec<&Json> {
    rows.iter()
        .filter(|r| r.metric_type == t.as_str())
        .map(|r| &r.value)
        .collect()
}

#[tokio::test]
async fn minute_rows_are_written_once_and_rolled_up_once_per_closed_window() {
    let (_pg, mut c, task) = setup().await;
    let t0 = base_time();
    let mut rows: Vec<MetricRow> = (0..12).flat_map(|i| minute_rows(task, t0, i)).collect();
    // A row of a task deleted meanwhile is dropped, and does not block the others.
    rows.extend(minute_rows(Uuid::new_v4(), t0, 0).into_iter().take(1));
    assert_eq!(
        mon::insert_metrics(&mut c, TimeWindow::OneMin, &rows)
            .await
            .unwrap(),
        72
    );
    // A retried write (same windows) adds nothing.
    assert_eq!(
        mon::insert_metrics(&mut c, TimeWindow::OneMin, &rows[..12])
            .await
            .unwrap(),
        0
    );
    let minutes =
        mon::metrics_between(&c, task, TimeWindow::OneMin, t0, t0 + Duration::minutes(12))
            .await
            .unwrap();
    assert_eq!(minutes.len(), 72);
    assert!(minutes.iter().all(|m| m.time_window == "1MIN"));
    let recorded: Option<chrono::NaiveDate> = c
        .query_one(
            "SELECT recorded_date FROM sync_metrics WHERE task_id = $1 LIMIT 1",
            &[&task],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(recorded, Some(t0.date_naive()));

    // Up to 10:12: the windows 10:00 and 10:05 are closed, 10:10 is not.
    let until = t0 + Duration::minutes(12);
    let n = mon::roll_up(&mut c, &[task], TimeWindow::FiveMin, t0, until)
        .await
        .unwrap();
    assert_eq!(n, 12, "two closed windows of six types");
    assert_eq!(
        mon::roll_up(&mut c, &[task], TimeWindow::FiveMin, t0, until)
            .await
            .unwrap(),
        0,
        "idempotent"
    );
    let five = mon::metrics_between(&c, task, TimeWindow::FiveMin, t0, until)
        .await
        .unwrap();
    assert_eq!(five.len(), 12);
    assert_eq!(five[0].recorded_at, t0);
    assert_eq!(five[6].recorded_at, t0 + Duration::minutes(5));
    // Minutes 0..5 then 5..10.
    let thr = of_type(&five, MetricType::Throughput);
    assert_eq!(num(&thr[0]["records_per_second"]), 20.0);
    assert_eq!(num(&thr[0]["records"]), 6000.0);
    assert_eq!(thr[0]["bytes_per_second"], Json::Null);
    assert_eq!(num(&thr[0]["minutes"]), 5.0);
    let lat = of_type(&five, MetricType::Latency);
    assert_eq!(num(&lat[1]["p99"]), 27.0);
    assert_eq!(num(&lat[1]["max"]), 36.0);
    assert_eq!(num(&lat[1]["samples"]), 50.0);
    let lag = of_type(&five, MetricType::Lag);
    assert_eq!(num(&lag[0]["consumer_lag"]), 400.0);
    assert_eq!(num(&lag[0]["time_lag_ms"]), 20.0);
    let err = of_type(&five, MetricType::ErrorRate);
    // Minutes 0..5: errors at 1 and 3.
    assert_eq!(num(&err[0]["errors"]), 2.0);
    assert_eq!(num(&err[0]["records"]), 495.0);
    let rate = err[0]["rate"].as_f64().unwrap();
    assert!((rate - 2.0 / 497.0).abs() < 1e-9, "{rate}");
    let cpu = of_type(&five, MetricType::Cpu);
    assert_eq!(num(&cpu[1]["percent"]), 7.0);
    assert_eq!(num(&cpu[1]["max_percent"]), 9.0);
    assert_eq!(cpu[1]["scope"], json!("process"));
    let mem = of_type(&five, MetricType::Memory);
    assert_eq!(num(&mem[0]["max_rss_bytes"]), 1004.0);

    // Later, the third window closes: only it is added.
    let later = t0 + Duration::minutes(15);
    assert_eq!(
        mon::roll_up(&mut c, &[task], TimeWindow::FiveMin, t0, later)
            .await
            .unwrap(),
        6
    );
    // 15MIN / 1HOUR / 1DAY once their windows have closed.
    let day_end = TimeWindow::OneDay.start_of(t0) + Duration::days(1);
    for (w, start) in [
        (TimeWindow::FifteenMin, t0),
        (TimeWindow::OneHour, t0),
        (TimeWindow::OneDay, TimeWindow::OneDay.start_of(t0)),
    ] {
        assert_eq!(
            mon::roll_up(&mut c, &[task], w, t0, t0 + Duration::minutes(14))
                .await
                .unwrap(),
            0,
            "{w:?} window still open"
        );
        assert_eq!(
            mon::roll_up(&mut c, &[task], w, t0 - Duration::days(1), day_end)
                .await
                .unwrap(),
            6,
            "{w:?}"
        );
        let rows = mon::metrics_between(&c, task, w, start, day_end)
            .await
            .unwrap();
        assert_eq!(rows.len(), 6);
        assert_eq!(rows[0].recorded_at, start);
        let thr = of_type(&rows, MetricType::Throughput);
        assert_eq!(num(&thr[0]["minutes"]), 12.0, "{w:?}");
    }
}

#[tokio::test]
async fn task_health_and_totals_change_only_when_something_changed() {
    let (_pg, c, task) = setup().await;
    let other = new_task(&c, "other").await;
    let (health, total, last, updated_at) = read(&c, task).await;
    assert_eq!((health.as_str(), total, last), ("UNKNOWN", 0, None));
    let t1 = Utc.timestamp_opt(1_790_000_000, 0).unwrap();
    let up = |health, records_delta, last_sync_time| TaskStatusUpdate {
        task_id: task,
        health,
        records_delta,
        last_sync_time,
    };
    let same_other = TaskStatusUpdate {
        task_id: other,
        health: HealthStatus::Unknown,
        records_delta: 0,
        last_sync_time: None,
    };
    assert_eq!(
        mon::update_task_status(
            &c,
            &[up(HealthStatus::Healthy, 10, Some(t1)), same_other.clone()]
        )
        .await
        .unwrap(),
        1,
        "the other task did not change"
    );
    let (h, total, last, at) = read(&c, task).await;
    assert_eq!(
        (h.as_str(), total, last, at),
        ("HEALTHY", 10, Some(t1), updated_at)
    );
    // Nothing new: no write.
    assert_eq!(
        mon::update_task_status(&c, &[up(HealthStatus::Healthy, 0, Some(t1))])
            .await
            .unwrap(),
        0
    );
    // An older commit time never moves last_sync_time back.
    let older = t1 - Duration::minutes(5);
    assert_eq!(
        mon::update_task_status(&c, &[up(HealthStatus::Healthy, 0, Some(older))])
            .await
            .unwrap(),
        0
    );
    // Totals add up; health follows.
    let t2 = t1 + Duration::minutes(1);
    mon::update_task_status(&c, &[up(HealthStatus::Degraded, 5, Some(t2))])
        .await
        .unwrap();
    let (h, total, last, _) = read(&c, task).await;
    assert_eq!((h.as_str(), total, last), ("DEGRADED", 15, Some(t2)));
    mon::update_task_status(&c, &[up(HealthStatus::Unhealthy, 0, None)])
        .await
        .unwrap();
    let (h, total, last, _) = read(&c, task).await;
    assert_eq!((h.as_str(), total, last), ("UNHEALTHY", 15, Some(t2)));
    // A soft-deleted task is left alone.
    c.execute(
        "UPDATE sync_tasks SET deleted_at = now() WHERE task_id = $1",
        &[&task],
    )
    .await
    .unwrap();
    assert_eq!(
        mon::update_task_status(&c, &[up(HealthStatus::Healthy, 1, None)])
            .await
            .unwrap(),
        0
    );
}

#[tokio::test]
async fn an_alert_is_opened_once_and_resolved_by_the_daemon() {
    let (_pg, c, task) = setup().await;
    let alert = NewAlert {
        task_id: task,
        alert_type: AlertType::HighLag,
        title: format!("High lag on task orders{}", "!".repeat(400)),
        message: "Task orders is 2000000 source bytes behind (threshold 100000) for 120 s".into(),
        details: json!({"current_value": 2_000_000, "threshold": 100_000,
                        "duration_seconds": 120}),
    };
    let id = mon::open_alert(&c, &alert).await.unwrap().expect("opened");
    assert_eq!(
        mon::open_alert(&c, &alert).await.unwrap(),
        None,
        "no duplicate"
    );
    // Acknowledged still counts as active.
    c.execute(
        "UPDATE alert_records SET status = 'ACKNOWLEDGED', acknowledged_by = 'ops' \
         WHERE alert_id = $1",
        &[&id],
    )
    .await
    .unwrap();
    assert_eq!(mon::open_alert(&c, &alert).await.unwrap(), None);
    let failed = NewAlert {
        alert_type: AlertType::ConnectorFailed,
        ..alert.clone()
    };
    mon::open_alert(&c, &failed)
        .await
        .unwrap()
        .expect("another type");
    let mut active = mon::active_alerts(&c, &[task]).await.unwrap();
    active.sort();
    assert_eq!(
        active,
        vec![
            (task, AlertType::HighLag),
            (task, AlertType::ConnectorFailed)
        ]
    );
    let r = c
        .query_one(
            "SELECT alert_level, length(alert_title), alert_details, status, created_by \
             FROM alert_records WHERE alert_id = $1",
            &[&id],
        )
        .await
        .unwrap();
    assert_eq!(r.get::<_, String>(0), "P1");
    assert_eq!(r.get::<_, i32>(1), 300);
    assert_eq!(r.get::<_, Json>(2)["duration_seconds"], json!(120));
    assert_eq!(r.get::<_, String>(4), "dbsync");

    assert!(mon::resolve_alert(
        &c,
        task,
        AlertType::HighLag,
        "lag back under 100000 for 60 s"
    )
    .await
    .unwrap());
    assert!(!mon::resolve_alert(&c, task, AlertType::HighLag, "again")
        .await
        .unwrap());
    let r = c
        .query_one(
            "SELECT status, resolved_by, resolved_at IS NOT NULL, resolution_note \
             FROM alert_records WHERE alert_id = $1",
            &[&id],
        )
        .await
        .unwrap();
    assert_eq!(r.get::<_, String>(0), "RESOLVED");
    assert_eq!(r.get::<_, String>(1), "dbsync");
    assert!(r.get::<_, bool>(2));
    assert_eq!(r.get::<_, String>(3), "lag back under 100000 for 60 s");
    assert_eq!(
        mon::active_alerts(&c, &[task]).await.unwrap(),
        vec![(task, AlertType::ConnectorFailed)]
    );
    // Once resolved, the condition coming back opens a new alert.
    let again = mon::open_alert(&c, &alert)
        .await
        .unwrap()
        .expect("reopened");
    assert_ne!(again, id);
}

async fn read(c: &Client, task: Uuid) -> (String, i64, Option<DateTime<Utc>>, DateTime<Utc>) {
    let r = c
        .query_one(
            "SELECT health_status, total_records_synced, last_sync_time, updated_at \
             FROM sync_tasks WHERE task_id = $1",
            &[&task],
        )
        .await
        .unwrap();
    (r.get(0), r.get(1), r.get(2), r.get(3))
}

fn month_add(t: DateTime<Utc>, months: i32) -> (i32, u32) {
    let total = t.year() * 12 + t.month0() as i32 + months;
    (total.div_euclid(12), total.rem_euclid(12) as u32 + 1)
}

#[tokio::test]
async fn housekeeping_creates_partitions_ahead_and_drops_expired_ones_under_a_lock() {
    let (pg, c, task) = setup().await;
    let now = Utc::now();
    // A partition 5 months back, with a row in it.
    let (y, m) = month_add(now, -5);
    let (y2, m2) = month_add(now, -4);
    let old = format!("sync_metrics_{y:04}{m:02}");
    c.batch_execute(&format!(
        "CREATE TABLE {old} PARTITION OF sync_metrics FOR VALUES \
         FROM ('{y:04}-{m:02}-01 00:00:00+00') TO ('{y2:04}-{m2:02}-01 00:00:00+00')"
    ))
    .await
    .unwrap();
    let old_at = Utc.with_ymd_and_hms(y, m, 10, 0, 0, 0).unwrap();
    let mut c = c;
    mon::insert_metrics(
        &mut c,
        TimeWindow::OneMin,
        &[MetricRow {
            task_id: task,
            metric_type: MetricType::Cpu,
            value: json!({"percent": 1.0, "scope": "process"}),
            recorded_at: old_at,
        }],
    )
    .await
    .unwrap();
    // The partition 3 months ahead is missing (dropped here), an audit row is too old.
    let (ya, ma) = month_add(now, 3);
    let ahead = format!("sync_metrics_{ya:04}{ma:02}");
    c.batch_execute(&format!("DROP TABLE {ahead}"))
        .await
        .unwrap();
    let stale = now - Duration::days(AUDIT_RETENTION_DAYS + 3);
    c.execute(
        "INSERT INTO audit_logs (operation_type, resource_type, operator, operated_at) \
         VALUES ('UPDATE_TASK', 'TASK', 'ops', $1), ('UPDATE_TASK', 'TASK', 'ops', now())",
        &[&stale],
    )
    .await
    .unwrap();

    // Another daemon holds the lock: this one skips.
    let other = pg.connect("meta").await;
    let got: bool = other
        .query_one(
            "SELECT pg_try_advisory_lock($1)",
            &[&mon::HOUSEKEEPING_LOCK],
        )
        .await
        .unwrap()
        .get(0);
    assert!(got);
    assert_eq!(mon::housekeeping_on(&c, now, 3).await.unwrap(), None);
    other
        .execute("SELECT pg_advisory_unlock($1)", &[&mon::HOUSEKEEPING_LOCK])
        .await
        .unwrap();

    // Through the pool's settings, on a connection of its own.
    let db = metastore::meta::MetaDb::with_pg_config(
        pg.conn_str("meta").parse().unwrap(),
        &engine::config::PoolConfig::default(),
    );
    let report = mon::housekeeping(&db, now, 3)
        .await
        .unwrap()
        .expect("lock free");
    assert_eq!(report.partitions_created, vec![ahead.clone()]);
    assert_eq!(report.retention.dropped_partitions, vec![old.clone()]);
    assert_eq!(report.retention.audit_rows_deleted, 1);
    let exists = |name: String| {
        let c = &c;
        async move {
            c.query_one("SELECT to_regclass($1) IS NOT NULL", &[&name])
                .await
                .unwrap()
                .get::<_, bool>(0)
        }
    };
    assert!(!exists(old).await);
    assert!(exists(ahead).await);
    let rows: i64 = c
        .query_one("SELECT count(*) FROM sync_metrics", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 0, "the old row went with its partition");
    // The lock was released: the next run (nothing to do) gets it again.
    let again = mon::housekeeping_on(&c, now, 3).await.unwrap().unwrap();
    assert!(again.partitions_created.is_empty());
    assert!(again.retention.dropped_partitions.is_empty());
}
