//! Transactions and errors of the MySQL sink against a private MariaDB:
//! nothing is visible before commit (checked from a second connection),
//! rollback leaves no trace, a killed connection is transient, data errors
//! are definite and name the column without the value, and columns added to
//! a table the open transaction wrote to make the transaction replay.

mod mysql_support;

use engine::{DataType, Sink, Value};
use mysql_async::prelude::Queryable;
use mysql_support::*;

#[tokio::test]
async fn commit_is_atomic_and_rollback_leaves_no_trace() {
    let db = server();
    let mut c = client(&db).await;
    let a = table("a", vec![int8("id"), text_col("v")], &[0]);
    let b = table("b", vec![int8("id")], &[0]);
    let mut sink = sink(&db).await;
    sink.begin().await.unwrap();
    sink.ensure_table(&a).await.unwrap();
    sink.ensure_table(&b).await.unwrap();
    let rows = |n: i64| -> Vec<_> {
        (0..n)
            .map(|i| vec![Value::Int64(i), Value::Text(format!("v{i}"))])
            .collect()
    };
    sink.apply(&upserts(&a, rows(5000), true)).await.unwrap();
    sink.apply(&upserts(&b, vec![vec![Value::Int64(1)]], true))
        .await
        .unwrap();
    sink.truncate(&b.id).await.unwrap();
    // A second connection sees nothing of the open transaction.
    assert_eq!(count(&mut c, "target.a").await, 0);
    assert_eq!(count(&mut c, "target.b").await, 0);
    sink.commit().await.unwrap();
    assert_eq!(count(&mut c, "target.a").await, 5000);
    assert_eq!(count(&mut c, "target.b").await, 0);

    sink.begin().await.unwrap();
    sink.apply(&deletes(
        &a,
        (0..100).map(|i| vec![Value::Int64(i)]).collect(),
    ))
    .await
    .unwrap();
    sink.apply(&upserts(&b, vec![vec![Value::Int64(7)]], false))
        .await
        .unwrap();
    sink.rollback().await.unwrap();
    assert_eq!(count(&mut c, "target.a").await, 5000);
    assert_eq!(count(&mut c, "target.b").await, 0);

    // An empty transaction commits without touching the server.
    sink.begin().await.unwrap();
    sink.commit().await.unwrap();
    // Protocol misuse is refused, not panicked on.
    assert!(sink.commit().await.is_err());
    assert!(sink
        .apply(&upserts(&b, vec![vec![Value::Int64(8)]], false))
        .await
        .is_err());
}

#[tokio::test]
async fn a_killed_connection_is_transient_and_a_new_sink_recovers() {
    let db = server();
    let mut c = client(&db).await;
    let t = table("k", vec![int8("id")], &[0]);
    let mut sink = sink(&db).await;
    sink.begin().await.unwrap();
    sink.ensure_table(&t).await.unwrap();
    sink.apply(&upserts(&t, vec![vec![Value::Int64(1)]], true))
        .await
        .unwrap();
    c.query_drop(format!("KILL {}", sink.connection_id()))
        .await
        .unwrap();
    let err = apply_fails(&mut sink, &upserts(&t, vec![vec![Value::Int64(2)]], true)).await;
    assert!(err.is_transient(), "{err}");
    sink.rollback().await.ok();
    // Nothing of the killed transaction is visible; a new sink carries on.
    assert_eq!(count(&mut c, "target.k").await, 0);
    let mut sink = mysql_support::sink(&db).await;
    sink.begin().await.unwrap();
    sink.ensure_table(&t).await.unwrap();
    sink.apply(&upserts(&t, vec![vec![Value::Int64(2)]], true))
        .await
        .unwrap();
    sink.commit().await.unwrap();
    assert_eq!(count(&mut c, "target.k").await, 1);
    // Killed between statements while idle: the commit-less begin notices at the first write.
    c.query_drop(format!("KILL {}", sink.connection_id()))
        .await
        .unwrap();
    sink.begin().await.unwrap();
    let err = apply_fails(&mut sink, &upserts(&t, vec![vec![Value::Int64(3)]], true)).await;
    assert!(err.is_transient(), "{err}");
}

#[tokio::test]
async fn data_errors_are_definite_and_name_the_column_not_the_value() {
    let db = server();
    let mut c = client(&db).await;
    // The target is narrower than the source says: the server refuses.
    c.query_drop(
        "CREATE TABLE target.narrow (id bigint PRIMARY KEY, small smallint, short varchar(5), \
         j json, d date)",
    )
    .await
    .unwrap();
    let t = table(
        "narrow",
        vec![
            int8("id"),
            col("small", DataType::Int64, "bigint", true),
            col("short", DataType::Text { max_len: None }, "text", true),
            col("j", DataType::Json, "json", true),
            col("d", DataType::Text { max_len: None }, "text", true),
        ],
        &[0],
    );
    let secret = "s3cr3t-value";
    let cases = [
        (
            "small",
            &[1264][..],
            vec![
                Value::Int64(1),
                Value::Int64(9_999_999_999),
                Value::Null,
                Value::Null,
                Value::Null,
            ],
        ),
        (
            "short",
            &[1406, 1265][..],
            vec![
                Value::Int64(1),
                Value::Null,
                Value::Text(secret.into()),
                Value::Null,
                Value::Null,
            ],
        ),
        (
            "j",
            &[4025][..],
            vec![
                Value::Int64(1),
                Value::Null,
                Value::Null,
                Value::Text(secret.into()),
                Value::Null,
            ],
        ),
        (
            "d",
            &[1292, 1265][..],
            vec![
                Value::Int64(1),
                Value::Null,
                Value::Null,
                Value::Null,
                Value::Text(secret.into()),
            ],
        ),
    ];
    for opts in [
        sinks::mysql::MysqlSinkOptions {
            upsert: sinks::mysql::UpsertStrategy::InsertValues,
            ..Default::default()
        },
        sinks::mysql::MysqlSinkOptions {
            upsert: sinks::mysql::UpsertStrategy::LoadData,
            ..Default::default()
        },
    ] {
        let label = format!("{:?}", opts.upsert);
        let mut sink = sink_with(&db, opts).await;
        for (column, codes, row) in &cases {
            sink.begin().await.unwrap();
            sink.ensure_table(&t).await.unwrap();
            let err = apply_fails(&mut sink, &upserts(&t, vec![row.clone()], false)).await;
            sink.rollback().await.unwrap();
            let msg = err.to_string();
            assert!(!err.is_transient(), "{label}: {msg}");
            assert!(msg.contains(column), "{label}: {msg}");
            assert!(
                codes
                    .iter()
                    .any(|code| msg.contains(&format!("MySQL error {code}"))),
                "{label}: {msg}"
            );
            assert!(
                !msg.contains(secret) && !msg.contains("9999999999"),
                "{label}: {msg}"
            );
        }
        assert_eq!(count(&mut c, "target.narrow").await, 0);
    }
}

#[tokio::test]
async fn columns_added_to_a_table_written_in_the_open_transaction_replay_it() {
    let db = server();
    let mut c = client(&db).await;
    let v1 = table("evolve", vec![int8("id"), text_col("a")], &[0]);
    let mut v2 = (*v1).clone();
    v2.columns.push(text_col("b"));
    let v2 = std::sync::Arc::new(v2);
    let other = table("other", vec![int8("id")], &[0]);
    let mut sink = sink(&db).await;
    sink.begin().await.unwrap();
    sink.ensure_table(&v1).await.unwrap();
    sink.ensure_table(&other).await.unwrap();
    sink.apply(&upserts(&other, vec![vec![Value::Int64(1)]], true))
        .await
        .unwrap();
    // A table not yet written in this transaction is altered in place.
    let mut o2 = (*other).clone();
    o2.columns.push(text_col("extra"));
    let o2 = std::sync::Arc::new(o2);
    sink.apply(&upserts(
        &v1,
        vec![vec![Value::Int64(1), Value::Text("x".into())]],
        true,
    ))
    .await
    .unwrap();
    // `other` was written: its ALTER would wait for our own lock.
    let err = sink.ensure_table(&o2).await.unwrap_err();
    assert!(err.is_transient(), "{err}");
    assert!(err.to_string().contains("rolled back"), "{err}");
    sink.rollback().await.unwrap();
    assert_eq!(count(&mut c, "target.other").await, 0, "rolled back");
    assert_eq!(count(&mut c, "target.evolve").await, 0, "rolled back");
    // The replay finds the column in place and goes through.
    sink.begin().await.unwrap();
    sink.ensure_table(&other).await.unwrap();
    sink.apply(&upserts(&other, vec![vec![Value::Int64(1)]], true))
        .await
        .unwrap();
    sink.ensure_table(&o2).await.unwrap();
    sink.apply(&upserts(
        &o2,
        vec![vec![Value::Int64(2), Value::Text("e".into())]],
        true,
    ))
    .await
    .unwrap();
    sink.ensure_table(&v2).await.unwrap();
    sink.apply(&upserts(
        &v2,
        vec![vec![
            Value::Int64(1),
            Value::Text("x".into()),
            Value::Text("y".into()),
        ]],
        true,
    ))
    .await
    .unwrap();
    sink.commit().await.unwrap();
    assert_eq!(
        rows(&mut c, "SELECT id, extra FROM target.other ORDER BY id").await,
        vec![
            vec![Some("1".into()), None],
            vec![Some("2".into()), Some("e".into())]
        ]
    );
    assert_eq!(
        rows(&mut c, "SELECT id, a, b FROM target.evolve").await,
        vec![vec![Some("1".into()), Some("x".into()), Some("y".into())]]
    );
}
