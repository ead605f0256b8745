//! Compilation, routing, validation errors and transform rules.

use std::sync::Arc;

use super::*;
use crate::schema::{ColumnSchema, Dialect};
use crate::value::{DataType, Row, Value};

pub(super) fn text() -> DataType {
    DataType::Text { max_len: None }
}

pub(super) fn table(
    schema: &str,
    name: &str,
    cols: &[(&str, DataType)],
    key: &[usize],
) -> Arc<TableSchema> {
    Arc::new(TableSchema {
        id: TableId::new(schema, name),
        columns: cols
            .iter()
            .map(|(n, t)| ColumnSchema {
                name: n.to_string(),
                data_type: t.clone(),
                nullable: true,
                native_type: String::new(),
                default: None,
            })
            .collect(),
        key: key.to_vec(),
        dialect: Dialect::Postgres,
    })
}

/// `customers(id bigint, name text, phone text, price numeric(10,2), status text)`.
pub(super) fn customers() -> Arc<TableSchema> {
    table(
        "public",
        "customers",
        &[
            ("id", DataType::Int64),
            ("name", text()),
            ("phone", text()),
            (
                "price",
                DataType::Decimal {
                    precision: Some(10),
                    scale: Some(2),
                },
            ),
            ("status", text()),
        ],
        &[0],
    )
}

pub(super) fn cust(id: i64, name: &str, phone: &str, price: &str, status: &str) -> Row {
    vec![
        Value::Int64(id),
        Value::Text(name.into()),
        Value::Text(phone.into()),
        Value::Decimal(price.into()),
        Value::Text(status.into()),
    ]
}

pub(super) fn mapping(toml_text: &str) -> MappingConfig {
    toml::from_str(toml_text).unwrap_or_else(|e| panic!("{e}"))
}

pub(super) fn mapped(toml_text: &str, schema: &Arc<TableSchema>) -> Arc<MappedTable> {
    let mut r = TableRouter::try_new(&[mapping(toml_text)]).unwrap_or_else(|e| panic!("{e}"));
    r.route(schema)
        .unwrap_or_else(|e| panic!("{e}"))
        .expect("table is routed")
}

fn invalid(toml_text: &str) -> String {
    mapping(toml_text).validate().unwrap_err()
}

pub(super) fn insert(m: &MappedTable, row: Row) -> Option<Row> {
    match m.map_insert(row).unwrap() {
        MappedChange::Insert(r) => Some(r),
        MappedChange::Skip => None,
        other => panic!("unexpected {other:?}"),
    }
}

const ISSUE_EXAMPLE: &str = r#"
source = "public.customers"
target = "crm.clients"
column_filter = ["id", "name", "phone", "price", "status"]
column_mappings = [{ source_column = "name", target_column = "full_name" }]
row_filter_condition = "status = 'ACTIVE'"
transform_rules = [{ column = "phone", transform_type = "MASK", params = { pattern = "***-****-####" } },
                   { column = "price", transform_type = "MULTIPLY", params = { factor = 1.1 } }]
conflict_resolution = "UPSERT"
batch_size = 1000
batch_timeout_ms = 5000
"#;

#[test]
fn the_issue_example_maps_rows() {
    let m = mapped(ISSUE_EXAMPLE, &customers());
    assert_eq!(m.target.id, TableId::new("crm", "clients"));
    let names: Vec<_> = m.target.columns.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["id", "full_name", "phone", "price", "status"]);
    assert_eq!(m.target.key, vec![0]);
    assert_eq!(m.batch_size, Some(1000));
    assert_eq!(m.batch_timeout, Some(std::time::Duration::from_secs(5)));
    let out = insert(&m, cust(1, "Ann", "138-1234-5678", "19.99", "ACTIVE")).unwrap();
    assert_eq!(
        out,
        vec![
            Value::Int64(1),
            Value::Text("Ann".into()),
            Value::Text("***-****-5678".into()),
            Value::Decimal("21.989".into()),
            Value::Text("ACTIVE".into()),
        ]
    );
    assert!(insert(&m, cust(2, "Bob", "1", "1", "CLOSED")).is_none());
    // MULTIPLY widens numeric(10,2) to an unconstrained numeric.
    assert_eq!(
        m.target.columns[3].data_type,
        DataType::Decimal {
            precision: None,
            scale: None
        }
    );
}

#[test]
fn routing_patterns_excludes_and_precedence() {
    let ms = vec![
        mapping("source = \"public.orders_archive\"\nis_enabled = false"),
        mapping("source = \"public.orders_*\"\ntarget = \"public.orders\"\nexclude = [\"public.orders_tmp*\"]"),
        mapping("source = \"public.orders_special\"\ntarget = \"public.special\""),
        mapping("source = \"public.*\"\ntarget = \"copy.*\""),
    ];
    let mut r = TableRouter::try_new(&ms).unwrap();
    let schema = |name: &str| table("public", name, &[("id", DataType::Int64)], &[0]);
    let target = |r: &mut TableRouter, name: &str| {
        r.route(&schema(name))
            .unwrap()
            .map(|m| m.target.id.to_string())
    };
    assert_eq!(target(&mut r, "orders_0").as_deref(), Some("public.orders"));
    assert_eq!(
        target(&mut r, "orders_63").as_deref(),
        Some("public.orders")
    );
    assert_eq!(
        target(&mut r, "orders_special").as_deref(),
        Some("public.special")
    );
    assert_eq!(
        target(&mut r, "orders_tmp1").as_deref(),
        Some("copy.orders_tmp1")
    );
    assert_eq!(
        target(&mut r, "orders_archive"),
        None,
        "disabled exact mapping wins"
    );
    assert_eq!(target(&mut r, "other").as_deref(), Some("copy.other"));
    assert_eq!(
        r.route(&table("sales", "x", &[("id", DataType::Int64)], &[0]))
            .unwrap()
            .map(|_| ()),
        None
    );
    let m = r.route(&schema("orders_1")).unwrap().unwrap();
    assert!(m.shares_target() && !m.applies_truncate());
    assert!(!r.route(&schema("other")).unwrap().unwrap().shares_target());

    let sel = TableSelection::new(&ms).unwrap();
    assert!(sel.exact_tables().is_none());
    let ids = ["orders_1", "orders_archive", "orders_tmp", "x"].map(|n| TableId::new("public", n));
    assert_eq!(sel.select(ids.clone()).len(), 3);
    assert!(!sel.matches(&ids[1]));
    let exact = TableSelection::new(&ms[..1]).unwrap();
    assert_eq!(exact.exact_tables(), Some(vec![]));
    assert!(TableSelection::new(&[]).unwrap().is_all());
    let exact =
        TableSelection::new(&[mapping("source = \"b.t\""), mapping("source = \"a\"")]).unwrap();
    assert_eq!(
        exact.exact_tables(),
        Some(vec![TableId::new("b", "t"), TableId::new("public", "a")])
    );
}

#[test]
fn no_mappings_and_routing_only_mappings_pass_rows_untouched() {
    let mut r = TableRouter::new(&[]);
    let s = customers();
    let m = r.route(&s).unwrap().unwrap();
    assert!(Arc::ptr_eq(&m.target, &s));
    let row = cust(1, "a", "b", "1", "x");
    assert_eq!(
        m.map_insert(row.clone()).unwrap(),
        MappedChange::Insert(row.clone())
    );
    let m = mapped("source = \"public.customers\"\ntarget = \"x.y\"", &s);
    assert_eq!(m.target.id, TableId::new("x", "y"));
    assert_eq!(m.target.columns, s.columns);
    assert_eq!(
        m.map_insert(row.clone()).unwrap(),
        MappedChange::Insert(row)
    );
    // The same Arc is cached.
    let m2 = r.route(&s).unwrap().unwrap();
    assert!(Arc::ptr_eq(&r.route(&s).unwrap().unwrap(), &m2));
}

#[test]
fn columns_filter_rename_retype_default_nullable() {
    let m = mapped(
        r#"
source = "public.customers"
column_filter = ["id", "name", "price", "status"]
column_mappings = [
  { source_column = "name", target_column = "full_name", target_type = "varchar(5)", nullable = false, default_value = "n/a" },
  { source_column = "price", target_type = "numeric(12,2)", source_type = "numeric" },
  { source_column = "id", target_column = "client_id", target_type = "integer" },
]
"#,
        &customers(),
    );
    let t = &m.target;
    let names: Vec<_> = t.columns.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["client_id", "full_name", "price", "status"]);
    assert_eq!(t.columns[0].data_type, DataType::Int32);
    assert!(!t.columns[1].nullable);
    assert_eq!(t.key, vec![0]);
    let out = insert(&m, cust(7, "Ann", "p", "1.50", "A")).unwrap();
    assert_eq!(out[0], Value::Int32(7));
    assert_eq!(out[2], Value::Decimal("1.50".into()));
    let mut nulls = cust(8, "", "p", "1", "A");
    nulls[1] = Value::Null;
    assert_eq!(insert(&m, nulls).unwrap()[1], Value::Text("n/a".into()));
    // Values that do not fit are rejected with the column, never the value.
    let e = m
        .map_insert(cust(9, "Annabel", "p", "1", "A"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("full_name") && e.contains("longer than 5"),
        "{e}"
    );
    assert!(!e.contains("Annabel"), "{e}");
    let e = m
        .map_insert(cust(1 << 40, "A", "p", "1", "A"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("client_id") && e.contains("out of range"), "{e}");
    // nullable = false without a default.
    let m = mapped(
        "source = \"public.customers\"\ncolumn_mappings = [{ source_column = \"status\", nullable = false }]",
        &customers(),
    );
    let mut r = cust(1, "a", "b", "1", "x");
    r[4] = Value::Null;
    let e = m.map_insert(r).unwrap_err().to_string();
    assert!(
        e.contains("status is NULL") && e.contains("nullable = false"),
        "{e}"
    );
}

#[test]
fn primary_key_mapping_sets_the_target_key() {
    let m = mapped(
        r#"
source = "public.customers"
primary_key_mapping = { source_columns = ["phone", "name"], target_columns = ["tel", "name"] }
"#,
        &customers(),
    );
    let names: Vec<_> = m.target.key_names().collect();
    assert_eq!(names, ["tel", "name"]);
    assert_eq!(m.target.columns[2].name, "tel");
}

#[test]
fn schema_dependent_errors_name_mapping_table_and_column() {
    let mut r = TableRouter::try_new(&[mapping(
        "source = \"public.customers\"\ncolumn_filter = [\"name\"]",
    )])
    .unwrap();
    let e = r.route(&customers()).unwrap_err().to_string();
    assert!(
        e.contains("public.customers") && e.contains("key column id"),
        "{e}"
    );
    let bad = |t: &str| {
        TableRouter::try_new(&[mapping(t)])
            .unwrap()
            .route(&customers())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    };
    assert!(
        bad("source = \"public.customers\"\ncolumn_filter = [\"id\", \"nope\"]")
            .contains("no column nope")
    );
    assert!(
        bad("source = \"public.customers\"\nrow_filter_condition = \"nope = 1\"")
            .contains("unknown column nope")
    );
    assert!(bad(
        "source = \"public.customers\"\ncolumn_mappings = [{ source_column = \"name\", source_type = \"int\" }]"
    )
    .contains("says name is integer"));
    assert!(bad(
        "source = \"public.customers\"\ncolumn_mappings = [{ source_column = \"name\", target_column = \"phone\" }]"
    )
    .contains("two target columns are named phone"));
    assert!(bad(
        "source = \"public.customers\"\ntransform_rules = [{ column = \"price\", transform_type = \"UPPER\" }]"
    )
    .contains("UPPER needs a text column"));
    assert!(bad(
        "source = \"public.customers\"\ntransform_rules = [{ column = \"name\", transform_type = \"MULTIPLY\", params = { factor = 2 } }]"
    )
    .contains("MULTIPLY needs a numeric column"));
    assert!(bad(
        "source = \"public.customers\"\ntransform_rules = [{ column = \"nope\", transform_type = \"TRIM\" }]"
    )
    .contains("no column nope"));
    assert!(bad(
        "source = \"public.customers\"\ntransform_rules = [{ column = \"price\", transform_type = \"CONSTANT\", params = { value = \"x\" } }]"
    )
    .contains("does not fit"));
}

#[test]
fn load_time_errors() {
    let cases = [
        ("source = \"\"", "needs `source`"),
        ("source = \"a.[x\"", "unclosed '['"),
        ("source = \"a.b\"\ntarget = \"x.y*\"", "not a pattern"),
        ("source = \"a.b\"\ncolumn_filter = [\"x\", \"x\"]", "names column x twice"),
        ("source = \"a.b\"\ncolumn_filter = [\"x\"]\ncolumn_mappings = [{ source_column = \"y\" }]", "leaves this column out"),
        ("source = \"a.b\"\ncolumn_mappings = [{ source_column = \"y\", target_type = \"money\" }]", "unknown type"),
        ("source = \"a.b\"\ncolumn_mappings = [{ source_column = \"y\", target_type = \"int\", default_value = \"x\" }]", "default_value does not fit"),
        ("source = \"a.b\"\nprimary_key_mapping = { source_columns = [\"a\"], target_columns = [] }", "as many target_columns"),
        ("source = \"a.b\"\nrow_filter_condition = \"a = \"", "row_filter_condition"),
        ("source = \"a.b\"\nrow_filter_condition = \"a = 1 AND foo(b)\"", "unknown function FOO at line 1, column 11"),
        ("source = \"a.b\"\ntransform_rules = [{ column = \"a\", transform_type = \"MASK\" }]", "pattern is required"),
        ("source = \"a.b\"\ntransform_rules = [{ column = \"a\", transform_type = \"MASK\", params = { pattern = \"#\", color = 1 } }]", "unknown parameter \"color\""),
        ("source = \"a.b\"\ntransform_rules = [{ column = \"a\", transform_type = \"MULTIPLY\", params = { factor = \"x\" } }]", "factor must be a number"),
        ("source = \"a.b\"\ntransform_rules = [{ column = \"a\", transform_type = \"HASH\", params = { algorithm = \"md5\" } }]", "sha256"),
        ("source = \"a.b\"\ntransform_rules = [{ column = \"a\", transform_type = \"HASH\", params = { salt_env = \"DBSYNC_NO_SUCH_VAR_X\" } }]", "is not set"),
        ("source = \"a.b\"\ntransform_rules = [{ column = \"a\", transform_type = \"TRUNCATE\", params = { length = -1 } }]", "whole number"),
        ("source = \"a.b\"\ntransform_rules = [{ column = \"a\", transform_type = \"REPLACE\", params = { pattern = \"(\" } }]", "regular expression"),
        ("source = \"a.b\"\ntransform_rules = [{ column = \"a\", transform_type = \"REPLACE\", params = { to = \"x\" } }]", "from"),
        ("source = \"a.b\"\ntransform_rules = [{ column = \"a\", transform_type = \"DATE_FORMAT\", params = { format = \"%Q\" } }]", "strftime"),
        ("source = \"a.b\"\ntransform_rules = [{ column = \"a\", transform_type = \"CONCAT\", params = { columns = [] } }]", "non-empty"),
        ("source = \"a.b\"\ntransform_rules = [{ column = \"a\", transform_type = \"SUBSTRING\", params = { start = 0 } }]", "counts from 1"),
        ("source = \"a.b\"\ntransform_rules = [{ column = \"a\", transform_type = \"UPPER\", params = { x = 1 } }]", "takes no parameters"),
        ("source = \"a.b\"\nbatch_size = 0", "batch_size"),
        ("source = \"a.b\"\n[[script]]\nscript_name = \"g\"\nscript_type = \"GROOVY\"\ntrigger_phase = \"BEFORE_WRITE\"\nscript_content = \"x\"", "GROOVY cannot run"),
        ("source = \"a.b\"\n[[script]]\nscript_name = \"p\"\nscript_type = \"PYTHON\"\ntrigger_phase = \"BEFORE_WRITE\"\nscript_content = \"x\"", "PYTHON cannot run"),
        ("source = \"a.b\"\n[[script]]\nscript_name = \"s\"\nscript_type = \"SQL\"\ntrigger_phase = \"BEFORE_WRITE\"\nscript_content = \"SET = 1\"", "script \"s\""),
        ("source = \"a.b\"\n[[script]]\nscript_name = \"j\"\nscript_type = \"JAVASCRIPT\"\ntrigger_phase = \"BEFORE_WRITE\"\nscript_content = \"function f(r) { return r; }\"", "must define function transform"),
        ("source = \"a.b\"\n[[script]]\nscript_name = \"j\"\nscript_type = \"JAVASCRIPT\"\ntrigger_phase = \"BEFORE_WRITE\"\nscript_content = \"function transform(r) { return r;\"", "SyntaxError"),
        ("source = \"a.b\"\n[[script]]\nscript_name = \"j\"\nscript_type = \"JAVASCRIPT\"\ntrigger_phase = \"BEFORE_WRITE\"\ntimeout_ms = 0\nscript_content = \"function transform(r) { return r; }\"", "timeout_ms"),
        ("source = \"a.b\"\n[[script]]\nscript_name = \"j\"\nscript_type = \"JAVASCRIPT\"\ntrigger_phase = \"BEFORE_WRITE\"\ntimeout_ms = 50\nscript_content = \"while (true) {}\"", "exceeded timeout_ms"),
    ];
    for (text, want) in cases {
        let e = invalid(text);
        assert!(e.contains(want), "{text}\n=> {e}\n(wanted {want:?})");
        assert!(e.starts_with("mapping "), "{e}");
    }
    // Serde rejects unknown transform types and phases, naming the choices.
    let e = toml::from_str::<MappingConfig>(
        "source = \"a.b\"\ntransform_rules = [{ column = \"a\", transform_type = \"ENCRYPT\" }]",
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("ENCRYPT") && e.contains("MASK"), "{e}");
}

fn rule(column: &str, ty: &str, params: &str) -> String {
    format!("{{ column = \"{column}\", transform_type = \"{ty}\", params = {{ {params} }} }}")
}

fn apply_rules(rules: &[String], schema: &Arc<TableSchema>, row: Row) -> Row {
    let text = format!(
        "source = \"{}\"\ntransform_rules = [{}]",
        schema.id,
        rules.join(", ")
    );
    insert(&mapped(&text, schema), row).expect("kept")
}

#[test]
fn every_transform_rule() {
    let s = customers();
    let r = |rules: &[String]| {
        apply_rules(
            rules,
            &s,
            cust(5, "  Ann Lee ", "13812345678", "10.25", "active"),
        )
    };
    assert_eq!(
        r(&[rule("phone", "MASK", "pattern = \"***-****-####\"")])[2],
        Value::Text("***-****-5678".into())
    );
    assert_eq!(
        r(&[rule(
            "phone",
            "MASK",
            "pattern = \"####\", align = \"end\", mask_char = \"x\""
        )])[2],
        Value::Text("xxxxxxx5678".into())
    );
    assert_eq!(
        r(&[rule("price", "MULTIPLY", "factor = 1.1")])[3],
        Value::Decimal("11.275".into())
    );
    assert_eq!(
        r(&[rule("id", "MULTIPLY", "factor = 3")])[0],
        Value::Int64(15)
    );
    assert_eq!(
        r(&[rule("id", "MULTIPLY", "factor = \"0.5\"")])[0],
        Value::Decimal("2.5".into())
    );
    let h = r(&[rule("name", "HASH", "")]);
    let Value::Text(h) = &h[1] else { panic!() };
    assert_eq!(h.len(), 64);
    let salted = r(&[rule("name", "HASH", "salt = \"pepper\"")]);
    assert_ne!(salted[1], Value::Text(h.clone()));
    assert_eq!(
        r(&[rule("id", "HASH", "")])[0],
        // sha256("5")
        Value::Text("ef2d127de37b942baad06145e54b0c619a1f22327b2ebbcfbec78f5564afe39d".into())
    );
    assert_eq!(
        r(&[rule("name", "TRUNCATE", "length = 4")])[1],
        Value::Text("  An".into())
    );
    assert_eq!(
        r(&[rule("name", "UPPER", "")])[1],
        Value::Text("  ANN LEE ".into())
    );
    assert_eq!(
        r(&[rule("name", "LOWER", "")])[1],
        Value::Text("  ann lee ".into())
    );
    assert_eq!(
        r(&[rule("name", "TRIM", "")])[1],
        Value::Text("Ann Lee".into())
    );
    assert_eq!(
        r(&[rule("name", "REPLACE", "from = \"Lee\", to = \"L.\"")])[1],
        Value::Text("  Ann L. ".into())
    );
    assert_eq!(
        r(&[rule(
            "phone",
            "REPLACE",
            "pattern = \"^(\\\\d{3})\\\\d+\", to = \"$1...\""
        )])[2],
        Value::Text("138...".into())
    );
    assert_eq!(
        r(&[rule("status", "CONSTANT", "value = \"X\"")])[4],
        Value::Text("X".into())
    );
    assert_eq!(
        r(&[rule("price", "CONSTANT", "value = 2.5")])[3],
        Value::Decimal("2.5".into())
    );
    assert_eq!(
        r(&[
            rule("name", "TRIM", ""),
            rule(
                "name",
                "CONCAT",
                "columns = [\"name\", \"status\", \"id\"], separator = \"/\""
            )
        ])[1],
        Value::Text("Ann Lee/active/5".into())
    );
    assert_eq!(
        r(&[rule("price", "ROUND", "scale = 1")])[3],
        Value::Decimal("10.3".into())
    );
    assert_eq!(
        r(&[rule("price", "ROUND", "")])[3],
        Value::Decimal("10".into())
    );
    assert_eq!(
        r(&[rule("name", "SUBSTRING", "start = 3, length = 3")])[1],
        Value::Text("Ann".into())
    );
    assert_eq!(
        r(&[rule("name", "SUBSTRING", "start = 7")])[1],
        Value::Text("Lee ".into())
    );

    // NULL handling.
    let mut nulls = cust(5, "", "", "1", "");
    nulls[1] = Value::Null;
    nulls[4] = Value::Null;
    let out = apply_rules(
        &[
            rule("name", "UPPER", ""),
            rule("status", "DEFAULT_IF_NULL", "value = \"NEW\""),
            rule(
                "phone",
                "CONCAT",
                "columns = [\"name\", \"phone\"], separator = \"-\"",
            ),
        ],
        &s,
        nulls,
    );
    assert_eq!(out[1], Value::Null);
    assert_eq!(out[4], Value::Text("NEW".into()));
    assert_eq!(out[2], Value::Text("".into()));
}

#[test]
fn date_format_rule() {
    let s = table(
        "public",
        "ev",
        &[
            ("id", DataType::Int64),
            ("at", DataType::TimestampTz { precision: None }),
            ("day", DataType::Date),
            ("txt", text()),
        ],
        &[0],
    );
    use chrono::{NaiveDate, TimeZone, Utc};
    let row = vec![
        Value::Int64(1),
        Value::TimestampTz(Utc.with_ymd_and_hms(2024, 2, 29, 13, 5, 0).unwrap()),
        Value::Date(NaiveDate::from_ymd_opt(2024, 3, 1).unwrap()),
        Value::Text("01/02/2023".into()),
    ];
    let out = apply_rules(
        &[
            rule("at", "DATE_FORMAT", "format = \"%Y-%m %H:%M %z\""),
            rule("day", "DATE_FORMAT", "format = \"%d.%m.%Y\""),
            rule(
                "txt",
                "DATE_FORMAT",
                "format = \"%Y-%m-%d\", input_format = \"%d/%m/%Y\"",
            ),
        ],
        &s,
        row.clone(),
    );
    assert_eq!(out[1], Value::Text("2024-02 13:05 +0000".into()));
    assert_eq!(out[2], Value::Text("01.03.2024".into()));
    assert_eq!(out[3], Value::Text("2023-02-01".into()));
    let m = mapped(
        &format!(
            "source = \"public.ev\"\ntransform_rules = [{}]",
            rule("txt", "DATE_FORMAT", "format = \"%Y\"")
        ),
        &s,
    );
    let e = m.map_insert(row).unwrap_err().to_string();
    assert!(e.contains("not an ISO date") && !e.contains("01/02"), "{e}");
}

#[test]
fn multiply_keeps_special_decimals() {
    let s = customers();
    let r = |price: &str, factor: &str| {
        apply_rules(
            &[rule("price", "MULTIPLY", &format!("factor = {factor}"))],
            &s,
            cust(1, "a", "b", price, "c"),
        )[3]
        .clone()
    };
    assert_eq!(r("NaN", "2"), Value::Decimal("NaN".into()));
    assert_eq!(r("Infinity", "-2"), Value::Decimal("-Infinity".into()));
    assert_eq!(r("-Infinity", "2"), Value::Decimal("-Infinity".into()));
    assert_eq!(r("Infinity", "0"), Value::Decimal("NaN".into()));
    assert_eq!(r("-1.5", "-2"), Value::Decimal("3.0".into()));
}

#[test]
fn rule_errors_at_run_time_name_the_column() {
    let s = customers();
    let m = mapped(
        &format!(
            "source = \"public.customers\"\ntransform_rules = [{}]",
            rule("id", "MULTIPLY", "factor = 9223372036854775807")
        ),
        &s,
    );
    let e = m
        .map_insert(cust(5, "a", "b", "1", "c"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("column id") && e.contains("overflow"), "{e}");
}
