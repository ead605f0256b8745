//! SQL text of the PostgreSQL sink: identifier quoting and the per-table
//! statements. Pure functions (no I/O); values never appear in SQL text —
//! they travel as `COPY` text or as bound parameters.

use std::fmt::Write as _;

use engine::{TableId, TableSchema};

/// Quotes an identifier: `"name"`, with `"` doubled.
pub fn quote_ident(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 2);
    push_ident(&mut out, name);
    out
}

/// Appends `name` quoted as an identifier.
pub fn push_ident(out: &mut String, name: &str) {
    out.push('"');
    for c in name.chars() {
        if c == '"' {
            out.push('"');
        }
        out.push(c);
    }
    out.push('"');
}

/// `"schema"."table"`.
pub fn qualified(id: &TableId) -> String {
    let mut out = String::with_capacity(id.schema.len() + id.name.len() + 5);
    push_ident(&mut out, &id.schema);
    out.push('.');
    push_ident(&mut out, &id.name);
    out
}

/// Quotes a string as a SQL literal (`'it''s'`). Used only for constants such
/// as session settings, never for row values.
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

/// Joins the quoted names of `cols`, optionally prefixed (`t."a", t."b"`).
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

/// The `ON CONFLICT` clause of an upsert keyed on the table key: every
/// non-key column takes the incoming value; `DO NOTHING` when every column
/// belongs to the key.
pub fn on_conflict(schema: &TableSchema) -> String {
    let mut out = format!("ON CONFLICT ({})", ident_list(schema.key_names(), ""));
    let mut first = true;
    for (i, col) in schema.columns.iter().enumerate() {
        if schema.key.contains(&i) {
            continue;
        }
        out.push_str(if first { " DO UPDATE SET " } else { ", " });
        first = false;
        push_ident(&mut out, &col.name);
        out.push_str(" = EXCLUDED.");
        push_ident(&mut out, &col.name);
    }
    if first {
        out.push_str(" DO NOTHING");
    }
    out
}

/// The statements of one target table, built once per schema.
#[derive(Debug, Clone)]
pub struct TableSql {
    /// `"schema"."table"`.
    pub target: String,
    /// Quoted column list, in schema order.
    pub columns: String,
    /// Quoted key column list, in key order.
    pub key_columns: String,
    /// The `ON CONFLICT ...` clause.
    pub conflict: String,
    /// `ON CONFLICT (key) DO NOTHING` (`INSERT_ONLY`, `IGNORE`).
    pub conflict_nothing: String,
    /// `COPY target (cols) FROM STDIN` (the `likely_new` fast path).
    pub copy_target: String,
    /// `pg_temp."dbsync_stage_N"`: rows to merge.
    pub stage: String,
    /// `CREATE TEMP TABLE IF NOT EXISTS stage ON COMMIT DELETE ROWS AS SELECT cols FROM target WITH NO DATA`.
    pub create_stage: String,
    /// `COPY stage (cols) FROM STDIN`.
    pub copy_stage: String,
    /// `TRUNCATE stage` (before a second use in one transaction).
    pub truncate_stage: String,
    /// `INSERT INTO target (cols) SELECT cols FROM stage ON CONFLICT ...`.
    pub merge: String,
    /// The same with `ON CONFLICT (key) DO NOTHING`.
    pub merge_nothing: String,
    /// `UPDATE target AS t SET <non-key cols> FROM stage AS s WHERE <key match>`
    /// (`UPDATE_ONLY`); `None` when every column is a key column.
    pub update_from_stage: Option<String>,
    /// `pg_temp."dbsync_keys_N"`: keys to delete.
    pub key_stage: String,
    /// Creates the key stage (key columns only).
    pub create_key_stage: String,
    /// `COPY key stage (key cols) FROM STDIN`.
    pub copy_key_stage: String,
    /// `TRUNCATE key stage`.
    pub truncate_key_stage: String,
    /// `DELETE FROM target USING key stage WHERE ...`.
    pub delete_staged: String,
    /// `DELETE FROM target USING unnest($1::type[], ...) ...`, when every key
    /// column has a known, non-array type.
    pub delete_unnest: Option<String>,
}

impl TableSql {
    /// Builds the statements for `schema`; `stage_id` makes the session's
    /// staging table names unique; `key_types` are the target's types of the
    /// key columns (`format_type` spelling), `None` when unnest cannot be used.
    pub fn new(schema: &TableSchema, stage_id: u64, key_types: Option<&[String]>) -> Self {
        let target = qualified(&schema.id);
        let columns = ident_list(schema.columns.iter().map(|c| c.name.as_str()), "");
        let key_columns = ident_list(schema.key_names(), "");
        let conflict = on_conflict(schema);
        let conflict_nothing = format!("ON CONFLICT ({key_columns}) DO NOTHING");
        let stage = format!("pg_temp.\"dbsync_stage_{stage_id}\"");
        let key_stage = format!("pg_temp.\"dbsync_keys_{stage_id}\"");
        let key_match = {
            let mut s = String::new();
            for (i, name) in schema.key_names().enumerate() {
                if i > 0 {
                    s.push_str(" AND ");
                }
                let q = quote_ident(name);
                let _ = write!(s, "t.{q} = d.{q}");
            }
            s
        };
        let delete_unnest = key_types.map(|types| {
            let mut arrays = String::new();
            for (i, ty) in types.iter().enumerate() {
                if i > 0 {
                    arrays.push_str(", ");
                }
                let _ = write!(arrays, "${}::{ty}[]", i + 1);
            }
            format!(
                "DELETE FROM {target} AS t USING unnest({arrays}) AS d({key_columns}) WHERE {key_match}"
            )
        });
        let update_from_stage = {
            let mut set = String::new();
            for (i, col) in schema.columns.iter().enumerate() {
                if schema.key.contains(&i) {
                    continue;
                }
                if !set.is_empty() {
                    set.push_str(", ");
                }
                let q = quote_ident(&col.name);
                let _ = write!(set, "{q} = s.{q}");
            }
            let mut stage_match = String::new();
            for (i, name) in schema.key_names().enumerate() {
                if i > 0 {
                    stage_match.push_str(" AND ");
                }
                let q = quote_ident(name);
                let _ = write!(stage_match, "t.{q} = s.{q}");
            }
            (!set.is_empty()).then(|| {
                format!("UPDATE {target} AS t SET {set} FROM {stage} AS s WHERE {stage_match}")
            })
        };
        Self {
            copy_target: format!("COPY {target} ({columns}) FROM STDIN"),
            create_stage: format!(
                "CREATE TEMP TABLE IF NOT EXISTS {stage} ON COMMIT DELETE ROWS AS \
                 SELECT {columns} FROM {target} WITH NO DATA"
            ),
            copy_stage: format!("COPY {stage} ({columns}) FROM STDIN"),
            truncate_stage: format!("TRUNCATE {stage}"),
            merge: format!(
                "INSERT INTO {target} ({columns}) SELECT {columns} FROM {stage} {conflict}"
            ),
            merge_nothing: format!(
                "INSERT INTO {target} ({columns}) SELECT {columns} FROM {stage} {conflict_nothing}"
            ),
            update_from_stage,
            create_key_stage: format!(
                "CREATE TEMP TABLE IF NOT EXISTS {key_stage} ON COMMIT DELETE ROWS AS \
                 SELECT {key_columns} FROM {target} WITH NO DATA"
            ),
            copy_key_stage: format!("COPY {key_stage} ({key_columns}) FROM STDIN"),
            truncate_key_stage: format!("TRUNCATE {key_stage}"),
            delete_staged: format!(
                "DELETE FROM {target} AS t USING {key_stage} AS d WHERE {key_match}"
            ),
            delete_unnest,
            target,
            columns,
            key_columns,
            conflict,
            conflict_nothing,
            stage,
            key_stage,
        }
    }

    /// `INSERT INTO target (cols) VALUES ($1, ...), ... ON CONFLICT ...` for
    /// `rows` rows of `ncols` parameters each (typed by the target columns);
    /// `DO NOTHING` on conflict when `nothing`.
    pub fn insert_values(&self, rows: usize, ncols: usize, nothing: bool) -> String {
        let mut sql = String::with_capacity(64 + self.columns.len() + rows * ncols * 6);
        let _ = write!(
            sql,
            "INSERT INTO {} ({}) VALUES ",
            self.target, self.columns
        );
        let mut n = 0usize;
        for r in 0..rows {
            sql.push_str(if r == 0 { "(" } else { ", (" });
            for c in 0..ncols {
                if c > 0 {
                    sql.push_str(", ");
                }
                n += 1;
                let _ = write!(sql, "${n}");
            }
            sql.push(')');
        }
        sql.push(' ');
        sql.push_str(if nothing {
            &self.conflict_nothing
        } else {
            &self.conflict
        });
        sql
    }

    /// `UPDATE target SET <changed columns> WHERE <key> = <old key>`:
    /// parameters are the changed columns' values in column order, then the
    /// old key in key order.
    pub fn partial_update(&self, schema: &TableSchema, changed: &[bool]) -> String {
        let mut sql = format!("UPDATE {} SET ", self.target);
        let mut n = 0usize;
        for (col, _) in schema.columns.iter().zip(changed).filter(|(_, &c)| c) {
            if n > 0 {
                sql.push_str(", ");
            }
            n += 1;
            push_ident(&mut sql, &col.name);
            let _ = write!(sql, " = ${n}");
        }
        sql.push_str(" WHERE ");
        for (i, name) in schema.key_names().enumerate() {
            if i > 0 {
                sql.push_str(" AND ");
            }
            n += 1;
            push_ident(&mut sql, name);
            let _ = write!(sql, " = ${n}");
        }
        sql
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine::{ColumnSchema, DataType, Dialect};

    fn col(name: &str) -> ColumnSchema {
        ColumnSchema {
            name: name.into(),
            data_type: DataType::Int32,
            nullable: true,
            native_type: "integer".into(),
            default: None,
        }
    }

    fn schema(cols: &[&str], key: &[usize]) -> TableSchema {
        TableSchema {
            id: TableId::new("sales", "order\"s"),
            columns: cols.iter().map(|c| col(c)).collect(),
            key: key.to_vec(),
            dialect: Dialect::Postgres,
        }
    }

    #[test]
    fn identifiers_are_quoted_and_escaped() {
        assert_eq!(quote_ident("a"), "\"a\"");
        assert_eq!(quote_ident("we\"ird"), "\"we\"\"ird\"");
        assert_eq!(quote_ident("Mixed Case"), "\"Mixed Case\"");
        assert_eq!(
            qualified(&TableId::new("my\"schema", "t")),
            "\"my\"\"schema\".\"t\""
        );
        assert_eq!(quote_literal("ISO, MDY"), "'ISO, MDY'");
        assert_eq!(quote_literal("it's"), "'it''s'");
    }

    #[test]
    fn on_conflict_updates_every_non_key_column() {
        let s = schema(&["id", "name", "qty"], &[0]);
        assert_eq!(
            on_conflict(&s),
            "ON CONFLICT (\"id\") DO UPDATE SET \"name\" = EXCLUDED.\"name\", \
             \"qty\" = EXCLUDED.\"qty\""
        );
    }

    #[test]
    fn on_conflict_composite_key_out_of_column_order() {
        let s = schema(&["a", "b", "c"], &[2, 0]);
        assert_eq!(
            on_conflict(&s),
            "ON CONFLICT (\"c\", \"a\") DO UPDATE SET \"b\" = EXCLUDED.\"b\""
        );
    }

    #[test]
    fn on_conflict_does_nothing_when_every_column_is_a_key_column() {
        let s = schema(&["a", "b"], &[0, 1]);
        assert_eq!(on_conflict(&s), "ON CONFLICT (\"a\", \"b\") DO NOTHING");
        let sql = TableSql::new(&s, 1, None);
        assert!(sql.merge.ends_with("DO NOTHING"), "{}", sql.merge);
        assert!(sql.insert_values(1, 2, false).ends_with("DO NOTHING"));
        assert!(sql.update_from_stage.is_none());
    }

    #[test]
    fn table_statements() {
        let s = schema(&["id", "v"], &[0]);
        let types = vec!["bigint".to_string()];
        let sql = TableSql::new(&s, 7, Some(&types));
        let t = "\"sales\".\"order\"\"s\"";
        assert_eq!(sql.target, t);
        assert_eq!(
            sql.copy_target,
            format!("COPY {t} (\"id\", \"v\") FROM STDIN")
        );
        assert_eq!(
            sql.create_stage,
            format!(
                "CREATE TEMP TABLE IF NOT EXISTS pg_temp.\"dbsync_stage_7\" ON COMMIT DELETE ROWS \
                 AS SELECT \"id\", \"v\" FROM {t} WITH NO DATA"
            )
        );
        assert_eq!(
            sql.merge,
            format!(
                "INSERT INTO {t} (\"id\", \"v\") SELECT \"id\", \"v\" FROM pg_temp.\"dbsync_stage_7\" \
                 ON CONFLICT (\"id\") DO UPDATE SET \"v\" = EXCLUDED.\"v\""
            )
        );
        assert_eq!(
            sql.delete_staged,
            format!(
                "DELETE FROM {t} AS t USING pg_temp.\"dbsync_keys_7\" AS d WHERE t.\"id\" = d.\"id\""
            )
        );
        assert_eq!(
            sql.delete_unnest.as_deref(),
            Some(
                format!(
                    "DELETE FROM {t} AS t USING unnest($1::bigint[]) AS d(\"id\") WHERE t.\"id\" = d.\"id\""
                )
                .as_str()
            )
        );
        assert_eq!(
            sql.copy_key_stage,
            "COPY pg_temp.\"dbsync_keys_7\" (\"id\") FROM STDIN"
        );
    }

    #[test]
    fn composite_key_delete_matches_every_key_column() {
        let s = schema(&["a", "b", "c"], &[0, 2]);
        let types = vec!["integer".to_string(), "character varying(5)".to_string()];
        let sql = TableSql::new(&s, 1, Some(&types));
        assert_eq!(
            sql.delete_unnest.unwrap(),
            "DELETE FROM \"sales\".\"order\"\"s\" AS t USING unnest($1::integer[], \
             $2::character varying(5)[]) AS d(\"a\", \"c\") WHERE t.\"a\" = d.\"a\" AND t.\"c\" = d.\"c\""
        );
        assert!(TableSql::new(&s, 1, None).delete_unnest.is_none());
    }

    #[test]
    fn insert_values_numbers_parameters_row_major() {
        let s = schema(&["id", "v"], &[0]);
        let sql = TableSql::new(&s, 1, None);
        assert_eq!(
            sql.insert_values(2, 2, false),
            "INSERT INTO \"sales\".\"order\"\"s\" (\"id\", \"v\") VALUES ($1, $2), ($3, $4) \
             ON CONFLICT (\"id\") DO UPDATE SET \"v\" = EXCLUDED.\"v\""
        );
        assert_eq!(
            sql.insert_values(1, 2, true),
            "INSERT INTO \"sales\".\"order\"\"s\" (\"id\", \"v\") VALUES ($1, $2) \
             ON CONFLICT (\"id\") DO NOTHING"
        );
    }

    #[test]
    fn policy_statements() {
        let s = schema(&["a", "b", "c", "d"], &[2, 0]);
        let sql = TableSql::new(&s, 3, None);
        let t = "\"sales\".\"order\"\"s\"";
        assert_eq!(
            sql.merge_nothing,
            format!(
                "INSERT INTO {t} (\"a\", \"b\", \"c\", \"d\") SELECT \"a\", \"b\", \"c\", \"d\" \
                 FROM pg_temp.\"dbsync_stage_3\" ON CONFLICT (\"c\", \"a\") DO NOTHING"
            )
        );
        assert_eq!(
            sql.update_from_stage.as_deref(),
            Some(
                format!(
                    "UPDATE {t} AS t SET \"b\" = s.\"b\", \"d\" = s.\"d\" FROM pg_temp.\"dbsync_stage_3\" AS s \
                     WHERE t.\"c\" = s.\"c\" AND t.\"a\" = s.\"a\""
                )
                .as_str()
            )
        );
    }

    #[test]
    fn partial_update_sets_only_changed_columns() {
        let s = schema(&["id", "big", "qty"], &[0]);
        let sql = TableSql::new(&s, 1, None);
        assert_eq!(
            sql.partial_update(&s, &[true, false, true]),
            "UPDATE \"sales\".\"order\"\"s\" SET \"id\" = $1, \"qty\" = $2 WHERE \"id\" = $3"
        );
        let s2 = schema(&["a", "b", "big"], &[1, 0]);
        let sql2 = TableSql::new(&s2, 1, None);
        assert_eq!(
            sql2.partial_update(&s2, &[true, true, false]),
            "UPDATE \"sales\".\"order\"\"s\" SET \"a\" = $1, \"b\" = $2 WHERE \"b\" = $3 AND \"a\" = $4"
        );
    }
}
