//! `dbsync alerts list|ack|resolve`.

use clap::Subcommand;
use metastore::meta::model;
use metastore::meta::ops::alert::{self, Alert, AlertFilter};
use metastore::meta::ops::validate::{choice, ALERT_STATUSES};
use uuid::Uuid;

use super::output::{self, fields, Table};
use super::{CmdResult, Ctx, Failure};

#[derive(Subcommand)]
pub enum Action {
    /// List alerts, newest first.
    List {
        /// OPEN, ACKNOWLEDGED, RESOLVED or IGNORED.
        #[arg(long)]
        status: Option<String>,
        /// Only this tenant's alerts.
        #[arg(long)]
        tenant: Option<String>,
        /// Only this task's alerts (in --tenant, default "default").
        #[arg(long)]
        task: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: i64,
    },
    /// Acknowledge an OPEN alert.
    Ack { alert_id: String },
    /// Resolve an OPEN or ACKNOWLEDGED alert.
    Resolve {
        alert_id: String,
        /// What was done about it.
        #[arg(long)]
        note: Option<String>,
    },
}

fn alert_id(s: &str) -> Result<Uuid, Failure> {
    Uuid::parse_str(s.trim()).map_err(|_| {
        Failure::from(format!(
            "{s:?} is not an alert id (a UUID as `dbsync alerts list` shows it)"
        ))
    })
}

pub async fn run(ctx: &Ctx, action: Action) -> CmdResult {
    let mut conn = ctx.conn().await?;
    let c = &mut *conn;
    match action {
        Action::List {
            status,
            tenant,
            task,
            limit,
        } => {
            let status = status
                .map(|s| choice("--status", &s, ALERT_STATUSES))
                .transpose()?;
            let tenant_id = match (&tenant, &task) {
                (None, None) => None,
                (t, _) => Some(
                    model::tenant_by_code(&*c, t.as_deref().unwrap_or("default"))
                        .await?
                        .tenant_id,
                ),
            };
            let task_id = match (&task, tenant_id) {
                (Some(code), Some(tid)) => Some(model::task_by_code(&*c, tid, code).await?.task_id),
                _ => None,
            };
            let alerts = alert::list(
                &*c,
                &AlertFilter {
                    status,
                    tenant_id,
                    task_id,
                    limit,
                },
            )
            .await?;
            if ctx.json {
                output::json(&alerts);
                return Ok(());
            }
            let mut table = Table::new(&[
                "ID",
                "LEVEL",
                "TYPE",
                "STATUS",
                "TENANT",
                "TASK",
                "TITLE",
                "TRIGGERED",
            ]);
            for a in &alerts {
                table.row(vec![
                    a.alert_id.to_string(),
                    a.alert_level.clone(),
                    a.alert_type.clone(),
                    a.status.clone(),
                    output::opt(&a.tenant_code),
                    output::opt(&a.task_code),
                    output::short(&a.alert_title, 50),
                    output::time(&a.triggered_at),
                ]);
            }
            table.print();
        }
        Action::Ack { alert_id: id } => {
            let (_, a) = alert::acknowledge(c, ctx.actor()?, alert_id(&id)?).await?;
            show(ctx, &a, "acknowledged");
        }
        Action::Resolve { alert_id: id, note } => {
            let (_, a) = alert::resolve(c, ctx.actor()?, alert_id(&id)?, note.as_deref()).await?;
            show(ctx, &a, "resolved");
        }
    }
    Ok(())
}

fn show(ctx: &Ctx, a: &Alert, what: &str) {
    if ctx.json {
        output::json(a);
        return;
    }
    let mut text = format!("{what} alert {}\n", a.alert_id);
    text.push_str(&fields(&[
        ("title", a.alert_title.clone()),
        ("type", format!("{} ({})", a.alert_type, a.alert_level)),
        (
            "task",
            format!(
                "{} / {}",
                output::opt(&a.tenant_code),
                output::opt(&a.task_code)
            ),
        ),
        ("status", a.status.clone()),
        ("message", output::opt(&a.alert_message)),
        ("details", output::compact(&a.alert_details)),
        ("triggered", output::time(&a.triggered_at)),
        (
            "acknowledged",
            format!(
                "{} by {}",
                output::opt_time(&a.acknowledged_at),
                output::opt(&a.acknowledged_by)
            ),
        ),
        (
            "resolved",
            format!(
                "{} by {}",
                output::opt_time(&a.resolved_at),
                output::opt(&a.resolved_by)
            ),
        ),
        ("resolution_note", output::opt(&a.resolution_note)),
    ]));
    output::emit(&text);
}
