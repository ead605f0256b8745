//! SQL text of the MySQL sink: identifier quoting and the per-table
//! statements. Pure functions (no I/O); values never appear in SQL text —
//! they travel as bound parameters or as `LOAD DATA` text.
//!
//! The session runs with `NO_BACKSLASH_ESCAPES`, so the few string literals
//! dbsync writes (enum members in DDL) only double their quotes; `LOAD DATA`
//! separators are hex literals, which mean the same under any `sql_mode`.

use std::fmt::Write as _;

use engine::{TableId, TableSchema};

/// What the sink needs to know about the target server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerInfo {
    /// MariaDB (otherwise MySQL).
    pub mariadb: bool,
    /// `major.minor.patch`.
    pub version: (u16, u16, u16),
    /// The server accepts `LOAD DATA LOCAL INFILE` (`local_infile = ON`;
    /// MariaDB's default, off by default in MySQL 8).
    pub local_infile: bool,
}

impl ServerInfo {
    /// MySQL 8.0.19+ wants `INSERT ... AS alias ON DUPLICATE KEY UPDATE c =
    /// alias.c` (`VALUES(c)` is deprecated there and warns); MariaDB has no
    /// row alias and keeps `VALUES(c)`.
    pub fn row_alias(&self) -> bool {
        !self.mariadb && self.version >= (8, 0, 19)
    }

    /// A binary, NO PAD collation for text key columns, so that keys that
    /// differ in case, accents or trailing spaces stay distinct as they are in
    /// the source. MySQL 5.7 has no NO PAD collation: `utf8mb4_bin` ignores
    /// trailing spaces there.
    pub fn key_collation(&self) -> &'static str {
        if self.mariadb {
            "utf8mb4_nopad_bin"
        } else if self.version >= (8, 0, 0) {
            "utf8mb4_0900_bin"
        } else {
            "utf8mb4_bin"
        }
    }
}

/// Quotes an identifier: `` `name` ``, with `` ` `` doubled.
pub fn quote_ident(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 2);
    push_ident(&mut out, name);
    out
}

/// Appends `name` quoted as an identifier.
pub fn push_ident(out: &mut String, name: &str) {
    out.push('`');
    for c in name.chars() {
        if c == '`' {
            out.push('`');
        }
        out.push(c);
    }
    out.push('`');
}

/// `` `database`.`table` `` (a target table's schema is its database).
pub fn qualified(id: &TableId) -> String {
    let mut out = String::with_capacity(id.schema.len() + id.name.len() + 5);
    push_ident(&mut out, &id.schema);
    out.push('.');
    push_ident(&mut out, &id.name);
    out
}

/// A string literal for a `NO_BACKSLASH_ESCAPES` session: `'it''s'`. Used
/// for DDL constants (enum members), never for row values.
pub fn quote_literal(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        if c == '\'' {
            out.push('\'');
        }
        out.push(c);
    }
    out.push('\'');
    out
}

fn ident_list<'a>(names: impl IntoIterator<Item = &'a str>, prefix: &str) -> String {
    let mut out = String::new();
    for (i, name) in names.into_iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(prefix);
        push_ident(&mut out, name);
    }
    out
}

/// The alias of the incoming row in MySQL 8's `INSERT ... AS alias`.
const NEW: &str = "`dbsync_new`";

/// The no-op `ON DUPLICATE KEY UPDATE` clause: an existing row stays as it is
/// (`INSERT IGNORE` would also turn data errors into warnings).
pub fn keep_existing(schema: &TableSchema) -> String {
    // Qualified: in `INSERT ... SELECT` the stage has the same column names.
    // (The sink checks that the key is valid before building statements.)
    let first = schema
        .key
        .first()
        .and_then(|&i| schema.columns.get(i))
        .or(schema.columns.first())
        .map_or("", |c| c.name.as_str());
    let k = format!("{}.{}", qualified(&schema.id), quote_ident(first));
    format!("ON DUPLICATE KEY UPDATE {k} = {k}")
}

/// The `ON DUPLICATE KEY UPDATE` clause: every non-key column takes the
/// incoming value; a no-op assignment when every column is a key column.
pub fn on_duplicate(schema: &TableSchema, alias: bool) -> String {
    let mut out = String::from("ON DUPLICATE KEY UPDATE ");
    let mut first = true;
    for (i, col) in schema.columns.iter().enumerate() {
        if schema.key.contains(&i) {
            continue;
        }
        if !first {
            out.push_str(", ");
        }
        first = false;
        let q = quote_ident(&col.name);
        if alias {
            let _ = write!(out, "{q} = {NEW}.{q}");
        } else {
            let _ = write!(out, "{q} = VALUES({q})");
        }
    }
    if first {
        return keep_existing(schema);
    }
    out
}

/// The `LOAD DATA` format dbsync writes (see `values::Param::write_load_field`).
const LOAD_FORMAT: &str = "CHARACTER SET utf8mb4 FIELDS TERMINATED BY X'09' ESCAPED BY X'5C' \
                           LINES TERMINATED BY X'0A'";

/// The statements of one target table, built once per schema.
#[derive(Debug, Clone)]
pub struct TableSql {
    /// `` `db`.`table` ``.
    pub target: String,
    /// Quoted column list, in schema order.
    pub columns: String,
    /// `INSERT INTO target (cols) VALUES `.
    insert_head: String,
    /// What follows the rows of an upsert.
    upsert_tail: String,
    /// What follows the rows of an insert that keeps existing rows.
    keep_tail: String,
    /// `INSERT INTO stage (cols) VALUES ` (filling the stage without `LOAD DATA`).
    stage_insert_head: String,
    /// `` `db`.`dbsync_stage_N` ``: a session temp table for `LOAD DATA`.
    pub stage: String,
    /// Creates the stage: the target's column types, no keys or checks.
    pub create_stage: String,
    /// `DROP TEMPORARY TABLE IF EXISTS stage` (no implicit commit).
    pub drop_stage: String,
    /// `LOAD DATA LOCAL INFILE ... INTO TABLE stage`.
    pub load_stage: String,
    /// `LOAD DATA LOCAL INFILE ... INTO TABLE target` (probably-new keys).
    pub load_target: String,
    /// `INSERT INTO target ... SELECT ... FROM stage ON DUPLICATE KEY UPDATE ...`.
    pub merge: String,
    /// The same, keeping existing rows as they are.
    pub merge_keep: String,
    /// `UPDATE target JOIN stage ON key SET ...`: overwrites rows that exist;
    /// `None` when every column belongs to the key (nothing to overwrite).
    pub update_from_stage: Option<String>,
    /// `DELETE FROM target WHERE`.
    delete_head: String,
    /// The key column list for deletes: `` `k` `` or `` (`k1`, `k2`) ``.
    key_tuple: String,
    /// The `WHERE` clause of a partial update (key columns `= ?`).
    key_where: String,
}

impl TableSql {
    /// Builds the statements for `schema`. `stage_id` makes the session's
    /// staging table name unique; `bit_columns` marks columns of type `BIT`
    /// (`LOAD DATA` reads them through a variable and `CAST`).
    pub fn new(
        schema: &TableSchema,
        server: &ServerInfo,
        stage_id: u64,
        bit_columns: &[bool],
    ) -> Self {
        let target = qualified(&schema.id);
        let columns = ident_list(schema.columns.iter().map(|c| c.name.as_str()), "");
        let alias = server.row_alias();
        let dup = on_duplicate(schema, alias);
        let upsert_tail = if alias {
            format!(" AS {NEW} {dup}")
        } else {
            format!(" {dup}")
        };
        let mut stage = String::new();
        push_ident(&mut stage, &schema.id.schema);
        let _ = write!(stage, ".`dbsync_stage_{stage_id}`");
        let mut load_cols = String::new();
        let mut load_set = String::new();
        for (i, col) in schema.columns.iter().enumerate() {
            if i > 0 {
                load_cols.push_str(", ");
            }
            if bit_columns.get(i).copied().unwrap_or(false) {
                let _ = write!(load_cols, "@dbsync_v{i}");
                load_set.push_str(if load_set.is_empty() { " SET " } else { ", " });
                push_ident(&mut load_set, &col.name);
                let _ = write!(load_set, " = CAST(@dbsync_v{i} AS UNSIGNED)");
            } else {
                push_ident(&mut load_cols, &col.name);
            }
        }
        let load = |into: &str| {
            format!(
                "LOAD DATA LOCAL INFILE 'dbsync' INTO TABLE {into} {LOAD_FORMAT} ({load_cols}){load_set}"
            )
        };
        let merge = if alias {
            format!(
                "INSERT INTO {target} ({columns}) SELECT * FROM (SELECT {columns} FROM {stage}) \
                 AS {NEW} {dup}"
            )
        } else {
            format!("INSERT INTO {target} ({columns}) SELECT {columns} FROM {stage} {dup}")
        };
        let keep = keep_existing(schema);
        let merge_keep =
            format!("INSERT INTO {target} ({columns}) SELECT {columns} FROM {stage} {keep}");
        let mut sets = String::new();
        for (i, col) in schema.columns.iter().enumerate() {
            if schema.key.contains(&i) {
                continue;
            }
            let q = quote_ident(&col.name);
            sets.push_str(if sets.is_empty() { " SET " } else { ", " });
            let _ = write!(sets, "t.{q} = s.{q}");
        }
        let on = schema
            .key_names()
            .map(|k| {
                let q = quote_ident(k);
                format!("t.{q} = s.{q}")
            })
            .collect::<Vec<_>>()
            .join(" AND ");
        let update_from_stage = (!sets.is_empty())
            .then(|| format!("UPDATE {target} AS t JOIN {stage} AS s ON {on}{sets}"));
        let key_names: Vec<&str> = schema.key_names().collect();
        let key_tuple = if key_names.len() == 1 {
            quote_ident(key_names[0])
        } else {
            format!("({})", ident_list(key_names.iter().copied(), ""))
        };
        let key_where = key_names
            .iter()
            .map(|k| format!("{} = ?", quote_ident(k)))
            .collect::<Vec<_>>()
            .join(" AND ");
        Self {
            insert_head: format!("INSERT INTO {target} ({columns}) VALUES "),
            upsert_tail,
            keep_tail: format!(" {keep}"),
            stage_insert_head: format!("INSERT INTO {stage} ({columns}) VALUES "),
            merge_keep,
            update_from_stage,
            create_stage: format!(
                "CREATE TEMPORARY TABLE {stage} ENGINE=InnoDB SELECT {columns} FROM {target} LIMIT 0"
            ),
            drop_stage: format!("DROP TEMPORARY TABLE IF EXISTS {stage}"),
            load_stage: load(&stage),
            load_target: load(&target),
            merge,
            delete_head: format!("DELETE FROM {target} WHERE "),
            key_tuple,
            key_where,
            target,
            columns,
            stage,
        }
    }

    /// `INSERT INTO target (cols) VALUES (?, ...), ... ON DUPLICATE KEY UPDATE ...`
    /// for `rows` rows of `ncols` parameters each; `overwrite` false keeps
    /// existing rows as they are.
    pub fn upsert_values(&self, rows: usize, ncols: usize, overwrite: bool) -> String {
        let tail = if overwrite {
            &self.upsert_tail
        } else {
            &self.keep_tail
        };
        let mut sql = String::with_capacity(self.insert_head.len() + tail.len() + rows * ncols * 3);
        sql.push_str(&self.insert_head);
        push_tuples(&mut sql, rows, ncols);
        sql.push_str(tail);
        sql
    }

    /// `INSERT INTO stage (cols) VALUES (?, ...), ...`.
    pub fn stage_values(&self, rows: usize, ncols: usize) -> String {
        let mut sql = String::with_capacity(self.stage_insert_head.len() + rows * ncols * 3);
        sql.push_str(&self.stage_insert_head);
        push_tuples(&mut sql, rows, ncols);
        sql
    }

    /// `DELETE FROM target WHERE key IN (...)` for `keys` keys of `nkey` columns.
    pub fn delete_keys(&self, keys: usize, nkey: usize) -> String {
        let mut sql = String::with_capacity(self.delete_head.len() + keys * (nkey * 3 + 4) + 32);
        sql.push_str(&self.delete_head);
        sql.push_str(&self.key_tuple);
        sql.push_str(" IN (");
        if nkey == 1 {
            for i in 0..keys {
                sql.push_str(if i == 0 { "?" } else { ", ?" });
            }
        } else {
            push_tuples(&mut sql, keys, nkey);
        }
        sql.push(')');
        sql
    }

    /// `UPDATE target SET <changed columns> WHERE <key> = <old key>`:
    /// parameters are the changed columns' values in column order, then the
    /// old key in key order.
    pub fn partial_update(&self, schema: &TableSchema, changed: &[bool]) -> String {
        let mut sql = format!("UPDATE {} SET ", self.target);
        let mut first = true;
        for (col, _) in schema.columns.iter().zip(changed).filter(|(_, &c)| c) {
            if !first {
                sql.push_str(", ");
            }
            first = false;
            push_ident(&mut sql, &col.name);
            sql.push_str(" = ?");
        }
        sql.push_str(" WHERE ");
        sql.push_str(&self.key_where);
        sql
    }
}

/// Appends `(?, ?), (?, ?)`.
fn push_tuples(sql: &mut String, rows: usize, ncols: usize) {
    for r in 0..rows {
        sql.push_str(if r == 0 { "(" } else { ", (" });
        for c in 0..ncols {
            sql.push_str(if c == 0 { "?" } else { ", ?" });
        }
        sql.push(')');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine::{ColumnSchema, DataType, Dialect};

    fn schema(cols: &[&str], key: &[usize]) -> TableSchema {
        TableSchema {
            id: TableId::new("sales", "order`s"),
            columns: cols
                .iter()
                .map(|c| ColumnSchema {
                    name: (*c).into(),
                    data_type: DataType::Int32,
                    nullable: true,
                    native_type: "integer".into(),
                    default: None,
                })
                .collect(),
            key: key.to_vec(),
            dialect: Dialect::Postgres,
        }
    }

    fn maria() -> ServerInfo {
        ServerInfo {
            mariadb: true,
            version: (10, 11, 6),
            local_infile: true,
        }
    }

    fn mysql8() -> ServerInfo {
        ServerInfo {
            mariadb: false,
            version: (8, 0, 36),
            local_infile: false,
        }
    }

    #[test]
    fn identifiers_and_literals_are_quoted() {
        assert_eq!(quote_ident("a"), "`a`");
        assert_eq!(quote_ident("we`ird"), "`we``ird`");
        assert_eq!(qualified(&TableId::new("d b", "t")), "`d b`.`t`");
        assert_eq!(quote_literal("it's \\ x"), "'it''s \\ x'");
    }

    #[test]
    fn upserts_per_flavor() {
        let s = schema(&["id", "name", "qty"], &[0]);
        let sql = TableSql::new(&s, &maria(), 1, &[]);
        assert_eq!(
            sql.upsert_values(2, 3, true),
            "INSERT INTO `sales`.`order``s` (`id`, `name`, `qty`) VALUES (?, ?, ?), (?, ?, ?) \
             ON DUPLICATE KEY UPDATE `name` = VALUES(`name`), `qty` = VALUES(`qty`)"
        );
        let sql = TableSql::new(&s, &mysql8(), 1, &[]);
        assert_eq!(
            sql.upsert_values(1, 3, true),
            "INSERT INTO `sales`.`order``s` (`id`, `name`, `qty`) VALUES (?, ?, ?) AS `dbsync_new` \
             ON DUPLICATE KEY UPDATE `name` = `dbsync_new`.`name`, `qty` = `dbsync_new`.`qty`"
        );
        assert_eq!(
            sql.merge,
            "INSERT INTO `sales`.`order``s` (`id`, `name`, `qty`) SELECT * FROM (SELECT `id`, \
             `name`, `qty` FROM `sales`.`dbsync_stage_1`) AS `dbsync_new` ON DUPLICATE KEY UPDATE \
             `name` = `dbsync_new`.`name`, `qty` = `dbsync_new`.`qty`"
        );
    }

    #[test]
    fn policy_statements() {
        let s = schema(&["id", "name"], &[0]);
        let sql = TableSql::new(&s, &mysql8(), 3, &[]);
        assert_eq!(
            sql.upsert_values(1, 2, false),
            "INSERT INTO `sales`.`order``s` (`id`, `name`) VALUES (?, ?) \
             ON DUPLICATE KEY UPDATE `sales`.`order``s`.`id` = `sales`.`order``s`.`id`"
        );
        assert_eq!(
            sql.merge_keep,
            "INSERT INTO `sales`.`order``s` (`id`, `name`) SELECT `id`, `name` FROM \
             `sales`.`dbsync_stage_3` ON DUPLICATE KEY UPDATE `sales`.`order``s`.`id` = \
             `sales`.`order``s`.`id`"
        );
        assert_eq!(
            sql.update_from_stage.as_deref(),
            Some(
                "UPDATE `sales`.`order``s` AS t JOIN `sales`.`dbsync_stage_3` AS s \
                 ON t.`id` = s.`id` SET t.`name` = s.`name`"
            )
        );
        assert_eq!(
            sql.stage_values(2, 2),
            "INSERT INTO `sales`.`dbsync_stage_3` (`id`, `name`) VALUES (?, ?), (?, ?)"
        );
        let keys_only = schema(&["a", "b"], &[0, 1]);
        assert!(TableSql::new(&keys_only, &maria(), 1, &[])
            .update_from_stage
            .is_none());
    }

    #[test]
    fn key_only_tables_update_nothing() {
        let s = schema(&["a", "b"], &[1, 0]);
        assert_eq!(
            on_duplicate(&s, false),
            "ON DUPLICATE KEY UPDATE `sales`.`order``s`.`b` = `sales`.`order``s`.`b`"
        );
    }

    #[test]
    fn staging_and_load_statements() {
        let s = schema(&["id", "flags"], &[0]);
        let sql = TableSql::new(&s, &maria(), 7, &[false, true]);
        assert_eq!(
            sql.create_stage,
            "CREATE TEMPORARY TABLE `sales`.`dbsync_stage_7` ENGINE=InnoDB SELECT `id`, `flags` \
             FROM `sales`.`order``s` LIMIT 0"
        );
        assert_eq!(
            sql.load_stage,
            "LOAD DATA LOCAL INFILE 'dbsync' INTO TABLE `sales`.`dbsync_stage_7` CHARACTER SET \
             utf8mb4 FIELDS TERMINATED BY X'09' ESCAPED BY X'5C' LINES TERMINATED BY X'0A' \
             (`id`, @dbsync_v1) SET `flags` = CAST(@dbsync_v1 AS UNSIGNED)"
        );
        assert_eq!(
            sql.merge,
            "INSERT INTO `sales`.`order``s` (`id`, `flags`) SELECT `id`, `flags` FROM \
             `sales`.`dbsync_stage_7` ON DUPLICATE KEY UPDATE `flags` = VALUES(`flags`)"
        );
    }

    #[test]
    fn deletes_and_partial_updates() {
        let s = schema(&["a", "b", "c"], &[2, 0]);
        let sql = TableSql::new(&s, &maria(), 1, &[]);
        assert_eq!(
            sql.delete_keys(2, 2),
            "DELETE FROM `sales`.`order``s` WHERE (`c`, `a`) IN ((?, ?), (?, ?))"
        );
        let s1 = schema(&["id", "v"], &[0]);
        let sql1 = TableSql::new(&s1, &maria(), 1, &[]);
        assert_eq!(
            sql1.delete_keys(3, 1),
            "DELETE FROM `sales`.`order``s` WHERE `id` IN (?, ?, ?)"
        );
        assert_eq!(
            sql.partial_update(&s, &[false, true, true]),
            "UPDATE `sales`.`order``s` SET `b` = ?, `c` = ? WHERE `c` = ? AND `a` = ?"
        );
    }

    #[test]
    fn server_flavors() {
        assert!(!maria().row_alias());
        assert!(mysql8().row_alias());
        assert_eq!(maria().key_collation(), "utf8mb4_nopad_bin");
        assert_eq!(mysql8().key_collation(), "utf8mb4_0900_bin");
    }
}
