//! The fleet's [`TaskGuard`]: the tenant's rate limit and lease fencing.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use engine::{GuardFuture, TaskGuard};

/// A token bucket of rows per second shared by a tenant's tasks in this
/// daemon (`tenants.max_throughput_tps`; one second of burst). Several
/// daemons each apply the whole rate to the tasks they run.
#[derive(Debug)]
pub struct TenantLimiter {
    rate: AtomicU64,
    state: Mutex<Bucket>,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl TenantLimiter {
    pub fn new(rate: u64) -> Self {
        Self {
            rate: AtomicU64::new(rate.max(1)),
            state: Mutex::new(Bucket {
                tokens: rate.max(1) as f64,
                at: Instant::now(),
            }),
        }
    }

    /// Changes the rate (the tenant's quota was edited).
    pub fn set_rate(&self, rate: u64) {
        self.rate.store(rate.max(1), Ordering::Relaxed);
    }

    pub fn rate(&self) -> u64 {
        self.rate.load(Ordering::Relaxed)
    }

    /// Takes `rows` tokens, going into debt if needed; returns how long the
    /// caller must wait for the debt to be repaid.
    fn take(&self, rows: u64) -> Duration {
        let rate = self.rate() as f64;
        let mut b = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let refill = now.duration_since(b.at).as_secs_f64() * rate;
        b.tokens = (b.tokens + refill).min(rate);
        b.at = now;
        b.tokens -= rows as f64;
        if b.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-b.tokens / rate)
        }
    }
}

/// One task's guard in fleet mode.
#[derive(Debug)]
pub struct LeaseGuard {
    /// Until when commits are allowed (`None`: not yet).
    deadline: Mutex<Option<Instant>>,
    lost: AtomicBool,
    /// A commit was refused: the run ended because of the fence.
    refused: AtomicBool,
    limiter: Arc<TenantLimiter>,
    task: String,
}

impl LeaseGuard {
    pub fn new(task: &str, limiter: Arc<TenantLimiter>) -> Self {
        Self {
            deadline: Mutex::new(None),
            lost: AtomicBool::new(false),
            refused: AtomicBool::new(false),
            limiter,
            task: task.to_string(),
        }
    }

    /// A renewal (or the acquisition) sent at `sent` succeeded: commits are
    /// allowed until `sent + valid_for`.
    pub fn extend(&self, sent: Instant, valid_for: Duration) {
        let until = sent + valid_for;
        let mut d = self.deadline.lock().unwrap_or_else(|p| p.into_inner());
        if d.is_none_or(|cur| until > cur) {
            *d = Some(until);
        }
    }

    /// The lease is gone: no commit from now on.
    pub fn lose(&self) {
        self.lost.store(true, Ordering::Release);
    }

    /// Whether [`TaskGuard::may_commit`] ever refused (the run ended on the fence).
    pub fn refused_a_commit(&self) -> bool {
        self.refused.load(Ordering::Acquire)
    }

    pub fn is_lost(&self) -> bool {
        self.lost.load(Ordering::Acquire)
    }

    fn valid_now(&self) -> bool {
        let deadline = *self.deadline.lock().unwrap_or_else(|p| p.into_inner());
        !self.is_lost() && deadline.is_some_and(|d| Instant::now() < d)
    }
}

impl TaskGuard for LeaseGuard {
    fn throttle(&self, rows: u64) -> GuardFuture<'_> {
        let wait = self.limiter.take(rows);
        Box::pin(async move {
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
        })
    }

    fn may_commit(&self) -> engine::Result<()> {
        if self.valid_now() {
            Ok(())
        } else {
            self.refused.store(true, Ordering::Release);
            Err(engine::Error::Pipeline(format!(
                "task {}: this daemon's lease may have expired (not renewed in time or taken by another daemon); \
                 the open target transaction is rolled back and the task moves to a daemon holding the lease",
                self.task
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commits_are_refused_after_the_deadline_or_once_lost() {
        let g = LeaseGuard::new("t", Arc::new(TenantLimiter::new(10)));
        assert!(!g.refused_a_commit());
        assert!(g.may_commit().is_err(), "no lease yet");
        assert!(g.refused_a_commit(), "a refusal is remembered");
        g.extend(Instant::now(), Duration::from_secs(60));
        assert!(g.may_commit().is_ok());
        g.lose();
        assert!(g.may_commit().is_err());
        let g = LeaseGuard::new("t", Arc::new(TenantLimiter::new(10)));
        g.extend(
            Instant::now() - Duration::from_secs(10),
            Duration::from_secs(5),
        );
        assert!(g.may_commit().is_err(), "expired");
    }

    #[test]
    fn the_bucket_allows_a_second_of_burst_then_paces() {
        let l = TenantLimiter::new(1000);
        assert_eq!(l.take(1000), Duration::ZERO);
        let wait = l.take(500);
        assert!(
            wait >= Duration::from_millis(250) && wait <= Duration::from_millis(600),
            "{wait:?}"
        );
        l.set_rate(1_000_000);
        assert_eq!(l.rate(), 1_000_000);
    }
}
