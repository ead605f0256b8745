//! PostgreSQL (and later other) sources.
