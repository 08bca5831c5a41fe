//! Overload protection: a per-account token bucket (429) and a global concurrency limit (503).
//!
//! The defaults never throttle Entra's real traffic (at least 25 requests/s per tenant, bursty);
//! they stop one tenant or a flood from degrading everyone, and shed load before latency
//! collapses.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Limit settings.
#[derive(Debug, Clone, Copy)]
pub struct LimitConfig {
    /// Sustained requests per second per account (0 disables rate limiting).
    pub account_rate: f64,
    /// Burst size per account.
    pub account_burst: f64,
    /// Requests processed at once by this process before new ones get 503.
    pub max_concurrent: usize,
}

impl Default for LimitConfig {
    fn default() -> Self {
        Self { account_rate: 500.0, account_burst: 1000.0, max_concurrent: 512 }
    }
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// Per-account token buckets plus the global concurrency semaphore.
#[derive(Debug)]
pub struct Limiter {
    config: LimitConfig,
    buckets: Mutex<HashMap<String, Bucket>>,
    concurrency: std::sync::Arc<Semaphore>,
}

impl Limiter {
    /// A limiter with these settings.
    pub fn new(config: LimitConfig) -> Self {
        Self {
            config,
            buckets: Mutex::new(HashMap::new()),
            concurrency: std::sync::Arc::new(Semaphore::new(config.max_concurrent.max(1))),
        }
    }

    /// Takes a token for `account`; `Err(retry_after)` when the bucket is empty.
    pub fn check_rate(&self, account: &str) -> Result<(), Duration> {
        self.check_rate_at(account, Instant::now())
    }

    fn check_rate_at(&self, account: &str, now: Instant) -> Result<(), Duration> {
        let LimitConfig { account_rate: rate, account_burst: burst, .. } = self.config;
        if rate <= 0.0 {
            return Ok(());
        }
        let Ok(mut buckets) = self.buckets.lock() else { return Ok(()) };
        if buckets.len() > 100_000 {
            // Bound memory: forget buckets that have refilled completely.
            buckets.retain(|_, b| b.tokens + now.duration_since(b.updated).as_secs_f64() * rate < burst);
        }
        let b = buckets.entry(account.to_string()).or_insert(Bucket { tokens: burst, updated: now });
        b.tokens = (b.tokens + now.duration_since(b.updated).as_secs_f64() * rate).min(burst);
        b.updated = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64(((1.0 - b.tokens) / rate).max(0.001)))
        }
    }

    /// A slot among the concurrent requests, or `None` when the process is saturated.
    pub fn try_enter(&self) -> Option<OwnedSemaphorePermit> {
        self.concurrency.clone().try_acquire_owned().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(rate: f64, burst: f64) -> Limiter {
        Limiter::new(LimitConfig { account_rate: rate, account_burst: burst, max_concurrent: 2 })
    }

    #[test]
    fn burst_is_allowed_then_throttled_with_a_retry_delay() {
        let l = limiter(10.0, 3.0);
        let t = Instant::now();
        for _ in 0..3 {
            assert!(l.check_rate_at("a", t).is_ok());
        }
        let wait = l.check_rate_at("a", t).err();
        assert!(wait.is_some_and(|w| w > Duration::ZERO && w <= Duration::from_millis(100)));
    }

    #[test]
    fn tokens_refill_at_the_configured_rate() {
        let l = limiter(10.0, 1.0);
        let t = Instant::now();
        assert!(l.check_rate_at("a", t).is_ok());
        assert!(l.check_rate_at("a", t).is_err());
        assert!(l.check_rate_at("a", t + Duration::from_millis(110)).is_ok());
    }

    #[test]
    fn accounts_have_separate_buckets() {
        let l = limiter(1.0, 1.0);
        let t = Instant::now();
        assert!(l.check_rate_at("a", t).is_ok());
        assert!(l.check_rate_at("b", t).is_ok());
        assert!(l.check_rate_at("a", t).is_err());
    }

    #[test]
    fn zero_rate_disables_rate_limiting() {
        let l = limiter(0.0, 0.0);
        for _ in 0..1000 {
            assert!(l.check_rate("a").is_ok());
        }
    }

    #[test]
    fn concurrency_limit_sheds_excess_requests() {
        let l = limiter(0.0, 0.0);
        let a = l.try_enter();
        let b = l.try_enter();
        assert!(a.is_some() && b.is_some());
        assert!(l.try_enter().is_none());
        drop(a);
        assert!(l.try_enter().is_some());
    }

    #[test]
    fn default_limits_allow_entras_documented_rate_with_headroom() {
        let c = LimitConfig::default();
        assert!(c.account_rate >= 25.0 * 10.0);
        assert!(c.account_burst >= c.account_rate);
    }
}
