//! Transform scripts of a mapping: create, update, soft delete. GROOVY and
//! PYTHON are refused (the daemon cannot run them); a JAVASCRIPT or SQL
//! script is validated with its mapping as the daemon will load it.

use serde::Deserialize;
use serde_json::{json, Value as Json};
use tokio_postgres::{Client, GenericClient};
use uuid::Uuid;

use super::audit::{self, AuditEvent, Operation};
use super::mapping;
use super::validate::{self as v, ERROR_HANDLINGS, SCRIPT_TYPES, TRIGGER_PHASES};
use super::{as_uuid, begin, commit, lock_task, lock_tenant, Actor};
use crate::meta::error::{MetaError, MetaResult};
use crate::meta::model::{Mapping, Script, Tenant, SCRIPT_COLUMNS};

/// A new script (`--file script.json`, flags, or inside a mapping).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptSpec {
    pub script_name: String,
    pub script_type: String,
    /// Default: BEFORE_WRITE.
    #[serde(default)]
    pub trigger_phase: Option<String>,
    pub script_content: String,
    #[serde(default)]
    pub execution_order: Option<i32>,
    #[serde(default)]
    pub script_params: Option<Json>,
    #[serde(default)]
    pub is_enabled: Option<bool>,
    /// Default: THROW_EXCEPTION.
    #[serde(default)]
    pub error_handling: Option<String>,
    #[serde(default)]
    pub timeout_ms: Option<i32>,
}

/// Changes to a script; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptPatch {
    #[serde(default)]
    pub script_name: Option<String>,
    #[serde(default)]
    pub script_type: Option<String>,
    #[serde(default)]
    pub trigger_phase: Option<String>,
    #[serde(default)]
    pub script_content: Option<String>,
    #[serde(default)]
    pub execution_order: Option<i32>,
    #[serde(default)]
    pub script_params: Option<Json>,
    #[serde(default)]
    pub is_enabled: Option<bool>,
    #[serde(default)]
    pub error_handling: Option<String>,
    #[serde(default)]
    pub timeout_ms: Option<i32>,
}

impl ScriptPatch {
    pub fn is_empty(&self) -> bool {
        self.script_name.is_none()
            && self.script_type.is_none()
            && self.trigger_phase.is_none()
            && self.script_content.is_none()
            && self.execution_order.is_none()
            && self.script_params.is_none()
            && self.is_enabled.is_none()
            && self.error_handling.is_none()
            && self.timeout_ms.is_none()
    }
}

/// Checks every field of `s`.
pub(crate) fn check(s: &mut Script) -> MetaResult<()> {
    s.script_name = v::text("script_name", &s.script_name, 200)?;
    s.script_type = v::choice("script_type", &s.script_type, SCRIPT_TYPES)?;
    if !v::RUNNABLE_SCRIPT_TYPES.contains(&s.script_type.as_str()) {
        return Err(MetaError::Invalid(format!(
            "script {:?}: script_type {} cannot run in dbsync (the daemon runs JAVASCRIPT — \
             `function transform(record, params)` — and SQL scripts only): rewrite it in one of those",
            s.script_name, s.script_type
        )));
    }
    s.trigger_phase = v::choice("trigger_phase", &s.trigger_phase, TRIGGER_PHASES)?;
    if s.script_content.trim().is_empty() {
        return Err(MetaError::Invalid(format!(
            "script {:?}: script_content is empty",
            s.script_name
        )));
    }
    v::object("script_params", &s.script_params)?;
    s.error_handling = v::choice("error_handling", &s.error_handling, ERROR_HANDLINGS)?;
    v::int_range("timeout_ms", s.timeout_ms, 1, 600_000)?;
    Ok(())
}

/// A script row (not yet stored) from a spec, checked.
pub(crate) fn from_spec(spec: &ScriptSpec, mapping_id: Uuid, actor: &Actor) -> MetaResult<Script> {
    let now = chrono::Utc::now();
    let mut s = Script {
        script_id: Uuid::nil(),
        mapping_id,
        script_name: spec.script_name.clone(),
        script_type: spec.script_type.clone(),
        trigger_phase: spec
            .trigger_phase
            .clone()
            .unwrap_or_else(|| "BEFORE_WRITE".into()),
        script_content: spec.script_content.clone(),
        execution_order: spec.execution_order.unwrap_or(0),
        script_params: spec.script_params.clone().unwrap_or_else(|| json!({})),
        is_enabled: spec.is_enabled.unwrap_or(true),
        error_handling: spec
            .error_handling
            .clone()
            .unwrap_or_else(|| "THROW_EXCEPTION".into()),
        timeout_ms: spec.timeout_ms.unwrap_or(5000),
        execution_count: 0,
        last_execution_time: None,
        average_execution_time_ms: 0.0,
        created_at: now,
        created_by: actor.operator().into(),
        updated_at: now,
        updated_by: actor.operator().into(),
    };
    check(&mut s)?;
    Ok(s)
}

/// Script names are unique among a mapping's live scripts (they name the
/// script in errors and statistics).
pub(crate) fn check_name_free(scripts: &[Script], name: &str, except: Uuid) -> MetaResult<()> {
    if scripts
        .iter()
        .any(|s| s.script_name == name.trim() && (except.is_nil() || s.script_id != except))
    {
        return Err(MetaError::Conflict(format!(
            "the mapping already has a script named {:?}: choose another name or update that one",
            name.trim()
        )));
    }
    Ok(())
}

/// The script as `engine::config::ScriptConfig` reads it.
pub(crate) fn engine_json(s: &Script) -> Json {
    json!({
        "script_id": s.script_id.to_string(),
        "script_name": s.script_name,
        "script_type": s.script_type,
        "trigger_phase": s.trigger_phase,
        "script_content": s.script_content,
        "execution_order": s.execution_order,
        "script_params": s.script_params,
        "is_enabled": s.is_enabled,
        "error_handling": s.error_handling,
        "timeout_ms": s.timeout_ms,
    })
}

/// Inserts a checked script row with its audit row.
pub(crate) async fn insert_row(
    c: &impl GenericClient,
    actor: &Actor,
    tenant: &Tenant,
    s: &Script,
) -> MetaResult<Script> {
    let row = c
        .query_one(
            &format!(
                "INSERT INTO transform_scripts (mapping_id, script_name, script_type, \
                 trigger_phase, script_content, execution_order, script_params, is_enabled, \
                 error_handling, timeout_ms, created_by, updated_by) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11) \
                 RETURNING {SCRIPT_COLUMNS}"
            ),
            &[
                &s.mapping_id,
                &s.script_name,
                &s.script_type,
                &s.trigger_phase,
                &s.script_content,
                &s.execution_order,
                &s.script_params,
                &s.is_enabled,
                &s.error_handling,
                &s.timeout_ms,
                &actor.operator(),
            ],
        )
        .await
        .map_err(|e| MetaError::query("create the script", e))?;
    let created = Script::from_row(&row);
    let event = AuditEvent::new(
        Operation::CreateScript,
        Some(tenant.tenant_id),
        Some(created.script_id),
        None::<&Script>,
        Some(&created),
    );
    audit::record(c, actor, &event, None).await?;
    Ok(created)
}

/// Where a script operation acts: tenant, task and mapping codes.
#[derive(Debug, Clone, Copy)]
pub struct MappingRef<'a> {
    pub tenant_code: &'a str,
    pub task_code: &'a str,
    /// The mapping's source table (`schema.table`) or id.
    pub mapping: &'a str,
}

/// Finds one script among `scripts` by id or name.
fn pick(m: &Mapping, scripts: &[Script], selector: &str) -> MetaResult<Script> {
    let id = as_uuid(selector);
    scripts
        .iter()
        .find(|s| Some(s.script_id) == id || s.script_name == selector.trim())
        .cloned()
        .ok_or_else(|| {
            MetaError::NotFound(format!(
                "script {selector:?} of mapping {}",
                m.source_table_fqn
            ))
        })
}

/// Creates a script in a mapping, validated with the mapping's other scripts.
pub async fn create(
    c: &mut Client,
    actor: &Actor,
    at: MappingRef<'_>,
    spec: &ScriptSpec,
) -> MetaResult<Script> {
    let tx = begin(c, "create a script").await?;
    let tenant = lock_tenant(&tx, at.tenant_code).await?;
    let task = lock_task(&tx, &tenant, at.task_code).await?;
    let m = mapping::find(&tx, &task, at.mapping, true).await?;
    let mut scripts = mapping::lock_scripts(&tx, m.mapping_id).await?;
    let s = from_spec(spec, m.mapping_id, actor)?;
    check_name_free(&scripts, &s.script_name, Uuid::nil())?;
    scripts.push(s.clone());
    let mut checked = m.clone();
    mapping::check(&mut checked, &scripts)?;
    let created = insert_row(&tx, actor, &tenant, &s).await?;
    commit(tx, "create a script").await?;
    Ok(created)
}

/// Applies `patch` to a script; returns the row before and after.
pub async fn update(
    c: &mut Client,
    actor: &Actor,
    at: MappingRef<'_>,
    selector: &str,
    patch: &ScriptPatch,
) -> MetaResult<(Script, Script)> {
    if patch.is_empty() {
        return Err(MetaError::Invalid(
            "nothing to change: give at least one field to update".into(),
        ));
    }
    let tx = begin(c, "update a script").await?;
    let tenant = lock_tenant(&tx, at.tenant_code).await?;
    let task = lock_task(&tx, &tenant, at.task_code).await?;
    let m = mapping::find(&tx, &task, at.mapping, true).await?;
    let mut scripts = mapping::lock_scripts(&tx, m.mapping_id).await?;
    let before = pick(&m, &scripts, selector)?;
    let mut s = before.clone();
    let text = |dst: &mut String, src: &Option<String>| {
        if let Some(x) = src {
            *dst = x.clone();
        }
    };
    text(&mut s.script_name, &patch.script_name);
    text(&mut s.script_type, &patch.script_type);
    text(&mut s.trigger_phase, &patch.trigger_phase);
    text(&mut s.script_content, &patch.script_content);
    text(&mut s.error_handling, &patch.error_handling);
    s.execution_order = patch.execution_order.unwrap_or(s.execution_order);
    if let Some(p) = &patch.script_params {
        s.script_params = p.clone();
    }
    s.is_enabled = patch.is_enabled.unwrap_or(s.is_enabled);
    s.timeout_ms = patch.timeout_ms.unwrap_or(s.timeout_ms);
    check(&mut s)?;
    check_name_free(&scripts, &s.script_name, s.script_id)?;
    for x in scripts.iter_mut().filter(|x| x.script_id == s.script_id) {
        *x = s.clone();
    }
    let mut checked = m.clone();
    mapping::check(&mut checked, &scripts)?;
    let row = tx
        .query_one(
            &format!(
                "UPDATE transform_scripts SET script_name = $2, script_type = $3, \
                 trigger_phase = $4, script_content = $5, execution_order = $6, \
                 script_params = $7, is_enabled = $8, error_handling = $9, timeout_ms = $10, \
                 updated_by = $11, updated_at = now() \
                 WHERE script_id = $1 AND deleted_at IS NULL RETURNING {SCRIPT_COLUMNS}"
            ),
            &[
                &s.script_id,
                &s.script_name,
                &s.script_type,
                &s.trigger_phase,
                &s.script_content,
                &s.execution_order,
                &s.script_params,
                &s.is_enabled,
                &s.error_handling,
                &s.timeout_ms,
                &actor.operator(),
            ],
        )
        .await
        .map_err(|e| MetaError::query("update the script", e))?;
    let after = Script::from_row(&row);
    let event = AuditEvent::new(
        Operation::UpdateScript,
        Some(tenant.tenant_id),
        Some(after.script_id),
        Some(&before),
        Some(&after),
    );
    audit::record(&tx, actor, &event, None).await?;
    commit(tx, "update a script").await?;
    Ok((before, after))
}

/// Soft-deletes a script.
pub async fn delete(
    c: &mut Client,
    actor: &Actor,
    at: MappingRef<'_>,
    selector: &str,
) -> MetaResult<Script> {
    let tx = begin(c, "delete a script").await?;
    let tenant = lock_tenant(&tx, at.tenant_code).await?;
    let task = lock_task(&tx, &tenant, at.task_code).await?;
    let m = mapping::find(&tx, &task, at.mapping, true).await?;
    let scripts = mapping::lock_scripts(&tx, m.mapping_id).await?;
    let s = pick(&m, &scripts, selector)?;
    tx.execute(
        "UPDATE transform_scripts SET deleted_at = now(), updated_at = now(), updated_by = $2 \
         WHERE script_id = $1 AND deleted_at IS NULL",
        &[&s.script_id, &actor.operator()],
    )
    .await
    .map_err(|e| MetaError::query("delete the script", e))?;
    let event = AuditEvent::new(
        Operation::DeleteScript,
        Some(tenant.tenant_id),
        Some(s.script_id),
        Some(&s),
        None::<&Script>,
    );
    audit::record(&tx, actor, &event, None).await?;
    commit(tx, "delete a script").await?;
    Ok(s)
}
