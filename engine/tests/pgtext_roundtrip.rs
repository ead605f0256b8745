//! `engine::pgtext` against a real PostgreSQL: the server's text for every
//! supported type parses, renders back to text the server reads as the same
//! value (under the dbsync session settings and under unrelated ones), and
//! COPY text format round-trips in both directions.

use std::pin::pin;

use bytes::Bytes;
use engine::pgtext::{parse, render, render_copy, split_copy_line, SESSION_SETTINGS};
use engine::{DataType, Value};
use futures::{SinkExt, StreamExt};
use testkit::{PgOptions, PgServer};
use tokio_postgres::{Client, SimpleQueryMessage};

struct Case {
    sql_type: &'static str,
    dt: DataType,
    /// SQL expressions of the values (cast to `sql_type`).
    exprs: &'static [&'static str],
}

fn arr(elem: DataType) -> DataType {
    DataType::Array(Box::new(elem))
}

const NUMERIC: DataType = DataType::Decimal {
    precision: None,
    scale: None,
};
const TEXT: DataType = DataType::Text { max_len: None };

fn cases() -> Vec<Case> {
    let c = |sql_type, dt, exprs| Case {
        sql_type,
        dt,
        exprs,
    };
    vec![
        c("smallint", DataType::Int16, &["-32768", "32767", "0"]),
        c(
            "integer",
            DataType::Int32,
            &["-2147483648", "2147483647", "42"],
        ),
        c(
            "bigint",
            DataType::Int64,
            &["-9223372036854775808", "9223372036854775807"],
        ),
        c(
            "numeric",
            NUMERIC,
            &[
                "0",
                "-12.340",
                "1234567890123456789012345678901234567890",
                "-0.0000000000000000000000000000000000000001",
                "'NaN'",
                "'Infinity'",
                "'-Infinity'",
                "'1e-20'",
            ],
        ),
        c(
            "numeric(10,2)",
            DataType::Decimal {
                precision: Some(10),
                scale: Some(2),
            },
            &["12345678.91", "-0.5"],
        ),
        c(
            "real",
            DataType::Float32,
            &[
                "0.1",
                "'-0'",
                "'NaN'",
                "'Infinity'",
                "'-Infinity'",
                "'3.4028235e38'",
                "'1.1754944e-38'",
                "'1e-45'",
                "'123456.79'",
            ],
        ),
        c(
            "double precision",
            DataType::Float64,
            &[
                "0.1",
                "'NaN'",
                "'Infinity'",
                "'-Infinity'",
                "'-0'",
                "'1e-300'",
                "'1.7976931348623157e308'",
                "'5e-324'",
                "'123456789.123456789'",
                "1e16",
            ],
        ),
        c("boolean", DataType::Bool, &["true", "false"]),
        c(
            "text",
            TEXT,
            &[
                r"E'tab\there'",
                r"E'new\nline\r\n'",
                r"E'back\\slash \\N'",
                "'ünïcødé ✓ 日本語'",
                "''",
                "'NULL'",
                r#"'"quoted", {braced}'"#,
            ],
        ),
        c(
            "varchar(10)",
            DataType::Text { max_len: Some(10) },
            &["'abc'", "'ten chars!'"],
        ),
        c(
            "char(5)",
            DataType::Char { len: Some(5) },
            &["'ab'", "'abcde'", "''"],
        ),
        c(
            "bytea",
            DataType::Bytes,
            &[
                r"'\x'",
                r"'\x00'",
                r"'\x00ff00105c0a09'",
                "decode(repeat('00', 300), 'hex')",
            ],
        ),
        c(
            "date",
            DataType::Date,
            &[
                "'2024-02-29'",
                "'0001-01-01'",
                "'9999-12-31'",
                "'10000-01-01'",
                "'infinity'",
                "'-infinity'",
                "'0044-03-15 BC'",
                "'4713-01-01 BC'",
                "'5874897-12-31'",
            ],
        ),
        c(
            "time",
            DataType::Time { precision: None },
            &[
                "'00:00:00'",
                "'23:59:59.999999'",
                "'12:34:56.5'",
                "'24:00:00'",
            ],
        ),
        c(
            "time(2)",
            DataType::Time { precision: Some(2) },
            &["'12:34:56.789'"],
        ),
        c(
            "timestamp(0)",
            DataType::Timestamp { precision: Some(0) },
            &["'2024-01-02 03:04:05.6'"],
        ),
        c(
            "timestamp(3)",
            DataType::Timestamp { precision: Some(3) },
            &["'2024-01-02 03:04:05.123456'"],
        ),
        c(
            "timestamp(6)",
            DataType::Timestamp { precision: Some(6) },
            &["'2000-02-29 12:00:00.000001'"],
        ),
        c(
            "timestamp",
            DataType::Timestamp { precision: None },
            &[
                "'1999-12-31 23:59:59.5'",
                "'infinity'",
                "'-infinity'",
                "'0001-01-01 00:00:00 BC'",
                "'294276-12-31 23:59:59.999999'",
            ],
        ),
        c(
            "timestamptz",
            DataType::TimestampTz { precision: None },
            &[
                "'2024-01-02 03:04:05.123456+00'",
                "'2024-01-02 03:04:05+05:30'",
                "'1850-01-01 00:00:00 Europe/Amsterdam'",
                "'infinity'",
                "'-infinity'",
                "'4713-01-01 00:00:00+00 BC'",
            ],
        ),
        c(
            "interval",
            DataType::Interval,
            &[
                "'0'",
                "'1 year 2 months 3 days 04:05:06.5'",
                "'-1 year -2 months +3 days -04:05:06.5'",
                "'-0.5 seconds'",
                "'178956970 years 7 months'",
                "'-178956970 years -8 months'",
                "'2562047788 hours 54.775807 seconds'",
                "'1 microsecond'",
                "'-1 day +1 microsecond'",
                "'100 hours'",
            ],
        ),
        c(
            "uuid",
            DataType::Uuid,
            &[
                "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'",
                "'00000000-0000-0000-0000-000000000000'",
            ],
        ),
        c(
            "json",
            DataType::Json,
            &[
                r#"'{ "a" :  [1, 2,   3] ,"a": 2}'"#,
                r#"'"str"'"#,
                "'null'",
                r#"'{"b": "\u00e9\n\\"}'"#,
                "E'[1,\\n 2]'",
            ],
        ),
        c(
            "jsonb",
            DataType::Jsonb,
            &[r#"'{"b": 1, "a": [true, null, "x\ty"]}'"#, "'[]'"],
        ),
        c(
            "int4[]",
            arr(DataType::Int32),
            &[
                "'{1,2,NULL}'",
                "'{}'",
                "'{{1,2},{3,4}}'",
                "'{{NULL,1},{2,NULL}}'",
                "'[0:1]={5,6}'",
                "'{{{1}},{{2}}}'",
            ],
        ),
        c("int2[]", arr(DataType::Int16), &["'{-1,NULL}'"]),
        c("int8[]", arr(DataType::Int64), &["'{9223372036854775807}'"]),
        c(
            "text[]",
            arr(TEXT),
            &[
                r#"'{"a b","c\"d","e\\f","",NULL,"NULL","{}",ünï, x }'"#,
                r"ARRAY[E'tab\t', E'nl\n', 'x,y', E'\\N', ' ']",
                "'{}'",
                r#"'{{a,"b c"},{NULL,""}}'"#,
            ],
        ),
        c(
            "varchar(5)[]",
            arr(DataType::Text { max_len: Some(5) }),
            &["'{abc,NULL}'"],
        ),
        c(
            "char(3)[]",
            arr(DataType::Char { len: Some(3) }),
            &["'{a,NULL,abc}'"],
        ),
        c(
            "numeric[]",
            arr(NUMERIC),
            &["'{1.5,NaN,NULL,-Infinity,1234567890123456789012345678901234567890}'"],
        ),
        c(
            "float8[]",
            arr(DataType::Float64),
            &["'{NaN,Infinity,-0,1e-300,0.1}'"],
        ),
        c("float4[]", arr(DataType::Float32), &["'{0.1,-Infinity}'"]),
        c("bool[]", arr(DataType::Bool), &["'{t,f,NULL}'"]),
        c(
            "bytea[]",
            arr(DataType::Bytes),
            &[r"ARRAY['\x00'::bytea, NULL, '\x5c22'::bytea, '\x']"],
        ),
        c(
            "date[]",
            arr(DataType::Date),
            &["'{2024-01-02,infinity,NULL}'", r#"'{"0044-03-15 BC"}'"#],
        ),
        c(
            "time[]",
            arr(DataType::Time { precision: None }),
            &["'{12:00:00.5,24:00:00}'"],
        ),
        c(
            "timestamp[]",
            arr(DataType::Timestamp { precision: None }),
            &[r#"'{"2024-01-02 03:04:05.25",NULL}'"#],
        ),
        c(
            "timestamptz[]",
            arr(DataType::TimestampTz { precision: None }),
            &[r#"'{"2024-01-02 03:04:05+00",-infinity}'"#],
        ),
        c(
            "interval[]",
            arr(DataType::Interval),
            &["'{P1Y,\"-1 days\",PT0S,NULL}'"],
        ),
        c(
            "uuid[]",
            arr(DataType::Uuid),
            &["'{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11,NULL}'"],
        ),
        c(
            "json[]",
            arr(DataType::Json),
            &[r#"ARRAY['{"a": 1}'::json, '[1, 2]', NULL, '"x\\y"']"#],
        ),
        c(
            "jsonb[]",
            arr(DataType::Jsonb),
            &[r#"ARRAY['{"a": 1}'::jsonb, 'null']"#],
        ),
    ]
}

/// Types without an `=` operator are compared by their text.
fn has_equality(sql_type: &str) -> bool {
    !sql_type.starts_with("json[") && sql_type != "json"
}

/// Expressions whose values chrono cannot hold (or arrays with explicit bounds).
fn expect_other(expr: &str) -> bool {
    ["infinity", " BC", "24:00:00", "[0:1]", "5874897", "294276"]
        .iter()
        .any(|s| expr.contains(s))
}

fn contains_other(v: &Value) -> bool {
    match v {
        Value::Other(_) => true,
        Value::Array(items) => items.iter().any(contains_other),
        _ => false,
    }
}

fn rendered(v: &Value) -> String {
    let mut s = String::new();
    render(v, &mut s);
    s
}

/// The first column of each result row as the type's output function writes
/// it (the text protocol: what pgoutput and COPY carry).
async fn output_text(client: &Client, sql: &str) -> Vec<Option<String>> {
    client
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(row.get(0).map(str::to_owned)),
            _ => None,
        })
        .collect()
}

async fn session(pg: &PgServer, settings: &[(&str, &str)]) -> Client {
    let client = pg.connect("postgres").await;
    for (name, value) in settings {
        client
            .batch_execute(&format!("SET {name} = '{value}'"))
            .await
            .unwrap_or_else(|e| panic!("SET {name}: {e}"));
    }
    client
}

/// Settings unlike dbsync's: rendered text must not depend on them.
const HOSTILE: &[(&str, &str)] = &[
    ("datestyle", "SQL, DMY"),
    ("intervalstyle", "sql_standard"),
    ("timezone", "Asia/Kolkata"),
    ("extra_float_digits", "0"),
    ("bytea_output", "escape"),
];

/// Creates table `c{n}(id, v)` per case with one row per expression (id 1..)
/// and a NULL row (id 0).
async fn load_cases(client: &Client, cases: &[Case]) {
    for (n, case) in cases.iter().enumerate() {
        let mut sql = format!(
            "CREATE TABLE c{n} (id int PRIMARY KEY, v {ty}); INSERT INTO c{n} VALUES (0, NULL)",
            ty = case.sql_type
        );
        for (i, expr) in case.exprs.iter().enumerate() {
            sql.push_str(&format!(", ({}, ({expr})::{})", i + 1, case.sql_type));
        }
        client
            .batch_execute(&sql)
            .await
            .unwrap_or_else(|e| panic!("loading {}: {e}", case.sql_type));
    }
}

#[tokio::test]
async fn values_round_trip_through_postgres() {
    let pg = PgServer::start(PgOptions::default());
    let client = session(&pg, SESSION_SETTINGS).await;
    let hostile = session(&pg, HOSTILE).await;
    let postgres_style = session(&pg, &[("intervalstyle", "postgres")]).await;
    let cases = cases();
    load_cases(&client, &cases).await;
    let mut checked = 0;
    for (n, case) in cases.iter().enumerate() {
        let ty = case.sql_type;
        let original = format!("(SELECT v FROM c{n} WHERE id = $2)");
        let (same_value, same_text) = if has_equality(ty) {
            (
                format!("$1::text::{ty} IS NOT DISTINCT FROM {original}"),
                format!("$1::text::{ty}::text IS NOT DISTINCT FROM {original}::text"),
            )
        } else {
            let text = format!("$1::text::{ty}::text IS NOT DISTINCT FROM {original}::text");
            (text.clone(), text)
        };
        let check = format!("SELECT {same_value}, {same_text}");
        for (i, expr) in case.exprs.iter().enumerate() {
            let id = i as i32 + 1;
            let what = format!("{ty} {expr}");
            let text = output_text(&client, &format!("SELECT v FROM c{n} WHERE id = {id}"))
                .await
                .remove(0)
                .expect("not null");
            let value = parse(&case.dt, &text).unwrap_or_else(|e| panic!("{what}: {text:?}: {e}"));
            assert_eq!(
                contains_other(&value),
                expect_other(expr),
                "{what}: {text:?} parsed to {value:?}"
            );
            let out = rendered(&value);
            let back = parse(&case.dt, &out).unwrap_or_else(|e| panic!("{what}: {out:?}: {e}"));
            assert_eq!(rendered(&back), out, "{what}: parse(render(v))");

            let row = client.query_one(&check, &[&out, &id]).await.unwrap();
            assert!(
                row.get::<_, bool>(0),
                "{what}: server read {out:?} as another value"
            );
            assert!(
                row.get::<_, bool>(1),
                "{what}: server read {out:?} as another text"
            );

            let row = hostile
                .query_one(&format!("SELECT {same_value}"), &[&out, &id])
                .await
                .unwrap_or_else(|e| panic!("{what}: hostile session rejected {out:?}: {e}"));
            assert!(
                row.get::<_, bool>(0),
                "{what}: hostile session read {out:?} differently"
            );

            if ty.starts_with("interval") {
                let sql = format!("SELECT v FROM c{n} WHERE id = {id}");
                let text = output_text(&postgres_style, &sql).await.remove(0).unwrap();
                assert_eq!(
                    parse(&case.dt, &text).unwrap(),
                    value,
                    "{what}: postgres style {text:?}"
                );
            }
            checked += 1;
        }
    }
    let total: usize = cases.iter().map(|c| c.exprs.len()).sum();
    assert!(
        checked == total && total > 120,
        "{checked} of {total} values checked"
    );
}

async fn copy_out(client: &Client, sql: &str) -> Vec<u8> {
    let mut stream = pin!(client.copy_out(sql).await.unwrap());
    let mut buf = Vec::new();
    while let Some(chunk) = stream.next().await {
        buf.extend_from_slice(&chunk.unwrap());
    }
    buf
}

#[tokio::test]
async fn copy_round_trips_through_postgres() {
    let pg = PgServer::start(PgOptions::default());
    let client = session(&pg, SESSION_SETTINGS).await;
    let cases = cases();
    load_cases(&client, &cases).await;
    let mut fields = Vec::new();
    for (n, case) in cases.iter().enumerate() {
        let ty = case.sql_type;
        // Server text, one value at a time, to compare with what COPY carries.
        let by_query = output_text(&client, &format!("SELECT v FROM c{n} ORDER BY id")).await;

        let data = copy_out(
            &client,
            &format!("COPY (SELECT id, v FROM c{n} ORDER BY id) TO STDOUT"),
        )
        .await;
        assert_eq!(data.last(), Some(&b'\n'));
        let mut rows = Vec::new();
        for line in data[..data.len() - 1].split(|&b| b == b'\n') {
            split_copy_line(line, &mut fields).unwrap_or_else(|e| panic!("{ty}: {e}"));
            assert_eq!(fields.len(), 2, "{ty}: fields");
            let id: i32 = fields[0].as_deref().unwrap().parse().unwrap();
            let value = match &fields[1] {
                None => Value::Null,
                Some(text) => parse(&case.dt, text).unwrap_or_else(|e| panic!("{ty}: {e}")),
            };
            assert_eq!(
                fields[1], by_query[id as usize],
                "{ty} row {id}: COPY text differs from the query text"
            );
            rows.push((id, value));
        }
        assert_eq!(rows.len(), case.exprs.len() + 1, "{ty}: rows");
        assert_eq!(rows[0].1, Value::Null);

        client
            .batch_execute(&format!("CREATE TABLE d{n} (id int PRIMARY KEY, v {ty})"))
            .await
            .unwrap();
        let mut buf = Vec::new();
        for (id, value) in &rows {
            render_copy(&Value::Int32(*id), &mut buf);
            buf.push(b'\t');
            render_copy(value, &mut buf);
            buf.push(b'\n');
        }
        let mut sink = pin!(client
            .copy_in::<_, Bytes>(&format!("COPY d{n} (id, v) FROM STDIN"))
            .await
            .unwrap());
        sink.send(Bytes::from(buf)).await.unwrap();
        let copied = sink
            .as_mut()
            .finish()
            .await
            .unwrap_or_else(|e| panic!("{ty}: COPY FROM rejected the rendered rows: {e}"));
        assert_eq!(copied as usize, rows.len());

        let value_check = if has_equality(ty) {
            "OR c.v IS DISTINCT FROM d.v"
        } else {
            ""
        };
        let differing: i64 = client
            .query_one(
                &format!(
                    "SELECT count(*) FROM c{n} c FULL JOIN d{n} d USING (id) \
                     WHERE c.v::text IS DISTINCT FROM d.v::text {value_check}"
                ),
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(differing, 0, "{ty}: rows differ after COPY FROM");
    }
}
