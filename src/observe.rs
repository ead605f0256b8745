//! The Prometheus recorder and the metrics computed at scrape time (task
//! state and health, checkpoint age, RocksDB size, process CPU and memory).

use std::path::Path;
use std::time::Duration;

use chrono::Utc;
use engine::metrics as m;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio_util::sync::CancellationToken;

use crate::registry::Registry;

/// How often the recorder drops stale histogram samples when nobody scrapes.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// Installs the process-wide Prometheus recorder (histograms get real
/// buckets, see [`m::HISTOGRAMS`]) and describes every metric.
pub fn install_recorder() -> Result<PrometheusHandle, String> {
    let mut builder = PrometheusBuilder::new();
    for (name, buckets) in m::HISTOGRAMS {
        builder = builder
            .set_buckets_for_metric(Matcher::Full((*name).to_string()), buckets)
            .map_err(|e| format!("configuring the buckets of {name}: {e}"))?;
    }
    let handle = builder
        .install_recorder()
        .map_err(|e| format!("installing the metrics recorder: {e}"))?;
    m::describe();
    Ok(handle)
}

/// Runs the recorder's upkeep (bounded memory for histograms) until `stop`.
pub async fn upkeep(handle: PrometheusHandle, stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(UPKEEP_EVERY) => handle.run_upkeep(),
        }
    }
}

/// Sets the gauges that describe "now": per task state, health and
/// checkpoint age; the checkpoint store's size; process CPU and memory.
/// Blocking (reads `/proc` and the store's directory): call it off the runtime.
pub fn refresh(registry: &Registry, rocks_dir: &Path) {
    let now = Utc::now();
    for t in registry.tasks() {
        let state = t.state();
        let health = t.health(state, now);
        m::set_task_gauge(m::TASK_STATE, &t.name, state.code() as u8 as f64);
        m::set_task_gauge(m::TASK_HEALTH, &t.name, health.code() as u8 as f64);
        if let Some(us) = t.stats.live.last_checkpoint_us() {
            m::set_task_gauge(m::LAST_CHECKPOINT, &t.name, us as f64 / 1e6);
            if let Some(age) = t.checkpoint_age(now) {
                m::set_task_gauge(m::CHECKPOINT_AGE, &t.name, age.as_secs_f64());
            }
        }
    }
    m::set_gauge(m::ROCKSDB_SIZE, dir_size(rocks_dir) as f64);
    if let Some(cpu) = process_cpu_seconds() {
        m::set_gauge(m::PROCESS_CPU, cpu);
    }
    if let Some(rss) = resident_memory_bytes() {
        m::set_gauge(m::PROCESS_RESIDENT_MEMORY, rss);
    }
}

/// Bytes of the files under `dir` (RocksDB keeps a flat directory; one level
/// of subdirectories is followed to be safe).
pub fn dir_size(dir: &Path) -> u64 {
    fn walk(dir: &Path, depth: u32) -> u64 {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return 0;
        };
        entries
            .flatten()
            .map(|e| match e.metadata() {
                Ok(md) if md.is_file() => md.len(),
                Ok(md) if md.is_dir() && depth > 0 => walk(&e.path(), depth - 1),
                _ => 0,
            })
            .sum()
    }
    walk(dir, 1)
}

/// Linux reports `/proc/<pid>/stat` times in clock ticks of 1/100 s (USER_HZ).
const USER_HZ: f64 = 100.0;

/// User + system CPU seconds of this process (Linux; `None` elsewhere).
pub fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    parse_cpu_seconds(&stat)
}

fn parse_cpu_seconds(stat: &str) -> Option<f64> {
    // The command name may contain spaces and parentheses: fields start after the last ')'.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state(3) ppid(4) ... utime(14) stime(15), 1-based in proc(5).
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / USER_HZ)
}

/// Resident set size of this process in bytes (Linux; `None` elsewhere).
pub fn resident_memory_bytes() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_rss_bytes(&status)
}

fn parse_rss_bytes(status: &str) -> Option<f64> {
    let kib: f64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kib * 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_is_parsed_after_the_command_name() {
        let stat =
            "4242 (db sync) (x)) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 50 0 0 20 0 8 0 123 0 0";
        assert_eq!(parse_cpu_seconds(stat), Some(3.0));
        assert_eq!(parse_cpu_seconds("garbage"), None);
        assert_eq!(parse_cpu_seconds("1 (x) S 1 2"), None);
    }

    #[test]
    fn rss_is_parsed_from_status() {
        let status = "Name:\tdbsync\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\n";
        assert_eq!(parse_rss_bytes(status), Some(1024.0 * 1024.0));
        assert_eq!(parse_rss_bytes("Name: x\n"), None);
    }

    #[test]
    fn this_process_has_cpu_time_and_memory_on_linux() {
        if cfg!(target_os = "linux") {
            assert!(process_cpu_seconds().is_some());
            assert!(resident_memory_bytes().is_some_and(|b| b > 0.0));
        }
    }

    #[test]
    fn dir_size_adds_up_files() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("a"), [0u8; 100]).unwrap();
        std::fs::create_dir(d.path().join("sub")).unwrap();
        std::fs::write(d.path().join("sub/b"), [0u8; 20]).unwrap();
        assert_eq!(dir_size(d.path()), 120);
        assert_eq!(dir_size(&d.path().join("missing")), 0);
    }
}
