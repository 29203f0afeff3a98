//! Benchmark: the cost of Cedar policy evaluation per request
//! (`tenantgate::decide::cedar`), with 10 and with 1,000 policies in the
//! configuration. Run with `bash bench/run.sh` (all benchmarks) or
//! `cargo bench --bench policy`.
//!
//! The 1,000 policies are what a fleet writes: 10 global rules and, for
//! each of 99 tenants, 10 rules of its own (its groups, claims, hours,
//! token limits, one per operation family). Policies are sliced per tenant
//! and per operation when loaded, so a request evaluates the global rules
//! and its tenant's rules whose action scope can match. The 10-policy case
//! is the global rules alone.
//!
//! Each figure: the time of one `evaluate` call (principal with groups and
//! two claims, a model resource, context with a token limit), median of 9
//! rounds of 20,000 calls, in one process. `evaluated`: the decision cache
//! off, so every call runs Cedar (the cost of a request unlike any before
//! it); `remembered`: the same request again, answered by the decision
//! cache (docs/policies.md "Cost").
//!
//! Environment: BENCH_QUICK=1 (3 rounds of 2,000).

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::Instant;
use tenantgate::decide::cedar::{ClaimDecl, ClaimType, Facts, Policies, PolicyResource, PolicySource};
use tenantgate::principal::Principal;
use tenantgate::route::Operation;

/// The ten global rules, shared with the `policies on` phase of the proxy
/// benchmark.
const GLOBAL: &str = include_str!("../bench/policies.cedar");

fn tenant_rules(t: usize) -> String {
    let mut s = String::new();
    for (i, group) in ["ModelCall", "ModelCall", "ModelCall", "KnowledgeBase", "KnowledgeBase", "Agent", "Agent", "SageMaker", "SageMaker", "ModelCall"]
        .iter()
        .enumerate()
    {
        s.push_str(&format!(
            "forbid(principal in TenantGate::Tenant::\"t{t}\", action in TenantGate::Action::\"{group}\", resource) \
             when {{ principal.groups.contains(\"team-{t}-{i}\") && context.hour_utc == {h} }};\n",
            h = (t + i) % 24
        ));
    }
    s
}

fn setup(per_tenant: bool, cache: usize) -> Policies {
    let claims = vec![
        ClaimDecl { name: "custom:plan".into(), ty: ClaimType::String },
        ClaimDecl { name: "level".into(), ty: ClaimType::Long },
    ];
    let global = vec![PolicySource { origin: "global.cedar".into(), text: GLOBAL.into() }];
    let mut tenants = BTreeMap::new();
    if per_tenant {
        for t in 0..99 {
            tenants.insert(format!("t{t}"), vec![PolicySource { origin: format!("t{t}.cedar"), text: tenant_rules(t) }]);
        }
    }
    let mut p = Policies::load(claims, &global, &tenants).expect("policies compile").expect("policies configured");
    p.set_decision_cache(cache);
    assert_eq!(p.count, if per_tenant { 1000 } else { 10 });
    p
}

fn principal() -> Principal {
    let mut p = Principal::static_tenant("t42");
    p.user = "alice".into();
    p.groups = vec!["eng".into(), "ml".into()];
    p.claims.insert("custom:plan".into(), serde_json::json!("pro"));
    p.claims.insert("level".into(), serde_json::json!(3));
    p
}

fn main() {
    let quick = std::env::var_os("BENCH_QUICK").is_some();
    let (rounds, iters) = if quick { (3, 2_000) } else { (9, 20_000) };
    let cases = [
        ("10 policies, evaluated", setup(false, 0)),
        ("1,000 policies, evaluated", setup(true, 0)),
        ("10 policies, remembered", setup(false, 10_000)),
        ("1,000 policies, remembered", setup(true, 10_000)),
    ];
    let who = principal();
    let facts = Facts { streaming: false, hour_utc: 12, max_tokens: Some(512), service_tier: None };
    let model = "anthropic.claude-3-haiku-20240307-v1:0";
    let mut medians = Vec::new();
    for (name, p) in &cases {
        let v = p.evaluate(&who, Operation::Converse, PolicyResource::Model(model), &facts).expect("applies");
        assert!(v.allowed, "{v:?}");
        let mut samples = Vec::new();
        for _ in 0..rounds {
            let t = Instant::now();
            for _ in 0..iters {
                black_box(p.evaluate(black_box(&who), Operation::Converse, PolicyResource::Model(model), &facts));
            }
            samples.push(t.elapsed().as_secs_f64() * 1e6 / iters as f64);
        }
        samples.sort_by(|a, b| a.total_cmp(b));
        let median = samples[samples.len() / 2];
        medians.push(median);
        println!("policy evaluation, {name}: {median:.2} µs per request (median of {rounds} rounds of {iters})");
    }
    println!("ratio 1,000 / 10 (evaluated): {:.2}x", medians[1] / medians[0]);
}
