//! Source catalog queries: the tracked databases' tables from
//! `information_schema`, binlog files and positions.

use std::collections::BTreeMap;

use engine::position::BinlogPosition;
use engine::TableId;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Row};

use super::client::{text_at, Flavor};
use super::error::MysqlSourceError;
use super::schema::{Catalog, ColumnDef, TableDef};
use super::types::{Charset, ColType};

/// Databases that are never replicated.
pub const SYSTEM_DATABASES: &[&str] = &["mysql", "information_schema", "performance_schema", "sys"];

fn placeholders(n: usize) -> String {
    vec!["?"; n].join(", ")
}

fn q(what: &str) -> impl Fn(mysql_async::Error) -> MysqlSourceError + '_ {
    move |e| MysqlSourceError::query(what, e)
}

/// Every non-system database.
pub async fn databases(conn: &mut Conn) -> Result<Vec<String>, MysqlSourceError> {
    let rows: Vec<String> = conn
        .query("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA ORDER BY 1")
        .await
        .map_err(q("listing databases"))?;
    Ok(rows
        .into_iter()
        .filter(|d| !SYSTEM_DATABASES.contains(&d.to_ascii_lowercase().as_str()))
        .collect())
}

/// Reads the base tables of `dbs`: columns in order, primary key (or the
/// first unique index on NOT NULL columns), charsets, and MariaDB's JSON
/// columns (`longtext` with a `json_valid` check). A column type dbsync
/// cannot model is reported per table in the second result instead of
/// failing the whole catalog.
pub async fn load(
    conn: &mut Conn,
    dbs: &[String],
    flavor: Flavor,
) -> Result<(Catalog, BTreeMap<TableId, String>), MysqlSourceError> {
    let mut catalog = Catalog::default();
    let mut problems = BTreeMap::new();
    if dbs.is_empty() {
        return Ok((catalog, problems));
    }
    let params: Vec<mysql_async::Value> = dbs.iter().map(|d| d.as_str().into()).collect();
    let ph = placeholders(dbs.len());

    let rows: Vec<Row> = conn
        .exec(
            format!(
                "SELECT SCHEMA_NAME, DEFAULT_CHARACTER_SET_NAME FROM information_schema.SCHEMATA \
                 WHERE SCHEMA_NAME IN ({ph})"
            ),
            params.clone(),
        )
        .await
        .map_err(q("reading database charsets"))?;
    for mut r in rows {
        if let (Some(db), Some(cs)) = (text_at(&mut r, 0), text_at(&mut r, 1)) {
            catalog.db_charsets.insert(db, Charset::from_name(&cs));
        }
    }

    let mut json_cols: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    if flavor == Flavor::MariaDb {
        let rows: Vec<Row> = conn
            .exec(
                format!(
                    "SELECT CONSTRAINT_SCHEMA, TABLE_NAME, CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS \
                     WHERE CONSTRAINT_SCHEMA IN ({ph})"
                ),
                params.clone(),
            )
            .await
            .map_err(q("reading check constraints"))?;
        for mut r in rows {
            let (Some(db), Some(t), Some(clause)) =
                (text_at(&mut r, 0), text_at(&mut r, 1), text_at(&mut r, 2))
            else {
                continue;
            };
            let c: String = clause.chars().filter(|c| !c.is_whitespace()).collect();
            if let Some(col) = c
                .strip_prefix("json_valid(`")
                .and_then(|s| s.strip_suffix("`)"))
            {
                json_cols
                    .entry((db, t))
                    .or_default()
                    .push(col.replace("``", "`"));
            }
        }
    }

    let rows: Vec<Row> = conn
        .exec(
            format!(
                "SELECT TABLE_SCHEMA, TABLE_NAME, TABLE_COLLATION FROM information_schema.TABLES \
                 WHERE TABLE_TYPE = 'BASE TABLE' AND TABLE_SCHEMA IN ({ph})"
            ),
            params.clone(),
        )
        .await
        .map_err(q("listing tables"))?;
    let mut table_cs: BTreeMap<TableId, Charset> = BTreeMap::new();
    for mut r in rows {
        if let (Some(db), Some(t)) = (text_at(&mut r, 0), text_at(&mut r, 1)) {
            let cs = text_at(&mut r, 2)
                .map(|c| Charset::from_collation(&c))
                .unwrap_or_else(|| catalog.db_charset(&db));
            table_cs.insert(TableId::new(db, t), cs);
        }
    }

    let rows: Vec<Row> = conn
        .exec(
            format!(
                "SELECT TABLE_SCHEMA, TABLE_NAME, COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE, CHARACTER_SET_NAME \
                 FROM information_schema.COLUMNS WHERE TABLE_SCHEMA IN ({ph}) \
                 ORDER BY TABLE_SCHEMA, TABLE_NAME, ORDINAL_POSITION"
            ),
            params.clone(),
        )
        .await
        .map_err(q("reading columns"))?;
    for mut r in rows {
        let (Some(db), Some(t), Some(name), Some(ty)) = (
            text_at(&mut r, 0),
            text_at(&mut r, 1),
            text_at(&mut r, 2),
            text_at(&mut r, 3),
        ) else {
            continue;
        };
        let id = TableId::new(db.clone(), t.clone());
        let Some(tcs) = table_cs.get(&id) else {
            continue; // a view
        };
        if problems.contains_key(&id) {
            continue;
        }
        let nullable = text_at(&mut r, 4).is_some_and(|v| v == "YES");
        let cs = text_at(&mut r, 5)
            .map(|c| Charset::from_name(&c))
            .unwrap_or_else(|| tcs.clone());
        let json = json_cols
            .get(&(db.clone(), t.clone()))
            .is_some_and(|cols| cols.iter().any(|c| c.eq_ignore_ascii_case(&name)));
        match ColType::parse(&ty, &cs, json) {
            Ok(ty) => {
                let def = catalog.tables.entry(id).or_insert_with(|| TableDef {
                    columns: Vec::new(),
                    key: Vec::new(),
                    charset: tcs.clone(),
                });
                def.columns.push(ColumnDef {
                    name,
                    ty,
                    nullable,
                    default: None,
                });
            }
            Err(e) => {
                catalog.tables.remove(&id);
                problems.insert(id, format!("column {name}: {e}"));
            }
        }
    }

    // Keys: the primary key, else the first unique index on NOT NULL columns.
    let rows: Vec<Row> = conn
        .exec(
            format!(
                "SELECT s.TABLE_SCHEMA, s.TABLE_NAME, s.INDEX_NAME, s.COLUMN_NAME, \
                        MAX(c.IS_NULLABLE) OVER (PARTITION BY s.TABLE_SCHEMA, s.TABLE_NAME, s.INDEX_NAME) \
                   FROM information_schema.STATISTICS s \
                   JOIN information_schema.COLUMNS c ON c.TABLE_SCHEMA = s.TABLE_SCHEMA \
                        AND c.TABLE_NAME = s.TABLE_NAME AND c.COLUMN_NAME = s.COLUMN_NAME \
                  WHERE s.NON_UNIQUE = 0 AND s.TABLE_SCHEMA IN ({ph}) \
                  ORDER BY s.TABLE_SCHEMA, s.TABLE_NAME, s.INDEX_NAME <> 'PRIMARY', s.INDEX_NAME, s.SEQ_IN_INDEX"
            ),
            params,
        )
        .await
        .map_err(q("reading primary keys"))?;
    let mut chosen: BTreeMap<TableId, String> = BTreeMap::new();
    for mut r in rows {
        let (Some(db), Some(t), Some(index), Some(col)) = (
            text_at(&mut r, 0),
            text_at(&mut r, 1),
            text_at(&mut r, 2),
            text_at(&mut r, 3),
        ) else {
            continue;
        };
        let any_nullable = text_at(&mut r, 4).is_some_and(|v| v == "YES");
        let id = TableId::new(db, t);
        if index != "PRIMARY" && any_nullable {
            continue;
        }
        let pick = chosen.entry(id.clone()).or_insert_with(|| index.clone());
        if *pick == index {
            if let Some(def) = catalog.tables.get_mut(&id) {
                def.key.push(col);
            }
        }
    }
    Ok((catalog, problems))
}

/// The binlog files and their sizes (`SHOW BINARY LOGS`).
pub async fn binary_logs(conn: &mut Conn) -> Result<Vec<(String, u64)>, MysqlSourceError> {
    let rows: Vec<Row> = conn.query("SHOW BINARY LOGS").await.map_err(q(
        "SHOW BINARY LOGS (needs REPLICATION CLIENT or BINLOG MONITOR)",
    ))?;
    Ok(rows
        .into_iter()
        .filter_map(|mut r| {
            let name = text_at(&mut r, 0)?;
            let size = text_at(&mut r, 1)?.parse().ok()?;
            Some((name, size))
        })
        .collect())
}

/// The server's current binlog position (`SHOW MASTER STATUS`, or
/// `SHOW BINARY LOG STATUS` on MySQL 8.2+) with the executed GTID set
/// where the server reports one.
pub async fn current_position(
    conn: &mut Conn,
    flavor: Flavor,
) -> Result<BinlogPosition, MysqlSourceError> {
    let rows: Vec<Row> = match conn.query("SHOW MASTER STATUS").await {
        Ok(r) => r,
        Err(_) => conn.query("SHOW BINARY LOG STATUS").await.map_err(q(
            "reading the binlog position (needs REPLICATION CLIENT or BINLOG MONITOR)",
        ))?,
    };
    let mut row = rows.into_iter().next().ok_or_else(|| {
        MysqlSourceError::Prerequisite(
            "the server reports no binlog position: enable log_bin".into(),
        )
    })?;
    let file = text_at(&mut row, 0).unwrap_or_default();
    let pos: u64 = text_at(&mut row, 1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(4);
    let mysql_gtids = if flavor == Flavor::MySql && row.len() > 4 {
        text_at(&mut row, 4).map(|s| s.replace('\n', ""))
    } else {
        None
    };
    let mut p = BinlogPosition {
        file: file.into(),
        pos,
        gtid_set: mysql_gtids.filter(|s| !s.is_empty()).map(Into::into),
    };
    if flavor == Flavor::MariaDb {
        p.gtid_set = maria_gtid_at(conn, &p).await?.map(Into::into);
    }
    Ok(p)
}

/// MariaDB: the GTID state at a binlog position (`BINLOG_GTID_POS`).
pub async fn maria_gtid_at(
    conn: &mut Conn,
    p: &BinlogPosition,
) -> Result<Option<String>, MysqlSourceError> {
    let g: Option<Option<String>> = conn
        .exec_first("SELECT BINLOG_GTID_POS(?, ?)", (p.file.as_ref(), p.pos))
        .await
        .map_err(q("BINLOG_GTID_POS"))?;
    Ok(g.flatten())
}
