//! Observability, proven against real components: a real Prometheus
//! (Debian's `prometheus` package) scrapes a dbsync replicating real data
//! between two PostgreSQL servers; every PromQL expression of the Grafana
//! dashboards and of the alerting rules is then evaluated against it and must
//! be backed by scraped series. Also: the admin endpoint (token, `/ready`,
//! `/api/tasks`), JSON logs with per-task spans, the dashboards' structure,
//! and `promtool test rules`.

mod prom;

use std::collections::{BTreeSet, HashSet};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use prom::{http_get, selectors, Prometheus};
use serde_json::Value;

use crate::harness::{wait_converged, wait_log, Env};
use crate::{writer, ORDERS, T};

const INSTALL_HINT: &str = "install Debian's prometheus package (apt-get install -y prometheus; \
     it provides prometheus and promtool; .ci/run installs it)";
const TOKEN_VAR: &str = "DBSYNC_E2E_ADMIN_TOKEN";
const TOKEN: &str = "e2e-admin-token-7f3a";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A binary from PATH; a missing one fails the test with the install hint (never skips).
fn require_binary(name: &str) -> PathBuf {
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join(name))
                .find(|p| p.is_file())
        })
        .unwrap_or_else(|| panic!("{name} not found in PATH: {INSTALL_HINT}"))
}

fn dashboards() -> Vec<(String, Value)> {
    let dir = repo().join("deploy/grafana/dashboards");
    let mut out: Vec<(String, Value)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .map(|e| {
            let text = std::fs::read_to_string(e.path()).unwrap();
            let v: Value = serde_json::from_str(&text)
                .unwrap_or_else(|err| panic!("{} is not JSON: {err}", e.path().display()));
            (e.file_name().to_string_lossy().into_owned(), v)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(out.len() >= 2, "expected the fleet and the task dashboards");
    out
}

/// Every panel, rows' nested panels included.
fn panels(dashboard: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in dashboard["panels"].as_array().into_iter().flatten() {
        out.push(p);
        out.extend(p["panels"].as_array().into_iter().flatten());
    }
    out
}

/// (where, expression) of every panel target.
fn dashboard_exprs() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (file, d) in dashboards() {
        for p in panels(&d) {
            for t in p["targets"].as_array().into_iter().flatten() {
                if let Some(e) = t["expr"].as_str() {
                    out.push((format!("{file} / {}", p["title"]), e.to_string()));
                }
            }
        }
    }
    out
}

/// (where, `label_values(selector, label)` query) of every query variable.
fn variable_queries() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (file, d) in dashboards() {
        for v in d["templating"]["list"].as_array().into_iter().flatten() {
            if v["type"] == "query" {
                let q = v["query"]["query"]
                    .as_str()
                    .or_else(|| v["query"].as_str())
                    .unwrap_or_default();
                out.push((
                    format!("{file} / ${}", v["name"].as_str().unwrap_or("?")),
                    q.to_string(),
                ));
            }
        }
    }
    out
}

#[test]
fn dashboards_are_valid_grafana_json_with_task_and_instance_variables() {
    let mut uids = HashSet::new();
    for (file, d) in dashboards() {
        let uid = d["uid"].as_str().unwrap_or_default();
        assert!(!uid.is_empty() && uid.len() <= 40, "{file}: uid {uid:?}");
        assert!(uids.insert(uid.to_string()), "{file}: uid {uid} used twice");
        assert!(
            !d["title"].as_str().unwrap_or_default().is_empty(),
            "{file}: title"
        );
        assert!(
            d["schemaVersion"].as_u64().is_some_and(|v| v >= 30),
            "{file}: schemaVersion"
        );
        assert!(
            d["id"].is_null(),
            "{file}: an exported id would clash on import"
        );
        // Template variables: the data source, then instance and task from dbsync's series.
        let vars = d["templating"]["list"].as_array().expect("templating.list");
        let var = |name: &str| {
            vars.iter()
                .find(|v| v["name"] == name)
                .unwrap_or_else(|| panic!("{file}: no ${name} variable"))
        };
        let ds = var("datasource");
        assert_eq!(ds["type"], "datasource", "{file}");
        assert_eq!(ds["query"], "prometheus", "{file}");
        for name in ["instance", "task"] {
            let v = var(name);
            assert_eq!(v["type"], "query", "{file}: ${name}");
            assert_eq!(v["datasource"]["uid"], "${datasource}", "{file}: ${name}");
            let q = v["query"]["query"].as_str().unwrap_or_default();
            assert!(
                q.starts_with("label_values(dbsync_") && q.ends_with(&format!(", {name})")),
                "{file}: ${name} query {q}"
            );
        }
        // Panels: ids unique, on the 24-column grid, not overlapping; every
        // non-row panel queries the chosen Prometheus data source.
        let mut ids = HashSet::new();
        let mut boxes: Vec<(i64, i64, i64, i64, String)> = Vec::new();
        let all = panels(&d);
        assert!(all.len() >= 10, "{file}: only {} panels", all.len());
        for p in all {
            let title = p["title"].as_str().unwrap_or_default().to_string();
            assert!(!title.is_empty(), "{file}: a panel without title");
            assert!(
                ids.insert(p["id"].as_i64().expect("panel id")),
                "{file}: id of {title} reused"
            );
            let g = &p["gridPos"];
            let (x, y, w, h) = (
                g["x"].as_i64(),
                g["y"].as_i64(),
                g["w"].as_i64(),
                g["h"].as_i64(),
            );
            let (Some(x), Some(y), Some(w), Some(h)) = (x, y, w, h) else {
                panic!("{file}: {title} has no gridPos")
            };
            assert!(
                x >= 0 && w > 0 && h > 0 && x + w <= 24,
                "{file}: {title} gridPos {g}"
            );
            for (bx, by, bw, bh, other) in &boxes {
                let overlap = x < bx + bw && *bx < x + w && y < by + bh && *by < y + h;
                assert!(!overlap, "{file}: {title} overlaps {other}");
            }
            boxes.push((x, y, w, h, title.clone()));
            if p["type"] == "row" {
                continue;
            }
            assert_eq!(p["datasource"]["type"], "prometheus", "{file}: {title}");
            assert_eq!(p["datasource"]["uid"], "${datasource}", "{file}: {title}");
            let targets = p["targets"].as_array().filter(|t| !t.is_empty());
            let targets = targets.unwrap_or_else(|| panic!("{file}: {title} has no targets"));
            let mut refs = HashSet::new();
            for t in targets {
                assert!(
                    refs.insert(t["refId"].to_string()),
                    "{file}: {title} refId reused"
                );
                assert_eq!(t["datasource"]["uid"], "${datasource}", "{file}: {title}");
                let e = t["expr"].as_str().unwrap_or_default();
                assert!(
                    e.contains("dbsync_") || e.contains("up{"),
                    "{file}: {title}: {e}"
                );
                assert!(
                    e.contains("$instance"),
                    "{file}: {title} ignores $instance: {e}"
                );
                if e.contains("{task") || e.contains(", task") {
                    assert!(e.contains("$task"), "{file}: {title}: {e}");
                }
            }
        }
    }
    let prov =
        std::fs::read_to_string(repo().join("deploy/grafana/provisioning/dashboards/dbsync.yml"))
            .expect("dashboard provisioning file");
    assert!(
        prov.contains("apiVersion: 1") && prov.contains("type: file"),
        "{prov}"
    );
}

#[test]
fn the_example_config_has_a_valid_admin_section() {
    let cfg = engine::config::Config::load(&repo().join("deploy/config/dbsync.toml"))
        .unwrap_or_else(|e| panic!("deploy/config/dbsync.toml: {e}"));
    let admin = &cfg.daemon.admin;
    assert!(admin.enabled);
    assert_eq!(
        admin.listen.to_string(),
        engine::config::DEFAULT_ADMIN_LISTEN
    );
}

#[test]
fn prometheus_rules_pass_promtool_check_and_unit_tests() {
    let promtool = require_binary("promtool");
    let dir = repo().join("deploy/prometheus");
    for args in [
        vec!["check", "rules", "dbsync-rules.yml"],
        vec!["test", "rules", "dbsync-rules.test.yml"],
        vec!["check", "config", "prometheus.yml"],
    ] {
        let out = Command::new(&promtool)
            .args(&args)
            .current_dir(&dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "promtool {}:\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The admin endpoint's address, from the daemon's JSON log.
fn admin_addr(log: &str) -> Option<String> {
    log.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["fields"]["message"] == "admin endpoint listening")
        .and_then(|v| v["fields"]["listen"].as_str().map(str::to_string))
}

async fn wait_until(what: &str, env: &Env, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(start.elapsed() < T, "{what} never happened:\n{}", env.log());
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_a_real_replication_and_every_dashboard_and_rule_expression_has_data() {
    require_binary("prometheus");
    let env = Env::new().await;
    let src = env.source().await;
    src.batch_execute(ORDERS).await.unwrap();
    src.batch_execute(
        "CREATE TABLE customers (id int PRIMARY KEY, name text);
         INSERT INTO orders(id, name, price, qty) SELECT g, 'n' || g, g % 1000, g % 7 FROM generate_series(1, 20000) g;
         INSERT INTO customers SELECT g, 'c' || g FROM generate_series(1, 2000) g",
    )
    .await
    .unwrap();
    std::env::set_var(TOKEN_VAR, TOKEN);
    let cfg = env.write_config_with_daemon(
        "FULL_INCREMENTAL",
        &format!(
            "log_format = \"json\"\n[daemon.admin]\nlisten = \"127.0.0.1:0\"\nbearer_token_env = \"{TOKEN_VAR}\"\n"
        ),
        "batch_size = 500\nqueue_chunks = 1",
        &[],
    );
    let d = env.spawn(&cfg);
    wait_log(&env, "admin endpoint listening", T).await;
    let admin = admin_addr(&env.log()).expect("the admin address in the JSON log");

    // The admin endpoint: liveness is open, everything else needs the token.
    assert_eq!(http_get(&admin, "/health", None), (200, "ok\n".into()));
    assert_eq!(http_get(&admin, "/metrics", None).0, 401);
    assert_eq!(http_get(&admin, "/api/tasks", Some("wrong")).0, 401);
    assert_eq!(http_get(&admin, "/ready", Some(&TOKEN[1..])).0, 401);
    let (status, text) = http_get(&admin, "/metrics", Some(TOKEN));
    assert_eq!(status, 200, "{text}");

    wait_converged(&env, "orders", "id", T).await;
    wait_converged(&env, "customers", "id", T).await;
    wait_until("/ready", &env, || {
        http_get(&admin, "/ready", Some(TOKEN)).0 == 200
    })
    .await;

    let prom = Prometheus::start(
        &require_binary("prometheus"),
        &admin,
        TOKEN,
        &repo().join("deploy/prometheus/dbsync-rules.yml"),
    );
    // Live changes; then a transient failure: the walsender is killed, the
    // task retries from its checkpoint and streams on.
    let w = tokio::spawn(writer(env.source().await, 1_000_000, 150, 10));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let killed: i64 = src
        .query_one(
            "SELECT count(pg_terminate_backend(active_pid)) FROM pg_replication_slots
              WHERE slot_name = 'dbsync_t1' AND active_pid IS NOT NULL",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(killed, 1, "no active walsender to kill");
    wait_log(&env, "will retry from its checkpoint", T).await;
    w.await.unwrap();
    wait_converged(&env, "orders", "id", T).await;

    // Enough scrapes after the recovery for every rate() window.
    let scraped = || prom.value(r#"count_over_time(up{job="dbsync"}[1m])"#);
    let first = Instant::now();
    wait_until("20 scrapes", &env, || {
        prom.query(r#"dbsync_errors_total{kind="source_transient"} >= 1"#)
            .is_ok_and(|r| !r.is_empty())
            && prom
                .query("dbsync_task_state == 2")
                .is_ok_and(|r| !r.is_empty())
            && scraped() >= 20.0
            && first.elapsed() > Duration::from_secs(12)
    })
    .await;
    assert_eq!(prom.value(r#"up{job="dbsync"}"#), 1.0, "{}", prom.log());

    let subst = |e: &str| {
        e.replace("$__rate_interval", "30s")
            .replace("$instance", &admin)
            .replace("$task", &env.task)
    };
    let mut failures = Vec::new();
    // 1. Every dashboard panel's expression returns series.
    let exprs = dashboard_exprs();
    assert!(
        exprs.len() >= 40,
        "only {} dashboard expressions",
        exprs.len()
    );
    for (at, e) in &exprs {
        match prom.query(&subst(e)) {
            Ok(r) if r.is_empty() => failures.push(format!("{at}: no series for {e}")),
            Ok(_) => {}
            Err(err) => failures.push(format!("{at}: {e}: {err}")),
        }
    }
    // 2. Every template variable finds this instance and task.
    for (at, q) in variable_queries() {
        let inner = q
            .strip_prefix("label_values(")
            .and_then(|r| r.strip_suffix(')'))
            .and_then(|r| r.rsplit_once(", "));
        let Some((selector, label)) = inner else {
            failures.push(format!(
                "{at}: not a label_values(selector, label) query: {q}"
            ));
            continue;
        };
        let values: BTreeSet<String> = prom
            .query(&subst(selector))
            .unwrap_or_default()
            .iter()
            .filter_map(|s| s["metric"][label].as_str().map(str::to_string))
            .collect();
        let want = if label == "task" {
            env.task.clone()
        } else {
            admin.clone()
        };
        if !values.contains(&want) {
            failures.push(format!("{at}: {q} gives {values:?}, not {want}"));
        }
    }
    // 3. Every rule is loaded, evaluates without error, and every series it
    //    reads was scraped (alert expressions themselves are empty while healthy).
    let rules = prom.api("/api/v1/rules");
    let rules: Vec<Value> = rules["data"]["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
        .collect();
    let names: BTreeSet<&str> = rules.iter().filter_map(|r| r["name"].as_str()).collect();
    for wanted in [
        "DbsyncDown",
        "DbsyncTaskFailed",
        "DbsyncHighLag",
        "DbsyncTaskStalled",
        "DbsyncSlotWalGrowing",
        "DbsyncErrorRate",
    ] {
        assert!(
            names.contains(wanted),
            "rule {wanted} not loaded: {names:?}"
        );
    }
    for r in &rules {
        let (name, q) = (
            r["name"].as_str().unwrap_or("?"),
            r["query"].as_str().unwrap_or(""),
        );
        if r["health"] != "ok" {
            failures.push(format!(
                "rule {name}: health {} {}",
                r["health"], r["lastError"]
            ));
        }
        if r["state"] == "firing" {
            failures.push(format!("rule {name} fires on a healthy replication: {r}"));
        }
        if let Err(err) = prom.query(q) {
            failures.push(format!("rule {name}: {q}: {err}"));
        }
        let sels = selectors(q);
        if sels.is_empty() {
            failures.push(format!("rule {name}: no selector found in {q}"));
        }
        for s in sels {
            if prom.query(&s).map_or(true, |r| r.is_empty()) {
                failures.push(format!("rule {name}: no series for {s} (in {q})"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} expression(s) without data:\n{}\n--- prometheus log ---\n{}",
        failures.len(),
        failures.join("\n"),
        prom.log()
    );

    // The numbers are the replication's, not placeholders.
    let v = |e: &str| prom.value(e);
    assert_eq!(
        v(r#"sum(dbsync_changes_applied_total{op="snapshot"})"#),
        22000.0
    );
    assert_eq!(v(r#"sum(dbsync_snapshot_copied_rows)"#), 22000.0);
    assert!(v(r#"dbsync_snapshot_estimated_rows{table="public.orders"}"#) > 0.0);
    assert_eq!(v("dbsync_snapshot_done_tables"), 2.0);
    assert_eq!(v("dbsync_snapshot_tables"), 2.0);
    for op in ["insert", "update", "delete"] {
        assert!(
            v(&format!(
                r#"sum(dbsync_changes_applied_total{{op="{op}"}})"#
            )) > 0.0,
            "{op}"
        );
        assert!(
            v(&format!(r#"sum(dbsync_changes_read_total{{op="{op}"}})"#)) > 0.0,
            "{op}"
        );
    }
    assert!(v(r#"dbsync_errors_total{kind="source_transient"}"#) >= 1.0);
    assert_eq!(v("dbsync_task_state"), 2.0, "streaming");
    assert_eq!(
        v("dbsync_task_health"),
        2.0,
        "DEGRADED after a recent error"
    );
    assert_eq!(
        v("sum(dbsync_open_connections)"),
        3.0,
        "source, replication, target"
    );
    assert!(v("dbsync_slot_retained_wal_bytes") > 0.0);
    assert!(v("dbsync_end_to_end_latency_seconds_count") > 0.0);
    assert!(v("dbsync_batch_rows_count") > 0.0);
    assert!(v("dbsync_rocksdb_size_bytes") > 0.0);
    assert!(v("dbsync_process_resident_memory_bytes") > 1e6);
    let blocked = v("dbsync_backpressure_wait_seconds_count");
    eprintln!("backpressure waits during the run: {blocked}");

    // /api/tasks and /ready.
    let (status, body) = http_get(&admin, "/api/tasks", Some(TOKEN));
    assert_eq!(status, 200, "{body}");
    let tasks: Value = serde_json::from_str(&body).unwrap();
    let t = &tasks[0];
    assert_eq!(t["name"], "t1", "{body}");
    assert_eq!(t["state"], "streaming", "{body}");
    assert_eq!(t["health"], "DEGRADED", "{body}");
    assert!(t["restarts"].as_u64().is_some_and(|n| n >= 1), "{body}");
    assert_eq!(t["last_error"]["kind"], "source_transient", "{body}");
    assert!(
        t["position"]["stream"]
            .as_str()
            .is_some_and(|s| s.starts_with("lsn ")),
        "{body}"
    );
    assert_eq!(t["position"]["snapshot_completed"], true, "{body}");
    assert_eq!(t["position"]["snapshot_rows_copied"], 22000, "{body}");
    assert!(
        t["lag"]["seconds"].is_number() && t["lag"]["source_bytes"].is_number(),
        "{body}"
    );
    assert!(
        !body.contains("last_key"),
        "key values must stay out of the API: {body}"
    );
    let (status, body) = http_get(&admin, "/ready", Some(TOKEN));
    assert_eq!(
        (
            status,
            serde_json::from_str::<Value>(&body).unwrap()["ready"].clone()
        ),
        (200, Value::Bool(true))
    );

    // Structured logs: every line is JSON; the source's lines carry the task span.
    let log = env.log();
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(
            v["level"].is_string() && v["fields"]["message"].is_string(),
            "{line}"
        );
    }
    let streaming = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["fields"]["message"] == "streaming changes")
        .expect("a streaming line");
    assert_eq!(streaming["span"]["task"], "t1", "{streaming}");
    assert!(!log.contains(TOKEN), "the admin token leaked into the log");

    assert_eq!(d.terminate(), Some(0), "clean exit:\n{}", env.log());
    drop(prom);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_endpoint_refuses_a_missing_token_variable_and_a_taken_port() {
    let env = Env::new().await;
    let cfg = env.write_config_with_daemon(
        "FULL_INCREMENTAL",
        "[daemon.admin]\nlisten = \"127.0.0.1:0\"\nbearer_token_env = \"DBSYNC_E2E_TOKEN_NEVER_SET\"\n",
        "",
        &[],
    );
    let code = env.spawn(&cfg).wait_exit(T);
    assert_eq!(code, Some(1), "{}", env.log());
    assert!(
        env.log().contains("DBSYNC_E2E_TOKEN_NEVER_SET"),
        "{}",
        env.log()
    );
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let cfg = env.write_config_with_daemon(
        "FULL_INCREMENTAL",
        &format!("[daemon.admin]\nlisten = \"127.0.0.1:{port}\"\n"),
        "",
        &[],
    );
    let code = env.spawn(&cfg).wait_exit(T);
    assert_eq!(code, Some(1), "{}", env.log());
    assert!(
        env.log().contains("cannot start the admin endpoint"),
        "{}",
        env.log()
    );
    // Disabled: no endpoint, replication still runs.
    let src = env.source().await;
    src.batch_execute(ORDERS).await.unwrap();
    let cfg = env.write_config_with_daemon(
        "FULL_INCREMENTAL",
        "[daemon.admin]\nenabled = false\n",
        "",
        &[],
    );
    let d = env.spawn(&cfg);
    src.batch_execute("INSERT INTO orders(id, name) VALUES (1, 'a')")
        .await
        .unwrap();
    wait_converged(&env, "orders", "id", T).await;
    assert!(
        env.log().contains("admin endpoint disabled"),
        "{}",
        env.log()
    );
    drop(d);
}
