//! The command line: `check`, `offsets`, configuration errors, secrets.

use std::process::Command;
use std::time::Duration;

use testkit::{PgAuth, PgOptions, PgServer};

use crate::harness::{wait_log, Env};

fn dbsync(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_dbsync"))
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

#[test]
fn config_errors_are_clear_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.toml");
    std::fs::write(
        &p,
        "[[task]]\nname = \"a\"\nsync_mod = \"FULL_ONLY\"\n[task.source]\ntype = \"postgresql\"\nurl = \"postgres://x@h/db\"\n[task.target]\ntype = \"postgresql\"\nurl = \"postgres://x@h/db\"\n",
    )
    .unwrap();
    let (code, text) = dbsync(&["check", "--config", p.to_str().unwrap()]);
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("sync_mod"), "{text}");
    let (code, text) = dbsync(&[
        "run",
        "--config",
        dir.path().join("missing.toml").to_str().unwrap(),
    ]);
    assert_eq!(code, Some(2));
    assert!(text.contains("cannot read config file"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_without_logical_wal_fails_check_and_run_with_the_fix() {
    let src = PgServer::start(PgOptions {
        logical: false,
        ..Default::default()
    });
    let env = Env::new().await;
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.toml");
    std::fs::write(
        &p,
        format!(
            "[daemon]\ndata_dir = \"{}\"\n[daemon.admin]\nlisten = \"127.0.0.1:0\"\n[[task]]\nname = \"a\"\n[task.source]\ntype = \"postgresql\"\nurl = \"{}\"\n[task.target]\ntype = \"postgresql\"\nurl = \"{}\"\n",
            dir.path().join("data").display(),
            src.url("postgres"),
            env.dst.url("reporting")
        ),
    )
    .unwrap();
    let (code, text) = dbsync(&["check", "--config", p.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("FAIL ensure_wal_level_logical"), "{text}");
    assert!(
        text.contains("ALTER SYSTEM SET wal_level = logical"),
        "{text}"
    );
    let (code, text) = dbsync(&["run", "--config", p.to_str().unwrap()]);
    assert_eq!(code, Some(1), "a definite error stops the task:\n{text}");
    assert!(text.contains("wal_level"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_passes_offsets_show_and_reset_and_secrets_stay_out_of_output() {
    let secret = "S3cr3t-pw-42";
    let env = Env::new().await;
    let dst = PgServer::start(PgOptions {
        logical: false,
        auth: PgAuth::Password {
            method: "scram-sha-256".into(),
            password: secret.into(),
        },
        ..Default::default()
    });
    dst.create_database("reporting").await;
    let src = env.source().await;
    src.batch_execute("CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t VALUES (1, 'a')")
        .await
        .unwrap();
    let data = env.dir.path().join("data");
    let p = env.dir.path().join("c.toml");
    std::fs::write(
        &p,
        format!(
            "[daemon]\ndata_dir = \"{}\"\n[daemon.admin]\nlisten = \"127.0.0.1:0\"\n[[task]]\nname = \"t1\"\n[task.source]\ntype = \"postgresql\"\nurl = \"{}\"\n\
             [task.target]\ntype = \"postgresql\"\nurl = \"postgres://postgres:${{DST_PW}}@127.0.0.1:{}/reporting\"\n",
            data.display(),
            env.src.url("shop"),
            dst.port()
        ),
    )
    .unwrap();
    // Missing variable: named, not guessed.
    let (code, text) = dbsync(&["check", "--config", p.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("DST_PW"), "{text}");
    std::env::set_var("DST_PW", secret);
    let (code, text) = dbsync(&["check", "--config", p.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("all checks passed"), "{text}");
    assert!(
        !text.contains(secret),
        "secret leaked into check output:\n{text}"
    );

    let d = env.spawn(&p);
    wait_log(&env, "streaming changes", Duration::from_secs(60)).await;
    let dstc = dst.connect("reporting").await;
    let start = std::time::Instant::now();
    while dstc
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .map(|r| r.get::<_, i64>(0))
        .unwrap_or(0)
        != 1
    {
        assert!(start.elapsed() < Duration::from_secs(60), "{}", env.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(d.terminate(), Some(0));
    assert!(!env.log().contains(secret), "secret leaked into the log");

    let (code, text) = dbsync(&["offsets", "show", "--config", p.to_str().unwrap(), "--json"]);
    assert_eq!(code, Some(0), "{text}");
    let v: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
    assert_eq!(v["t1"]["snapshot"]["completed"], true, "{text}");
    assert!(v["t1"]["stream"]["commit"]["lsn"].is_string(), "{text}");
    let (code, text) = dbsync(&[
        "offsets",
        "reset",
        "--config",
        p.to_str().unwrap(),
        "--task",
        "t1",
    ]);
    assert_eq!(code, Some(0), "{text}");
    let (_, text) = dbsync(&["offsets", "show", "--config", p.to_str().unwrap()]);
    assert!(text.contains("no checkpoints"), "{text}");
    // After a reset the next run copies again and converges.
    src.batch_execute("INSERT INTO t VALUES (2, 'b')")
        .await
        .unwrap();
    let d = env.spawn(&p);
    let start = std::time::Instant::now();
    while dstc
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .map(|r| r.get::<_, i64>(0))
        .unwrap_or(0)
        != 2
    {
        assert!(start.elapsed() < Duration::from_secs(60), "{}", env.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(d);
}
