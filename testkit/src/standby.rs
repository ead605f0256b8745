//! Physical streaming-replication standbys of a private [`PgServer`], for
//! failover tests.
//!
//! [`PgServer::start_standby`] takes a base backup of a running server
//! (`pg_basebackup -R -X stream` through its Unix socket, where `pg_hba`
//! trusts local replication connections whatever the TCP authentication is)
//! into a fresh temporary directory and starts it on its own free port as a
//! hot standby streaming from a replication slot. [`PgStandby::wait_caught_up`]
//! waits until it has replayed everything committed on the primary,
//! [`PgServer::stop_immediate`] crashes the primary and
//! [`PgStandby::promote`] turns the standby into the new primary. Every
//! failure panics with what went wrong and the server's log.

use std::ops::Deref;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::{free_port, run, PgServer};

/// A running hot standby of a [`PgServer`]. It derefs to its own
/// [`PgServer`] (`url`, `connect`, `log`, ...); stopped and deleted on drop.
pub struct PgStandby {
    server: PgServer,
    slot: String,
}

impl Deref for PgStandby {
    type Target = PgServer;

    fn deref(&self) -> &PgServer {
        &self.server
    }
}

/// The last lines of a server log, for failure messages.
fn log_tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

impl PgServer {
    /// Starts a hot standby streaming from this server; panics with a clear
    /// message when it cannot.
    pub fn start_standby(&self) -> PgStandby {
        match self.try_start_standby() {
            Ok(s) => s,
            Err(first) => {
                // A port race with a parallel test is the usual cause: try once more.
                self.try_start_standby().unwrap_or_else(|e| {
                    panic!(
                        "cannot start a streaming standby of the private PostgreSQL server on \
                         port {}: {e}\n(first attempt: {first})",
                        self.port
                    )
                })
            }
        }
    }

    /// Base backup into a new directory, then start it as a hot standby.
    pub fn try_start_standby(&self) -> Result<PgStandby, String> {
        self.check_replication_settings()?;
        let dir = tempfile::Builder::new()
            .prefix("dbsync-pg-standby-")
            .tempdir()
            .map_err(|e| format!("temp dir: {e}"))?;
        let port = free_port();
        let slot = format!("dbsync_standby_{port}");
        if self.as_postgres {
            run(
                Command::new("chown")
                    .args(["-R", "postgres:postgres"])
                    .arg(dir.path()),
                "chown of the standby directory to postgres",
            )?;
        }
        let server = PgServer {
            dir,
            bindir: self.bindir.clone(),
            port,
            as_postgres: self.as_postgres,
            // pg_hba.conf and the roles are copied: the same password works.
            password: self.password.clone(),
        };
        let data = server.data_dir();
        // -R writes standby.signal and primary_conninfo (with the slot);
        // -c fast does not wait for a spread checkpoint; -N skips fsync.
        run(
            self.cmd("pg_basebackup")
                .arg("-h")
                .arg(self.dir.path())
                .arg("-p")
                .arg(self.port.to_string())
                .args(["-U", "postgres", "-w", "-D"])
                .arg(&data)
                .args(["-X", "stream", "-R", "-c", "fast", "-N", "-C", "-S", &slot]),
            "pg_basebackup from the primary",
        )
        .map_err(|e| format!("{e}\nprimary log:\n{}", log_tail(&self.log())))?;
        let standby = PgStandby {
            server,
            slot: slot.clone(),
        };
        let result = standby.configure_and_start();
        if result.is_err() {
            // Do not leave a slot holding WAL on the primary for a dead standby.
            let _ = self.psql(&format!(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots \
                 WHERE slot_name = '{slot}'"
            ));
        }
        result.map(|()| standby)
    }

    /// A standby needs `wal_level` replica or logical and free WAL senders.
    fn check_replication_settings(&self) -> Result<(), String> {
        let out = self.psql(
            "SELECT current_setting('wal_level') || ' ' || current_setting('max_wal_senders') \
             || ' ' || (SELECT count(*) FROM pg_stat_replication)",
        )?;
        let parts: Vec<&str> = out.split_whitespace().collect();
        let [level, senders, used] = parts[..] else {
            return Err(format!("unexpected answer from the primary: {out:?}"));
        };
        if level == "minimal" {
            return Err(
                "the primary has wal_level = minimal: a standby needs replica or logical \
                 (PgOptions.extra_conf must not lower it)"
                    .into(),
            );
        }
        let senders: u32 = senders.parse().unwrap_or(0);
        let used: u32 = used.parse().unwrap_or(0);
        // pg_basebackup -X stream takes two senders at once.
        if senders < used + 2 {
            return Err(format!(
                "the primary has max_wal_senders = {senders} with {used} in use: a base backup \
                 needs 2 more (raise it in PgOptions.extra_conf)"
            ));
        }
        Ok(())
    }

    /// Runs one statement with `psql` over the Unix socket (as `postgres`,
    /// trusted locally) and returns its unaligned, tuples-only output.
    pub(crate) fn psql(&self, sql: &str) -> Result<String, String> {
        let out = run(
            self.cmd("psql")
                .arg("-h")
                .arg(self.dir.path())
                .arg("-p")
                .arg(self.port.to_string())
                .args([
                    "-U", "postgres", "-d", "postgres", "-X", "-A", "-t", "-q", "-w",
                ])
                .args(["-v", "ON_ERROR_STOP=1", "-c", sql]),
            "psql",
        )?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// Crashes the server (`pg_ctl stop -m immediate`: no shutdown checkpoint,
    /// clients see their connections drop) and waits until it is gone.
    /// Panics when it does not stop.
    pub fn stop_immediate(&self) {
        run(
            self.cmd("pg_ctl").arg("-D").arg(self.data_dir()).args([
                "-m",
                "immediate",
                "-w",
                "-t",
                "60",
                "stop",
            ]),
            "pg_ctl stop -m immediate",
        )
        .unwrap_or_else(|e| {
            panic!(
                "cannot crash the private PostgreSQL server on port {}: {e}\nserver log:\n{}",
                self.port,
                log_tail(&self.log())
            )
        });
    }

    /// Connects with tokio-postgres, or says why not (no panic).
    pub(crate) async fn try_connect(&self, db: &str) -> Result<tokio_postgres::Client, String> {
        let (client, conn) = tokio_postgres::connect(&self.conn_str(db), tokio_postgres::NoTls)
            .await
            .map_err(|e| format!("connecting to port {}: {e}", self.port))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(client)
    }
}

impl PgStandby {
    fn configure_and_start(&self) -> Result<(), String> {
        let s = &self.server;
        // postgresql.conf came with the backup: later lines override the
        // primary's port and socket directory.
        let conf_path = s.data_dir().join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf_path)
            .map_err(|e| format!("reading the standby's postgresql.conf: {e}"))?;
        text.push_str("\n# dbsync testkit standby\n");
        for line in [
            format!("port = {}", s.port),
            format!("unix_socket_directories = '{}'", s.dir.path().display()),
            "hot_standby = on".into(),
            "wal_receiver_status_interval = 1s".into(),
            "wal_retrieve_retry_interval = 1s".into(),
        ] {
            text.push_str(&line);
            text.push('\n');
        }
        std::fs::write(&conf_path, text)
            .map_err(|e| format!("writing the standby's postgresql.conf: {e}"))?;
        if !s.data_dir().join("standby.signal").exists() {
            return Err("pg_basebackup -R wrote no standby.signal".into());
        }
        s.pg_ctl_start()?;
        let in_recovery = s.psql("SELECT pg_is_in_recovery()")?;
        if in_recovery != "t" {
            return Err(format!(
                "the new server on port {} is not in recovery (pg_is_in_recovery = {in_recovery:?})",
                s.port
            ));
        }
        Ok(())
    }

    /// The replication slot on the primary that this standby streams from.
    pub fn slot_name(&self) -> &str {
        &self.slot
    }

    /// The server itself.
    pub fn server(&self) -> &PgServer {
        &self.server
    }

    /// Waits until this standby has replayed everything committed on
    /// `primary` so far, `synchronous_commit = off` commits included: it first
    /// commits there, with `synchronous_commit = on`, a transaction that
    /// writes WAL (a transactional logical message, which needs no
    /// `wal_level = logical` and changes no table), so all WAL up to it is
    /// flushed and sent. (A transaction that only takes an xid writes no WAL
    /// and is never flushed synchronously.) Panics after `timeout`.
    pub async fn wait_caught_up(&self, primary: &PgServer, timeout: Duration) {
        let start = Instant::now();
        let mut p = primary.try_connect("postgres").await.unwrap_or_else(|e| {
            panic!("wait_caught_up: the primary is not reachable: {e}");
        });
        let tx = p.transaction().await.expect("wait_caught_up: BEGIN");
        tx.batch_execute(
            "SET LOCAL synchronous_commit = on; \
             SELECT pg_logical_emit_message(true, 'dbsync-testkit', 'wait_caught_up')",
        )
        .await
        .expect("wait_caught_up: flushing the primary's WAL");
        tx.commit().await.expect("wait_caught_up: COMMIT");
        let target: String = p
            .query_one("SELECT pg_current_wal_lsn()::text", &[])
            .await
            .expect("wait_caught_up: the primary's WAL position")
            .get(0);
        let mut last = String::from("(not connected)");
        loop {
            if let Ok(c) = self.try_connect("postgres").await {
                let row = c
                    .query_one(
                        "SELECT coalesce(pg_last_wal_replay_lsn() >= $1::text::pg_lsn, false), \
                                coalesce(pg_last_wal_replay_lsn()::text, '(none)')",
                        &[&target],
                    )
                    .await;
                match row {
                    Ok(r) if r.get::<_, bool>(0) => return,
                    Ok(r) => last = r.get(1),
                    Err(e) => last = format!("query failed: {e}"),
                }
            }
            if start.elapsed() > timeout {
                panic!(
                    "the standby on port {} did not replay the primary's WAL up to {target} \
                     within {timeout:?} (replayed up to {last})\nstandby log:\n{}\nprimary log:\n{}",
                    self.port,
                    log_tail(&self.log()),
                    log_tail(&primary.log())
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Whether the server is still a standby (`pg_is_in_recovery()`).
    pub async fn is_in_recovery(&self) -> bool {
        let c = self
            .try_connect("postgres")
            .await
            .unwrap_or_else(|e| panic!("is_in_recovery: {e}"));
        c.query_one("SELECT pg_is_in_recovery()", &[])
            .await
            .expect("SELECT pg_is_in_recovery()")
            .get(0)
    }

    /// Promotes the standby (`pg_ctl promote`) and waits until it accepts
    /// writes (`pg_is_in_recovery()` is false). Panics after `timeout`.
    pub async fn promote(&self, timeout: Duration) {
        let start = Instant::now();
        let mut cmd = tokio::process::Command::from(self.pg_ctl_promote_cmd(timeout));
        let out = cmd
            .output()
            .await
            .unwrap_or_else(|e| panic!("pg_ctl promote: cannot run: {e}"));
        if !out.status.success() {
            panic!(
                "pg_ctl promote of the standby on port {} failed ({}): {}{}\nstandby log:\n{}",
                self.port,
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                log_tail(&self.log())
            );
        }
        loop {
            let last = match self.try_connect("postgres").await {
                Ok(c) => match c.query_one("SELECT pg_is_in_recovery()", &[]).await {
                    Ok(r) if !r.get::<_, bool>(0) => return,
                    Ok(_) => "still in recovery".to_string(),
                    Err(e) => e.to_string(),
                },
                Err(e) => e,
            };
            if start.elapsed() > timeout {
                panic!(
                    "the standby on port {} was not promoted within {timeout:?} ({last})\n\
                     standby log:\n{}",
                    self.port,
                    log_tail(&self.log())
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn pg_ctl_promote_cmd(&self, timeout: Duration) -> Command {
        let mut c = self.cmd("pg_ctl");
        c.arg("-D").arg(self.data_dir()).args([
            "-w",
            "-t",
            &timeout.as_secs().max(1).to_string(),
            "promote",
        ]);
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PgOptions;

    #[tokio::test]
    async fn standby_replays_then_promotes_after_a_crash() {
        // wal_level = replica, synchronous_commit = off.
        let primary = PgServer::start(PgOptions {
            logical: false,
            ..Default::default()
        });
        let standby = primary.start_standby();
        assert_ne!(primary.port(), standby.port());
        assert!(standby.is_in_recovery().await);
        let c = primary.connect("postgres").await;
        c.batch_execute("CREATE TABLE t(id int primary key); INSERT INTO t VALUES (1)")
            .await
            .unwrap();
        standby
            .wait_caught_up(&primary, Duration::from_secs(30))
            .await;
        let s = standby.connect("postgres").await;
        let n: i64 = s
            .query_one("SELECT count(*) FROM t", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, 1);
        let err = s
            .batch_execute("INSERT INTO t VALUES (2)")
            .await
            .unwrap_err();
        assert_eq!(
            err.code(),
            Some(&tokio_postgres::error::SqlState::READ_ONLY_SQL_TRANSACTION)
        );
        primary.stop_immediate();
        assert!(primary.try_connect("postgres").await.is_err());
        standby.promote(Duration::from_secs(60)).await;
        assert!(!standby.is_in_recovery().await);
        let s = standby.connect("postgres").await;
        s.batch_execute("INSERT INTO t VALUES (2)").await.unwrap();
    }
}
