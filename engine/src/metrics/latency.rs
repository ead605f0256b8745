//! [`LatencyHistogram`]: a small lock-free histogram of one task's
//! end-to-end latency (target commit time − source commit time), recorded
//! once per committed target transaction and read and reset once per
//! monitoring window by the daemon (`sync_metrics` LATENCY rows).
//!
//! Buckets are log-linear: values below 16 µs are exact, above that every
//! power of two is split into 16 equal sub-buckets, so a quantile is off by
//! at most 1/16 (6.25 %) of its value. Values are clamped at 2^40 µs
//! (≈ 12.7 days); the exact maximum is kept apart. Recording is three
//! relaxed atomic operations, no lock and no allocation.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Sub-buckets per power of two (and the count of exact buckets below 16 µs).
const SUB: u64 = 16;
/// log2 of [`SUB`].
const SUB_BITS: u32 = 4;
/// Largest power of two covered: values at or above 2^(MAX_EXP + 1) µs are clamped.
const MAX_EXP: u32 = 40;
/// Number of buckets: 16 exact ones, then 16 per power of two from 2^4 to 2^MAX_EXP.
const BUCKETS: usize = (SUB + (MAX_EXP - SUB_BITS + 1) as u64 * SUB) as usize;

/// Index of the bucket holding `us`.
fn bucket_of(us: u64) -> usize {
    let us = us.min((1u64 << (MAX_EXP + 1)) - 1);
    if us < SUB {
        return us as usize;
    }
    let exp = 63 - us.leading_zeros(); // floor(log2(us)), >= SUB_BITS
    let sub = (us >> (exp - SUB_BITS)) & (SUB - 1);
    (SUB + u64::from(exp - SUB_BITS) * SUB + sub) as usize
}

/// Largest value (µs) that falls in bucket `i`.
fn bucket_upper(i: usize) -> u64 {
    let i = i as u64;
    if i < SUB {
        return i;
    }
    let exp = (i - SUB) / SUB + u64::from(SUB_BITS);
    let sub = (i - SUB) % SUB;
    let width = 1u64 << (exp - u64::from(SUB_BITS));
    (1u64 << exp) + (sub + 1) * width - 1
}

/// A per-task histogram of end-to-end latencies (see the module doc).
pub struct LatencyHistogram {
    buckets: Box<[AtomicU64]>,
    max_us: AtomicU64,
    sum_us: AtomicU64,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            max_us: AtomicU64::new(0),
            sum_us: AtomicU64::new(0),
        }
    }
}

impl std::fmt::Debug for LatencyHistogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let count: u64 = self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).sum();
        f.debug_struct("LatencyHistogram")
            .field("count", &count)
            .field("max_us", &self.max_us.load(Ordering::Relaxed))
            .finish()
    }
}

impl LatencyHistogram {
    /// Records one latency.
    pub fn record(&self, latency: Duration) {
        self.record_us(u64::try_from(latency.as_micros()).unwrap_or(u64::MAX));
    }

    /// Records the latency of a batch whose last source transaction committed
    /// at `source_commit_us` and whose target commit happened at
    /// `target_commit_us` (both µs since the epoch). A source clock ahead of
    /// ours counts as 0.
    pub fn record_between_us(&self, source_commit_us: i64, target_commit_us: i64) {
        let us = target_commit_us.saturating_sub(source_commit_us).max(0);
        self.record_us(us as u64);
    }

    /// Records one latency in microseconds.
    pub fn record_us(&self, us: u64) {
        self.buckets[bucket_of(us)].fetch_add(1, Ordering::Relaxed);
        self.max_us.fetch_max(us, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    /// Everything recorded since the last call, and starts a new window.
    /// Each bucket is swapped atomically, so a concurrent record lands in
    /// exactly one of the two windows (its max or sum may land in the other).
    pub fn take(&self) -> LatencySummary {
        let counts: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| b.swap(0, Ordering::Relaxed))
            .collect();
        let max_us = self.max_us.swap(0, Ordering::Relaxed);
        let sum_us = self.sum_us.swap(0, Ordering::Relaxed);
        LatencySummary::from_counts(&counts, max_us, sum_us)
    }
}

/// The latencies of one window: count, p50/p95/p99 and max.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LatencySummary {
    pub count: u64,
    pub p50: Duration,
    pub p95: Duration,
    pub p99: Duration,
    pub max: Duration,
    pub mean: Duration,
}

impl LatencySummary {
    fn from_counts(counts: &[u64], max_us: u64, sum_us: u64) -> Self {
        let count: u64 = counts.iter().sum();
        if count == 0 {
            return Self::default();
        }
        // The bucket's upper bound, never above the exact maximum.
        let quantile = |q: f64| -> Duration {
            let rank = ((q * count as f64).ceil() as u64).clamp(1, count);
            let mut seen = 0u64;
            for (i, n) in counts.iter().enumerate() {
                seen += n;
                if seen >= rank {
                    return Duration::from_micros(bucket_upper(i).min(max_us));
                }
            }
            Duration::from_micros(max_us)
        };
        Self {
            count,
            p50: quantile(0.50),
            p95: quantile(0.95),
            p99: quantile(0.99),
            max: Duration::from_micros(max_us),
            mean: Duration::from_micros(sum_us / count),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_the_range_in_order_with_bounded_error() {
        assert_eq!(bucket_of(0), 0);
        assert_eq!(bucket_of(15), 15);
        assert_eq!(bucket_of(16), 16);
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
        let mut last = 0;
        for us in (0..5_000_000u64)
            .step_by(997)
            .chain([1 << 23, (1 << 41) - 1])
        {
            let b = bucket_of(us);
            assert!(b >= last, "bucket order at {us}");
            last = b;
            let upper = bucket_upper(b);
            assert!(upper >= us, "{us} above its bucket's bound {upper}");
            assert!(
                (upper - us) as f64 <= us as f64 / 16.0 + 1.0,
                "{us}: bound {upper} too far"
            );
        }
        // Every bucket's bound falls in that bucket, and the next value in the next one.
        for i in 0..BUCKETS - 1 {
            assert_eq!(bucket_of(bucket_upper(i)), i);
            assert_eq!(bucket_of(bucket_upper(i) + 1), i + 1);
        }
    }

    #[test]
    fn quantiles_and_max_of_a_window_then_reset() {
        let h = LatencyHistogram::default();
        assert_eq!(h.take(), LatencySummary::default());
        // 1..=1000 ms.
        for ms in 1..=1000u64 {
            h.record(Duration::from_millis(ms));
        }
        let s = h.take();
        assert_eq!(s.count, 1000);
        let near = |d: Duration, ms: f64| {
            let got = d.as_secs_f64() * 1e3;
            assert!(
                got >= ms && got <= ms * 1.0625 + 0.001,
                "{got} ms vs {ms} ms"
            );
        };
        near(s.p50, 500.0);
        near(s.p95, 950.0);
        near(s.p99, 990.0);
        assert_eq!(s.max, Duration::from_millis(1000));
        assert_eq!(s.mean, Duration::from_micros(500_500));
        // The next window starts empty.
        assert_eq!(h.take().count, 0);
        h.record(Duration::from_millis(7));
        let s = h.take();
        assert_eq!((s.count, s.max), (1, Duration::from_millis(7)));
        // One sample: every quantile is that sample (bounded by the max).
        assert_eq!(s.p50, Duration::from_millis(7));
        assert_eq!(s.p99, Duration::from_millis(7));
    }

    #[test]
    fn clock_skew_counts_as_zero_and_huge_values_are_clamped_into_the_last_bucket() {
        let h = LatencyHistogram::default();
        h.record_between_us(2_000_000, 1_000_000);
        h.record_between_us(1_000_000, 1_250_000);
        h.record(Duration::from_secs(100 * 24 * 3600));
        let s = h.take();
        assert_eq!(s.count, 3);
        assert!(s.p50 >= Duration::from_millis(250) && s.p50 <= Duration::from_micros(265_625));
        assert_eq!(s.max, Duration::from_secs(100 * 24 * 3600));
        assert!(s.p99 <= s.max);
    }

    #[test]
    fn concurrent_records_are_all_counted() {
        let h = std::sync::Arc::new(LatencyHistogram::default());
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let h = h.clone();
                std::thread::spawn(move || {
                    for i in 0..10_000u64 {
                        h.record_us(i * (t + 1));
                    }
                })
            })
            .collect();
        let mut total = 0;
        for _ in 0..10 {
            total += h.take().count;
        }
        for t in threads {
            t.join().unwrap();
        }
        total += h.take().count;
        assert_eq!(total, 40_000);
    }
}
