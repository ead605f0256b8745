//! Schema history: the tracked catalog as of every position where DDL
//! changed it, stored in the checkpoint store's source state next to the
//! offsets, so that after a restart old events decode with the schema of
//! their time.
//!
//! Keys are `schema/<file seq, 10 digits>/<position, 20 digits>` (ordered like
//! positions). An entry holds either a whole catalog (`base`: written at the
//! snapshot's consistent point and at every start) or the tables one DDL
//! changed. The position of an entry is where its schema starts to apply:
//! the end of the DDL event. On start, the catalog at the resume position R
//! is the last base at or before R plus the changes after it up to R;
//! entries after R (DDL read but not yet checkpointed past) are dropped,
//! since the stream reads that DDL again. The catalog at R is then written as
//! a new base and older entries are removed.

use std::collections::BTreeSet;
use std::sync::Arc;

use engine::position::BinlogPosition;
use engine::{CheckpointStore, TableId};
use serde::{Deserialize, Serialize};

use super::ddl::{AlterOp, NewColumn, Position, Statement};
use super::error::MysqlSourceError;
use super::schema::{Catalog, ColumnDef, TableDef};
use super::types::Charset;

const PREFIX: &str = "schema/";
const FORMAT: u32 = 1;

/// The key of an entry at `pos`.
pub fn key(pos: &BinlogPosition) -> Result<String, MysqlSourceError> {
    let seq = pos.file_seq().ok_or_else(|| {
        MysqlSourceError::Decode(format!(
            "binlog file name {} has no numeric suffix",
            pos.file
        ))
    })?;
    Ok(format!("{PREFIX}{seq:010}/{:020}", pos.pos))
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct ChangedTable {
    db: String,
    table: String,
    def: Option<TableDef>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    format: u32,
    file: String,
    pos: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    base: Option<Catalog>,
    #[serde(default)]
    tables: Vec<ChangedTable>,
    #[serde(default)]
    db_charsets: Vec<(String, Charset)>,
}

/// The persisted schema history of one task.
#[derive(Clone)]
pub struct History {
    store: Arc<dyn CheckpointStore>,
    task: String,
}

fn store_err(e: engine::Error) -> MysqlSourceError {
    MysqlSourceError::Store(format!("schema history: {e}"))
}

impl History {
    /// The history of `task` in `store`.
    pub fn new(store: Arc<dyn CheckpointStore>, task: &str) -> Self {
        Self {
            store,
            task: task.to_string(),
        }
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn CheckpointStore, &str) -> engine::Result<T> + Send + 'static,
    ) -> Result<T, MysqlSourceError> {
        let store = self.store.clone();
        let task = self.task.clone();
        tokio::task::spawn_blocking(move || f(store.as_ref(), &task))
            .await
            .map_err(|e| MysqlSourceError::Store(format!("schema history task failed: {e}")))?
            .map_err(store_err)
    }

    async fn put(&self, entry: Entry, at: &BinlogPosition) -> Result<(), MysqlSourceError> {
        let k = key(at)?;
        let v = serde_json::to_vec(&entry)
            .map_err(|e| MysqlSourceError::Store(format!("schema history: {e}")))?;
        self.blocking(move |s, t| s.put_source_state(t, &k, &v))
            .await
    }

    /// Stores the whole catalog at `at` (snapshot point, start position).
    pub async fn put_base(
        &self,
        at: &BinlogPosition,
        catalog: &Catalog,
    ) -> Result<(), MysqlSourceError> {
        self.put(
            Entry {
                format: FORMAT,
                file: at.file.to_string(),
                pos: at.pos,
                base: Some(catalog.clone()),
                tables: Vec::new(),
                db_charsets: Vec::new(),
            },
            at,
        )
        .await
    }

    /// Stores the tables a DDL changed (`None` = gone) and database charsets.
    pub async fn put_change(
        &self,
        at: &BinlogPosition,
        catalog: &Catalog,
        tables: &BTreeSet<TableId>,
        dbs: &BTreeSet<String>,
    ) -> Result<(), MysqlSourceError> {
        self.put(
            Entry {
                format: FORMAT,
                file: at.file.to_string(),
                pos: at.pos,
                base: None,
                tables: tables
                    .iter()
                    .map(|id| ChangedTable {
                        db: id.schema.clone(),
                        table: id.name.clone(),
                        def: catalog.tables.get(id).cloned(),
                    })
                    .collect(),
                db_charsets: dbs
                    .iter()
                    .map(|d| (d.clone(), catalog.db_charset(d)))
                    .collect(),
            },
            at,
        )
        .await
    }

    /// The catalog at resume position `at`, or `None` when the history has
    /// no base at or before it. Rewrites the history as one base at `at`.
    pub async fn load(&self, at: &BinlogPosition) -> Result<Option<Catalog>, MysqlSourceError> {
        let limit = key(at)?;
        let entries = self.blocking(|s, t| s.source_state(t, PREFIX)).await?;
        let mut catalog: Option<Catalog> = None;
        for (k, v) in &entries {
            if *k > limit {
                break;
            }
            let e: Entry = serde_json::from_slice(v).map_err(|e| {
                MysqlSourceError::Store(format!("schema history entry {k} is unreadable: {e}"))
            })?;
            if e.format != FORMAT {
                return Err(MysqlSourceError::Store(format!(
                    "schema history entry {k} has format {}, this dbsync reads {FORMAT}",
                    e.format
                )));
            }
            if let Some(base) = e.base {
                catalog = Some(base);
                continue;
            }
            if let Some(c) = catalog.as_mut() {
                for t in e.tables {
                    let id = TableId::new(t.db, t.table);
                    match t.def {
                        Some(d) => {
                            c.tables.insert(id, d);
                        }
                        None => {
                            c.tables.remove(&id);
                        }
                    }
                }
                for (db, cs) in e.db_charsets {
                    c.db_charsets.insert(db, cs);
                }
            }
        }
        let Some(catalog) = catalog else {
            return Ok(None);
        };
        self.put_base(at, &catalog).await?;
        let stale: Vec<String> = entries
            .into_iter()
            .map(|(k, _)| k)
            .filter(|k| *k != limit)
            .collect();
        self.blocking(move |s, t| {
            for k in stale {
                s.delete_source_state(t, &k)?;
            }
            Ok(())
        })
        .await?;
        Ok(Some(catalog))
    }
}

/// What a statement did to the tracked catalog.
#[derive(Debug, Default)]
pub struct Applied {
    /// Tables whose definition changed or appeared (now present).
    pub changed: BTreeSet<TableId>,
    /// Tables that disappeared (dropped, renamed away).
    pub removed: BTreeSet<TableId>,
    /// Tables truncated.
    pub truncated: Vec<TableId>,
    /// Databases whose default charset changed.
    pub dbs: BTreeSet<String>,
    /// Tables renamed (old name, new name), in statement order.
    pub renamed: Vec<(TableId, TableId)>,
    /// Tables created (empty) by the statement.
    pub created: BTreeSet<TableId>,
}

impl Applied {
    /// Whether the statement changed nothing tracked.
    pub fn is_empty(&self) -> bool {
        self.changed.is_empty()
            && self.removed.is_empty()
            && self.truncated.is_empty()
            && self.dbs.is_empty()
    }
}

/// Which tables the source follows: `tracked` databases keep their schemas;
/// `watched` tables are replicated.
pub trait Scope {
    fn tracked(&self, db: &str) -> bool;
    fn watched(&self, id: &TableId) -> bool;
}

/// Applies a parsed statement to the catalog. A change the source cannot
/// follow for a watched table is an error (what to do is in the message);
/// for other tables the table is simply no longer tracked.
pub fn apply(
    catalog: &mut Catalog,
    stmt: &Statement,
    scope: &dyn Scope,
    sql_for_errors: &str,
) -> Result<Applied, String> {
    let mut out = Applied::default();
    let unknown = |id: &TableId| {
        format!(
            "the schema of {id} is unknown to dbsync (it came from a database or table that was not tracked); \
             re-sync the task (dbsync offsets reset --task <name>)"
        )
    };
    match stmt {
        Statement::CreateTable {
            id,
            columns,
            key,
            charset,
            if_not_exists,
            ..
        } => {
            if !scope.tracked(&id.schema) || (*if_not_exists && catalog.tables.contains_key(id)) {
                return Ok(out);
            }
            let cs = charset
                .clone()
                .unwrap_or_else(|| catalog.db_charset(&id.schema));
            let resolved: Result<Vec<_>, String> = columns.iter().map(|c| c.resolve(&cs)).collect();
            match resolved {
                Ok(cols) => {
                    catalog.tables.insert(
                        id.clone(),
                        TableDef {
                            columns: cols,
                            key: key.clone(),
                            charset: cs,
                        },
                    );
                    out.changed.insert(id.clone());
                    out.created.insert(id.clone());
                }
                Err(e) if scope.watched(id) => return Err(format!("CREATE TABLE {id}: {e}")),
                Err(_) => {
                    if catalog.tables.remove(id).is_some() {
                        out.removed.insert(id.clone());
                    }
                }
            }
        }
        Statement::CreateLike {
            id,
            like,
            if_not_exists,
        } => {
            if !scope.tracked(&id.schema) || (*if_not_exists && catalog.tables.contains_key(id)) {
                return Ok(out);
            }
            match catalog.tables.get(like).cloned() {
                Some(def) => {
                    catalog.tables.insert(id.clone(), def);
                    out.changed.insert(id.clone());
                    out.created.insert(id.clone());
                }
                None if scope.watched(id) => return Err(unknown(id)),
                None => {}
            }
        }
        Statement::DropTables(ids) => {
            for id in ids {
                if catalog.tables.remove(id).is_some() {
                    out.removed.insert(id.clone());
                }
            }
        }
        Statement::Rename(pairs) => {
            for (from, to) in pairs {
                rename(catalog, from, to, scope, &mut out)?;
            }
        }
        Statement::Truncate(ids) => out
            .truncated
            .extend(ids.iter().filter(|id| scope.watched(id)).cloned()),
        Statement::Alter { id, ops } => {
            if !catalog.tables.contains_key(id) {
                if scope.watched(id) {
                    return Err(unknown(id));
                }
                return Ok(out);
            }
            let mut def = catalog.tables[id].clone();
            if scope.watched(id) {
                for op in ops {
                    let renamed = match op {
                        AlterOp::RenameColumn { old, new } => Some((old, new)),
                        AlterOp::Modify { old, col, .. }
                            if !old.eq_ignore_ascii_case(&col.name) =>
                        {
                            Some((old, &col.name))
                        }
                        _ => None,
                    };
                    if let Some((old, new)) = renamed {
                        return Err(format!(
                            "ALTER TABLE {id} renames column {old} to {new}; dbsync does not rename \
                             target columns (the target would add {new} empty and keep {old}). Rename \
                             the target column yourself and re-sync the task (dbsync offsets reset \
                             --task <name>)"
                        ));
                    }
                }
                // Existing rows get an added column's default: it must be
                // one the target can be given too.
                for op in ops {
                    if let AlterOp::Add { col, .. } = op {
                        let resolved =
                            resolve(&def, col).map_err(|e| format!("ALTER TABLE {id}: {e}"))?;
                        if let Some(why) = col.unreproducible_default(&resolved) {
                            return Err(format!(
                                "ALTER TABLE {id}: {why}; dbsync cannot give the target's existing \
                                 rows the same value. Re-sync the task (dbsync offsets reset --task \
                                 <name>), or add the column with a constant DEFAULT"
                            ));
                        }
                    }
                }
            }
            let mut new_id = id.clone();
            for op in ops {
                if let AlterOp::RenameTable(to) = op {
                    new_id = to.clone();
                    continue;
                }
                if let Err(e) = alter(&mut def, op) {
                    if scope.watched(id) {
                        return Err(format!("ALTER TABLE {id}: {e}"));
                    }
                    catalog.tables.remove(id);
                    out.removed.insert(id.clone());
                    return Ok(out);
                }
            }
            catalog.tables.insert(id.clone(), def);
            out.changed.insert(id.clone());
            if new_id != *id {
                out.changed.remove(id);
                rename(catalog, id, &new_id, scope, &mut out)?;
            }
        }
        Statement::DatabaseCharset { db, charset } => {
            if scope.tracked(db) {
                catalog.db_charsets.insert(db.clone(), charset.clone());
                out.dbs.insert(db.clone());
            }
        }
        Statement::DropDatabase(db) => {
            let gone: Vec<TableId> = catalog
                .tables
                .keys()
                .filter(|t| t.schema == *db)
                .cloned()
                .collect();
            for id in gone {
                catalog.tables.remove(&id);
                out.removed.insert(id);
            }
        }
        Statement::Dml(ids) => {
            let hits = ids.iter().any(|id| scope.watched(id));
            if hits
                || ids.is_empty()
                    && catalog
                        .tables
                        .keys()
                        .any(|t| scope.watched(t) && sql_mentions(sql_for_errors, &t.name))
            {
                return Err(
                    "a row change on a replicated table was logged as a statement (binlog_format is not ROW for \
                     that session): set binlog_format=ROW globally and for every session, then re-sync the task"
                        .into(),
                );
            }
        }
        Statement::Unparsed { idents, reason } => {
            let hit = catalog
                .tables
                .keys()
                .filter(|t| scope.watched(t))
                .find(|t| idents.iter().any(|i| i.eq_ignore_ascii_case(&t.name)));
            if let Some(t) = hit {
                return Err(format!(
                    "cannot parse a statement that may change {t} ({reason}); dbsync stops rather than guess. \
                     If it does not change the table's columns, restart with the table unmapped for a moment, \
                     or re-sync the task"
                ));
            }
        }
        Statement::Other => {}
    }
    Ok(out)
}

fn sql_mentions(sql: &str, name: &str) -> bool {
    sql.to_ascii_lowercase()
        .contains(&name.to_ascii_lowercase())
}

fn rename(
    catalog: &mut Catalog,
    from: &TableId,
    to: &TableId,
    scope: &dyn Scope,
    out: &mut Applied,
) -> Result<(), String> {
    let def = catalog.tables.remove(from);
    if def.is_some() {
        out.removed.insert(from.clone());
        out.changed.remove(from);
    }
    if def.is_some() && !scope.watched(from) && scope.watched(to) {
        return Err(format!(
            "{from}, which this task does not replicate, was renamed to {to}, which it does: the \
             rows {from} had were never copied. Re-sync the task (dbsync offsets reset --task \
             <name>), or leave {to} out of the task's mappings"
        ));
    }
    if scope.tracked(&to.schema) {
        match def {
            Some(d) => {
                catalog.tables.insert(to.clone(), d);
                out.changed.insert(to.clone());
                out.removed.remove(to);
                out.renamed.push((from.clone(), to.clone()));
            }
            None if scope.watched(to) => {
                return Err(format!(
                "the schema of {to} (renamed from {from}) is unknown to dbsync; re-sync the task \
                     (dbsync offsets reset --task <name>)"
            ))
            }
            None => {}
        }
    }
    Ok(())
}

fn place(
    def: &mut TableDef,
    col: super::schema::ColumnDef,
    at: Option<usize>,
    position: &Position,
) -> Result<(), String> {
    let idx = match position {
        Position::First => 0,
        Position::Last => def.columns.len(),
        Position::Unchanged => at.unwrap_or(def.columns.len()),
        Position::After(name) => {
            def.column_index(name)
                .ok_or_else(|| format!("column {name} (AFTER) does not exist"))?
                + 1
        }
    };
    def.columns.insert(idx.min(def.columns.len()), col);
    Ok(())
}

fn resolve(def: &TableDef, col: &NewColumn) -> Result<super::schema::ColumnDef, String> {
    col.resolve(&def.charset)
}

fn alter(def: &mut TableDef, op: &AlterOp) -> Result<(), String> {
    match op {
        AlterOp::Add {
            col,
            position,
            if_not_exists,
        } => {
            let mut new = resolve(def, col)?;
            if col.default.is_none() && !new.nullable {
                // MySQL's implicit default of a NOT NULL column declared
                // without one: what the rows that already exist get.
                new.default = new.ty.implicit_default();
            }
            if let Some(i) = def.column_index(&col.name) {
                // Already there: IF NOT EXISTS, or a DDL the catalog read at
                // start already reflected.
                let same = ColumnDef {
                    default: def.columns[i].default.clone(),
                    ..new.clone()
                } == def.columns[i];
                if *if_not_exists || same {
                    return Ok(());
                }
                return Err(format!("column {} already exists", col.name));
            }
            if col.primary {
                def.key = vec![col.name.clone()];
            }
            place(def, new, None, position)
        }
        AlterOp::Drop { name, if_exists } => match def.column_index(name) {
            Some(i) => {
                let removed = def.columns.remove(i);
                def.key.retain(|k| !k.eq_ignore_ascii_case(&removed.name));
                Ok(())
            }
            None if *if_exists => Ok(()),
            None => Err(format!("column {name} does not exist")),
        },
        AlterOp::Modify { old, col, position } => {
            let i = def
                .column_index(old)
                .ok_or_else(|| format!("column {old} does not exist"))?;
            let mut new = resolve(def, col)?;
            if def.key.iter().any(|k| k.eq_ignore_ascii_case(old)) {
                new.nullable = false;
            }
            def.columns.remove(i);
            for k in &mut def.key {
                if k.eq_ignore_ascii_case(old) {
                    *k = col.name.clone();
                }
            }
            place(def, new, Some(i), position)
        }
        AlterOp::RenameColumn { old, new } => {
            let i = def
                .column_index(old)
                .ok_or_else(|| format!("column {old} does not exist"))?;
            def.columns[i].name = new.clone();
            for k in &mut def.key {
                if k.eq_ignore_ascii_case(old) {
                    *k = new.clone();
                }
            }
            Ok(())
        }
        AlterOp::AddPrimaryKey(cols) => {
            for c in cols {
                let i = def
                    .column_index(c)
                    .ok_or_else(|| format!("primary key column {c} does not exist"))?;
                def.columns[i].nullable = false;
            }
            def.key = cols.clone();
            Ok(())
        }
        AlterOp::DropPrimaryKey => {
            def.key.clear();
            Ok(())
        }
        AlterOp::ConvertCharset(cs) => {
            for c in &mut def.columns {
                c.ty = c.ty.with_charset(cs);
            }
            def.charset = cs.clone();
            Ok(())
        }
        AlterOp::RenameTable(_) => Ok(()),
    }
}

#[cfg(test)]
#[path = "schema_history_tests.rs"]
mod tests;
