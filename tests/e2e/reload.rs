//! SIGHUP reloads the TOML: added tasks start, changed ones restart, removed
//! ones stop, and a broken file keeps the running configuration.

use std::process::Command;
use std::time::Duration;

use crate::harness::{wait_converged, wait_log, Env};

const T: Duration = Duration::from_secs(90);

fn config(env: &Env, tasks: &[(&str, &str, &str)]) -> std::path::PathBuf {
    let mut text = format!(
        "[daemon]\ndata_dir = \"{}\"\n[daemon.admin]\nlisten = \"127.0.0.1:0\"\n",
        env.dir.path().join("data").display()
    );
    for (name, table, extra) in tasks {
        text.push_str(&format!(
            "\n[[task]]\nname = \"{name}\"\n{extra}\n[task.source]\ntype = \"postgresql\"\nurl = \"{}\"\nstatus_interval_secs = 1\n\
             [task.target]\ntype = \"postgresql\"\nurl = \"{}\"\n[[task.mapping]]\nsource = \"public.{table}\"\n",
            env.src.url("shop"),
            env.dst.url("reporting"),
        ));
    }
    let path = env.dir.path().join("dbsync.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn hup(pid: u32) {
    Command::new("kill")
        .arg("-HUP")
        .arg(pid.to_string())
        .status()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_adds_changes_and_removes_tasks() {
    let env = Env::new().await;
    let src = env.source().await;
    src.batch_execute(
        "CREATE TABLE a (id int PRIMARY KEY, v text); CREATE TABLE b (id int PRIMARY KEY, v text);
         INSERT INTO a SELECT g, 'a' FROM generate_series(1, 100) g; INSERT INTO b SELECT g, 'b' FROM generate_series(1, 100) g",
    )
    .await
    .unwrap();
    let cfg = config(&env, &[("ta", "a", "")]);
    let d = env.spawn(&cfg);
    wait_converged(&env, "a", "id", T).await;

    // Added: task tb starts.
    config(&env, &[("ta", "a", ""), ("tb", "b", "")]);
    hup(d.pid());
    wait_converged(&env, "b", "id", T).await;
    src.batch_execute("INSERT INTO b VALUES (1000, 'x')")
        .await
        .unwrap();
    wait_converged(&env, "b", "id", T).await;

    // A broken file: nothing stops.
    std::fs::write(&cfg, "[[task]]\nname = ").unwrap();
    hup(d.pid());
    wait_log(&env, "reload failed: keeping the running configuration", T).await;
    src.batch_execute("INSERT INTO a VALUES (1000, 'y')")
        .await
        .unwrap();
    wait_converged(&env, "a", "id", T).await;

    // Changed and removed: ta restarts with its new settings, tb stops.
    config(&env, &[("ta", "a", "batch_size = 77")]);
    hup(d.pid());
    wait_log(&env, "configuration changed: stopping the task", T).await;
    src.batch_execute(
        "INSERT INTO a VALUES (1001, 'z'); INSERT INTO b VALUES (1001, 'not replicated')",
    )
    .await
    .unwrap();
    wait_converged(&env, "a", "id", T).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let n: i64 = env
        .target()
        .await
        .query_one("SELECT count(*) FROM b WHERE id = 1001", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0, "a removed task still replicates");
    let log = env.log();
    assert_eq!(log.matches("SIGHUP: reloading").count(), 3, "{log}");
    assert_eq!(d.terminate(), Some(0), "{}", env.log());
}
