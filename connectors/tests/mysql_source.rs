//! The MySQL/MariaDB source against private MariaDB servers: snapshot and
//! stream handover, positions, restarts, rotation, purge and heartbeats.

mod mysql_support;

use std::sync::Arc;

use engine::{SourcePosition, Value};
use mysql_support::{mariadb, task_config, MemStore, Running};

const ORDERS: &str = "CREATE TABLE shop.orders (id BIGINT PRIMARY KEY, name VARCHAR(40), price DECIMAL(10,2), qty INT)";

fn insert_rows(from: i64, to: i64) -> String {
    let mut s = String::from("INSERT INTO shop.orders VALUES ");
    for i in from..=to {
        if i > from {
            s.push(',');
        }
        s.push_str(&format!(
            "({i}, 'n{i}', {}.{:02}, {})",
            i % 1000,
            i % 100,
            i % 7
        ));
    }
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_then_stream_inserts_updates_deletes() {
    let db = mariadb(&[]);
    db.exec(ORDERS);
    db.exec(&insert_rows(1, 2500));
    let store = Arc::new(MemStore::default());
    let task = task_config(&db, "FULL_INCREMENTAL", "", &[]);
    let run = Running::start(&task, store.clone());
    run.wait_for("snapshot", |t| {
        t.checkpoint.as_ref().is_some_and(|c| c.snapshot.completed)
    })
    .await;
    assert_eq!(run.target.lock().unwrap().rows("orders").len(), 2500);
    db.exec(&format!(
        "BEGIN; {}; UPDATE shop.orders SET qty = qty + 100 WHERE id <= 10; DELETE FROM shop.orders WHERE id BETWEEN 2401 AND 2500; \
         UPDATE shop.orders SET id = 99999 WHERE id = 11; COMMIT",
        insert_rows(3000, 3009)
    ));
    run.wait_for("stream", |t| t.rows("orders").len() == 2500 + 10 - 100)
        .await;
    {
        let t = run.target.lock().unwrap();
        let rows = t.rows("orders");
        let by_id = |id: i64| rows.iter().find(|r| r[0] == Value::Int64(id)).cloned();
        assert_eq!(by_id(1).unwrap()[3], Value::Int32(101));
        assert!(by_id(11).is_none());
        assert_eq!(by_id(99999).unwrap()[1], Value::Text("n11".into()));
        assert_eq!(by_id(3005).unwrap()[2], Value::Decimal("5.05".into()));
        let cp = t.checkpoint.clone().unwrap();
        let SourcePosition::Mysql(p) = &cp.stream.unwrap().commit else {
            panic!()
        };
        assert!(p.file.starts_with("mysql-bin."));
        assert!(
            p.gtid_set.as_deref().is_some_and(|g| g.starts_with("0-")),
            "{p:?}"
        );
    }
    run.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_decodes_old_events_with_the_schema_of_their_time() {
    let db = mariadb(&[]);
    db.exec("CREATE TABLE shop.s (id INT PRIMARY KEY, a INT)");
    let store = Arc::new(MemStore::default());
    let task = task_config(&db, "FULL_INCREMENTAL", "", &[]);
    let run = Running::start(&task, store.clone());
    run.wait_for("snapshot", |t| {
        t.checkpoint.as_ref().is_some_and(|c| c.snapshot.completed)
    })
    .await;
    db.exec("INSERT INTO shop.s VALUES (1, 1)");
    run.wait_for("first row", |t| t.rows("s").len() == 1).await;
    // From here the target stops acknowledging: the source reads the DDL
    // (and records it in the schema history) but the checkpoint stays before it.
    run.target.lock().unwrap().frozen = true;
    let relations = run.target.lock().unwrap().relations.len();
    db.exec(
        "INSERT INTO shop.s VALUES (2, 2); ALTER TABLE shop.s ADD COLUMN b VARCHAR(300) FIRST, MODIFY a BIGINT; \
         INSERT INTO shop.s VALUES ('x', 3, 3)",
    );
    run.wait_for("the DDL", |t| {
        t.relations.len() > relations && t.rows("s").len() == 3
    })
    .await;
    let target = run.kill().await;
    // The restart reads INSERT (2, 2) again, which only decodes with the
    // schema before the DDL; then the DDL, then the new rows.
    let run = Running::restart(&task, store.clone(), target);
    db.exec("INSERT INTO shop.s VALUES ('y', 4, 4)");
    run.wait_for("all rows", |t| t.rows("s").len() == 4).await;
    let rows = run.target.lock().unwrap().named_rows("s");
    let row2 = rows
        .iter()
        .find(|r| r.get("id") == Some(&Value::Int32(2)))
        .unwrap();
    assert_eq!(
        row2.get("a"),
        Some(&Value::Int32(2)),
        "decoded with the old schema: {row2:?}"
    );
    let row4 = rows
        .iter()
        .find(|r| r.get("id") == Some(&Value::Int32(4)))
        .unwrap();
    assert_eq!(row4.get("a"), Some(&Value::Int64(4)));
    assert_eq!(row4.get("b"), Some(&Value::Text("y".into())));
    run.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_by_gtid_after_a_restart() {
    let db = mariadb(&[]);
    db.exec(ORDERS);
    let store = Arc::new(MemStore::default());
    let task = task_config(&db, "FULL_INCREMENTAL", "use_gtid = true", &[]);
    let run = Running::start(&task, store.clone());
    run.wait_for("snapshot", |t| {
        t.checkpoint.as_ref().is_some_and(|c| c.snapshot.completed)
    })
    .await;
    db.exec(&insert_rows(1, 100));
    run.wait_for("rows", |t| t.rows("orders").len() == 100)
        .await;
    let target = run.kill().await;
    db.exec(&insert_rows(101, 200));
    db.exec("FLUSH LOGS");
    db.exec("DELETE FROM shop.orders WHERE id <= 50");
    let run = Running::restart(&task, store.clone(), target);
    run.wait_for("rows after restart", |t| t.rows("orders").len() == 150)
        .await;
    let cp = run.target.lock().unwrap().checkpoint.clone().unwrap();
    let SourcePosition::Mysql(p) = &cp.stream.unwrap().commit else {
        panic!()
    };
    assert_eq!(p.file.as_ref(), "mysql-bin.000002", "{p:?}");
    assert!(p.gtid_set.is_some());
    run.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statement_based_changes_to_a_replicated_table_stop_the_task() {
    let db = mariadb(&[]);
    db.exec(ORDERS);
    let store = Arc::new(MemStore::default());
    let task = task_config(&db, "FULL_INCREMENTAL", "", &[]);
    let run = Running::start(&task, store.clone());
    run.wait_for("snapshot", |t| {
        t.checkpoint.as_ref().is_some_and(|c| c.snapshot.completed)
    })
    .await;
    db.exec(
        "SET SESSION binlog_format = 'STATEMENT'; INSERT INTO shop.orders VALUES (1, 'x', 1, 1)",
    );
    let err = run.error().await;
    assert!(err.contains("binlog_format"), "{err}");
}
