//! The metadata database pool against a real primary and a streaming standby:
//! a URL listing both hosts with `target_session_attrs=read-write` writes only
//! to the primary, and after the primary crashes and the standby is promoted
//! the SAME `MetaDb` (no restart, no new pool) writes again within a bounded
//! time. Also: the pool honours `max_connections`, `acquire_timeout_ms`,
//! `min_connections` and `idle_timeout_secs`.
//!
//! Each test starts private PostgreSQL servers with `testkit`.

use std::future::Future;
use std::time::{Duration, Instant};

use engine::config::MetastoreConfig;
use metastore::meta::{check_schema, migrate, MetaDb, MetaError};
use serde_json::json;
use testkit::{PgOptions, PgServer, PgStandby};
use tokio_postgres::error::SqlState;

/// How long one `get()` may wait in the failover tests.
const ACQUIRE_TIMEOUT_MS: u64 = 2_000;
/// The primary stays down this long before the standby is promoted.
const OUTAGE: Duration = Duration::from_millis(2_500);
/// The daemon-like writer gives up after this long.
const WRITE_DEADLINE: Duration = Duration::from_secs(60);

/// A `[metastore]` section as the daemon reads it (unknown keys refused),
/// validated.
fn config(url: &str, pool: serde_json::Value) -> MetastoreConfig {
    let cfg: MetastoreConfig = serde_json::from_value(json!({ "url": url, "pool": pool }))
        .unwrap_or_else(|e| panic!("[metastore] section: {e}"));
    cfg.validate().expect("a valid [metastore] section");
    cfg
}

fn failover_pool() -> serde_json::Value {
    json!({
        "max_connections": 4,
        "min_connections": 2,
        "acquire_timeout_ms": ACQUIRE_TIMEOUT_MS,
    })
}

/// A primary with a migrated `meta` database and a hot standby of it.
async fn primary_and_standby() -> (PgServer, PgStandby) {
    let primary = PgServer::start(PgOptions {
        logical: false,
        ..Default::default()
    });
    primary.create_database("meta").await;
    let mut c = primary.connect("meta").await;
    migrate(&mut c).await.expect("migrating the primary");
    let standby = primary.start_standby();
    (primary, standby)
}

async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    while !cond().await {
        assert!(
            start.elapsed() < timeout,
            "{what}: not reached within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn server_port(c: &tokio_postgres::Client) -> u16 {
    let port: i32 = c
        .query_one("SELECT inet_server_port()", &[])
        .await
        .expect("SELECT inet_server_port()")
        .get(0);
    port as u16
}

/// What one write attempt through the pool ran into.
#[derive(Debug)]
enum Failure {
    /// `get()` failed.
    Get(MetaError),
    /// The statement failed on a pooled connection.
    Write(MetaError),
}

/// One daemon-style write: a pooled connection, an INSERT; the port of the
/// server it landed on. A write refused as read-only means the pool handed
/// out a connection to the standby: that is the bug this test is about.
async fn insert_tenant(db: &MetaDb, code: &str) -> Result<u16, Failure> {
    let c = db.get().await.map_err(Failure::Get)?;
    let row = c
        .query_one(
            "INSERT INTO tenants (tenant_name, tenant_code) VALUES ($1, $1) \
             RETURNING inet_server_port()",
            &[&code],
        )
        .await
        .map_err(|e| {
            assert_ne!(
                e.code(),
                Some(&SqlState::READ_ONLY_SQL_TRANSACTION),
                "the pool handed out a connection to the read-only standby for a write: {e}"
            );
            Failure::Write(MetaError::query("insert a tenant", e))
        })?;
    Ok(row.get::<_, i32>(0) as u16)
}

struct Followed {
    /// When the first write after the crash succeeded.
    at: Instant,
    port: u16,
    attempts: usize,
    failures: Vec<Failure>,
}

/// Retries `get()` + a write with a short pause, as the daemon does, until
/// one succeeds; every failure on the way must be transient.
async fn write_until_it_works(db: &MetaDb, code: &str) -> Followed {
    let start = Instant::now();
    let mut failures = Vec::new();
    loop {
        match insert_tenant(db, code).await {
            Ok(port) => {
                return Followed {
                    at: Instant::now(),
                    port,
                    attempts: failures.len() + 1,
                    failures,
                }
            }
            Err(f) => {
                let (Failure::Get(e) | Failure::Write(e)) = &f;
                assert!(
                    e.is_transient(),
                    "a failover error must be transient: {f:?}"
                );
                failures.push(f);
            }
        }
        assert!(
            start.elapsed() < WRITE_DEADLINE,
            "the pool did not follow the failover within {WRITE_DEADLINE:?}: {failures:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Writes through a pool over both hosts, crashes the primary, promotes the
/// standby while a writer keeps retrying, and checks that the same pool
/// follows.
async fn failover_is_followed(
    primary: PgServer,
    standby: PgStandby,
    url: String,
    form: &str,
) -> Duration {
    let cfg = config(&url, failover_pool());
    let db = MetaDb::new(&cfg).expect("building the pool");

    // Before the failover: every connection is on the primary, even when the
    // read-only standby is listed first.
    let port = insert_tenant(&db, "before")
        .await
        .expect("write before failover");
    assert_eq!(
        port,
        primary.port(),
        "{form}: the write went to the standby"
    );
    {
        let c = db.get().await.expect("a pooled connection");
        check_schema(&c).await.expect("schema on the primary");
    }
    let held = futures::future::join_all((0..4).map(|_| db.get())).await;
    for c in &held {
        let c = c.as_ref().expect("max_connections checkouts");
        assert_eq!(
            server_port(c).await,
            primary.port(),
            "{form}: a connection on the standby"
        );
    }
    drop(held);
    assert_eq!(db.state().1, 4, "the connections went back to the pool");

    standby
        .wait_caught_up(&primary, Duration::from_secs(30))
        .await;
    let s = standby.connect("meta").await;
    let n: i64 = s
        .query_one(
            "SELECT count(*) FROM tenants WHERE tenant_code = 'before'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1, "the standby replayed the write");

    // The crash: the pool's 4 idle connections are now dead.
    primary.stop_immediate();
    let crashed = Instant::now();

    let promote = async {
        // A pool created during the outage must not settle for the standby either.
        let fresh = MetaDb::new(&cfg).expect("building a second pool");
        match fresh.get().await {
            Ok(c) => panic!(
                "{form}: with the primary down a pool handed out a connection to port {}",
                server_port(&c).await
            ),
            Err(MetaError::Unavailable(m)) => {
                // The real cause, not a guess: the standby refuses writes
                // (URL form, tried last) or the primary refuses connections.
                assert!(
                    m.contains("last connection error")
                        && (m.contains("does not allow writes") || m.contains("refused")),
                    "{form}: the error does not say why: {m}"
                );
                eprintln!("{form}: a new pool during the outage: {m}");
            }
            Err(e) => panic!("{form}: expected Unavailable, got {e:?}"),
        }
        assert!(standby.is_in_recovery().await);
        let left = OUTAGE.saturating_sub(crashed.elapsed());
        tokio::time::sleep(left).await;
        let asked = Instant::now();
        standby.promote(Duration::from_secs(60)).await;
        (asked, Instant::now())
    };
    let (followed, (promote_asked, promoted)) =
        tokio::join!(write_until_it_works(&db, "after"), promote);

    assert!(
        followed.at >= promote_asked,
        "{form}: a write succeeded before the standby was promoted"
    );
    assert_eq!(
        followed.port,
        standby.port(),
        "{form}: the write after the failover"
    );
    assert!(
        followed
            .failures
            .iter()
            .all(|f| matches!(f, Failure::Get(MetaError::Unavailable(_)))
                || matches!(
                    f,
                    Failure::Write(MetaError::Query {
                        transient: true,
                        ..
                    })
                )),
        "{form}: {:#?}",
        followed.failures
    );
    let follow = followed.at.saturating_duration_since(promoted);
    eprintln!(
        "{form}: crash -> promotion asked {:?} -> promoted {:?}; first write through the same \
         pool {:?} after the promotion was asked, {follow:?} after it was confirmed \
         ({} attempts; first failures: {:?})",
        promote_asked - crashed,
        promoted - crashed,
        followed.at - promote_asked,
        followed.attempts,
        followed.failures.iter().take(3).collect::<Vec<_>>()
    );
    // A checkout in progress at the promotion always has a connection
    // attempt under way (one every slice of at most a quarter of the acquire
    // timeout), so it finds the new primary without first sleeping out its
    // acquire timeout (which took up to ACQUIRE_TIMEOUT_MS before).
    assert!(
        follow < Duration::from_millis(ACQUIRE_TIMEOUT_MS / 2),
        "{form}: following the failover took {follow:?}"
    );

    // Both rows are on the new primary, reached through the same pool.
    let c = db.get().await.expect("a connection after the failover");
    assert_eq!(server_port(&c).await, standby.port());
    let codes: Vec<String> = c
        .query(
            "SELECT tenant_code FROM tenants WHERE tenant_code IN ('before', 'after') \
             AND deleted_at IS NULL ORDER BY tenant_code",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(codes, ["after", "before"]);
    let read_only: String = c
        .query_one("SHOW transaction_read_only", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(read_only, "off");
    check_schema(&c).await.expect("schema on the new primary");
    drop(c);

    // The pool refills to min_connections on the new primary, and every
    // connection it hands out is there.
    wait_until(
        "min_connections idle after the failover",
        Duration::from_secs(10),
        || async { db.state().1 >= 2 },
    )
    .await;
    let held = futures::future::join_all((0..4).map(|_| db.get())).await;
    for c in &held {
        let c = c
            .as_ref()
            .expect("max_connections checkouts after the failover");
        assert_eq!(server_port(c).await, standby.port());
    }
    follow
}

#[tokio::test]
async fn url_form_follows_a_failover_without_a_restart() {
    let (primary, standby) = primary_and_standby().await;
    let url = format!(
        "postgres://postgres@127.0.0.1:{},127.0.0.1:{}/meta?target_session_attrs=read-write",
        primary.port(),
        standby.port()
    );
    failover_is_followed(primary, standby, url, "URL").await;
}

#[tokio::test]
async fn key_value_form_with_the_standby_first_follows_a_failover() {
    let (primary, standby) = primary_and_standby().await;
    // The read-only standby first: target_session_attrs must skip it.
    let url = format!(
        "host=127.0.0.1,127.0.0.1 port={},{} user=postgres dbname=meta \
         target_session_attrs=read-write",
        standby.port(),
        primary.port()
    );
    failover_is_followed(primary, standby, url, "key/value").await;
}

/// Connections of one pool as the server sees them.
async fn backends(pg: &PgServer, app: &str) -> i64 {
    let c = pg.connect("postgres").await;
    c.query_one(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
        &[&app],
    )
    .await
    .unwrap()
    .get(0)
}

#[tokio::test]
async fn pool_caps_checkouts_and_keeps_min_idle_connections() {
    let pg = PgServer::start(PgOptions {
        logical: false,
        ..Default::default()
    });
    let app = "dbsync-pool-test";
    let url = format!("{}?application_name={app}", pg.url("postgres"));
    let cfg = config(
        &url,
        json!({
            "max_connections": 3,
            "min_connections": 2,
            "acquire_timeout_ms": 500,
            "idle_timeout_secs": 1,
        }),
    );
    let db = MetaDb::new(&cfg).expect("building the pool");

    // min_connections are opened without any checkout.
    wait_until(
        "min_connections opened",
        Duration::from_secs(10),
        || async { db.state() == (2, 2) },
    )
    .await;
    assert_eq!(backends(&pg, app).await, 2);

    // max_connections caps concurrent checkouts...
    let a = db.get().await.expect("checkout 1");
    let b = db.get().await.expect("checkout 2");
    let c = db.get().await.expect("checkout 3");
    assert_eq!(backends(&pg, app).await, 3);
    // ...and one more waits acquire_timeout_ms, then is a transient error.
    let start = Instant::now();
    let err = db
        .get()
        .await
        .expect_err("a checkout beyond max_connections");
    let waited = start.elapsed();
    assert!(matches!(err, MetaError::Unavailable(_)), "{err:?}");
    assert!(err.is_transient());
    assert!(
        waited >= Duration::from_millis(450) && waited < Duration::from_secs(3),
        "waited {waited:?} for acquire_timeout_ms = 500"
    );
    assert!(
        err.to_string().contains("acquire_timeout_ms"),
        "the message names the setting: {err}"
    );
    assert_eq!(
        backends(&pg, app).await,
        3,
        "no connection beyond max_connections"
    );

    // A returned connection serves the next waiter at once.
    let waiter = tokio::spawn({
        let db = db.clone();
        async move {
            let start = Instant::now();
            let c = db.get().await.map(|_| ());
            (c, start.elapsed())
        }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(a);
    let (got, waited) = waiter.await.unwrap();
    got.expect("a connection once one is returned");
    assert!(waited < Duration::from_millis(450), "waited {waited:?}");

    // Back to min_connections once the extra ones idle past idle_timeout_secs.
    drop((b, c));
    assert_eq!(db.state(), (3, 3));
    let start = Instant::now();
    wait_until(
        "idle connections above min_connections closed",
        Duration::from_secs(10),
        || async { db.state() == (2, 2) },
    )
    .await;
    eprintln!("idle connections closed after {:?}", start.elapsed());
    wait_until(
        "the server sees 2 connections",
        Duration::from_secs(5),
        || async { backends(&pg, app).await == 2 },
    )
    .await;
    // The kept ones work.
    let c = db.get().await.expect("a kept connection");
    c.simple_query("SELECT 1").await.unwrap();
}
