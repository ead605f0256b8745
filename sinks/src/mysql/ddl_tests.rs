use super::*;

const BIN: &str = "utf8mb4_nopad_bin";

fn col(name: &str, dt: DataType, native: &str) -> ColumnSchema {
    ColumnSchema {
        name: name.into(),
        data_type: dt,
        nullable: true,
        native_type: native.into(),
        default: None,
    }
}

fn table(cols: Vec<ColumnSchema>, key: &[usize], dialect: Dialect) -> TableSchema {
    TableSchema {
        id: TableId::new("shop", "t"),
        columns: cols,
        key: key.to_vec(),
        dialect,
    }
}

#[test]
fn mapped_types() {
    let cases = [
        (DataType::Bool, "tinyint(1)"),
        (DataType::Int16, "smallint"),
        (DataType::Int32, "int"),
        (DataType::Int64, "bigint"),
        (DataType::Float32, "float"),
        (DataType::Float64, "double"),
        (
            DataType::Decimal {
                precision: Some(12),
                scale: Some(4),
            },
            "decimal(12,4)",
        ),
        (
            DataType::Decimal {
                precision: Some(12),
                scale: None,
            },
            "decimal(12,0)",
        ),
        (
            DataType::Decimal {
                precision: None,
                scale: None,
            },
            "decimal(65,30)",
        ),
        (
            DataType::Decimal {
                precision: Some(3),
                scale: Some(5),
            },
            "decimal(5,5)",
        ),
        (
            DataType::Decimal {
                precision: Some(100),
                scale: Some(2),
            },
            "longtext",
        ),
        (DataType::Text { max_len: Some(20) }, "varchar(20)"),
        (
            DataType::Text {
                max_len: Some(20_000),
            },
            "mediumtext",
        ),
        (DataType::Text { max_len: None }, "longtext"),
        (DataType::Char { len: Some(5) }, "char(5)"),
        (DataType::Char { len: None }, "longtext"),
        (DataType::Bytes, "longblob"),
        (DataType::Date, "date"),
        (DataType::Time { precision: None }, "time(6)"),
        (DataType::Time { precision: Some(3) }, "time(3)"),
        (DataType::Timestamp { precision: Some(0) }, "datetime(0)"),
        (DataType::TimestampTz { precision: None }, "datetime(6)"),
        (DataType::Interval, "varchar(64)"),
        (
            DataType::Uuid,
            "char(36) CHARACTER SET ascii COLLATE ascii_bin",
        ),
        (DataType::Json, "json"),
        (DataType::Jsonb, "json"),
        (DataType::Array(Box::new(DataType::Int32)), "json"),
        (
            DataType::Other {
                name: "mood".into(),
            },
            "longtext",
        ),
    ];
    for (dt, want) in cases {
        assert_eq!(mapped_type(&dt), want, "{dt:?}");
    }
}

#[test]
fn native_mysql_types_are_used_verbatim_and_checked() {
    for t in [
        "int(10) unsigned",
        "decimal(30,10)",
        "datetime(3)",
        "timestamp(6)",
        "bigint unsigned zerofill",
        "set('a','b')",
        "year",
    ] {
        assert_eq!(native_mysql_type(t).as_deref(), Some(t));
    }
    assert_eq!(
        native_mysql_type(r"enum('it''s','a\\b','c,d')").as_deref(),
        Some(r"enum('it''s','a\b','c,d')")
    );
    for bad in [
        "int; drop table x",
        "int -- x",
        "`int`",
        "enum('a'",
        "int)",
        "",
        "(1)",
        "int /* x */",
    ] {
        assert_eq!(native_mysql_type(bad), None, "{bad}");
    }
    let t = table(
        vec![
            col("id", DataType::Int64, "int(10) unsigned"),
            col("e", DataType::Text { max_len: None }, "enum('x','y')"),
            col("bad", DataType::Int32, "int; drop"),
        ],
        &[0],
        Dialect::MySql,
    );
    assert_eq!(
        column_types(&t, BIN),
        vec!["int(10) unsigned", "enum('x','y')", "int"]
    );
    // Another dialect's native spelling is never used.
    let pg = table(
        vec![col("id", DataType::Int64, "bigint unsigned")],
        &[0],
        Dialect::Postgres,
    );
    assert_eq!(column_types(&pg, BIN), vec!["bigint"]);
}

#[test]
fn text_keys_get_a_binary_collation_and_a_length() {
    let t = table(
        vec![
            col("a", DataType::Text { max_len: None }, "text"),
            col("b", DataType::Int64, "bigint"),
            col(
                "c",
                DataType::Text { max_len: Some(10) },
                "character varying(10)",
            ),
            col("d", DataType::Bytes, "bytea"),
            col("e", DataType::Text { max_len: None }, "text"),
        ],
        &[0, 1, 2, 3],
        Dialect::Postgres,
    );
    let types = column_types(&t, BIN);
    // 3072 - 8 - 40 = 3024 bytes for two unbounded columns: 1512 each.
    assert_eq!(
        types[0],
        format!("varchar(378) CHARACTER SET utf8mb4 COLLATE {BIN}")
    );
    assert_eq!(
        types[2],
        format!("varchar(10) CHARACTER SET utf8mb4 COLLATE {BIN}")
    );
    assert_eq!(types[3], "varbinary(1512)");
    assert_eq!(types[4], "longtext");
    let single = table(
        vec![col("k", DataType::Text { max_len: None }, "text")],
        &[0],
        Dialect::Postgres,
    );
    assert_eq!(
        column_types(&single, BIN)[0],
        format!("varchar({MAX_TEXT_KEY_CHARS}) CHARACTER SET utf8mb4 COLLATE {BIN}")
    );
    let native = table(
        vec![
            col("k", DataType::Text { max_len: None }, "mediumtext"),
            col("v", DataType::Text { max_len: Some(5) }, "varchar(5)"),
        ],
        &[0, 1],
        Dialect::MySql,
    );
    assert_eq!(
        column_types(&native, BIN),
        vec![
            format!("varchar(763) CHARACTER SET utf8mb4 COLLATE {BIN}"),
            format!("varchar(5) CHARACTER SET utf8mb4 COLLATE {BIN}"),
        ]
    );
}

#[test]
fn wide_rows_turn_varchars_into_text() {
    let cols: Vec<ColumnSchema> = (0..40)
        .map(|i| {
            col(
                &format!("c{i}"),
                DataType::Text {
                    max_len: Some(1000),
                },
                "character varying(1000)",
            )
        })
        .collect();
    let t = table(cols, &[0], Dialect::Postgres);
    let types = column_types(&t, BIN);
    let total: u32 = types.iter().map(|t| row_bytes(t)).sum();
    assert!(total <= ROW_BYTES - 2048, "{total}");
    // A key column wider than an index key allows gets the longest that fits.
    assert!(types[0].starts_with("varchar(768)"), "{}", types[0]);
    assert_eq!(types.iter().filter(|t| *t == "text").count(), 24);
}

#[test]
fn create_and_alter_statements() {
    let mut t = table(
        vec![
            col("id", DataType::Int64, "bigint"),
            col("na`me", DataType::Text { max_len: Some(20) }, "varchar"),
        ],
        &[0],
        Dialect::Postgres,
    );
    t.columns[0].nullable = false;
    let types = column_types(&t, BIN);
    assert_eq!(
        create_table_sql(&t, &types),
        "CREATE TABLE IF NOT EXISTS `shop`.`t` (`id` bigint NOT NULL, `na``me` varchar(20) NULL, \
         PRIMARY KEY (`id`)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"
    );
    assert_eq!(
        add_columns_sql(&t, &[1], &types),
        "ALTER TABLE `shop`.`t` ADD COLUMN `na``me` varchar(20) NULL"
    );
    assert_eq!(
        create_database_sql("sh`op"),
        "CREATE DATABASE IF NOT EXISTS `sh``op` CHARACTER SET utf8mb4"
    );
}

fn target(cols: &[&str], keys: Vec<Vec<&str>>, engine: &str) -> TargetTable {
    TargetTable {
        table_type: "BASE TABLE".into(),
        engine: Some(engine.into()),
        columns: cols
            .iter()
            .map(|c| TargetColumn {
                name: (*c).into(),
                column_type: "int".into(),
                kind: ColKind::Int,
            })
            .collect(),
        unique_keys: keys
            .into_iter()
            .map(|k| k.into_iter().map(String::from).collect())
            .collect(),
    }
}

#[test]
fn existing_tables_are_checked() {
    let t = table(
        vec![
            col("id", DataType::Int64, "bigint"),
            col("v", DataType::Int64, "bigint"),
            col("w", DataType::Int64, "bigint"),
        ],
        &[0],
        Dialect::Postgres,
    );
    assert_eq!(
        plan_existing(&t, &target(&["ID", "v"], vec![vec!["Id"]], "InnoDB")).unwrap(),
        vec![2]
    );
    let err = plan_existing(&t, &target(&["id", "v"], vec![], "InnoDB"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("no primary key or unique index on (id)"),
        "{err}"
    );
    assert!(err.contains("ADD PRIMARY KEY (`id`)"), "{err}");
    let err = plan_existing(&t, &target(&["id"], vec![vec!["id", "v"]], "InnoDB"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("no primary key"), "{err}");
    let err = plan_existing(&t, &target(&["v"], vec![vec!["v"]], "InnoDB"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("has no column id"), "{err}");
    let err = plan_existing(&t, &target(&["id"], vec![vec!["id"]], "MyISAM"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("ENGINE=InnoDB"), "{err}");
    let mut view = target(&["id"], vec![vec!["id"]], "InnoDB");
    view.table_type = "VIEW".into();
    view.engine = None;
    assert!(plan_existing(&t, &view)
        .unwrap_err()
        .to_string()
        .contains("not a table"));
}

#[test]
fn added_columns_get_the_source_default() {
    let mut t = table(
        vec![
            col("id", DataType::Int64, "bigint"),
            col("n", DataType::Int32, "int"),
            col("s", DataType::Text { max_len: Some(9) }, "varchar(9)"),
            col("l", DataType::Text { max_len: None }, "longtext"),
        ],
        &[0],
        Dialect::MySql,
    );
    t.columns[1].default = Some("-5".into());
    t.columns[2].default = Some("it's".into());
    t.columns[3].default = Some("x".into());
    let types = column_types(&t, BIN);
    assert_eq!(
        add_columns_sql(&t, &[1, 2, 3], &types),
        "ALTER TABLE `shop`.`t` ADD COLUMN `n` int NULL DEFAULT -5, ADD COLUMN `s` varchar(9) \
         NULL DEFAULT 'it''s', ADD COLUMN `l` longtext NULL DEFAULT ('x')"
    );
    // A default that is not a plain number is quoted even for numeric columns.
    t.columns[1].default = Some("1e3; DROP".into());
    assert_eq!(default_clause(&t.columns[1], "int"), " DEFAULT '1e3; DROP'");
}

#[test]
fn source_type_changes_widen_target_columns_or_stop() {
    let old = table(
        vec![
            col("id", DataType::Int32, "int"),
            col("a", DataType::Text { max_len: Some(10) }, "varchar(10)"),
            col("b", DataType::Int32, "int"),
            col("c", DataType::Text { max_len: None }, "tinytext"),
            col("e", DataType::Text { max_len: None }, "enum('x','y')"),
        ],
        &[0],
        Dialect::MySql,
    );
    let mut new = old.clone();
    new.columns[1] = col("a", DataType::Text { max_len: Some(300) }, "varchar(300)");
    new.columns[2] = col("b", DataType::Int64, "bigint");
    new.columns[3] = col("c", DataType::Text { max_len: None }, "mediumtext");
    new.columns[4] = col("e", DataType::Text { max_len: None }, "enum('x','y','z')");
    let mut tgt = target(&["id", "a", "b", "c", "e"], vec![vec!["id"]], "InnoDB");
    for (c, ty) in tgt.columns.iter_mut().zip([
        "int(11)",
        "varchar(10)",
        "int(11)",
        "tinytext",
        "enum('x','y')",
    ]) {
        c.column_type = ty.into();
    }
    let types = column_types(&new, BIN);
    assert_eq!(
        plan_widen(&old, &new, &tgt, &types).unwrap(),
        vec![1, 2, 3, 4]
    );
    assert_eq!(
        alter_sql(&new, &[], &[2], &types),
        "ALTER TABLE `shop`.`t` MODIFY COLUMN `b` bigint NULL"
    );
    // Already widened (a replay): nothing to do.
    tgt.columns[2].column_type = "bigint(20)".into();
    assert_eq!(plan_widen(&old, &new, &tgt, &types).unwrap(), vec![1, 3, 4]);
    // Narrowed: the target still holds every value.
    assert!(plan_widen(&new, &old, &tgt, &column_types(&old, BIN))
        .unwrap()
        .is_empty());
    // Another kind of type: stop, saying what to run.
    let mut bad = old.clone();
    bad.columns[2] = col("b", DataType::Text { max_len: Some(5) }, "varchar(5)");
    let err = plan_widen(&old, &bad, &tgt, &column_types(&bad, BIN))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("only widens") && err.contains("MODIFY COLUMN `b` varchar(5)"),
        "{err}"
    );
    assert_eq!(normalize_type("BIGINT(20) UNSIGNED"), "bigint unsigned");
    assert_eq!(
        normalize_type("varchar(5) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"),
        "varchar(5)"
    );
}
