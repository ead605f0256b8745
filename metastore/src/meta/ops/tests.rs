//! The write operations against a real PostgreSQL (testkit): every change
//! with its audit row in one transaction, refusals audited as FAILED with
//! nothing else changed, passwords sealed and never in audit rows.

use engine::config::Secret;
use serde_json::{json, Value as Json};
use testkit::{PgOptions, PgServer};
use tokio_postgres::Client;

use super::lifecycle::{self, Transition};
use super::mapping::{self, MappingPatch, MappingSpec};
use super::script::{self, MappingRef, ScriptPatch, ScriptSpec};
use super::task::{self, TaskPatch, TaskSpec};
use super::tenant::{self, TenantPatch, TenantSpec};
use super::{alert, fleet, Actor};
use crate::meta::error::MetaError;
use crate::meta::migrate;
use crate::secrets::{open_password, SecretKey};

const PW: &str = "S3cr3t-pw-42";

async fn metadb() -> (PgServer, Client) {
    let server = PgServer::start(PgOptions {
        logical: false,
        ..Default::default()
    });
    server.create_database("meta").await;
    let mut c = server.connect("meta").await;
    migrate(&mut c).await.unwrap();
    (server, c)
}

fn alice() -> Actor {
    Actor::new("alice", "dbsync-cli/test").unwrap()
}

/// (operation_type, status, operator, details, error_message), oldest first.
async fn audit_rows(c: &Client) -> Vec<(String, String, String, Json, Option<String>)> {
    c.query(
        "SELECT operation_type, status, operator, operation_details, error_message \
         FROM audit_logs ORDER BY operated_at",
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
    .collect()
}

fn task_spec(code: &str) -> TaskSpec {
    TaskSpec {
        task_code: code.into(),
        task_name: format!("task {code}"),
        source_db_type: "mysql".into(),
        target_db_type: "POSTGRESQL".into(),
        source_connection_config: json!({"host": "src", "port": 3306, "username": "repl"}),
        target_connection_config: json!({"host": "dst", "port": 5432, "database": "dw"}),
        source_password: Some(Secret::new(PW)),
        ..Default::default()
    }
}

fn mapping_spec(table: &str) -> MappingSpec {
    serde_json::from_value(json!({
        "source_schema": "shop", "source_table": table,
        "target_schema": "dw", "target_table": table,
        "row_filter_condition": "status = 'ACTIVE'",
        "transform_rules": [{"column": "phone", "transform_type": "MASK",
                             "params": {"pattern": "***-####"}}],
        "transform_scripts": [{"script_name": "tag", "script_type": "SQL",
                               "trigger_phase": "BEFORE_WRITE", "script_content": "WHERE id > 0"}]
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_with_mappings_is_created_whole_with_sealed_passwords_and_audit_rows() {
    let (_s, mut c) = metadb().await;
    let key = SecretKey::generate();
    let a = alice();
    let mut spec = task_spec("orders");
    spec.mappings = vec![mapping_spec("orders"), mapping_spec("customers")];
    let (t, maps) = task::create(&mut c, &a, "default", &spec, Some(&key))
        .await
        .unwrap();
    assert_eq!(
        (t.status.as_str(), t.created_by.as_str()),
        ("CREATED", "alice")
    );
    assert_eq!(maps.len(), 2);
    assert_eq!(maps[0].1[0].script_name, "tag");
    let stored = open_password(Some(&key), &t.source_connection_config)
        .unwrap()
        .unwrap();
    assert_eq!(stored.expose(), PW);
    // Without a key the same password is refused, and nothing is written.
    let e = task::create(&mut c, &a, "default", &task_spec("other"), None)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("secret_key_file"), "{e}");

    let rows = audit_rows(&c).await;
    let ops: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(
        ops,
        [
            "CREATE_TASK",
            "CREATE_MAPPING",
            "CREATE_SCRIPT",
            "CREATE_MAPPING",
            "CREATE_SCRIPT"
        ]
    );
    assert!(rows.iter().all(|r| r.1 == "SUCCESS" && r.2 == "alice"));
    assert_eq!(rows[0].3["before"], Json::Null);
    assert_eq!(
        rows[0].3["after"]["source_connection_config"]["password"],
        "***"
    );
    let all: String = c
        .query_one(
            "SELECT string_agg(operation_details::text, ' ') FROM audit_logs",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(!all.contains(PW) && !all.contains("enc:v1"), "{all}");

    // A bad mapping in a task file fails the whole create: no task, no audit row.
    let mut bad = task_spec("broken");
    let mut m = mapping_spec("x");
    m.row_filter_condition = Some("status = ".into());
    bad.mappings = vec![m];
    let e = task::create(&mut c, &a, "default", &bad, Some(&key))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("row_filter_condition"), "{e}");
    let n: i64 = c
        .query_one(
            "SELECT count(*) FROM sync_tasks WHERE task_code = 'broken'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0);
    assert_eq!(audit_rows(&c).await.len(), 5);

    // Update: a new password is sealed again and flagged, never shown.
    let patch = TaskPatch {
        source_password: Some(Secret::new("n3w-pw")),
        task_name: Some("Orders".into()),
        ..Default::default()
    };
    let (before, after) = task::update(&mut c, &a, "default", "orders", &patch, Some(&key))
        .await
        .unwrap();
    assert_ne!(
        before.source_connection_config["password"],
        after.source_connection_config["password"]
    );
    let rows = audit_rows(&c).await;
    let d = &rows.last().unwrap().3;
    assert_eq!(
        d["changes"]["task_name"],
        json!({"from": "task orders", "to": "Orders"})
    );
    assert_eq!(
        d["changes"]["source_connection_config"]["credential_changed"],
        true
    );
    assert!(!d.to_string().contains("n3w-pw"));
    // Changing the host keeps the stored password.
    let patch = TaskPatch {
        source_connection_config: Some(json!({"host": "src2", "port": 3307})),
        ..Default::default()
    };
    let (_, moved) = task::update(&mut c, &a, "default", "orders", &patch, Some(&key))
        .await
        .unwrap();
    assert_eq!(
        moved.source_connection_config["password"],
        after.source_connection_config["password"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quota_and_illegal_changes_are_refused_and_audited_as_failed() {
    let (_s, mut c) = metadb().await;
    let a = alice();
    let key = SecretKey::generate();
    let spec = TenantSpec {
        tenant_code: "acme".into(),
        tenant_name: "Acme".into(),
        max_connectors: Some(1),
        ..Default::default()
    };
    tenant::create(&mut c, &a, &spec).await.unwrap();
    task::create(&mut c, &a, "acme", &task_spec("t1"), Some(&key))
        .await
        .unwrap();
    let e = task::create(&mut c, &a, "acme", &task_spec("t2"), Some(&key))
        .await
        .unwrap_err();
    assert!(matches!(e, MetaError::Quota(_)), "{e}");
    assert!(e.to_string().contains("max_connectors is 1"), "{e}");

    // Transitions: legal ones pass, illegal ones name the status.
    let (_, after) = lifecycle::transition(&mut c, &a, "acme", "t1", Transition::Start)
        .await
        .unwrap();
    assert_eq!(after.status, "RUNNING");
    let e = lifecycle::transition(&mut c, &a, "acme", "t1", Transition::Resume)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("already RUNNING"), "{e}");
    // Reset while RUNNING: refused, the offsets stay.
    let acme = crate::meta::model::tenant_by_code(&c, "acme")
        .await
        .unwrap();
    let t1 = crate::meta::model::task_by_code(&c, acme.tenant_id, "t1")
        .await
        .unwrap();
    c.execute(
        "INSERT INTO sync_offsets (task_id, source_partition, source_offset) \
         VALUES ($1, '{\"server\": \"s1\"}', '{\"file\": \"bin.000003\", \"pos\": 154}')",
        &[&t1.task_id],
    )
    .await
    .unwrap();
    let e = lifecycle::reset_offset(&mut c, &a, "acme", "t1")
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("stop it first"), "{e}");
    lifecycle::transition(&mut c, &a, "acme", "t1", Transition::Stop)
        .await
        .unwrap();
    let r = lifecycle::reset_offset(&mut c, &a, "acme", "t1")
        .await
        .unwrap();
    assert_eq!((r.offsets_deleted, r.old_epoch, r.new_epoch), (1, 0, 1));
    let left: i64 = c
        .query_one("SELECT count(*) FROM sync_offsets", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 0);

    // Suspended tenant: start refused.
    let p = TenantPatch {
        status: Some("suspended".into()),
        ..Default::default()
    };
    tenant::update(&mut c, &a, "acme", &p).await.unwrap();
    let e = lifecycle::transition(&mut c, &a, "acme", "t1", Transition::Start)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("SUSPENDED"), "{e}");

    // Tenant delete: refused with live tasks, then cascades.
    let e = tenant::delete(&mut c, &a, "acme", false)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("--cascade") && e.contains("t1"), "{e}");
    let (_, gone) = tenant::delete(&mut c, &a, "acme", true).await.unwrap();
    assert_eq!(gone.len(), 1);
    assert!(crate::meta::model::tenant_by_code(&c, "acme")
        .await
        .is_err());

    let rows = audit_rows(&c).await;
    let seen: Vec<(&str, &str)> = rows.iter().map(|r| (r.0.as_str(), r.1.as_str())).collect();
    assert_eq!(
        seen,
        [
            ("CREATE_TENANT", "SUCCESS"),
            ("CREATE_TASK", "SUCCESS"),
            ("CREATE_TASK", "FAILED"),
            ("START_TASK", "SUCCESS"),
            ("RESUME_TASK", "FAILED"),
            ("RESET_OFFSET", "FAILED"),
            ("STOP_TASK", "SUCCESS"),
            ("RESET_OFFSET", "SUCCESS"),
            ("UPDATE_TENANT", "SUCCESS"),
            ("START_TASK", "FAILED"),
            ("DELETE_TENANT", "FAILED"),
            ("DELETE_TASK", "SUCCESS"),
            ("DELETE_TENANT", "SUCCESS"),
        ]
    );
    let failed_quota = &rows[2];
    assert!(failed_quota
        .4
        .as_deref()
        .unwrap()
        .contains("max_connectors"));
    let reset = &rows[7].3;
    assert_eq!(reset["before"]["offset_epoch"], 0);
    assert_eq!(reset["after"]["offset_epoch"], 1);
    assert_eq!(reset["before"]["offsets"][0]["source_offset"]["pos"], 154);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mappings_scripts_and_alerts() {
    let (_s, mut c) = metadb().await;
    let a = alice();
    let key = SecretKey::generate();
    task::create(&mut c, &a, "default", &task_spec("t"), Some(&key))
        .await
        .unwrap();
    let (m, _) = mapping::create(&mut c, &a, "default", "t", &mapping_spec("orders"))
        .await
        .unwrap();
    assert_eq!(m.source_table_fqn, "shop.orders");
    // The same source table twice: refused.
    let e = mapping::create(&mut c, &a, "default", "t", &mapping_spec("orders"))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("already mapped"), "{e}");
    // A bad transform fails validation; the mapping is unchanged.
    let bad = MappingPatch {
        transform_rules: Some(json!([{"column": "x", "transform_type": "NOPE"}])),
        ..Default::default()
    };
    let e = mapping::update(&mut c, &a, "default", "t", "shop.orders", &bad)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("NOPE"), "{e}");
    let at = MappingRef {
        tenant_code: "default",
        task_code: "t",
        mapping: "shop.orders",
    };
    let groovy = ScriptSpec {
        script_name: "g".into(),
        script_type: "GROOVY".into(),
        script_content: "return record".into(),
        ..Default::default()
    };
    let e = script::create(&mut c, &a, at, &groovy)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("GROOVY") && e.contains("cannot run"), "{e}");
    let js = ScriptSpec {
        script_name: "js".into(),
        script_type: "javascript".into(),
        script_content: "function transform(record, params) { return record; }".into(),
        ..Default::default()
    };
    let s = script::create(&mut c, &a, at, &js).await.unwrap();
    assert_eq!(s.script_type, "JAVASCRIPT");
    let broken = ScriptPatch {
        script_content: Some("function transform(record {".into()),
        ..Default::default()
    };
    assert!(script::update(&mut c, &a, at, "js", &broken).await.is_err());
    script::delete(&mut c, &a, at, "js").await.unwrap();
    let (_, after) = mapping::update(
        &mut c,
        &a,
        "default",
        "t",
        &m.mapping_id.to_string(),
        &MappingPatch {
            batch_size: Some(50),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(after.batch_size, 50);
    mapping::delete(&mut c, &a, "default", "t", "shop.orders")
        .await
        .unwrap();
    assert!(crate::meta::model::mappings(&c, m.task_id)
        .await
        .unwrap()
        .is_empty());

    // Alerts: ack, then resolve; acking again is refused.
    let id: uuid::Uuid = c
        .query_one(
            "INSERT INTO alert_records (task_id, alert_type, alert_level, alert_title) \
             VALUES ($1, 'HIGH_LAG', 'P1', 'lag') RETURNING alert_id",
            &[&m.task_id],
        )
        .await
        .unwrap()
        .get(0);
    let (_, acked) = alert::acknowledge(&mut c, &a, id).await.unwrap();
    assert_eq!(
        (acked.status.as_str(), acked.acknowledged_by.as_deref()),
        ("ACKNOWLEDGED", Some("alice"))
    );
    assert!(alert::acknowledge(&mut c, &a, id).await.is_err());
    let (_, done) = alert::resolve(&mut c, &a, id, Some("fixed")).await.unwrap();
    assert_eq!(done.resolution_note.as_deref(), Some("fixed"));
    let open = alert::list(
        &c,
        &alert::AlertFilter {
            status: Some("OPEN".into()),
            limit: 10,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert!(open.is_empty());
    let st = fleet::status(&c).await.unwrap();
    assert_eq!(st.schema_version, st.expected_version);
    assert!(st.pending_migrations.is_empty());
}
