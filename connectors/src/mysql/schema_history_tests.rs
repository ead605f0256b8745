use std::collections::BTreeMap;
use std::sync::Mutex;

use engine::{Checkpoint, CheckpointStore};

use super::*;
use crate::mysql::ddl::parse;
use crate::mysql::schema::ColumnDef;
use crate::mysql::types::ColType;

struct AllOf(&'static str);

impl Scope for AllOf {
    fn tracked(&self, db: &str) -> bool {
        db == self.0
    }
    fn watched(&self, id: &TableId) -> bool {
        id.schema == self.0 && !id.name.starts_with("tmp")
    }
}

fn run(c: &mut Catalog, sql: &str) -> Result<Applied, String> {
    apply(c, &parse(sql, "shop"), &AllOf("shop"), sql)
}

fn names(c: &Catalog, t: &str) -> Vec<String> {
    c.tables[&TableId::new("shop", t)]
        .columns
        .iter()
        .map(|c| c.name.clone())
        .collect()
}

#[test]
fn ddl_follows_create_alter_rename_drop() {
    let mut c = Catalog::default();
    run(
        &mut c,
        "CREATE TABLE t (id int primary key, a varchar(5), b int) DEFAULT CHARSET=latin1",
    )
    .unwrap();
    assert_eq!(names(&c, "t"), ["id", "a", "b"]);
    let t = TableId::new("shop", "t");
    assert_eq!(c.tables[&t].key, ["id"]);
    assert_eq!(c.tables[&t].columns[1].ty.charset(), Some(&Charset::Latin1));
    let a = run(
        &mut c,
        "ALTER TABLE t ADD COLUMN c text FIRST, DROP COLUMN b, MODIFY a varchar(9) AFTER id",
    )
    .unwrap();
    assert!(a.changed.contains(&t));
    assert_eq!(names(&c, "t"), ["c", "id", "a"]);
    assert_eq!(
        c.tables[&t].columns[0].ty.charset(),
        Some(&Charset::Latin1),
        "table default charset"
    );
    assert_eq!(
        c.tables[&t].columns[2].ty,
        ColType::VarChar {
            len: 9,
            charset: Charset::Latin1
        }
    );
    assert!(run(&mut c, "ALTER TABLE t CHANGE id key_id bigint")
        .unwrap_err()
        .contains("does not rename target columns"));
    run(&mut c, "ALTER TABLE t CHANGE id id bigint").unwrap();
    assert_eq!(c.tables[&t].key, ["id"]);
    assert!(
        !c.tables[&t].columns[1].nullable,
        "key columns are NOT NULL"
    );
    // Applying an ADD that the catalog already has is tolerated (identical column).
    run(&mut c, "ALTER TABLE t ADD COLUMN z int").unwrap();
    run(&mut c, "ALTER TABLE t ADD COLUMN z int").unwrap();
    assert!(run(&mut c, "ALTER TABLE t ADD COLUMN z text").is_err());
    let a = run(&mut c, "RENAME TABLE t TO u").unwrap();
    assert!(a.removed.contains(&t) && a.changed.contains(&TableId::new("shop", "u")));
    assert_eq!(a.renamed, [(t.clone(), TableId::new("shop", "u"))]);
    let a = run(&mut c, "ALTER TABLE u RENAME TO v").unwrap();
    assert!(a.changed.contains(&TableId::new("shop", "v")));
    assert!(run(&mut c, "TRUNCATE v").unwrap().truncated == [TableId::new("shop", "v")]);
    let a = run(&mut c, "CREATE TABLE w LIKE v").unwrap();
    assert!(a.created.contains(&TableId::new("shop", "w")));
    assert_eq!(names(&c, "w"), names(&c, "v"));
    run(&mut c, "DROP TABLE v, w").unwrap();
    assert!(c.tables.is_empty());
    // Other databases are not tracked.
    run(&mut c, "CREATE TABLE other.x (id int primary key)").unwrap();
    assert!(c.tables.is_empty());
}

#[test]
fn unknown_or_unfollowable_changes_to_watched_tables_are_errors() {
    let mut c = Catalog::default();
    run(&mut c, "CREATE TABLE t (id int primary key)").unwrap();
    assert!(run(&mut c, "ALTER TABLE t DROP COLUMN nope")
        .unwrap_err()
        .contains("nope"));
    assert!(run(&mut c, "RENAME TABLE other.q TO t2")
        .unwrap_err()
        .contains("unknown"));
    assert!(run(&mut c, "ALTER TABLE t WITH SYSTEM VERSIONING ???")
        .unwrap_err()
        .contains("cannot parse"));
    assert!(run(&mut c, "INSERT INTO t VALUES (1)")
        .unwrap_err()
        .contains("binlog_format"));
    // Unwatched tables are dropped from tracking instead.
    run(&mut c, "CREATE TABLE tmp1 (id int primary key)").unwrap();
    run(&mut c, "ALTER TABLE tmp1 DROP COLUMN nope").unwrap();
    assert!(!c.tables.contains_key(&TableId::new("shop", "tmp1")));
    run(&mut c, "INSERT INTO tmp1 VALUES (1)").unwrap();
    run(&mut c, "ALTER TABLE zzz ENGINE=Aria ???").unwrap();
    // Renamed from an unreplicated table into a replicated one: never copied.
    run(&mut c, "CREATE TABLE tmp2 (id int primary key)").unwrap();
    assert!(run(&mut c, "RENAME TABLE tmp2 TO t3")
        .unwrap_err()
        .contains("never copied"));
    // Column renames and defaults whose existing values are unknown.
    assert!(run(&mut c, "ALTER TABLE t RENAME COLUMN id TO id2")
        .unwrap_err()
        .contains("does not rename target columns"));
    assert!(run(
        &mut c,
        "ALTER TABLE t ADD COLUMN ts datetime DEFAULT CURRENT_TIMESTAMP"
    )
    .unwrap_err()
    .contains("existing rows"));
    assert!(run(
        &mut c,
        "ALTER TABLE t ADD COLUMN ts timestamp NULL DEFAULT '2024-01-01 00:00:00'"
    )
    .unwrap_err()
    .contains("time zone"));
}

#[test]
fn added_columns_carry_their_constant_or_implicit_default() {
    let mut c = Catalog::default();
    run(&mut c, "CREATE TABLE t (id int primary key)").unwrap();
    run(
        &mut c,
        "ALTER TABLE t ADD COLUMN a int NOT NULL DEFAULT 5, ADD COLUMN b varchar(9) DEFAULT 'it''s', \
         ADD COLUMN c decimal(6,2) DEFAULT -1.5, ADD COLUMN d int NOT NULL, ADD COLUMN e int, \
         ADD COLUMN f enum('x','y') NOT NULL, ADD COLUMN g tinyint(1) DEFAULT TRUE, \
         ADD COLUMN h int DEFAULT NULL, ADD COLUMN i date DEFAULT '2024-02-03', ADD COLUMN j int DEFAULT (1 + 1)",
    )
    .unwrap_err();
    run(
        &mut c,
        "ALTER TABLE t ADD COLUMN a int NOT NULL DEFAULT 5, ADD COLUMN b varchar(9) DEFAULT 'it''s', \
         ADD COLUMN c decimal(6,2) DEFAULT -1.5, ADD COLUMN d int NOT NULL, ADD COLUMN e int, \
         ADD COLUMN f enum('x','y') NOT NULL, ADD COLUMN g tinyint(1) DEFAULT TRUE, \
         ADD COLUMN h int DEFAULT NULL, ADD COLUMN i date DEFAULT '2024-02-03'",
    )
    .unwrap();
    let t = TableId::new("shop", "t");
    let defaults: Vec<Option<&str>> = c.tables[&t]
        .columns
        .iter()
        .map(|c| c.default.as_deref())
        .collect();
    assert_eq!(
        defaults,
        [
            None,
            Some("5"),
            Some("it's"),
            Some("-1.5"),
            Some("0"),
            None,
            Some("x"),
            Some("1"),
            None,
            Some("2024-02-03")
        ]
    );
    let schema = c.tables[&t].to_schema(&t);
    assert_eq!(schema.columns[1].default.as_deref(), Some("5"));
}

#[derive(Default)]
struct MemStore(Mutex<BTreeMap<String, Vec<u8>>>);

impl CheckpointStore for MemStore {
    fn load(&self, _: &str) -> engine::Result<Option<Checkpoint>> {
        Ok(None)
    }
    fn save(&self, _: &str, _: &Checkpoint) -> engine::Result<()> {
        Ok(())
    }
    fn reset(&self, _: &str) -> engine::Result<()> {
        Ok(())
    }
    fn put_source_state(&self, task: &str, key: &str, value: &[u8]) -> engine::Result<()> {
        self.0
            .lock()
            .unwrap()
            .insert(format!("{task}\0{key}"), value.to_vec());
        Ok(())
    }
    fn delete_source_state(&self, task: &str, key: &str) -> engine::Result<()> {
        self.0.lock().unwrap().remove(&format!("{task}\0{key}"));
        Ok(())
    }
    fn source_state(&self, task: &str, prefix: &str) -> engine::Result<Vec<(String, Vec<u8>)>> {
        let p = format!("{task}\0{prefix}");
        Ok(self
            .0
            .lock()
            .unwrap()
            .iter()
            .filter(|(k, _)| k.starts_with(&p))
            .map(|(k, v)| (k[task.len() + 1..].to_string(), v.clone()))
            .collect())
    }
}

fn pos(file: &str, p: u64) -> BinlogPosition {
    BinlogPosition {
        file: file.into(),
        pos: p,
        gtid_set: None,
    }
}

#[tokio::test]
async fn history_restores_the_schema_of_each_position_and_compacts() {
    let store = Arc::new(MemStore::default());
    let h = History::new(store.clone(), "t1");
    let mut c = Catalog::default();
    run(&mut c, "CREATE TABLE t (id int primary key, a int)").unwrap();
    h.put_base(&pos("bin.000001", 100), &c).await.unwrap();
    let v1 = c.clone();
    let a = run(&mut c, "ALTER TABLE t ADD COLUMN b text").unwrap();
    h.put_change(&pos("bin.000001", 500), &c, &a.changed, &a.dbs)
        .await
        .unwrap();
    let v2 = c.clone();
    let a = run(&mut c, "DROP TABLE t").unwrap();
    let gone: BTreeSet<TableId> = a.removed.clone();
    h.put_change(&pos("bin.000002", 300), &c, &gone, &a.dbs)
        .await
        .unwrap();
    assert_eq!(
        h.load(&pos("bin.000001", 50)).await.unwrap(),
        None,
        "nothing before the first base"
    );
    // Loading at a position rewrites the history as one base there.
    assert_eq!(
        h.load(&pos("bin.000002", 4)).await.unwrap(),
        Some(v2.clone())
    );
    assert_eq!(store.source_state("t1", "schema/").unwrap().len(), 1);
    assert_eq!(h.load(&pos("bin.000002", 4)).await.unwrap(), Some(v2));
    let _ = v1;
    assert!(key(&pos("nonumber", 1)).is_err());
    assert_eq!(
        c.tables
            .get(&TableId::new("shop", "t"))
            .map(|d| d.columns.clone()),
        None::<Vec<ColumnDef>>
    );
}
