//! dbsync sources: PostgreSQL (logical replication) and MySQL/MariaDB (binlog).

pub mod mysql;
pub mod postgres;
