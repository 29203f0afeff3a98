//! Per-tenant admission control (docs/reference.md §3 `[tenant_defaults.rate_limit]`,
//! §5.1 token budget, §8 429 reasons).
//!
//! One [`RateLimiter`] per process, kept across config reloads. After
//! authentication the pipeline calls [`RateLimiter::admit`] with the tenant's
//! current [`TenantRateLimit`]; the [`Permit`] it returns travels with the
//! response body, is charged the response's token usage at the end and frees
//! the concurrency slot when dropped.
//!
//! # Order of checks, and what a refusal costs
//! 1. token budget: admitted while the balance is above zero
//!    (`token_budget_exhausted`, Retry-After = time until it is). Read-only.
//! 2. `max_concurrent`: takes an in-flight slot (`concurrency_limited`,
//!    Retry-After 1 s). A slot is given back when a later check refuses.
//! 3. per-user GCRA, key (tenant, user), when `user_requests_per_second` is
//!    set (`rate_limited`).
//! 4. tenant GCRA, `requests_per_second` / `burst` (`rate_limited`).
//!
//! Only the GCRA checks consume anything, and governor cannot give a cell
//! back, so the reversible checks go first: a request refused for budget or
//! concurrency consumes no cell, and one refused by its user's limit takes
//! nothing from the tenant's, so one user hammering past a per-user limit
//! cannot eat the rate its colleagues share. The one residue: a request the
//! tenant limit refuses has spent one cell of its own user's limit, which
//! only matters while the tenant is over its limit anyway.
//!
//! # State
//! Separate per key (no lock shared by tenants beyond a shard's read lock,
//! nothing held across an await: `admit` has none). Bounded: at most
//! [`MAX_TENANTS`] tenant entries and [`MAX_USERS`] (tenant, user) entries,
//! plus entries with requests in flight; see `table.rs` for eviction, which
//! prefers entries whose state equals a fresh one. An entry costs about 350
//! bytes (tenant) / 250 bytes (user, ~32-byte id) with its key and map slot,
//! so the worst case is about 23 MB + 33 MB; tables only shrink by eviction when
//! a shard fills, so a busy process with `allow_unlisted` settles there.
//!
//! When a tenant's limits change (config reload), the parts whose parameters
//! changed start fresh (full burst, full token budget); unchanged parts, and
//! always the in-flight count, keep their state. A response admitted before
//! a `tokens_per_minute` change is charged to the budget it was admitted
//! under, which the change discarded. Two requests admitted with
//! different config versions around a reload can flip an entry back and
//! forth while both are in flight, each flip granting a fresh burst.
//!
//! # Shared limits (`backend = "redis"`)
//! [`RateLimiter::acquire`] is what the proxy calls. With local limits it is
//! `admit` and nothing else. With Redis (`redis_backend.rs`) it takes the
//! in-flight slot here (`max_concurrent` is always per process), then makes
//! one round trip for the budget, the per-user and the tenant GCRA, in that
//! order, all in one script that writes nothing unless all pass (so a
//! request the tenant limit refuses spends no cell of its user's limit
//! either). So the order becomes concurrency, budget, user, tenant; it only
//! shows when two checks would both refuse. State in Redis is not rebuilt
//! when limits change: the new parameters apply to it as it stands. When
//! Redis does not answer, `on_backend_error` decides: `local` runs `admit`
//! (this process's state, same limits), `deny` refuses with
//! `rate_limit_unavailable`, `allow` admits (still holding the slot).
//!
//! # Cost
//! `admit` on a warm key: one shard read lock and map probe per table, an
//! `Arc` clone, the in-flight compare-and-swap and governor's per GCRA.
//! Measured in release (`admit_cost_on_a_warm_key`, 2-vCPU VM, one thread):
//! ~120 ns tenant-only, ~200 ns with a per-user limit.

mod backend;
mod clock;
mod local;
mod redis_backend;
mod table;

#[cfg(test)]
mod redis_tests;
#[cfg(test)]
mod tests;

use std::fmt;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwapOption;

pub use clock::Clock;
pub use redis_backend::validate_url as validate_redis_url;

use crate::config::{OnBackendError, RateLimitBackend, TenantRateLimit};
use crate::error::ProxyError;
use backend::{Backend, RateQuota, TenantCells, UserCells};
use local::Local;
use redis_backend::{Keys, Redis, Verdict};
use table::{Evict, Table};

/// Most tenants tracked (64 shards of 1024), beyond those with requests in flight.
pub const MAX_TENANTS: usize = SHARDS * TENANTS_PER_SHARD;
/// Most (tenant, user) pairs tracked (64 shards of 2048).
pub const MAX_USERS: usize = SHARDS * USERS_PER_SHARD;
const SHARDS: usize = 64;
const TENANTS_PER_SHARD: usize = 1024;
const USERS_PER_SHARD: usize = 2048;

/// Admission control for every tenant of the process.
pub struct RateLimiter {
    core: Core<Local>,
    /// The shared backend (`backend = "redis"`), None with `backend = "local"`.
    shared: ArcSwapOption<Redis>,
}

/// What [`RateLimiter::acquire`] decided.
#[derive(Debug)]
pub struct Admission {
    pub result: Result<Permit, ProxyError>,
    /// The `on_backend_error` that decided when the shared backend did not
    /// answer; None when it did, or when limits are local.
    pub fallback: Option<OnBackendError>,
}

impl RateLimiter {
    pub fn new() -> Arc<Self> {
        Self::with_clock(Clock::real())
    }

    /// A limiter on `clock`; tests pass [`Clock::fake`] and advance it.
    pub fn with_clock(clock: Clock) -> Arc<Self> {
        Arc::new(Self::sized(clock, SHARDS, TENANTS_PER_SHARD, USERS_PER_SHARD))
    }

    fn sized(clock: Clock, shards: usize, tenants_per_shard: usize, users_per_shard: usize) -> Self {
        RateLimiter {
            core: Core {
                backend: Local::new(clock.clone()),
                clock,
                tenants: Table::new(shards, tenants_per_shard),
                users: Table::new(shards, users_per_shard),
            },
            shared: ArcSwapOption::empty(),
        }
    }

    /// Applies `[rate_limit]`: at start and on every reload. A new
    /// `redis_url` (or a switch to Redis) starts a new backend, trying one
    /// connection first (at most ~1 s; an unreachable server is not an
    /// error: `on_backend_error` applies while it is probed); a changed
    /// `on_backend_error` alone applies to the running one; `local` drops it.
    /// Fails only for a URL the Redis client cannot use.
    pub async fn configure(&self, backend: &RateLimitBackend) -> Result<(), String> {
        match backend {
            RateLimitBackend::Local => {
                if let Some(old) = self.shared.swap(None) {
                    old.retire();
                    crate::metrics::global().rate_limit_backend_up(true);
                    tracing::info!("rate limits are now local to this process");
                }
                Ok(())
            }
            RateLimitBackend::Redis { url, on_backend_error } => {
                if let Some(cur) = self.shared.load_full() {
                    if cur.url() == url {
                        if cur.on_error() != *on_backend_error {
                            cur.set_on_error(*on_backend_error);
                            tracing::info!(on_backend_error = on_backend_error.name(), "rate limit backend fallback changed");
                        }
                        return Ok(());
                    }
                }
                let fresh = Redis::start(url, *on_backend_error).await?;
                if let Some(old) = self.shared.swap(Some(fresh)) {
                    old.retire();
                }
                Ok(())
            }
        }
    }

    /// The admission the proxy uses: [`admit`](Self::admit) when limits
    /// are local; with a shared backend, the in-flight slot here and one
    /// Redis round trip for the rest, or `on_backend_error` when Redis does
    /// not answer within ~50 ms (at once while it is known to be down).
    pub async fn acquire(&self, tenant: &str, user: &str, limits: &TenantRateLimit) -> Admission {
        let redis = {
            let guard = self.shared.load();
            match &*guard {
                None => return Admission { result: self.admit(tenant, user, limits), fallback: None },
                Some(r) => r.clone(),
            }
        };
        self.acquire_shared(redis, tenant, user, limits).await
    }

    async fn acquire_shared(&self, redis: Arc<Redis>, tenant: &str, user: &str, limits: &TenantRateLimit) -> Admission {
        let now = self.core.clock.nanos();
        let entry = self.core.entry(tenant, limits, now);
        let slot = match Slot::take(&entry.in_flight, limits.max_concurrent) {
            Ok(s) => s,
            Err(e) => return Admission { result: Err(e), fallback: None },
        };
        let shared = |redis: Arc<Redis>| Some(SharedCharge { redis, budget_key: Keys::budget(tenant) });
        let result = match redis.admit(tenant, user, limits).await {
            Ok(Verdict::Admit) => {
                slot.keep();
                Ok(Permit { entry: entry.clone(), shared: shared(redis) })
            }
            Ok(Verdict::Budget(retry_after)) => Err(ProxyError::TokenBudgetExhausted { retry_after }),
            Ok(Verdict::Rate(retry_after)) => Err(ProxyError::RateLimited { retry_after }),
            Err(_) => {
                // Logged and counted by the backend once per transition.
                let mode = redis.on_error();
                crate::metrics::global().rate_limit_fallback(mode.name());
                let result = match mode {
                    OnBackendError::Local => {
                        drop(slot);
                        self.admit(tenant, user, limits).map(|mut p| {
                            p.shared = shared(redis);
                            p
                        })
                    }
                    OnBackendError::Deny => Err(ProxyError::RateLimitUnavailable),
                    OnBackendError::Allow => {
                        slot.keep();
                        Ok(Permit { entry: entry.clone(), shared: shared(redis) })
                    }
                };
                return Admission { result, fallback: Some(mode) };
            }
        };
        Admission { result, fallback: None }
    }

    /// Whether the shared backend answers (None with local limits).
    pub fn shared_backend_up(&self) -> Option<bool> {
        self.shared.load().as_ref().map(|r| r.is_up())
    }

    /// Called after authentication, before the body is read; see the module
    /// docs for the order of checks. Never blocks or awaits. Local state
    /// only: the proxy calls [`acquire`](Self::acquire).
    pub fn admit(&self, tenant: &str, user: &str, limits: &TenantRateLimit) -> Result<Permit, ProxyError> {
        self.core.admit(tenant, user, limits).map(|entry| Permit { entry, shared: None })
    }

    /// Tenants and (tenant, user) pairs currently tracked.
    pub fn tracked(&self) -> (usize, usize) {
        (self.core.tenants.len(), self.core.users.len())
    }
}

impl fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (t, u) = self.tracked();
        write!(f, "RateLimiter {{ tenants: {t}/{}, users: {u}/{} }}", self.core.tenants.capacity(), self.core.users.capacity())
    }
}

/// One admitted request. Hold it until the response body ends or is
/// dropped: dropping it frees the concurrency slot.
pub struct Permit {
    entry: Arc<TenantEntry<Local>>,
    /// Where token charges go when the limits are shared.
    shared: Option<SharedCharge>,
}

struct SharedCharge {
    redis: Arc<Redis>,
    budget_key: String,
}

impl Permit {
    /// Charges actual token usage (input + output) to the tenant's
    /// `tokens_per_minute` budget, possibly into debt; a no-op when the
    /// budget is unlimited (0). Call once, at the end of the response.
    ///
    /// With a shared backend the charge is sent from a spawned task and
    /// never waits; when Redis is down (or the call fails) it is charged to
    /// this process's budget instead, which `on_backend_error = "local"`
    /// uses.
    pub fn charge_tokens(&self, tokens: u64) {
        let tpm = self.entry.limits.tokens_per_minute;
        if let (Some(s), true) = (&self.shared, tpm > 0 && tokens > 0) {
            if let (true, Ok(rt)) = (s.redis.is_up(), tokio::runtime::Handle::try_current()) {
                let redis = s.redis.clone();
                let key = s.budget_key.clone();
                let entry = self.entry.clone();
                let cost = redis_backend::charge_cost_us(tokens, tpm);
                rt.spawn(async move {
                    if redis.charge(&key, cost).await.is_err() {
                        entry.cells.charge(tokens, entry.clock.nanos());
                    }
                });
                return;
            }
        }
        self.entry.cells.charge(tokens, self.entry.clock.nanos());
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.entry.in_flight.fetch_sub(1, Ordering::Release);
    }
}

impl fmt::Debug for Permit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Permit")
    }
}

struct Core<B: Backend> {
    backend: B,
    clock: Clock,
    tenants: Table<TenantEntry<B>>,
    users: Table<UserEntry<B>>,
}

struct TenantEntry<B: Backend> {
    /// The limits `cells` were built for.
    limits: TenantRateLimit,
    cells: B::Tenant,
    /// Shared with the entries this one replaced or is replaced by, so open
    /// responses stay counted across a reload.
    in_flight: Arc<AtomicU32>,
    last_seen: AtomicU64,
    clock: Clock,
}

struct UserEntry<B: Backend> {
    quota: RateQuota,
    cells: B::User,
    last_seen: AtomicU64,
}

impl<B: Backend> Core<B> {
    /// The tenant's entry for `limits`, made or replaced as needed.
    #[inline]
    fn entry(&self, tenant: &str, limits: &TenantRateLimit, now: u64) -> Arc<TenantEntry<B>> {
        let entry = self.tenants.get_or_make(
            tenant.as_bytes(),
            now,
            |e| e.limits == *limits,
            |prev| TenantEntry {
                limits: limits.clone(),
                cells: self.backend.tenant(tenant, limits, prev.map(|p| (&p.limits, &p.cells))),
                in_flight: prev.map_or_else(Arc::default, |p| p.in_flight.clone()),
                last_seen: AtomicU64::new(now),
                clock: self.clock.clone(),
            },
        );
        entry.last_seen.store(now, Ordering::Relaxed);
        entry
    }

    fn admit(&self, tenant: &str, user: &str, limits: &TenantRateLimit) -> Result<Arc<TenantEntry<B>>, ProxyError> {
        let now = self.clock.nanos();
        let entry = self.entry(tenant, limits, now);

        entry.cells.budget(now).map_err(|retry_after| ProxyError::TokenBudgetExhausted { retry_after })?;

        let slot = Slot::take(&entry.in_flight, limits.max_concurrent)?;

        if let Some(quota) = RateQuota::user(limits) {
            let u = with_user_key(tenant, user, |key| {
                self.users.get_or_make(
                    key,
                    now,
                    |u| u.quota == quota,
                    |_| UserEntry { quota, cells: self.backend.user(tenant, user, quota), last_seen: AtomicU64::new(now) },
                )
            });
            u.last_seen.store(now, Ordering::Relaxed);
            u.cells.rate(now).map_err(|retry_after| ProxyError::RateLimited { retry_after })?;
        }
        entry.cells.rate(now).map_err(|retry_after| ProxyError::RateLimited { retry_after })?;

        slot.keep();
        Ok(entry)
    }
}

/// An in-flight slot, given back when dropped unless kept.
struct Slot<'a>(&'a AtomicU32);

impl<'a> Slot<'a> {
    /// Takes a slot while fewer than `max` are in flight.
    #[inline]
    fn take(in_flight: &'a AtomicU32, max: u32) -> Result<Self, ProxyError> {
        match in_flight.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < max).then_some(n + 1)) {
            Ok(_) => Ok(Slot(in_flight)),
            Err(_) => Err(ProxyError::ConcurrencyLimited),
        }
    }

    /// The slot now belongs to a [`Permit`] (its `Drop` gives it back).
    #[inline]
    fn keep(self) {
        std::mem::forget(self);
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Release);
    }
}

/// Runs `f` on the (tenant, user) key: the tenant's length, then both
/// names, so no two pairs share a key whatever they contain.
fn with_user_key<R>(tenant: &str, user: &str, f: impl FnOnce(&[u8]) -> R) -> R {
    let len = 4 + tenant.len() + user.len();
    let mut stack = [0u8; 128];
    let mut heap = Vec::new();
    let buf: &mut [u8] = if len <= stack.len() {
        &mut stack[..len]
    } else {
        heap.resize(len, 0);
        &mut heap
    };
    let tlen = u32::try_from(tenant.len()).unwrap_or(u32::MAX);
    buf[..4].copy_from_slice(&tlen.to_le_bytes());
    buf[4..4 + tenant.len()].copy_from_slice(tenant.as_bytes());
    buf[4 + tenant.len()..].copy_from_slice(user.as_bytes());
    f(buf)
}

impl<B: Backend> Evict for TenantEntry<B> {
    fn in_use(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) > 0
    }
    fn at_rest(&self, now: u64) -> bool {
        self.cells.at_rest(now)
    }
    fn last_seen(&self) -> u64 {
        self.last_seen.load(Ordering::Relaxed)
    }
}

impl<B: Backend> Evict for UserEntry<B> {
    fn in_use(&self) -> bool {
        false
    }
    fn at_rest(&self, now: u64) -> bool {
        self.cells.at_rest(now)
    }
    fn last_seen(&self) -> u64 {
        self.last_seen.load(Ordering::Relaxed)
    }
}
