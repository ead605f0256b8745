//! `transform_scripts`: custom per-row scripts, SQL or JavaScript.
//!
//! Scripts run at their `trigger_phase` in ascending `execution_order` (ties
//! in file order). A script returns the record (possibly changed) or drops
//! it; a dropped record counts as outside the mapping, exactly like one the
//! row filter rejects (an update whose new image is dropped deletes the
//! target row). On an error `error_handling` decides: `LOG_AND_CONTINUE`
//! passes the record on as it was before the script (logged, rate-limited),
//! `SKIP_RECORD` leaves the whole change out, `THROW_EXCEPTION` fails the
//! task with the mapping, the script's name and the error. Each script keeps
//! its execution count, errors and average time ([`ScriptStatsSnapshot`]).
//!
//! - **SQL**: `SET col = expr, ... [WHERE cond]` assigns (every right-hand
//!   side sees the record as it was) and keeps the record only when `cond`
//!   (evaluated after the assignments) is true; a bare `WHERE cond` or
//!   `cond` only filters. Expressions are those of row filters;
//!   `:name` reads `script_params`. Values are converted to the column's type
//!   exactly or the script fails.
//! - **JAVASCRIPT**: the content defines `function transform(record, params)`
//!   which returns the record (the same object or a new one) or `null` to
//!   drop it. Columns are properties; decimals, dates and timestamps are
//!   strings (exactness), integers beyond 2^53 are `BigInt`s, a column the
//!   source did not send is `undefined`. Run by an embedded QuickJS with a
//!   64 MiB heap; `timeout_ms` interrupts a run.
//! - GROOVY and PYTHON cannot run here and are rejected when loading.

mod js;
mod sql;

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tracing::warn;

use super::expr::Column;
use crate::config::{ErrorHandling, ScriptConfig, ScriptType, TriggerPhase};
use crate::error::Error;
use crate::value::Value;

/// Counters of one script.
#[derive(Debug, Default)]
pub struct ScriptStats {
    executions: AtomicU64,
    total_ns: AtomicU64,
    errors: AtomicU64,
    dropped: AtomicU64,
    skipped: AtomicU64,
    last_execution_us: AtomicI64,
}

/// A script's statistics at one moment (`transform_scripts` statistics).
#[derive(Debug, Clone, PartialEq)]
pub struct ScriptStatsSnapshot {
    /// The mapping's source, as written.
    pub mapping: String,
    pub script_name: String,
    /// `transform_scripts.script_id`, when the script has one.
    pub script_id: Option<String>,
    /// Runs, successful or not (`execution_count`).
    pub execution_count: u64,
    /// Mean time of a run (`average_execution_time_ms`).
    pub average_execution_time_ms: f64,
    /// When it last ran (`last_execution_time`).
    pub last_execution_time: Option<DateTime<Utc>>,
    /// Failed runs.
    pub errors: u64,
    /// Records the script dropped (returned null / failed its keep-condition).
    pub records_dropped: u64,
    /// Changes left out by `SKIP_RECORD`.
    pub records_skipped: u64,
}

/// A compiled script (shared by every table its mapping takes).
pub struct Script {
    /// `script_name`.
    pub name: String,
    /// `script_id`, for scripts from the metadata database.
    pub id: Option<String>,
    /// The mapping's source, as written.
    pub mapping: String,
    /// `trigger_phase`.
    pub phase: TriggerPhase,
    /// `execution_order`.
    pub order: i32,
    /// `error_handling`.
    pub on_error: ErrorHandling,
    /// `timeout_ms`.
    pub timeout: Duration,
    /// Shared counters.
    pub stats: Arc<ScriptStats>,
    body: Body,
}

enum Body {
    Sql(sql::SqlScript),
    Js(js::JsScript),
}

/// What a script did with a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Keep,
    Drop,
}

/// What a stage of scripts did with a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Keep,
    /// A script dropped the record: it is outside the mapping.
    Dropped,
    /// A script failed with `SKIP_RECORD`: leave the change out.
    Skipped,
}

impl Script {
    /// Compiles a script (`mapping` names it in errors).
    pub fn compile(cfg: &ScriptConfig, mapping: &str) -> Result<Self, String> {
        let what = format!("script {:?}", cfg.script_name);
        if cfg.script_name.trim().is_empty() {
            return Err("a script has an empty script_name".into());
        }
        if cfg.timeout_ms == 0 {
            return Err(format!("{what}: timeout_ms must be greater than 0"));
        }
        let timeout = Duration::from_millis(cfg.timeout_ms);
        let body =
            match cfg.script_type {
                ScriptType::Groovy | ScriptType::Python => {
                    return Err(format!(
                    "{what}: script_type {} cannot run in dbsync (no such engine is embedded): \
                     rewrite it as JAVASCRIPT or SQL",
                    if cfg.script_type == ScriptType::Groovy { "GROOVY" } else { "PYTHON" }
                ))
                }
                ScriptType::Sql => Body::Sql(
                    sql::SqlScript::compile(&cfg.script_content, &cfg.script_params)
                        .map_err(|e| format!("{what}: {e}"))?,
                ),
                ScriptType::Javascript => Body::Js(
                    js::JsScript::compile(&cfg.script_content, &cfg.script_params, timeout)
                        .map_err(|e| format!("{what}: {e}"))?,
                ),
            };
        Ok(Self {
            name: cfg.script_name.clone(),
            id: cfg.script_id.clone(),
            mapping: mapping.to_string(),
            phase: cfg.trigger_phase,
            order: cfg.execution_order,
            on_error: cfg.error_handling,
            timeout,
            stats: Arc::new(ScriptStats::default()),
            body,
        })
    }

    /// Binds the script to the record its phase sees.
    pub fn bind(self: &Arc<Self>, cols: &[Column]) -> Result<BoundScript, String> {
        let body = match &self.body {
            Body::Sql(s) => BoundBody::Sql(
                s.bind(cols)
                    .map_err(|e| format!("script {:?}: {e}", self.name))?,
            ),
            Body::Js(_) => BoundBody::Js(cols.into()),
        };
        Ok(BoundScript {
            script: self.clone(),
            body,
        })
    }

    /// The current statistics.
    pub fn snapshot(&self) -> ScriptStatsSnapshot {
        let s = &self.stats;
        let n = s.executions.load(Ordering::Relaxed);
        let ns = s.total_ns.load(Ordering::Relaxed);
        let last = s.last_execution_us.load(Ordering::Relaxed);
        ScriptStatsSnapshot {
            mapping: self.mapping.clone(),
            script_name: self.name.clone(),
            script_id: self.id.clone(),
            execution_count: n,
            average_execution_time_ms: if n == 0 {
                0.0
            } else {
                ns as f64 / n as f64 / 1e6
            },
            last_execution_time: (last != 0)
                .then(|| DateTime::from_timestamp_micros(last))
                .flatten(),
            errors: s.errors.load(Ordering::Relaxed),
            records_dropped: s.dropped.load(Ordering::Relaxed),
            records_skipped: s.skipped.load(Ordering::Relaxed),
        }
    }
}

/// A script bound to a phase's record.
pub struct BoundScript {
    script: Arc<Script>,
    body: BoundBody,
}

enum BoundBody {
    Sql(sql::BoundSql),
    Js(Arc<[Column]>),
}

impl BoundScript {
    fn run(&self, row: &mut [Value]) -> Result<Outcome, String> {
        let started = Instant::now();
        let result = match (&self.body, &self.script.body) {
            (BoundBody::Sql(s), _) => s.run(row),
            (BoundBody::Js(cols), Body::Js(js)) => js.run(row, cols),
            _ => Err("internal: script body mismatch".into()),
        };
        let elapsed = started.elapsed();
        let s = &self.script.stats;
        s.executions.fetch_add(1, Ordering::Relaxed);
        s.total_ns
            .fetch_add(elapsed.as_nanos() as u64, Ordering::Relaxed);
        s.last_execution_us
            .store(Utc::now().timestamp_micros(), Ordering::Relaxed);
        // SQL cannot be interrupted (it is short); a slow run still fails.
        if result.is_ok() && elapsed > self.script.timeout {
            return Err(format!(
                "exceeded timeout_ms ({} ms)",
                self.script.timeout.as_millis()
            ));
        }
        result
    }

    /// The script's name.
    pub fn name(&self) -> &str {
        &self.script.name
    }
}

fn failed(script: &Script, e: &str) -> Error {
    Error::Pipeline(format!(
        "transform script {:?} of mapping {} failed: {e}",
        script.name, script.mapping
    ))
}

fn log_error(script: &Script, e: &str) {
    let n = script.stats.errors.fetch_add(1, Ordering::Relaxed) + 1;
    // Rate-limited: the 1st, 2nd, 4th, 8th... error.
    if n.is_power_of_two() {
        warn!(mapping = %script.mapping, script = %script.name, errors = n, error = %e, "transform script failed");
    }
}

/// Runs a phase's scripts over `row`, applying `error_handling`.
pub fn run_stage(scripts: &[BoundScript], row: &mut [Value]) -> Result<Flow, Error> {
    for b in scripts {
        let s = &b.script;
        match b.run(row) {
            Ok(Outcome::Keep) => {}
            Ok(Outcome::Drop) => {
                s.stats.dropped.fetch_add(1, Ordering::Relaxed);
                return Ok(Flow::Dropped);
            }
            Err(e) => match s.on_error {
                ErrorHandling::ThrowException => {
                    s.stats.errors.fetch_add(1, Ordering::Relaxed);
                    return Err(failed(s, &e));
                }
                ErrorHandling::LogAndContinue => log_error(s, &e),
                ErrorHandling::SkipRecord => {
                    log_error(s, &e);
                    s.stats.skipped.fetch_add(1, Ordering::Relaxed);
                    return Ok(Flow::Skipped);
                }
            },
        }
    }
    Ok(Flow::Keep)
}

/// Runs `AFTER_WRITE` scripts over a written row: the row cannot change any
/// more; only a `THROW_EXCEPTION` failure has an effect (the task fails and
/// the open target transaction is rolled back).
pub fn observe(scripts: &[BoundScript], row: &[Value]) -> Result<(), Error> {
    if scripts.is_empty() {
        return Ok(());
    }
    let mut scratch = row.to_vec();
    for b in scripts {
        if let Err(e) = b.run(&mut scratch) {
            match b.script.on_error {
                ErrorHandling::ThrowException => {
                    b.script.stats.errors.fetch_add(1, Ordering::Relaxed);
                    return Err(failed(&b.script, &e));
                }
                _ => log_error(&b.script, &e),
            }
        }
        scratch.clone_from_slice(row);
    }
    Ok(())
}
