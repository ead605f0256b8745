//! Where dbsync's state lives. For now: the embedded RocksDB checkpoint store
//! ([`RocksCheckpointStore`]); the metadata PostgreSQL database comes later.

pub mod rocks;

pub use rocks::{RocksCheckpointStore, StoreError};
