//! The operator commands on the metadata database: `metastore`, `tenant`,
//! `task`, `mapping`, `script`, `alerts` and `audit`.
//!
//! Each reads `[metastore]` from `--config`, acts as `--operator` (default:
//! `$SUDO_USER`, else `$USER`), and prints an aligned table or `key: value`
//! block, or JSON with `--json`. Every change goes through
//! `metastore::meta::ops`, which writes it and its audit row in one
//! transaction. Passwords never appear in output: rows are shown redacted.
//!
//! Exit status: 0 done; 1 refused or failed (not found, quota, illegal
//! status change, database unreachable); 2 bad input or configuration.

mod alerts;
mod audit;
mod fleet;
mod input;
mod mapping;
mod output;
mod script;
mod task;
mod tenant;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use engine::config::Config;
use metastore::meta::ops::Actor;
use metastore::meta::{check_schema, MetaConn, MetaDb, MetaError};
use metastore::secrets::SecretKey;

/// `User-Agent` of the audit rows this CLI writes.
const USER_AGENT: &str = concat!("dbsync-cli/", env!("CARGO_PKG_VERSION"));

/// Options every operator command takes (before or after its action).
#[derive(Args, Clone, Debug)]
pub struct Global {
    /// The dbsync config file; its [metastore] section names the metadata database.
    #[arg(long, short, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Who is acting, recorded as created_by/updated_by and in the audit log
    /// (default: $SUDO_USER, else $USER).
    #[arg(long, global = true, value_name = "NAME")]
    pub operator: Option<String>,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Subcommand)]
pub enum FleetCommand {
    /// Apply schema migrations, or show the schema version, daemons and task leases.
    Metastore {
        #[command(flatten)]
        global: Global,
        #[command(subcommand)]
        action: fleet::Action,
    },
    /// Tenants: their quotas, contacts and status.
    Tenant {
        #[command(flatten)]
        global: Global,
        #[command(subcommand)]
        action: tenant::Action,
    },
    /// Sync tasks of a tenant: define them, and start, pause, resume, stop or reset them.
    Task {
        #[command(flatten)]
        global: Global,
        #[command(subcommand)]
        action: task::Action,
    },
    /// Table mappings of a task (row filter, column mappings, transforms).
    Mapping {
        #[command(flatten)]
        global: Global,
        #[command(subcommand)]
        action: mapping::Action,
    },
    /// Transform scripts of a mapping (JAVASCRIPT or SQL).
    Script {
        #[command(flatten)]
        global: Global,
        #[command(subcommand)]
        action: script::Action,
    },
    /// Alerts raised by the daemons: list, acknowledge, resolve.
    Alerts {
        #[command(flatten)]
        global: Global,
        #[command(subcommand)]
        action: alerts::Action,
    },
    /// The audit log of every change made through these commands.
    Audit {
        #[command(flatten)]
        global: Global,
        #[command(subcommand)]
        action: audit::Action,
    },
}

impl FleetCommand {
    fn global(&self) -> &Global {
        match self {
            FleetCommand::Metastore { global, .. }
            | FleetCommand::Tenant { global, .. }
            | FleetCommand::Task { global, .. }
            | FleetCommand::Mapping { global, .. }
            | FleetCommand::Script { global, .. }
            | FleetCommand::Alerts { global, .. }
            | FleetCommand::Audit { global, .. } => global,
        }
    }

    /// The config file the command reads.
    pub fn config(&self) -> Option<&PathBuf> {
        self.global().config.as_ref()
    }
}

/// Why a command failed, and its exit status.
#[derive(Debug)]
pub struct Failure {
    message: String,
    code: u8,
    not_found: bool,
}

impl From<MetaError> for Failure {
    fn from(e: MetaError) -> Self {
        let code = match e {
            MetaError::Invalid(_) => 2,
            _ => 1,
        };
        Self {
            not_found: matches!(e, MetaError::NotFound(_)),
            message: e.to_string(),
            code,
        }
    }
}

impl From<String> for Failure {
    fn from(message: String) -> Self {
        Self {
            message,
            code: 2,
            not_found: false,
        }
    }
}

pub type CmdResult = Result<(), Failure>;

/// What a command works with.
pub struct Ctx {
    db: MetaDb,
    /// Who acts; only changes need it (reads work without an operator name).
    actor: Result<Actor, String>,
    json: bool,
    key_file: Option<PathBuf>,
}

impl Ctx {
    /// A connection to a database at this binary's schema version.
    async fn conn(&self) -> Result<MetaConn<'_>, Failure> {
        let conn = self.db.get().await?;
        check_schema(&conn).await?;
        Ok(conn)
    }

    /// A connection without the schema check (for `metastore migrate|status`).
    async fn raw_conn(&self) -> Result<MetaConn<'_>, Failure> {
        Ok(self.db.get().await?)
    }

    /// Who acts, for a change.
    fn actor(&self) -> Result<&Actor, Failure> {
        self.actor.as_ref().map_err(|e| Failure::from(e.clone()))
    }

    /// The key that seals stored passwords, when configured.
    fn key(&self) -> Result<Option<SecretKey>, Failure> {
        self.key_file
            .as_deref()
            .map(SecretKey::load)
            .transpose()
            .map_err(|e| Failure::from(format!("[metastore] secret_key_file: {e}")))
    }
}

/// Runs an operator command.
pub async fn run(config: &Config, cmd: FleetCommand) -> ExitCode {
    match dispatch(config, cmd).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("dbsync: {}", f.message);
            if f.not_found {
                eprintln!("hint: {}", not_found_hint(&f.message));
            }
            ExitCode::from(f.code)
        }
    }
}

/// Where to look for what exists, by the kind of row that was not found.
fn not_found_hint(message: &str) -> &'static str {
    match message.split_whitespace().next().unwrap_or("") {
        "tenant" => "see the tenants with `dbsync tenant list`",
        "task" => "see a tenant's tasks with `dbsync task list --tenant <code>`",
        "mapping" => "see a task's mappings with `dbsync mapping list --task <code>`",
        "script" => {
            "see a mapping's scripts with `dbsync script list --task <code> --mapping <table>`"
        }
        "alert" => "see the alerts with `dbsync alerts list`",
        _ => "check the names given",
    }
}

async fn dispatch(config: &Config, cmd: FleetCommand) -> CmdResult {
    let Some(meta) = &config.metastore else {
        return Err(Failure::from(
            "the config file has no [metastore] section: add one with url = \"postgres://…/dbsync_metadata\""
                .to_string(),
        ));
    };
    let global = cmd.global();
    let actor = input::operator(global.operator.as_deref())
        .and_then(|o| Actor::new(&o, USER_AGENT).map_err(|e| e.to_string()));
    let ctx = Ctx {
        db: MetaDb::new(meta)?,
        actor,
        json: global.json,
        key_file: meta.secret_key_file.clone(),
    };
    match cmd {
        FleetCommand::Metastore { action, .. } => Box::pin(fleet::run(&ctx, action)).await,
        FleetCommand::Tenant { action, .. } => Box::pin(tenant::run(&ctx, action)).await,
        FleetCommand::Task { action, .. } => Box::pin(task::run(&ctx, action)).await,
        FleetCommand::Mapping { action, .. } => Box::pin(mapping::run(&ctx, action)).await,
        FleetCommand::Script { action, .. } => Box::pin(script::run(&ctx, action)).await,
        FleetCommand::Alerts { action, .. } => Box::pin(alerts::run(&ctx, action)).await,
        FleetCommand::Audit { action, .. } => Box::pin(audit::run(&ctx, action)).await,
    }
}
