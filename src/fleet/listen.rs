//! `LISTEN dbsync_config` on a dedicated connection; every notification (and
//! every reconnection, which may have missed some) wakes the controller.

use std::time::Duration;

use futures::StreamExt;
use metastore::meta::MetaDb;
use tokio::sync::mpsc;
use tokio_postgres::AsyncMessage;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

pub const CHANNEL: &str = "dbsync_config";

pub async fn run(db: MetaDb, wake: mpsc::Sender<()>, stop: CancellationToken) {
    let mut backoff = Duration::from_millis(500);
    loop {
        match db.connect_dedicated().await {
            Ok((client, mut conn)) => {
                let wake2 = wake.clone();
                let driver = async move {
                    let mut messages = futures::stream::poll_fn(move |cx| conn.poll_message(cx));
                    while let Some(m) = messages.next().await {
                        match m {
                            Ok(AsyncMessage::Notification(n)) => {
                                debug!(table = n.payload(), "configuration change notified");
                                let _ = wake2.try_send(());
                            }
                            Ok(_) => {}
                            Err(e) => return e.to_string(),
                        }
                    }
                    "connection closed".to_string()
                };
                let listen = async {
                    match client.batch_execute(&format!("LISTEN {CHANNEL}")).await {
                        Ok(()) => {
                            backoff = Duration::from_millis(500);
                            // Changes may have been missed while not listening.
                            let _ = wake.try_send(());
                            std::future::pending::<String>().await
                        }
                        Err(e) => e.to_string(),
                    }
                };
                tokio::select! {
                    _ = stop.cancelled() => return,
                    e = driver => warn!(error = %e, "lost the LISTEN connection to the metadata database"),
                    e = listen => warn!(error = %e, "cannot LISTEN on the metadata database"),
                }
            }
            Err(e) => {
                warn!(error = %e, "cannot open the LISTEN connection to the metadata database")
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}
