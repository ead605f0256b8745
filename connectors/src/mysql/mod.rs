//! MySQL / MariaDB source: a binlog replication client with a consistent,
//! resumable initial snapshot. See `source.rs` for the moving parts,
//! `binlog.rs` for where MySQL and MariaDB binlogs differ, `types.rs` for the
//! type mapping and `schema_history.rs` for how DDL is followed.

pub mod binlog;
pub mod catalog;
pub mod checks;
pub mod client;
pub mod ddl;
pub mod error;
pub mod gtid;
pub mod json;
pub mod reader;
pub mod rows;
pub mod schema;
pub mod schema_history;
pub mod snapshot;
pub mod source;
pub mod stream;
mod stream_query;
pub mod tablemap;
pub mod types;
pub mod values;

pub use error::MysqlSourceError;
pub use source::MysqlSource;
