//! Fleet mode end to end: tasks from the metadata database, status changes,
//! failure isolation, quotas, schedules, two daemons with failover, the
//! offsets mirror and secrets kept out of logs.

mod env;
mod operator;

use std::time::{Duration, Instant};

use env::{table_digest, wait_for, wait_same, FleetEnv, PASSWORD};
use serde_json::json;
use uuid::Uuid;

const T: Duration = Duration::from_secs(90);
const ORDERS: &str = "CREATE TABLE public.orders (id bigint PRIMARY KEY, name text, qty int)";

async fn insert(env: &FleetEnv, from: i64, to: i64) {
    env.source()
        .await
        .batch_execute(&format!(
            "INSERT INTO orders SELECT g, 'n' || g, g % 7 FROM generate_series({from}, {to}) g"
        ))
        .await
        .unwrap();
}

async fn wait_owner(env: &FleetEnv, task: Uuid, want: Option<&str>) {
    wait_for(env, &format!("lease owner {want:?}"), T, || async {
        (env.owner(task).await.as_deref() == want).then_some(())
    })
    .await
}

async fn wait_status(env: &FleetEnv, task: Uuid, want: &str) {
    wait_for(env, &format!("task status {want}"), T, || async {
        (env.task_field::<String>(task, "status").await == want).then_some(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_follow_status_changes_and_a_failing_task_is_isolated() {
    let env = FleetEnv::new().await;
    env.source().await.batch_execute(ORDERS).await.unwrap();
    insert(&env, 1, 2000).await;
    let good = env
        .add_task(
            "default",
            "orders",
            "FULL_INCREMENTAL",
            &["orders"],
            json!({"status_interval_secs": 1}),
        )
        .await;
    // A definite failure: a source type this build cannot read.
    let bad = env
        .add_task(
            "default",
            "legacy",
            "FULL_INCREMENTAL",
            &["orders"],
            json!({}),
        )
        .await;
    env.meta()
        .await
        .execute(
            "UPDATE sync_tasks SET source_db_type = 'ORACLE' WHERE task_id = $1",
            &[&bad],
        )
        .await
        .unwrap();
    let d = env.spawn("a");
    wait_same(&env, "orders", T).await;
    wait_status(&env, bad, "FAILED").await;
    let err: String = env.task_field(bad, "last_error").await;
    assert!(err.contains("ORACLE"), "{err}");
    assert_eq!(env.task_field::<String>(good, "status").await, "RUNNING");
    assert_eq!(env.owner(good).await.as_deref(), Some("a"));
    insert(&env, 2001, 2500).await;
    wait_same(&env, "orders", T).await;

    // Pause: the daemon drains, lets the lease go and applies nothing more.
    env.set_status(good, "PAUSED").await;
    wait_owner(&env, good, None).await;
    insert(&env, 2501, 2600).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (n, _) = table_digest(&env.target().await, "orders").await.unwrap();
    assert_eq!(n, 2500, "a paused task applied changes");
    // Resume: it continues from its checkpoint (no second copy).
    env.set_status(good, "RUNNING").await;
    wait_same(&env, "orders", T).await;
    assert_eq!(
        env.log("a").matches("table copied").count(),
        1,
        "{}",
        env.log("a")
    );

    // The offsets mirror follows the checkpoint, readable as the spec says.
    let meta = env.meta().await;
    let row = meta
        .query_one(
            "SELECT source_offset, snapshot_offset, position_key IS NOT NULL FROM sync_offsets WHERE task_id = $1",
            &[&good],
        )
        .await
        .unwrap();
    let (offset, snap, keyed): (serde_json::Value, serde_json::Value, bool) =
        (row.get(0), row.get(1), row.get(2));
    assert!(offset["lsn"].is_string(), "{offset}");
    assert_eq!(snap["snapshot_completed"], true, "{snap}");
    assert!(keyed);

    env.set_status(good, "STOPPED").await;
    wait_owner(&env, good, None).await;
    assert_eq!(d.terminate(), Some(0), "{}", env.log("a"));
    let logs = env.all_logs();
    assert!(!logs.contains(PASSWORD), "a password reached the log");
    // An audit row records the daemon's FAILED.
    let audited: i64 = meta
        .query_one(
            "SELECT count(*) FROM audit_logs WHERE resource_id = $1 AND operation_type = 'FAIL_TASK'",
            &[&bad],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(audited, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_daemons_task_moves_to_another_and_resumes_from_the_mirror() {
    let env = FleetEnv::new().await;
    env.source().await.batch_execute(ORDERS).await.unwrap();
    insert(&env, 1, 5000).await;
    let task = env
        .add_task(
            "default",
            "orders",
            "FULL_INCREMENTAL",
            &["orders"],
            json!({"status_interval_secs": 1}),
        )
        .await;
    let a = env.spawn("a");
    let b = env.spawn("b");
    wait_same(&env, "orders", T).await;
    let owner = wait_for(&env, "an owner", T, || async { env.owner(task).await }).await;
    let (victim, survivor, other) = if owner == "a" {
        (a, b, "b")
    } else {
        (b, a, "a")
    };
    // Writes continue across the kill.
    let src = env.source().await;
    let writer = tokio::spawn(async move {
        for i in 0..60i64 {
            let base = 100_000 + i * 100;
            src.batch_execute(&format!(
                "BEGIN; INSERT INTO orders SELECT g, 'w', 1 FROM generate_series({base}, {}) g; \
                 UPDATE orders SET qty = qty + 1 WHERE id % 50 = {}; DELETE FROM orders WHERE id % 97 = {}; COMMIT",
                base + 99,
                i % 50,
                i % 97
            ))
            .await
            .unwrap();
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    tokio::time::sleep(Duration::from_millis(700)).await;
    let killed_at = Instant::now();
    victim.kill9();
    wait_owner(&env, task, Some(other)).await;
    let moved_after = killed_at.elapsed();
    eprintln!("task moved to daemon {other} {moved_after:?} after the kill");
    assert!(
        moved_after < Duration::from_secs(30),
        "failover took {moved_after:?}"
    );
    writer.await.unwrap();
    wait_same(&env, "orders", T).await;
    assert!(
        env.log(other).contains("resuming from the mirrored offset"),
        "the survivor had no local checkpoint and must resume from sync_offsets:\n{}",
        env.log(other)
    );
    drop(survivor);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quotas_suspension_full_only_and_schedules() {
    let env = FleetEnv::new().await;
    let src = env.source().await;
    src.batch_execute(ORDERS).await.unwrap();
    src.batch_execute("CREATE TABLE items (id bigint PRIMARY KEY, v text); INSERT INTO items SELECT g, 'v' FROM generate_series(1, 3000) g")
        .await
        .unwrap();
    env.add_tenant("small", 1, 10_000).await;
    let copy = env
        .add_task("small", "items_copy", "FULL_ONLY", &["items"], json!({}))
        .await;
    env.meta()
        .await
        .execute(
            "UPDATE sync_tasks SET schedule_config = '{\"cron\": \"* * * * *\", \"timezone\": \"UTC\"}' WHERE task_id = $1",
            &[&copy],
        )
        .await
        .unwrap();
    let over = env
        .add_task(
            "small",
            "orders",
            "INCREMENTAL_ONLY",
            &["orders"],
            json!({}),
        )
        .await;
    let other = env
        .add_task(
            "default",
            "orders2",
            "FULL_INCREMENTAL",
            &["orders"],
            json!({}),
        )
        .await;
    let d = env.spawn("a");
    wait_status(&env, over, "FAILED").await;
    let err: String = env.task_field(over, "last_error").await;
    assert!(err.contains("max_connectors"), "{err}");
    wait_status(&env, copy, "COMPLETED").await;
    wait_same(&env, "items", T).await;
    wait_owner(&env, other, Some("a")).await;

    // A SUSPENDED tenant's tasks pause; ACTIVE again, they resume.
    env.meta()
        .await
        .execute(
            "UPDATE tenants SET status = 'SUSPENDED' WHERE tenant_code = 'default'",
            &[],
        )
        .await
        .unwrap();
    wait_owner(&env, other, None).await;
    env.meta()
        .await
        .execute(
            "UPDATE tenants SET status = 'ACTIVE' WHERE tenant_code = 'default'",
            &[],
        )
        .await
        .unwrap();
    wait_owner(&env, other, Some("a")).await;

    // The schedule re-runs the completed copy (next minute boundary) with a fresh offset epoch.
    env.source()
        .await
        .batch_execute("INSERT INTO items VALUES (5000, 'late')")
        .await
        .unwrap();
    wait_for(
        &env,
        "a scheduled re-run",
        Duration::from_secs(150),
        || async { (env.task_field::<i32>(copy, "offset_epoch").await >= 1).then_some(()) },
    )
    .await;
    wait_status(&env, copy, "COMPLETED").await;
    wait_same(&env, "items", T).await;
    let runs: i64 = env
        .meta()
        .await
        .query_one("SELECT count(*) FROM audit_logs WHERE resource_id = $1 AND operation_type = 'SCHEDULED_RUN'", &[&copy])
        .await
        .unwrap()
        .get(0);
    assert!(runs >= 1);

    // The monitor writes the running task's health, totals and 1MIN metric rows.
    env.source()
        .await
        .batch_execute("INSERT INTO orders VALUES (1, 'a', 1), (2, 'b', 2)")
        .await
        .unwrap();
    let meta = env.meta().await;
    let types: Vec<String> = wait_for(&env, "sync_metrics rows", Duration::from_secs(150), || async {
        let rows = meta
            .query(
                "SELECT DISTINCT metric_type FROM sync_metrics WHERE task_id = $1 AND time_window = '1MIN' ORDER BY 1",
                &[&other],
            )
            .await
            .unwrap();
        let t: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
        (t.len() == 6).then_some(t)
    })
    .await;
    assert_eq!(
        types,
        [
            "CPU",
            "ERROR_RATE",
            "LAG",
            "LATENCY",
            "MEMORY",
            "THROUGHPUT"
        ]
    );
    wait_for(
        &env,
        "health and totals",
        Duration::from_secs(150),
        || async {
            let health: String = env.task_field(other, "health_status").await;
            let total: i64 = env.task_field(other, "total_records_synced").await;
            (health == "HEALTHY" && total >= 2).then_some(())
        },
    )
    .await;
    // Per-mapping totals follow (table_mappings.total_rows_synced, last_sync_time).
    wait_for(&env, "mapping statistics", Duration::from_secs(150), || async {
        let row = meta
            .query_one(
                "SELECT total_rows_synced, last_sync_time IS NOT NULL FROM table_mappings WHERE task_id = $1",
                &[&other],
            )
            .await
            .unwrap();
        (row.get::<_, i64>(0) >= 2 && row.get::<_, bool>(1)).then_some(())
    })
    .await;
    assert_eq!(d.terminate(), Some(0), "{}", env.log("a"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tenant_rate_limit_paces_the_stream() {
    let env = FleetEnv::new().await;
    env.source().await.batch_execute(ORDERS).await.unwrap();
    env.add_tenant("slow", 10, 1500).await;
    env.add_task(
        "slow",
        "orders",
        "FULL_INCREMENTAL",
        &["orders"],
        json!({"batch_size": 500}),
    )
    .await;
    let d = env.spawn("a");
    wait_for(&env, "streaming", T, || async {
        env.log("a").contains("streaming changes").then_some(())
    })
    .await;
    // 6000 rows committed at once: 1500 rows of burst, then 1500 rows/s, so they
    // cannot all land in under 3 s after the commit (a slow machine only makes it longer).
    let committed = Instant::now();
    insert(&env, 1, 6000).await;
    wait_same(&env, "orders", T).await;
    let took = committed.elapsed();
    eprintln!("6000 rows at a 1500 rows/s tenant limit took {took:?}");
    assert!(
        took >= Duration::from_millis(2900),
        "6000 rows at 1500 rows/s took only {took:?}"
    );
    drop(d);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_with_another_schema_version_is_refused() {
    let env = FleetEnv::new().await;
    env.meta()
        .await
        .execute(
            "INSERT INTO dbsync_schema_history (version, name, checksum) VALUES (99, 'future', 'x')",
            &[],
        )
        .await
        .unwrap();
    let d = env.spawn("a");
    assert_eq!(d.wait_exit(T), Some(2));
    let log = env.log("a");
    assert!(log.contains("upgrade dbsync"), "{log}");
    // `dbsync check` (the unit's ExecStartPre) says the same, with the other checks.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dbsync"))
        .args(["check", "--config"])
        .arg(env.config("a"))
        .env("DBSYNC_TEST_META_PW", PASSWORD)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("ok   ensure_metastore_reachable"), "{text}");
    assert!(text.contains("ok   ensure_metastore_writable"), "{text}");
    assert!(text.contains("ok   ensure_secret_key_readable"), "{text}");
    assert!(
        text.contains("FAIL ensure_metastore_schema") && text.contains("upgrade dbsync"),
        "{text}"
    );
}
