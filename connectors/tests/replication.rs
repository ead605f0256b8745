//! Replication client and pgoutput decoder against private PostgreSQL servers.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use bytes::Bytes;
use connectors::postgres::pgoutput::{decode, PgOutput, RelationBody, TupleValue};
use connectors::postgres::replication::{
    pg_epoch_us_to_utc, ReplError, ReplicationConnection, ReplicationMessage, ReplicationStream,
};
use engine::{ErrorClass, Lsn};
use futures::FutureExt;
use testkit::{PgAuth, PgOptions, PgServer};

const WAIT: Duration = Duration::from_secs(60);

fn config(pg: &PgServer, db: &str) -> tokio_postgres::Config {
    pg.conn_str(db).parse().expect("testkit connection string")
}

async fn connect(pg: &PgServer) -> ReplicationConnection {
    ReplicationConnection::connect(&config(pg, "postgres"), &[])
        .await
        .unwrap_or_else(|e| panic!("replication connect: {e}\n{}", pg.log()))
}

async fn next_msg(stream: &mut ReplicationStream) -> ReplicationMessage {
    tokio::time::timeout(WAIT, stream.next())
        .await
        .expect("no replication message within the timeout")
        .expect("replication stream failed")
        .expect("replication stream ended")
}

/// The next pgoutput message, skipping keepalives.
async fn next_change(stream: &mut ReplicationStream) -> PgOutput {
    loop {
        if let ReplicationMessage::XLogData { data, .. } = next_msg(stream).await {
            return decode(data).expect("decoding pgoutput");
        }
    }
}

/// One whole transaction, Begin through Commit.
async fn next_tx(stream: &mut ReplicationStream) -> Vec<PgOutput> {
    let mut tx = vec![next_change(stream).await];
    assert!(matches!(tx[0], PgOutput::Begin { .. }), "{:?}", tx[0]);
    loop {
        let m = next_change(stream).await;
        let done = matches!(m, PgOutput::Commit { .. });
        tx.push(m);
        if done {
            return tx;
        }
    }
}

fn t(s: &str) -> TupleValue {
    TupleValue::Text(Bytes::copy_from_slice(s.as_bytes()))
}

fn text(v: &TupleValue) -> &str {
    match v {
        TupleValue::Text(b) => std::str::from_utf8(b).unwrap(),
        other => panic!("not a text value: {other:?}"),
    }
}

async fn oid(c: &tokio_postgres::Client, table: &str) -> u32 {
    c.query_one(&format!("SELECT '{table}'::regclass::oid"), &[])
        .await
        .unwrap()
        .get(0)
}

async fn start(pg: &PgServer, slot: &str, publication: &str) -> ReplicationStream {
    let mut repl = connect(pg).await;
    let info = repl.create_slot(slot, false).await.unwrap();
    assert_eq!(info.slot_name, slot);
    assert_eq!(info.snapshot_name, None);
    repl.start_replication(slot, info.consistent_point, publication)
        .await
        .unwrap()
}

/// The row changes of a transaction (without Begin, Commit, Relation and Type,
/// which the server may re-send after any relcache invalidation).
fn changes(tx: Vec<PgOutput>) -> Vec<PgOutput> {
    tx.into_iter()
        .filter(|m| {
            !matches!(
                m,
                PgOutput::Begin { .. }
                    | PgOutput::Commit { .. }
                    | PgOutput::Relation(_)
                    | PgOutput::Type { .. }
            )
        })
        .collect()
}

#[tokio::test]
async fn trust_connect_identifies_system_and_passes_options() {
    let pg = PgServer::start(PgOptions::default());
    let mut repl =
        ReplicationConnection::connect(&config(&pg, "postgres"), &[("DateStyle", "ISO, DMY")])
            .await
            .unwrap();
    assert!(repl.server_version().is_some());
    let sys = repl.identify_system().await.unwrap();
    let c = pg.connect("postgres").await;
    let row = c
        .query_one(
            "SELECT system_identifier::text, pg_current_wal_flush_lsn()::text FROM pg_control_system()",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(sys.systemid, row.get::<_, String>(0));
    assert_eq!(sys.timeline, 1);
    assert!(sys.xlogpos > Lsn(0));
    assert!(sys.xlogpos <= row.get::<_, String>(1).parse().unwrap());
    assert_eq!(sys.dbname.as_deref(), Some("postgres"));
    let rows = repl.simple_query("SHOW DateStyle").await.unwrap();
    assert_eq!(rows, vec![vec![Some("ISO, DMY".to_string())]]);
    let rows = repl.simple_query("SELECT 1, NULL::text").await.unwrap();
    assert_eq!(rows, vec![vec![Some("1".to_string()), None]]);
    let app: String = c
        .query_one(
            "SELECT application_name FROM pg_stat_activity WHERE backend_type = 'walsender'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(app, "dbsync");
}

fn password_server(method: &str) -> PgServer {
    PgServer::start(PgOptions {
        auth: PgAuth::Password {
            method: method.into(),
            password: "s3cret-pw".into(),
        },
        ..Default::default()
    })
}

#[tokio::test]
async fn scram_md5_and_cleartext_authenticate_and_wrong_password_is_definite() {
    // "password" is cleartext over the wire.
    for method in ["scram-sha-256", "md5", "password"] {
        let pg = password_server(method);
        if method == "md5" {
            // md5 needs an md5 verifier; initdb stored a SCRAM one.
            let c = pg.connect("postgres").await;
            c.batch_execute(
                "SET password_encryption = 'md5'; ALTER ROLE postgres PASSWORD 's3cret-pw'",
            )
            .await
            .unwrap();
        }
        let c = pg.connect("postgres").await;
        let verifier: String = c
            .query_one(
                "SELECT rolpassword FROM pg_authid WHERE rolname = 'postgres'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        let prefix = if method == "md5" {
            "md5"
        } else {
            "SCRAM-SHA-256$"
        };
        assert!(
            verifier.starts_with(prefix),
            "{method} is not what the server will use"
        );
        let mut repl = connect(&pg).await;
        repl.identify_system().await.unwrap();

        let mut cfg = config(&pg, "postgres");
        cfg.password("wrong-pw-123");
        let err = ReplicationConnection::connect(&cfg, &[])
            .await
            .err()
            .unwrap();
        assert_eq!(err.class(), ErrorClass::Definite, "{method}: {err}");
        assert_eq!(err.sqlstate(), Some("28P01"), "{method}: {err}");
        let s = err.to_string();
        assert!(s.contains("password") && !s.contains("wrong-pw-123"), "{s}");

        let mut no_pw = tokio_postgres::Config::new();
        no_pw
            .host("127.0.0.1")
            .port(pg.port())
            .user("postgres")
            .dbname("postgres");
        let err = ReplicationConnection::connect(&no_pw, &[])
            .await
            .err()
            .unwrap();
        assert!(matches!(err, ReplError::Auth(_)), "{err}");
        assert_eq!(err.class(), ErrorClass::Definite);
    }
}

#[tokio::test]
async fn exported_snapshot_is_usable_while_connection_is_idle() {
    let pg = PgServer::start(PgOptions::default());
    let c = pg.connect("postgres").await;
    c.batch_execute(
        "CREATE TABLE s(id int PRIMARY KEY); INSERT INTO s SELECT generate_series(1, 10);
         CREATE PUBLICATION p FOR TABLE s",
    )
    .await
    .unwrap();
    let mut repl = connect(&pg).await;
    let slot = repl.create_slot("snap_slot", true).await.unwrap();
    let snapshot = slot.snapshot_name.clone().expect("an exported snapshot");
    c.batch_execute("INSERT INTO s SELECT generate_series(11, 15)")
        .await
        .unwrap();

    let reader = pg.connect("postgres").await;
    reader
        .batch_execute(&format!(
            "BEGIN ISOLATION LEVEL REPEATABLE READ; SET TRANSACTION SNAPSHOT '{snapshot}'"
        ))
        .await
        .unwrap();
    let n: i64 = reader
        .query_one("SELECT count(*) FROM s", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        n, 10,
        "the snapshot must not see rows inserted after the slot"
    );
    reader.batch_execute("COMMIT").await.unwrap();

    let mut stream = repl
        .start_replication("snap_slot", slot.consistent_point, "p")
        .await
        .unwrap();
    let tx = next_tx(&mut stream).await;
    let ids: Vec<&str> = tx
        .iter()
        .filter_map(|m| match m {
            PgOutput::Insert { new, .. } => Some(text(&new[0])),
            _ => None,
        })
        .collect();
    assert_eq!(ids, ["11", "12", "13", "14", "15"]);
}

#[tokio::test]
async fn streams_and_decodes_dml_and_confirms_flush() {
    let pg = PgServer::start(PgOptions::default());
    let c = pg.connect("postgres").await;
    c.batch_execute(
        "CREATE TYPE mood AS ENUM ('ok', 'sad');
         CREATE TABLE t(id int PRIMARY KEY, name text, note varchar(10), big text, m mood);
         ALTER TABLE t ALTER big SET STORAGE EXTERNAL;
         CREATE TABLE f(id int, v text);
         ALTER TABLE f REPLICA IDENTITY FULL;
         CREATE PUBLICATION p FOR TABLE t, f;
         SELECT pg_replication_origin_create('node_a')",
    )
    .await
    .unwrap();
    let (t_oid, f_oid) = (oid(&c, "t").await, oid(&c, "f").await);
    let mut stream = start(&pg, "dml_slot", "p").await;

    let big = "x".repeat(10_000);
    let xid: i64 = {
        c.batch_execute("BEGIN").await.unwrap();
        c.execute("INSERT INTO t VALUES (1, 'a', NULL, $1, 'ok')", &[&big])
            .await
            .unwrap();
        let xid = c
            .query_one("SELECT txid_current()", &[])
            .await
            .unwrap()
            .get(0);
        c.batch_execute("COMMIT").await.unwrap();
        xid
    };
    let tx = next_tx(&mut stream).await;
    let PgOutput::Begin {
        final_lsn,
        commit_time_us,
        xid: got_xid,
    } = tx[0]
    else {
        unreachable!()
    };
    assert_eq!(got_xid as i64, xid % (1 << 32));
    assert!(
        (pg_epoch_us_to_utc(commit_time_us) - chrono::Utc::now())
            .num_seconds()
            .abs()
            < 60
    );
    let PgOutput::Commit {
        commit_lsn,
        end_lsn,
        ..
    } = tx[tx.len() - 1]
    else {
        unreachable!()
    };
    assert_eq!(commit_lsn, final_lsn);
    assert!(end_lsn > commit_lsn);
    assert!(
        matches!(&tx[1], PgOutput::Type { name, namespace, .. } if name == "mood" && namespace == "public"),
        "{:?}",
        tx[1]
    );
    let PgOutput::Relation(RelationBody {
        oid,
        namespace,
        name,
        replica_identity,
        columns,
    }) = &tx[2]
    else {
        panic!("expected a relation, got {:?}", tx[2])
    };
    assert_eq!(
        (*oid, namespace.as_str(), name.as_str(), *replica_identity),
        (t_oid, "public", "t", b'd')
    );
    let cols: Vec<(bool, &str, u32, i32)> = columns
        .iter()
        .map(|c| (c.key, c.name.as_str(), c.type_oid, c.type_mod))
        .collect();
    assert_eq!(
        &cols[..4],
        [
            (true, "id", 23, -1),
            (false, "name", 25, -1),
            (false, "note", 1043, 14),
            (false, "big", 25, -1)
        ]
    );
    assert_eq!(
        tx[3],
        PgOutput::Insert {
            rel: t_oid,
            new: vec![t("1"), t("a"), TupleValue::Null, t(&big), t("ok")]
        }
    );
    assert_eq!(tx.len(), 5);

    // The server confirms what the client reports as flushed.
    stream
        .send_status(end_lsn, end_lsn, end_lsn, false)
        .await
        .unwrap();
    let deadline = Instant::now() + WAIT;
    loop {
        let flushed: String = c
            .query_one(
                "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = 'dml_slot'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if flushed.parse::<Lsn>().unwrap() == end_lsn {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "confirmed_flush_lsn stuck at {flushed}, want {end_lsn}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    c.batch_execute("UPDATE t SET name = 'b' WHERE id = 1")
        .await
        .unwrap();
    let toast = TupleValue::UnchangedToast;
    assert_eq!(
        changes(next_tx(&mut stream).await),
        [PgOutput::Update {
            rel: t_oid,
            old: None,
            key_only_old: false,
            new: vec![t("1"), t("b"), TupleValue::Null, toast.clone(), t("ok")],
        }]
    );
    c.batch_execute("UPDATE t SET id = 2 WHERE id = 1; DELETE FROM t WHERE id = 2")
        .await
        .unwrap();
    let key = |k: &str| [vec![t(k)], vec![TupleValue::Null; 4]].concat();
    assert_eq!(
        changes(next_tx(&mut stream).await),
        [
            PgOutput::Update {
                rel: t_oid,
                old: Some(key("1")),
                key_only_old: true,
                new: vec![t("2"), t("b"), TupleValue::Null, toast, t("ok")],
            },
            PgOutput::Delete {
                rel: t_oid,
                old: key("2"),
                key_only_old: true,
            }
        ]
    );

    c.batch_execute("INSERT INTO f VALUES (1, 'one'); UPDATE f SET v = 'uno'; DELETE FROM f")
        .await
        .unwrap();
    let tx = next_tx(&mut stream).await;
    assert!(
        tx.iter().any(|m| matches!(m, PgOutput::Relation(r)
            if r.oid == f_oid && r.name == "f" && r.replica_identity == b'f')),
        "{tx:?}"
    );
    let (one, uno) = (vec![t("1"), t("one")], vec![t("1"), t("uno")]);
    assert_eq!(
        changes(tx),
        [
            PgOutput::Insert {
                rel: f_oid,
                new: one.clone(),
            },
            PgOutput::Update {
                rel: f_oid,
                old: Some(one),
                key_only_old: false,
                new: uno.clone(),
            },
            PgOutput::Delete {
                rel: f_oid,
                old: uno,
                key_only_old: false,
            }
        ]
    );

    c.batch_execute("TRUNCATE t, f RESTART IDENTITY CASCADE")
        .await
        .unwrap();
    let tx = changes(next_tx(&mut stream).await);
    let [PgOutput::Truncate { options, rels }] = &tx[..] else {
        panic!("expected one truncate, got {tx:?}")
    };
    assert_eq!(*options, 3, "CASCADE | RESTART IDENTITY");
    assert_eq!(
        rels.iter().copied().collect::<BTreeSet<_>>(),
        BTreeSet::from([t_oid, f_oid])
    );

    // A transaction replayed under a replication origin names it.
    c.batch_execute("SELECT pg_replication_origin_session_setup('node_a')")
        .await
        .unwrap();
    c.batch_execute("INSERT INTO f VALUES (9, 'o')")
        .await
        .unwrap();
    c.batch_execute("SELECT pg_replication_origin_session_reset()")
        .await
        .unwrap();
    let tx = next_tx(&mut stream).await;
    assert!(
        matches!(&tx[1], PgOutput::Origin { name, .. } if name == "node_a"),
        "{tx:?}"
    );
    assert_eq!(
        changes(tx[2..].to_vec()),
        [PgOutput::Insert {
            rel: f_oid,
            new: vec![t("9"), t("o")],
        }]
    );
}

#[tokio::test]
async fn keepalives_arrive_and_status_replies_keep_the_stream_alive() {
    let pg = PgServer::start(PgOptions {
        extra_conf: vec!["wal_sender_timeout = '2s'".into()],
        ..Default::default()
    });
    let c = pg.connect("postgres").await;
    c.batch_execute("CREATE TABLE k(id int PRIMARY KEY); CREATE PUBLICATION p FOR TABLE k")
        .await
        .unwrap();
    let mut stream = start(&pg, "ka_slot", "p").await;
    let until = Instant::now() + Duration::from_secs(6);
    let (mut keepalives, mut requested) = (0, 0);
    while Instant::now() < until {
        match tokio::time::timeout(Duration::from_millis(200), stream.next()).await {
            Err(_) => continue,
            Ok(msg) => match msg.unwrap_or_else(|e| panic!("{e}\n{}", pg.log())) {
                Some(ReplicationMessage::Keepalive {
                    wal_end,
                    reply_requested,
                    ..
                }) => {
                    keepalives += 1;
                    if reply_requested {
                        requested += 1;
                        stream
                            .send_status(wal_end, wal_end, wal_end, false)
                            .await
                            .unwrap();
                    }
                }
                other => panic!("unexpected {other:?}"),
            },
        }
    }
    assert!(
        keepalives >= 2 && requested >= 1,
        "{keepalives} keepalives, {requested} requested"
    );
    // Outlived the 2 s timeout thrice: the replies were understood. Still streaming:
    c.batch_execute("INSERT INTO k VALUES (1)").await.unwrap();
    let tx = next_tx(&mut stream).await;
    assert!(matches!(&tx[2], PgOutput::Insert { new, .. } if new[0] == t("1")));
}

#[tokio::test]
async fn streams_200k_rows_through_cancelled_reads() {
    const N: i64 = 200_000;
    let pg = PgServer::start(PgOptions::default());
    let c = pg.connect("postgres").await;
    c.batch_execute(
        "CREATE TABLE big(id int PRIMARY KEY, v text); CREATE PUBLICATION p FOR TABLE big",
    )
    .await
    .unwrap();
    let mut stream = start(&pg, "big_slot", "p").await;
    c.batch_execute(&format!(
        "INSERT INTO big SELECT g, 'v' || g FROM generate_series(1, {N}) g"
    ))
    .await
    .unwrap();
    let (mut count, mut sum, mut ticks, mut buffered) = (0i64, 0i64, 0u64, 0u64);
    let mut tick = tokio::time::interval(Duration::from_micros(200));
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        assert!(Instant::now() < deadline, "only {count} rows arrived");
        let msg = if stream.has_buffered_message() {
            buffered += 1;
            stream
                .next()
                .now_or_never()
                .expect("has_buffered_message() but next() waited")
                .unwrap()
                .expect("stream ended")
        } else {
            // next() is dropped whenever the tick wins: it must lose nothing.
            tokio::select! {
                m = stream.next() => m.unwrap().expect("stream ended"),
                _ = tick.tick() => { ticks += 1; continue; }
            }
        };
        let ReplicationMessage::XLogData { data, .. } = msg else {
            continue;
        };
        match decode(data).unwrap() {
            PgOutput::Insert { new, .. } => {
                let id: i64 = text(&new[0]).parse().unwrap();
                assert_eq!(text(&new[1]), format!("v{id}"));
                count += 1;
                sum += id;
            }
            PgOutput::Commit { .. } => break,
            _ => {}
        }
    }
    assert_eq!(count, N);
    assert_eq!(sum, N * (N + 1) / 2);
    assert!(
        ticks > 0 && buffered > 0,
        "{ticks} ticks, {buffered} buffered"
    );
}

#[tokio::test]
async fn server_errors_are_classified() {
    let pg = PgServer::start(PgOptions::default());
    let c = pg.connect("postgres").await;
    c.batch_execute("CREATE ROLE norep LOGIN; CREATE TABLE e(id int PRIMARY KEY)")
        .await
        .unwrap();

    let mut cfg = config(&pg, "postgres");
    cfg.user("norep");
    let err = ReplicationConnection::connect(&cfg, &[])
        .await
        .err()
        .unwrap();
    assert_eq!(
        (err.sqlstate(), err.class()),
        (Some("42501"), ErrorClass::Definite),
        "{err}"
    );
    assert!(err.to_string().contains("REPLICATION"), "{err}");

    let mut repl = connect(&pg).await;
    repl.create_slot("dup", false).await.unwrap();
    let err = repl.create_slot("dup", false).await.unwrap_err();
    assert_eq!(
        (err.sqlstate(), err.class()),
        (Some("42710"), ErrorClass::Definite),
        "{err}"
    );
    // The connection stays usable after a command error.
    repl.identify_system().await.unwrap();

    let err = repl
        .start_replication("missing", Lsn(0), "p")
        .await
        .err()
        .unwrap();
    assert_eq!(
        (err.sqlstate(), err.class()),
        (Some("42704"), ErrorClass::Definite),
        "{err}"
    );

    // pgoutput looks the publication up when it decodes the first change.
    let mut stream = connect(&pg)
        .await
        .start_replication("dup", Lsn(0), "nopub")
        .await
        .unwrap();
    c.batch_execute("INSERT INTO e VALUES (1)").await.unwrap();
    let err = loop {
        match tokio::time::timeout(WAIT, stream.next()).await.unwrap() {
            Ok(Some(ReplicationMessage::Keepalive { .. })) => continue,
            Ok(other) => panic!("expected an error, got {other:?}"),
            Err(e) => break e,
        }
    };
    assert_eq!(
        (err.sqlstate(), err.class()),
        (Some("42704"), ErrorClass::Definite),
        "{err}"
    );
    assert!(err.to_string().contains("nopub"), "{err}");
    assert!(stream.next().await.is_err(), "a failed stream stays failed");
}

#[tokio::test]
async fn terminated_walsender_is_transient() {
    let pg = PgServer::start(PgOptions::default());
    let c = pg.connect("postgres").await;
    c.batch_execute("CREATE PUBLICATION p FOR ALL TABLES")
        .await
        .unwrap();
    let mut stream = start(&pg, "term_slot", "p").await;
    let killed: bool = c
        .query_one(
            "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = 'term_slot'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(killed);
    let err = loop {
        match tokio::time::timeout(WAIT, stream.next()).await.unwrap() {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("the stream ended cleanly"),
            Err(e) => break e,
        }
    };
    assert_eq!(err.class(), ErrorClass::Transient, "{err}");
}

#[tokio::test]
async fn tls_modes_are_refused_before_connecting() {
    let cfg: tokio_postgres::Config =
        "host=127.0.0.1 port=1 user=u password=hunter2 sslmode=require"
            .parse()
            .unwrap();
    let err = ReplicationConnection::connect(&cfg, &[])
        .await
        .err()
        .unwrap();
    assert!(matches!(err, ReplError::TlsUnsupported(_)), "{err}");
    assert_eq!(err.class(), ErrorClass::Definite);
    let s = err.to_string();
    assert!(
        s.contains("TLS is not supported") && !s.contains("hunter2"),
        "{s}"
    );
}

#[test]
fn pg_epoch_converts_and_saturates() {
    assert_eq!(
        pg_epoch_us_to_utc(0).to_rfc3339(),
        "2000-01-01T00:00:00+00:00"
    );
    assert_eq!(
        pg_epoch_us_to_utc(1_500_000).to_rfc3339(),
        "2000-01-01T00:00:01.500+00:00"
    );
    assert_eq!(
        pg_epoch_us_to_utc(i64::MAX),
        chrono::DateTime::<chrono::Utc>::MAX_UTC
    );
    assert_eq!(
        pg_epoch_us_to_utc(i64::MIN),
        chrono::DateTime::<chrono::Utc>::MIN_UTC
    );
}

#[tokio::test]
async fn refused_connection_is_transient_and_names_the_address() {
    let port = testkit::free_port();
    let cfg: tokio_postgres::Config = format!("host=127.0.0.1 port={port} user=u password=pw-x")
        .parse()
        .unwrap();
    let err = ReplicationConnection::connect(&cfg, &[])
        .await
        .err()
        .unwrap();
    assert!(matches!(err, ReplError::Io { .. }), "{err}");
    assert_eq!(err.class(), ErrorClass::Transient);
    let s = err.to_string();
    assert!(
        s.contains(&format!("127.0.0.1:{port}")) && !s.contains("pw-x"),
        "{s}"
    );
}
