//! Leases and the offsets mirror against a private PostgreSQL: exclusive
//! ownership, takeover after expiry with a new epoch, fenced offset writes,
//! monotonic offsets, reset epochs, migrations idempotent and version-checked.

use std::time::Duration;

use engine::position::{Checkpoint, Offset};
use engine::Lsn;
use metastore::meta::leases;
use metastore::meta::offsets::{self, OffsetWrite, StateOp, WriteOutcome};
use serde_json::json;
use testkit::{PgOptions, PgServer};
use tokio_postgres::Client;
use uuid::Uuid;

async fn setup() -> (PgServer, Client, Uuid) {
    let pg = PgServer::start(PgOptions::default());
    pg.create_database("meta").await;
    let mut c = pg.connect("meta").await;
    assert_eq!(metastore::meta::migrate(&mut c).await.unwrap(), vec![1]);
    // A second migrate is a no-op and the version check passes.
    assert!(metastore::meta::migrate(&mut c).await.unwrap().is_empty());
    metastore::meta::check_schema(&c).await.unwrap();
    let task: Uuid = c
        .query_one(
            "INSERT INTO sync_tasks (tenant_id, task_name, task_code, source_db_type, target_db_type, \
                 source_connection_config, target_connection_config) \
             SELECT tenant_id, 't', 't', 'POSTGRESQL', 'POSTGRESQL', '{}', '{}' FROM tenants \
             WHERE tenant_code = 'default' RETURNING task_id",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    (pg, c, task)
}

fn cp(lsn: u64) -> Checkpoint {
    let mut c = Checkpoint::empty();
    c.stream = Some(Offset::postgres(Lsn(lsn), 0));
    c
}

fn write<'a>(
    task: Uuid,
    owner: &'a str,
    epoch: i64,
    part: &'a serde_json::Value,
    c: &'a Checkpoint,
) -> OffsetWrite<'a> {
    OffsetWrite {
        task_id: task,
        owner,
        epoch,
        offset_epoch: 0,
        source_partition: part,
        checkpoint: c,
        server_id: None,
    }
}

#[tokio::test]
async fn leases_are_exclusive_expire_and_fence_offset_writes() {
    let (_pg, c, task) = setup().await;
    let part = json!({"source": "postgresql", "slot": "s"});
    let a = leases::acquire(&c, task, "a", 2)
        .await
        .unwrap()
        .expect("free lease");
    assert_eq!(a.epoch, 1);
    assert!(
        leases::acquire(&c, task, "b", 2).await.unwrap().is_none(),
        "held by a"
    );
    assert_eq!(
        offsets::write(&c, &write(task, "a", a.epoch, &part, &cp(100)))
            .await
            .unwrap(),
        WriteOutcome::Written
    );
    // Monotonic: an older position is not written.
    assert_eq!(
        offsets::write(&c, &write(task, "a", a.epoch, &part, &cp(50)))
            .await
            .unwrap(),
        WriteOutcome::NotNewer
    );
    assert_eq!(
        offsets::load(&c, task).await.unwrap().unwrap().stream,
        cp(100).stream
    );
    // Renewal keeps it; b still cannot take it.
    assert_eq!(leases::renew_all(&c, "a", 2).await.unwrap().len(), 1);
    assert!(leases::acquire(&c, task, "b", 2).await.unwrap().is_none());
    // a stops renewing: after expiry b takes over with a new epoch.
    tokio::time::sleep(Duration::from_millis(2300)).await;
    let b = leases::acquire(&c, task, "b", 30)
        .await
        .unwrap()
        .expect("expired lease");
    assert_eq!(b.epoch, 2);
    assert!(
        leases::renew_all(&c, "a", 2).await.unwrap().is_empty(),
        "a's renewal finds nothing"
    );
    // a is fenced, whatever it writes; b moves on.
    assert_eq!(
        offsets::write(&c, &write(task, "a", a.epoch, &part, &cp(900)))
            .await
            .unwrap(),
        WriteOutcome::Fenced
    );
    let mut conn = c;
    assert!(!offsets::write_source_state(
        &mut conn,
        task,
        0,
        "a",
        a.epoch,
        &[StateOp::Put("k".into(), b"v".to_vec())]
    )
    .await
    .unwrap());
    assert_eq!(
        offsets::write(&conn, &write(task, "b", b.epoch, &part, &cp(200)))
            .await
            .unwrap(),
        WriteOutcome::Written
    );
    assert_eq!(
        offsets::load(&conn, task).await.unwrap().unwrap().stream,
        cp(200).stream
    );
    assert!(offsets::write_source_state(
        &mut conn,
        task,
        0,
        "b",
        b.epoch,
        &[StateOp::Put("k".into(), b"v".to_vec())]
    )
    .await
    .unwrap());
    assert_eq!(
        offsets::load_source_state(&conn, task, 0).await.unwrap(),
        vec![("k".to_string(), b"v".to_vec())]
    );
    // Released: another daemon may take it at once.
    leases::release(&conn, &b, "b").await.unwrap();
    assert_eq!(
        leases::acquire(&conn, task, "a", 30)
            .await
            .unwrap()
            .unwrap()
            .epoch,
        3
    );
}

#[tokio::test]
async fn a_reset_offset_epoch_refuses_stale_mirror_writes() {
    let (_pg, c, task) = setup().await;
    let part = json!({"source": "postgresql", "slot": "s"});
    let l = leases::acquire(&c, task, "a", 30).await.unwrap().unwrap();
    assert_eq!(
        offsets::write(&c, &write(task, "a", l.epoch, &part, &cp(100)))
            .await
            .unwrap(),
        WriteOutcome::Written
    );
    c.batch_execute(&format!(
        "BEGIN; DELETE FROM sync_offsets WHERE task_id = '{task}'; UPDATE sync_tasks SET offset_epoch = offset_epoch + 1 WHERE task_id = '{task}'; COMMIT"
    ))
    .await
    .unwrap();
    // A write of the old epoch (a daemon that has not noticed yet) leaves nothing behind.
    assert_ne!(
        offsets::write(&c, &write(task, "a", l.epoch, &part, &cp(300)))
            .await
            .unwrap(),
        WriteOutcome::Written
    );
    assert!(offsets::load(&c, task).await.unwrap().is_none());
}
