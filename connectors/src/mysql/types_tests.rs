use super::*;

fn p(t: &str) -> ColType {
    ColType::parse(t, &Charset::Utf8mb4, false).unwrap()
}

#[test]
fn column_types_parse_and_render_canonically() {
    let cases = [
        ("int(11)", "int", DataType::Int32),
        ("int(10) unsigned", "int unsigned", DataType::Int64),
        (
            "bigint(20) unsigned",
            "bigint unsigned",
            DataType::Decimal {
                precision: Some(20),
                scale: Some(0),
            },
        ),
        ("tinyint(1)", "tinyint", DataType::Int16),
        (
            "smallint unsigned zerofill",
            "smallint unsigned zerofill",
            DataType::Int32,
        ),
        ("mediumint(8)", "mediumint", DataType::Int32),
        (
            "decimal(65,30)",
            "decimal(65,30)",
            DataType::Decimal {
                precision: Some(65),
                scale: Some(30),
            },
        ),
        (
            "DECIMAL",
            "decimal(10,0)",
            DataType::Decimal {
                precision: Some(10),
                scale: Some(0),
            },
        ),
        ("float", "float", DataType::Float32),
        ("float(30)", "double", DataType::Float64),
        ("double precision", "double", DataType::Float64),
        ("bit(1)", "bit(1)", DataType::Bool),
        ("bit(12)", "bit(12)", DataType::Bytes),
        ("year(4)", "year", DataType::Int16),
        ("time(3)", "time(3)", DataType::Interval),
        (
            "datetime(6)",
            "datetime(6)",
            DataType::Timestamp { precision: Some(6) },
        ),
        (
            "timestamp",
            "timestamp",
            DataType::TimestampTz { precision: Some(0) },
        ),
        ("char(5)", "char(5)", DataType::Char { len: Some(5) }),
        ("binary(16)", "binary(16)", DataType::Bytes),
        (
            "varchar(20)",
            "varchar(20)",
            DataType::Text { max_len: Some(20) },
        ),
        ("VARBINARY(8)", "varbinary(8)", DataType::Bytes),
        ("mediumtext", "mediumtext", DataType::Text { max_len: None }),
        ("longblob", "longblob", DataType::Bytes),
        ("json", "json", DataType::Json),
        ("point", "point", DataType::Bytes),
    ];
    for (text, native, dt) in cases {
        let t = p(text);
        assert_eq!(t.native(), native, "{text}");
        assert_eq!(t.data_type(), dt, "{text}");
        assert_eq!(p(&t.native()), t, "{text} re-parses");
    }
}

#[test]
fn enum_and_set_members_keep_quotes_and_commas() {
    let t = p("enum('a','it''s','x,y')");
    let ColType::Enum { values, .. } = &t else {
        panic!()
    };
    assert_eq!(values, &["a", "it's", "x,y"]);
    assert_eq!(t.native(), "enum('a','it''s','x,y')");
    assert_eq!(p(&t.native()), t);
    let s = p("SET('r', 'w')");
    assert_eq!(s.native(), "set('r','w')");
}

#[test]
fn charsets_come_from_words_collations_or_the_default() {
    assert_eq!(
        p("varchar(5) character set latin1").charset(),
        Some(&Charset::Latin1)
    );
    assert_eq!(
        p("text COLLATE utf8mb4_bin").charset(),
        Some(&Charset::Utf8mb4)
    );
    assert_eq!(p("char(3) CHARSET ascii").charset(), Some(&Charset::Ascii));
    assert_eq!(p("char(3) binary").charset(), Some(&Charset::Utf8mb4));
    assert_eq!(p("nvarchar(3)").charset(), Some(&Charset::Utf8mb3));
    assert_eq!(
        ColType::parse("longtext", &Charset::Utf8mb4, true).unwrap(),
        ColType::Json
    );
    assert_eq!(Charset::from_collation("utf8_general_ci"), Charset::Utf8mb3);
    assert_eq!(
        Charset::from_collation("gbk_chinese_ci"),
        Charset::Other("gbk".into())
    );
}

#[test]
fn garbage_is_an_error_not_a_panic() {
    for t in [
        "",
        "(",
        "varchar",
        "enum('a",
        "foo(1)",
        "decimal(x)",
        "int)",
    ] {
        assert!(
            ColType::parse(t, &Charset::Utf8mb4, false).is_err(),
            "{t:?}"
        );
    }
}
