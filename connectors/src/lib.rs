//! PostgreSQL (and later other) sources.

pub mod postgres;
