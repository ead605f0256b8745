//! PostgreSQL sink against a private server: existing and unusable target
//! tables, inserts, upserts, deletes, composite keys and partial updates.

mod common;

use std::sync::Arc;

use common::*;
use engine::{DataType, PartialUpdate, Row, Sink, Value};
use sinks::postgres::{DeleteStrategy, PgSinkOptions, UpsertStrategy};

#[tokio::test]
async fn existing_table_gets_missing_columns_and_keeps_its_own() {
    let pg = server().await;
    let c = client(&pg).await;
    c.batch_execute("CREATE TABLE items (id bigint PRIMARY KEY, name text, extra int DEFAULT 42)")
        .await
        .unwrap();
    let t = table(
        "public",
        "items",
        vec![
            int8("id"),
            text("name"),
            col(
                "price",
                DataType::Decimal {
                    precision: Some(8),
                    scale: Some(2),
                },
                "numeric(8,2)",
                false,
            ),
        ],
        &[0],
    );
    let mut s = sink(&pg).await;
    s.begin().await.unwrap();
    s.ensure_table(&t).await.unwrap();
    let row = |id: i64, p: &str| {
        vec![
            Value::Int64(id),
            Value::Text(format!("n{id}")),
            Value::Decimal(p.into()),
        ]
    };
    s.apply(&upserts(&t, vec![row(1, "1.50"), row(2, "2.00")], true))
        .await
        .unwrap();
    s.commit().await.unwrap();
    assert_eq!(
        rows(&c, "SELECT id, name, extra, price FROM items ORDER BY id").await,
        vec![
            vec![
                Some("1".into()),
                Some("n1".into()),
                Some("42".into()),
                Some("1.50".into())
            ],
            vec![
                Some("2".into()),
                Some("n2".into()),
                Some("42".into()),
                Some("2.00".into())
            ],
        ]
    );
    let ty = scalar(
        &c,
        "SELECT format_type(atttypid, atttypmod) FROM pg_attribute \
         WHERE attrelid = 'items'::regclass AND attname = 'price'",
    )
    .await;
    assert_eq!(ty.as_deref(), Some("numeric(8,2)"));

    // A schema change later in the stream adds the new column too.
    let mut t2 = (*t).clone();
    t2.columns.push(col(
        "tags",
        DataType::Array(Box::new(DataType::Text { max_len: None })),
        "text[]",
        true,
    ));
    let t2 = Arc::new(t2);
    s.begin().await.unwrap();
    s.ensure_table(&t2).await.unwrap();
    let mut r = row(3, "3.00");
    r.push(Value::Array(vec![Value::Text("x".into())]));
    s.apply(&upserts(&t2, vec![r], false)).await.unwrap();
    s.commit().await.unwrap();
    assert_eq!(
        scalar(&c, "SELECT tags FROM items WHERE id = 3")
            .await
            .as_deref(),
        Some("{x}")
    );
    assert_eq!(
        scalar(&c, "SELECT tags FROM items WHERE id = 1").await,
        None
    );
}

#[tokio::test]
async fn unusable_targets_are_clear_definite_errors() {
    let pg = server().await;
    let c = client(&pg).await;
    c.batch_execute(
        "CREATE TABLE orders (id bigint, v text); \
         CREATE TABLE wide_pk (id bigint, v text, PRIMARY KEY (id, v)); \
         CREATE TABLE uniq (id bigint NOT NULL UNIQUE, v text); \
         CREATE TABLE nokey (v text PRIMARY KEY)",
    )
    .await
    .unwrap();
    let t = |name: &str| table("public", name, vec![int8("id"), text("v")], &[0]);
    let mut s = sink(&pg).await;
    s.begin().await.unwrap();
    let err = s.ensure_table(&t("orders")).await.unwrap_err();
    assert!(!err.is_transient());
    assert_eq!(
        err.to_string(),
        "target: target table public.orders has no primary key or unique constraint on (id): \
         add one, or let dbsync create the table"
    );
    s.rollback().await.unwrap();

    s.begin().await.unwrap();
    let err = s.ensure_table(&t("wide_pk")).await.unwrap_err().to_string();
    assert!(
        err.contains("no primary key or unique constraint on (id)"),
        "{err}"
    );
    s.rollback().await.unwrap();

    s.begin().await.unwrap();
    let err = s.ensure_table(&t("nokey")).await.unwrap_err();
    assert!(!err.is_transient());
    assert!(err.to_string().contains("has no column id"), "{err}");
    s.rollback().await.unwrap();

    // A unique constraint on the key is enough.
    s.begin().await.unwrap();
    s.ensure_table(&t("uniq")).await.unwrap();
    s.apply(&upserts(
        &t("uniq"),
        vec![vec![Value::Int64(1), Value::Text("a".into())]],
        false,
    ))
    .await
    .unwrap();
    s.apply(&upserts(
        &t("uniq"),
        vec![vec![Value::Int64(1), Value::Text("b".into())]],
        true,
    ))
    .await
    .unwrap();
    s.commit().await.unwrap();
    assert_eq!(
        pairs(&c, "uniq").await,
        vec![("1".into(), Some("b".into()))]
    );

    // Missing table without create_tables.
    let mut cfg = target_config(&pg);
    cfg.create_tables = false;
    let mut s = sinks::postgres::PostgresSink::connect(&cfg).await.unwrap();
    s.begin().await.unwrap();
    let err = s.ensure_table(&t("absent")).await.unwrap_err();
    assert!(!err.is_transient());
    assert_eq!(
        err.to_string(),
        "target: target table public.absent does not exist: create it, or set create_tables = true"
    );
}

fn kv(id: i64, v: &str) -> Row {
    vec![Value::Int64(id), Value::Text(v.into())]
}

fn key(id: i64) -> Row {
    vec![Value::Int64(id)]
}

fn strategies() -> Vec<PgSinkOptions> {
    let mut all = Vec::new();
    for upsert in [
        UpsertStrategy::Auto,
        UpsertStrategy::Copy,
        UpsertStrategy::InsertValues,
    ] {
        for delete in [DeleteStrategy::Unnest, DeleteStrategy::CopyStage] {
            all.push(PgSinkOptions {
                upsert,
                delete,
                ..Default::default()
            });
        }
    }
    all
}

#[tokio::test]
async fn inserts_upserts_deletes_and_composite_keys_with_every_strategy() {
    let pg = server().await;
    let c = client(&pg).await;
    for (n, opts) in strategies().into_iter().enumerate() {
        let what = format!("{opts:?}");
        let t = table(
            "public",
            &format!("kv{n}"),
            vec![int8("id"), text("v")],
            &[0],
        );
        let ck = table(
            "public",
            &format!("ck{n}"),
            vec![
                text("region"),
                col("id", DataType::Int32, "integer", false),
                text("v"),
            ],
            &[0, 1],
        );
        let mut s = sink_with(&pg, opts).await;
        s.begin().await.unwrap();
        s.ensure_table(&t).await.unwrap();
        s.ensure_table(&ck).await.unwrap();
        let first: Vec<Row> = (1..=5).map(|i| kv(i, &format!("v{i}"))).collect();
        s.apply(&upserts(&t, first, true)).await.unwrap();
        s.commit().await.unwrap();

        s.begin().await.unwrap();
        let mut ch = upserts(&t, vec![kv(1, "one-b"), kv(6, "six")], false);
        ch.deletes = vec![key(2), key(99)];
        s.apply(&ch).await.unwrap();
        s.commit().await.unwrap();
        let want = |pairs: &[(i64, &str)]| -> Vec<(String, Option<String>)> {
            pairs
                .iter()
                .map(|(i, v)| (i.to_string(), Some(v.to_string())))
                .collect()
        };
        let got = pairs(&c, &format!("kv{n}")).await;
        assert_eq!(
            got,
            want(&[(1, "one-b"), (3, "v3"), (4, "v4"), (5, "v5"), (6, "six")]),
            "{what}"
        );

        // The same table twice in one transaction: staged rows of the first
        // batch must not leak into the second.
        s.begin().await.unwrap();
        s.apply(&upserts(&t, vec![kv(3, "x"), kv(7, "seven")], false))
            .await
            .unwrap();
        let mut ch = upserts(&t, vec![kv(8, "eight")], false);
        ch.deletes = vec![key(3), key(7)];
        s.apply(&ch).await.unwrap();
        s.apply(&deletes(&t, vec![key(4)])).await.unwrap();
        s.apply(&deletes(&t, vec![key(5)])).await.unwrap();
        s.commit().await.unwrap();
        let got = pairs(&c, &format!("kv{n}")).await;
        assert_eq!(
            got,
            want(&[(1, "one-b"), (6, "six"), (8, "eight")]),
            "{what}"
        );

        let ckr = |r: &str, id: i32, v: &str| {
            vec![
                Value::Text(r.into()),
                Value::Int32(id),
                Value::Text(v.into()),
            ]
        };
        let ckey = |r: &str, id: i32| vec![Value::Text(r.into()), Value::Int32(id)];
        s.begin().await.unwrap();
        s.apply(&upserts(
            &ck,
            vec![ckr("eu", 1, "a"), ckr("us", 1, "b"), ckr("eu", 2, "c")],
            true,
        ))
        .await
        .unwrap();
        s.commit().await.unwrap();
        s.begin().await.unwrap();
        let mut ch = upserts(&ck, vec![ckr("us", 1, "b2"), ckr("us", 2, "d")], false);
        ch.deletes = vec![ckey("eu", 1), ckey("us", 3)];
        s.apply(&ch).await.unwrap();
        s.commit().await.unwrap();
        assert_eq!(
            rows(
                &c,
                &format!("SELECT region, id::text, v FROM ck{n} ORDER BY 1, 2")
            )
            .await,
            vec![
                vec![Some("eu".into()), Some("2".into()), Some("c".into())],
                vec![Some("us".into()), Some("1".into()), Some("b2".into())],
                vec![Some("us".into()), Some("2".into()), Some("d".into())],
            ],
            "{what}"
        );
    }
}

#[tokio::test]
async fn all_key_columns_upsert_does_nothing_on_conflict() {
    let pg = server().await;
    let c = client(&pg).await;
    let t = table(
        "public",
        "tags",
        vec![
            int8("item"),
            col("tag", DataType::Text { max_len: None }, "text", false),
        ],
        &[0, 1],
    );
    for upsert in [UpsertStrategy::Copy, UpsertStrategy::InsertValues] {
        let mut s = sink_with(
            &pg,
            PgSinkOptions {
                upsert,
                ..Default::default()
            },
        )
        .await;
        s.begin().await.unwrap();
        s.ensure_table(&t).await.unwrap();
        let rows_: Vec<Row> = vec![
            vec![Value::Int64(1), Value::Text("a".into())],
            vec![Value::Int64(1), Value::Text("b".into())],
        ];
        s.apply(&upserts(&t, rows_.clone(), false)).await.unwrap();
        s.apply(&upserts(&t, rows_, true)).await.unwrap();
        s.commit().await.unwrap();
    }
    assert_eq!(count(&c, "tags").await, 2);
}

#[tokio::test]
async fn partial_update_keeps_unchanged_columns() {
    let pg = server().await;
    let c = client(&pg).await;
    let t = table(
        "public",
        "docs",
        vec![
            int8("id"),
            text("title"),
            text("body"),
            col("n", DataType::Int32, "integer", true),
        ],
        &[0],
    );
    let body: String = "0123456789abcdef".repeat(64 * 1024);
    let mut s = sink(&pg).await;
    s.begin().await.unwrap();
    s.ensure_table(&t).await.unwrap();
    let doc = |id: i64| {
        vec![
            Value::Int64(id),
            Value::Text("t".into()),
            Value::Text(body.clone()),
            Value::Int32(1),
        ]
    };
    s.apply(&upserts(&t, vec![doc(1), doc(2), doc(3)], true))
        .await
        .unwrap();
    s.commit().await.unwrap();

    s.begin().await.unwrap();
    let updates = vec![
        PartialUpdate {
            old_key: key(1),
            row: vec![
                Value::Int64(1),
                Value::Text("t2".into()),
                Value::Unchanged,
                Value::Int32(2),
            ],
        },
        // The key itself changes.
        PartialUpdate {
            old_key: key(2),
            row: vec![
                Value::Int64(20),
                Value::Null,
                Value::Unchanged,
                Value::Unchanged,
            ],
        },
        // Nothing but the key: a no-op update of the key to itself.
        PartialUpdate {
            old_key: key(3),
            row: vec![
                Value::Int64(3),
                Value::Unchanged,
                Value::Unchanged,
                Value::Unchanged,
            ],
        },
    ];
    let mut ch = partial(&t, updates);
    ch.upserts = vec![vec![Value::Int64(4), Value::Null, Value::Null, Value::Null]];
    ch.deletes = vec![key(99)];
    s.apply(&ch).await.unwrap();
    s.commit().await.unwrap();
    let got = rows(&c, "SELECT id, title, md5(body) = md5(repeat('0123456789abcdef', 65536)), n FROM docs ORDER BY id").await;
    let r = |v: [Option<&str>; 4]| v.iter().map(|x| x.map(str::to_string)).collect::<Vec<_>>();
    assert_eq!(
        got,
        vec![
            r([Some("1"), Some("t2"), Some("t"), Some("2")]),
            r([Some("3"), Some("t"), Some("t"), Some("1")]),
            r([Some("4"), None, None, None]),
            r([Some("20"), None, Some("t"), Some("1")]),
        ]
    );
}

#[tokio::test]
async fn text_keys_with_tabs_newlines_and_quotes() {
    let pg = server().await;
    let c = client(&pg).await;
    let t = table(
        "public",
        "tk",
        vec![
            col("k", DataType::Text { max_len: None }, "text", false),
            text("v"),
        ],
        &[0],
    );
    let keys = [
        "a\tb",
        "line\nbreak",
        "cr\rx",
        "back\\slash",
        "quote\"d",
        "{brace,comma}",
        "  spaced  ",
        "NULL",
        "\\N",
        "ünï",
        "",
    ];
    let row = |k: &str, v: &str| vec![Value::Text(k.into()), Value::Text(v.into())];
    let tkey = |k: &str| vec![Value::Text(k.into())];
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
    s.apply(&upserts(
        &t,
        keys.iter().map(|k| row(k, "1")).collect(),
        true,
    ))
    .await
    .unwrap();
    s.apply(&upserts(
        &t,
        keys.iter().map(|k| row(k, "2")).collect(),
        false,
    ))
    .await
    .unwrap();
    s.commit().await.unwrap();
    let mut got = pairs(&c, "tk").await;
    got.sort();
    let mut want: Vec<(String, Option<String>)> = keys
        .iter()
        .map(|k| (k.to_string(), Some("2".into())))
        .collect();
    want.sort();
    assert_eq!(got, want);

    // Half the keys deleted with each delete strategy.
    let (a, b) = keys.split_at(keys.len() / 2);
    for (delete, part) in [(DeleteStrategy::Unnest, a), (DeleteStrategy::CopyStage, b)] {
        let mut s = sink_with(
            &pg,
            PgSinkOptions {
                delete,
                ..Default::default()
            },
        )
        .await;
        s.begin().await.unwrap();
        s.ensure_table(&t).await.unwrap();
        s.apply(&deletes(&t, part.iter().map(|k| tkey(k)).collect()))
            .await
            .unwrap();
        s.commit().await.unwrap();
        for k in part {
            let n: i64 = s_count(&c, k).await;
            assert_eq!(n, 0, "{delete:?} left {k:?}");
        }
    }
    assert_eq!(count(&c, "tk").await, 0);
}

async fn s_count(c: &tokio_postgres::Client, k: &str) -> i64 {
    c.query_one("SELECT count(*) FROM tk WHERE k = $1", &[&k])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn likely_new_falls_back_to_merge_when_keys_exist() {
    let pg = server().await;
    let c = client(&pg).await;
    let t = table("public", "ln", vec![int8("id"), text("v")], &[0]);
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
    s.apply(&upserts(&t, (1..=3).map(|i| kv(i, "old")).collect(), true))
        .await
        .unwrap();
    s.commit().await.unwrap();

    s.begin().await.unwrap();
    s.apply(&upserts(&t, (2..=6).map(|i| kv(i, "new")).collect(), true))
        .await
        .unwrap();
    // The transaction is still healthy after the fallback.
    s.apply(&upserts(
        &t,
        (7..=8).map(|i| kv(i, "newer")).collect(),
        true,
    ))
    .await
    .unwrap();
    s.apply(&upserts(&t, vec![kv(8, "merged")], true))
        .await
        .unwrap();
    s.commit().await.unwrap();
    let got = pairs(&c, "ln").await;
    let want: Vec<(String, Option<String>)> = [
        (1, "old"),
        (2, "new"),
        (3, "new"),
        (4, "new"),
        (5, "new"),
        (6, "new"),
        (7, "newer"),
        (8, "merged"),
    ]
    .iter()
    .map(|(i, v)| (i.to_string(), Some(v.to_string())))
    .collect();
    assert_eq!(got, want);
}
