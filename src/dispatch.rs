//! Picks the source and sink implementations a task's configuration names.
//! `Source` and `Sink` use native async functions (not object-safe), so the
//! choice is an enum with one variant per implementation.

use std::sync::Arc;

use connectors::mysql::MysqlSource;
use connectors::postgres::PostgresSource;
use engine::config::{SourceConfig, TargetConfig, TaskConfig};
use engine::{CheckOutcome, Sink, Source, SourceContext, TableChanges, TableId, TableSchema};
use sinks::mysql::MysqlSink;
use sinks::postgres::PostgresSink;

pub enum AnySource {
    Postgres(PostgresSource),
    Mysql(MysqlSource),
}

impl AnySource {
    pub fn for_task(task: &TaskConfig) -> engine::Result<Self> {
        match &task.source {
            SourceConfig::Postgresql(_) => Ok(AnySource::Postgres(PostgresSource::new(task)?)),
            SourceConfig::Mysql(_) => Ok(AnySource::Mysql(MysqlSource::new(task)?)),
        }
    }

    /// Every prerequisite check of the source (never creates anything).
    pub async fn check(&self) -> Vec<CheckOutcome> {
        match self {
            AnySource::Postgres(s) => s.check().await,
            AnySource::Mysql(s) => s.check().await,
        }
    }
}

impl Source for AnySource {
    async fn run(self, ctx: SourceContext) -> engine::Result<()> {
        match self {
            AnySource::Postgres(s) => s.run(ctx).await,
            AnySource::Mysql(s) => s.run(ctx).await,
        }
    }
}

pub enum AnySink {
    Postgres(PostgresSink),
    Mysql(MysqlSink),
}

impl AnySink {
    pub async fn connect(task: &TaskConfig) -> engine::Result<Self> {
        match &task.target {
            TargetConfig::Postgresql(t) => Ok(AnySink::Postgres(PostgresSink::connect(t).await?)),
            TargetConfig::Mysql(t) => Ok(AnySink::Mysql(MysqlSink::connect(t).await?)),
        }
    }

    /// The target's checks: reachable with the configured credentials.
    pub async fn check(task: &TaskConfig) -> Vec<CheckOutcome> {
        let (name, url) = match &task.target {
            TargetConfig::Postgresql(t) => ("ensure_target_reachable", t.url.redacted()),
            TargetConfig::Mysql(t) => ("ensure_target_reachable", t.url.redacted()),
        };
        vec![CheckOutcome {
            name,
            result: Self::connect(task)
                .await
                .map(|_| format!("connected to {url}"))
                .map_err(|e| e.to_string()),
        }]
    }
}

impl Sink for AnySink {
    async fn ensure_table(&mut self, table: &Arc<TableSchema>) -> engine::Result<()> {
        match self {
            AnySink::Postgres(s) => s.ensure_table(table).await,
            AnySink::Mysql(s) => s.ensure_table(table).await,
        }
    }
    async fn begin(&mut self) -> engine::Result<()> {
        match self {
            AnySink::Postgres(s) => s.begin().await,
            AnySink::Mysql(s) => s.begin().await,
        }
    }
    async fn apply(&mut self, changes: &TableChanges) -> engine::Result<()> {
        match self {
            AnySink::Postgres(s) => s.apply(changes).await,
            AnySink::Mysql(s) => s.apply(changes).await,
        }
    }
    async fn truncate(&mut self, table: &TableId) -> engine::Result<()> {
        match self {
            AnySink::Postgres(s) => s.truncate(table).await,
            AnySink::Mysql(s) => s.truncate(table).await,
        }
    }
    async fn commit(&mut self) -> engine::Result<()> {
        match self {
            AnySink::Postgres(s) => s.commit().await,
            AnySink::Mysql(s) => s.commit().await,
        }
    }
    async fn rollback(&mut self) -> engine::Result<()> {
        match self {
            AnySink::Postgres(s) => s.rollback().await,
            AnySink::Mysql(s) => s.rollback().await,
        }
    }
    async fn rename_table(&mut self, from: &TableId, to: &TableId) -> engine::Result<()> {
        match self {
            AnySink::Postgres(s) => s.rename_table(from, to).await,
            AnySink::Mysql(s) => s.rename_table(from, to).await,
        }
    }
}
