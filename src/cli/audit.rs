//! `dbsync audit list`.

use clap::Subcommand;
use metastore::meta::model;
use metastore::meta::ops::audit::{self, AuditFilter};

use super::input;
use super::output::{self, Table};
use super::{CmdResult, Ctx};

#[derive(Subcommand)]
pub enum Action {
    /// List audit rows, newest first.
    List {
        /// Only this tenant's rows.
        #[arg(long)]
        tenant: Option<String>,
        /// Only rows since: an RFC 3339 time, a date, or an age such as 30m, 12h, 7d.
        #[arg(long)]
        since: Option<String>,
        /// Only this operation, e.g. START_TASK.
        #[arg(long)]
        operation: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
}

pub async fn run(ctx: &Ctx, action: Action) -> CmdResult {
    let conn = ctx.conn().await?;
    let Action::List {
        tenant,
        since,
        operation,
        limit,
    } = action;
    let tenant_id = match &tenant {
        Some(code) => Some(model::tenant_by_code(&*conn, code).await?.tenant_id),
        None => None,
    };
    let since = since
        .map(|s| input::since(&s, chrono::Utc::now()))
        .transpose()?;
    let rows = audit::list(
        &*conn,
        &AuditFilter {
            tenant_id,
            since,
            resource_id: None,
            operation_type: operation.map(|o| o.trim().to_ascii_uppercase()),
            limit,
        },
    )
    .await?;
    if ctx.json {
        output::json(&rows);
        return Ok(());
    }
    let mut table = Table::new(&[
        "TIME",
        "OPERATOR",
        "OPERATION",
        "RESOURCE",
        "STATUS",
        "TENANT",
        "CHANGES / ERROR",
    ]);
    for r in &rows {
        let what = match (&r.error_message, r.operation_details["changes"].as_object()) {
            (Some(e), _) => output::short(e, 70),
            (None, Some(ch)) if !ch.is_empty() => {
                output::short(&ch.keys().cloned().collect::<Vec<_>>().join(", "), 70)
            }
            _ => label(&r.operation_details),
        };
        table.row(vec![
            output::time(&r.operated_at),
            r.operator.clone(),
            r.operation_type.clone(),
            format!(
                "{} {}",
                r.resource_type,
                r.resource_id
                    .map_or_else(|| "-".into(), |id| id.to_string())
            ),
            r.status.clone(),
            output::opt(&r.tenant_code),
            what,
        ]);
    }
    table.print();
    Ok(())
}

/// "created X" / "deleted X" for a row without field changes, X being the
/// resource's code or name.
fn label(details: &serde_json::Value) -> String {
    let name = |side: &str| {
        [
            "tenant_code",
            "task_code",
            "source_table_fqn",
            "script_name",
            "alert_title",
        ]
        .iter()
        .find_map(|k| details[side][k].as_str())
        .map(str::to_string)
    };
    match (name("before"), name("after")) {
        (None, Some(n)) => format!("created {}", output::short(&n, 60)),
        (Some(n), None) => format!("deleted {}", output::short(&n, 60)),
        _ => "-".into(),
    }
}
