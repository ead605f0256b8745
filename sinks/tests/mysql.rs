//! MySQL sink against a private MariaDB: created and existing target tables,
//! upserts, deletes, composite keys, partial updates, truncate and text keys.

mod mysql_support;

use engine::{DataType, Dialect, PartialUpdate, Sink, TableChanges, Value};
use mysql_async::prelude::Queryable;
use mysql_support::*;
use sinks::mysql::{MysqlSinkOptions, UpsertStrategy};

fn s(v: &str) -> Option<String> {
    Some(v.to_string())
}

#[tokio::test]
async fn creates_tables_and_databases_with_a_primary_key() {
    let db = server();
    let t = table_in(
        "fresh_db",
        "items",
        vec![int8("id"), text_col("name")],
        &[0],
        Dialect::Postgres,
    );
    let mut sink = sink(&db).await;
    sink.begin().await.unwrap();
    sink.ensure_table(&t).await.unwrap();
    sink.apply(&upserts(
        &t,
        vec![vec![Value::Int64(1), Value::Text("a".into())]],
        true,
    ))
    .await
    .unwrap();
    sink.commit().await.unwrap();
    let mut c = client(&db).await;
    let ddl = rows(&mut c, "SHOW CREATE TABLE fresh_db.items").await[0][1]
        .clone()
        .unwrap();
    assert!(ddl.contains("PRIMARY KEY (`id`)"), "{ddl}");
    assert!(ddl.contains("ENGINE=InnoDB"), "{ddl}");
    assert!(ddl.contains("utf8mb4"), "{ddl}");
    assert_eq!(count(&mut c, "fresh_db.items").await, 1);
}

#[tokio::test]
async fn existing_table_gets_missing_columns_and_keeps_its_own() {
    let db = server();
    let mut c = client(&db).await;
    c.query_drop(
        "CREATE TABLE target.items (id bigint PRIMARY KEY, name text, extra int DEFAULT 42)",
    )
    .await
    .unwrap();
    let price = col(
        "price",
        DataType::Decimal {
            precision: Some(8),
            scale: Some(2),
        },
        "numeric(8,2)",
        false,
    );
    let t = table("items", vec![int8("id"), text_col("Name"), price], &[0]);
    let mut sink = sink(&db).await;
    sink.begin().await.unwrap();
    sink.ensure_table(&t).await.unwrap();
    let row = |id: i64, p: &str| {
        vec![
            Value::Int64(id),
            Value::Text(format!("n{id}")),
            Value::Decimal(p.into()),
        ]
    };
    sink.apply(&upserts(&t, vec![row(1, "1.50"), row(2, "2.00")], true))
        .await
        .unwrap();
    sink.commit().await.unwrap();
    assert_eq!(
        rows(
            &mut c,
            "SELECT id, name, extra, price FROM target.items ORDER BY id"
        )
        .await,
        vec![
            vec![s("1"), s("n1"), s("42"), s("1.50")],
            vec![s("2"), s("n2"), s("42"), s("2.00")],
        ]
    );
    let ty = scalar(
        &mut c,
        "SELECT COLUMN_TYPE FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = 'target' \
         AND TABLE_NAME = 'items' AND COLUMN_NAME = 'price'",
    )
    .await;
    assert_eq!(ty.as_deref(), Some("decimal(8,2)"));
}

#[tokio::test]
async fn unusable_targets_are_clear_definite_errors() {
    let db = server();
    let mut c = client(&db).await;
    c.query_drop(
        "CREATE TABLE target.nopk (id bigint, v text); \
         CREATE TABLE target.wide_pk (id bigint, v varchar(10), PRIMARY KEY (id, v)); \
         CREATE TABLE target.uniq (id bigint NOT NULL, v text, UNIQUE KEY (id)); \
         CREATE TABLE target.prefix (id varchar(100), v text, UNIQUE KEY (id(10))); \
         CREATE TABLE target.myisam (id bigint PRIMARY KEY, v text) ENGINE=MyISAM; \
         CREATE VIEW target.vw AS SELECT 1 AS id, 'x' AS v",
    )
    .await
    .unwrap();
    let mut sink = sink(&db).await;
    sink.begin().await.unwrap();
    let t = |name: &str| table(name, vec![int8("id"), text_col("v")], &[0]);
    for (name, needle) in [
        ("nopk", "no primary key or unique index on (id)"),
        ("wide_pk", "no primary key or unique index on (id)"),
        ("myisam", "ENGINE=InnoDB"),
        ("vw", "not a table"),
    ] {
        let err = sink.ensure_table(&t(name)).await.unwrap_err();
        assert!(!err.is_transient(), "{name}: {err}");
        let msg = err.to_string();
        assert!(msg.contains(needle), "{name}: {msg}");
    }
    // A unique index on the key is as good as a primary key.
    sink.ensure_table(&t("uniq")).await.unwrap();
    // A prefix index does not make whole values unique.
    let tp = table(
        "prefix",
        vec![
            col(
                "id",
                DataType::Text { max_len: Some(100) },
                "varchar(100)",
                false,
            ),
            text_col("v"),
        ],
        &[0],
    );
    let err = sink.ensure_table(&tp).await.unwrap_err().to_string();
    assert!(err.contains("prefix indexes do not count"), "{err}");
    sink.rollback().await.unwrap();
    // Without create_tables a missing table is an error naming the fix.
    let mut cfg = target_config(&db);
    cfg.create_tables = false;
    let mut strict = sinks::mysql::MysqlSink::connect(&cfg).await.unwrap();
    strict.begin().await.unwrap();
    let err = strict
        .ensure_table(&t("missing"))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("create_tables = true"), "{err}");
}

fn strategies() -> Vec<(&'static str, MysqlSinkOptions)> {
    vec![
        (
            "values",
            MysqlSinkOptions {
                upsert: UpsertStrategy::InsertValues,
                ..Default::default()
            },
        ),
        (
            "load",
            MysqlSinkOptions {
                upsert: UpsertStrategy::LoadData,
                ..Default::default()
            },
        ),
    ]
}

#[tokio::test]
async fn upserts_deletes_and_partial_updates_with_a_composite_key() {
    let db = server();
    let mut c = client(&db).await;
    for (name, opts) in strategies() {
        let t = table(
            &format!("comp_{name}"),
            vec![
                text_col("body"),
                col(
                    "region",
                    DataType::Text { max_len: Some(8) },
                    "varchar(8)",
                    false,
                ),
                int8("id"),
                col("qty", DataType::Int32, "integer", true),
            ],
            &[1, 2],
        );
        let q = format!("SELECT region, id, qty, body FROM target.comp_{name} ORDER BY region, id");
        let row = |r: &str, id: i64, qty: i32, body: &str| {
            vec![
                Value::Text(body.into()),
                Value::Text(r.into()),
                Value::Int64(id),
                Value::Int32(qty),
            ]
        };
        let mut sink = sink_with(&db, opts).await;
        sink.begin().await.unwrap();
        sink.ensure_table(&t).await.unwrap();
        sink.apply(&upserts(
            &t,
            vec![
                row("eu", 1, 1, "a"),
                row("us", 1, 2, "b"),
                row("eu", 2, 3, "c"),
                row("EU", 1, 4, "d"),
            ],
            true,
        ))
        .await
        .unwrap();
        sink.commit().await.unwrap();
        // Case matters in keys (binary collation): "EU" and "eu" are two rows.
        assert_eq!(rows(&mut c, &q).await.len(), 4, "{name}");

        sink.begin().await.unwrap();
        let change = TableChanges {
            deletes: vec![vec![Value::Text("us".into()), Value::Int64(1)]],
            partial_updates: vec![PartialUpdate {
                old_key: vec![Value::Text("eu".into()), Value::Int64(2)],
                row: vec![
                    Value::Unchanged,
                    Value::Text("eu".into()),
                    Value::Int64(20),
                    Value::Int32(30),
                ],
            }],
            ..upserts(
                &t,
                vec![row("eu", 1, 10, "a2"), row("ap", 9, 9, "n")],
                false,
            )
        };
        sink.apply(&change).await.unwrap();
        // Deleting absent keys is a no-op; applying the same again is idempotent.
        sink.apply(&deletes(
            &t,
            vec![vec![Value::Text("zz".into()), Value::Int64(7)]],
        ))
        .await
        .unwrap();
        sink.apply(&upserts(&t, vec![row("ap", 9, 9, "n")], false))
            .await
            .unwrap();
        sink.commit().await.unwrap();
        assert_eq!(
            rows(&mut c, &q).await,
            vec![
                vec![s("EU"), s("1"), s("4"), s("d")],
                vec![s("ap"), s("9"), s("9"), s("n")],
                vec![s("eu"), s("1"), s("10"), s("a2")],
                vec![s("eu"), s("20"), s("30"), s("c")],
            ],
            "{name}"
        );
    }
}

#[tokio::test]
async fn many_rows_and_keys_span_several_statements() {
    let db = server();
    let mut c = client(&db).await;
    for (name, opts) in strategies() {
        let t = table(
            &format!("many_{name}"),
            vec![int8("id"), text_col("v")],
            &[0],
        );
        let opts = MysqlSinkOptions {
            values_rows: 100,
            delete_keys: 64,
            ..opts
        };
        let mut sink = sink_with(&db, opts).await;
        sink.begin().await.unwrap();
        sink.ensure_table(&t).await.unwrap();
        let rows_in: Vec<_> = (0..2_345)
            .map(|i| vec![Value::Int64(i), Value::Text(format!("v{i}"))])
            .collect();
        sink.apply(&upserts(&t, rows_in.clone(), true))
            .await
            .unwrap();
        // The same rows again (all conflicts) with new values.
        let again: Vec<_> = (0..2_345)
            .map(|i| vec![Value::Int64(i), Value::Text(format!("w{i}"))])
            .collect();
        sink.apply(&upserts(&t, again, true)).await.unwrap();
        let keys: Vec<_> = (0..2_345)
            .filter(|i| i % 3 == 0)
            .map(|i| vec![Value::Int64(i)])
            .collect();
        sink.apply(&deletes(&t, keys)).await.unwrap();
        sink.commit().await.unwrap();
        let table = format!("target.many_{name}");
        assert_eq!(count(&mut c, &table).await, 2_345 - 782, "{name}");
        let bad = scalar(
            &mut c,
            &format!("SELECT count(*) FROM {table} WHERE v <> concat('w', id) OR id % 3 = 0"),
        )
        .await;
        assert_eq!(bad.as_deref(), Some("0"), "{name}");
    }
}

#[tokio::test]
async fn truncate_is_transactional() {
    let db = server();
    let mut c = client(&db).await;
    let t = table("trunc", vec![int8("id")], &[0]);
    let mut sink = sink(&db).await;
    sink.begin().await.unwrap();
    sink.ensure_table(&t).await.unwrap();
    sink.apply(&upserts(
        &t,
        (0..10).map(|i| vec![Value::Int64(i)]).collect(),
        true,
    ))
    .await
    .unwrap();
    sink.commit().await.unwrap();
    // A truncate rolled back leaves the rows.
    sink.begin().await.unwrap();
    sink.truncate(&t.id).await.unwrap();
    assert_eq!(count(&mut c, "target.trunc").await, 10);
    sink.rollback().await.unwrap();
    assert_eq!(count(&mut c, "target.trunc").await, 10);
    // Truncate then new rows in one transaction.
    sink.begin().await.unwrap();
    sink.truncate(&t.id).await.unwrap();
    sink.apply(&upserts(&t, vec![vec![Value::Int64(99)]], false))
        .await
        .unwrap();
    assert_eq!(
        count(&mut c, "target.trunc").await,
        10,
        "not visible before commit"
    );
    sink.commit().await.unwrap();
    assert_eq!(
        rows(&mut c, "SELECT id FROM target.trunc").await,
        vec![vec![s("99")]]
    );
}

#[tokio::test]
async fn text_keys_with_quotes_backslashes_tabs_and_unicode() {
    let db = server();
    let mut c = client(&db).await;
    let keys = [
        "it's",
        "back\\slash",
        "tab\there",
        "new\nline",
        "cr\rx",
        "\\N",
        "",
        " lead",
        "trail ",
        "trail",
        "ünïcödé",
        "unicode",
        "😀",
        "a\"b",
        "`tick`",
        "nul\0byte",
        "100%_",
    ];
    for (name, opts) in strategies() {
        let t = table(
            &format!("keys_{name}"),
            vec![
                col("k", DataType::Text { max_len: None }, "text", false),
                int8("n"),
            ],
            &[0],
        );
        let mut sink = sink_with(&db, opts).await;
        sink.begin().await.unwrap();
        sink.ensure_table(&t).await.unwrap();
        let rows_in: Vec<_> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| vec![Value::Text((*k).into()), Value::Int64(i as i64)])
            .collect();
        sink.apply(&upserts(&t, rows_in, true)).await.unwrap();
        sink.commit().await.unwrap();
        let table = format!("target.keys_{name}");
        assert_eq!(count(&mut c, &table).await, keys.len() as i64, "{name}");
        for (i, k) in keys.iter().enumerate() {
            let got: Option<String> = c
                .exec_first(format!("SELECT k FROM {table} WHERE n = ?"), (i as i64,))
                .await
                .unwrap();
            assert_eq!(got.as_deref(), Some(*k), "{name} key {i}");
        }
        // Delete every other key and update the rest by key.
        sink.begin().await.unwrap();
        let dels: Vec<_> = keys
            .iter()
            .step_by(2)
            .map(|k| vec![Value::Text((*k).into())])
            .collect();
        let ups: Vec<_> = keys
            .iter()
            .skip(1)
            .step_by(2)
            .map(|k| vec![Value::Text((*k).into()), Value::Int64(-1)])
            .collect();
        sink.apply(&changes(&t, dels, Vec::new(), ups, false))
            .await
            .unwrap();
        sink.commit().await.unwrap();
        assert_eq!(
            rows(&mut c, &format!("SELECT count(*), sum(n) FROM {table}")).await,
            vec![vec![
                Some((keys.len() / 2).to_string()),
                Some(format!("-{}", keys.len() / 2))
            ]],
            "{name}"
        );
    }
}

#[tokio::test]
async fn conflict_policies_are_honored() {
    use engine::ConflictPolicy as P;
    let db = server();
    let mut c = client(&db).await;
    for (name, opts) in strategies() {
        for policy in [P::Upsert, P::InsertOnly, P::UpdateOnly, P::Ignore] {
            let tname = format!("pol_{name}_{}", policy.as_str().to_lowercase());
            let t = table(&tname, vec![int8("id"), text_col("v")], &[0]);
            let r = |id: i64, v: &str| vec![Value::Int64(id), Value::Text(v.into())];
            let mut sink = sink_with(&db, opts.clone()).await;
            sink.begin().await.unwrap();
            sink.ensure_table(&t).await.unwrap();
            // Rows 1..=3 exist before the policy applies.
            sink.apply(&upserts(
                &t,
                vec![r(1, "old"), r(2, "old"), r(3, "old")],
                true,
            ))
            .await
            .unwrap();
            let ch = TableChanges {
                policy,
                ..changes(
                    &t,
                    vec![vec![Value::Int64(1)]],
                    vec![PartialUpdate {
                        old_key: vec![Value::Int64(2)],
                        row: vec![Value::Int64(2), Value::Text("partial".into())],
                    }],
                    vec![r(3, "new"), r(4, "new")],
                    true,
                )
            };
            sink.apply(&ch).await.unwrap();
            sink.commit().await.unwrap();
            let got = rows(
                &mut c,
                &format!("SELECT id, v FROM target.{tname} ORDER BY id"),
            )
            .await;
            let want: Vec<(i64, &str)> = match policy {
                P::Upsert => vec![(2, "partial"), (3, "new"), (4, "new")],
                P::InsertOnly => vec![(1, "old"), (2, "old"), (3, "old"), (4, "new")],
                P::UpdateOnly => vec![(1, "old"), (2, "partial"), (3, "new")],
                P::Ignore => vec![(2, "old"), (3, "old"), (4, "new")],
            };
            let want: Vec<Vec<Option<String>>> = want
                .into_iter()
                .map(|(id, v)| vec![s(&id.to_string()), s(v)])
                .collect();
            assert_eq!(got, want, "{name} {}", policy.as_str());
        }
    }
}

#[tokio::test]
async fn credentials_come_from_the_environment_and_never_reach_errors() {
    let db = server();
    db.exec(
        "CREATE USER 'app'@'%' IDENTIFIED BY 'pw-s3cr3t'; \
         GRANT ALL PRIVILEGES ON *.* TO 'app'@'%'; FLUSH PRIVILEGES;",
    );
    let port = db.port();
    let cfg = |url: String, env: Option<&str>| engine::config::MysqlTargetConfig {
        url: engine::config::ConnUrl::new(url),
        password_env: env.map(String::from),
        create_tables: true,
    };
    std::env::set_var("DBSYNC_MYSQL_SINK_TEST_PW", "pw-s3cr3t");
    std::env::set_var("DBSYNC_MYSQL_SINK_TEST_BAD_PW", "wrong-s3cr3t");
    // password_env, and the mariadb:// scheme with a ${NAME} in the URL.
    for c in [
        cfg(
            format!("mysql://app@127.0.0.1:{port}/{DB}"),
            Some("DBSYNC_MYSQL_SINK_TEST_PW"),
        ),
        cfg(
            format!("mariadb://app:${{DBSYNC_MYSQL_SINK_TEST_PW}}@127.0.0.1:{port}/{DB}"),
            None,
        ),
    ] {
        let mut s = sinks::mysql::MysqlSink::connect(&c).await.unwrap();
        s.begin().await.unwrap();
        s.commit().await.unwrap();
        assert!(s.server_info().mariadb);
    }
    let err = sinks::mysql::MysqlSink::connect(&cfg(
        format!("mysql://app@127.0.0.1:{port}/{DB}"),
        Some("DBSYNC_MYSQL_SINK_TEST_BAD_PW"),
    ))
    .await
    .err()
    .unwrap();
    let msg = err.to_string();
    assert!(!err.is_transient(), "{msg}");
    assert!(msg.contains("1045") && msg.contains("password"), "{msg}");
    assert!(!msg.contains("s3cr3t"), "{msg}");
    let err = sinks::mysql::MysqlSink::connect(&cfg(
        format!("mysql://app:wrong-s3cr3t@127.0.0.1:{port}/{DB}"),
        None,
    ))
    .await
    .err()
    .unwrap();
    assert!(!err.to_string().contains("s3cr3t"), "{err}");
    assert!(err.to_string().contains("app:***@"), "{err}");
    // Nobody listening: transient.
    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let err = sinks::mysql::MysqlSink::connect(&cfg(
        format!("mysql://app:x-s3cr3t@127.0.0.1:{free}/{DB}"),
        None,
    ))
    .await
    .err()
    .unwrap();
    assert!(err.is_transient(), "{err}");
    assert!(!err.to_string().contains("s3cr3t"), "{err}");
    // A missing password variable is named, not guessed.
    let err = sinks::mysql::MysqlSink::connect(&cfg(
        format!("mysql://app@127.0.0.1:{port}/{DB}"),
        Some("DBSYNC_MYSQL_SINK_TEST_UNSET"),
    ))
    .await
    .err()
    .unwrap();
    assert!(
        err.to_string().contains("DBSYNC_MYSQL_SINK_TEST_UNSET"),
        "{err}"
    );
}
