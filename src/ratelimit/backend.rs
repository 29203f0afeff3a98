//! The seam between admission (tables, in-flight counts, ordering; `mod.rs`)
//! and where the limiter state lives. [`Local`](super::local::Local) keeps it
//! in memory, with checks that never await. The shared backend
//! (`redis_backend.rs`, docs/reference.md §3 `backend = "redis"`) does not fit these
//! per-check calls: it answers all three checks in one async round trip, so
//! `RateLimiter::acquire` calls it directly and keeps `Local` beside it for
//! the in-flight count and for `on_backend_error = "local"`.
//!
//! The in-flight count is never a backend concern: it counts this process's
//! open responses and lives in the local tenant entry.

use std::time::Duration;

use crate::config::TenantRateLimit;

/// A GCRA quota: `per_second` cells replenish, at most `burst` at once.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RateQuota {
    pub per_second: f64,
    pub burst: u32,
}

impl PartialEq for RateQuota {
    fn eq(&self, o: &Self) -> bool {
        self.per_second.to_bits() == o.per_second.to_bits() && self.burst == o.burst
    }
}

impl RateQuota {
    pub fn tenant(l: &TenantRateLimit) -> Self {
        RateQuota { per_second: l.requests_per_second, burst: l.burst }
    }

    /// The per-user quota, when `user_requests_per_second` is set; the burst
    /// defaults to two seconds' worth like the config does.
    pub fn user(l: &TenantRateLimit) -> Option<Self> {
        let per_second = l.user_requests_per_second?;
        let burst = l.user_burst.unwrap_or_else(|| (per_second * 2.0).ceil().clamp(1.0, f64::from(u32::MAX)) as u32);
        Some(RateQuota { per_second, burst })
    }
}

/// Where limiter state lives. Construction happens under the table's write
/// lock, checks on the hot path under none.
pub(crate) trait Backend: Send + Sync + 'static {
    type Tenant: TenantCells;
    type User: UserCells;

    /// State for `tenant` with `limits`. `prev` is the entry being replaced
    /// because its limits changed: parts whose parameters are unchanged are
    /// carried over, the rest start fresh.
    fn tenant(&self, name: &str, limits: &TenantRateLimit, prev: Option<(&TenantRateLimit, &Self::Tenant)>) -> Self::Tenant;

    fn user(&self, tenant: &str, user: &str, quota: RateQuota) -> Self::User;
}

/// One tenant's token budget and request-rate GCRA. `now` is nanoseconds on
/// the limiter clock.
pub(crate) trait TenantCells: Send + Sync + 'static {
    /// Ok while the token balance is above zero (or unlimited), else the
    /// time until it is. Consumes nothing.
    fn budget(&self, now: u64) -> Result<(), Duration>;
    /// Adds actual usage; may drive the balance below zero.
    fn charge(&self, tokens: u64, now: u64);
    /// Takes one request cell, or says how long until one is available
    /// (consuming nothing).
    fn rate(&self, now: u64) -> Result<(), Duration>;
    /// True when the state equals a fresh one (full burst, full budget), so
    /// dropping it loses nothing.
    fn at_rest(&self, now: u64) -> bool;
}

/// One (tenant, user)'s request-rate GCRA.
pub(crate) trait UserCells: Send + Sync + 'static {
    fn rate(&self, now: u64) -> Result<(), Duration>;
    fn at_rest(&self, now: u64) -> bool;
}
