//! `dbsync offsets show|reset`.

use std::process::ExitCode;

use engine::config::Config;
use engine::CheckpointStore;
use metastore::RocksCheckpointStore;

fn checkpoints_dir(config: &Config) -> std::path::PathBuf {
    config.daemon.data_dir.join("checkpoints")
}

pub fn show(config: &Config, task: Option<&str>, json: bool) -> ExitCode {
    let dir = checkpoints_dir(config);
    let store = match RocksCheckpointStore::open_read_only(&dir) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("dbsync: {e}");
            return ExitCode::FAILURE;
        }
    };
    let all = match store.list() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("dbsync: {e}");
            return ExitCode::FAILURE;
        }
    };
    let selected: Vec<_> = all
        .into_iter()
        .filter(|(name, _)| task.is_none_or(|t| t == name))
        .collect();
    if json {
        let map: serde_json::Map<String, serde_json::Value> = selected
            .iter()
            .map(|(n, c)| (n.clone(), serde_json::to_value(c).unwrap_or_default()))
            .collect();
        println!("{}", serde_json::Value::Object(map));
        return ExitCode::SUCCESS;
    }
    if selected.is_empty() {
        println!(
            "no checkpoints stored{}",
            task.map(|t| format!(" for task {t}")).unwrap_or_default()
        );
    }
    for (name, cp) in selected {
        let stream = cp
            .stream
            .as_ref()
            .map_or("-".to_string(), |s| s.to_string());
        let done = cp.snapshot.tables.values().filter(|t| t.done).count();
        let rows: u64 = cp.snapshot.tables.values().map(|t| t.rows_copied).sum();
        println!(
            "{name}\n  stream position: {stream}\n  snapshot: {} ({done}/{} tables done, {rows} rows copied)\n  updated: {}",
            if cp.snapshot.completed { "completed" } else { "not completed" },
            cp.snapshot.tables.len(),
            cp.updated_at.to_rfc3339(),
        );
    }
    ExitCode::SUCCESS
}

pub fn reset(config: &Config, task: &str) -> ExitCode {
    if config.task(task).is_none() {
        eprintln!("dbsync: no task named {task:?} in the configuration");
        return ExitCode::from(2);
    }
    let store = match RocksCheckpointStore::open(&checkpoints_dir(config)) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("dbsync: {e} (stop the daemon before resetting offsets)");
            return ExitCode::FAILURE;
        }
    };
    match store.reset(task) {
        Ok(()) => {
            println!("checkpoint of task {task} reset: its next run copies the tables again");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("dbsync: {e}");
            ExitCode::FAILURE
        }
    }
}
