//! `dbsync check`: validates the configuration and every prerequisite of
//! every task's source and target. Exit code 0 when everything passes, 1
//! otherwise; used as the systemd unit's `ExecStartPre`.

use std::process::ExitCode;

use engine::config::Config;
use engine::CheckOutcome;

use crate::dispatch::{AnySink, AnySource};

fn line(ok: bool, name: &str, text: &str) {
    println!("{} {name}: {text}", if ok { "ok  " } else { "FAIL" });
}

pub async fn run(config: &Config) -> ExitCode {
    let mut failures = 0;
    line(true, "config", "valid");
    let dir = &config.daemon.data_dir;
    match std::fs::create_dir_all(dir).and_then(|_| tempfile_probe(dir)) {
        Ok(()) => line(true, "ensure_data_dir_writable", &dir.display().to_string()),
        Err(e) => {
            failures += 1;
            line(
                false,
                "ensure_data_dir_writable",
                &format!(
                    "{}: {e}; create it and give the service user write access",
                    dir.display()
                ),
            );
        }
    }
    if let Some(meta) = &config.metastore {
        println!("metastore:");
        for c in crate::fleet::check(meta).await {
            match c.result {
                Ok(detail) => line(true, c.name, &detail),
                Err(problem) => {
                    failures += 1;
                    line(false, c.name, &problem);
                }
            }
        }
    }
    for task in &config.tasks {
        println!("task {}:", task.name);
        let mut outcomes: Vec<CheckOutcome> = match AnySource::for_task(task) {
            Ok(source) => source.check().await,
            Err(e) => vec![CheckOutcome {
                name: "source",
                result: Err(e.to_string()),
            }],
        };
        outcomes.extend(AnySink::check(task).await);
        for c in outcomes {
            match c.result {
                Ok(detail) => line(true, c.name, &detail),
                Err(problem) => {
                    failures += 1;
                    line(false, c.name, &problem);
                }
            }
        }
    }
    if failures == 0 {
        println!("all checks passed");
        ExitCode::SUCCESS
    } else {
        println!("{failures} check(s) failed");
        ExitCode::FAILURE
    }
}

fn tempfile_probe(dir: &std::path::Path) -> std::io::Result<()> {
    let p = dir.join(".dbsync-write-probe");
    std::fs::write(&p, b"ok")?;
    std::fs::remove_file(p)
}
