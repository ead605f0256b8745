//! PostgreSQL sink against a private server: transactions, truncate,
//! connection settings and error classification.

mod common;

use std::sync::Arc;

use common::*;
use engine::config::{ConnUrl, PostgresTargetConfig};
use engine::{DataType, ErrorClass, Row, Sink, Value};
use sinks::postgres::{PgSinkOptions, PostgresSink, UpsertStrategy};
use testkit::{PgAuth, PgOptions, PgServer};

fn kv(id: i64, v: &str) -> Row {
    vec![Value::Int64(id), Value::Text(v.into())]
}

fn kv_table(name: &str) -> Arc<engine::TableSchema> {
    table("public", name, vec![int8("id"), text("v")], &[0])
}

#[tokio::test]
async fn commit_makes_everything_visible_at_once() {
    let pg = server().await;
    let other = client(&pg).await;
    let a = kv_table("a");
    let b = kv_table("b");
    let mut s = sink(&pg).await;
    s.begin().await.unwrap();
    s.ensure_table(&a).await.unwrap();
    s.ensure_table(&b).await.unwrap();
    s.apply(&upserts(&a, vec![kv(1, "x")], true)).await.unwrap();
    s.commit().await.unwrap();

    s.begin().await.unwrap();
    s.apply(&upserts(&a, (2..=2000).map(|i| kv(i, "a")).collect(), true))
        .await
        .unwrap();
    s.apply(&upserts(&b, (1..=10).map(|i| kv(i, "b")).collect(), false))
        .await
        .unwrap();
    s.apply(&deletes(&a, vec![vec![Value::Int64(1)]]))
        .await
        .unwrap();
    assert_eq!(count(&other, "a").await, 1);
    assert_eq!(count(&other, "b").await, 0);
    assert_eq!(
        scalar(&other, "SELECT v FROM a").await.as_deref(),
        Some("x")
    );
    s.commit().await.unwrap();
    assert_eq!(count(&other, "a").await, 1999);
    assert_eq!(count(&other, "b").await, 10);
}

#[tokio::test]
async fn rollback_leaves_nothing_and_the_sink_recovers() {
    let pg = server().await;
    let other = client(&pg).await;
    let t = kv_table("rb");
    for upsert in [UpsertStrategy::Copy, UpsertStrategy::InsertValues] {
        let mut s = sink_with(
            &pg,
            PgSinkOptions {
                upsert,
                ..Default::default()
            },
        )
        .await;
        // The table is created inside the transaction that is rolled back.
        s.begin().await.unwrap();
        s.ensure_table(&t).await.unwrap();
        s.apply(&upserts(&t, vec![kv(1, "x")], false))
            .await
            .unwrap();
        s.rollback().await.unwrap();
        assert_eq!(
            scalar(&other, "SELECT to_regclass('public.rb')::text").await,
            None
        );

        // The pipeline does not call ensure_table again: the sink notices.
        s.begin().await.unwrap();
        s.apply(&upserts(&t, vec![kv(1, "y"), kv(2, "z")], false))
            .await
            .unwrap();
        s.commit().await.unwrap();
        assert_eq!(count(&other, "rb").await, 2);

        s.begin().await.unwrap();
        s.apply(&upserts(&t, vec![kv(3, "w")], true)).await.unwrap();
        s.apply(&deletes(&t, vec![vec![Value::Int64(1)]]))
            .await
            .unwrap();
        s.truncate(&t.id).await.unwrap();
        s.rollback().await.unwrap();
        assert_eq!(
            pairs(&other, "rb").await,
            vec![
                ("1".into(), Some("y".into())),
                ("2".into(), Some("z".into()))
            ]
        );
        other.batch_execute("DROP TABLE rb").await.unwrap();
    }

    // Staging tables first created in a rolled-back transaction are created
    // again (the table itself survives the rollback).
    let t = kv_table("rb2");
    other
        .batch_execute("CREATE TABLE rb2 (id bigint PRIMARY KEY, v text)")
        .await
        .unwrap();
    let mut s = sink_with(
        &pg,
        PgSinkOptions {
            upsert: UpsertStrategy::Copy,
            ..Default::default()
        },
    )
    .await;
    s.begin().await.unwrap();
    s.ensure_table(&t).await.unwrap();
    s.commit().await.unwrap();
    for round in 0..2 {
        s.begin().await.unwrap();
        s.apply(&upserts(&t, vec![kv(1, "a"), kv(2, "b")], false))
            .await
            .unwrap();
        s.apply(&deletes(&t, vec![vec![Value::Int64(2)]]))
            .await
            .unwrap();
        if round == 0 {
            s.rollback().await.unwrap();
        } else {
            s.commit().await.unwrap();
        }
    }
    assert_eq!(
        pairs(&other, "rb2").await,
        vec![("1".into(), Some("a".into()))]
    );
}

#[tokio::test]
async fn empty_transactions_and_errors_outside_transactions() {
    let pg = server().await;
    let other = client(&pg).await;
    let t = kv_table("et");
    let mut s = sink(&pg).await;
    // ensure_table outside a transaction commits its DDL by itself.
    s.ensure_table(&t).await.unwrap();
    assert_eq!(count(&other, "et").await, 0);
    s.begin().await.unwrap();
    s.commit().await.unwrap();
    s.begin().await.unwrap();
    s.rollback().await.unwrap();
    let err = s
        .apply(&upserts(&t, vec![kv(1, "a")], true))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("outside a target transaction"),
        "{err}"
    );
    assert!(s.commit().await.is_err());
    s.begin().await.unwrap();
    assert!(s.begin().await.is_err());
    s.apply(&upserts(&t, vec![kv(1, "a")], true)).await.unwrap();
    s.commit().await.unwrap();
    assert_eq!(count(&other, "et").await, 1);
}

#[tokio::test]
async fn truncate_inside_the_transaction() {
    let pg = server().await;
    let other = client(&pg).await;
    let t = kv_table("tr");
    let mut s = sink(&pg).await;
    s.begin().await.unwrap();
    s.ensure_table(&t).await.unwrap();
    s.apply(&upserts(&t, (1..=5).map(|i| kv(i, "a")).collect(), true))
        .await
        .unwrap();
    s.commit().await.unwrap();

    s.begin().await.unwrap();
    s.truncate(&t.id).await.unwrap();
    s.apply(&upserts(&t, vec![kv(9, "after")], true))
        .await
        .unwrap();
    s.commit().await.unwrap();
    assert_eq!(
        pairs(&other, "tr").await,
        vec![("9".into(), Some("after".into()))]
    );
}

async fn sink_pid(c: &tokio_postgres::Client) -> i32 {
    c.query_one(
        "SELECT pid FROM pg_stat_activity WHERE application_name = 'dbsync' AND pid <> pg_backend_pid()",
        &[],
    )
    .await
    .unwrap()
    .get(0)
}

#[tokio::test]
async fn terminated_connection_is_transient() {
    let pg = server().await;
    let other = client(&pg).await;
    let t = kv_table("term");
    let mut s = sink(&pg).await;
    s.begin().await.unwrap();
    s.ensure_table(&t).await.unwrap();
    s.apply(&upserts(&t, vec![kv(1, "a")], true)).await.unwrap();
    let pid = sink_pid(&other).await;
    other
        .execute("SELECT pg_terminate_backend($1)", &[&pid])
        .await
        .unwrap();
    let err = s
        .apply(&upserts(&t, vec![kv(2, "b")], true))
        .await
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::Transient, "{err}");
    assert!(err.to_string().contains("public.term"), "{err}");
    assert!(s.rollback().await.is_err());
    // The table was created in the lost transaction: nothing is left.
    assert_eq!(
        scalar(&other, "SELECT to_regclass('public.term')::text").await,
        None
    );

    // A server that is not there: transient too.
    let cfg = PostgresTargetConfig {
        url: ConnUrl::new(format!(
            "postgres://postgres@127.0.0.1:{}/x",
            testkit::free_port()
        )),
        password_env: None,
        create_tables: true,
    };
    let err = PostgresSink::connect(&cfg).await.err().unwrap();
    assert_eq!(err.class(), ErrorClass::Transient, "{err}");
}

#[tokio::test]
async fn rejected_values_are_definite_and_not_shown() {
    let pg = server().await;
    let other = client(&pg).await;
    other
        .batch_execute("CREATE TABLE typed (id bigint PRIMARY KEY, n integer)")
        .await
        .unwrap();
    let short = table(
        "public",
        "short",
        vec![
            int8("id"),
            col(
                "code",
                DataType::Text { max_len: Some(3) },
                "character varying(3)",
                true,
            ),
        ],
        &[0],
    );
    // The source thinks `n` is of a type the target cannot parse.
    let typed = table(
        "public",
        "typed",
        vec![
            int8("id"),
            col(
                "n",
                DataType::Other {
                    name: "thing".into(),
                },
                "thing",
                true,
            ),
        ],
        &[0],
    );
    let secret = "SECRET-value-4711";
    let cases = [
        (UpsertStrategy::Copy, true),
        (UpsertStrategy::Copy, false),
        (UpsertStrategy::InsertValues, false),
    ];
    for (upsert, likely_new) in cases {
        let mut s = sink_with(
            &pg,
            PgSinkOptions {
                upsert,
                ..Default::default()
            },
        )
        .await;
        s.begin().await.unwrap();
        s.ensure_table(&short).await.unwrap();
        s.ensure_table(&typed).await.unwrap();
        s.commit().await.unwrap();

        s.begin().await.unwrap();
        let rows_ = vec![
            kv(1, "ok"),
            vec![Value::Int64(2), Value::Text(secret.into())],
        ];
        let err = s
            .apply(&upserts(&short, rows_, likely_new))
            .await
            .unwrap_err();
        let msg = err.to_string();
        assert_eq!(err.class(), ErrorClass::Definite, "{msg}");
        assert!(!msg.contains("SECRET"), "{msg}");
        assert!(
            msg.contains("public.short") && msg.contains("22001"),
            "{msg}"
        );
        assert!(msg.contains("character varying(3)"), "{msg}");
        assert!(
            s.commit().await.is_err(),
            "a failed transaction must not commit"
        );
        s.rollback().await.unwrap();

        s.begin().await.unwrap();
        let rows_ = vec![vec![Value::Int64(1), Value::Other(secret.into())]];
        let err = s
            .apply(&upserts(&typed, rows_, likely_new))
            .await
            .unwrap_err();
        let msg = err.to_string();
        assert_eq!(err.class(), ErrorClass::Definite, "{msg}");
        assert!(!msg.contains("SECRET"), "{msg}");
        assert!(
            msg.contains("public.typed") && msg.contains("22P02"),
            "{msg}"
        );
        s.rollback().await.unwrap();

        // A duplicate-free batch still works on the same connection.
        s.begin().await.unwrap();
        s.apply(&upserts(&short, vec![kv(3, "abc")], likely_new))
            .await
            .unwrap();
        s.commit().await.unwrap();
    }
    assert_eq!(count(&other, "short").await, 1);
    assert_eq!(count(&other, "typed").await, 0);
}

#[tokio::test]
async fn unchanged_marker_in_an_upsert_is_a_definite_bug_report() {
    let pg = server().await;
    let t = kv_table("un");
    let mut s = sink(&pg).await;
    s.begin().await.unwrap();
    s.ensure_table(&t).await.unwrap();
    for likely_new in [true, false] {
        let err = s
            .apply(&upserts(
                &t,
                vec![kv(1, "a"), vec![Value::Int64(2), Value::Unchanged]],
                likely_new,
            ))
            .await
            .unwrap_err();
        assert_eq!(err.class(), ErrorClass::Definite);
        let msg = err.to_string();
        assert!(
            msg.contains("public.un") && msg.contains("column v"),
            "{msg}"
        );
    }
    s.rollback().await.unwrap();
    let other = client(&pg).await;
    assert_eq!(
        scalar(&other, "SELECT to_regclass('public.un')::text").await,
        None
    );
}

#[tokio::test]
async fn connection_settings_tls_and_passwords() {
    let password = "pw-Secret-9";
    let pg = PgServer::start(PgOptions {
        auth: PgAuth::Password {
            method: "scram-sha-256".into(),
            password: password.into(),
        },
        extra_conf: vec!["log_statement = 'all'".into()],
        ..Default::default()
    });
    pg.create_database(DB).await;
    let url = format!("postgres://postgres@127.0.0.1:{}/{DB}", pg.port());
    let cfg = |url: String, env: Option<&str>| PostgresTargetConfig {
        url: ConnUrl::new(url),
        password_env: env.map(str::to_string),
        create_tables: true,
    };
    for mode in ["require", "verify-full", "verify-ca"] {
        let err = PostgresSink::connect(&cfg(format!("{url}?sslmode={mode}"), None))
            .await
            .err()
            .unwrap();
        assert_eq!(err.class(), ErrorClass::Definite);
        assert!(err.to_string().contains("not supported yet"), "{err}");
    }
    let err = PostgresSink::connect(&cfg(url.clone(), Some("DBSYNC_TEST_SINK_PW_UNSET")))
        .await
        .err()
        .unwrap();
    assert!(
        err.to_string().contains("DBSYNC_TEST_SINK_PW_UNSET"),
        "{err}"
    );

    std::env::set_var("DBSYNC_TEST_SINK_PW_WRONG", "not-the-password");
    let err = PostgresSink::connect(&cfg(url.clone(), Some("DBSYNC_TEST_SINK_PW_WRONG")))
        .await
        .err()
        .unwrap();
    assert_eq!(err.class(), ErrorClass::Definite, "{err}");
    assert!(err.to_string().contains("28P01"), "{err}");
    assert!(!err.to_string().contains("not-the-password"), "{err}");

    std::env::set_var("DBSYNC_TEST_SINK_PW", password);
    let mut s = PostgresSink::connect(&cfg(
        format!("{url}?sslmode=prefer"),
        Some("DBSYNC_TEST_SINK_PW"),
    ))
    .await
    .unwrap();
    // A password in the URL, through ${NAME}.
    let with_ref = format!(
        "postgres://postgres:${{DBSYNC_TEST_SINK_PW}}@127.0.0.1:{}/{DB}",
        pg.port()
    );
    PostgresSink::connect(&cfg(with_ref, None)).await.unwrap();

    // The session uses dbsync's settings (UTC): a round trip shows it.
    let t = table(
        "public",
        "settings",
        vec![
            int8("id"),
            col(
                "ts",
                DataType::TimestampTz { precision: None },
                "timestamp with time zone",
                true,
            ),
        ],
        &[0],
    );
    s.begin().await.unwrap();
    s.ensure_table(&t).await.unwrap();
    let when = chrono::DateTime::parse_from_rfc3339("2024-05-06T07:08:09.123456Z")
        .unwrap()
        .with_timezone(&chrono::Utc);
    s.apply(&upserts(
        &t,
        vec![vec![Value::Int64(1), Value::TimestampTz(when)]],
        true,
    ))
    .await
    .unwrap();
    s.commit().await.unwrap();
    let c = pg.connect(DB).await;
    let got: String = c
        .query_one(
            "SELECT to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') FROM settings",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(got, "2024-05-06 07:08:09.123456");
    // Durable commits: the session asked for them (the server logs statements).
    let log = pg.log();
    assert!(log.contains("SET synchronous_commit = on"), "{log}");
    assert!(!log.contains(password));
}
