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
