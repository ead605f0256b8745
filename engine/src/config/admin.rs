//! `[daemon.admin]`: the HTTP admin endpoint (`/metrics`, `/health`,
//! `/ready`, `/api/tasks`).

use std::net::SocketAddr;

use serde::Deserialize;

use super::secret::{password_from_env, Secret};
use crate::error::{Error, Result};

/// The admin endpoint's default address: loopback only.
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9187";

/// Settings of the HTTP admin endpoint.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Serve the endpoint (and record metrics) at all.
    #[serde(default = "default_enabled")]
    pub enabled: bool,
    /// Address to listen on; port 0 picks a free port (logged at startup).
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Name of an environment variable holding a bearer token. When set,
    /// every endpoint but `/health` requires `Authorization: Bearer <token>`.
    #[serde(default)]
    pub bearer_token_env: Option<String>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            enabled: default_enabled(),
            listen: default_listen(),
            bearer_token_env: None,
        }
    }
}

fn default_enabled() -> bool {
    true
}

fn default_listen() -> SocketAddr {
    DEFAULT_ADMIN_LISTEN
        .parse()
        .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 9187)))
}

impl AdminConfig {
    /// Checks the settings (not the environment: see [`AdminConfig::bearer_token`]).
    pub fn validate(&self) -> Result<()> {
        if let Some(var) = &self.bearer_token_env {
            if var.trim().is_empty() {
                return Err(Error::Config(
                    "[daemon.admin] bearer_token_env is empty: name an environment variable or remove the line"
                        .into(),
                ));
            }
        }
        Ok(())
    }

    /// The bearer token from the environment, when one is configured. An
    /// unset or empty variable is an error (the endpoint would otherwise be
    /// open although the operator asked for a token).
    pub fn bearer_token(&self) -> Result<Option<Secret>> {
        let Some(var) = &self.bearer_token_env else {
            return Ok(None);
        };
        let token = password_from_env(var).map_err(|_| {
            Error::Config(format!(
                "environment variable {var} ([daemon.admin] bearer_token_env) is not set"
            ))
        })?;
        if token.expose().trim().is_empty() {
            return Err(Error::Config(format!(
                "environment variable {var} ([daemon.admin] bearer_token_env) is empty"
            )));
        }
        Ok(Some(token))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_loopback_and_enabled() {
        let c = AdminConfig::default();
        assert!(c.enabled);
        assert!(c.listen.ip().is_loopback());
        assert_eq!(c.listen.port(), 9187);
        assert!(c.bearer_token().unwrap().is_none());
    }

    #[test]
    fn parses_and_rejects_unknown_fields() {
        let c: AdminConfig =
            toml::from_str("listen = \"0.0.0.0:9000\"\nbearer_token_env = \"T\"").unwrap();
        assert_eq!(c.listen.port(), 9000);
        let err = toml::from_str::<AdminConfig>("listn = \"x\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("listn"), "{err}");
        let err = toml::from_str::<AdminConfig>("listen = \"localhost\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("invalid socket address"), "{err}");
    }

    #[test]
    fn missing_token_variable_is_an_error_naming_it_and_never_the_value() {
        let c = AdminConfig {
            bearer_token_env: Some("DBSYNC_TEST_ADMIN_TOKEN_SURELY_UNSET".into()),
            ..Default::default()
        };
        let err = c.bearer_token().unwrap_err().to_string();
        assert!(
            err.contains("DBSYNC_TEST_ADMIN_TOKEN_SURELY_UNSET"),
            "{err}"
        );
        let empty = AdminConfig {
            bearer_token_env: Some(" ".into()),
            ..Default::default()
        };
        assert!(empty.validate().is_err());
    }
}
