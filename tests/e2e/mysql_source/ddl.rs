//! DDL on replicated tables mid-stream, into PostgreSQL and into MariaDB:
//! `ADD COLUMN ... DEFAULT` (existing rows get the default), widening
//! `MODIFY COLUMN`, `RENAME TABLE` (the target table follows with its rows),
//! `DROP TABLE` + `CREATE TABLE` of the same name (the target starts empty),
//! a restart, and a type change dbsync cannot follow (the task stops saying
//! what to do).

use std::time::{Duration, Instant};

use super::{Dst, MyEnv};
use crate::T;

/// Columns of `shop.items` / `shop.goods` as the source (MariaDB) and the
/// target (PostgreSQL casts) spell them in a digest.
fn cols(env: &MyEnv, names: &[&str]) -> (String, String) {
    let src = names
        .iter()
        .map(|c| format!("COALESCE({c}, 'NULL')"))
        .collect::<Vec<_>>()
        .join(", ");
    let dst = match env.dst {
        Dst::Pg(_) => names
            .iter()
            .map(|c| format!("COALESCE({c}::text, 'NULL')"))
            .collect::<Vec<_>>()
            .join(", "),
        Dst::Maria(_) => src.clone(),
    };
    (src, dst)
}

/// Waits until source `shop.<table>` and target `shop.<table>` hold the same rows.
async fn wait_same(env: &MyEnv, table: &str, names: &[&str]) {
    let (src_cols, dst_cols) = cols(env, names);
    let start = Instant::now();
    loop {
        let s = env.src_digest(table, &src_cols, "id");
        let d = env
            .dst_digest(&format!("shop.{table}"), &dst_cols, "id")
            .await;
        if d.as_deref() == Some(s.as_str()) {
            return;
        }
        assert!(
            start.elapsed() < T,
            "{table} did not converge: source {s:?} target {d:?}\n--- dbsync log ---\n{}",
            env.log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn follows_ddl(to_pg: bool) {
    let env = MyEnv::new(to_pg, &[]);
    env.ready().await;
    env.src.exec(
        "CREATE TABLE shop.items (id INT PRIMARY KEY, a VARCHAR(10), b INT); \
         INSERT INTO shop.items VALUES (1, 'x', 1), (2, 'y', 2);",
    );
    // No mapping: every table of `shop` goes to the target's `shop` schema.
    let cfg = env.write_config("FULL_INCREMENTAL", "", "", &[]);
    let d = env.spawn(&cfg);
    env.wait_log("streaming changes", T).await;
    wait_same(&env, "items", &["id", "a", "b"]).await;

    // ADD COLUMN with defaults: rows that existed get them in the target too
    // (a NOT NULL column without DEFAULT gets MySQL's implicit 0).
    env.src.exec(
        "ALTER TABLE shop.items ADD COLUMN c INT NOT NULL DEFAULT 7, \
         ADD COLUMN s VARCHAR(8) DEFAULT 'it''s', ADD COLUMN z INT NOT NULL, ADD COLUMN n INT; \
         INSERT INTO shop.items (id, a, b, c, s, z) VALUES (3, 'z', 3, 8, NULL, 1);",
    );
    let all = ["id", "a", "b", "c", "s", "z", "n"];
    wait_same(&env, "items", &all).await;

    // Widening MODIFY: values that need the wider types follow.
    env.src.exec(
        "ALTER TABLE shop.items MODIFY COLUMN b BIGINT, MODIFY COLUMN a VARCHAR(300); \
         INSERT INTO shop.items (id, a, b, z) VALUES (4, REPEAT('w', 250), 9000000000, 4);",
    );
    wait_same(&env, "items", &all).await;

    // RENAME TABLE: the target table follows, with the rows from before.
    env.src.exec(
        "RENAME TABLE shop.items TO shop.goods; \
         INSERT INTO shop.goods (id, a, b, z) VALUES (5, 'after', 5, 5); \
         UPDATE shop.goods SET a = 'upd' WHERE id = 1;",
    );
    wait_same(&env, "goods", &all).await;
    assert_eq!(
        env.dst_digest("shop.items", "id", "id").await,
        None,
        "the old target table should have been renamed away"
    );

    // DROP TABLE, then CREATE TABLE of the same name: the target table, kept
    // after the drop, starts empty again with the new table.
    env.src.exec(
        "CREATE TABLE shop.tmp (id INT PRIMARY KEY, v INT); INSERT INTO shop.tmp VALUES (1, 1), (2, 2);",
    );
    wait_same(&env, "tmp", &["id", "v"]).await;
    env.src
        .exec("DROP TABLE shop.tmp; INSERT INTO shop.goods (id, a, z) VALUES (6, 'mid', 6);");
    wait_same(&env, "goods", &all).await;
    assert!(
        env.dst_digest("shop.tmp", "id", "id")
            .await
            .is_some_and(|d| d.starts_with("2 ")),
        "a dropped table's target table is kept"
    );
    env.src.exec(
        "CREATE TABLE shop.tmp (id INT PRIMARY KEY, v INT); INSERT INTO shop.tmp VALUES (3, 3);",
    );
    wait_same(&env, "tmp", &["id", "v"]).await;

    // A restart resumes with the schema history.
    assert_eq!(d.terminate(), Some(0), "clean exit:\n{}", env.log());
    env.src.exec(
        "INSERT INTO shop.goods (id, a, b, z) VALUES (7, 'later', 7, 7); \
         ALTER TABLE shop.goods ADD COLUMN e DECIMAL(6,2) DEFAULT -1.5; \
         INSERT INTO shop.goods (id, a, z) VALUES (8, 'e', 8);",
    );
    let d = env.spawn(&cfg);
    wait_same(&env, "goods", &["id", "a", "b", "c", "s", "z", "n", "e"]).await;

    // A change the target column cannot follow safely stops the task with
    // what to do; nothing after it is applied.
    env.src.exec(
        "ALTER TABLE shop.goods MODIFY COLUMN b VARCHAR(20); \
         INSERT INTO shop.goods (id, a, b, z) VALUES (9, 'text', 'not a number', 9);",
    );
    env.wait_log("dbsync only widens target columns", T).await;
    assert_eq!(
        env.dst_digest("shop.goods", "id", "id")
            .await
            .and_then(|d| d.split(' ').next().map(str::to_string))
            .as_deref(),
        Some("8"),
        "nothing after the unfollowable change may be applied"
    );
    drop(d);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maria_to_pg_follows_add_modify_rename_drop() {
    follows_ddl(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maria_to_maria_follows_add_modify_rename_drop() {
    follows_ddl(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maria_column_rename_and_expression_default_stop_with_a_message() {
    for (ddl, needle) in [
        (
            "ALTER TABLE shop.items CHANGE COLUMN a a2 VARCHAR(10)",
            "dbsync does not rename target columns",
        ),
        (
            "ALTER TABLE shop.items ADD COLUMN t DATETIME DEFAULT CURRENT_TIMESTAMP",
            "cannot give the target's existing rows the same value",
        ),
    ] {
        let env = MyEnv::new(true, &[]);
        env.ready().await;
        env.src.exec(
            "CREATE TABLE shop.items (id INT PRIMARY KEY, a VARCHAR(10)); \
             INSERT INTO shop.items VALUES (1, 'x');",
        );
        let cfg = env.write_config("FULL_INCREMENTAL", "", "", &[]);
        let d = env.spawn(&cfg);
        env.wait_log("streaming changes", T).await;
        wait_same(&env, "items", &["id", "a"]).await;
        env.src.exec(ddl);
        env.wait_log(needle, T).await;
        drop(d);
    }
}
