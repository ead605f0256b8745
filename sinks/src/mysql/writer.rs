//! The data connection's writer: a task that owns the connection and runs
//! the sink's statements in order, so that the pipeline maps, coalesces and
//! encodes the next rows while the server executes the previous statement.
//!
//! Measured: without it, dbsync's own CPU time and the server's execution
//! time added up (statement round trips strictly alternate); with it they
//! overlap (`docs/BENCHMARKS.md`, MariaDB).
//!
//! Statements are sent as jobs in order. Bulk statements are submitted
//! without waiting ([`Writer::submit`]); the queue holds at most
//! [`QUEUE_JOBS`] jobs, each at most one statement's parameters, so memory
//! stays bounded. A failed job makes the writer skip every later job until
//! the transaction is reset (`ROLLBACK`); the failure is reported by the next
//! call that waits for the server ([`Writer::sync`], [`Writer::lend`]) or
//! checks for one ([`Writer::failed`]): a statement's error may therefore
//! surface at a later `apply` or at `commit`, never after a successful
//! `commit` (which waits for every statement before it).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use mysql_async::Conn;
use tokio::sync::{mpsc, oneshot};

use super::error::{MyFailure, MysqlSinkError};

/// Jobs waiting for the connection at most (each holds one statement).
pub(crate) const QUEUE_JOBS: usize = 3;

/// What a job returns.
pub(crate) type JobFuture<'c> =
    Pin<Box<dyn Future<Output = Result<(), MysqlSinkError>> + Send + 'c>>;
/// A unit of work on the connection.
pub(crate) type Job = Box<dyn for<'c> FnOnce(&'c mut Conn) -> JobFuture<'c> + Send>;

enum Msg {
    /// Runs unless an earlier job failed since the last reset.
    Run(Job),
    /// Replies once every earlier job ran: the first failure since the last
    /// reset, or `Ok`.
    Sync(oneshot::Sender<Result<(), MysqlSinkError>>),
    /// Runs whatever happened before, then clears the failure; replies with
    /// its own outcome.
    Reset(Job, oneshot::Sender<Result<(), MysqlSinkError>>),
    /// Once every earlier job ran (and none failed), hands the connection out
    /// until it comes back on the second channel.
    Lend(
        oneshot::Sender<Result<Conn, MysqlSinkError>>,
        oneshot::Receiver<Conn>,
    ),
}

/// The sending side; the task ends when it is dropped.
pub(crate) struct Writer {
    tx: mpsc::Sender<Msg>,
    failed: Arc<AtomicBool>,
}

fn gone() -> MysqlSinkError {
    MysqlSinkError::Transaction {
        action: "writing",
        failure: MyFailure {
            code: None,
            class: engine::ErrorClass::Transient,
            text: "the target connection was lost while a statement was running \
                   (transient: dbsync reconnects and retries)"
                .into(),
        },
    }
}

impl Writer {
    /// Starts the writer task for `conn`.
    pub(crate) fn start(conn: Conn) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE_JOBS);
        let failed = Arc::new(AtomicBool::new(false));
        tokio::spawn(run(conn, rx, failed.clone()));
        Self { tx, failed }
    }

    /// Queues a job without waiting for it (only for room in the queue).
    pub(crate) async fn submit(&mut self, job: Job) -> Result<(), MysqlSinkError> {
        self.tx.send(Msg::Run(job)).await.map_err(|_| gone())
    }

    /// Waits until every queued job ran; the first failure since the last reset.
    pub(crate) async fn sync(&mut self) -> Result<(), MysqlSinkError> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(Msg::Sync(tx)).await.map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?
    }

    /// Runs `job` after everything queued, whatever failed before, and clears
    /// the failure (a `ROLLBACK`).
    pub(crate) async fn reset(&mut self, job: Job) -> Result<(), MysqlSinkError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Msg::Reset(job, tx))
            .await
            .map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?
    }

    /// Runs `job` after everything queued and waits for it.
    pub(crate) async fn call(&mut self, job: Job) -> Result<(), MysqlSinkError> {
        self.submit(job).await?;
        self.sync().await
    }

    /// Borrows the connection once everything queued ran (fails with the
    /// first failure instead). Give it back with [`Lent::give_back`]; a
    /// connection not given back (a cancelled caller) makes every later call
    /// fail as transient, and the pipeline then opens a new sink.
    pub(crate) async fn lend(&mut self) -> Result<Lent, MysqlSinkError> {
        let (conn_tx, conn_rx) = oneshot::channel();
        let (back_tx, back_rx) = oneshot::channel();
        self.tx
            .send(Msg::Lend(conn_tx, back_rx))
            .await
            .map_err(|_| gone())?;
        let conn = conn_rx.await.map_err(|_| gone())??;
        Ok(Lent {
            conn,
            back: back_tx,
        })
    }

    /// Whether a job failed since the last reset (its error is not yet reported).
    pub(crate) fn failed(&self) -> bool {
        self.failed.load(Ordering::Acquire)
    }
}

/// The connection, lent by the writer task: give it back with
/// [`Lent::give_back`] (dropping it instead loses the connection).
pub(crate) struct Lent {
    pub(crate) conn: Conn,
    back: oneshot::Sender<Conn>,
}

impl Lent {
    pub(crate) fn give_back(self) {
        // The writer task waits for it; if the task is gone, so is the sink.
        let _ = self.back.send(self.conn);
    }
}

async fn run(mut conn: Conn, mut rx: mpsc::Receiver<Msg>, failed: Arc<AtomicBool>) {
    let mut failure: Option<MysqlSinkError> = None;
    let fail = |failure: &mut Option<MysqlSinkError>, e: MysqlSinkError| {
        failed.store(true, Ordering::Release);
        if failure.is_none() {
            *failure = Some(e);
        }
    };
    let report = |failure: &mut Option<MysqlSinkError>| match failure.take() {
        Some(e) => Err(e),
        None if failed.load(Ordering::Acquire) => Err(MysqlSinkError::Config(
            "internal: a statement failed earlier in this target transaction; it must be \
             rolled back"
                .into(),
        )),
        None => Ok(()),
    };
    while let Some(msg) = rx.recv().await {
        match msg {
            Msg::Run(job) => {
                if !failed.load(Ordering::Acquire) {
                    if let Err(e) = job(&mut conn).await {
                        fail(&mut failure, e);
                    }
                }
            }
            Msg::Sync(reply) => {
                let _ = reply.send(report(&mut failure));
            }
            Msg::Reset(job, reply) => {
                failure = None;
                failed.store(false, Ordering::Release);
                let _ = reply.send(job(&mut conn).await);
            }
            Msg::Lend(reply, back) => {
                if let Err(e) = report(&mut failure) {
                    let _ = reply.send(Err(e));
                    continue;
                }
                if let Err(Ok(c)) = reply.send(Ok(conn)) {
                    // The borrower went away before taking it.
                    conn = c;
                    continue;
                }
                match back.await {
                    Ok(c) => conn = c,
                    // Never given back: the connection is gone; end the task
                    // (every later call reports a lost connection).
                    Err(_) => return,
                }
            }
        }
    }
}
