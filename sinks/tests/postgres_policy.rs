//! Conflict policies (`TableChanges::policy`) in the PostgreSQL sink, for
//! every way upserts are written: prepared `INSERT ... VALUES`, `COPY` into
//! a stage then merge, and the `likely_new` bulk `COPY` with its fallback.

mod common;

use std::sync::Arc;

use common::*;
use engine::{ConflictPolicy, PartialUpdate, Row, Sink, TableChanges, TableSchema, Value};
use sinks::postgres::{PgSinkOptions, UpsertStrategy};

fn row(id: i64, name: &str) -> Row {
    vec![
        Value::Int64(id),
        Value::Text(name.into()),
        Value::Int32(id as i32),
    ]
}

fn items() -> Arc<TableSchema> {
    table(
        "public",
        "items",
        vec![
            int8("id"),
            text("name"),
            col("qty", engine::DataType::Int32, "integer", true),
        ],
        &[0],
    )
}

/// Target rows 1..=4 named `old`; then one batch: delete 1, partial update
/// of 2, upserts of 3 (exists) and 5 (absent).
fn changes(t: &Arc<TableSchema>, policy: ConflictPolicy, likely_new: bool) -> TableChanges {
    TableChanges {
        table: t.clone(),
        deletes: vec![vec![Value::Int64(1)]],
        partial_updates: vec![PartialUpdate {
            old_key: vec![Value::Int64(2)],
            row: vec![Value::Int64(2), Value::Text("p".into()), Value::Unchanged],
        }],
        upserts: vec![row(3, "new"), row(5, "new")],
        likely_new,
        policy,
        snapshot: false,
    }
}

async fn run(policy: ConflictPolicy, upsert: UpsertStrategy, likely_new: bool) -> Vec<String> {
    let pg = server().await;
    let c = client(&pg).await;
    let t = items();
    let opts = PgSinkOptions {
        upsert,
        copy_min_rows_new: 1,
        copy_min_rows: 1,
        ..PgSinkOptions::default()
    };
    let mut s = sink_with(&pg, opts).await;
    s.begin().await.unwrap();
    s.ensure_table(&t).await.unwrap();
    let old: Vec<Row> = (1..=4).map(|i| row(i, "old")).collect();
    s.apply(&upserts(&t, old, true)).await.unwrap();
    s.commit().await.unwrap();
    // Twice: every policy is idempotent.
    for _ in 0..2 {
        s.begin().await.unwrap();
        s.apply(&changes(&t, policy, likely_new)).await.unwrap();
        s.commit().await.unwrap();
    }
    rows(&c, "SELECT id || '=' || name FROM items ORDER BY id")
        .await
        .into_iter()
        .map(|r| r[0].clone().unwrap_or_default())
        .collect()
}

fn expected(policy: ConflictPolicy) -> Vec<&'static str> {
    match policy {
        ConflictPolicy::Upsert => vec!["2=p", "3=new", "4=old", "5=new"],
        ConflictPolicy::InsertOnly => vec!["1=old", "2=old", "3=old", "4=old", "5=new"],
        ConflictPolicy::UpdateOnly => vec!["1=old", "2=p", "3=new", "4=old"],
        ConflictPolicy::Ignore => vec!["2=old", "3=old", "4=old", "5=new"],
    }
}

const POLICIES: [ConflictPolicy; 4] = [
    ConflictPolicy::Upsert,
    ConflictPolicy::InsertOnly,
    ConflictPolicy::UpdateOnly,
    ConflictPolicy::Ignore,
];

#[tokio::test]
async fn policies_with_insert_values() {
    for p in POLICIES {
        assert_eq!(
            run(p, UpsertStrategy::InsertValues, false).await,
            expected(p),
            "{p:?}"
        );
    }
}

#[tokio::test]
async fn policies_with_copy_and_merge() {
    for p in POLICIES {
        assert_eq!(
            run(p, UpsertStrategy::Copy, false).await,
            expected(p),
            "{p:?}"
        );
    }
}

#[tokio::test]
async fn policies_with_the_bulk_copy_fast_path_and_its_fallback() {
    // Key 3 exists: the direct COPY fails and falls back to the merge.
    for p in POLICIES {
        assert_eq!(
            run(p, UpsertStrategy::Copy, true).await,
            expected(p),
            "{p:?}"
        );
    }
}

#[tokio::test]
async fn update_only_on_a_key_only_table_and_insert_only_fast_path() {
    let pg = server().await;
    let c = client(&pg).await;
    let t = table("public", "tags", vec![int8("a"), int8("b")], &[0, 1]);
    let mut s = sink_with(
        &pg,
        PgSinkOptions {
            upsert: UpsertStrategy::Copy,
            copy_min_rows_new: 1,
            copy_min_rows: 1,
            ..PgSinkOptions::default()
        },
    )
    .await;
    let pair = |a: i64, b: i64| vec![Value::Int64(a), Value::Int64(b)];
    s.begin().await.unwrap();
    s.ensure_table(&t).await.unwrap();
    s.apply(&upserts(&t, vec![pair(1, 1)], true)).await.unwrap();
    let mut ch = upserts(&t, vec![pair(1, 1), pair(2, 2)], false);
    ch.policy = ConflictPolicy::UpdateOnly;
    s.apply(&ch).await.unwrap();
    // New keys only: the direct COPY succeeds under INSERT_ONLY.
    let mut ch = upserts(&t, vec![pair(3, 3), pair(4, 4)], true);
    ch.policy = ConflictPolicy::InsertOnly;
    s.apply(&ch).await.unwrap();
    s.commit().await.unwrap();
    let got = rows(&c, "SELECT a || ',' || b FROM tags ORDER BY a").await;
    let got: Vec<_> = got
        .into_iter()
        .map(|r| r[0].clone().unwrap_or_default())
        .collect();
    assert_eq!(got, ["1,1", "3,3", "4,4"]);
}
