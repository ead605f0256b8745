//! [`TimedSink`]: the time a target transaction spends in the sink.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::contracts::{Sink, TableChanges};
use crate::schema::{TableId, TableSchema};

/// A [`Sink`] wrapper that adds up the time spent in the wrapped sink's
/// calls (two clock reads per call; calls are per table and batch).
pub struct TimedSink<K> {
    inner: K,
    busy: Duration,
}

impl<K: Sink> TimedSink<K> {
    /// Wraps `inner`, with no time counted yet.
    pub fn new(inner: K) -> Self {
        Self {
            inner,
            busy: Duration::ZERO,
        }
    }

    /// Time spent in sink calls since the last call of this function.
    pub fn take_busy(&mut self) -> Duration {
        std::mem::take(&mut self.busy)
    }
}

impl<K: Sink> Sink for TimedSink<K> {
    async fn ensure_table(&mut self, table: &Arc<TableSchema>) -> crate::Result<()> {
        let t = Instant::now();
        let r = self.inner.ensure_table(table).await;
        self.busy += t.elapsed();
        r
    }
    async fn begin(&mut self) -> crate::Result<()> {
        let t = Instant::now();
        let r = self.inner.begin().await;
        self.busy += t.elapsed();
        r
    }
    async fn apply(&mut self, changes: &TableChanges) -> crate::Result<()> {
        let t = Instant::now();
        let r = self.inner.apply(changes).await;
        self.busy += t.elapsed();
        r
    }
    async fn truncate(&mut self, table: &TableId) -> crate::Result<()> {
        let t = Instant::now();
        let r = self.inner.truncate(table).await;
        self.busy += t.elapsed();
        r
    }
    async fn commit(&mut self) -> crate::Result<()> {
        let t = Instant::now();
        let r = self.inner.commit().await;
        self.busy += t.elapsed();
        r
    }
    async fn rollback(&mut self) -> crate::Result<()> {
        let t = Instant::now();
        let r = self.inner.rollback().await;
        self.busy += t.elapsed();
        r
    }
    async fn rename_table(&mut self, from: &TableId, to: &TableId) -> crate::Result<()> {
        let t = Instant::now();
        let r = self.inner.rename_table(from, to).await;
        self.busy += t.elapsed();
        r
    }
}
