//! Row semantics: filter move-in/move-out, key changes, deletes, scripts.

use super::tests::{cust, customers, mapped};
use super::*;
use crate::batch::{Coalescer, RowChange};
use crate::contracts::PartialUpdate;
use crate::value::{Row, Value};

const FILTERED: &str = r#"
source = "public.customers"
row_filter_condition = "status = 'ACTIVE'"
"#;

fn key_only(id: i64) -> Row {
    let mut r = vec![Value::Unchanged; 5];
    r[0] = Value::Int64(id);
    r
}

#[test]
fn updates_move_rows_in_and_out_of_the_filter() {
    let m = mapped(FILTERED, &customers());
    let active = cust(1, "a", "p", "1", "ACTIVE");
    let closed = cust(1, "a", "p", "1", "CLOSED");
    // in → in: an update.
    assert_eq!(
        m.map_update(Some(active.clone()), active.clone()).unwrap(),
        MappedChange::Update {
            before: Some(active.clone()),
            after: active.clone()
        }
    );
    // in → out: a delete of the row.
    assert_eq!(
        m.map_update(Some(active.clone()), closed.clone()).unwrap(),
        MappedChange::Delete(active.clone())
    );
    // out → in: an insert.
    assert_eq!(
        m.map_update(Some(closed.clone()), active.clone()).unwrap(),
        MappedChange::Insert(active.clone())
    );
    // out → out: nothing.
    assert_eq!(
        m.map_update(Some(closed.clone()), closed.clone()).unwrap(),
        MappedChange::Skip
    );
    // No old image (the usual PostgreSQL update): assumed inside, so a move
    // out still deletes and an update stays an upsert (inserting a moved-in row).
    assert_eq!(
        m.map_update(None, closed.clone()).unwrap(),
        MappedChange::Delete(closed.clone())
    );
    assert_eq!(
        m.map_update(None, active.clone()).unwrap(),
        MappedChange::Update {
            before: None,
            after: active.clone()
        }
    );
    // A key-only old image cannot tell: treated as inside.
    assert_eq!(
        m.map_update(Some(key_only(1)), closed.clone()).unwrap(),
        MappedChange::Delete(key_only(1))
    );
}

#[test]
fn unsent_columns_are_read_from_the_old_image_or_unknown() {
    let m = mapped(FILTERED, &customers());
    let mut toast = cust(1, "b", "p", "1", "x");
    toast[4] = Value::Unchanged;
    // The old image has the value: decided by it.
    let old_closed = cust(1, "a", "p", "1", "CLOSED");
    assert_eq!(
        m.map_update(Some(old_closed), toast.clone()).unwrap(),
        MappedChange::Skip
    );
    // Unknown: kept as an update (a partial update only touches an existing row).
    assert_eq!(
        m.map_update(None, toast.clone()).unwrap(),
        MappedChange::Update {
            before: None,
            after: toast
        }
    );
}

#[test]
fn deletes_respect_the_filter_and_need_the_target_key() {
    let m = mapped(FILTERED, &customers());
    assert_eq!(
        m.map_delete(cust(1, "a", "p", "1", "CLOSED")).unwrap(),
        MappedChange::Skip,
        "a row that was never in the target"
    );
    assert_eq!(
        m.map_delete(key_only(3)).unwrap(),
        MappedChange::Delete(key_only(3))
    );
    let m = mapped(
        "source = \"public.customers\"\nprimary_key_mapping = { source_columns = [\"phone\"], target_columns = [\"phone\"] }",
        &customers(),
    );
    let e = m.map_delete(key_only(3)).unwrap_err().to_string();
    assert!(
        e.contains("REPLICA IDENTITY FULL") && e.contains("(phone)"),
        "{e}"
    );
    let full = cust(3, "a", "555", "1", "x");
    assert_eq!(
        m.map_delete(full.clone()).unwrap(),
        MappedChange::Delete(full)
    );
}

#[test]
fn key_changes_become_delete_old_and_insert_new() {
    // Target key = phone (not the source key); a full old image shows the change.
    let m = mapped(
        r#"
source = "public.customers"
column_mappings = [{ source_column = "phone", target_column = "tel" }]
primary_key_mapping = { source_columns = ["phone"], target_columns = ["tel"] }
transform_rules = [{ column = "name", transform_type = "UPPER" }]
"#,
        &customers(),
    );
    let before = cust(1, "a", "111", "1", "x");
    let after = cust(1, "a", "222", "1", "x");
    let MappedChange::Update {
        before: Some(b),
        after: a,
    } = m.map_update(Some(before), after).unwrap()
    else {
        panic!("an update with its old target row")
    };
    assert_eq!(b[1], Value::Text("A".into()), "the old image is mapped too");
    let mut c = Coalescer::new();
    c.push_with(
        &m.target,
        m.policy,
        RowChange::Update {
            before: Some(&b),
            after: a.clone(),
        },
    )
    .ok();
    let out = c.drain();
    assert_eq!(out[0].deletes, vec![vec![Value::Text("111".into())]]);
    assert_eq!(out[0].upserts, vec![a]);
    // Without an old image the key is assumed unchanged.
    assert!(matches!(
        m.map_update(None, cust(1, "a", "333", "1", "x")).unwrap(),
        MappedChange::Update { before: None, .. }
    ));
}

#[test]
fn policies_travel_with_the_batch_and_keep_tables_apart() {
    let m = mapped(
        "source = \"public.customers\"\nconflict_resolution = \"INSERT_ONLY\"",
        &customers(),
    );
    assert_eq!(m.policy, ConflictPolicy::InsertOnly);
    assert!(!m.applies_truncate());
    let mut c = Coalescer::new();
    assert!(c
        .push_with(
            &m.target,
            m.policy,
            RowChange::Insert(cust(1, "a", "b", "1", "x"))
        )
        .is_ok());
    // Another policy for the same table must flush first.
    let r = cust(2, "a", "b", "1", "x");
    assert!(c
        .push_with(
            &m.target,
            ConflictPolicy::Upsert,
            RowChange::Insert(r.clone())
        )
        .is_err());
    assert_eq!(c.table_rows(&m.target.id), 1);
    let ch = c.drain_table(&m.target.id).unwrap();
    assert_eq!(ch.policy, ConflictPolicy::InsertOnly);
    assert!(c.is_empty() && c.bytes() == 0);
    assert!(c.drain_table(&m.target.id).is_none());
}

fn script(phase: &str, ty: &str, content: &str, extra: &str) -> String {
    format!(
        "source = \"public.customers\"\n[[script]]\nscript_name = \"s\"\nscript_type = \"{ty}\"\n\
         trigger_phase = \"{phase}\"\nscript_content = '''{content}'''\n{extra}"
    )
}

#[test]
fn sql_scripts_assign_and_keep() {
    let m = mapped(
        &script(
            "AFTER_TRANSFORM",
            "SQL",
            "SET name = UPPER(name) || :suffix, price = price * 2 WHERE price > 10",
            "script_params = { suffix = \"!\" }",
        ),
        &customers(),
    );
    let out = super::tests::insert(&m, cust(1, "ann", "p", "6.50", "x")).unwrap();
    assert_eq!(out[1], Value::Text("ANN!".into()));
    assert_eq!(out[3], Value::Decimal("13.00".into()));
    assert!(
        super::tests::insert(&m, cust(2, "b", "p", "4", "x")).is_none(),
        "dropped by WHERE"
    );
    let stats = &TableRouter::try_new(&[]).unwrap().script_stats();
    assert!(stats.is_empty());
}

#[test]
fn script_drop_of_an_updated_row_deletes_it() {
    let m = mapped(
        &script("BEFORE_WRITE", "SQL", "WHERE status <> 'GONE'", ""),
        &customers(),
    );
    let gone = cust(1, "a", "p", "1", "GONE");
    assert_eq!(
        m.map_update(None, gone.clone()).unwrap(),
        MappedChange::Delete(gone)
    );
}

const JS: &str = r#"
function transform(r, params) {
  if (r.status === 'DROP') return null;
  if (r.status === 'THROW') throw new Error('secret ' + r.name);
  if (r.status === 'TYPE') return r.nope.x;
  if (r.status === 'LOOP') { while (true) {} }
  if (r.status === 'BAD') { r.id = 'not a number'; return r; }
  r.name = r.name.toUpperCase() + params.tag;
  r.price = (Number(r.price) * 2).toFixed(2);
  return r;
}
"#;

fn js(on_error: &str) -> Arc<MappedTable> {
    mapped(
        &script(
            "BEFORE_TRANSFORM",
            "JAVASCRIPT",
            JS,
            &format!("error_handling = \"{on_error}\"\ntimeout_ms = 100\nscript_params = {{ tag = \"*\" }}"),
        ),
        &customers(),
    )
}

#[test]
fn javascript_scripts() {
    let m = js("THROW_EXCEPTION");
    let out = super::tests::insert(&m, cust(1, "ann", "p", "1.25", "x")).unwrap();
    assert_eq!(out[1], Value::Text("ANN*".into()));
    assert_eq!(out[3], Value::Decimal("2.50".into()));
    assert!(super::tests::insert(&m, cust(2, "a", "p", "1", "DROP")).is_none());
    let e = m
        .map_insert(cust(3, "hidden", "p", "1", "THROW"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("script \"s\"") && e.contains("threw Error"),
        "{e}"
    );
    assert!(!e.contains("hidden"), "a row value leaked: {e}");
    let e = m
        .map_insert(cust(4, "a", "p", "1", "TYPE"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("TypeError"), "{e}");
    let started = std::time::Instant::now();
    let e = m
        .map_insert(cust(5, "a", "p", "1", "LOOP"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("exceeded timeout_ms (100 ms)"), "{e}");
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    let e = m
        .map_insert(cust(6, "a", "p", "1", "BAD"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("column id") && e.contains("bigint"), "{e}");
    // Still usable after a timeout.
    assert!(super::tests::insert(&m, cust(7, "z", "p", "1", "x")).is_some());
}

#[test]
fn script_error_handling_and_statistics() {
    let m = js("LOG_AND_CONTINUE");
    let row = cust(3, "ann", "p", "1", "THROW");
    assert_eq!(
        super::tests::insert(&m, row.clone()),
        Some(row),
        "passed on unchanged"
    );
    let m = js("SKIP_RECORD");
    assert!(super::tests::insert(&m, cust(3, "a", "p", "1", "THROW")).is_none());
    assert_eq!(
        m.map_update(None, cust(3, "a", "p", "1", "THROW")).unwrap(),
        MappedChange::Skip,
        "a skipped update writes nothing (no delete)"
    );
    let mut r = TableRouter::try_new(&[super::tests::mapping(&script(
        "BEFORE_TRANSFORM",
        "JAVASCRIPT",
        JS,
        "error_handling = \"SKIP_RECORD\"\nscript_params = { tag = \"\" }",
    ))])
    .unwrap();
    let t = r.route(&customers()).unwrap().unwrap();
    for i in 0..10 {
        let status = if i % 5 == 0 {
            "THROW"
        } else if i % 5 == 1 {
            "DROP"
        } else {
            "x"
        };
        t.map_insert(cust(i, "a", "p", "1", status)).unwrap();
    }
    let handle = r.stats_handle();
    assert_eq!(handle.scripts(), r.script_stats());
    let s = &handle.scripts()[0];
    assert_eq!(
        (
            s.execution_count,
            s.errors,
            s.records_dropped,
            s.records_skipped
        ),
        (10, 2, 2, 2)
    );
    assert!(s.average_execution_time_ms > 0.0 && s.last_execution_time.is_some());
}

#[test]
fn after_write_scripts_can_fail_the_task() {
    let mut r = TableRouter::try_new(&[super::tests::mapping(&script(
        "AFTER_WRITE",
        "SQL",
        "SET price = price / (id - 1)",
        "",
    ))])
    .unwrap();
    let t = r.route(&customers()).unwrap().unwrap();
    let ok = TableChanges {
        table: t.target.clone(),
        deletes: vec![],
        partial_updates: vec![],
        upserts: vec![cust(2, "a", "b", "1", "c")],
        likely_new: true,
        policy: ConflictPolicy::Upsert,
        snapshot: false,
    };
    r.after_write(&ok).unwrap();
    let mut partial = cust(1, "a", "b", "1", "c");
    partial[2] = Value::Unchanged;
    let bad = TableChanges {
        partial_updates: vec![PartialUpdate {
            old_key: vec![Value::Int64(1)],
            row: partial,
        }],
        upserts: vec![],
        ..ok
    };
    let e = r.after_write(&bad).unwrap_err().to_string();
    assert!(
        e.contains("division by zero") && e.contains("script \"s\""),
        "{e}"
    );
}

#[test]
fn javascript_values_round_trip_by_type() {
    use crate::mapping::tests::table;
    use crate::value::DataType;
    let s = table(
        "public",
        "t",
        &[
            ("id", DataType::Int64),
            ("big", DataType::Int64),
            ("d", DataType::Date),
            ("j", DataType::Jsonb),
            ("arr", DataType::Array(Box::new(DataType::Int32))),
            ("f", DataType::Float64),
            ("u", DataType::Text { max_len: None }),
        ],
        &[0],
    );
    let m = mapped(
        &script(
            "BEFORE_WRITE",
            "JAVASCRIPT",
            "function transform(r) { r.big = r.big + 1n; r.j = { k: [1, 2] }; r.arr.push(4); r.f = r.f / 4; \
             if (r.u !== undefined) throw new TypeError('u was sent'); return r; }",
            "",
        )
        .replace("public.customers", "public.t"),
        &s,
    );
    let row = vec![
        Value::Int64(1),
        Value::Int64(i64::MAX - 1),
        Value::Date(chrono::NaiveDate::from_ymd_opt(2024, 1, 2).unwrap()),
        Value::Json("{}".into()),
        Value::Array(vec![Value::Int32(3)]),
        Value::Float64(1.0),
        Value::Unchanged,
    ];
    let MappedChange::Update { after, .. } = m.map_update(None, row).unwrap() else {
        panic!()
    };
    assert_eq!(after[1], Value::Int64(i64::MAX));
    assert_eq!(
        after[2],
        Value::Date(chrono::NaiveDate::from_ymd_opt(2024, 1, 2).unwrap())
    );
    assert_eq!(after[3], Value::Json("{\"k\":[1,2]}".into()));
    assert_eq!(
        after[4],
        Value::Array(vec![Value::Int32(3), Value::Int32(4)])
    );
    assert_eq!(after[5], Value::Float64(0.25));
    assert_eq!(after[6], Value::Unchanged);
}
