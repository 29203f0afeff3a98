use super::*;
use std::collections::HashSet;
use std::sync::atomic::AtomicU64;

/// A record; `decision` other than "allow" (even "") is a deny, as a
/// record that nothing allowed is.
fn rec(tenant: Option<&str>, op: Option<&'static str>, decision: &'static str, status: u16) -> AuditRecord {
    AuditRecord {
        tenant: tenant.map(str::to_string),
        operation: op,
        decision: if decision == "allow" { crate::audit::Decision::Allow } else { crate::audit::Decision::Deny },
        status,
        latency_ms: 12.5,
        ..Default::default()
    }
}

fn samples<'a>(text: &'a str, name: &str) -> Vec<&'a str> {
    text.lines().filter(|l| l.starts_with(name) && !l.starts_with('#')).collect()
}

/// The value of the one sample whose line starts with `prefix`.
fn value(text: &str, prefix: &str) -> f64 {
    let hits: Vec<&str> = text.lines().filter(|l| l.starts_with(prefix)).collect();
    assert_eq!(hits.len(), 1, "{prefix}: {hits:?}\n{text}");
    hits[0].rsplit(' ').next().unwrap().parse().unwrap()
}

/// What a Prometheus 0.0.4 text parser insists on: every sample belongs to
/// the family of the `# TYPE` line before it (histograms: `_bucket`, `_sum`,
/// `_count`), each family is typed once, no OpenMetrics-only lines.
fn assert_prometheus_text(text: &str) {
    let mut families = HashSet::new();
    let mut current: Option<(String, String)> = None;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert!(["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind), "{line}");
            assert!(families.insert(name.to_string()), "family typed twice: {name}");
            current = Some((name.to_string(), kind.to_string()));
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap();
            assert!(!families.contains(name), "HELP after TYPE for {name}");
            continue;
        }
        assert!(!line.starts_with('#'), "OpenMetrics-only line: {line}");
        let name = line.split(['{', ' ']).next().unwrap();
        let (family, kind) = current.as_ref().expect("sample before any TYPE");
        let ok = match kind.as_str() {
            "histogram" => [format!("{family}_bucket"), format!("{family}_sum"), format!("{family}_count")]
                .iter()
                .any(|n| n == name),
            _ => name == family,
        };
        assert!(ok, "sample {name} outside its family {family} ({kind})");
        let v = line.rsplit(' ').next().unwrap();
        assert!(v.parse::<f64>().is_ok() || v == "+Inf", "bad value in {line}");
    }
}

#[test]
fn renders_every_spec_family_with_its_labels() {
    let m = Metrics::new(10);
    let mut allowed = rec(Some("acme"), Some("Converse"), "allow", 200);
    allowed.input_tokens = Some(11);
    allowed.output_tokens = Some(7);
    allowed.redactions = 2;
    allowed.dropped_results = 3;
    m.observe(&allowed);
    m.observe(&allowed);
    m.observe(&rec(Some("acme"), Some("Converse"), "deny", 403));
    m.observe(&rec(None, None, "deny", 404));
    let mut throttled = rec(Some("globex"), Some("InvokeModel"), "deny", 429);
    throttled.reason = Some("token_budget_exhausted");
    m.observe(&throttled);
    let mut memory = rec(Some("acme"), Some("Retrieve"), "deny", 429);
    memory.reason = Some("memory_limited");
    m.observe(&memory);
    let mut overloaded = rec(Some("acme"), Some("Converse"), "deny", 503);
    overloaded.reason = Some("overloaded");
    m.observe(&overloaded);
    m.set_buffered_bytes(4096);
    m.config_reload(true);
    m.config_reload(false);
    m.config_reload(false);

    let text = m.render(None, Format::Prometheus);
    assert_prometheus_text(&text);
    for family in [
        "# TYPE tenantgate_requests_total counter",
        "# TYPE tenantgate_request_duration_seconds histogram",
        "# TYPE tenantgate_tokens_total counter",
        "# TYPE tenantgate_throttled_total counter",
        "# TYPE tenantgate_sts_requests_total counter",
        "# TYPE tenantgate_credentials_cached gauge",
        "# TYPE tenantgate_verified_tokens_cached gauge",
        "# TYPE tenantgate_redactions_total counter",
        "# TYPE tenantgate_dropped_results_total counter",
        "# TYPE tenantgate_config_reloads_total counter",
        "# TYPE tenantgate_buffered_bytes gauge",
    ] {
        assert!(text.contains(family), "missing {family}\n{text}");
    }
    let req = "tenantgate_requests_total{";
    assert_eq!(value(&text, r#"tenantgate_requests_total{tenant="acme",operation="Converse",decision="allow",status="200"}"#), 2.0);
    assert_eq!(value(&text, r#"tenantgate_requests_total{tenant="acme",operation="Converse",decision="deny",status="403"}"#), 1.0);
    assert_eq!(value(&text, r#"tenantgate_requests_total{tenant="-",operation="unknown",decision="deny",status="404"}"#), 1.0);
    assert_eq!(samples(&text, req).len(), 6);
    assert_eq!(value(&text, r#"tenantgate_tokens_total{tenant="acme",direction="input"}"#), 22.0);
    assert_eq!(value(&text, r#"tenantgate_tokens_total{tenant="acme",direction="output"}"#), 14.0);
    assert_eq!(value(&text, r#"tenantgate_throttled_total{tenant="globex",reason="token_budget_exhausted"}"#), 1.0);
    assert_eq!(value(&text, r#"tenantgate_throttled_total{tenant="acme",reason="memory_limited"}"#), 1.0);
    assert_eq!(value(&text, r#"tenantgate_throttled_total{tenant="acme",reason="overloaded"}"#), 1.0);
    assert_eq!(samples(&text, "tenantgate_throttled_total").len(), 3, "only load refusals count");
    assert_eq!(value(&text, "tenantgate_buffered_bytes "), 4096.0);
    assert_eq!(value(&text, "tenantgate_redactions_total "), 4.0);
    assert_eq!(value(&text, "tenantgate_dropped_results_total "), 6.0);
    assert_eq!(value(&text, r#"tenantgate_config_reloads_total{result="ok"}"#), 1.0);
    assert_eq!(value(&text, r#"tenantgate_config_reloads_total{result="error"}"#), 2.0);
    assert_eq!(value(&text, "tenantgate_config_last_reload_successful "), 0.0);
    // Static credentials (no provider here): the STS families are still there.
    for r in ["ok", "error", "timeout"] {
        assert_eq!(value(&text, &format!(r#"tenantgate_sts_requests_total{{result="{r}"}}"#)), 0.0);
    }
    assert_eq!(value(&text, "tenantgate_credentials_cached "), 0.0);
    assert_eq!(value(&text, "tenantgate_verified_tokens_cached "), 0.0);
    m.set_verified_tokens_cached(42);
    let text = m.render(None, Format::Prometheus);
    assert_eq!(value(&text, "tenantgate_verified_tokens_cached "), 42.0);
}

#[test]
fn reload_counters_exist_before_any_reload() {
    let text = Metrics::new(10).render(None, Format::Prometheus);
    assert_eq!(value(&text, r#"tenantgate_config_reloads_total{result="ok"}"#), 0.0);
    assert_eq!(value(&text, r#"tenantgate_config_reloads_total{result="error"}"#), 0.0);
    assert_eq!(value(&text, "tenantgate_config_last_reload_successful "), 1.0);
}

#[test]
fn duration_histogram_by_operation_in_seconds() {
    let m = Metrics::new(10);
    let mut r = rec(Some("acme"), Some("Converse"), "allow", 200);
    for ms in [0.5, 3.0, 40.0, 2_000.0, 120_000.0] {
        r.latency_ms = ms;
        m.observe(&r);
    }
    let text = m.render(None, Format::Prometheus);
    let h = "tenantgate_request_duration_seconds";
    let bucket = |le: &str| value(&text, &format!(r#"{h}_bucket{{le="{le}",operation="Converse"}}"#));
    assert_eq!(bucket("0.001"), 1.0);
    assert_eq!(bucket("0.005"), 2.0);
    assert_eq!(bucket("0.05"), 3.0);
    assert_eq!(bucket("2.5"), 4.0);
    assert_eq!(bucket("60.0"), 4.0);
    assert_eq!(bucket("+Inf"), 5.0);
    assert_eq!(value(&text, &format!(r#"{h}_count{{operation="Converse"}}"#)), 5.0);
    let sum = value(&text, &format!(r#"{h}_sum{{operation="Converse"}}"#));
    assert!((sum - 122.0435).abs() < 1e-9, "{sum}");
    assert_eq!(samples(&text, &format!("{h}_bucket")).len(), DURATION_BUCKETS.len() + 1);
}

#[test]
fn tenant_labels_are_bounded() {
    let m = Metrics::new(3);
    for t in ["t1", "t2", "t3", "t4", "t5", "t1", "t4"] {
        let mut r = rec(Some(t), Some("Converse"), "allow", 200);
        r.input_tokens = Some(1);
        m.observe(&r);
    }
    // Not valid tenant ids: never a label of their own.
    m.observe(&rec(Some("_other"), Some("Converse"), "allow", 200));
    m.observe(&rec(Some("bad\"id\n"), Some("Converse"), "allow", 200));
    let text = m.render(None, Format::Prometheus);
    let series = samples(&text, "tenantgate_requests_total{");
    let tenants: HashSet<&str> = series
        .iter()
        .map(|l| l.split("tenant=\"").nth(1).unwrap().split('"').next().unwrap())
        .collect();
    assert_eq!(tenants, HashSet::from(["t1", "t2", "t3", "_other"]), "{series:?}");
    assert_eq!(value(&text, r#"tenantgate_requests_total{tenant="t1","#), 2.0);
    assert_eq!(value(&text, r#"tenantgate_requests_total{tenant="_other","#), 5.0);
    assert_eq!(value(&text, r#"tenantgate_tokens_total{tenant="_other",direction="input"}"#), 3.0);
    assert_eq!(m.tenants.known.read().unwrap().len(), 3);
}

#[test]
fn decision_is_allow_or_deny() {
    let m = Metrics::new(10);
    m.observe(&rec(Some("acme"), Some("Converse"), "", 500));
    let text = m.render(None, Format::Prometheus);
    assert!(text.contains(r#"decision="deny",status="500""#), "{text}");
}

#[test]
fn openmetrics_when_asked() {
    assert_eq!(Format::from_accept(None), Format::Prometheus);
    assert_eq!(Format::from_accept(Some("text/plain;version=0.0.4;q=0.5,*/*;q=0.1")), Format::Prometheus);
    let prom = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    assert_eq!(Format::from_accept(Some(prom)), Format::OpenMetrics);
    assert!(Format::Prometheus.content_type().starts_with("text/plain; version=0.0.4"));

    let m = Metrics::new(10);
    m.observe(&rec(Some("acme"), Some("Converse"), "allow", 200));
    let om = m.render(None, Format::OpenMetrics);
    assert!(om.ends_with("# EOF\n"));
    assert!(om.contains("# TYPE tenantgate_requests counter\n"));
    assert!(om.contains("# UNIT tenantgate_request_duration_seconds seconds\n"));
    let text = m.render(None, Format::Prometheus);
    assert!(!text.contains("# EOF") && !text.contains("# UNIT"));
    assert!(text.contains("# HELP tenantgate_requests_total Requests by tenant"));
    // The samples are the same in both.
    let s = |t: &str| t.lines().filter(|l| !l.starts_with('#')).map(str::to_string).collect::<Vec<_>>();
    assert_eq!(s(&om), s(&text));
}

#[derive(Default)]
struct FakeSts {
    counts: [AtomicU64; 3],
    cached: AtomicU64,
}

impl StsSource for FakeSts {
    fn sts_counts(&self) -> ([u64; 3], u64) {
        (
            [0, 1, 2].map(|i| self.counts[i].load(Ordering::Relaxed)),
            self.cached.load(Ordering::Relaxed),
        )
    }
}

#[test]
fn sts_totals_survive_provider_swaps() {
    let mut t = StsTotals::<FakeSts>::default();
    let a = Arc::new(FakeSts::default());
    a.counts[0].store(5, Ordering::Relaxed);
    a.cached.store(4, Ordering::Relaxed);
    t.sync(Some(&a), true);
    assert_eq!((t.total, t.cached), ([5, 0, 0], 4));
    a.counts[1].store(2, Ordering::Relaxed);
    t.sync(Some(&a), true);
    assert_eq!(t.total, [5, 2, 0]);

    // Reload: `a` is retired (folded), `b` starts from zero, and `a` is
    // still counted while in-flight requests hold it.
    a.counts[0].store(6, Ordering::Relaxed);
    t.sync(Some(&a), false);
    let b = Arc::new(FakeSts::default());
    b.counts[2].store(1, Ordering::Relaxed);
    b.cached.store(1, Ordering::Relaxed);
    a.counts[0].store(7, Ordering::Relaxed);
    t.sync(Some(&b), true);
    assert_eq!((t.total, t.cached), ([7, 2, 1], 1));
    assert_eq!(t.tracked.len(), 2);

    drop(a);
    b.counts[0].store(3, Ordering::Relaxed);
    t.sync(Some(&b), true);
    assert_eq!(t.total, [10, 2, 1]);
    assert_eq!(t.tracked.len(), 1, "a provider gone is forgotten");
    t.sync(None, true);
    assert_eq!((t.total, t.cached), ([10, 2, 1], 0));
}

#[test]
fn global_is_one_registry() {
    assert!(std::ptr::eq(global(), global()));
}

/// `cargo test --release --lib metrics::tests::observe_cost -- --ignored --nocapture`
#[test]
#[ignore = "micro-benchmark; run in release"]
fn observe_cost() {
    let m = Metrics::new(MAX_TENANT_LABELS);
    let mut r = rec(Some("acme"), Some("Converse"), "allow", 200);
    r.input_tokens = Some(10);
    r.output_tokens = Some(20);
    m.observe(&r);
    let n = 1_000_000;
    let t = std::time::Instant::now();
    for _ in 0..n {
        m.observe(std::hint::black_box(&r));
    }
    eprintln!("observe: {:?} per record", t.elapsed() / n);
}

#[test]
fn rate_limit_backend_families() {
    let m = Metrics::new(10);
    let text = m.render(None, Format::Prometheus);
    assert_prometheus_text(&text);
    assert_eq!(value(&text, "tenantgate_rate_limit_backend_up "), 1.0, "local limits: the backend is up");
    assert_eq!(value(&text, "tenantgate_rate_limit_backend_errors_total "), 0.0);
    for action in ["local", "deny", "allow"] {
        assert_eq!(value(&text, &format!(r#"tenantgate_rate_limit_fallback_total{{action="{action}"}}"#)), 0.0);
    }
    m.rate_limit_backend_up(false);
    m.rate_limit_backend_transition(false);
    m.rate_limit_backend_error();
    m.rate_limit_backend_error();
    m.rate_limit_fallback("deny");
    m.rate_limit_backend_transition(true);
    m.rate_limit_backend_up(true);
    m.rate_limit_backend_up(false);
    let text = m.render(None, Format::Prometheus);
    assert!(text.contains("# TYPE tenantgate_rate_limit_backend_up gauge"), "{text}");
    assert!(text.contains("# TYPE tenantgate_rate_limit_backend_errors_total counter"), "{text}");
    assert_eq!(value(&text, "tenantgate_rate_limit_backend_up "), 0.0);
    assert_eq!(value(&text, "tenantgate_rate_limit_backend_errors_total "), 2.0);
    assert_eq!(value(&text, r#"tenantgate_rate_limit_backend_transitions_total{state="down"}"#), 1.0);
    assert_eq!(value(&text, r#"tenantgate_rate_limit_backend_transitions_total{state="up"}"#), 1.0);
    assert_eq!(value(&text, r#"tenantgate_rate_limit_fallback_total{action="deny"}"#), 1.0);
    assert_eq!(value(&text, r#"tenantgate_rate_limit_fallback_total{action="local"}"#), 0.0);
}

#[test]
fn audit_drops_are_counted() {
    let m = Metrics::new(10);
    let text = m.render(None, Format::Prometheus);
    assert_eq!(value(&text, "tenantgate_audit_dropped_total "), 0.0);
    assert!(text.contains("# TYPE tenantgate_audit_dropped_total counter"), "{text}");
    m.audit_dropped();
    m.audit_dropped();
    let text = m.render(None, Format::Prometheus);
    assert_eq!(value(&text, "tenantgate_audit_dropped_total "), 2.0);
    assert_prometheus_text(&text);
}

#[test]
fn client_write_timeouts_by_response_kind() {
    let m = Metrics::new(10);
    let text = m.render(None, Format::Prometheus);
    for response in ["streamed", "buffered"] {
        let s = format!(r#"tenantgate_client_write_timeouts_total{{response="{response}"}}"#);
        assert_eq!(value(&text, &s), 0.0, "exists before any timeout");
    }
    m.client_write_timeout(true);
    m.client_write_timeout(true);
    m.client_write_timeout(false);
    let text = m.render(None, Format::Prometheus);
    assert_prometheus_text(&text);
    assert!(text.contains("# TYPE tenantgate_client_write_timeouts_total counter"), "{text}");
    assert_eq!(value(&text, r#"tenantgate_client_write_timeouts_total{response="streamed"}"#), 2.0);
    assert_eq!(value(&text, r#"tenantgate_client_write_timeouts_total{response="buffered"}"#), 1.0);
}
