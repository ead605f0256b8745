//! `dbsync check` for `[metastore]`: the metadata database and the key file.
//! The database's own tasks are not checked here (one bad task must not keep
//! the daemon from starting): the daemon marks such a task FAILED with the
//! reason.

use engine::config::MetastoreConfig;
use engine::CheckOutcome;
use metastore::meta::MetaDb;
use metastore::secrets::SecretKey;

pub async fn check(cfg: &MetastoreConfig) -> Vec<CheckOutcome> {
    let mut out = Vec::new();
    if let Some(path) = &cfg.secret_key_file {
        out.push(CheckOutcome {
            name: "ensure_secret_key_readable",
            result: SecretKey::load(path)
                .map(|_| format!("{} (owner-only)", path.display()))
                .map_err(|e| e.to_string()),
        });
    } else {
        out.push(CheckOutcome {
            name: "ensure_secret_key_readable",
            result: Ok("no secret_key_file: tasks must not store passwords".into()),
        });
    }
    let db = match MetaDb::new(cfg) {
        Ok(db) => db,
        Err(e) => {
            out.push(CheckOutcome {
                name: "ensure_metastore_reachable",
                result: Err(e.to_string()),
            });
            return out;
        }
    };
    let conn = match db.get().await {
        Ok(c) => c,
        Err(e) => {
            out.push(CheckOutcome {
                name: "ensure_metastore_reachable",
                result: Err(format!(
                    "{e}; check [metastore] url, password_env and that the database accepts this host"
                )),
            });
            return out;
        }
    };
    out.push(CheckOutcome {
        name: "ensure_metastore_reachable",
        result: Ok("connected".into()),
    });
    let writable = conn
        .query_one("SELECT NOT pg_is_in_recovery()", &[])
        .await
        .map(|r| r.get::<_, bool>(0));
    out.push(CheckOutcome {
        name: "ensure_metastore_writable",
        result: match writable {
            Ok(true) => Ok("primary".into()),
            Ok(false) => Err(
                "connected to a read-only standby: list the primary first or add \
                 target_session_attrs=read-write to [metastore] url"
                    .into(),
            ),
            Err(e) => Err(e.to_string()),
        },
    });
    out.push(CheckOutcome {
        name: "ensure_metastore_schema",
        result: metastore::meta::check_schema(&conn)
            .await
            .map(|()| format!("schema version {}", metastore::meta::SCHEMA_VERSION))
            .map_err(|e| e.to_string()),
    });
    out
}
