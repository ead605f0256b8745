//! Table routing: which source tables are replicated, and to which target table.

use std::collections::HashMap;
use std::sync::Arc;

use crate::config::MappingConfig;
use crate::schema::{TableId, TableSchema};

/// Maps source table schemas to target table schemas. With no mappings every
/// table the source sends goes to the same-named target table.
#[derive(Default)]
pub struct TableRouter {
    routes: HashMap<TableId, TableId>,
    /// Cache keyed by the source schema's address; the source `Arc` is held so
    /// the address cannot be reused.
    mapped: HashMap<usize, (Arc<TableSchema>, Option<Arc<TableSchema>>)>,
}

impl TableRouter {
    pub fn new(mappings: &[MappingConfig]) -> Self {
        Self {
            routes: mappings
                .iter()
                .map(|m| (m.source_id(), m.target_id()))
                .collect(),
            mapped: HashMap::new(),
        }
    }

    /// The source tables to replicate, when the configuration lists them.
    pub fn source_tables(&self) -> Option<Vec<TableId>> {
        if self.routes.is_empty() {
            None
        } else {
            let mut v: Vec<_> = self.routes.keys().cloned().collect();
            v.sort();
            Some(v)
        }
    }

    /// The target schema for rows of `source`, or `None` when the table is not replicated.
    pub fn route(&mut self, source: &Arc<TableSchema>) -> Option<Arc<TableSchema>> {
        let addr = Arc::as_ptr(source) as usize;
        if let Some((_, mapped)) = self.mapped.get(&addr) {
            return mapped.clone();
        }
        let target_id = if self.routes.is_empty() {
            Some(source.id.clone())
        } else {
            self.routes.get(&source.id).cloned()
        };
        let mapped = target_id.map(|id| {
            if id == source.id {
                source.clone()
            } else {
                let mut s = TableSchema::clone(source);
                s.id = id;
                Arc::new(s)
            }
        });
        if self.mapped.len() > 10_000 {
            self.mapped.clear();
        }
        self.mapped.insert(addr, (source.clone(), mapped.clone()));
        mapped
    }
}
