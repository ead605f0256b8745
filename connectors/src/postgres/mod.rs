//! PostgreSQL source: logical replication (pgoutput) with a consistent,
//! resumable initial snapshot. See `source.rs` for the moving parts.

pub mod catalog;
pub mod checks;
pub mod client;
pub mod error;
pub mod lag;
pub mod pgoutput;
pub mod replication;
pub mod snapshot;
pub mod source;
pub mod types;

pub use error::PgSourceError;
pub use source::PostgresSource;
