//! The HTTP admin endpoint (`[daemon.admin]`, loopback by default):
//!
//! | path | what |
//! |---|---|
//! | `/metrics` | Prometheus text format |
//! | `/health` | liveness: `200 ok` while the daemon runs (never needs the token) |
//! | `/ready` | `200` when every task is snapshotting, streaming, or ended on purpose (completed, stopped); else `503` |
//! | `/api/tasks` | every task's state, health, positions, lag and last error as JSON |
//!
//! With `bearer_token_env` set, every path but `/health` requires
//! `Authorization: Bearer <token>`, compared in constant time. The token is
//! never logged.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::Utc;
use engine::config::Secret;
use engine::CheckpointStore;
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::observe;
use crate::registry::{Registry, TaskState, TaskView};

/// What the handlers share.
pub struct AdminState {
    pub registry: Arc<Registry>,
    pub prometheus: PrometheusHandle,
    pub token: Option<Secret>,
    pub store: Arc<dyn CheckpointStore>,
    /// The RocksDB directory (its size is exported).
    pub rocks_dir: PathBuf,
}

/// A running admin endpoint.
pub struct AdminServer {
    stop: CancellationToken,
    join: tokio::task::JoinHandle<()>,
}

impl AdminServer {
    /// Binds `listen` and serves until [`AdminServer::stop`].
    pub async fn start(listen: SocketAddr, state: AdminState) -> std::io::Result<Self> {
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let auth = if state.token.is_some() {
            "bearer"
        } else {
            "none"
        };
        if !addr.ip().is_loopback() && state.token.is_none() {
            warn!(listen = %addr, "the admin endpoint listens beyond loopback without a bearer token");
        }
        let stop = CancellationToken::new();
        let app = router(Arc::new(state));
        let shutdown = stop.clone();
        let join = tokio::spawn(async move {
            let serve = axum::serve(listener, app)
                .with_graceful_shutdown(async move { shutdown.cancelled().await });
            if let Err(e) = serve.await {
                warn!(error = %e, "the admin endpoint stopped");
            }
        });
        info!(listen = %addr, auth, "admin endpoint listening");
        Ok(Self { stop, join })
    }

    /// Stops serving (waits at most 2 s for open requests).
    pub async fn stop(self) {
        self.stop.cancel();
        let mut join = self.join;
        if tokio::time::timeout(std::time::Duration::from_secs(2), &mut join)
            .await
            .is_err()
        {
            join.abort();
        }
    }
}

/// The routes; everything but `/health` behind the token when one is set.
pub fn router(state: Arc<AdminState>) -> Router {
    let protected = Router::new()
        .route("/metrics", get(metrics))
        .route("/ready", get(ready))
        .route("/api/tasks", get(tasks))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    Router::new()
        .route("/health", get(health))
        .merge(protected)
        .with_state(state)
}

async fn require_token(
    State(state): State<Arc<AdminState>>,
    request: Request,
    next: Next,
) -> Response {
    match &state.token {
        None => next.run(request).await,
        Some(token) if authorized(request.headers(), token) => next.run(request).await,
        Some(_) => (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "missing or wrong bearer token\n",
        )
            .into_response(),
    }
}

fn authorized(headers: &HeaderMap, token: &Secret) -> bool {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    constant_time_eq(given.as_bytes(), token.expose().as_bytes())
}

/// Equality whose time depends only on the lengths, not on where the bytes differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let n = a.len().max(b.len());
    let mut diff = u8::from(a.len() != b.len());
    for i in 0..n {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= x ^ y;
    }
    std::hint::black_box(diff) == 0
}

async fn health() -> &'static str {
    "ok\n"
}

async fn metrics(State(state): State<Arc<AdminState>>) -> Response {
    let s = state.clone();
    let rendered = tokio::task::spawn_blocking(move || {
        observe::refresh(&s.registry, &s.rocks_dir);
        s.prometheus.render()
    })
    .await;
    match rendered {
        Ok(body) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            body,
        )
            .into_response(),
        Err(e) => {
            warn!(error = %e, "rendering metrics failed");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

#[derive(Serialize)]
struct ReadyView {
    ready: bool,
    tasks: Vec<ReadyTask>,
}

#[derive(Serialize)]
struct ReadyTask {
    name: String,
    state: TaskState,
}

async fn ready(State(state): State<Arc<AdminState>>) -> Response {
    let tasks: Vec<ReadyTask> = state
        .registry
        .tasks()
        .iter()
        .map(|t| ReadyTask {
            name: t.name.clone(),
            state: t.state(),
        })
        .collect();
    let ready = tasks.iter().all(|t| t.state.is_ready());
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(ReadyView { ready, tasks })).into_response()
}

async fn tasks(State(state): State<Arc<AdminState>>) -> Response {
    let s = state.clone();
    let views = tokio::task::spawn_blocking(move || {
        let now = Utc::now();
        s.registry
            .tasks()
            .iter()
            .map(|t| {
                // The stored checkpoint: the durable position, whatever the run is doing.
                let cp = s.store.load(&t.name).unwrap_or_else(|e| {
                    warn!(task = %t.name, error = %e, "reading the checkpoint for /api/tasks failed");
                    None
                });
                t.view(cp.as_ref(), now)
            })
            .collect::<Vec<TaskView>>()
    })
    .await;
    match views {
        Ok(v) => Json(v).into_response(),
        Err(e) => {
            warn!(error = %e, "listing tasks failed");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_comparison() {
        assert!(constant_time_eq(b"s3cret", b"s3cret"));
        assert!(!constant_time_eq(b"s3cret", b"s3cres"));
        assert!(!constant_time_eq(b"s3cret", b"s3cret!"));
        assert!(!constant_time_eq(b"", b"x"));
        let token = Secret::new("abc");
        let mut h = HeaderMap::new();
        assert!(!authorized(&h, &token));
        h.insert(header::AUTHORIZATION, "Bearer abc".parse().unwrap());
        assert!(authorized(&h, &token));
        h.insert(header::AUTHORIZATION, "Basic abc".parse().unwrap());
        assert!(!authorized(&h, &token));
        h.insert(header::AUTHORIZATION, "Bearer abd".parse().unwrap());
        assert!(!authorized(&h, &token));
    }
}
