//! In-memory backend: a governor direct GCRA per tenant and per (tenant,
//! user), and a lock-free token bucket per tenant. Every check is one atomic
//! load or compare-and-swap on the key's own state.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::Quota;

use super::backend::{Backend, RateQuota, TenantCells, UserCells};
use super::clock::{nanos_of, Clock};
use crate::config::TenantRateLimit;

/// The token budget refills in full over one minute.
const WINDOW: u64 = 60_000_000_000;
/// Slack added before a GCRA counts as at rest (covers the gap between our
/// clock read and governor's).
const REST_SLACK: u64 = 1_000_000_000;

pub(crate) struct Local {
    clock: Clock,
}

impl Local {
    pub fn new(clock: Clock) -> Self {
        Local { clock }
    }
}

pub(crate) struct LocalTenant {
    rate: Arc<Gcra>,
    budget: Arc<TokenBudget>,
}

impl Backend for Local {
    type Tenant = LocalTenant;
    type User = Gcra;

    fn tenant(&self, _: &str, limits: &TenantRateLimit, prev: Option<(&TenantRateLimit, &LocalTenant)>) -> LocalTenant {
        let quota = RateQuota::tenant(limits);
        let rate = match prev {
            Some((old, p)) if RateQuota::tenant(old) == quota => p.rate.clone(),
            _ => Arc::new(Gcra::new(quota, &self.clock)),
        };
        let budget = match prev {
            Some((old, p)) if old.tokens_per_minute == limits.tokens_per_minute => p.budget.clone(),
            _ => Arc::new(TokenBudget::new(limits.tokens_per_minute)),
        };
        LocalTenant { rate, budget }
    }

    fn user(&self, _: &str, _: &str, quota: RateQuota) -> Gcra {
        Gcra::new(quota, &self.clock)
    }
}

impl TenantCells for LocalTenant {
    fn budget(&self, now: u64) -> Result<(), Duration> {
        self.budget.admit(now)
    }
    fn charge(&self, tokens: u64, now: u64) {
        self.budget.charge(tokens, now)
    }
    fn rate(&self, now: u64) -> Result<(), Duration> {
        self.rate.check(now)
    }
    fn at_rest(&self, now: u64) -> bool {
        self.rate.at_rest(now) && self.budget.at_rest(now)
    }
}

impl UserCells for Gcra {
    fn rate(&self, now: u64) -> Result<(), Duration> {
        self.check(now)
    }
    fn at_rest(&self, now: u64) -> bool {
        Gcra::at_rest(self, now)
    }
}

type Direct = governor::RateLimiter<NotKeyed, InMemoryState, Clock, NoOpMiddleware<Duration>>;

/// governor's direct limiter plus what eviction needs to know about it.
pub(crate) struct Gcra {
    limiter: Direct,
    /// Time for an empty bucket to refill completely (burst × period).
    refill: u64,
    /// After this time the GCRA is full again, i.e. equal to a fresh one.
    rest_at: AtomicU64,
}

impl Gcra {
    fn new(q: RateQuota, clock: &Clock) -> Self {
        // Config guarantees per_second > 0; stay total for anything else.
        let secs = 1.0 / q.per_second;
        let period = Duration::try_from_secs_f64(secs).unwrap_or(Duration::from_secs(86_400 * 365));
        let period = period.clamp(Duration::from_nanos(1), Duration::from_secs(86_400 * 365));
        let burst = NonZeroU32::new(q.burst).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::with_period(period).expect("period is at least 1 ns").allow_burst(burst);
        Gcra {
            limiter: governor::RateLimiter::direct_with_clock(quota, clock.clone()),
            refill: nanos_of(period).saturating_mul(u64::from(burst.get())),
            rest_at: AtomicU64::new(0),
        }
    }

    fn check(&self, now: u64) -> Result<(), Duration> {
        match self.limiter.check() {
            Ok(()) => {
                self.rest_at.fetch_max(now.saturating_add(self.refill).saturating_add(REST_SLACK), Ordering::Relaxed);
                Ok(())
            }
            // `now` was read before governor's own read, so this errs long
            // by the few nanoseconds between them.
            Err(not_until) => Err(not_until.wait_time_from(Duration::from_nanos(now))),
        }
    }

    fn at_rest(&self, now: u64) -> bool {
        now >= self.rest_at.load(Ordering::Relaxed)
    }
}

/// Token bucket of capacity `tokens_per_minute`, refilled continuously at
/// `tokens_per_minute / 60` per second, that charges may drive into debt.
///
/// Stored as one number, the time the bucket is full again (`full_at`, ns):
/// `balance(now) = tpm - max(0, full_at - now) · tpm / 60 s`. So the balance
/// is above zero exactly while `full_at - now < 60 s`, and a charge of `n`
/// tokens moves `full_at` to `max(full_at, now) + n · 60 s / tpm`.
pub(crate) struct TokenBudget {
    /// 0 = unlimited.
    tokens_per_minute: u64,
    full_at: AtomicU64,
}

impl TokenBudget {
    pub fn new(tokens_per_minute: u64) -> Self {
        TokenBudget { tokens_per_minute, full_at: AtomicU64::new(0) }
    }

    pub fn admit(&self, now: u64) -> Result<(), Duration> {
        if self.tokens_per_minute == 0 {
            return Ok(());
        }
        // The balance reaches zero at `zero_at` and is positive right after.
        match self.full_at.load(Ordering::Acquire).checked_sub(WINDOW) {
            Some(zero_at) if now <= zero_at => Err(Duration::from_nanos(zero_at - now + 1)),
            _ => Ok(()),
        }
    }

    pub fn charge(&self, tokens: u64, now: u64) {
        if self.tokens_per_minute == 0 || tokens == 0 {
            return;
        }
        let tpm = u128::from(self.tokens_per_minute);
        let cost = (u128::from(tokens) * u128::from(WINDOW)).div_ceil(tpm);
        let cost = u64::try_from(cost).unwrap_or(u64::MAX);
        let _ = self.full_at.fetch_update(Ordering::AcqRel, Ordering::Acquire, |full_at| {
            Some(full_at.max(now).saturating_add(cost))
        });
    }

    pub fn at_rest(&self, now: u64) -> bool {
        self.tokens_per_minute == 0 || self.full_at.load(Ordering::Relaxed) <= now
    }
}
