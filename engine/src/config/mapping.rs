//! `[[task.mapping]]`: how source tables map to target tables.
//!
//! The fields carry the names of the metadata database's `table_mappings`
//! and `transform_scripts` columns, so that a TOML table and a metadata row
//! (as JSON) deserialize into the same structs. A mapping names its source
//! either with the TOML shorthand `source = "schema.table"` or with the
//! metadata form `source_schema` + `source_table` (likewise `target`).
//! What each field does is implemented in [`crate::mapping`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::mapping::ConflictPolicy;
use crate::schema::TableId;

/// Free-form parameters (`params`, `script_params`): a JSON object.
pub type Params = BTreeMap<String, serde_json::Value>;

/// One `[[task.mapping]]` table, or one row of `table_mappings`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "RawMapping")]
pub struct MappingConfig {
    /// `mapping_id` of the metadata row, when it came from there.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mapping_id: Option<String>,
    /// `schema.table`, where either part may be a glob pattern (`*`, `?`,
    /// `[0-9]`, `{a,b}`) matching many source tables.
    pub source: String,
    /// `schema.table` in the target (default: same as the source); a part
    /// that is `*` takes the source table's own schema or table name.
    pub target: Option<String>,
    /// Source tables (names or patterns) this mapping does not take.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<String>,
    /// Renames, retypes, defaults and nullability of columns.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub column_mappings: Vec<ColumnMapping>,
    /// The key used for upserts and deletes in the target.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub primary_key_mapping: Option<PrimaryKeyMapping>,
    /// A SQL boolean expression over source columns: only rows for which it
    /// is true are replicated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub row_filter_condition: Option<String>,
    /// The source columns to replicate (empty = all).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub column_filter: Vec<String>,
    /// Per-column value transforms, applied in order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub transform_rules: Vec<TransformRule>,
    /// What the target does with rows that exist or do not.
    pub conflict_resolution: ConflictPolicy,
    /// The most rows of this table in one write (absent: the task's limits).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch_size: Option<usize>,
    /// The longest buffered rows of this table wait before being committed
    /// (absent: the task's `batch_timeout_ms`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch_timeout_ms: Option<u64>,
    /// A disabled mapping replicates nothing (and shadows patterns that
    /// would otherwise take its tables).
    pub is_enabled: bool,
    /// `[[task.mapping.script]]`: custom per-row scripts (`transform_scripts`).
    #[serde(rename = "script", skip_serializing_if = "Vec::is_empty")]
    pub scripts: Vec<ScriptConfig>,
}

/// `column_mappings[]`: one source column's fate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnMapping {
    /// The source column.
    pub source_column: String,
    /// Its name in the target (default: the same).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_column: Option<String>,
    /// What the source column is expected to be (checked when the table's
    /// schema arrives): a portable type name such as `bigint` or `varchar(20)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_type: Option<String>,
    /// The target column's type; values are converted exactly or rejected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_type: Option<String>,
    /// Whether the target column allows NULL (default: as the source).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nullable: Option<bool>,
    /// The value written when the source value is NULL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_value: Option<Literal>,
}

/// `primary_key_mapping`: the target key and the source columns feeding it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrimaryKeyMapping {
    /// Source columns, in key order.
    pub source_columns: Vec<String>,
    /// The target key columns they become, in the same order.
    pub target_columns: Vec<String>,
}

/// The kinds of `transform_rules[].transform_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TransformType {
    /// `pattern`: `*` hides a character, `#` keeps it, anything else is written as is.
    Mask,
    /// `factor`: exact for integers and decimals.
    Multiply,
    /// SHA-256 (hex) of the value, with an optional `salt` / `salt_env`.
    Hash,
    /// `length`: at most this many characters.
    Truncate,
    Upper,
    Lower,
    Trim,
    /// `from`/`to` (literal) or `pattern`/`to` (regular expression).
    Replace,
    /// `value`: always this value.
    Constant,
    /// `value`: this value when NULL.
    DefaultIfNull,
    /// `format` (strftime); `input_format` for text columns.
    DateFormat,
    /// `columns`, `separator`: the values joined (NULLs skipped).
    Concat,
    /// `scale`: decimal places, half away from zero.
    Round,
    /// `start` (1-based), `length`.
    Substring,
}

/// `transform_rules[]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransformRule {
    /// The source column the rule rewrites.
    pub column: String,
    /// What the rule does.
    pub transform_type: TransformType,
    /// The rule's parameters; unknown ones are rejected.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub params: Params,
}

/// `transform_scripts.script_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ScriptType {
    /// Not supported by dbsync: rejected when the mapping is loaded.
    Groovy,
    /// `function transform(record, params)` run by an embedded QuickJS.
    Javascript,
    /// `SET col = expr, ... [WHERE keep-condition]`, or a keep-condition.
    Sql,
    /// Not supported by dbsync: rejected when the mapping is loaded.
    Python,
}

/// `transform_scripts.trigger_phase`: where in the row's path a script runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TriggerPhase {
    /// On the source record, after the row filter, before the transform rules.
    BeforeTransform,
    /// On the source record, after the transform rules.
    AfterTransform,
    /// On the target record (renamed, retyped columns), before it is buffered.
    BeforeWrite,
    /// On each upserted or updated row once the target accepted it (inside
    /// the open target transaction, not for deletes); it cannot change the
    /// row, but a `THROW_EXCEPTION` failure fails the task and rolls back.
    AfterWrite,
}

/// `transform_scripts.error_handling`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorHandling {
    /// Log (rate-limited) and pass the record on as it was before the script.
    LogAndContinue,
    /// Fail the task with the script's name and error.
    #[default]
    ThrowException,
    /// Leave the change out entirely.
    SkipRecord,
}

/// `[[task.mapping.script]]` / a row of `transform_scripts`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub script_id: Option<String>,
    /// Names the script in errors, logs and statistics (unique per mapping).
    pub script_name: String,
    /// SQL or JAVASCRIPT (GROOVY and PYTHON are rejected).
    pub script_type: ScriptType,
    /// Where in the row's path the script runs.
    pub trigger_phase: TriggerPhase,
    /// The script's text.
    pub script_content: String,
    /// Scripts of one phase run in ascending order (ties: file order).
    #[serde(default)]
    pub execution_order: i32,
    /// Given to JavaScript as `transform`'s second argument; `:name` in SQL.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub script_params: Params,
    #[serde(default = "yes")]
    pub is_enabled: bool,
    #[serde(default)]
    pub error_handling: ErrorHandling,
    /// The longest one run may take.
    #[serde(default = "default_script_timeout")]
    pub timeout_ms: u64,
}

/// A scalar from the configuration (`default_value`, `value` params): a
/// string, number or boolean, kept as its text and converted to the column's
/// type when the table's schema is known.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Literal(pub String);

impl<'de> Deserialize<'de> for Literal {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Literal;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string, number or boolean")
            }
            fn visit_str<E>(self, v: &str) -> Result<Literal, E> {
                Ok(Literal(v.to_string()))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Literal, E> {
                Ok(Literal(v.to_string()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Literal, E> {
                Ok(Literal(v.to_string()))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Literal, E> {
                literal_of_f64(v).map(Literal).map_err(E::custom)
            }
            fn visit_bool<E>(self, v: bool) -> Result<Literal, E> {
                Ok(Literal(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// The shortest decimal text that reads back as `v` (`1.1`, not `1.1000000000000001`).
pub(crate) fn literal_of_f64(v: f64) -> Result<String, String> {
    if !v.is_finite() {
        return Err("a number must be finite".into());
    }
    Ok(ryu::Buffer::new().format_finite(v).to_string())
}

fn yes() -> bool {
    true
}

fn default_script_timeout() -> u64 {
    5000
}

/// What TOML or JSON holds; normalized into [`MappingConfig`].
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMapping {
    #[serde(default)]
    mapping_id: Option<String>,
    #[serde(default)]
    source: Option<String>,
    #[serde(default)]
    target: Option<String>,
    #[serde(default)]
    source_schema: Option<String>,
    #[serde(default)]
    source_table: Option<String>,
    #[serde(default)]
    target_schema: Option<String>,
    #[serde(default)]
    target_table: Option<String>,
    #[serde(default)]
    exclude: Vec<String>,
    #[serde(default)]
    column_mappings: Vec<ColumnMapping>,
    #[serde(default)]
    primary_key_mapping: Option<PrimaryKeyMapping>,
    #[serde(default)]
    row_filter_condition: Option<String>,
    #[serde(default)]
    column_filter: Vec<String>,
    #[serde(default)]
    transform_rules: Vec<TransformRule>,
    #[serde(default)]
    conflict_resolution: ConflictPolicy,
    #[serde(default)]
    batch_size: Option<usize>,
    #[serde(default)]
    batch_timeout_ms: Option<u64>,
    #[serde(default = "yes")]
    is_enabled: bool,
    #[serde(default, rename = "script", alias = "transform_scripts")]
    scripts: Vec<ScriptConfig>,
}

/// `schema.table` from the metadata form; a missing part is left out so
/// that validation reports it.
fn join_name(schema: Option<String>, table: Option<String>) -> Option<String> {
    match (schema, table) {
        (None, None) => None,
        (Some(s), Some(t)) => Some(format!("{s}.{t}")),
        (None, Some(t)) => Some(t),
        (Some(s), None) => Some(format!("{s}.")),
    }
}

impl From<RawMapping> for MappingConfig {
    fn from(r: RawMapping) -> Self {
        let meta_source = join_name(r.source_schema, r.source_table);
        let meta_target = join_name(r.target_schema, r.target_table);
        // Both forms at once are reported by `validate` (marked by a NUL,
        // which no table name has).
        let source = match (r.source, meta_source) {
            (Some(s), Some(_)) => format!("{s}\0both"),
            (Some(s), None) | (None, Some(s)) => s,
            (None, None) => String::new(),
        };
        let target = match (r.target, meta_target) {
            (Some(t), Some(_)) => Some(format!("{t}\0both")),
            (t, m) => t.or(m),
        };
        Self {
            mapping_id: r.mapping_id,
            source,
            target,
            exclude: r.exclude,
            column_mappings: r.column_mappings,
            primary_key_mapping: r.primary_key_mapping,
            row_filter_condition: r.row_filter_condition,
            column_filter: r.column_filter,
            transform_rules: r.transform_rules,
            conflict_resolution: r.conflict_resolution,
            batch_size: r.batch_size,
            batch_timeout_ms: r.batch_timeout_ms,
            is_enabled: r.is_enabled,
            scripts: r.scripts,
        }
    }
}

impl MappingConfig {
    /// A mapping of `source` to the same-named target with nothing else set.
    pub fn new(source: impl Into<String>) -> Self {
        Self {
            mapping_id: None,
            source: source.into(),
            target: None,
            exclude: Vec::new(),
            column_mappings: Vec::new(),
            primary_key_mapping: None,
            row_filter_condition: None,
            column_filter: Vec::new(),
            transform_rules: Vec::new(),
            conflict_resolution: ConflictPolicy::Upsert,
            batch_size: None,
            batch_timeout_ms: None,
            is_enabled: true,
            scripts: Vec::new(),
        }
    }

    /// The source table when `source` names one table (for a pattern: the
    /// pattern text split like a name).
    pub fn source_id(&self) -> TableId {
        TableId::parse(&self.source, "public")
    }

    /// The target table of an exactly named source.
    pub fn target_id(&self) -> TableId {
        TableId::parse(self.target.as_deref().unwrap_or(&self.source), "public")
    }

    /// Whether `source` is a pattern rather than one table's name.
    pub fn is_pattern(&self) -> bool {
        crate::mapping::is_pattern(&self.source)
    }

    /// Checks everything that does not need the table's schema: names and
    /// patterns, types, the row filter (parsed, with the position of an
    /// error), transform rules and their parameters, and scripts (GROOVY and
    /// PYTHON are rejected; SQL is parsed; JavaScript is compiled).
    pub fn validate(&self) -> Result<(), String> {
        crate::mapping::CompiledMapping::compile(self).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_and_metadata_json_read_alike() {
        let toml_text = r#"
source = "public.customers"
target = "crm.clients"
column_filter = ["id", "name"]
column_mappings = [{ source_column = "name", target_column = "full_name" }]
row_filter_condition = "status = 'ACTIVE'"
transform_rules = [{ column = "name", transform_type = "UPPER" }]
conflict_resolution = "INSERT_ONLY"
batch_size = 100
[[script]]
script_name = "s"
script_type = "SQL"
trigger_phase = "BEFORE_WRITE"
script_content = "WHERE id > 0"
"#;
        let from_toml: MappingConfig = toml::from_str(toml_text).unwrap();
        let json = r#"{"mapping_id": "m1", "source_schema": "public", "source_table": "customers",
            "target_schema": "crm", "target_table": "clients", "column_filter": ["id", "name"],
            "column_mappings": [{"source_column": "name", "target_column": "full_name"}],
            "row_filter_condition": "status = 'ACTIVE'",
            "transform_rules": [{"column": "name", "transform_type": "UPPER", "params": {}}],
            "conflict_resolution": "INSERT_ONLY", "batch_size": 100, "is_enabled": true,
            "transform_scripts": [{"script_name": "s", "script_type": "SQL", "trigger_phase": "BEFORE_WRITE",
              "script_content": "WHERE id > 0", "execution_order": 0, "error_handling": "THROW_EXCEPTION",
              "timeout_ms": 5000, "is_enabled": true}]}"#;
        let mut from_json: MappingConfig = serde_json::from_str(json).unwrap();
        assert_eq!(from_json.mapping_id.as_deref(), Some("m1"));
        from_json.mapping_id = None;
        assert_eq!(from_toml, from_json);
        assert_eq!(from_toml.target_id(), TableId::new("crm", "clients"));
        from_toml.validate().unwrap();
        // Serialized and read back: the same.
        let back: MappingConfig =
            serde_json::from_str(&serde_json::to_string(&from_toml).unwrap()).unwrap();
        assert_eq!(back, from_toml);
    }

    #[test]
    fn unknown_fields_and_both_name_forms_are_rejected() {
        let err = toml::from_str::<MappingConfig>("source = \"a.b\"\nsorce_table = \"x\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("sorce_table"), "{err}");
        let m: MappingConfig =
            toml::from_str("source = \"a.b\"\nsource_schema = \"a\"\nsource_table = \"b\"")
                .unwrap();
        let err = m.validate().unwrap_err();
        assert!(err.contains("either `source` or"), "{err}");
        let m: MappingConfig = toml::from_str("source_table = \"b\"").unwrap();
        assert_eq!(m.source, "b");
    }

    #[test]
    fn task_validation_checks_every_mapping() {
        let task = |maps: &str| {
            format!(
                "[[task]]\nname = \"t\"\n[task.source]\ntype = \"postgresql\"\nurl = \"postgres://u@h/db\"\n\
                 [task.target]\ntype = \"postgresql\"\nurl = \"postgres://u@h/db2\"\n{maps}"
            )
        };
        let err = |maps: &str| {
            crate::config::Config::parse(&task(maps))
                .unwrap_err()
                .to_string()
        };
        let e = err("[[task.mapping]]\nsource = \"public.a\"\nrow_filter_condition = \"x >\"");
        assert!(
            e.contains("task \"t\": mapping public.a: row_filter_condition"),
            "{e}"
        );
        let e = err("[[task.mapping]]\nsource = \"public.a\"\n[[task.mapping]]\nsource = \"a\"");
        assert!(e.contains("mapped twice"), "{e}");
        let e = err("[[task.mapping]]\nsource = \"public.a\"\nis_enabled = false");
        assert!(e.contains("is_enabled = false"), "{e}");
        let ok = crate::config::Config::parse(&task(
            "[[task.mapping]]\nsource = \"public.a_*\"\n[[task.mapping]]\nsource = \"public.a_1\"\nis_enabled = false",
        ));
        assert!(ok.is_ok(), "{ok:?}");
    }

    #[test]
    fn literals_keep_their_text() {
        #[derive(Deserialize)]
        struct T {
            a: Literal,
            b: Literal,
            c: Literal,
            d: Literal,
        }
        let t: T = toml::from_str("a = 1.1\nb = 7\nc = true\nd = \"x\"").unwrap();
        assert_eq!(
            (t.a.0, t.b.0, t.c.0, t.d.0),
            ("1.1".into(), "7".into(), "true".into(), "x".into())
        );
    }
}
