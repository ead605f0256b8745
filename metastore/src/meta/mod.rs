//! The metadata PostgreSQL database (`../shared/spec/metadata-schema.md` in
//! the design notes; `docs/ARCHITECTURE.md` for how dbsync uses it): schema
//! migrations, the connection pool, and the repositories the daemon and the
//! CLI use.

pub mod error;
pub mod leases;
pub mod maintenance;
pub mod migrate;
pub mod model;
pub mod monitoring;
pub mod offsets;
pub mod ops;
pub mod pool;
pub mod runstate;

pub use error::{MetaError, MetaResult};
pub use migrate::{check_schema, migrate, SCHEMA_VERSION};
pub use pool::{MetaConn, MetaDb};
