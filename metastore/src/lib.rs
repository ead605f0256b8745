//! Where dbsync's state lives: the embedded RocksDB checkpoint store
//! ([`RocksCheckpointStore`]) and the metadata PostgreSQL database ([`meta`]).

pub mod meta;
pub mod rocks;
pub mod secrets;

pub use rocks::{RocksCheckpointStore, StoreError};
