//! Shared limiter state in Redis (docs/reference.md §3 `[rate_limit] backend = "redis"`).
//!
//! The tenant GCRA, the per-user GCRA and the `tokens_per_minute` budget
//! live in Redis, so every replica pointed at the same server draws on the
//! same limits. `max_concurrent` stays in the process (`mod.rs`): it counts
//! this replica's open responses.
//!
//! # One round trip per request
//! `admit.lua` runs the budget check, the per-user GCRA and the tenant GCRA
//! in that order in one atomic script (`EVALSHA`, `EVAL` when the server
//! answers `NOSCRIPT`). It writes nothing unless every check passes, so a
//! refused request consumes nothing at all. Time is the server's (`TIME`),
//! so replicas' clocks do not matter. Each key expires when its bucket is
//! full again: an idle tenant leaves no keys. `charge.lua` charges a
//! response's tokens at its end, from a spawned task (the response never
//! waits for it).
//!
//! # Keys
//! `tenantgate:{T}:b` (budget), `tenantgate:{T}:r` (tenant GCRA) and
//! `tenantgate:{T}:u:U` (user GCRA), with the tenant `T` and user `U`
//! percent-encoded (everything but `A-Za-z0-9._-`), so neither can contain
//! `:`, `{` or `}` and no two (tenant, user) pairs share a key. The braces
//! are a hash tag: a tenant's keys hash to one cluster slot.
//!
//! # When Redis does not answer
//! A round trip gets [`ROUND_TRIP`] (50 ms); a timeout, a connection error
//! or an answer that is not what the script returns marks the backend down
//! (logged once, counted) and the request gets `on_backend_error`. While it
//! is down no request tries Redis: a background task reconnects every
//! [`PROBE_EVERY`] and marks it up again once a connection loads both
//! scripts.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, ErrorKind, ServerErrorKind, Value};

use super::backend::RateQuota;
use crate::config::{OnBackendError, TenantRateLimit};

/// Most a request waits for Redis before `on_backend_error` applies.
pub(crate) const ROUND_TRIP: Duration = Duration::from_millis(50);
/// A token charge runs after the response, so it can wait longer.
const CHARGE_TIMEOUT: Duration = Duration::from_secs(1);
/// How often a down backend is tried again.
pub(crate) const PROBE_EVERY: Duration = Duration::from_secs(1);
/// Connect (TCP, TLS, handshake) and script loading of one probe.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// The budget refills in full over a minute (µs).
const WINDOW_US: u128 = 60_000_000;
/// Caps on what the script is handed (µs), far past any real setting.
const MAX_PERIOD_US: f64 = 1e13;
const MAX_COST_US: u128 = 1_000_000_000_000_000;

const ADMIT_LUA: &str = include_str!("admit.lua");
const CHARGE_LUA: &str = include_str!("charge.lua");

/// Bytes kept as they are in key parts; everything else is `%XX`.
const KEY_PART: &AsciiSet = &NON_ALPHANUMERIC.remove(b'.').remove(b'_').remove(b'-');

/// The Redis keys of one (tenant, user).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Keys {
    pub budget: String,
    pub tenant: String,
    pub user: String,
}

impl Keys {
    pub fn new(tenant: &str, user: &str) -> Keys {
        let t = utf8_percent_encode(tenant, KEY_PART);
        let u = utf8_percent_encode(user, KEY_PART);
        Keys {
            budget: format!("tenantgate:{{{t}}}:b"),
            tenant: format!("tenantgate:{{{t}}}:r"),
            user: format!("tenantgate:{{{t}}}:u:{u}"),
        }
    }

    /// The budget key alone (for a token charge).
    pub fn budget(tenant: &str) -> String {
        format!("tenantgate:{{{}}}:b", utf8_percent_encode(tenant, KEY_PART))
    }
}

/// What the admission script decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Admit,
    /// Token budget exhausted; wait this long.
    Budget(Duration),
    /// The user's or the tenant's GCRA refused; wait this long.
    Rate(Duration),
}

/// An answer the script never gives (a foreign key type, a proxy in the way,
/// another program's script under the same hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BadAnswer(pub String);

/// Reads `{code, µs}` from `admit.lua`.
pub(crate) fn parse_verdict(v: &Value) -> Result<Verdict, BadAnswer> {
    let bad = || BadAnswer(format!("unexpected script answer {v:?}"));
    let Value::Array(items) = v else { return Err(bad()) };
    let [Value::Int(code), Value::Int(wait)] = items.as_slice() else { return Err(bad()) };
    let wait = u64::try_from(*wait).map_err(|_| bad())?;
    let wait = Duration::from_micros(wait);
    match code {
        0 => Ok(Verdict::Admit),
        1 => Ok(Verdict::Budget(wait)),
        2 | 3 => Ok(Verdict::Rate(wait)),
        _ => Err(bad()),
    }
}

/// A GCRA's emission period in whole microseconds (at least 1).
fn period_us(per_second: f64) -> u64 {
    let p = (1e6 / per_second).round();
    if p.is_finite() && p >= 1.0 {
        p.min(MAX_PERIOD_US) as u64
    } else if p.is_finite() {
        1
    } else {
        MAX_PERIOD_US as u64
    }
}

/// Refill time (µs) that `tokens` cost against `tokens_per_minute`.
pub(crate) fn charge_cost_us(tokens: u64, tokens_per_minute: u64) -> u64 {
    if tokens_per_minute == 0 {
        return 0;
    }
    let cost = (u128::from(tokens) * WINDOW_US).div_ceil(u128::from(tokens_per_minute));
    u64::try_from(cost.min(MAX_COST_US)).unwrap_or(u64::MAX)
}

/// The script arguments for `limits`.
pub(crate) fn admit_args(limits: &TenantRateLimit) -> [u64; 5] {
    let tenant = RateQuota::tenant(limits);
    let (user_period, user_burst) = match RateQuota::user(limits) {
        Some(q) => (period_us(q.per_second), u64::from(q.burst.max(1))),
        None => (0, 0),
    };
    [period_us(tenant.per_second), u64::from(tenant.burst.max(1)), limits.tokens_per_minute, user_period, user_burst]
}

/// Why a call did not get an answer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Failure {
    /// Marked down: nothing was tried.
    #[error("marked down")]
    Down,
    #[error("no answer within {} ms", ROUND_TRIP.as_millis())]
    Timeout,
    #[error("{0}")]
    Redis(redis::RedisError),
    #[error("{}", .0.0)]
    Bad(BadAnswer),
}

struct Script {
    source: &'static str,
    hash: String,
}

impl Script {
    fn new(source: &'static str) -> Script {
        Script { source, hash: redis::Script::new(source).get_hash().to_owned() }
    }

    /// `EVALSHA`, then `EVAL` with the source when the server has not got it
    /// (restarted, `SCRIPT FLUSH`, another server behind the address).
    async fn run(&self, conn: &mut MultiplexedConnection, keys: &[&str], args: &[u64]) -> redis::RedisResult<Value> {
        let build = |verb: &str, body: &str| {
            let mut c = redis::cmd(verb);
            c.arg(body).arg(keys.len()).arg(keys).arg(args);
            c
        };
        match build("EVALSHA", &self.hash).query_async::<Value>(conn).await {
            Err(e) if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                build("EVAL", self.source).query_async::<Value>(conn).await
            }
            other => other,
        }
    }
}

/// One Redis server and the state of the connection to it.
pub(crate) struct Redis {
    client: Client,
    /// `host:port` for logs (the URL may hold a password).
    location: String,
    url: String,
    /// Some while up.
    conn: ArcSwapOption<MultiplexedConnection>,
    on_error: AtomicU8,
    probing: AtomicBool,
    /// Replaced by a reload: its probe stops and reports nothing.
    retired: AtomicBool,
    admit: Script,
    charge: Script,
    round_trip: Duration,
}

impl std::fmt::Debug for Redis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Redis {{ {}, up: {} }}", self.location, self.is_up())
    }
}

/// Checks a `redis_url` the way the backend will open it (no connection).
pub fn validate_url(url: &str) -> Result<(), String> {
    Client::open(url).map(drop).map_err(|e| describe_open_error(&e))
}

/// The detail of an open error without the URL (which may hold a password).
fn describe_open_error(e: &redis::RedisError) -> String {
    match e.detail() {
        Some(d) if !d.contains('@') => format!("{} ({d})", e.category()),
        _ => e.category().to_owned(),
    }
}

impl Redis {
    /// Opens the client (no I/O), tries one connection bounded by the probe
    /// timeout, and if that fails starts probing in the background. Never
    /// fails for an unreachable server, only for an unusable URL.
    pub async fn start(url: &str, on_error: OnBackendError) -> Result<Arc<Redis>, String> {
        Self::start_with(url, on_error, ROUND_TRIP).await
    }

    pub(crate) async fn start_with(
        url: &str,
        on_error: OnBackendError,
        round_trip: Duration,
    ) -> Result<Arc<Redis>, String> {
        let client = Client::open(url).map_err(|e| format!("rate_limit.redis_url: {}", describe_open_error(&e)))?;
        let location = client.get_connection_info().addr().to_string();
        let r = Arc::new(Redis {
            client,
            location,
            url: url.to_owned(),
            conn: ArcSwapOption::empty(),
            on_error: AtomicU8::new(encode_mode(on_error)),
            probing: AtomicBool::new(true),
            retired: AtomicBool::new(false),
            admit: Script::new(ADMIT_LUA),
            charge: Script::new(CHARGE_LUA),
            round_trip,
        });
        match r.connect().await {
            Ok(conn) => {
                // Probing ends before the connection is published, so a
                // failure on it right away starts a new probe.
                r.probing.store(false, Ordering::Release);
                r.conn.store(Some(Arc::new(conn)));
                crate::metrics::global().rate_limit_backend_up(true);
                tracing::info!(redis = %r.location, "rate limits shared in Redis");
            }
            Err(e) => {
                crate::metrics::global().rate_limit_backend_up(false);
                crate::metrics::global().rate_limit_backend_error();
                tracing::warn!(
                    redis = %r.location,
                    on_backend_error = on_error.name(),
                    "rate limit backend unavailable at start ({e}); on_backend_error applies until it answers"
                );
                tokio::spawn(probe(Arc::downgrade(&r)));
            }
        }
        Ok(r)
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// No longer the backend in use (a reload replaced it).
    pub fn retire(&self) {
        self.retired.store(true, Ordering::Release);
    }

    fn is_retired(&self) -> bool {
        self.retired.load(Ordering::Acquire)
    }

    pub fn is_up(&self) -> bool {
        self.conn.load().is_some()
    }

    pub fn on_error(&self) -> OnBackendError {
        decode_mode(self.on_error.load(Ordering::Relaxed))
    }

    pub fn set_on_error(&self, mode: OnBackendError) {
        self.on_error.store(encode_mode(mode), Ordering::Relaxed);
    }

    /// One admission round trip.
    pub async fn admit(
        self: &Arc<Self>,
        tenant: &str,
        user: &str,
        limits: &TenantRateLimit,
    ) -> Result<Verdict, Failure> {
        let Some(conn) = self.conn.load_full() else { return Err(Failure::Down) };
        let keys = Keys::new(tenant, user);
        let args = admit_args(limits);
        let mut c = (*conn).clone();
        let answer = tokio::time::timeout(
            self.round_trip,
            self.admit.run(&mut c, &[&keys.budget, &keys.tenant, &keys.user], &args),
        )
        .await;
        let result = match answer {
            Err(_) => Err(Failure::Timeout),
            Ok(Err(e)) => Err(Failure::Redis(e)),
            Ok(Ok(v)) => parse_verdict(&v).map_err(Failure::Bad),
        };
        if let Err(e) = &result {
            self.failed(&conn, e);
        }
        result
    }

    /// Charges `cost_us` of refill to `budget_key`.
    pub async fn charge(self: &Arc<Self>, budget_key: &str, cost_us: u64) -> Result<(), Failure> {
        let Some(conn) = self.conn.load_full() else { return Err(Failure::Down) };
        let mut c = (*conn).clone();
        let answer = tokio::time::timeout(CHARGE_TIMEOUT, self.charge.run(&mut c, &[budget_key], &[cost_us])).await;
        let result = match answer {
            Err(_) => Err(Failure::Timeout),
            Ok(Err(e)) => Err(Failure::Redis(e)),
            Ok(Ok(Value::Int(0))) => Ok(()),
            Ok(Ok(v)) => Err(Failure::Bad(BadAnswer(format!("unexpected charge answer {v:?}")))),
        };
        if let Err(e) = &result {
            self.failed(&conn, e);
        }
        result
    }

    /// Marks the backend down if `conn` is still the one in use (so a burst
    /// of failures logs and counts one transition) and starts the probe.
    fn failed(self: &Arc<Self>, conn: &Arc<MultiplexedConnection>, e: &Failure) {
        crate::metrics::global().rate_limit_backend_error();
        let prev = self.conn.compare_and_swap(conn, None::<Arc<MultiplexedConnection>>);
        let was_current = prev.as_ref().is_some_and(|p| Arc::ptr_eq(p, conn));
        if !was_current || self.is_retired() {
            return;
        }
        let m = crate::metrics::global();
        m.rate_limit_backend_up(false);
        m.rate_limit_backend_transition(false);
        tracing::warn!(
            redis = %self.location,
            on_backend_error = self.on_error().name(),
            "rate limit backend down ({e}); on_backend_error applies, retrying every {} s",
            PROBE_EVERY.as_secs()
        );
        if !self.probing.swap(true, Ordering::AcqRel) {
            tokio::spawn(probe(Arc::downgrade(self)));
        }
    }

    /// A new connection with both scripts loaded, within [`PROBE_TIMEOUT`].
    async fn connect(&self) -> Result<MultiplexedConnection, String> {
        let attempt = async {
            let cfg = AsyncConnectionConfig::new()
                .set_connection_timeout(Some(PROBE_TIMEOUT))
                .set_response_timeout(Some(PROBE_TIMEOUT));
            let mut conn = self.client.get_multiplexed_async_connection_with_config(&cfg).await?;
            for s in [&self.admit, &self.charge] {
                let sha: String = redis::cmd("SCRIPT").arg("LOAD").arg(s.source).query_async(&mut conn).await?;
                if sha != s.hash {
                    return Err(redis::RedisError::from((ErrorKind::Client, "SCRIPT LOAD returned another hash")));
                }
            }
            Ok::<_, redis::RedisError>(conn)
        };
        match tokio::time::timeout(PROBE_TIMEOUT, attempt).await {
            Ok(Ok(c)) => Ok(c),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no connection within {} ms", PROBE_TIMEOUT.as_millis())),
        }
    }
}

/// Reconnects every [`PROBE_EVERY`] until a connection works or the backend
/// is gone (replaced by a reload).
async fn probe(r: Weak<Redis>) {
    loop {
        tokio::time::sleep(PROBE_EVERY).await;
        let Some(redis) = r.upgrade() else { return };
        if redis.is_retired() {
            return;
        }
        match redis.connect().await {
            Ok(conn) => {
                redis.probing.store(false, Ordering::Release);
                redis.conn.store(Some(Arc::new(conn)));
                let m = crate::metrics::global();
                m.rate_limit_backend_up(true);
                m.rate_limit_backend_transition(true);
                tracing::info!(redis = %redis.location, "rate limit backend answering again; limits shared in Redis");
                return;
            }
            Err(e) => tracing::debug!(redis = %redis.location, "rate limit backend still down: {e}"),
        }
    }
}

fn encode_mode(m: OnBackendError) -> u8 {
    match m {
        OnBackendError::Local => 0,
        OnBackendError::Deny => 1,
        OnBackendError::Allow => 2,
    }
}

fn decode_mode(v: u8) -> OnBackendError {
    match v {
        1 => OnBackendError::Deny,
        2 => OnBackendError::Allow,
        _ => OnBackendError::Local,
    }
}

