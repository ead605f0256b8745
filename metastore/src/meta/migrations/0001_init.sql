-- dbsync metadata database, version 1: the schema of the metadata-schema specification.
-- Every table has audit columns; important rows are soft-deleted (deleted_at) and every
-- query filters deleted_at IS NULL, so uniqueness holds among live rows (partial unique
-- indexes) and a deleted code can be used again.

CREATE EXTENSION IF NOT EXISTS pgcrypto;  -- gen_random_uuid() before PostgreSQL 13

CREATE TABLE tenants (
    tenant_id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_name             varchar(100) NOT NULL,
    tenant_code             varchar(50)  NOT NULL,
    description             text,
    contact_name            varchar(100),
    contact_email           varchar(200),
    contact_phone           varchar(50),
    max_connectors          integer NOT NULL DEFAULT 10 CHECK (max_connectors >= 0),
    max_tasks_per_connector integer NOT NULL DEFAULT 8 CHECK (max_tasks_per_connector > 0),
    max_throughput_tps      integer NOT NULL DEFAULT 10000 CHECK (max_throughput_tps > 0),
    status                  varchar(20) NOT NULL DEFAULT 'ACTIVE'
                            CHECK (status IN ('ACTIVE', 'SUSPENDED', 'INACTIVE')),
    config                  jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at              timestamptz NOT NULL DEFAULT now(),
    created_by              varchar(100) NOT NULL DEFAULT 'system',
    updated_at              timestamptz NOT NULL DEFAULT now(),
    updated_by              varchar(100) NOT NULL DEFAULT 'system',
    deleted_at              timestamptz
);
CREATE UNIQUE INDEX uq_tenants_code ON tenants (tenant_code) WHERE deleted_at IS NULL;
CREATE INDEX idx_tenants_status ON tenants (status) WHERE deleted_at IS NULL;
CREATE INDEX idx_tenants_code ON tenants (tenant_code);

CREATE TABLE sync_tasks (
    task_id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id                uuid NOT NULL REFERENCES tenants (tenant_id) ON DELETE CASCADE,
    task_name                varchar(200) NOT NULL,
    task_code                varchar(100) NOT NULL,
    description              text,
    source_db_type           varchar(20) NOT NULL
                             CHECK (source_db_type IN ('MYSQL', 'ORACLE', 'SQLSERVER', 'POSTGRESQL')),
    target_db_type           varchar(20) NOT NULL
                             CHECK (target_db_type IN ('MYSQL', 'ORACLE', 'SQLSERVER', 'POSTGRESQL')),
    source_connection_config jsonb NOT NULL,
    target_connection_config jsonb NOT NULL,
    connector_name           varchar(200),
    connector_config         jsonb NOT NULL DEFAULT '{}'::jsonb,
    sync_mode                varchar(20) NOT NULL DEFAULT 'FULL_INCREMENTAL'
                             CHECK (sync_mode IN ('FULL_ONLY', 'INCREMENTAL_ONLY', 'FULL_INCREMENTAL')),
    status                   varchar(20) NOT NULL DEFAULT 'CREATED'
                             CHECK (status IN ('CREATED', 'RUNNING', 'PAUSED', 'STOPPED', 'FAILED', 'COMPLETED')),
    health_status            varchar(20) NOT NULL DEFAULT 'UNKNOWN'
                             CHECK (health_status IN ('HEALTHY', 'DEGRADED', 'UNHEALTHY', 'UNKNOWN')),
    last_error               text,
    error_count              integer NOT NULL DEFAULT 0,
    total_records_synced     bigint NOT NULL DEFAULT 0,
    last_sync_time           timestamptz,
    alert_config             jsonb NOT NULL DEFAULT '{}'::jsonb,
    schedule_config          jsonb,
    -- dbsync: incremented by `dbsync task reset-offset`; a daemon keeps its local checkpoint
    -- under (task_id, offset_epoch), so a reset starts from nothing on every host.
    offset_epoch             integer NOT NULL DEFAULT 0,
    created_at               timestamptz NOT NULL DEFAULT now(),
    created_by               varchar(100) NOT NULL DEFAULT 'system',
    updated_at               timestamptz NOT NULL DEFAULT now(),
    updated_by               varchar(100) NOT NULL DEFAULT 'system',
    deleted_at               timestamptz
);
CREATE UNIQUE INDEX uq_sync_tasks_code ON sync_tasks (tenant_id, task_code) WHERE deleted_at IS NULL;
CREATE UNIQUE INDEX uq_sync_tasks_connector ON sync_tasks (connector_name) WHERE deleted_at IS NULL;
CREATE INDEX idx_sync_tasks_tenant ON sync_tasks (tenant_id) WHERE deleted_at IS NULL;
CREATE INDEX idx_sync_tasks_status ON sync_tasks (status) WHERE deleted_at IS NULL;
CREATE INDEX idx_sync_tasks_health ON sync_tasks (health_status) WHERE deleted_at IS NULL;
CREATE INDEX idx_sync_tasks_connector ON sync_tasks (connector_name) WHERE deleted_at IS NULL;
CREATE INDEX idx_sync_tasks_source_type ON sync_tasks (source_db_type) WHERE deleted_at IS NULL;
CREATE INDEX idx_sync_tasks_target_type ON sync_tasks (target_db_type) WHERE deleted_at IS NULL;
CREATE INDEX idx_sync_tasks_tenant_status ON sync_tasks (tenant_id, status) WHERE deleted_at IS NULL;
CREATE INDEX idx_sync_tasks_source_conn ON sync_tasks USING gin (source_connection_config);
CREATE INDEX idx_sync_tasks_target_conn ON sync_tasks USING gin (target_connection_config);
CREATE INDEX idx_sync_tasks_source_host ON sync_tasks ((source_connection_config ->> 'host'))
    WHERE deleted_at IS NULL;

CREATE TABLE table_mappings (
    mapping_id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    task_id              uuid NOT NULL REFERENCES sync_tasks (task_id) ON DELETE CASCADE,
    source_schema        varchar(128),
    source_table         varchar(128) NOT NULL,
    source_table_fqn     varchar(257) GENERATED ALWAYS AS (
                             CASE WHEN source_schema IS NULL THEN source_table
                                  ELSE source_schema || '.' || source_table END) STORED,
    target_schema        varchar(128),
    target_table         varchar(128) NOT NULL,
    target_table_fqn     varchar(257) GENERATED ALWAYS AS (
                             CASE WHEN target_schema IS NULL THEN target_table
                                  ELSE target_schema || '.' || target_table END) STORED,
    column_mappings      jsonb NOT NULL DEFAULT '[]'::jsonb CHECK (jsonb_typeof(column_mappings) = 'array'),
    primary_key_mapping  jsonb,
    row_filter_condition text,
    column_filter        jsonb NOT NULL DEFAULT '[]'::jsonb CHECK (jsonb_typeof(column_filter) = 'array'),
    transform_rules      jsonb NOT NULL DEFAULT '[]'::jsonb CHECK (jsonb_typeof(transform_rules) = 'array'),
    conflict_resolution  varchar(20) NOT NULL DEFAULT 'UPSERT'
                         CHECK (conflict_resolution IN ('UPSERT', 'INSERT_ONLY', 'UPDATE_ONLY', 'IGNORE')),
    batch_size           integer NOT NULL DEFAULT 1000 CHECK (batch_size > 0),
    batch_timeout_ms     integer NOT NULL DEFAULT 5000 CHECK (batch_timeout_ms > 0),
    is_enabled           boolean NOT NULL DEFAULT true,
    total_rows_synced    bigint NOT NULL DEFAULT 0,
    last_sync_time       timestamptz,
    created_at           timestamptz NOT NULL DEFAULT now(),
    created_by           varchar(100) NOT NULL DEFAULT 'system',
    updated_at           timestamptz NOT NULL DEFAULT now(),
    updated_by           varchar(100) NOT NULL DEFAULT 'system',
    deleted_at           timestamptz
);
CREATE UNIQUE INDEX uq_table_mappings_source
    ON table_mappings (task_id, coalesce(source_schema, ''), source_table) WHERE deleted_at IS NULL;
CREATE INDEX idx_table_mappings_task ON table_mappings (task_id) WHERE deleted_at IS NULL;

CREATE TABLE transform_scripts (
    script_id                 uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    mapping_id                uuid NOT NULL REFERENCES table_mappings (mapping_id) ON DELETE CASCADE,
    script_name               varchar(200) NOT NULL,
    script_type               varchar(20) NOT NULL
                              CHECK (script_type IN ('GROOVY', 'JAVASCRIPT', 'SQL', 'PYTHON')),
    trigger_phase             varchar(20) NOT NULL DEFAULT 'BEFORE_WRITE'
                              CHECK (trigger_phase IN ('BEFORE_TRANSFORM', 'AFTER_TRANSFORM', 'BEFORE_WRITE', 'AFTER_WRITE')),
    script_content            text NOT NULL,
    execution_order           integer NOT NULL DEFAULT 0,
    script_params             jsonb NOT NULL DEFAULT '{}'::jsonb,
    is_enabled                boolean NOT NULL DEFAULT true,
    error_handling            varchar(20) NOT NULL DEFAULT 'THROW_EXCEPTION'
                              CHECK (error_handling IN ('LOG_AND_CONTINUE', 'THROW_EXCEPTION', 'SKIP_RECORD')),
    timeout_ms                integer NOT NULL DEFAULT 5000 CHECK (timeout_ms > 0),
    execution_count           bigint NOT NULL DEFAULT 0,
    last_execution_time       timestamptz,
    average_execution_time_ms double precision NOT NULL DEFAULT 0,
    created_at                timestamptz NOT NULL DEFAULT now(),
    created_by                varchar(100) NOT NULL DEFAULT 'system',
    updated_at                timestamptz NOT NULL DEFAULT now(),
    updated_by                varchar(100) NOT NULL DEFAULT 'system',
    deleted_at                timestamptz
);
CREATE INDEX idx_transform_scripts_mapping ON transform_scripts (mapping_id, execution_order)
    WHERE deleted_at IS NULL;

CREATE TABLE sync_offsets (
    offset_id        uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    task_id          uuid NOT NULL REFERENCES sync_tasks (task_id) ON DELETE CASCADE,
    source_partition jsonb NOT NULL,
    source_offset    jsonb NOT NULL,
    snapshot_offset  jsonb,
    -- dbsync: an order-preserving encoding of the position (commit position, ordinal), so
    -- that the mirror's upsert can refuse to move backward in SQL; NULL before the stream
    -- is positioned.
    position_key     bytea,
    -- dbsync: the whole checkpoint as the daemon stores it in RocksDB (resume on a new host).
    checkpoint       jsonb,
    -- dbsync: the lease epoch of the daemon that wrote it (fencing).
    written_epoch    bigint NOT NULL DEFAULT 0,
    last_updated     timestamptz NOT NULL DEFAULT now(),
    UNIQUE (task_id, source_partition)
);

-- dbsync: what a source must remember beside its position (a binlog source's schema
-- history), mirrored from RocksDB so that a task resumes on a new host.
CREATE TABLE sync_source_state (
    task_id      uuid NOT NULL REFERENCES sync_tasks (task_id) ON DELETE CASCADE,
    offset_epoch integer NOT NULL,
    state_key    text NOT NULL,
    state_value  bytea NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (task_id, offset_epoch, state_key)
);

CREATE TABLE sync_metrics (
    metric_id     uuid NOT NULL DEFAULT gen_random_uuid(),
    task_id       uuid NOT NULL REFERENCES sync_tasks (task_id) ON DELETE CASCADE,
    metric_type   varchar(20) NOT NULL
                  CHECK (metric_type IN ('THROUGHPUT', 'LATENCY', 'LAG', 'ERROR_RATE', 'CPU', 'MEMORY')),
    metric_value  jsonb NOT NULL,
    time_window   varchar(10) NOT NULL DEFAULT '1MIN'
                  CHECK (time_window IN ('REALTIME', '1MIN', '5MIN', '15MIN', '1HOUR', '1DAY')),
    recorded_at   timestamptz NOT NULL DEFAULT now(),
    recorded_date date GENERATED ALWAYS AS ((recorded_at AT TIME ZONE 'UTC')::date) STORED,
    -- PostgreSQL cannot partition on a generated column, so the monthly partitions are
    -- ranges of recorded_at at UTC month boundaries: the same months as recorded_date.
    PRIMARY KEY (metric_id, recorded_at)
) PARTITION BY RANGE (recorded_at);
CREATE INDEX idx_sync_metrics_task_type ON sync_metrics (task_id, metric_type, time_window, recorded_at DESC);
CREATE INDEX idx_sync_metrics_date ON sync_metrics (recorded_date);

CREATE TABLE alert_records (
    alert_id        uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    task_id         uuid REFERENCES sync_tasks (task_id) ON DELETE SET NULL,
    alert_type      varchar(30) NOT NULL
                    CHECK (alert_type IN ('HIGH_LAG', 'HIGH_ERROR_RATE', 'CONNECTOR_FAILED', 'HIGH_LATENCY', 'RESOURCE_EXHAUSTED')),
    alert_level     varchar(2) NOT NULL CHECK (alert_level IN ('P0', 'P1', 'P2', 'P3')),
    alert_title     varchar(300) NOT NULL,
    alert_message   text,
    alert_details   jsonb NOT NULL DEFAULT '{}'::jsonb,
    status          varchar(20) NOT NULL DEFAULT 'OPEN'
                    CHECK (status IN ('OPEN', 'ACKNOWLEDGED', 'RESOLVED', 'IGNORED')),
    acknowledged_at timestamptz,
    acknowledged_by varchar(100),
    resolved_at     timestamptz,
    resolved_by     varchar(100),
    resolution_note text,
    triggered_at    timestamptz NOT NULL DEFAULT now(),
    created_at      timestamptz NOT NULL DEFAULT now(),
    created_by      varchar(100) NOT NULL DEFAULT 'system',
    updated_at      timestamptz NOT NULL DEFAULT now(),
    updated_by      varchar(100) NOT NULL DEFAULT 'system'
);
-- At most one unresolved alert of a type per task: the daemon never opens a duplicate.
CREATE UNIQUE INDEX uq_alert_records_active ON alert_records (task_id, alert_type)
    WHERE status IN ('OPEN', 'ACKNOWLEDGED');
CREATE INDEX idx_alert_records_status ON alert_records (status, triggered_at DESC);
CREATE INDEX idx_alert_records_task ON alert_records (task_id, triggered_at DESC);

CREATE TABLE audit_logs (
    log_id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id         uuid REFERENCES tenants (tenant_id) ON DELETE SET NULL,
    operation_type    varchar(50) NOT NULL,
    resource_type     varchar(20) NOT NULL CHECK (resource_type IN ('TASK', 'MAPPING', 'SCRIPT', 'TENANT', 'ALERT', 'OFFSET')),
    resource_id       uuid,
    operation_details jsonb NOT NULL DEFAULT '{}'::jsonb,
    status            varchar(20) NOT NULL DEFAULT 'SUCCESS' CHECK (status IN ('SUCCESS', 'FAILED', 'PARTIAL')),
    error_message     text,
    operator          varchar(100) NOT NULL,
    operator_ip       varchar(64),
    user_agent        varchar(300),
    operated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX idx_audit_logs_tenant ON audit_logs (tenant_id, operated_at DESC);
CREATE INDEX idx_audit_logs_resource ON audit_logs (resource_type, resource_id, operated_at DESC);
CREATE INDEX idx_audit_logs_time ON audit_logs (operated_at);

-- dbsync: which daemon owns which task. A lease is held until expires_at (database
-- clock); every acquisition increments epoch, the fencing token that the owner's
-- offset writes must carry.
CREATE TABLE task_leases (
    task_id     uuid PRIMARY KEY REFERENCES sync_tasks (task_id) ON DELETE CASCADE,
    owner       varchar(200) NOT NULL,
    epoch       bigint NOT NULL,
    acquired_at timestamptz NOT NULL DEFAULT now(),
    renewed_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL
);
CREATE INDEX idx_task_leases_owner ON task_leases (owner);

-- dbsync: the daemons sharing this database, for operators (`dbsync task list` shows owners).
CREATE TABLE daemon_nodes (
    node_id    varchar(200) PRIMARY KEY,
    hostname   varchar(200),
    version    varchar(50),
    started_at timestamptz NOT NULL DEFAULT now(),
    last_seen  timestamptz NOT NULL DEFAULT now()
);

-- Configuration changes wake the daemons (LISTEN dbsync_config); the payload is the table.
CREATE FUNCTION dbsync_notify_config() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('dbsync_config', TG_TABLE_NAME);
    RETURN NULL;
END $$;
CREATE TRIGGER trg_tenants_notify AFTER INSERT OR UPDATE OR DELETE ON tenants
    FOR EACH STATEMENT EXECUTE FUNCTION dbsync_notify_config();
CREATE TRIGGER trg_sync_tasks_notify AFTER INSERT OR UPDATE OF
    tenant_id, task_name, source_db_type, target_db_type, source_connection_config,
    target_connection_config, connector_config, sync_mode, status, alert_config,
    schedule_config, offset_epoch, deleted_at
    OR DELETE ON sync_tasks
    FOR EACH STATEMENT EXECUTE FUNCTION dbsync_notify_config();
CREATE TRIGGER trg_table_mappings_notify AFTER INSERT OR UPDATE OF
    source_schema, source_table, target_schema, target_table, column_mappings,
    primary_key_mapping, row_filter_condition, column_filter, transform_rules,
    conflict_resolution, batch_size, batch_timeout_ms, is_enabled, deleted_at
    OR DELETE ON table_mappings
    FOR EACH STATEMENT EXECUTE FUNCTION dbsync_notify_config();
CREATE TRIGGER trg_transform_scripts_notify AFTER INSERT OR UPDATE OF
    script_name, script_type, trigger_phase, script_content, execution_order,
    script_params, is_enabled, error_handling, timeout_ms, deleted_at
    OR DELETE ON transform_scripts
    FOR EACH STATEMENT EXECUTE FUNCTION dbsync_notify_config();

INSERT INTO tenants (tenant_name, tenant_code, description)
VALUES ('Default tenant', 'default', 'Created at initialization');
