//! End-to-end: `[[task.mapping]]` with the real `dbsync` binary — table
//! routing (rename, shards into one table, exclude), column filter, renames,
//! retypes, row filter with move-in and move-out, transform rules, key
//! changes under `primary_key_mapping`, conflict policies, SQL and
//! JavaScript scripts; PostgreSQL → PostgreSQL, PostgreSQL → MariaDB and
//! MariaDB → PostgreSQL.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use tokio_postgres::Client;

use crate::harness::{wait_log, Env, MariaEnv};
use crate::mysql_source::MyEnv;
use crate::T;

/// A config for `env` with `mappings` (TOML `[[task.mapping]]` tables) appended.
fn config(env: &Env, mode: &str, extra_task: &str, mappings: &str) -> PathBuf {
    let path = env.write_config(mode, extra_task, &[]);
    append(&path, mappings)
}

fn append(path: &PathBuf, text: &str) -> PathBuf {
    let mut all = std::fs::read_to_string(path).unwrap();
    all.push('\n');
    all.push_str(text);
    std::fs::write(path, all).unwrap();
    path.clone()
}

/// The rows of `sql` (every column cast to text by the query), `|`-joined;
/// empty while the table does not exist.
async fn pg_rows(c: &Client, sql: &str) -> Vec<String> {
    match c.simple_query(sql).await {
        Ok(msgs) => msgs
            .into_iter()
            .filter_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => Some(
                    (0..r.len())
                        .map(|i| r.get(i).unwrap_or("NULL").to_string())
                        .collect::<Vec<_>>()
                        .join("|"),
                ),
                _ => None,
            })
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Waits until `sql` on the target returns `want`.
async fn wait_rows(c: &Client, sql: &str, want: &[&str], log: impl Fn() -> String) {
    let start = Instant::now();
    loop {
        let got = pg_rows(c, sql).await;
        if got == want {
            return;
        }
        if start.elapsed() > T {
            panic!(
                "{sql}\n got {got:?}\nwant {want:?}\n--- dbsync log ---\n{}",
                log()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

const CUSTOMERS: &str = "CREATE TABLE customers (id bigint PRIMARY KEY, name text, phone text,
    price numeric(10,2), status text, secret text)";

const CUSTOMERS_MAP: &str = r#"
[[task.mapping]]
source = "public.customers"
target = "crm.clients"
column_filter = ["id", "name", "phone", "price", "status"]
column_mappings = [{ source_column = "name", target_column = "full_name" },
                   { source_column = "id", target_column = "client_id", target_type = "integer" }]
row_filter_condition = "status = 'ACTIVE' AND price > 1"
transform_rules = [{ column = "phone", transform_type = "MASK", params = { pattern = "***-****-####" } },
                   { column = "price", transform_type = "MULTIPLY", params = { factor = 1.1 } },
                   { column = "name", transform_type = "UPPER" }]
"#;

const CLIENTS: &str =
    "SELECT client_id::text, full_name, phone, price::text, status FROM crm.clients ORDER BY 1";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filter_columns_and_rules_apply_to_snapshot_and_stream() {
    let env = Env::new().await;
    let src = env.source().await;
    src.batch_execute(CUSTOMERS).await.unwrap();
    src.batch_execute(
        "INSERT INTO customers VALUES
           (1, 'ann', '138-1234-5678', 10.00, 'ACTIVE', 's1'),
           (2, 'bob', '139-0000-1111', 20.00, 'CLOSED', 's2'),
           (3, 'cy', '13700002222', 0.50, 'ACTIVE', 's3')",
    )
    .await
    .unwrap();
    let cfg = config(&env, "FULL_INCREMENTAL", "", CUSTOMERS_MAP);
    let d = env.spawn(&cfg);
    let dst = env.target().await;
    wait_rows(
        &dst,
        CLIENTS,
        &["1|ANN|***-****-5678|11.000|ACTIVE"],
        || env.log(),
    )
    .await;
    wait_log(&env, "streaming changes", T).await;
    // Move-in (2 becomes ACTIVE; 3's price rises), move-out (1 closes),
    // a filtered insert, an insert then a delete, an update inside.
    src.batch_execute(
        "INSERT INTO customers VALUES (4, 'dee', '136-1111-2222', 5, 'ACTIVE', 's4'), (5, 'eve', '1', 5, 'NEW', 's5');
         UPDATE customers SET status = 'ACTIVE' WHERE id = 2;
         UPDATE customers SET price = 2 WHERE id = 3;
         UPDATE customers SET status = 'CLOSED' WHERE id = 1;
         DELETE FROM customers WHERE id = 4;
         INSERT INTO customers VALUES (6, 'fay', '135-9999-8888', 3.33, 'ACTIVE', 's6');
         UPDATE customers SET name = 'fayette' WHERE id = 6",
    )
    .await
    .unwrap();
    wait_rows(
        &dst,
        CLIENTS,
        &[
            "2|BOB|***-****-1111|22.000|ACTIVE",
            "3|CY|***-****-2222|2.200|ACTIVE",
            "6|FAYETTE|***-****-8888|3.663|ACTIVE",
        ],
        || env.log(),
    )
    .await;
    // The filtered-out column never reached the target; the retype did.
    let cols = pg_rows(
        &dst,
        "SELECT string_agg(attname || ':' || format_type(atttypid, atttypmod), ',' ORDER BY attnum) \
         FROM pg_attribute WHERE attrelid = 'crm.clients'::regclass AND attnum > 0",
    )
    .await;
    assert_eq!(
        cols,
        ["client_id:integer,full_name:text,phone:text,price:numeric,status:text"]
    );
    assert!(
        !env.log().contains("fayette"),
        "a row value reached the log"
    );
    drop(d);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shards_merge_into_one_table_and_excluded_ones_stay_out() {
    let env = Env::new().await;
    let src = env.source().await;
    let mut ddl = String::new();
    for i in 0..8 {
        ddl.push_str(&format!(
            "CREATE TABLE orders_{i} (id bigint PRIMARY KEY, amount int);
             INSERT INTO orders_{i} SELECT g * 100 + {i}, g FROM generate_series(1, 50) g;"
        ));
    }
    ddl.push_str("CREATE TABLE orders_archive (id bigint PRIMARY KEY, amount int); INSERT INTO orders_archive VALUES (1, 1);");
    src.batch_execute(&ddl).await.unwrap();
    let cfg = config(
        &env,
        "FULL_INCREMENTAL",
        "",
        r#"
[[task.mapping]]
source = "public.orders_*"
exclude = ["public.orders_archive"]
target = "sales.orders"
"#,
    );
    let d = env.spawn(&cfg);
    wait_log(&env, "streaming changes", T).await;
    src.batch_execute(
        "INSERT INTO orders_3 VALUES (99903, 7); DELETE FROM orders_5 WHERE id = 105;
         UPDATE orders_0 SET amount = -1 WHERE id = 200; INSERT INTO orders_archive VALUES (2, 2);
         TRUNCATE orders_7",
    )
    .await
    .unwrap();
    let dst = env.target().await;
    let q = "SELECT count(*)::text, sum(amount)::text FROM sales.orders";
    // 400 copied + 1 inserted - 1 deleted; 0-shard row 200 (amount 2) now -1;
    // the truncate of one shard is not applied to the shared table.
    let want_sum = (1..=50).sum::<i64>() * 8 + 7 - 1 - 2 - 1;
    wait_rows(&dst, q, &[&format!("400|{want_sum}")], || env.log()).await;
    assert!(
        pg_rows(&dst, "SELECT 1 FROM sales.orders WHERE id < 100")
            .await
            .is_empty(),
        "orders_archive was excluded"
    );
    wait_log(&env, "truncate not applied", T).await;
    drop(d);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn primary_key_mapping_turns_key_changes_into_delete_and_insert() {
    let env = Env::new().await;
    let src = env.source().await;
    src.batch_execute(
        "CREATE TABLE users (id int PRIMARY KEY, email text NOT NULL, name text);
         ALTER TABLE users REPLICA IDENTITY FULL;
         INSERT INTO users VALUES (1, 'a@x', 'ann'), (2, 'b@x', 'bob')",
    )
    .await
    .unwrap();
    let cfg = config(
        &env,
        "FULL_INCREMENTAL",
        "",
        r#"
[[task.mapping]]
source = "public.users"
target = "public.users_by_email"
column_filter = ["email", "name"]
primary_key_mapping = { source_columns = ["email"], target_columns = ["email"] }
"#,
    );
    let d = env.spawn(&cfg);
    let dst = env.target().await;
    let q = "SELECT email, name FROM users_by_email ORDER BY 1";
    wait_rows(&dst, q, &["a@x|ann", "b@x|bob"], || env.log()).await;
    src.batch_execute(
        "UPDATE users SET email = 'a2@x' WHERE id = 1;
         UPDATE users SET name = 'robert' WHERE id = 2;
         INSERT INTO users VALUES (3, 'c@x', 'cy'); DELETE FROM users WHERE id = 3;
         INSERT INTO users VALUES (4, 'd@x', 'dee')",
    )
    .await
    .unwrap();
    wait_rows(&dst, q, &["a2@x|ann", "b@x|robert", "d@x|dee"], || {
        env.log()
    })
    .await;
    let key = pg_rows(
        &dst,
        "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid \
         AND a.attnum = ANY(i.indkey) WHERE i.indrelid = 'users_by_email'::regclass AND i.indisprimary",
    )
    .await;
    assert_eq!(key, ["email"]);
    drop(d);
}

const POLICY_TABLES: [&str; 3] = ["p_insert_only", "p_update_only", "p_ignore"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflict_policies_decide_what_the_target_keeps() {
    let env = Env::new().await;
    let src = env.source().await;
    let dst = env.target().await;
    for t in POLICY_TABLES {
        let ddl = format!("CREATE TABLE {t} (id int PRIMARY KEY, v text);");
        src.batch_execute(&format!(
            "{ddl} INSERT INTO {t} VALUES (1, 'src'), (3, 'src');"
        ))
        .await
        .unwrap();
        dst.batch_execute(&format!(
            "{ddl} INSERT INTO {t} VALUES (1, 'target'), (2, 'target');"
        ))
        .await
        .unwrap();
    }
    let mut maps = String::new();
    for (t, p) in POLICY_TABLES
        .iter()
        .zip(["INSERT_ONLY", "UPDATE_ONLY", "IGNORE"])
    {
        maps.push_str(&format!(
            "[[task.mapping]]\nsource = \"public.{t}\"\nconflict_resolution = \"{p}\"\n"
        ));
    }
    let cfg = config(&env, "FULL_INCREMENTAL", "", &maps);
    let d = env.spawn(&cfg);
    wait_log(&env, "streaming changes", T).await;
    for t in POLICY_TABLES {
        src.batch_execute(&format!(
            "UPDATE {t} SET v = 'src2' WHERE id IN (1, 3); INSERT INTO {t} VALUES (4, 'src');
             DELETE FROM {t} WHERE id = 3; INSERT INTO {t} VALUES (5, 'last')"
        ))
        .await
        .unwrap();
    }
    let q = |t: &str| format!("SELECT id::text, v FROM {t} ORDER BY id");
    // INSERT_ONLY: existing rows kept as first written; nothing deleted.
    wait_rows(
        &dst,
        &q("p_insert_only"),
        &["1|target", "2|target", "3|src", "4|src", "5|last"],
        || env.log(),
    )
    .await;
    // UPDATE_ONLY: only rows already there change; none added or removed.
    wait_rows(&dst, &q("p_update_only"), &["1|src2", "2|target"], || {
        env.log()
    })
    .await;
    // IGNORE: never overwritten, but deletes apply.
    wait_rows(
        &dst,
        &q("p_ignore"),
        &["1|target", "2|target", "4|src", "5|last"],
        || env.log(),
    )
    .await;
    drop(d);
}

const SCRIPTED: &str = r#"
[[task.mapping]]
source = "public.events"
column_mappings = [{ source_column = "kind", target_column = "category" }]
[[task.mapping.script]]
script_name = "drop_test_rows"
script_type = "SQL"
trigger_phase = "BEFORE_TRANSFORM"
execution_order = 1
script_content = "SET note = COALESCE(note, :default_note) WHERE kind <> 'test'"
script_params = { default_note = "none" }
[[task.mapping.script]]
script_name = "score"
script_type = "JAVASCRIPT"
trigger_phase = "BEFORE_WRITE"
script_content = '''
function transform(r, params) {
  if (r.category === 'boom') throw new Error('boom ' + r.note);
  r.score = r.score * params.weight;
  r.category = r.category.toUpperCase();
  return r;
}
'''
script_params = { weight = 3 }
error_handling = "THROW_EXCEPTION"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_and_javascript_scripts_run_and_a_failing_one_stops_the_task() {
    let env = Env::new().await;
    let src = env.source().await;
    src.batch_execute(
        "CREATE TABLE events (id int PRIMARY KEY, kind text, note text, score int);
         INSERT INTO events VALUES (1, 'click', NULL, 2), (2, 'test', 'x', 1)",
    )
    .await
    .unwrap();
    let cfg = config(&env, "FULL_INCREMENTAL", "", SCRIPTED);
    let d = env.spawn(&cfg);
    let dst = env.target().await;
    let q = "SELECT id::text, category, note, score::text FROM events ORDER BY id";
    wait_rows(&dst, q, &["1|CLICK|none|6"], || env.log()).await;
    wait_log(&env, "streaming changes", T).await;
    src.batch_execute("INSERT INTO events VALUES (3, 'view', 'n', 5); UPDATE events SET kind = 'test' WHERE id = 1")
        .await
        .unwrap();
    // The SQL script's keep-condition drops test rows: 1 leaves the target.
    wait_rows(&dst, q, &["3|VIEW|n|15"], || env.log()).await;
    src.batch_execute("INSERT INTO events VALUES (4, 'boom', 'private-note', 1)")
        .await
        .unwrap();
    assert_ne!(d.wait_exit(T), Some(0), "the task fails:\n{}", env.log());
    let log = env.log();
    assert!(
        log.contains("transform script \\\"score\\\" of mapping public.events failed")
            || log.contains("transform script \"score\" of mapping public.events failed"),
        "{log}"
    );
    assert!(
        !log.contains("private-note"),
        "a row value reached the log:\n{log}"
    );
    // Nothing of the failed transaction was committed.
    assert_eq!(pg_rows(&dst, q).await, ["3|VIEW|n|15"]);
}

#[test]
fn invalid_mappings_are_rejected_at_load_time_with_the_position() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.toml");
    let base = "[[task]]\nname = \"a\"\n[task.source]\ntype = \"postgresql\"\nurl = \"postgres://x@h/db\"\n\
                [task.target]\ntype = \"postgresql\"\nurl = \"postgres://x@h/db\"\n";
    for (mapping, want) in [
        (
            "[[task.mapping]]\nsource = \"public.t\"\nrow_filter_condition = \"a = 1 AND b LIKE\"",
            "row_filter_condition: Expected: an expression, found: EOF at the end (line 1, column 17)",
        ),
        (
            "[[task.mapping]]\nsource = \"public.t\"\n[[task.mapping.script]]\nscript_name = \"g\"\n\
             script_type = \"GROOVY\"\ntrigger_phase = \"BEFORE_WRITE\"\nscript_content = \"x\"",
            "script_type GROOVY cannot run in dbsync",
        ),
        (
            "[[task.mapping]]\nsource = \"public.t\"\ntransform_rules = [{ column = \"a\", transform_type = \"MASK\" }]",
            "parameter pattern is required",
        ),
    ] {
        std::fs::write(&p, format!("{base}{mapping}\n")).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_dbsync"))
            .args(["check", "--config", p.to_str().unwrap()])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(2), "{text}");
        assert!(text.contains(want), "{text}\n(wanted {want:?})");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mappings_into_mariadb() {
    let env = MariaEnv::new().await;
    let src = env.source().await;
    src.batch_execute(CUSTOMERS).await.unwrap();
    src.batch_execute(
        "CREATE TABLE log (id int PRIMARY KEY, v text);
         INSERT INTO customers VALUES (1, 'ann', '138-1234-5678', 10.00, 'ACTIVE', 's1'),
                                      (2, 'bob', '139-0000-1111', 20.00, 'CLOSED', 's2');
         INSERT INTO log VALUES (1, 'first')",
    )
    .await
    .unwrap();
    let path = env.write_config("FULL_INCREMENTAL", "", &[]);
    let cfg = append(
        &path,
        &format!(
            "{}\n[[task.mapping]]\nsource = \"public.log\"\ntarget = \"reporting.log\"\nconflict_resolution = \"INSERT_ONLY\"\n",
            // MariaDB has no unbounded decimal: give the product a type.
            CUSTOMERS_MAP.replace("crm.clients", "reporting.clients").replace(
                "target_type = \"integer\" }",
                "target_type = \"integer\" },\n                   { source_column = \"price\", target_type = \"numeric(12,3)\" }",
            )
        ),
    );
    let d = env.spawn(&cfg);
    env.wait_log("streaming changes", T).await;
    src.batch_execute(
        "UPDATE customers SET status = 'ACTIVE' WHERE id = 2; UPDATE customers SET status = 'CLOSED' WHERE id = 1;
         INSERT INTO customers VALUES (3, 'cy', '137-0000-2222', 3.00, 'ACTIVE', 's3');
         UPDATE log SET v = 'second' WHERE id = 1; DELETE FROM log WHERE id = 1; INSERT INTO log VALUES (2, 'x')",
    )
    .await
    .unwrap();
    let want = "2\tBOB\t***-****-1111\t22.000\tACTIVE\n3\tCY\t***-****-2222\t3.300\tACTIVE\n\
                ---\n1\tfirst\n2\tx\n";
    let start = Instant::now();
    loop {
        let got = env.target_query(
            "SELECT client_id, full_name, phone, price, status FROM reporting.clients ORDER BY 1; \
             SELECT '---'; SELECT id, v FROM reporting.log ORDER BY id",
        );
        if got.as_deref() == Some(want) {
            break;
        }
        assert!(
            start.elapsed() < T,
            "got {got:?}\nwant {want:?}\n{}",
            env.log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    drop(d);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mappings_from_a_mariadb_source() {
    let env = MyEnv::new(true, &[]);
    env.ready().await;
    env.src.exec(
        "CREATE TABLE shop.items (id int PRIMARY KEY, name varchar(20), price decimal(10,2), state varchar(10));
         INSERT INTO shop.items VALUES (1, 'a', 1.50, 'on'), (2, 'b', 2.00, 'off')",
    );
    let path = env.write_config("FULL_INCREMENTAL", "", "", &[]);
    let cfg = append(
        &path,
        r#"
[[task.mapping]]
source = "shop.items"
target = "public.items"
row_filter_condition = "state = 'on'"
column_mappings = [{ source_column = "name", target_column = "title" }]
transform_rules = [{ column = "price", transform_type = "ROUND", params = { scale = 0 } }]
"#,
    );
    let d = env.spawn(&cfg);
    env.wait_log("streaming changes", T).await;
    env.src.exec(
        "UPDATE shop.items SET state = 'on' WHERE id = 2; UPDATE shop.items SET state = 'off' WHERE id = 1;
         INSERT INTO shop.items VALUES (3, 'c', 2.50, 'on')",
    );
    let crate::mysql_source::Dst::Pg(pg) = &env.dst else {
        unreachable!("a PostgreSQL target")
    };
    let dst = pg.connect("reporting").await;
    wait_rows(
        &dst,
        "SELECT id::text, title, price::text, state FROM items ORDER BY id",
        &["2|b|2|on", "3|c|3|on"],
        || env.log(),
    )
    .await;
    drop(d);
}
