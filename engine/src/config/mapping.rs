//! `[[task.mapping]]`: how source tables map to target tables.

use serde::Deserialize;

use crate::schema::TableId;

/// Routes one source table to one target table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MappingConfig {
    /// `schema.table` in the source.
    pub source: String,
    /// `schema.table` in the target (default: same as `source`).
    pub target: Option<String>,
}

impl MappingConfig {
    pub fn source_id(&self) -> TableId {
        TableId::parse(&self.source, "public")
    }
    pub fn target_id(&self) -> TableId {
        TableId::parse(self.target.as_deref().unwrap_or(&self.source), "public")
    }
}
