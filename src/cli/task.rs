//! `dbsync task create|list|show|update|delete|start|pause|resume|stop|reset-offset`.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use engine::config::Secret;
use metastore::meta::model::{self, Task};
use metastore::meta::ops::fleet;
use metastore::meta::ops::lifecycle::{self, Transition};
use metastore::meta::ops::task::{self, TaskPatch, TaskSpec};
use metastore::meta::ops::validate::RUNNABLE_DB_TYPES;
use serde_json::json;

use super::input;
use super::output::{self, fields, Table};
use super::{CmdResult, Ctx, Failure};

#[derive(Args)]
pub struct Scope {
    /// The tenant's code.
    #[arg(long, default_value = "default")]
    tenant: String,
}

#[derive(Subcommand)]
pub enum Action {
    /// Create a task (CODE with --name, types and connection configs, or --file task.json
    /// holding the whole task with its mappings and scripts).
    Create {
        #[command(flatten)]
        scope: Scope,
        /// The task's code (letters, digits, '_' and '-'; unique in the tenant).
        code: Option<String>,
        #[command(flatten)]
        fields: Fields,
        #[command(flatten)]
        passwords: Passwords,
        /// The whole task as JSON, optionally with "mappings" (each with "transform_scripts").
        #[arg(long, value_name = "FILE", conflicts_with_all = ["code", "name"])]
        file: Option<PathBuf>,
    },
    /// List the tasks of a tenant.
    List {
        #[command(flatten)]
        scope: Scope,
        /// Every tenant's tasks.
        #[arg(long)]
        all_tenants: bool,
    },
    /// Show a task with its mappings.
    Show {
        #[command(flatten)]
        scope: Scope,
        code: String,
    },
    /// Change a task's fields (only those given; a connection config without
    /// "password" keeps the stored one).
    Update {
        #[command(flatten)]
        scope: Scope,
        code: String,
        #[command(flatten)]
        fields: Fields,
        #[command(flatten)]
        passwords: Passwords,
        /// The changes as JSON (fields named as in the sync_tasks table).
        #[arg(long, value_name = "FILE")]
        file: Option<PathBuf>,
    },
    /// Soft-delete a task with its mappings and scripts (stop it first).
    Delete {
        #[command(flatten)]
        scope: Scope,
        code: String,
    },
    /// Run the task (from CREATED, STOPPED, FAILED, COMPLETED or PAUSED); clears last_error.
    Start {
        #[command(flatten)]
        scope: Scope,
        code: String,
    },
    /// Pause a RUNNING task.
    Pause {
        #[command(flatten)]
        scope: Scope,
        code: String,
    },
    /// Resume a PAUSED task.
    Resume {
        #[command(flatten)]
        scope: Scope,
        code: String,
    },
    /// Stop the task.
    Stop {
        #[command(flatten)]
        scope: Scope,
        code: String,
    },
    /// Forget the task's source position on every host (the task must not be RUNNING).
    ResetOffset {
        #[command(flatten)]
        scope: Scope,
        code: String,
    },
}

#[derive(Args)]
pub struct Fields {
    #[arg(long)]
    name: Option<String>,
    #[arg(long)]
    description: Option<String>,
    /// MYSQL or POSTGRESQL (ORACLE and SQLSERVER are accepted but cannot run yet).
    #[arg(long, value_name = "TYPE")]
    source_type: Option<String>,
    #[arg(long, value_name = "TYPE")]
    target_type: Option<String>,
    /// Source connection config as JSON or @file.json: host, port, database, username, ssl…
    #[arg(long, value_name = "JSON")]
    source_config: Option<String>,
    /// Target connection config as JSON or @file.json.
    #[arg(long, value_name = "JSON")]
    target_config: Option<String>,
    #[arg(long)]
    connector_name: Option<String>,
    /// The source reader's options as JSON or @file.json.
    #[arg(long, value_name = "JSON")]
    connector_config: Option<String>,
    /// FULL_ONLY, INCREMENTAL_ONLY or FULL_INCREMENTAL.
    #[arg(long, value_name = "MODE")]
    sync_mode: Option<String>,
    /// e.g. {"lag_threshold": 100000, "error_rate_threshold": 0.01, "alert_emails": [...]}.
    #[arg(long, value_name = "JSON")]
    alert_config: Option<String>,
    /// e.g. {"cron": "0 0 * * *", "timezone": "UTC"} (FULL_ONLY tasks); null removes it.
    #[arg(long, value_name = "JSON")]
    schedule_config: Option<String>,
}

#[derive(Args)]
pub struct Passwords {
    /// Read the source password from this environment variable.
    #[arg(long, value_name = "VAR")]
    source_password_env: Option<String>,
    /// Read the target password from this environment variable.
    #[arg(long, value_name = "VAR")]
    target_password_env: Option<String>,
    /// Read the source password from standard input.
    #[arg(long, conflicts_with_all = ["source_password_env", "target_password_stdin"])]
    source_password_stdin: bool,
    /// Read the target password from standard input.
    #[arg(long, conflicts_with = "target_password_env")]
    target_password_stdin: bool,
}

impl Passwords {
    fn read(&self) -> Result<(Option<Secret>, Option<Secret>), Failure> {
        let one = |env: &Option<String>, stdin: bool, what: &str| -> Result<_, Failure> {
            Ok(match (env, stdin) {
                (Some(var), _) => Some(input::password_env(var)?),
                (None, true) => Some(input::password_stdin(what)?),
                (None, false) => None,
            })
        };
        Ok((
            one(
                &self.source_password_env,
                self.source_password_stdin,
                "source password",
            )?,
            one(
                &self.target_password_env,
                self.target_password_stdin,
                "target password",
            )?,
        ))
    }
}

impl Fields {
    fn patch(self) -> Result<TaskPatch, Failure> {
        let json = |flag: &str, v: Option<String>| -> Result<_, Failure> {
            Ok(v.map(|v| input::json_arg(flag, &v).map(|j| j.0))
                .transpose()?)
        };
        Ok(TaskPatch {
            task_name: self.name,
            description: self.description,
            source_db_type: self.source_type,
            target_db_type: self.target_type,
            source_connection_config: self
                .source_config
                .map(|v| input::connection_arg("--source-config", &v, "source"))
                .transpose()?,
            target_connection_config: self
                .target_config
                .map(|v| input::connection_arg("--target-config", &v, "target"))
                .transpose()?,
            connector_name: self.connector_name,
            connector_config: json("--connector-config", self.connector_config)?,
            sync_mode: self.sync_mode,
            alert_config: json("--alert-config", self.alert_config)?,
            schedule_config: json("--schedule-config", self.schedule_config)?,
            source_password: None,
            target_password: None,
        })
    }
}

fn spec_from_flags(code: Option<String>, p: TaskPatch) -> Result<TaskSpec, Failure> {
    let need = |v: Option<String>, what: &str| {
        v.ok_or_else(|| Failure::from(format!("give {what} (or --file task.json)")))
    };
    Ok(TaskSpec {
        task_code: need(code, "the task's code")?,
        task_name: need(p.task_name, "--name")?,
        description: p.description,
        source_db_type: need(p.source_db_type, "--source-type")?,
        target_db_type: need(p.target_db_type, "--target-type")?,
        source_connection_config: p
            .source_connection_config
            .ok_or_else(|| Failure::from("give --source-config".to_string()))?,
        target_connection_config: p
            .target_connection_config
            .ok_or_else(|| Failure::from("give --target-config".to_string()))?,
        connector_name: p.connector_name,
        connector_config: p.connector_config,
        sync_mode: p.sync_mode,
        alert_config: p.alert_config,
        schedule_config: p.schedule_config.filter(|s| !s.is_null()),
        mappings: Vec::new(),
        source_password: None,
        target_password: None,
    })
}

/// Says when the daemon has no connector for a database type.
fn warn_unrunnable(t: &Task) {
    for (side, ty) in [("source", &t.source_db_type), ("target", &t.target_db_type)] {
        if !RUNNABLE_DB_TYPES.contains(&ty.as_str()) {
            eprintln!(
                "warning: dbsync has no {ty} {side} connector yet: the daemon will refuse to run \
                 task {} (supported: {})",
                t.task_code,
                RUNNABLE_DB_TYPES.join(", ")
            );
        }
    }
}

pub async fn run(ctx: &Ctx, action: Action) -> CmdResult {
    let mut conn = ctx.conn().await?;
    let c = &mut *conn;
    match action {
        Action::Create {
            scope,
            code,
            fields,
            passwords,
            file,
        } => {
            let (src_pw, dst_pw) = passwords.read()?;
            let mut spec = match file {
                Some(f) => input::file_arg::<TaskSpec>(&f)?,
                None => spec_from_flags(code, fields.patch()?)?,
            };
            spec.source_password = src_pw;
            spec.target_password = dst_pw;
            let key = ctx.key()?;
            let (t, maps) =
                task::create(c, ctx.actor()?, &scope.tenant, &spec, key.as_ref()).await?;
            warn_unrunnable(&t);
            if ctx.json {
                let maps: Vec<_> = maps
                    .iter()
                    .map(|(m, s)| json!({"mapping": m, "scripts": s}))
                    .collect();
                output::json(&json!({"task": t, "mappings": maps}));
            } else {
                output::emit(&format!(
                    "created task {} in tenant {} ({} mapping(s)); start it with `dbsync task start {} --tenant {}`\n",
                    t.task_code,
                    scope.tenant,
                    maps.len(),
                    t.task_code,
                    scope.tenant
                ));
                output::emit(&details(&t, None));
            }
        }
        Action::List { scope, all_tenants } => {
            let tenants = model::tenants(&*c).await?;
            let tenant_id = if all_tenants {
                None
            } else {
                Some(model::tenant_by_code(&*c, &scope.tenant).await?.tenant_id)
            };
            let tasks: Vec<Task> = model::tasks(&*c, tenant_id)
                .await?
                .into_iter()
                .filter(|t| tenants.iter().any(|x| x.tenant_id == t.tenant_id))
                .collect();
            let leases = fleet::leases(&*c).await?;
            let owner = |t: &Task| {
                leases
                    .iter()
                    .find(|l| l.task_id == t.task_id && !l.expired)
                    .map(|l| l.owner.clone())
            };
            if ctx.json {
                let rows: Vec<_> = tasks
                    .iter()
                    .map(|t| json!({"task": t, "owner": owner(t)}))
                    .collect();
                output::json(&rows);
                return Ok(());
            }
            let mut table = Table::new(&[
                "TENANT",
                "TASK",
                "NAME",
                "SOURCE→TARGET",
                "MODE",
                "STATUS",
                "HEALTH",
                "RECORDS",
                "OWNER",
                "LAST ERROR",
            ]);
            for t in &tasks {
                let tenant = tenants
                    .iter()
                    .find(|x| x.tenant_id == t.tenant_id)
                    .map_or("?", |x| x.tenant_code.as_str());
                table.row(vec![
                    tenant.to_string(),
                    t.task_code.clone(),
                    output::short(&t.task_name, 30),
                    format!("{}→{}", t.source_db_type, t.target_db_type),
                    t.sync_mode.clone(),
                    t.status.clone(),
                    t.health_status.clone(),
                    t.total_records_synced.to_string(),
                    owner(t).unwrap_or_else(|| "-".into()),
                    t.last_error
                        .as_deref()
                        .map_or_else(|| "-".into(), |e| output::short(e, 50)),
                ]);
            }
            table.print();
        }
        Action::Show { scope, code } => {
            let tenant = model::tenant_by_code(&*c, &scope.tenant).await?;
            let t = model::task_by_code(&*c, tenant.tenant_id, &code).await?;
            let lease = fleet::leases(&*c)
                .await?
                .into_iter()
                .find(|l| l.task_id == t.task_id);
            let mut maps = Vec::new();
            for m in model::mappings(&*c, t.task_id).await? {
                let s = model::scripts(&*c, m.mapping_id).await?;
                maps.push((m, s));
            }
            if ctx.json {
                let m: Vec<_> = maps
                    .iter()
                    .map(|(m, s)| json!({"mapping": m, "scripts": s}))
                    .collect();
                output::json(&json!({"tenant_code": tenant.tenant_code, "task": t,
                    "lease": lease, "mappings": m}));
                return Ok(());
            }
            let owner = lease.map(|l| {
                let state = if l.expired { "expired" } else { "held" };
                format!(
                    "{} (epoch {}, {state} until {})",
                    l.owner,
                    l.epoch,
                    output::time(&l.expires_at)
                )
            });
            let mut text = details(&t, Some(owner.unwrap_or_else(|| "-".into())));
            let mut table = Table::new(&[
                "SOURCE",
                "TARGET",
                "ENABLED",
                "CONFLICT",
                "ROW FILTER",
                "RULES",
                "SCRIPTS",
                "ROWS",
            ]);
            for (m, s) in &maps {
                table.row(vec![
                    m.source_table_fqn.clone(),
                    m.target_table_fqn.clone(),
                    m.is_enabled.to_string(),
                    m.conflict_resolution.clone(),
                    m.row_filter_condition
                        .as_deref()
                        .map_or_else(|| "-".into(), |f| output::short(f, 40)),
                    output::count(&m.transform_rules).to_string(),
                    s.len().to_string(),
                    m.total_rows_synced.to_string(),
                ]);
            }
            text.push_str(&format!("\nMappings\n{}", table.render()));
            output::emit(&text);
        }
        Action::Update {
            scope,
            code,
            fields,
            passwords,
            file,
        } => {
            let (src_pw, dst_pw) = passwords.read()?;
            let mut patch = match file {
                Some(f) => input::file_arg::<TaskPatch>(&f)?,
                None => fields.patch()?,
            };
            patch.source_password = src_pw;
            patch.target_password = dst_pw;
            let key = ctx.key()?;
            let (before, after) =
                task::update(c, ctx.actor()?, &scope.tenant, &code, &patch, key.as_ref()).await?;
            warn_unrunnable(&after);
            if ctx.json {
                output::json(&after);
            } else {
                let mut changed = super::tenant::changed_fields(&before, &after);
                if before.source_connection_config.get("password")
                    != after.source_connection_config.get("password")
                    || before.target_connection_config.get("password")
                        != after.target_connection_config.get("password")
                {
                    changed.push_str(" (password replaced)");
                }
                output::emit(&format!("updated task {code}: {changed}\n"));
                output::emit(&details(&after, None));
            }
        }
        Action::Delete { scope, code } => {
            let t = task::delete(c, ctx.actor()?, &scope.tenant, &code).await?;
            if ctx.json {
                output::json(&json!({"deleted": t}));
            } else {
                output::emit(&format!(
                    "deleted task {code} of tenant {} (with its mappings and scripts)\n",
                    scope.tenant
                ));
            }
        }
        Action::Start { scope, code } => {
            transition(ctx, c, &scope, &code, Transition::Start).await?
        }
        Action::Pause { scope, code } => {
            transition(ctx, c, &scope, &code, Transition::Pause).await?
        }
        Action::Resume { scope, code } => {
            transition(ctx, c, &scope, &code, Transition::Resume).await?
        }
        Action::Stop { scope, code } => transition(ctx, c, &scope, &code, Transition::Stop).await?,
        Action::ResetOffset { scope, code } => {
            let r = lifecycle::reset_offset(c, ctx.actor()?, &scope.tenant, &code).await?;
            if ctx.json {
                output::json(
                    &json!({"task": r.task, "offsets_deleted": r.offsets_deleted,
                    "old_offset_epoch": r.old_epoch, "offset_epoch": r.new_epoch}),
                );
            } else {
                output::emit(&format!(
                    "task {code}: deleted {} stored offset(s); offset_epoch {} → {}: every daemon \
                     starts it from scratch on its next run (sync_mode {})\n",
                    r.offsets_deleted, r.old_epoch, r.new_epoch, r.task.sync_mode
                ));
            }
        }
    }
    Ok(())
}

async fn transition(
    ctx: &Ctx,
    c: &mut tokio_postgres::Client,
    scope: &Scope,
    code: &str,
    t: Transition,
) -> CmdResult {
    let (before, after) = lifecycle::transition(c, ctx.actor()?, &scope.tenant, code, t).await?;
    if ctx.json {
        output::json(&json!({"task": after, "from": before.status, "to": after.status}));
    } else {
        output::emit(&format!(
            "task {code}: {} → {}\n",
            before.status, after.status
        ));
    }
    Ok(())
}

/// The `key: value` block of a task (connection configs redacted).
fn details(t: &Task, owner: Option<String>) -> String {
    // Serialization redacts the passwords of the connection configs.
    let redacted = serde_json::to_value(t).unwrap_or_default();
    let mut rows = vec![
        ("task", t.task_code.clone()),
        ("name", t.task_name.clone()),
        ("id", t.task_id.to_string()),
        ("description", output::opt(&t.description)),
        (
            "source",
            format!(
                "{} {}",
                t.source_db_type,
                output::compact(&redacted["source_connection_config"])
            ),
        ),
        (
            "target",
            format!(
                "{} {}",
                t.target_db_type,
                output::compact(&redacted["target_connection_config"])
            ),
        ),
        ("connector_name", output::opt(&t.connector_name)),
        ("connector_config", output::compact(&t.connector_config)),
        ("sync_mode", t.sync_mode.clone()),
        ("status", t.status.clone()),
        ("health", t.health_status.clone()),
        ("last_error", output::opt(&t.last_error)),
        ("error_count", t.error_count.to_string()),
        ("records synced", t.total_records_synced.to_string()),
        ("last sync", output::opt_time(&t.last_sync_time)),
        ("offset_epoch", t.offset_epoch.to_string()),
        ("alert_config", output::compact(&t.alert_config)),
        (
            "schedule_config",
            t.schedule_config
                .as_ref()
                .map_or_else(|| "-".into(), output::compact),
        ),
        (
            "created",
            format!("{} by {}", output::time(&t.created_at), t.created_by),
        ),
        (
            "updated",
            format!("{} by {}", output::time(&t.updated_at), t.updated_by),
        ),
    ];
    if let Some(o) = owner {
        rows.insert(11, ("owner", o));
    }
    fields(&rows)
}
