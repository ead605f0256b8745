//! Target writers.

pub mod mysql;
pub mod postgres;
