//! The operator's story of issue #5, through the binary only: migrate, create
//! a tenant, a task and its mapping with the CLI, watch two daemons run it,
//! pause and resume it, kill the daemon running it and see it move, and find
//! every step in the audit log.

use std::process::{Command, Output};
use std::time::Duration;

use super::env::{wait_for, wait_same, FleetEnv, PASSWORD};
use super::{insert, ORDERS, T};

fn cli(env: &FleetEnv, args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_dbsync"))
        .args(args)
        .arg("--config")
        .arg(env.config("cli"))
        .env("DBSYNC_TEST_META_PW", PASSWORD)
        .env("TASK_PW", PASSWORD)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "dbsync {args:?} failed:\n{text}");
    assert!(
        !text.contains(PASSWORD),
        "a password was printed by {args:?}"
    );
    out
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_creates_runs_pauses_and_fails_over_a_task_with_the_cli() {
    let env = FleetEnv::unmigrated().await;
    cli(&env, &["metastore", "migrate"]);
    env.source().await.batch_execute(ORDERS).await.unwrap();
    insert(&env, 1, 3000).await;
    let conn = |db: &str| {
        format!(
            r#"{{"host": "127.0.0.1", "port": {}, "database": "{db}", "username": "postgres"}}"#,
            env.pg.port()
        )
    };
    let (src, dst) = (conn("shop"), conn("reporting"));
    let op = ["--operator", "olga"];
    cli(
        &env,
        &[&["tenant", "create", "acme", "--name", "Acme"][..], &op].concat(),
    );
    cli(
        &env,
        &[
            &[
                "task",
                "create",
                "orders",
                "--tenant",
                "acme",
                "--name",
                "Orders",
                "--source-type",
                "postgresql",
                "--target-type",
                "postgresql",
                "--source-config",
                &src,
                "--target-config",
                &dst,
                "--source-password-env",
                "TASK_PW",
                "--target-password-env",
                "TASK_PW",
                "--sync-mode",
                "FULL_INCREMENTAL",
                "--connector-config",
                r#"{"status_interval_secs": 1}"#,
            ][..],
            &op,
        ]
        .concat(),
    );
    cli(
        &env,
        &[
            &[
                "mapping",
                "create",
                "--tenant",
                "acme",
                "--task",
                "orders",
                "--source",
                "public.orders",
            ][..],
            &op,
        ]
        .concat(),
    );
    let a = env.spawn("a");
    let b = env.spawn("b");
    cli(
        &env,
        &[&["task", "start", "orders", "--tenant", "acme"][..], &op].concat(),
    );
    wait_same(&env, "orders", T).await;

    let list = || json(&cli(&env, &["task", "list", "--tenant", "acme", "--json"]));
    let task_id: uuid::Uuid = list()[0]["task"]["task_id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    wait_for(&env, "an owner", T, || async { env.owner(task_id).await }).await;

    cli(
        &env,
        &[&["task", "pause", "orders", "--tenant", "acme"][..], &op].concat(),
    );
    wait_for(&env, "the lease released on pause", T, || async {
        env.owner(task_id).await.is_none().then_some(())
    })
    .await;
    insert(&env, 3001, 3500).await;
    cli(
        &env,
        &[&["task", "resume", "orders", "--tenant", "acme"][..], &op].concat(),
    );
    wait_same(&env, "orders", T).await;

    // Kill the daemon running it: the other one takes it over.
    let owner = wait_for(&env, "an owner after resume", T, || async {
        env.owner(task_id).await
    })
    .await;
    let (victim, survivor, other) = if owner == "a" {
        (a, b, "b")
    } else {
        (b, a, "a")
    };
    victim.kill9();
    insert(&env, 3501, 4000).await;
    wait_for(&env, "the task moved", Duration::from_secs(45), || async {
        (env.owner(task_id).await.as_deref() == Some(other)).then_some(())
    })
    .await;
    wait_same(&env, "orders", T).await;
    let shown = json(&cli(
        &env,
        &["task", "show", "orders", "--tenant", "acme", "--json"],
    ));
    assert_eq!(shown["task"]["status"], "RUNNING", "{shown}");

    // Every operator step is audited, by olga, in order.
    let audit = json(&cli(&env, &["audit", "list", "--tenant", "acme", "--json"]));
    let mut ops: Vec<String> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["operator"] == "olga")
        .map(|r| r["operation_type"].as_str().unwrap().to_string())
        .collect();
    ops.sort();
    let mut want = [
        "CREATE_TENANT",
        "CREATE_TASK",
        "CREATE_MAPPING",
        "START_TASK",
        "PAUSE_TASK",
        "RESUME_TASK",
    ]
    .map(String::from)
    .to_vec();
    want.sort();
    assert_eq!(ops, want, "{audit}");
    let _ = owner;
    assert!(!env.all_logs().contains(PASSWORD));
    drop(survivor);
}
