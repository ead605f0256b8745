//! Target writers.

pub mod postgres;
