//! `dbsync metastore migrate|status`.

use clap::Subcommand;
use metastore::meta::migrate::MIGRATIONS;
use metastore::meta::ops::fleet;
use serde_json::json;

use super::output::{self, fields, Table};
use super::{CmdResult, Ctx};

#[derive(Subcommand)]
pub enum Action {
    /// Create or upgrade the metadata schema to this binary's version (safe to repeat).
    Migrate,
    /// Schema version (current and expected), pending migrations, daemons and task leases.
    Status,
}

pub async fn run(ctx: &Ctx, action: Action) -> CmdResult {
    let mut conn = ctx.raw_conn().await?;
    match action {
        Action::Migrate => {
            let applied = metastore::meta::migrate(&mut conn).await?;
            let version = metastore::meta::migrate::current_version(&conn).await?;
            if ctx.json {
                output::json(&json!({"applied": applied, "schema_version": version}));
            } else if applied.is_empty() {
                output::emit(&format!(
                    "the metadata schema is already at version {version}: nothing to do\n"
                ));
            } else {
                let names: Vec<String> = applied
                    .iter()
                    .map(|v| {
                        let name = MIGRATIONS
                            .iter()
                            .find(|m| m.version == *v)
                            .map_or("", |m| m.name);
                        format!("{v} ({name})")
                    })
                    .collect();
                output::emit(&format!(
                    "applied migration(s) {}; the schema is now at version {version}\n",
                    names.join(", ")
                ));
            }
        }
        Action::Status => {
            let st = fleet::status(&conn).await?;
            if ctx.json {
                output::json(&st);
                return Ok(());
            }
            let pending: Vec<String> = st
                .pending_migrations
                .iter()
                .map(|m| format!("{} ({})", m.version, m.name))
                .collect();
            let state = if st.schema_version == st.expected_version {
                "up to date"
            } else if st.schema_version < st.expected_version {
                "behind: run `dbsync metastore migrate`"
            } else {
                "newer than this dbsync: upgrade dbsync"
            };
            let mut text = fields(&[
                ("schema version", st.schema_version.to_string()),
                ("expected version", st.expected_version.to_string()),
                ("state", state.into()),
                (
                    "pending migrations",
                    if pending.is_empty() {
                        "none".into()
                    } else {
                        pending.join(", ")
                    },
                ),
            ]);
            let mut daemons = Table::new(&["NODE", "HOST", "VERSION", "STARTED", "LAST SEEN"]);
            for d in &st.daemons {
                daemons.row(vec![
                    d.node_id.clone(),
                    output::opt(&d.hostname),
                    output::opt(&d.version),
                    output::time(&d.started_at),
                    format!("{}s ago", d.seen_secs_ago),
                ]);
            }
            let mut leases = Table::new(&["TENANT", "TASK", "OWNER", "EPOCH", "EXPIRES", "STATE"]);
            for l in &st.leases {
                leases.row(vec![
                    l.tenant_code.clone(),
                    l.task_code.clone(),
                    l.owner.clone(),
                    l.epoch.to_string(),
                    output::time(&l.expires_at),
                    if l.expired { "expired" } else { "held" }.into(),
                ]);
            }
            text.push_str(&format!(
                "\nDaemons\n{}\nTask leases\n{}",
                daemons.render(),
                leases.render()
            ));
            output::emit(&text);
        }
    }
    Ok(())
}
