//! The monitoring loop against a private PostgreSQL: rows, health and totals,
//! an alert opened after its hold time and resolved, and outages (the
//! database cut off behind a proxy, then a real server restart) survived.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use engine::config::{PoolConfig, SyncMode};
use engine::metrics::{SourcePhase, SourceReporter};
use serde_json::json;
use testkit::{PgOptions, PgServer};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::*;
use crate::registry::{Registry, TaskMeta};

/// A TCP proxy to the server that can be cut off (connections refused and
/// open ones dropped), like a database host going away.
struct Proxy {
    port: u16,
    target: u16,
    handles: Arc<Mutex<Vec<AbortHandle>>>,
}

impl Proxy {
    async fn start(target: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let p = Self {
            port,
            target,
            handles: Arc::default(),
        };
        p.serve(listener);
        p
    }

    fn serve(&self, listener: TcpListener) {
        let (target, handles) = (self.target, self.handles.clone());
        let conns = handles.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let h = tokio::spawn(async move {
                    if let Ok(mut out) = TcpStream::connect(("127.0.0.1", target)).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                    }
                });
                conns.lock().unwrap().push(h.abort_handle());
            }
        });
        handles.lock().unwrap().push(accept.abort_handle());
    }

    fn down(&self) {
        for h in self.handles.lock().unwrap().drain(..) {
            h.abort();
        }
    }

    async fn up(&self) {
        let mut tries = 0;
        let listener = loop {
            match TcpListener::bind(("127.0.0.1", self.port)).await {
                Ok(l) => break l,
                Err(e) if tries < 50 => {
                    tries += 1;
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("rebinding the proxy port: {e}"),
            }
        };
        self.serve(listener);
    }
}

async fn wait_for<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = std::time::Instant::now();
    while !check().await {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn one_i64(c: &tokio_postgres::Client, sql: &str, task: Uuid) -> i64 {
    c.query_one(sql, &[&task]).await.unwrap().get(0)
}

async fn health(c: &tokio_postgres::Client, task: Uuid) -> String {
    c.query_one(
        "SELECT health_status FROM sync_tasks WHERE task_id = $1",
        &[&task],
    )
    .await
    .unwrap()
    .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_loop_writes_rows_health_and_alerts_and_survives_outages() {
    let pg = PgServer::start(PgOptions::default());
    pg.create_database("meta").await;
    let mut c = pg.connect("meta").await;
    metastore::meta::migrate(&mut c).await.unwrap();
    let config = json!({"lag_threshold": 1000, "alert_for_secs": 2, "resolve_after_secs": 2});
    let row = c
        .query_one(
            "INSERT INTO sync_tasks (tenant_id, task_name, task_code, source_db_type, \
                 target_db_type, source_connection_config, target_connection_config, alert_config) \
             SELECT tenant_id, 'orders', 'orders', 'POSTGRESQL', 'POSTGRESQL', '{}', '{}', $1 \
             FROM tenants WHERE tenant_code = 'default' RETURNING task_id, tenant_id",
            &[&config],
        )
        .await
        .unwrap();
    let task_id: Uuid = row.get(0);

    let proxy = Proxy::start(pg.port()).await;
    let mut pgc = tokio_postgres::Config::new();
    pgc.host("127.0.0.1")
        .port(proxy.port)
        .user("postgres")
        .dbname("meta")
        .connect_timeout(Duration::from_secs(1));
    let pool = PoolConfig {
        acquire_timeout_ms: 1000,
        ..PoolConfig::default()
    };
    let db = MetaDb::with_pg_config(pgc, &pool);

    let registry = Arc::new(Registry::empty());
    // A TOML task (no meta) is not the monitor's business.
    registry.add("local", SyncMode::FullIncremental, None);
    let entry = registry.add(
        "orders",
        SyncMode::FullIncremental,
        Some(TaskMeta {
            task_id,
            alert_config: config.clone(),
        }),
    );
    entry.starting();
    entry.stats.live.advance(SourcePhase::Streaming);
    let reporter = SourceReporter::new("orders", entry.stats.live.clone());
    reporter.source_lag_bytes(0);
    let commit = |rows: u64| {
        let now = Utc::now().timestamp_micros();
        entry.stats.rows_applied.fetch_add(rows, Relaxed);
        entry.stats.latency.record_between_us(now - 20_000, now);
        entry.stats.last_target_commit_us.store(now, Relaxed);
    };
    commit(100);

    let stop = CancellationToken::new();
    let opts = Options {
        period: Duration::from_secs(1),
        housekeeping_every: Duration::from_secs(3600),
    };
    let handle = tokio::spawn(run_with(db, registry.clone(), stop.clone(), opts));

    // Rows of every type, totals and health.
    let total = "SELECT total_records_synced FROM sync_tasks WHERE task_id = $1";
    wait_for("the first window", Duration::from_secs(15), || async {
        one_i64(&c, total, task_id).await == 100
    })
    .await;
    let r = c
        .query_one(
            "SELECT count(DISTINCT metric_type), bool_and(time_window = '1MIN'), \
                 count(*) FILTER (WHERE metric_type = 'LATENCY' \
                     AND (metric_value ->> 'samples')::int = 1) \
             FROM sync_metrics WHERE task_id = $1",
            &[&task_id],
        )
        .await
        .unwrap();
    assert_eq!(r.get::<_, i64>(0), 6);
    assert!(r.get::<_, bool>(1));
    assert_eq!(r.get::<_, i64>(2), 1, "one window saw the commit");
    assert_eq!(health(&c, task_id).await, "HEALTHY");
    let synced: Option<chrono::DateTime<Utc>> = c
        .query_one(
            "SELECT last_sync_time FROM sync_tasks WHERE task_id = $1",
            &[&task_id],
        )
        .await
        .unwrap()
        .get(0);
    assert!(synced.is_some());

    // Lag over the threshold: DEGRADED, and an alert once it held 2 s.
    let lag_alerts = "SELECT count(*) FROM alert_records \
                      WHERE task_id = $1 AND alert_type = 'HIGH_LAG'";
    let lag_started = std::time::Instant::now();
    reporter.source_lag_bytes(5000);
    wait_for("HIGH_LAG", Duration::from_secs(15), || async {
        one_i64(&c, lag_alerts, task_id).await == 1
    })
    .await;
    assert!(
        lag_started.elapsed() >= Duration::from_secs(2),
        "opened before the hold time"
    );
    assert_eq!(health(&c, task_id).await, "DEGRADED");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(one_i64(&c, lag_alerts, task_id).await, 1, "no duplicate");
    let r = c
        .query_one(
            "SELECT alert_level, status, alert_details FROM alert_records \
             WHERE task_id = $1 AND alert_type = 'HIGH_LAG'",
            &[&task_id],
        )
        .await
        .unwrap();
    assert_eq!(r.get::<_, String>(0), "P1");
    assert_eq!(r.get::<_, String>(1), "OPEN");
    let details: serde_json::Value = r.get(2);
    assert_eq!(details["current_value"], json!(5000.0));
    assert_eq!(details["threshold"], json!(1000.0));
    assert!(details["duration_seconds"].as_u64().unwrap() >= 2);

    // Back under the threshold: resolved by the daemon.
    reporter.source_lag_bytes(0);
    let resolved = "SELECT count(*) FROM alert_records WHERE task_id = $1 \
                    AND alert_type = 'HIGH_LAG' AND status = 'RESOLVED' \
                    AND resolved_by = 'dbsync' AND resolved_at IS NOT NULL";
    wait_for("HIGH_LAG resolved", Duration::from_secs(15), || async {
        one_i64(&c, resolved, task_id).await == 1
    })
    .await;
    assert_eq!(health(&c, task_id).await, "HEALTHY");

    // The database goes away: the loop goes on, nothing waits for it.
    proxy.down();
    let outage_start = Utc::now();
    commit(50);
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(!handle.is_finished(), "the loop survives the outage");
    commit(10);
    let outage_end = Utc::now();
    assert_eq!(entry.stats.rows_applied.load(Relaxed), 160);
    proxy.up().await;
    wait_for(
        "the windows kept during the outage",
        Duration::from_secs(20),
        || async { one_i64(&c, total, task_id).await == 160 },
    )
    .await;
    let during: i64 = c
        .query_one(
            "SELECT count(*) FROM sync_metrics WHERE task_id = $1 \
             AND recorded_at >= $2 AND recorded_at < $3",
            &[&task_id, &outage_start, &outage_end],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        during >= 12,
        "windows of the outage written later: {during}"
    );
    let dup: i64 = c
        .query_one(
            "SELECT count(*) FROM (SELECT 1 FROM sync_metrics WHERE task_id = $1 \
             GROUP BY metric_type, time_window, recorded_at HAVING count(*) > 1) d",
            &[&task_id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(dup, 0, "no window written twice");

    // A real server restart breaks every pooled connection: replaced.
    drop(c);
    let pg = tokio::task::spawn_blocking(move || {
        pg.restart();
        pg
    })
    .await
    .unwrap();
    let c = pg.connect("meta").await;
    commit(5);
    wait_for(
        "rows after a server restart",
        Duration::from_secs(20),
        || async { one_i64(&c, total, task_id).await == 165 },
    )
    .await;

    // On stop, the window in progress is written too.
    commit(7);
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(10), handle)
        .await
        .expect("the loop stops promptly")
        .unwrap();
    assert_eq!(one_i64(&c, total, task_id).await, 172);
}

#[test]
fn windows_align_on_the_period_and_rollups_cover_closed_windows_once() {
    use chrono::TimeZone;
    let t = Utc.with_ymd_and_hms(2026, 11, 22, 10, 7, 30).unwrap();
    let minute = Duration::from_secs(60);
    assert_eq!(until_next_boundary(t, minute), Duration::from_secs(30));
    assert_eq!(
        window_start(t, minute),
        Utc.with_ymd_and_hms(2026, 11, 22, 10, 6, 0).unwrap()
    );
    let at = |h, m| Utc.with_ymd_and_hms(2026, 11, 22, h, m, 0).unwrap();
    // Start-up: the last two closed windows.
    assert_eq!(
        rollup_range(TimeWindow::FiveMin, None, t),
        Some((at(9, 55), at(10, 5)))
    );
    // Nothing closed since the last roll-up.
    assert_eq!(rollup_range(TimeWindow::FiveMin, Some(at(10, 5)), t), None);
    // After an outage: from where it stopped.
    assert_eq!(
        rollup_range(TimeWindow::FiveMin, Some(at(9, 20)), t),
        Some((at(9, 20), at(10, 5)))
    );
    // A very long gap is capped.
    let (from, _) = rollup_range(
        TimeWindow::OneHour,
        Some(at(0, 0) - chrono::TimeDelta::days(9)),
        t,
    )
    .unwrap();
    assert_eq!(from, at(10, 0) - MAX_CATCH_UP);
    assert_eq!(
        rollup_range(TimeWindow::OneDay, None, t),
        Some((at(0, 0) - chrono::TimeDelta::days(2), at(0, 0)))
    );
}
