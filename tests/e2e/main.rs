//! End-to-end tests: the real `dbsync` binary between two private PostgreSQL
//! servers started by the test itself.

mod cli;
mod fleet;
mod fleet_cli;
mod harness;
mod mapping;
mod mysql_pairs;
mod mysql_source;
mod observability;
mod reload;
mod service;

use std::time::{Duration, Instant};

use harness::{digest, wait_converged, wait_log, wait_table, Env};

const T: Duration = Duration::from_secs(90);

const ORDERS: &str = "CREATE TABLE public.orders (
    id bigint PRIMARY KEY, name text, price numeric(10,2), qty integer, ts timestamptz DEFAULT now())";

async fn writer(env_src: tokio_postgres::Client, start_id: i64, txns: i64, per_txn: i64) {
    let mut id = start_id;
    for t in 0..txns {
        let mut sql = String::from("BEGIN;");
        for _ in 0..per_txn {
            sql.push_str(&format!(
                "INSERT INTO orders(id, name, price, qty) VALUES ({id}, 'n{id}', {}.{:02}, {});",
                id % 1000,
                id % 100,
                id % 7
            ));
            id += 1;
        }
        // Touch older rows too: updates and deletes that may hit copied or not-yet-copied rows.
        sql.push_str(&format!(
            "UPDATE orders SET qty = qty + 1, name = name || 'u' WHERE id % 97 = {};",
            t % 97
        ));
        sql.push_str(&format!("DELETE FROM orders WHERE id % 211 = {};", t % 211));
        sql.push_str("COMMIT;");
        env_src.batch_execute(&sql).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_hands_over_to_the_stream_under_concurrent_writes() {
    let env = Env::new().await;
    let src = env.source().await;
    src.batch_execute(ORDERS).await.unwrap();
    src.batch_execute(
        "INSERT INTO orders(id, name, price, qty) SELECT g, 'n' || g, g % 1000, g % 7 FROM generate_series(1, 30000) g",
    )
    .await
    .unwrap();
    let cfg = env.write_config("FULL_INCREMENTAL", "", &["public.orders"]);
    let w = tokio::spawn(writer(env.source().await, 1_000_000, 300, 20));
    let d = env.spawn(&cfg);
    w.await.unwrap();
    wait_converged(&env, "orders", "id", T).await;
    // More changes after the handover are streamed too.
    writer(env.source().await, 2_000_000, 20, 5).await;
    wait_converged(&env, "orders", "id", T).await;
    assert_eq!(d.terminate(), Some(0), "clean exit on SIGTERM");
}

const TYPES: &str = r#"CREATE TABLE public.types_t (
    id int PRIMARY KEY, c_small smallint, c_int integer, c_big bigint, c_num numeric, c_num2 numeric(12,4),
    c_real real, c_double double precision, c_bool boolean, c_text text, c_varchar varchar(20), c_char char(5),
    c_bytea bytea, c_date date, c_time time, c_ts timestamp, c_ts3 timestamp(3), c_tstz timestamptz,
    c_interval interval, c_uuid uuid, c_json json, c_jsonb jsonb, c_int_arr integer[], c_text_arr text[],
    c_num_arr numeric[], c_ts_arr timestamptz[], c_2d int[][])"#;

fn type_rows(base: i32) -> String {
    format!(
        r#"INSERT INTO types_t VALUES
 ({a}, -32768, -2147483648, -9223372036854775808, 123456789012345678901234567890.123456789, -1.5,
  3.4028235e38, 1.7976931348623157e308, true, E'tab\there\nnewline \\ backslash ''quote'' ünïcödé 😀', 'varchar', 'ab',
  '\x00ff10'::bytea, '2024-02-29', '23:59:59.999999', '1999-12-31 23:59:59.123456', '2001-01-01 00:00:00.123',
  '2024-06-01 12:00:00.5+02', '-1 years -2 mons +3 days -04:05:06.7', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
  '{{"b": 1,  "a": [1, 2]}}', '{{"b": 1, "a": [1, 2]}}', '{{1,NULL,3}}', '{{"a,b","c\"d","",NULL,"NULL"}}',
  '{{1.5,NaN,-0.001}}', '{{"2024-01-01 00:00:00+00","infinity"}}', '{{{{1,2}},{{3,4}}}}'),
 ({b}, 32767, 2147483647, 9223372036854775807, 'NaN', 0, 'NaN', '-Infinity', false, '', '', '',
  '\x'::bytea, 'infinity', '00:00:00', '-infinity', '4713-01-01 00:00:00 BC', '1970-01-01 00:00:00+00',
  '0 seconds', '00000000-0000-0000-0000-000000000000', 'null', '[]', '{{}}', '{{}}', '{{}}', '{{}}', '{{}}'),
 ({c}, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
 ({d}, 0, 0, 0, 0.000000000000000000001, 99999999.9999, -0, 1e-300, true, repeat('x', 100000), 'x', 'x',
  decode(repeat('ab', 50000), 'hex'), '0001-01-01', '12:00', '2262-04-11 23:47:16.854775', '2000-01-01', 'epoch',
  '1 mon 1 day 00:00:00.000001', 'ffffffff-ffff-ffff-ffff-ffffffffffff', '"s"', '{{"k": "v\u00e9"}}', '{{-1}}',
  '{{"with space"," lead"}}', '{{1e20}}', '{{NULL}}', '{{{{NULL,1}},{{2,NULL}}}}')"#,
        a = base,
        b = base + 1,
        c = base + 2,
        d = base + 3
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_type_round_trips_through_snapshot_and_stream() {
    let env = Env::new().await;
    let src = env.source().await;
    src.batch_execute(TYPES).await.unwrap();
    src.batch_execute(&type_rows(1)).await.unwrap(); // snapshot path
    let cfg = env.write_config("FULL_INCREMENTAL", "", &[]);
    let d = env.spawn(&cfg);
    wait_converged(&env, "types_t", "id", T).await;
    src.batch_execute(&type_rows(101)).await.unwrap(); // stream path
    wait_converged(&env, "types_t", "id", T).await;
    // The same values arrived by both paths: compare row 1 with row 101 in the target.
    let dst = env.target().await;
    for (a, b) in [(1, 101), (2, 102), (3, 103), (4, 104)] {
        let same: bool = dst
            .query_one(
                "SELECT (SELECT (x.*)::text FROM types_t x WHERE id = $1) IS NOT DISTINCT FROM
                        replace((SELECT (x.*)::text FROM types_t x WHERE id = $2), '(' || $2::text || ',', '(' || $1::text || ',')",
                &[&a, &b],
            )
            .await
            .unwrap()
            .get(0);
        assert!(
            same,
            "row {a} (snapshot) and row {b} (stream) differ in the target"
        );
    }
    // Target column types are the source's own.
    let ty: String = dst
        .query_one(
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = 'types_t'::regclass AND attname = 'c_num2'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(ty, "numeric(12,4)");
    drop(d);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_mid_stream_then_restart_loses_nothing() {
    let env = Env::new().await;
    let src = env.source().await;
    src.batch_execute(ORDERS).await.unwrap();
    let cfg = env.write_config("FULL_INCREMENTAL", "batch_size = 500", &["public.orders"]);
    let mut d = env.spawn(&cfg);
    wait_log(&env, "streaming changes", T).await;
    let w = tokio::spawn(writer(env.source().await, 1, 400, 50));
    let dst = env.target().await;
    // The target table appears with the first streamed rows: wait for it
    // before reading it.
    wait_table(&env, &dst, "orders", T).await;
    for round in 0..3 {
        // Let some changes land, then kill without warning.
        let before = digest(&dst, "orders", "id").await.0;
        let start = Instant::now();
        while digest(&dst, "orders", "id").await.0 <= before && start.elapsed() < T {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(Duration::from_millis(150 * (round + 1))).await;
        d.kill9();
        d = env.spawn(&cfg);
    }
    w.await.unwrap();
    wait_converged(&env, "orders", "id", T).await;
    drop(d);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_mid_snapshot_resumes_from_the_last_chunk() {
    let env = Env::new().await;
    let src = env.source().await;
    src.batch_execute(ORDERS).await.unwrap();
    src.batch_execute(
        "INSERT INTO orders(id, name, price, qty) SELECT g, repeat('n', 200) || g, g % 1000, g % 7 FROM generate_series(1, 200000) g",
    )
    .await
    .unwrap();
    let cfg = env.write_config("FULL_INCREMENTAL", "batch_size = 1000", &["public.orders"]);
    let d = env.spawn(&cfg);
    let dst = env.target().await;
    let start = Instant::now();
    loop {
        let copied = dst
            .query_one("SELECT count(*) FROM orders", &[])
            .await
            .map(|r| r.get::<_, i64>(0))
            .unwrap_or(0);
        if copied >= 5000 {
            assert!(
                copied < 200000,
                "the snapshot finished before it could be interrupted"
            );
            break;
        }
        assert!(
            start.elapsed() < T,
            "snapshot never started:\n{}",
            env.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    d.kill9();
    // The source keeps changing while dbsync is down.
    writer(env.source().await, 500_000, 50, 10).await;
    let d = env.spawn(&cfg);
    wait_converged(&env, "orders", "id", T).await;
    let log = env.log();
    assert!(log.contains("resuming an interrupted snapshot"), "{log}");
    drop(d);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_row_transaction_replicates_in_bounded_memory_and_atomically() {
    let env = Env::new().await;
    let src = env.source().await;
    src.batch_execute("CREATE TABLE big (id int PRIMARY KEY, v text)")
        .await
        .unwrap();
    let cfg = env.write_config("FULL_INCREMENTAL", "", &[]);
    let d = env.spawn(&cfg);
    wait_log(&env, "streaming changes", T).await;
    src.batch_execute("INSERT INTO big SELECT g, md5(g::text) FROM generate_series(1, 1000000) g")
        .await
        .unwrap();
    let dst = env.target().await;
    let start = Instant::now();
    loop {
        let n: i64 = dst
            .query_one("SELECT count(*) FROM big", &[])
            .await
            .map(|r| r.get(0))
            .unwrap_or(0);
        assert!(
            n == 0 || n == 1_000_000,
            "transaction half-visible in the target: {n} rows"
        );
        if n == 1_000_000 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "not replicated:\n{}",
            env.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    wait_converged(&env, "big", "id", T).await;
    let peak_mib = d.peak_rss_kib() / 1024;
    eprintln!("dbsync peak RSS for a 1M-row transaction: {peak_mib} MiB");
    assert!(
        peak_mib < 256,
        "peak RSS {peak_mib} MiB is not bounded under 256 MiB"
    );
    drop(d);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn toast_values_survive_updates_of_other_columns() {
    let env = Env::new().await;
    let src = env.source().await;
    src.batch_execute("CREATE TABLE docs (id int PRIMARY KEY, title text, body text, tags text[])")
        .await
        .unwrap();
    let cfg = env.write_config("FULL_INCREMENTAL", "", &[]);
    let d = env.spawn(&cfg);
    wait_log(&env, "streaming changes", T).await;
    // Incompressible, so it is stored out of line (TOAST).
    src.batch_execute(
        "INSERT INTO docs SELECT g.g, 't', (SELECT string_agg(md5(random()::text || g.g || s), '') FROM generate_series(1, 4000) s),
                ARRAY(SELECT md5(random()::text || g.g || s) FROM generate_series(1, 1000) s) FROM generate_series(1, 3) g",
    )
    .await
    .unwrap();
    wait_converged(&env, "docs", "id", T).await;
    src.batch_execute("UPDATE docs SET title = 'changed' WHERE id = 1")
        .await
        .unwrap();
    src.batch_execute("BEGIN; UPDATE docs SET title = 'a' WHERE id = 2; UPDATE docs SET title = 'b' WHERE id = 2; COMMIT")
        .await
        .unwrap();
    src.batch_execute("UPDATE docs SET id = 30, title = 'moved' WHERE id = 3")
        .await
        .unwrap();
    wait_converged(&env, "docs", "id", T).await;
    let dst = env.target().await;
    let len: i32 = dst
        .query_one("SELECT length(body) FROM docs WHERE id = 1", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(len, 128_000);
    drop(d);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolled_back_transaction_leaves_no_trace() {
    let env = Env::new().await;
    let src = env.source().await;
    src.batch_execute(ORDERS).await.unwrap();
    let cfg = env.write_config("FULL_INCREMENTAL", "", &[]);
    let d = env.spawn(&cfg);
    wait_log(&env, "streaming changes", T).await;
    src.batch_execute("BEGIN; INSERT INTO orders(id, name) SELECT g, 'gone' FROM generate_series(1, 1000) g; ROLLBACK")
        .await
        .unwrap();
    src.batch_execute("INSERT INTO orders(id, name) VALUES (5000, 'kept')")
        .await
        .unwrap();
    wait_converged(&env, "orders", "id", T).await;
    let n: i64 = env
        .target()
        .await
        .query_one("SELECT count(*) FROM orders WHERE name = 'gone'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0);
    drop(d);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_only_copies_then_completes_and_leaves_no_slot() {
    let env = Env::new().await;
    let src = env.source().await;
    src.batch_execute(ORDERS).await.unwrap();
    src.batch_execute("INSERT INTO orders(id, name) SELECT g, 'x' FROM generate_series(1, 5000) g")
        .await
        .unwrap();
    let cfg = env.write_config("FULL_ONLY", "", &[]);
    let d = env.spawn(&cfg);
    assert_eq!(
        d.wait_exit(T),
        Some(0),
        "FULL_ONLY ends by itself:\n{}",
        env.log()
    );
    wait_converged(&env, "orders", "id", T).await;
    let slots: i64 = src
        .query_one("SELECT count(*) FROM pg_replication_slots", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(slots, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_tables_still_advance_the_slot() {
    let env = Env::new().await;
    let src = env.source().await;
    src.batch_execute(ORDERS).await.unwrap();
    src.batch_execute("CREATE TABLE unrelated (id int PRIMARY KEY, v text)")
        .await
        .unwrap();
    let cfg = env.write_config("FULL_INCREMENTAL", "", &["public.orders"]);
    let d = env.spawn(&cfg);
    wait_log(&env, "streaming changes", T).await;
    // WAL moves on, but nothing for our publication.
    src.batch_execute(
        "INSERT INTO unrelated SELECT g, md5(g::text) FROM generate_series(1, 20000) g",
    )
    .await
    .unwrap();
    let target: String = src
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .await
        .unwrap()
        .get(0);
    let start = Instant::now();
    loop {
        let advanced: bool = src
            .query_one(
                "SELECT confirmed_flush_lsn >= $1::text::pg_lsn FROM pg_replication_slots WHERE slot_name = 'dbsync_t1'",
                &[&target],
            )
            .await
            .unwrap()
            .get(0);
        if advanced {
            break;
        }
        assert!(
            start.elapsed() < T,
            "slot never advanced past {target}:\n{}",
            env.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(d);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incremental_only_streams_from_now_without_copying() {
    let env = Env::new().await;
    let src = env.source().await;
    src.batch_execute(ORDERS).await.unwrap();
    src.batch_execute(
        "INSERT INTO orders(id, name) SELECT g, 'old' FROM generate_series(1, 100) g",
    )
    .await
    .unwrap();
    let dst = env.target().await;
    // The target already has the history (e.g. restored from a dump).
    dst.batch_execute(ORDERS).await.unwrap();
    dst.batch_execute(
        "INSERT INTO orders(id, name) SELECT g, 'old' FROM generate_series(1, 100) g",
    )
    .await
    .unwrap();
    let cfg = env.write_config("INCREMENTAL_ONLY", "", &["public.orders"]);
    let d = env.spawn(&cfg);
    wait_log(&env, "streaming changes", T).await;
    src.batch_execute("UPDATE orders SET name = 'new' WHERE id <= 10; DELETE FROM orders WHERE id > 90; INSERT INTO orders(id, name) VALUES (1000, 'n')")
        .await
        .unwrap();
    // Target columns keep their default ts; compare the replicated columns.
    let start = Instant::now();
    loop {
        let q = "SELECT count(*), string_agg(id || name, ',' ORDER BY id) FROM orders";
        let s = src.query_one(q, &[]).await.unwrap();
        let t = dst.query_one(q, &[]).await.unwrap();
        if s.get::<_, i64>(0) == t.get::<_, i64>(0)
            && s.get::<_, String>(1) == t.get::<_, String>(1)
        {
            break;
        }
        assert!(start.elapsed() < T, "not converged:\n{}", env.log());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        !env.log().contains("table copied"),
        "INCREMENTAL_ONLY must not copy"
    );
    drop(d);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_and_a_restart_continues_where_it_stopped() {
    let env = Env::new().await;
    let src = env.source().await;
    src.batch_execute(ORDERS).await.unwrap();
    let cfg = env.write_config("FULL_INCREMENTAL", "", &["public.orders"]);
    let d = env.spawn(&cfg);
    wait_log(&env, "streaming changes", T).await;
    let w = tokio::spawn(writer(env.source().await, 1, 100, 20));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        d.terminate(),
        Some(0),
        "clean exit on SIGTERM:\n{}",
        env.log()
    );
    w.await.unwrap();
    // Changes made while dbsync was down are picked up from the slot.
    let d = env.spawn(&cfg);
    wait_converged(&env, "orders", "id", T).await;
    assert!(!env.log().contains("resuming an interrupted snapshot"));
    assert_eq!(
        env.log().matches("table copied").count(),
        1,
        "no second copy after a clean stop"
    );
    drop(d);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_stop_reports_the_final_position_to_the_slot() {
    let env = Env::new().await;
    let src = env.source().await;
    src.batch_execute(ORDERS).await.unwrap();
    let cfg = env.write_config("FULL_INCREMENTAL", "", &["public.orders"]);
    let d = env.spawn(&cfg);
    wait_log(&env, "streaming changes", T).await;
    src.batch_execute("INSERT INTO orders(id, name) VALUES (1, 'last')")
        .await
        .unwrap();
    let after_commit: String = src
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .await
        .unwrap()
        .get(0);
    wait_converged(&env, "orders", "id", T).await;
    assert_eq!(d.terminate(), Some(0));
    let confirmed: bool = src
        .query_one(
            "SELECT confirmed_flush_lsn >= $1::text::pg_lsn FROM pg_replication_slots WHERE slot_name = 'dbsync_t1'",
            &[&after_commit],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        confirmed,
        "the slot was not told the final position on stop:\n{}",
        env.log()
    );
}
