//! The operator CLI against a real metadata database: migrate, tenants,
//! tasks (passwords from the environment or stdin, stored encrypted, never
//! printed), mappings, scripts, status changes, offset reset, quotas,
//! alerts, soft deletes, and the audit trail row by row.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use metastore::secrets::{open_password, SecretKey};
use serde_json::{json, Value as Json};
use testkit::{PgOptions, PgServer};
use tokio_postgres::Client;

const SRC_PW: &str = "Src-S3cret-41";
const DST_PW: &str = "Dst-S3cret-42";

struct Out {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Out {
    fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }

    /// Exit 0 and `needle` on stdout.
    fn ok(self, needle: &str) -> Self {
        assert_eq!(self.code, Some(0), "{}", self.all());
        assert!(
            self.stdout.contains(needle),
            "no {needle:?} in:\n{}",
            self.stdout
        );
        self
    }

    /// Exit `code` and `needle` on stderr.
    fn fails(self, code: i32, needle: &str) -> Self {
        assert_eq!(self.code, Some(code), "{}", self.all());
        assert!(
            self.stderr.contains(needle),
            "no {needle:?} in:\n{}",
            self.all()
        );
        self
    }

    fn json(&self) -> Json {
        assert_eq!(self.code, Some(0), "{}", self.all());
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("{e}:\n{}", self.stdout))
    }

    /// The stdout line holding `needle`.
    fn line(&self, needle: &str) -> &str {
        let found = self.stdout.lines().find(|l| l.contains(needle));
        found.unwrap_or_else(|| panic!("no line with {needle:?} in:\n{}", self.stdout))
    }
}

struct Cli {
    config: PathBuf,
}

impl Cli {
    /// Runs dbsync with `--config`, extra variables and optional stdin;
    /// $SUDO_USER, $USER and $LOGNAME are cleared unless set in `env`.
    fn run_with(&self, args: &[&str], env: &[(&str, &str)], stdin: Option<&str>) -> Out {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_dbsync"));
        cmd.args(args)
            .arg("--config")
            .arg(&self.config)
            .env("SRC_PW", SRC_PW);
        for var in ["SUDO_USER", "USER", "LOGNAME"] {
            cmd.env_remove(var);
        }
        cmd.envs(env.iter().copied());
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let mut input = child.stdin.take().unwrap();
        input.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
        drop(input);
        let out = child.wait_with_output().unwrap();
        let out = Out {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
        for secret in [SRC_PW, DST_PW] {
            assert!(
                !out.all().contains(secret),
                "password leaked by {args:?}:\n{}",
                out.all()
            );
        }
        out
    }

    fn run(&self, args: &[&str]) -> Out {
        self.run_with(args, &[], None)
    }

    /// A command line without quoting (words split at white space).
    fn sh(&self, line: &str) -> Out {
        self.run(&line.split_whitespace().collect::<Vec<_>>())
    }

    /// [`Cli::sh`] acting as alice.
    fn alice(&self, line: &str) -> Out {
        self.sh(&format!("{line} --operator alice"))
    }
}

fn args(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

fn config(dir: &Path, name: &str, server: &PgServer, key: Option<&Path>) -> Cli {
    let mut text = format!("[metastore]\nurl = \"{}\"\n", server.url("meta"));
    if let Some(k) = key {
        text.push_str(&format!("secret_key_file = \"{}\"\n", k.display()));
    }
    Cli {
        config: PathBuf::from(write(dir, name, &text)),
    }
}

async fn metadb() -> (PgServer, Client, tempfile::TempDir) {
    let server = PgServer::start(PgOptions {
        logical: false,
        ..Default::default()
    });
    server.create_database("meta").await;
    let c = server.connect("meta").await;
    (server, c, tempfile::tempdir().unwrap())
}

async fn one<T: for<'a> tokio_postgres::types::FromSql<'a>>(db: &Client, sql: &str) -> T {
    db.query_one(sql, &[]).await.unwrap().get(0)
}

/// (operation_type, resource_type, status, operator, details, error), oldest first.
type AuditRow = (String, String, String, String, Json, Option<String>);

async fn audit(c: &Client) -> Vec<AuditRow> {
    let sql = "SELECT operation_type, resource_type, status, operator, operation_details, \
               error_message FROM audit_logs ORDER BY operated_at";
    let rows = c.query(sql, &[]).await.unwrap();
    rows.iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5)))
        .collect()
}

const TASK_FILE: &str = r#"{
  "task_code": "bulk", "task_name": "Nightly bulk copy", "source_db_type": "POSTGRESQL",
  "target_db_type": "POSTGRESQL", "sync_mode": "FULL_ONLY",
  "source_connection_config": {"host": "10.0.0.5", "port": 5432, "database": "shop"},
  "target_connection_config": {"host": "10.0.0.6", "port": 5432, "database": "dw"},
  "schedule_config": {"cron": "0 2 * * *", "timezone": "UTC"},
  "alert_config": {"lag_threshold": 100000, "alert_emails": ["ops@acme.test"]},
  "mappings": [
    {"source_schema": "public", "source_table": "orders", "target_schema": "dw",
     "column_filter": ["id", "total"], "conflict_resolution": "INSERT_ONLY",
     "transform_scripts": [{"script_name": "positive", "script_type": "SQL",
       "trigger_phase": "BEFORE_WRITE", "script_content": "WHERE total >= 0"}]}
  ]
}"#;

const SRC_CFG: &str = r#"{"host": "127.0.0.1", "port": 3306, "username": "repl"}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_story_every_change_audited() {
    let (server, db, dir) = metadb().await;
    let key_path = dir.path().join("secret.key");
    SecretKey::generate().write_new(&key_path).unwrap();
    let key = SecretKey::load(&key_path).unwrap();
    let cli = config(dir.path(), "dbsync.toml", &server, Some(&key_path));

    // Schema: refused before migrate, then migrated once.
    cli.sh("tenant list").fails(1, "dbsync metastore migrate");
    let st = cli.sh("metastore status --json").json();
    assert_eq!(st["schema_version"], 0);
    assert_eq!(st["pending_migrations"][0]["version"], 1);
    cli.sh("metastore migrate")
        .ok("applied migration(s) 1 (init)");
    cli.sh("metastore migrate").ok("nothing to do");

    // Tenant.
    cli.alice("tenant create acme --name Acme --max-connectors 2 --contact-email ops@acme.test")
        .ok("created tenant acme");
    let out = cli.sh("tenant list").ok("CODE  ");
    let line = out.line("acme");
    assert!(line.contains("ACTIVE") && line.contains("ops@acme.test") && line.contains("alice"));
    assert_eq!(
        cli.sh("tenant list --json")
            .json()
            .as_array()
            .unwrap()
            .len(),
        2
    );
    cli.run(&[
        "tenant",
        "create",
        "b c",
        "--name",
        "x",
        "--operator",
        "alice",
    ])
    .fails(2, "tenant_code");

    // A task with its password from the environment; inline passwords are refused.
    let target = write(
        dir.path(),
        "target.json",
        r#"{"host": "127.0.0.1", "database": "dw"}"#,
    );
    let target = format!("@{target}");
    let task = |code: &str, extra: &[&str]| -> Vec<String> {
        let words = format!(
            "task create {code} --tenant acme --name Orders --source-type mysql --target-type \
             postgresql --target-config {target} --operator alice"
        );
        let mut v: Vec<String> = words.split_whitespace().map(String::from).collect();
        v.extend(
            ["--source-config", SRC_CFG]
                .iter()
                .chain(extra)
                .map(|s| s.to_string()),
        );
        v
    };
    let mut inline = task("x", &[]);
    let last = inline.len() - 1;
    inline[last] = r#"{"host": "h", "password": "hunter2"}"#.into();
    let out = cli.run(&args(&inline)).fails(2, "--source-password-env");
    assert!(!out.all().contains("hunter2"));
    let with_pw = task("orders", &["--source-password-env", "SRC_PW"]);
    let no_key = config(dir.path(), "nokey.toml", &server, None);
    no_key.run(&args(&with_pw)).fails(2, "secret_key_file");
    cli.run(&args(&with_pw))
        .ok("created task orders")
        .ok("\"password\":\"***\"");
    let sql = "SELECT source_connection_config FROM sync_tasks WHERE task_code = 'orders'";
    let stored: Json = one(&db, sql).await;
    assert!(stored["password"].as_str().unwrap().starts_with("enc:v1:"));
    assert_eq!(
        open_password(Some(&key), &stored)
            .unwrap()
            .unwrap()
            .expose(),
        SRC_PW
    );

    // A whole task from a file, its target password from stdin.
    let file = write(dir.path(), "task.json", TASK_FILE);
    let from_file = ["task", "create", "--tenant", "acme", "--file", &file];
    let stdin = format!("{DST_PW}\n");
    let flags = ["--target-password-stdin", "--operator", "alice"];
    cli.run_with(&[&from_file[..], &flags].concat(), &[], Some(&stdin))
        .ok("created task bulk in tenant acme (1 mapping(s))");
    let sql = "SELECT target_connection_config FROM sync_tasks WHERE task_code = 'bulk'";
    let stored: Json = one(&db, sql).await;
    assert_eq!(
        open_password(Some(&key), &stored)
            .unwrap()
            .unwrap()
            .expose(),
        DST_PW
    );
    // Quota (max_connectors = 2) and a bad cron expression.
    cli.run(&args(&task("third", &[])))
        .fails(1, "max_connectors is 2");
    let cron = r#"{"cron": "0 25 * * *"}"#;
    let bad = [
        "task",
        "update",
        "bulk",
        "--tenant",
        "acme",
        "--schedule-config",
        cron,
    ];
    cli.run(&[&bad[..], &["--operator", "alice"]].concat())
        .fails(2, "not a valid cron");

    // Lists and shows, tables and JSON, with a daemon holding a lease.
    db.batch_execute(
        "INSERT INTO daemon_nodes (node_id, hostname, version) VALUES ('node-a', 'host-a', '0.1.0');
         INSERT INTO task_leases (task_id, owner, epoch, expires_at) SELECT task_id, 'node-a', 3,
             now() + interval '1 hour' FROM sync_tasks WHERE task_code = 'bulk'",
    )
    .await
    .unwrap();
    let out = cli.sh("task list --tenant acme").ok("SOURCE→TARGET");
    let header = out.stdout.lines().next().unwrap();
    for col in [
        "TASK",
        "MODE",
        "STATUS",
        "HEALTH",
        "RECORDS",
        "OWNER",
        "LAST ERROR",
    ] {
        assert!(header.contains(col), "{header}");
    }
    let bulk = out.line("bulk");
    assert!(
        bulk.contains("POSTGRESQL→POSTGRESQL") && bulk.contains("FULL_ONLY"),
        "{bulk}"
    );
    assert!(bulk.contains("node-a"), "{bulk}");
    let orders = out.line("orders");
    assert!(orders.contains("MYSQL→POSTGRESQL") && orders.contains("CREATED  UNKNOWN"));
    assert_eq!(
        cli.sh("task list --tenant acme --json")
            .json()
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let show = cli.sh("task show bulk --tenant acme --json");
    assert!(!show.stdout.contains("enc:v1"), "{}", show.stdout);
    let show = show.json();
    assert_eq!(show["task"]["target_connection_config"]["password"], "***");
    assert_eq!(show["lease"]["owner"], "node-a");
    assert_eq!(show["mappings"][0]["scripts"][0]["script_name"], "positive");
    cli.sh("task show bulk --tenant acme")
        .ok("public.orders")
        .ok("INSERT_ONLY")
        .ok("owner:");
    cli.sh("metastore status")
        .ok("up to date")
        .ok("node-a")
        .ok("held");

    // Mappings and scripts; bad ones fail at the CLI.
    let rules =
        r#"[{"column": "phone", "transform_type": "MASK", "params": {"pattern": "***-####"}}]"#;
    let mapping = [
        "mapping",
        "create",
        "--tenant",
        "acme",
        "--task",
        "orders",
        "--operator",
        "alice",
    ];
    let extra = [
        "--source",
        "shop.customers",
        "--target",
        "dw.clients",
        "--row-filter",
    ];
    let extra2 = [
        "status = 'ACTIVE'",
        "--column-filter",
        "id,name,phone",
        "--transform-rules",
        rules,
    ];
    cli.run(&[&mapping[..], &extra, &extra2].concat())
        .ok("created mapping shop.customers → dw.clients");
    let bad = ["--source", "shop.items", "--row-filter", "status ="];
    cli.run(&[&mapping[..], &bad].concat())
        .fails(2, "row_filter_condition");
    let js = write(
        dir.path(),
        "upper.js",
        "function transform(r, p) { return r; }",
    );
    let scope = "--tenant acme --task orders --mapping shop.customers";
    cli.alice(&format!(
        "script create upper --type javascript --content @{js} {scope}"
    ))
    .ok("created script upper");
    cli.alice(&format!(
        "script create g --type GROOVY --content record {scope}"
    ))
    .fails(2, "GROOVY cannot run");
    let out = cli
        .sh("mapping list --tenant acme --task orders")
        .ok("dw.clients");
    assert!(
        out.line("shop.customers").contains("true"),
        "{}",
        out.stdout
    );
    let m = cli
        .sh("mapping show shop.customers --tenant acme --task orders --json")
        .json();
    assert_eq!(m["scripts"][0]["script_type"], "JAVASCRIPT");
    assert_eq!(
        m["mapping"]["column_filter"],
        json!(["id", "name", "phone"])
    );
    cli.alice("mapping update shop.customers --tenant acme --task orders --batch-size 200")
        .ok("updated mapping shop.customers: batch_size");
    cli.sh(&format!("script list {scope}")).ok("JAVASCRIPT");

    // Status changes: illegal ones name the current status.
    let life = |verb: &str| cli.alice(&format!("task {verb} orders --tenant acme"));
    life("start").ok("CREATED → RUNNING");
    life("start").fails(1, "already RUNNING");
    life("pause").ok("RUNNING → PAUSED");
    life("pause").fails(1, "already PAUSED");
    life("resume").ok("PAUSED → RUNNING");
    life("reset-offset").fails(1, "stop it first");
    life("stop").ok("RUNNING → STOPPED");
    life("resume")
        .fails(1, "its status is STOPPED")
        .fails(1, "dbsync task start");
    db.execute(
        "INSERT INTO sync_offsets (task_id, source_partition, source_offset) SELECT task_id, \
         '{\"server\": \"s1\"}', '{\"file\": \"mysql-bin.000003\", \"pos\": 154}' \
         FROM sync_tasks WHERE task_code = 'orders'",
        &[],
    )
    .await
    .unwrap();
    life("reset-offset").ok("deleted 1 stored offset(s); offset_epoch 0 → 1");
    let epoch: i32 = one(
        &db,
        "SELECT offset_epoch FROM sync_tasks WHERE task_code = 'orders'",
    )
    .await;
    let offsets: i64 = one(&db, "SELECT count(*) FROM sync_offsets").await;
    assert_eq!((epoch, offsets), (1, 0));

    // Alerts.
    let id: uuid::Uuid = one(
        &db,
        "INSERT INTO alert_records (task_id, alert_type, alert_level, alert_title) SELECT task_id, \
         'HIGH_LAG', 'P1', 'replication lag' FROM sync_tasks WHERE task_code = 'orders' \
         RETURNING alert_id",
    )
    .await;
    let out = cli.sh("alerts list --status OPEN").ok(&id.to_string());
    assert!(out
        .line(&id.to_string())
        .contains("HIGH_LAG  OPEN    acme    orders"));
    cli.alice(&format!("alerts ack {id}"))
        .ok("acknowledged alert");
    cli.alice(&format!("alerts ack {id}"))
        .fails(1, "already ACKNOWLEDGED");
    let note = [
        "--note",
        "raised max_wal_senders",
        "--operator",
        "alice",
        "--json",
    ];
    let done = cli
        .run(&[&["alerts", "resolve", &id.to_string()][..], &note].concat())
        .json();
    assert_eq!(
        (&done["status"], &done["acknowledged_by"]),
        (&json!("RESOLVED"), &json!("alice"))
    );
    assert_eq!(done["resolution_note"], "raised max_wal_senders");
    assert_eq!(cli.sh("alerts list --status open --json").json(), json!([]));

    // Soft deletes hide rows; the rows stay.
    cli.alice("mapping delete shop.customers --tenant acme --task orders")
        .ok("deleted mapping");
    let out = cli
        .sh("mapping list --tenant acme --task orders")
        .ok("(none)");
    assert!(!out.stdout.contains("shop.customers"));
    cli.alice("task delete orders --tenant acme")
        .ok("deleted task orders");
    let out = cli.sh("task list --tenant acme").ok("bulk");
    assert!(!out.stdout.contains("orders"), "{}", out.stdout);
    cli.alice("tenant delete acme")
        .fails(1, "--cascade")
        .fails(1, "bulk");
    cli.alice("tenant delete acme --cascade")
        .ok("deleted tenant acme and its task(s) bulk");
    assert!(!cli.sh("tenant list").ok("default").stdout.contains("acme"));
    cli.sh("tenant show acme")
        .fails(1, "not found")
        .fails(1, "dbsync tenant list");
    let kept: i64 = one(
        &db,
        "SELECT count(*) FROM sync_tasks WHERE deleted_at IS NOT NULL",
    )
    .await;
    assert_eq!(kept, 2, "soft-deleted, not removed");

    // The audit trail, row by row.
    let rows = audit(&db).await;
    let seen: Vec<String> = rows
        .iter()
        .map(|r| format!("{} {} {}", r.0, r.1, r.2))
        .collect();
    let want = [
        "CREATE_TENANT TENANT SUCCESS",
        "CREATE_TASK TASK SUCCESS",
        "CREATE_TASK TASK SUCCESS",
        "CREATE_MAPPING MAPPING SUCCESS",
        "CREATE_SCRIPT SCRIPT SUCCESS",
        "CREATE_TASK TASK FAILED",
        "CREATE_MAPPING MAPPING SUCCESS",
        "CREATE_SCRIPT SCRIPT SUCCESS",
        "UPDATE_MAPPING MAPPING SUCCESS",
        "START_TASK TASK SUCCESS",
        "START_TASK TASK FAILED",
        "PAUSE_TASK TASK SUCCESS",
        "PAUSE_TASK TASK FAILED",
        "RESUME_TASK TASK SUCCESS",
        "RESET_OFFSET OFFSET FAILED",
        "STOP_TASK TASK SUCCESS",
        "RESUME_TASK TASK FAILED",
        "RESET_OFFSET OFFSET SUCCESS",
        "ACK_ALERT ALERT SUCCESS",
        "ACK_ALERT ALERT FAILED",
        "RESOLVE_ALERT ALERT SUCCESS",
        "DELETE_MAPPING MAPPING SUCCESS",
        "DELETE_TASK TASK SUCCESS",
        "DELETE_TENANT TENANT FAILED",
        "DELETE_TASK TASK SUCCESS",
        "DELETE_TENANT TENANT SUCCESS",
    ];
    assert_eq!(seen, want);
    assert!(
        rows.iter().all(|r| r.3 == "alice"),
        "every row names the operator"
    );
    let d = |i: usize| &rows[i].4;
    assert_eq!(d(0)["after"]["tenant_code"], "acme");
    assert_eq!(d(1)["before"], Json::Null);
    assert_eq!(d(1)["after"]["source_connection_config"]["password"], "***");
    assert!(rows[5].5.as_deref().unwrap().contains("max_connectors"));
    assert_eq!(
        d(8)["changes"]["batch_size"],
        json!({"from": 1000, "to": 200})
    );
    assert_eq!(
        d(9)["changes"]["status"],
        json!({"from": "CREATED", "to": "RUNNING"})
    );
    assert!(rows[10].5.as_deref().unwrap().contains("already RUNNING"));
    assert_eq!(d(17)["before"]["offsets"][0]["source_offset"]["pos"], 154);
    assert_eq!(d(17)["after"]["offset_epoch"], 1);
    assert_eq!(d(20)["after"]["resolution_note"], "raised max_wal_senders");
    assert_eq!(
        (&d(22)["before"]["task_code"], &d(22)["after"]),
        (&json!("orders"), &Json::Null)
    );
    let sql = "SELECT string_agg(operation_details::text || coalesce(error_message, ''), ' ') \
               FROM audit_logs";
    let text: String = one(&db, sql).await;
    for secret in [SRC_PW, DST_PW, "enc:v1"] {
        assert!(!text.contains(secret), "{secret} in audit rows");
    }
    let ua: String = one(&db, "SELECT min(user_agent) FROM audit_logs").await;
    assert!(ua.starts_with("dbsync-cli/"), "{ua}");

    // `audit list`: newest first, filtered.
    let out = cli.sh("audit list --limit 3").ok("DELETE_TENANT");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{}", out.stdout);
    assert!(
        lines[1].contains("alice") && lines[1].contains("deleted acme"),
        "{}",
        out.stdout
    );
    let starts = cli
        .sh("audit list --operation start_task --since 1h --json")
        .json();
    assert_eq!(starts.as_array().unwrap().len(), 2);
    assert_eq!(starts[0]["status"], "FAILED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_defaults_to_the_sudo_user_and_bad_input_is_clear() {
    let (server, db, dir) = metadb().await;
    let cli = config(dir.path(), "dbsync.toml", &server, None);
    cli.sh("metastore migrate").ok("applied");
    // Reads need no operator; changes do.
    cli.sh("tenant list").ok("default");
    cli.sh("tenant create t1 --name T1").fails(2, "--operator");
    cli.run_with(
        &["tenant", "create", "t1", "--name", "T1"],
        &[("USER", "bob")],
        None,
    )
    .ok("");
    let env = [("SUDO_USER", "carol"), ("USER", "root")];
    cli.run_with(
        &["tenant", "update", "t1", "--max-connectors", "0"],
        &env,
        None,
    )
    .ok("");
    let r = db
        .query_one(
            "SELECT created_by, updated_by FROM tenants WHERE tenant_code = 't1'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!((r.get::<_, &str>(0), r.get::<_, &str>(1)), ("bob", "carol"));
    let ops = db
        .query("SELECT operator FROM audit_logs ORDER BY operated_at", &[])
        .await
        .unwrap();
    let ops: Vec<&str> = ops.iter().map(|r| r.get(0)).collect();
    assert_eq!(ops, ["bob", "carol"]);
    // Quota 0; then, without a key file, a password is refused; without one the
    // task is created, with a warning for a type the daemon cannot run.
    let base = "task create t --tenant t1 --name T --source-type POSTGRESQL --target-type ORACLE \
                --source-config {} --target-config {} --operator bob";
    cli.sh(base).fails(1, "max_connectors is 0");
    cli.sh("tenant update t1 --max-connectors 5 --operator bob")
        .ok("max_connectors");
    let words: Vec<&str> = base
        .split_whitespace()
        .chain(["--source-password-stdin"])
        .collect();
    cli.run_with(&words, &[], Some("pw"))
        .fails(2, "no [metastore] secret_key_file");
    let out = cli.sh(base).ok("created task t");
    assert!(
        out.stderr.contains("no ORACLE target connector"),
        "{}",
        out.all()
    );
    // Unknown fields in files are named; a config without [metastore] is clear.
    let f = write(
        dir.path(),
        "t.json",
        r#"{"tenant_code": "x", "tenant_name": "X", "max_conectors": 1}"#,
    );
    cli.sh(&format!("tenant create --file {f} --operator bob"))
        .fails(2, "max_conectors");
    let plain = "[[task]]\nname = \"a\"\n[task.source]\ntype = \"postgresql\"\nurl = \"postgres://u@h/db\"\n\
                 [task.target]\ntype = \"postgresql\"\nurl = \"postgres://u@h/db2\"\n";
    let no_meta = Cli {
        config: PathBuf::from(write(dir.path(), "plain.toml", plain)),
    };
    no_meta.sh("tenant list").fails(2, "no [metastore] section");
}
