//! `dbsync tenant create|list|show|update|delete`.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use metastore::meta::model::{self, Tenant};
use metastore::meta::ops::tenant::{self, TenantPatch, TenantSpec};
use serde_json::json;

use super::input;
use super::output::{self, fields, Table};
use super::{CmdResult, Ctx, Failure};

#[derive(Subcommand)]
pub enum Action {
    /// Create a tenant (give CODE and --name, or --file tenant.json).
    Create {
        /// The tenant's code (letters, digits, '_' and '-'; at most 50).
        code: Option<String>,
        #[command(flatten)]
        fields: Fields,
        /// The whole tenant as JSON (fields named as in the tenants table).
        #[arg(long, value_name = "FILE", conflicts_with_all = ["code", "name"])]
        file: Option<PathBuf>,
    },
    /// List the tenants.
    List,
    /// Show one tenant.
    Show { code: String },
    /// Change a tenant's fields (only those given).
    Update {
        code: String,
        #[command(flatten)]
        fields: Fields,
        /// The changes as JSON (fields named as in the tenants table).
        #[arg(long, value_name = "FILE")]
        file: Option<PathBuf>,
    },
    /// Soft-delete a tenant (refused while it has live tasks, unless --cascade).
    Delete {
        code: String,
        /// Delete its tasks (with their mappings and scripts) too.
        #[arg(long)]
        cascade: bool,
    },
}

#[derive(Args)]
pub struct Fields {
    #[arg(long)]
    name: Option<String>,
    #[arg(long)]
    description: Option<String>,
    #[arg(long)]
    contact_name: Option<String>,
    #[arg(long)]
    contact_email: Option<String>,
    #[arg(long)]
    contact_phone: Option<String>,
    /// How many sync tasks the tenant may have.
    #[arg(long)]
    max_connectors: Option<i32>,
    /// Parallel workers a task may use.
    #[arg(long)]
    max_tasks_per_connector: Option<i32>,
    /// Rows per second across the tenant's tasks.
    #[arg(long)]
    max_throughput_tps: Option<i32>,
    /// ACTIVE, SUSPENDED (its tasks are paused) or INACTIVE.
    #[arg(long)]
    status: Option<String>,
    /// The tenant's settings as JSON or @file.json (e.g. alert_email, timezone).
    #[arg(long, value_name = "JSON")]
    tenant_config: Option<String>,
}

impl Fields {
    fn patch(self) -> Result<TenantPatch, Failure> {
        Ok(TenantPatch {
            tenant_name: self.name,
            description: self.description,
            contact_name: self.contact_name,
            contact_email: self.contact_email,
            contact_phone: self.contact_phone,
            max_connectors: self.max_connectors,
            max_tasks_per_connector: self.max_tasks_per_connector,
            max_throughput_tps: self.max_throughput_tps,
            status: self.status,
            config: self
                .tenant_config
                .map(|c| input::json_arg("--tenant-config", &c).map(|j| j.0))
                .transpose()?,
        })
    }
}

pub async fn run(ctx: &Ctx, action: Action) -> CmdResult {
    let mut conn = ctx.conn().await?;
    match action {
        Action::Create { code, fields, file } => {
            let spec = match file {
                Some(f) => input::file_arg::<TenantSpec>(&f)?,
                None => {
                    let p = fields.patch()?;
                    TenantSpec {
                        tenant_code: code.ok_or_else(|| {
                            "give the tenant's code (or --file tenant.json)".to_string()
                        })?,
                        tenant_name: p
                            .tenant_name
                            .ok_or_else(|| "give the tenant's --name".to_string())?,
                        description: p.description,
                        contact_name: p.contact_name,
                        contact_email: p.contact_email,
                        contact_phone: p.contact_phone,
                        max_connectors: p.max_connectors,
                        max_tasks_per_connector: p.max_tasks_per_connector,
                        max_throughput_tps: p.max_throughput_tps,
                        status: p.status,
                        config: p.config,
                    }
                }
            };
            let t = tenant::create(&mut conn, ctx.actor()?, &spec).await?;
            show(ctx, &t, 0, &format!("created tenant {}", t.tenant_code));
        }
        Action::List => {
            let tenants = model::tenants(&*conn).await?;
            let tasks = model::tasks(&*conn, None).await?;
            let count = |t: &Tenant| tasks.iter().filter(|x| x.tenant_id == t.tenant_id).count();
            if ctx.json {
                let rows: Vec<_> = tenants
                    .iter()
                    .map(|t| json!({"tenant": t, "live_tasks": count(t)}))
                    .collect();
                output::json(&rows);
                return Ok(());
            }
            let mut table = Table::new(&[
                "CODE",
                "NAME",
                "STATUS",
                "TASKS",
                "MAX TASKS",
                "MAX TPS",
                "CONTACT",
                "UPDATED BY",
            ]);
            for t in &tenants {
                table.row(vec![
                    t.tenant_code.clone(),
                    output::short(&t.tenant_name, 40),
                    t.status.clone(),
                    count(t).to_string(),
                    t.max_connectors.to_string(),
                    t.max_throughput_tps.to_string(),
                    output::opt(&t.contact_email),
                    t.updated_by.clone(),
                ]);
            }
            table.print();
        }
        Action::Show { code } => {
            let t = model::tenant_by_code(&*conn, &code).await?;
            let tasks = model::tasks(&*conn, Some(t.tenant_id)).await?;
            show(ctx, &t, tasks.len(), "");
        }
        Action::Update { code, fields, file } => {
            let patch = match file {
                Some(f) => input::file_arg::<TenantPatch>(&f)?,
                None => fields.patch()?,
            };
            let (before, after) = tenant::update(&mut conn, ctx.actor()?, &code, &patch).await?;
            let changed = changed_fields(&before, &after);
            show(ctx, &after, 0, &format!("updated tenant {code}: {changed}"));
        }
        Action::Delete { code, cascade } => {
            let (t, tasks) = tenant::delete(&mut conn, ctx.actor()?, &code, cascade).await?;
            let codes: Vec<&str> = tasks.iter().map(|t| t.task_code.as_str()).collect();
            if ctx.json {
                output::json(&json!({"deleted": t, "deleted_tasks": codes}));
            } else if codes.is_empty() {
                output::emit(&format!("deleted tenant {code}\n"));
            } else {
                output::emit(&format!(
                    "deleted tenant {code} and its task(s) {}\n",
                    codes.join(", ")
                ));
            }
        }
    }
    Ok(())
}

/// The names of the fields that differ, for "updated …: a, b".
pub fn changed_fields(before: &impl serde::Serialize, after: &impl serde::Serialize) -> String {
    let b = serde_json::to_value(before).unwrap_or_default();
    let a = serde_json::to_value(after).unwrap_or_default();
    let changes = metastore::meta::ops::audit::changes(&b, &a);
    let names: Vec<&String> = changes
        .as_object()
        .map(|m| m.keys().collect())
        .unwrap_or_default();
    if names.is_empty() {
        "no field changed".into()
    } else {
        names
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn show(ctx: &Ctx, t: &Tenant, live_tasks: usize, headline: &str) {
    if ctx.json {
        output::json(t);
        return;
    }
    let mut text = String::new();
    if !headline.is_empty() {
        text.push_str(headline);
        text.push('\n');
    }
    let mut rows = vec![
        ("code", t.tenant_code.clone()),
        ("name", t.tenant_name.clone()),
        ("id", t.tenant_id.to_string()),
        ("status", t.status.clone()),
        ("description", output::opt(&t.description)),
        ("contact", contact(t)),
        ("max_connectors", t.max_connectors.to_string()),
        (
            "max_tasks_per_connector",
            t.max_tasks_per_connector.to_string(),
        ),
        ("max_throughput_tps", t.max_throughput_tps.to_string()),
        ("config", output::compact(&t.config)),
        (
            "created",
            format!("{} by {}", output::time(&t.created_at), t.created_by),
        ),
        (
            "updated",
            format!("{} by {}", output::time(&t.updated_at), t.updated_by),
        ),
    ];
    if headline.is_empty() {
        rows.insert(4, ("live tasks", live_tasks.to_string()));
    }
    text.push_str(&fields(&rows));
    output::emit(&text);
}

fn contact(t: &Tenant) -> String {
    let parts: Vec<&str> = [&t.contact_name, &t.contact_email, &t.contact_phone]
        .into_iter()
        .filter_map(|x| x.as_deref())
        .collect();
    if parts.is_empty() {
        "-".into()
    } else {
        parts.join(", ")
    }
}
