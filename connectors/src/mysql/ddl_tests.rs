use super::*;

fn t(db: &str, name: &str) -> TableId {
    TableId::new(db, name)
}

fn col(name: &str, ty: &str, nullable: bool) -> NewColumn {
    NewColumn {
        name: name.into(),
        type_text: ty.into(),
        charset: None,
        nullable,
        primary: false,
        default: None,
    }
}

#[test]
fn create_table_gives_columns_key_and_charset() {
    let s = parse(
        "CREATE TABLE `t` (a INT UNSIGNED NOT NULL, b VARCHAR(10) CHARACTER SET latin1, \
         c ENUM('x','y''z') DEFAULT 'x', d DECIMAL(10,2), e JSON, f TEXT CHARSET ascii, \
         g BIGINT UNIQUE KEY, PRIMARY KEY (a, b(4))) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
        "shop",
    );
    let Statement::CreateTable {
        id,
        columns,
        key,
        charset,
        ..
    } = s
    else {
        panic!("{s:?}")
    };
    assert_eq!(id, t("shop", "t"));
    assert_eq!(key, ["a", "b"]);
    assert_eq!(charset, Some(Charset::Utf8mb4));
    let resolved: Vec<_> = columns
        .iter()
        .map(|c| c.resolve(&Charset::Utf8mb4).unwrap())
        .collect();
    assert_eq!(resolved[0].ty.native(), "int unsigned");
    assert!(!resolved[0].nullable);
    assert_eq!(resolved[1].ty.charset(), Some(&Charset::Latin1));
    assert_eq!(resolved[2].ty.native(), "enum('x','y''z')");
    assert_eq!(resolved[3].ty.native(), "decimal(10,2)");
    assert_eq!(resolved[4].ty, ColType::Json);
    assert_eq!(resolved[5].ty.charset(), Some(&Charset::Ascii));
    assert_eq!(resolved[6].ty.native(), "bigint");
}

#[test]
fn every_column_type_of_the_type_test_parses() {
    let s = parse(
        "CREATE TABLE t (a int primary key, b time(3), c datetime(6), d timestamp(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) \
         ON UPDATE CURRENT_TIMESTAMP(6), e bit(3), f year, g set('a','b'), h tinyint(1), i mediumint unsigned, j double, \
         k float, l binary(4), m varbinary(9), n longblob, o tinytext, p mediumtext charset ascii, q char(3), \
         r bigint unsigned zerofill, s geometry, u point, v smallint unsigned, w blob, x longtext, y tinyint unsigned)",
        "db",
    );
    let Statement::CreateTable { columns, key, .. } = s else {
        panic!("{s:?}")
    };
    assert_eq!(key, ["a"]);
    let natives: Vec<String> = columns
        .iter()
        .map(|c| c.resolve(&Charset::Utf8mb4).unwrap().ty.native())
        .collect();
    assert_eq!(
        natives,
        [
            "int",
            "time(3)",
            "datetime(6)",
            "timestamp(6)",
            "bit(3)",
            "year",
            "set('a','b')",
            "tinyint",
            "mediumint unsigned",
            "double",
            "float",
            "binary(4)",
            "varbinary(9)",
            "longblob",
            "tinytext",
            "mediumtext",
            "char(3)",
            "bigint unsigned",
            "geometry",
            "point",
            "smallint unsigned",
            "blob",
            "longtext",
            "tinyint unsigned"
        ]
    );
}

#[test]
fn alter_table_operations() {
    let s = parse(
        "ALTER TABLE db2.t ADD COLUMN c int AFTER b, DROP COLUMN d, MODIFY COLUMN e bigint unsigned NOT NULL FIRST, \
         CHANGE f g varchar(5), RENAME COLUMN h TO i, ADD INDEX (c), ALGORITHM=INPLACE",
        "db",
    );
    assert_eq!(
        s,
        Statement::Alter {
            id: t("db2", "t"),
            ops: vec![
                AlterOp::Add {
                    col: col("c", "INT", true),
                    position: Position::After("b".into()),
                    if_not_exists: false
                },
                AlterOp::Drop {
                    name: "d".into(),
                    if_exists: false
                },
                AlterOp::Modify {
                    old: "e".into(),
                    col: col("e", "BIGINT UNSIGNED", false),
                    position: Position::First
                },
                AlterOp::Modify {
                    old: "f".into(),
                    col: col("g", "VARCHAR(5)", true),
                    position: Position::Unchanged
                },
                AlterOp::RenameColumn {
                    old: "h".into(),
                    new: "i".into()
                },
            ]
        }
    );
    let s = parse(
        "ALTER ONLINE TABLE t ADD COLUMN IF NOT EXISTS c int, DROP COLUMN IF EXISTS z",
        "db",
    );
    assert_eq!(
        s,
        Statement::Alter {
            id: t("db", "t"),
            ops: vec![
                AlterOp::Add {
                    col: col("c", "INT", true),
                    position: Position::Last,
                    if_not_exists: true
                },
                AlterOp::Drop {
                    name: "z".into(),
                    if_exists: true
                },
            ]
        }
    );
    let s = parse("ALTER TABLE t ADD (c int, d varchar(3)), RENAME TO u", "db");
    let Statement::Alter { ops, .. } = s else {
        panic!()
    };
    assert_eq!(ops.len(), 3);
    assert_eq!(ops[2], AlterOp::RenameTable(t("db", "u")));
    let s = parse(
        "ALTER TABLE t CONVERT TO CHARACTER SET latin1 COLLATE latin1_bin",
        "db",
    );
    assert_eq!(
        s,
        Statement::Alter {
            id: t("db", "t"),
            ops: vec![AlterOp::ConvertCharset(Charset::Latin1)]
        }
    );
    let s = parse(
        "ALTER TABLE t DROP PRIMARY KEY, ADD PRIMARY KEY (a, b)",
        "db",
    );
    let Statement::Alter { ops, .. } = s else {
        panic!()
    };
    assert_eq!(
        ops,
        [
            AlterOp::DropPrimaryKey,
            AlterOp::AddPrimaryKey(vec!["a".into(), "b".into()])
        ]
    );
}

#[test]
fn drop_rename_truncate_like_and_databases() {
    assert_eq!(
        parse(
            "DROP TABLE IF EXISTS `a`.`b`, c /* generated by server */",
            "db"
        ),
        Statement::DropTables(vec![t("a", "b"), t("db", "c")])
    );
    assert_eq!(
        parse("RENAME TABLE a TO b, x.c TO y.d", "db"),
        Statement::Rename(vec![
            (t("db", "a"), t("db", "b")),
            (t("x", "c"), t("y", "d"))
        ])
    );
    assert_eq!(
        parse("TRUNCATE TABLE t", "db"),
        Statement::Truncate(vec![t("db", "t")])
    );
    assert_eq!(
        parse("truncate t", "db"),
        Statement::Truncate(vec![t("db", "t")])
    );
    assert_eq!(
        parse("CREATE TABLE b LIKE a", "db"),
        Statement::CreateLike {
            id: t("db", "b"),
            like: t("db", "a"),
            if_not_exists: false
        }
    );
    assert_eq!(
        parse(
            "CREATE DATABASE IF NOT EXISTS `d` CHARACTER SET latin1",
            "db"
        ),
        Statement::DatabaseCharset {
            db: "d".into(),
            charset: Charset::Latin1
        }
    );
    assert_eq!(
        parse("DROP DATABASE IF EXISTS d", "db"),
        Statement::DropDatabase("d".into())
    );
    assert!(matches!(
        parse("CREATE OR REPLACE TABLE t (a int primary key)", "db"),
        Statement::CreateTable {
            or_replace: true,
            ..
        }
    ));
}

#[test]
fn other_statements_and_garbage() {
    for s in [
        "CREATE USER x",
        "GRANT ALL ON *.* TO x",
        "CREATE INDEX i ON t (a)",
        "DROP VIEW v",
        "FLUSH PRIVILEGES",
        "CREATE TEMPORARY TABLE t (a int)",
        "ANALYZE TABLE t",
        "",
    ] {
        assert_eq!(parse(s, "db"), Statement::Other, "{s}");
    }
    assert!(
        matches!(parse("INSERT INTO t VALUES (1)", "db"), Statement::Dml(v) if v == [t("db", "t")])
    );
    let Statement::Unparsed { idents, .. } =
        parse("ALTER TABLE orders WITH SYSTEM VERSIONING ???", "db")
    else {
        panic!()
    };
    assert!(idents.iter().any(|i| i == "orders"));
    let Statement::Unparsed { .. } = parse("CREATE TABLE t (a int", "db") else {
        panic!()
    };
}
