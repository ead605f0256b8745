//! `QUERY` events of the stream: transaction control (`BEGIN`, `COMMIT`,
//! `ROLLBACK`, `XA`, savepoints) and DDL, which changes the tracked catalog
//! and becomes `Relation`/`Rename`/`Truncate` events of watched tables.
//!
//! What a target sees of source DDL (decided like Debezium's schema history
//! plus a sink that follows it, without ever destroying target data):
//! - `CREATE TABLE`: the target table is created (or, if it exists, e.g.
//!   left over from a dropped table of the same name, emptied: the new
//!   source table starts empty).
//! - `ADD COLUMN`: the target column is added with the source's constant
//!   default (MySQL's implicit default for `NOT NULL` columns without one),
//!   so existing target rows get the value existing source rows got; an
//!   expression default (`CURRENT_TIMESTAMP`, `(expr)`) stops the task,
//!   since its value in existing rows is not in the binlog.
//! - `MODIFY`/`CHANGE COLUMN` (same name): later rows decode with the new
//!   type; the sink widens the target column when that is safe, otherwise
//!   stops saying what to change. A column rename (`CHANGE a b`, `RENAME
//!   COLUMN`) stops the task: the target would keep the old column's values
//!   under the old name.
//! - `RENAME TABLE` / `ALTER TABLE ... RENAME TO` between replicated names:
//!   the target table is renamed (rows replicated before and after end up
//!   in one table, as in the source). Renamed to a name the task does not
//!   replicate: the target table is kept as it is and replication of it
//!   ends. Renamed *from* a table the task did not replicate into one it
//!   does: the task stops (the rows were never copied; re-sync).
//! - `DROP TABLE`: the target table is kept as it is (dbsync never drops
//!   target data); replication of it ends, and a table created again under
//!   the name starts empty in the target too.
//! - `DROP COLUMN`: the target column stays; new rows leave it NULL.
//! - `TRUNCATE`: truncates the target table.
//!
//! Statement-based row changes, XA transactions and `ROLLBACK` of
//! mixed-engine transactions on replicated tables stop the task with a
//! message saying why.
//!
//! MySQL 8 differences (not run here): MySQL 8.0 logs `RENAME TABLE` and
//! `ALTER ... RENAME` the same way; `ALTER TABLE ... RENAME COLUMN` exists
//! from 8.0 (MariaDB 10.5); MySQL 8.0.13+ writes expression defaults as
//! `DEFAULT (expr)`, which is followed like MariaDB's; with
//! `binlog_row_metadata=FULL` MySQL 8 also carries column names in the
//! binlog, which dbsync does not need (it keeps its own schema history).

use std::sync::Arc;

use engine::event::{Relation, Rename, Truncate};
use engine::{ChangeEvent, TableId, TableSchema};
use tracing::{info, warn};

use super::binlog::EventHeader;
use super::ddl;
use super::error::MysqlSourceError;
use super::schema_history::{self, Scope};
use super::stream::Streamer;

impl Streamer<'_> {
    pub(super) async fn on_query(
        &mut self,
        header: &EventHeader,
        db: &str,
        sql: &str,
    ) -> Result<(), MysqlSourceError> {
        let head = statement_head(sql);
        let end = u64::from(header.log_pos);
        match head.as_str() {
            "BEGIN" | "START TRANSACTION" => {
                self.ensure_group(header).transaction = true;
                return Ok(());
            }
            "COMMIT" => return self.finish_group(end).await,
            "ROLLBACK" => {
                if self.group.as_ref().is_some_and(|g| g.begun) {
                    return Err(MysqlSourceError::Decode(
                        "a transaction that changed replicated tables ends with ROLLBACK in the binlog (it mixed \
                         transactional and non-transactional tables); dbsync cannot tell which rows took effect: \
                         re-sync the task"
                            .into(),
                    ));
                }
                return self.finish_group(end).await;
            }
            "SAVEPOINT" => return Ok(()),
            "ROLLBACK TO" => {
                if self.group.as_ref().is_some_and(|g| g.begun) {
                    return Err(MysqlSourceError::Decode(
                        "ROLLBACK TO SAVEPOINT inside a transaction on replicated tables is not supported".into(),
                    ));
                }
                return Ok(());
            }
            "XA" => {
                let g = self.ensure_group(header);
                g.xa = true;
                let upper = sql.trim_start().to_ascii_uppercase();
                if upper.starts_with("XA START")
                    || upper.starts_with("XA BEGIN")
                    || upper.starts_with("XA END")
                {
                    return Ok(());
                }
                if g.begun {
                    return Err(MysqlSourceError::Decode(
                        "XA transactions on replicated tables are not supported".into(),
                    ));
                }
                return self.finish_group(end).await;
            }
            _ => {}
        }
        // DDL (or anything else) in a QUERY event.
        let stmt = ddl::parse(sql, db);
        if let ddl::Statement::Alter { id, .. } = &stmt {
            // The target sees the table as it was before the change (a type
            // change is only widened from a type it saw), even when no row of
            // it was read yet in this run.
            if self.scope.watched(id) && !self.announced.contains_key(id) {
                if let Some(table) = self.schemas.schema(id) {
                    let offset = self.next_offset(header).await?;
                    self.announced.insert(id.clone(), table.clone());
                    self.emit(ChangeEvent::Relation(Relation { offset, table }))
                        .await?;
                }
            }
        }
        let applied = schema_history::apply(&mut self.schemas.catalog, &stmt, &self.scope, sql)
            .map_err(|e| {
                MysqlSourceError::Schema(format!("{e} (binlog {} near position {end})", self.file))
            })?;
        self.ensure_group(header);
        if !applied.is_empty() {
            info!(statement = %head, tables = applied.changed.len() + applied.removed.len(), "schema change");
        }
        for id in applied.changed.iter().chain(applied.removed.iter()) {
            self.schemas.invalidate(id);
            self.announced.remove(id);
        }
        if !applied.changed.is_empty() || !applied.removed.is_empty() {
            self.maps.retain(|_, (m, _)| {
                let id = TableId::new(m.db.clone(), m.table.clone());
                !applied.changed.contains(&id) && !applied.removed.contains(&id)
            });
        }
        // Renames first: the target table must be renamed before the new
        // name's schema (or a row) makes the sink create it empty.
        for (from, to) in &applied.renamed {
            if !self.scope.watched(from) {
                continue;
            }
            if !self.scope.watched(to) {
                warn!(from = %from, to = %to, "a replicated table was renamed to a table this task does not replicate; its target table is left as it is");
                continue;
            }
            let (Some(def), Some(to_schema)) =
                (self.schemas.get(to).cloned(), self.schemas.schema(to))
            else {
                continue;
            };
            let offset = self.next_offset(header).await?;
            info!(from = %from, to = %to, "source table renamed");
            self.emit(ChangeEvent::Rename(Rename {
                offset,
                from: Arc::new(def.to_schema(from)),
                to: to_schema,
            }))
            .await?;
        }
        let changed: Vec<TableId> = applied
            .changed
            .iter()
            .filter(|id| self.scope.watched(id))
            .cloned()
            .collect();
        for id in &changed {
            let Some(table) = self.schemas.schema(id) else {
                continue;
            };
            if table.key.is_empty() {
                return Err(MysqlSourceError::Schema(format!(
                    "{id} has no primary key after this DDL: add one (replication needs a key)"
                )));
            }
            let offset = self.next_offset(header).await?;
            self.announced.insert(id.clone(), table.clone());
            self.emit(ChangeEvent::Relation(Relation { offset, table }))
                .await?;
        }
        // A table created now is empty: so is its target table (which may
        // still hold the rows of a dropped table of the same name).
        let created = applied
            .created
            .iter()
            .filter(|id| self.scope.watched(id) && !applied.truncated.contains(id));
        let truncated: Vec<TableId> = applied.truncated.iter().chain(created).cloned().collect();
        if !truncated.is_empty() {
            let tables: Vec<Arc<TableSchema>> = truncated
                .iter()
                .filter_map(|id| self.schemas.schema(id))
                .collect();
            if !tables.is_empty() {
                let offset = self.next_offset(header).await?;
                self.emit(ChangeEvent::Truncate(Truncate { offset, tables }))
                    .await?;
            }
        }
        let removed_watched: Vec<&TableId> = applied
            .removed
            .iter()
            .filter(|id| self.scope.watched(id))
            .collect();
        let dropped: Vec<String> = removed_watched
            .iter()
            .filter(|id| !applied.renamed.iter().any(|(from, _)| from == **id))
            .map(|t| t.to_string())
            .collect();
        if !dropped.is_empty() {
            warn!(tables = ?dropped,
                "replicated tables were dropped at the source; their target tables are kept as they are (a table created again under the same name starts empty)");
        }
        if let Some(g) = self.group.as_mut() {
            g.ddl.changed.extend(applied.changed);
            g.ddl.removed.extend(applied.removed);
            g.ddl.dbs.extend(applied.dbs);
            if !g.transaction {
                return self.finish_group(end).await;
            }
        }
        Ok(())
    }
}

/// The first word(s) of a statement, uppercased, after comments.
pub fn statement_head(sql: &str) -> String {
    let mut s = sql.trim_start();
    loop {
        if let Some(rest) = s.strip_prefix("/*") {
            match rest.find("*/") {
                Some(i) => s = rest[i + 2..].trim_start(),
                None => return String::new(),
            }
        } else if s.starts_with("--") || s.starts_with('#') {
            match s.find('\n') {
                Some(i) => s = s[i + 1..].trim_start(),
                None => return String::new(),
            }
        } else {
            break;
        }
    }
    let words: Vec<String> = s
        .split(|c: char| c.is_whitespace() || c == ';')
        .filter(|w| !w.is_empty())
        .take(2)
        .map(|w| w.to_ascii_uppercase())
        .collect();
    match words.as_slice() {
        [a, b] if a == "ROLLBACK" && b == "TO" => "ROLLBACK TO".into(),
        [a, b] if a == "START" && b == "TRANSACTION" => "START TRANSACTION".into(),
        [a, b] if a == "ROLLBACK" && b == "WORK" => "ROLLBACK".into(),
        [a, b] if a == "COMMIT" && b == "WORK" => "COMMIT".into(),
        [a, ..] => a.clone(),
        [] => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::statement_head;

    #[test]
    fn statement_heads_skip_comments() {
        assert_eq!(statement_head("BEGIN"), "BEGIN");
        assert_eq!(statement_head("/* x */ COMMIT"), "COMMIT");
        assert_eq!(statement_head("rollback to savepoint a"), "ROLLBACK TO");
        assert_eq!(statement_head("XA START 'x'"), "XA");
        assert_eq!(statement_head("-- c\nALTER TABLE t ADD c int"), "ALTER");
        assert_eq!(statement_head("/* unterminated"), "");
    }
}
