//! MySQL / MariaDB source and target settings.

use serde::Deserialize;

use super::secret::ConnUrl;

/// What a MySQL/MariaDB source does with a zero or partly-zero date
/// (`0000-00-00`, `2024-00-10`, `0000-00-00 00:00:00`), which no other
/// database can store.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ZeroDates {
    /// The value becomes NULL (a NOT NULL target column then rejects the row).
    #[default]
    Null,
    /// The value travels as its MySQL text (`Value::Other`), so that a MySQL or
    /// MariaDB target stores it unchanged (other targets reject it).
    Text,
}

/// `[task.source] type = "mysql"` (or `"mariadb"`): a binlog replication client.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MysqlSourceConfig {
    /// `mysql://user@host:port/db` (or `mariadb://`); `${NAME}` is read from the
    /// environment. The database is the default for table names and, with no
    /// `[[task.mapping]]` and no `databases`, the set of replicated tables.
    pub url: ConnUrl,
    /// Environment variable holding the password (instead of putting it in the URL).
    pub password_env: Option<String>,
    /// The replica `server_id` dbsync registers with. Must differ from the
    /// source server's own and from every other replica's. Default: derived
    /// from the task name ([`MysqlSourceConfig::effective_server_id`]).
    pub server_id: Option<u32>,
    /// With no `[[task.mapping]]`: replicate every table of these databases
    /// (default: the URL's database).
    #[serde(default)]
    pub databases: Vec<String>,
    /// Rows per snapshot chunk (the unit of resume).
    #[serde(default = "default_snapshot_chunk_rows")]
    pub snapshot_chunk_rows: usize,
    /// Seconds between server heartbeats and idle position advances.
    #[serde(default = "default_heartbeat_interval")]
    pub heartbeat_interval_secs: u64,
    /// Resume by GTID (MariaDB `@slave_connect_state`, MySQL
    /// `COM_BINLOG_DUMP_GTID`) instead of by file and position.
    #[serde(default)]
    pub use_gtid: bool,
    /// What to do with zero dates.
    #[serde(default)]
    pub zero_dates: ZeroDates,
}

fn default_snapshot_chunk_rows() -> usize {
    50_000
}
fn default_heartbeat_interval() -> u64 {
    10
}

/// The lowest server id derived from a task name (derived ids stay clear
/// of the small numbers people give their servers by hand).
pub const DERIVED_SERVER_ID_BASE: u32 = 0x4000_0000;

impl MysqlSourceConfig {
    /// The `server_id` to register with: the configured one, or
    /// `0x40000000 + (FNV-1a(task name) mod 2^30)`.
    pub fn effective_server_id(&self, task: &str) -> u32 {
        self.server_id.unwrap_or_else(|| {
            let mut h: u32 = 0x811c_9dc5;
            for b in task.bytes() {
                h ^= u32::from(b);
                h = h.wrapping_mul(0x0100_0193);
            }
            DERIVED_SERVER_ID_BASE + (h & 0x3fff_ffff)
        })
    }

    /// The database named in the URL path, if any.
    pub fn url_database(&self) -> Option<String> {
        let s = &self.url.0;
        let rest = &s[s.find("://")? + 3..];
        let path = &rest[rest.find('/')? + 1..];
        let db = path.split(['?', '#']).next().unwrap_or("");
        (!db.is_empty()).then(|| db.to_string())
    }

    /// Checks the settings; `mapped` are the `[[task.mapping]]` source names.
    pub(crate) fn validate(&self, mapped: &[&str]) -> Result<(), String> {
        self.url.check_scheme(&["mysql", "mariadb"], "source")?;
        if self.server_id == Some(0) {
            return Err(
                "server_id 0 is not allowed: pick a number unique among the source's replicas"
                    .into(),
            );
        }
        if self.snapshot_chunk_rows == 0 {
            return Err("snapshot_chunk_rows must be greater than 0".into());
        }
        if self.heartbeat_interval_secs == 0 || self.heartbeat_interval_secs > 4_000 {
            return Err("heartbeat_interval_secs must be between 1 and 4000".into());
        }
        for m in mapped {
            if !m.contains('.') {
                return Err(format!(
                    "mapping source {m:?} must name its database: write \"database.{m}\""
                ));
            }
        }
        if mapped.is_empty() && self.databases.is_empty() && self.url_database().is_none() {
            return Err(
                "no tables selected: put a database in the url (mysql://host/db), set databases = [...], \
                 or add [[task.mapping]] entries"
                    .into(),
            );
        }
        if !mapped.is_empty() && !self.databases.is_empty() {
            return Err("use either databases = [...] or [[task.mapping]], not both".into());
        }
        Ok(())
    }
}

/// `[task.target] type = "mysql"` (or `"mariadb"`): a MySQL 8 or MariaDB
/// database written by `sinks::mysql`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MysqlTargetConfig {
    /// `mysql://user@host:port/db` (or `mariadb://`); `${NAME}` is read from
    /// the environment. A target table `schema.name` is table `name` in the
    /// database `schema`.
    pub url: ConnUrl,
    /// Environment variable holding the password (instead of putting it in the URL).
    pub password_env: Option<String>,
    /// Create missing target databases and tables from the source schema.
    #[serde(default = "yes")]
    pub create_tables: bool,
}

fn yes() -> bool {
    true
}

impl MysqlTargetConfig {
    /// Checks the settings.
    pub(crate) fn validate(&self) -> Result<(), String> {
        self.url.check_scheme(&["mysql", "mariadb"], "target")?;
        if let Some(var) = &self.password_env {
            if var.is_empty() {
                return Err("password_env must name an environment variable".into());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod target_tests {
    use crate::config::{Config, TargetConfig};

    fn cfg(target: &str) -> String {
        format!(
            "[[task]]\nname = \"t\"\n[task.source]\ntype = \"postgresql\"\n\
             url = \"postgres://u@h/db\"\n[task.target]\n{target}\n"
        )
    }

    #[test]
    fn mysql_and_mariadb_targets_parse_with_defaults() {
        for (ty, scheme) in [
            ("mysql", "mysql"),
            ("mariadb", "mariadb"),
            ("mysql", "mariadb"),
        ] {
            let c = Config::parse(&cfg(&format!(
                "type = \"{ty}\"\nurl = \"{scheme}://u@127.0.0.1:3306/reporting\""
            )))
            .unwrap();
            let TargetConfig::Mysql(t) = &c.tasks[0].target else {
                panic!("not a mysql target")
            };
            assert!(t.create_tables);
            assert!(t.password_env.is_none());
        }
        let c = Config::parse(&cfg(
            "type = \"mysql\"\nurl = \"mysql://u:${PW}@h/db\"\npassword_env = \"X\"\ncreate_tables = false",
        ))
        .unwrap();
        let TargetConfig::Mysql(t) = &c.tasks[0].target else {
            panic!("not a mysql target")
        };
        assert!(!t.create_tables);
        assert!(
            !format!("{t:?}").contains("${PW}"),
            "the password part is masked"
        );
    }

    #[test]
    fn mysql_target_settings_are_validated() {
        let err = |text: String| Config::parse(&text).unwrap_err().to_string();
        let e = err(cfg("type = \"mysql\"\nurl = \"postgres://u:secret@h/db\""));
        assert!(e.contains("mysql://") && !e.contains("secret"), "{e}");
        assert!(err(cfg("type = \"mysql\"\nurl = \"mysql://h/db\"\nbatch = 1")).contains("batch"));
        assert!(err(cfg(
            "type = \"mysql\"\nurl = \"mysql://h/db\"\npassword_env = \"\""
        ))
        .contains("password_env"));
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, SourceConfig};

    fn cfg(source: &str, mapping: &str) -> String {
        format!(
            "[[task]]\nname = \"orders\"\n[task.source]\n{source}\n\
             [task.target]\ntype = \"postgresql\"\nurl = \"postgres://u@h/db\"\n{mapping}"
        )
    }

    #[test]
    fn mysql_and_mariadb_sources_parse_with_defaults() {
        for ty in ["mysql", "mariadb"] {
            let c = Config::parse(&cfg(
                &format!("type = \"{ty}\"\nurl = \"mysql://root@127.0.0.1:3306/shop\""),
                "",
            ))
            .unwrap();
            let SourceConfig::Mysql(m) = &c.tasks[0].source else {
                panic!("not a mysql source")
            };
            assert_eq!(m.url_database().as_deref(), Some("shop"));
            assert_eq!(m.snapshot_chunk_rows, 50_000);
            assert!(!m.use_gtid);
            let id = m.effective_server_id("orders");
            assert!(id >= super::DERIVED_SERVER_ID_BASE);
            assert_eq!(id, m.effective_server_id("orders"), "stable");
            assert_ne!(id, m.effective_server_id("orders2"));
        }
    }

    #[test]
    fn mysql_source_settings_are_validated() {
        let src = |extra: &str| {
            format!("type = \"mysql\"\nurl = \"mysql://root@127.0.0.1:3306/shop\"\n{extra}")
        };
        let err = |text: String| Config::parse(&text).unwrap_err().to_string();
        assert!(err(cfg(&src("server_id = 0"), "")).contains("server_id"));
        assert!(err(cfg(&src("snapshot_chunk_rows = 0"), "")).contains("snapshot_chunk_rows"));
        assert!(
            err(cfg(&src(""), "[[task.mapping]]\nsource = \"orders\"")).contains("database.orders")
        );
        assert!(err(cfg(
            "type = \"mysql\"\nurl = \"postgres://root@127.0.0.1:3306/shop\"",
            ""
        ))
        .contains("mysql://"));
        assert!(err(cfg(
            "type = \"mysql\"\nurl = \"mysql://root@127.0.0.1:3306\"",
            ""
        ))
        .contains("no tables selected"));
        assert!(err(cfg(&src("zero_dates = \"maybe\""), "")).contains("maybe"));
        let ok = Config::parse(&cfg(
            &src("server_id = 77\nzero_dates = \"text\"\nuse_gtid = true"),
            "[[task.mapping]]\nsource = \"shop.orders\"\ntarget = \"public.orders\"",
        ))
        .unwrap();
        let SourceConfig::Mysql(m) = &ok.tasks[0].source else {
            panic!()
        };
        assert_eq!(m.effective_server_id("x"), 77);
        assert_eq!(m.zero_dates, super::ZeroDates::Text);
    }
}
