//! `dbsync`: the command line and daemon wiring.

mod admin;
mod check;
mod cli;
mod daemon;
mod dispatch;
mod fleet;
mod monitor;
mod observe;
mod offsets;
mod registry;
mod sdnotify;
mod secret_cmd;
mod supervise;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use engine::config::{Config, LogFormat};

#[derive(Parser)]
#[command(
    name = "dbsync",
    version,
    about = "Native change-data-capture replication daemon"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the replication daemon (until SIGTERM/SIGINT, or until every task has ended).
    Run {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Validate the configuration and every source/target prerequisite; exit 0 when all pass.
    Check {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Show or reset stored source positions.
    Offsets {
        #[command(subcommand)]
        action: OffsetsAction,
    },
    /// Key files and encrypted passwords for the metadata database (no config file needed).
    Secret {
        #[command(subcommand)]
        action: secret_cmd::SecretAction,
    },
    /// Operator commands on the metadata database (`[metastore]` in --config).
    #[command(flatten)]
    Fleet(Box<cli::FleetCommand>),
}

#[derive(Subcommand)]
enum OffsetsAction {
    /// Print each task's checkpoint.
    Show {
        #[arg(long, short)]
        config: PathBuf,
        #[arg(long)]
        task: Option<String>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Forget a task's checkpoint: its next run copies the tables again.
    Reset {
        #[arg(long, short)]
        config: PathBuf,
        #[arg(long)]
        task: String,
    },
}

fn init_tracing(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("DBSYNC_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

fn load(path: &std::path::Path) -> Result<Config, ExitCode> {
    Config::load(path).map_err(|e| {
        eprintln!("dbsync: {e}");
        ExitCode::from(2)
    })
}

fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("dbsync: cannot start the async runtime: {e}");
            ExitCode::FAILURE
        })
}

/// The config file a command reads, if any.
fn config_path(command: &Command) -> Option<&PathBuf> {
    match command {
        Command::Run { config } | Command::Check { config } => Some(config),
        Command::Offsets {
            action: OffsetsAction::Show { config, .. } | OffsetsAction::Reset { config, .. },
        } => Some(config),
        Command::Secret { .. } => None,
        Command::Fleet(fleet) => fleet.config(),
    }
}

/// Runs a command that reads no config file.
fn run_without_config(command: Command) -> ExitCode {
    match command {
        Command::Secret { action } => secret_cmd::run(action),
        Command::Run { .. }
        | Command::Check { .. }
        | Command::Offsets { .. }
        | Command::Fleet(_) => {
            eprintln!("dbsync: this command needs --config <file>");
            ExitCode::from(2)
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let Some(config_path) = config_path(&cli.command) else {
        return run_without_config(cli.command);
    };
    let config = match load(config_path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    init_tracing(config.daemon.log_format);
    let runtime = match runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    match cli.command {
        Command::Run { config: path } => runtime.block_on(daemon::run(config, path)),
        Command::Check { .. } => runtime.block_on(check::run(&config)),
        Command::Offsets { action } => match action {
            OffsetsAction::Show { task, json, .. } => offsets::show(&config, task.as_deref(), json),
            OffsetsAction::Reset { task, .. } => offsets::reset(&config, &task),
        },
        Command::Secret { action } => secret_cmd::run(action),
        Command::Fleet(fleet) => runtime.block_on(cli::run(&config, *fleet)),
    }
}
