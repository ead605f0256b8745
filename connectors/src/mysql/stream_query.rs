//! `QUERY` events of the stream: transaction control (`BEGIN`, `COMMIT`,
//! `ROLLBACK`, `XA`, savepoints) and DDL, which changes the tracked catalog
//! and becomes `Relation`/`Truncate` events of watched tables.
//!
//! What a target sees of source DDL (the sink contract has no rename or
//! drop): a new table and added columns arrive through `Relation` (the sink
//! creates or extends the target table; an added column is NULL in rows that
//! existed before, whatever its source default); `TRUNCATE` truncates the
//! target table; after `RENAME TABLE` the rows that follow go to the new
//! name's target table and the rows already replicated stay under the old
//! name; `DROP TABLE` and `DROP COLUMN` leave the target table and column in
//! place (new rows leave a dropped column NULL); `MODIFY` changes how later
//! rows are decoded but not the target column's type, so a value that no
//! longer fits makes the sink stop with its error. Statement-based row
//! changes, XA transactions and `ROLLBACK` of mixed-engine transactions on
//! replicated tables stop the task with a message saying why.

use std::sync::Arc;

use engine::event::{Relation, Truncate};
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
        if !applied.truncated.is_empty() {
            let tables: Vec<Arc<TableSchema>> = applied
                .truncated
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
        if !removed_watched.is_empty() {
            warn!(tables = ?removed_watched.iter().map(|t| t.to_string()).collect::<Vec<_>>(),
                "replicated tables were dropped or renamed at the source; their target tables are left as they are");
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
