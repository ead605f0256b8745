//! Fleet mode: the tasks of the metadata database, shared by several daemons.
//!
//! The controller reconciles what the database wants with what runs here,
//! woken by `LISTEN dbsync_config` (the schema's triggers notify on every
//! tenant, task, mapping and script change) and by a periodic re-read:
//! - a task runs where its **lease** is held ([`metastore::meta::leases`]);
//!   leases are renewed every third of the TTL, and a task whose lease is lost
//!   or could not be renewed in time stops committing at once
//!   ([`guard::LeaseGuard`]) and is stopped here, so a dead or partitioned
//!   daemon's tasks move to another daemon within the TTL plus one poll;
//! - `status` RUNNING runs a task; PAUSED, STOPPED, a deleted task, or a
//!   SUSPENDED/INACTIVE tenant stop it here (draining and checkpointing);
//! - a task whose configuration changed is restarted;
//! - a definite failure records FAILED with `last_error` (every error adds to
//!   `error_count`), FULL_ONLY copies end COMPLETED, and `schedule_config`
//!   cron expressions re-run COMPLETED FULL_ONLY tasks with a fresh copy;
//! - tenant quotas: `max_connectors` (running tasks, oldest first; the others
//!   FAIL with a quota error), `max_tasks_per_connector` (a task's
//!   `connector_config.workers`), `max_throughput_tps` (a rate limit shared
//!   by the tenant's tasks in this daemon);
//! - checkpoints go to RocksDB under `task_id@offset_epoch`, then to
//!   `sync_offsets` ([`mirror`]); a host without them resumes from the mirror.
//!
//! One task failing never stops the others: each runs in its own supervisor.

mod check;
mod controller;
mod convert;
mod guard;
mod listen;
mod mirror;
mod schedule;

pub use check::check;
pub use controller::start;
