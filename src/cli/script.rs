//! `dbsync script create|list|show|update|delete` (scripts of one mapping).
//! A script is named by its name or id; GROOVY and PYTHON are refused.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use metastore::meta::model::{self, Script};
use metastore::meta::ops::mapping;
use metastore::meta::ops::script::{self, MappingRef, ScriptPatch, ScriptSpec};
use serde_json::json;

use super::input;
use super::output::{self, fields, Table};
use super::{CmdResult, Ctx, Failure};

#[derive(Args)]
pub struct MappingScope {
    /// The tenant's code.
    #[arg(long, default_value = "default")]
    tenant: String,
    /// The task's code.
    #[arg(long)]
    task: String,
    /// The mapping: its source table (schema.table) or id.
    #[arg(long)]
    mapping: String,
}

impl MappingScope {
    fn at(&self) -> MappingRef<'_> {
        MappingRef {
            tenant_code: &self.tenant,
            task_code: &self.task,
            mapping: &self.mapping,
        }
    }
}

#[derive(Subcommand)]
pub enum Action {
    /// Add a script to a mapping (NAME with --type and --content, or --file script.json).
    Create {
        #[command(flatten)]
        scope: MappingScope,
        /// The script's name (unique in the mapping).
        name: Option<String>,
        #[command(flatten)]
        fields: Fields,
        /// The whole script as JSON (transform_scripts field names).
        #[arg(long, value_name = "FILE", conflicts_with = "name")]
        file: Option<PathBuf>,
    },
    /// List the mapping's scripts.
    List {
        #[command(flatten)]
        scope: MappingScope,
    },
    /// Show a script with its content.
    Show {
        #[command(flatten)]
        scope: MappingScope,
        /// Name or id.
        script: String,
    },
    /// Change a script's fields (only those given).
    Update {
        #[command(flatten)]
        scope: MappingScope,
        /// Name or id.
        script: String,
        /// A new name.
        #[arg(long)]
        rename: Option<String>,
        #[command(flatten)]
        fields: Fields,
        /// The changes as JSON (transform_scripts field names).
        #[arg(long, value_name = "FILE")]
        file: Option<PathBuf>,
    },
    /// Soft-delete a script.
    Delete {
        #[command(flatten)]
        scope: MappingScope,
        /// Name or id.
        script: String,
    },
}

#[derive(Args)]
pub struct Fields {
    /// JAVASCRIPT or SQL (GROOVY and PYTHON cannot run in dbsync).
    #[arg(long = "type", value_name = "TYPE")]
    script_type: Option<String>,
    /// BEFORE_TRANSFORM, AFTER_TRANSFORM, BEFORE_WRITE (default) or AFTER_WRITE.
    #[arg(long, value_name = "PHASE")]
    phase: Option<String>,
    /// The script text, or @file.js / @file.sql.
    #[arg(long, value_name = "TEXT")]
    content: Option<String>,
    /// Scripts of a phase run in ascending order.
    #[arg(long)]
    order: Option<i32>,
    /// Parameters as JSON (JavaScript's second argument; :name in SQL).
    #[arg(long, value_name = "JSON")]
    params: Option<String>,
    /// true or false.
    #[arg(long, value_name = "BOOL")]
    enabled: Option<bool>,
    /// LOG_AND_CONTINUE, THROW_EXCEPTION (default) or SKIP_RECORD.
    #[arg(long, value_name = "POLICY")]
    error_handling: Option<String>,
    #[arg(long)]
    timeout_ms: Option<i32>,
}

impl Fields {
    fn patch(self, rename: Option<String>) -> Result<ScriptPatch, Failure> {
        Ok(ScriptPatch {
            script_name: rename,
            script_type: self.script_type,
            trigger_phase: self.phase,
            script_content: self
                .content
                .map(|c| input::text_arg("--content", &c))
                .transpose()?,
            execution_order: self.order,
            script_params: self
                .params
                .map(|p| input::json_arg("--params", &p).map(|j| j.0))
                .transpose()?,
            is_enabled: self.enabled,
            error_handling: self.error_handling,
            timeout_ms: self.timeout_ms,
        })
    }
}

pub async fn run(ctx: &Ctx, action: Action) -> CmdResult {
    let mut conn = ctx.conn().await?;
    let c = &mut *conn;
    match action {
        Action::Create {
            scope,
            name,
            fields,
            file,
        } => {
            let spec = match file {
                Some(f) => input::file_arg::<ScriptSpec>(&f)?,
                None => {
                    let p = fields.patch(name)?;
                    let need = |v: Option<String>, what: &str| {
                        v.ok_or_else(|| {
                            Failure::from(format!("give {what} (or --file script.json)"))
                        })
                    };
                    ScriptSpec {
                        script_name: need(p.script_name, "the script's name")?,
                        script_type: need(p.script_type, "--type")?,
                        trigger_phase: p.trigger_phase,
                        script_content: need(p.script_content, "--content")?,
                        execution_order: p.execution_order,
                        script_params: p.script_params,
                        is_enabled: p.is_enabled,
                        error_handling: p.error_handling,
                        timeout_ms: p.timeout_ms,
                    }
                }
            };
            let s = script::create(c, ctx.actor()?, scope.at(), &spec).await?;
            show(
                ctx,
                &s,
                &format!(
                    "created script {} in mapping {}",
                    s.script_name, scope.mapping
                ),
            );
        }
        Action::List { scope } => {
            let tenant = model::tenant_by_code(&*c, &scope.tenant).await?;
            let task = model::task_by_code(&*c, tenant.tenant_id, &scope.task).await?;
            let m = mapping::find(&*c, &task, &scope.mapping, false).await?;
            let scripts = model::scripts(&*c, m.mapping_id).await?;
            if ctx.json {
                output::json(&scripts);
            } else {
                table(&scripts).print();
            }
        }
        Action::Show { scope, script: sel } => {
            let tenant = model::tenant_by_code(&*c, &scope.tenant).await?;
            let task = model::task_by_code(&*c, tenant.tenant_id, &scope.task).await?;
            let m = mapping::find(&*c, &task, &scope.mapping, false).await?;
            let s = model::scripts(&*c, m.mapping_id)
                .await?
                .into_iter()
                .find(|s| s.script_name == sel || s.script_id.to_string() == sel.to_lowercase())
                .ok_or_else(|| {
                    Failure::from(metastore::meta::MetaError::NotFound(format!(
                        "script {sel:?} of mapping {}",
                        m.source_table_fqn
                    )))
                })?;
            show(ctx, &s, "");
        }
        Action::Update {
            scope,
            script: sel,
            rename,
            fields,
            file,
        } => {
            let patch = match file {
                Some(f) => input::file_arg::<ScriptPatch>(&f)?,
                None => fields.patch(rename)?,
            };
            let (before, after) = script::update(c, ctx.actor()?, scope.at(), &sel, &patch).await?;
            let changed = super::tenant::changed_fields(&before, &after);
            show(ctx, &after, &format!("updated script {sel}: {changed}"));
        }
        Action::Delete { scope, script: sel } => {
            let s = script::delete(c, ctx.actor()?, scope.at(), &sel).await?;
            if ctx.json {
                output::json(&json!({"deleted": s}));
            } else {
                output::emit(&format!(
                    "deleted script {} of mapping {}\n",
                    s.script_name, scope.mapping
                ));
            }
        }
    }
    Ok(())
}

/// The scripts of a mapping as a table (also used by `mapping show`).
pub fn table(scripts: &[Script]) -> Table {
    let mut t = Table::new(&[
        "NAME",
        "TYPE",
        "PHASE",
        "ORDER",
        "ENABLED",
        "ON ERROR",
        "TIMEOUT MS",
        "RUNS",
        "AVG MS",
    ]);
    for s in scripts {
        t.row(vec![
            s.script_name.clone(),
            s.script_type.clone(),
            s.trigger_phase.clone(),
            s.execution_order.to_string(),
            s.is_enabled.to_string(),
            s.error_handling.clone(),
            s.timeout_ms.to_string(),
            s.execution_count.to_string(),
            format!("{:.2}", s.average_execution_time_ms),
        ]);
    }
    t
}

fn show(ctx: &Ctx, s: &Script, headline: &str) {
    if ctx.json {
        output::json(s);
        return;
    }
    let mut text = String::new();
    if !headline.is_empty() {
        text.push_str(headline);
        text.push('\n');
    }
    text.push_str(&fields(&[
        ("name", s.script_name.clone()),
        ("id", s.script_id.to_string()),
        ("type", s.script_type.clone()),
        ("phase", s.trigger_phase.clone()),
        ("order", s.execution_order.to_string()),
        ("enabled", s.is_enabled.to_string()),
        ("error_handling", s.error_handling.clone()),
        ("timeout_ms", s.timeout_ms.to_string()),
        ("params", output::compact(&s.script_params)),
        ("runs", s.execution_count.to_string()),
        (
            "created",
            format!("{} by {}", output::time(&s.created_at), s.created_by),
        ),
        (
            "updated",
            format!("{} by {}", output::time(&s.updated_at), s.updated_by),
        ),
    ]));
    text.push_str(&format!("\n{}\n", s.script_content.trim_end()));
    output::emit(&text);
}
