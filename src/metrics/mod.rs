//! Prometheus metrics (docs/reference.md §9), served on the admin listener only.
//!
//! One process-wide registry (`global()`), fed from two places:
//! - the audit path: `observe(&record)` once per finished `AuditRecord`
//!   (requests, latency, tokens, throttling, redactions, dropped results),
//!   as the audit sink's `AuditObserver` (wired by `Sidecar`);
//! - scrape time: `render(creds, format)` reads the STS counters and the
//!   number of cached sessions from the running credential provider.
//!
//! Tenant label cardinality is bounded: at most `server.metrics_max_tenants`
//! (default `MAX_TENANT_LABELS`; `init` applies the configured value when the
//! sidecar starts) distinct tenant values ever appear; later tenants (and any value that is not a
//! valid tenant id) are labelled `_other`, requests without a known tenant
//! `-`. Neither can collide with a real tenant id, which starts with an
//! alphanumeric character. The bound is first come, first served for the
//! life of the process (a series, once exported, is never dropped, so
//! counters stay monotonic).
//!
//! `observe` allocates nothing once a series exists: the tenant label is a
//! shared `Arc<str>` handed out by a small interning table, every other label
//! is a `&'static str` or an integer, and each family lookup is one hash
//! under a read lock.

mod labels;
mod render;
mod sts;

use crate::audit::{AuditObserver, AuditRecord};
use crate::aws::credentials::CredentialProvider;
use labels::{
    ActionLabels, OperationLabels, RequestLabels, ResponseLabels, ResultLabels, StateLabels, TenantLabels,
    TenantOnlyLabels, ThrottleLabels, TokenLabels,
};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
pub use render::Format;
use render::openmetrics_to_prometheus;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock};
pub use sts::StsSource;
use sts::{StsCollector, StsTotals};


/// Default of the tenant label bound (`server.metrics_max_tenants`). With the 15 operation names, two
/// decisions and the handful of statuses a tenant sees, this keeps the
/// request counter to tens of thousands of series at worst.
pub const MAX_TENANT_LABELS: usize = 1_000;
/// Tenant label of tenants past the bound (and invalid ids).
pub const OTHER_TENANT: &str = "_other";
/// Tenant label of requests refused before a tenant was known.
pub const NO_TENANT: &str = "-";
/// Operation label of requests whose route was not recognised.
pub const UNKNOWN_OPERATION: &str = "unknown";
/// Latency buckets in seconds: 1 ms .. 60 s, for a proxy whose own cost is
/// well under a millisecond and whose upstream may stream for a minute.
pub const DURATION_BUCKETS: [f64; 15] =
    [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

/// Content type of the Prometheus text format (the default).
pub const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
/// Content type of the OpenMetrics text format (when the scraper asks).
pub const OPENMETRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

fn duration_histogram() -> Histogram {
    Histogram::new(DURATION_BUCKETS)
}

pub struct Metrics {
    registry: Registry,
    tenants: TenantLabels,
    requests: Family<RequestLabels, Counter>,
    duration: Family<OperationLabels, Histogram, fn() -> Histogram>,
    tokens: Family<TokenLabels, Counter>,
    guardrail_units: Family<TenantOnlyLabels, Counter>,
    throttled: Family<ThrottleLabels, Counter>,
    redactions: Counter,
    audit_dropped: Counter,
    dropped_results: Counter,
    reloads: Family<ResultLabels, Counter>,
    last_reload_ok: Gauge,
    rl_backend_up: Gauge,
    rl_backend_errors: Counter,
    rl_backend_transitions: Family<StateLabels, Counter>,
    rl_fallback: Family<ActionLabels, Counter>,
    tokens_cached: Gauge,
    client_write_timeouts: Family<ResponseLabels, Counter>,
    buffered_bytes: Gauge,
    sts: Arc<Mutex<StsTotals>>,
}

static GLOBAL: OnceLock<Metrics> = OnceLock::new();

/// The process-wide metrics (what `/metrics` serves). Created on first use
/// with the default tenant label bound unless `init` came first.
pub fn global() -> &'static Metrics {
    GLOBAL.get_or_init(|| Metrics::new(MAX_TENANT_LABELS))
}

/// Initialises the process-wide metrics with the configured tenant label
/// bound (`server.metrics_max_tenants`); called once when the sidecar starts
/// (`Sidecar::start`). Calling it again (another sidecar in the same
/// process, or after `global()` was already used) sets the bound again:
/// tenants that already have series keep them (counters stay monotonic),
/// new tenants are held to the new bound. A config reload does not call it,
/// so a changed value applies at the next restart.
pub fn init(max_tenants: usize) -> &'static Metrics {
    let m = GLOBAL.get_or_init(|| Metrics::new(max_tenants.max(1)));
    m.set_max_tenants(max_tenants);
    m
}

impl Metrics {
    /// A registry of its own; `max_tenants` is the tenant label bound.
    pub fn new(max_tenants: usize) -> Metrics {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "tenantgate_requests",
            "Requests by tenant, operation, decision and HTTP status",
            requests.clone(),
        );
        let duration = Family::<OperationLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            duration_histogram as fn() -> Histogram,
        );
        registry.register_with_unit(
            "tenantgate_request_duration",
            "Request latency from arrival to the end of the response body, by operation",
            Unit::Seconds,
            duration.clone(),
        );
        let tokens = Family::<TokenLabels, Counter>::default();
        registry.register(
            "tenantgate_tokens",
            "Model tokens by tenant and direction (input, output)",
            tokens.clone(),
        );
        let guardrail_units = Family::<TenantOnlyLabels, Counter>::default();
        registry.register(
            "tenantgate_guardrail_text_units",
            "Guardrail text units InvokeGuardrailChecks answers reported, by tenant",
            guardrail_units.clone(),
        );
        let throttled = Family::<ThrottleLabels, Counter>::default();
        registry.register(
            "tenantgate_throttled",
            "Requests refused with 429 (and 503 overloaded) by tenant and reason",
            throttled.clone(),
        );
        let redactions = Counter::default();
        registry.register("tenantgate_redactions", "Matches replaced in response bodies", redactions.clone());
        let audit_dropped = Counter::default();
        registry.register(
            "tenantgate_audit_dropped",
            "Audit lines dropped because the audit queue to stdout was full (stdout not read fast enough)",
            audit_dropped.clone(),
        );
        let dropped_results = Counter::default();
        registry.register(
            "tenantgate_dropped_results",
            "Retrieved results dropped because they belong to another tenant",
            dropped_results.clone(),
        );
        let reloads = Family::<ResultLabels, Counter>::default();
        for result in ["ok", "error"] {
            let _ = reloads.get_or_create(&ResultLabels { result });
        }
        registry.register("tenantgate_config_reloads", "Configuration reloads by result (ok, error)", reloads.clone());
        let last_reload_ok = Gauge::default();
        last_reload_ok.set(1);
        registry.register(
            "tenantgate_config_last_reload_successful",
            "1 when the last reload applied (or none was tried), 0 while a rejected file is on disk",
            last_reload_ok.clone(),
        );
        let rl_backend_up = Gauge::default();
        rl_backend_up.set(1);
        registry.register(
            "tenantgate_rate_limit_backend_up",
            "1 while the rate limit backend answers (always with backend = local), 0 while a shared backend is down",
            rl_backend_up.clone(),
        );
        let rl_backend_errors = Counter::default();
        registry.register(
            "tenantgate_rate_limit_backend_errors",
            "Calls to the shared rate limit backend that failed or timed out",
            rl_backend_errors.clone(),
        );
        let rl_backend_transitions = Family::<StateLabels, Counter>::default();
        for state in ["down", "up"] {
            let _ = rl_backend_transitions.get_or_create(&StateLabels { state });
        }
        registry.register(
            "tenantgate_rate_limit_backend_transitions",
            "Times the shared rate limit backend went down or came back up, by new state",
            rl_backend_transitions.clone(),
        );
        let rl_fallback = Family::<ActionLabels, Counter>::default();
        for action in ["local", "deny", "allow"] {
            let _ = rl_fallback.get_or_create(&ActionLabels { action });
        }
        registry.register(
            "tenantgate_rate_limit_fallback",
            "Requests decided by on_backend_error (local, deny, allow) because the shared backend did not answer",
            rl_fallback.clone(),
        );
        let tokens_cached = Gauge::default();
        registry.register(
            "tenantgate_verified_tokens_cached",
            "Verified JWTs held in the token cache (bounded at 10,000; 0 in static identity mode)",
            tokens_cached.clone(),
        );
        let client_write_timeouts = Family::<ResponseLabels, Counter>::default();
        for response in ["streamed", "buffered"] {
            let _ = client_write_timeouts.get_or_create(&ResponseLabels { response });
        }
        registry.register(
            "tenantgate_client_write_timeouts",
            "Client connections closed because a response write made no progress for the timeout \
             (the client stopped reading), by response kind (streamed, buffered)",
            client_write_timeouts.clone(),
        );
        let buffered_bytes = Gauge::default();
        registry.register(
            "tenantgate_buffered_bytes",
            "Request and response bytes held in memory now, charged to the buffer budget (server.max_buffered_bytes)",
            buffered_bytes.clone(),
        );
        let sts = Arc::new(Mutex::new(StsTotals::default()));
        registry.register_collector(Box::new(StsCollector(sts.clone())));
        Metrics {
            registry,
            tenants: TenantLabels::new(max_tenants),
            requests,
            duration,
            tokens,
            guardrail_units,
            throttled,
            redactions,
            audit_dropped,
            dropped_results,
            reloads,
            last_reload_ok,
            rl_backend_up,
            rl_backend_errors,
            rl_backend_transitions,
            rl_fallback,
            tokens_cached,
            client_write_timeouts,
            buffered_bytes,
            sts,
        }
    }

    /// The tenant label bound in force.
    pub fn max_tenants(&self) -> usize {
        self.tenants.max.load(Ordering::Relaxed)
    }

    /// Sets the tenant label bound (at least 1). Tenants that already have
    /// series keep them; new tenants are held to the new bound.
    pub fn set_max_tenants(&self, max_tenants: usize) {
        self.tenants.max.store(max_tenants.max(1), Ordering::Relaxed);
    }

    /// Counts one finished request. Called once per `AuditRecord`.
    pub fn observe(&self, rec: &AuditRecord) {
        let tenant = self.tenants.label(rec.tenant.as_deref());
        let operation = rec.operation.unwrap_or(UNKNOWN_OPERATION);
        let decision = rec.decision.as_str();
        self.requests
            .get_or_create(&RequestLabels { tenant: tenant.clone(), operation, decision, status: rec.status })
            .inc();
        let secs = rec.latency_ms / 1000.0;
        if secs.is_finite() && secs >= 0.0 {
            self.duration.get_or_create(&OperationLabels { operation }).observe(secs);
        }
        if let Some(n) = rec.input_tokens {
            self.tokens.get_or_create(&TokenLabels { tenant: tenant.clone(), direction: "input" }).inc_by(n);
        }
        if let Some(n) = rec.output_tokens {
            self.tokens.get_or_create(&TokenLabels { tenant: tenant.clone(), direction: "output" }).inc_by(n);
        }
        if let Some(n) = rec.guardrail_text_units {
            self.guardrail_units.get_or_create(&TenantOnlyLabels { tenant: tenant.clone() }).inc_by(n);
        }
        if let Some(reason) = rec.reason.and_then(throttle_reason) {
            self.throttled.get_or_create(&ThrottleLabels { tenant, reason }).inc();
        }
        if rec.redactions > 0 {
            self.redactions.inc_by(rec.redactions);
        }
        if rec.dropped_results > 0 {
            self.dropped_results.inc_by(rec.dropped_results);
        }
    }

    /// Counts one audit line dropped because the queue to stdout was full
    /// (`tenantgate_audit_dropped_total`).
    pub fn audit_dropped(&self) {
        self.audit_dropped.inc();
    }

    /// Counts one reload attempt (`tenantgate_config_reloads_total`).
    pub fn config_reload(&self, ok: bool) {
        self.reloads.get_or_create(&ResultLabels { result: if ok { "ok" } else { "error" } }).inc();
        self.last_reload_ok.set(i64::from(ok));
    }

    /// Sets `tenantgate_rate_limit_backend_up`.
    pub fn rate_limit_backend_up(&self, up: bool) {
        self.rl_backend_up.set(i64::from(up));
    }

    /// Counts one failed call to the shared rate limit backend.
    pub fn rate_limit_backend_error(&self) {
        self.rl_backend_errors.inc();
    }

    /// Counts the shared backend going down (`up` false) or coming back.
    pub fn rate_limit_backend_transition(&self, up: bool) {
        self.rl_backend_transitions.get_or_create(&StateLabels { state: if up { "up" } else { "down" } }).inc();
    }

    /// Counts one request decided by `on_backend_error` (`local`, `deny`, `allow`).
    pub fn rate_limit_fallback(&self, action: &'static str) {
        self.rl_fallback.get_or_create(&ActionLabels { action }).inc();
    }

    /// Counts one client connection closed because a response write made
    /// no progress (`streamed`: a body forwarded as it arrives, whose audit
    /// line says `client_stalled`; else a response held whole, already
    /// audited).
    pub fn client_write_timeout(&self, streamed: bool) {
        let response = if streamed { "streamed" } else { "buffered" };
        self.client_write_timeouts.get_or_create(&ResponseLabels { response }).inc();
    }

    /// Sets `tenantgate_verified_tokens_cached` (read at scrape time from the
    /// running authenticator).
    pub fn set_verified_tokens_cached(&self, n: usize) {
        self.tokens_cached.set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// Sets `tenantgate_buffered_bytes` (read at scrape time from the
    /// proxy's buffer budget).
    pub fn set_buffered_bytes(&self, n: u64) {
        self.buffered_bytes.set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// Folds the STS counts of a provider about to be replaced (on reload),
    /// so none it made since the last scrape are lost; it stays tracked while
    /// in-flight requests still hold it.
    pub fn retire_credentials(&self, old: &Arc<CredentialProvider>) {
        self.sts.lock().unwrap_or_else(|e| e.into_inner()).sync(Some(old), false);
    }

    /// The exposition. `creds` is the running credential provider (read for
    /// the STS counters and the cached-session gauge).
    pub fn render(&self, creds: Option<&Arc<CredentialProvider>>, format: Format) -> String {
        self.sts.lock().unwrap_or_else(|e| e.into_inner()).sync(creds, true);
        let mut out = String::with_capacity(8 * 1024);
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            tracing::error!("metrics encoding failed");
        }
        match format {
            Format::OpenMetrics => out,
            Format::Prometheus => openmetrics_to_prometheus(&out),
        }
    }
}

/// The audit sink's observer (wired by `Sidecar`): every audit record is
/// one finished request, every dropped line counts in
/// `tenantgate_audit_dropped_total`.
impl AuditObserver for Metrics {
    fn record(&self, rec: &AuditRecord) {
        self.observe(rec);
    }

    fn dropped(&self) {
        self.audit_dropped();
    }
}

/// The `tenantgate_throttled_total` reason of a refusal, if it is one.
fn throttle_reason(reason: &str) -> Option<&'static str> {
    match reason {
        "rate_limited" => Some("rate_limited"),
        "concurrency_limited" => Some("concurrency_limited"),
        "token_budget_exhausted" => Some("token_budget_exhausted"),
        "memory_limited" => Some("memory_limited"),
        "overloaded" => Some("overloaded"),
        _ => None,
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod bound_tests {
    use super::*;

    fn rec(tenant: &str) -> AuditRecord {
        AuditRecord {
            tenant: Some(tenant.to_string()),
            operation: Some("Converse"),
            decision: crate::audit::Decision::Allow,
            status: 200,
            ..Default::default()
        }
    }

    fn tenants_in(m: &Metrics) -> Vec<String> {
        let text = m.render(None, Format::Prometheus);
        let mut out: Vec<String> = text
            .lines()
            .filter(|l| l.starts_with("tenantgate_requests_total{"))
            .filter_map(|l| l.split("tenant=\"").nth(1)?.split('"').next().map(str::to_string))
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// `server.metrics_max_tenants`: the bound can be set on a registry that
    /// already counts; existing series are kept, new tenants past the bound
    /// are `_other`.
    #[test]
    fn bound_can_be_set_after_creation() {
        let m = Metrics::new(MAX_TENANT_LABELS);
        m.set_max_tenants(2);
        assert_eq!(m.max_tenants(), 2);
        for t in ["a", "b", "c"] {
            m.observe(&rec(t));
        }
        assert_eq!(tenants_in(&m), ["_other", "a", "b"]);
        m.set_max_tenants(3);
        m.observe(&rec("d"));
        assert_eq!(tenants_in(&m), ["_other", "a", "b", "d"]);
        m.set_max_tenants(1);
        m.observe(&rec("e"));
        m.observe(&rec("a"));
        assert_eq!(tenants_in(&m), ["_other", "a", "b", "d"], "lowered: old series stay, new tenants are _other");
        m.set_max_tenants(0);
        assert_eq!(m.max_tenants(), 1, "a bound of 0 is raised to 1");
    }

    /// `init` hands out the one global registry (what `/metrics` serves).
    #[test]
    fn init_is_the_global_registry() {
        assert!(std::ptr::eq(init(MAX_TENANT_LABELS), global()));
    }
}
