use super::*;
use crate::test_support::principal;

fn src(origin: &str, text: &str) -> PolicySource {
    PolicySource { origin: origin.into(), text: text.into() }
}

fn claims() -> Vec<ClaimDecl> {
    vec![
        ClaimDecl { name: "custom:plan".into(), ty: ClaimType::String },
        ClaimDecl { name: "level".into(), ty: ClaimType::Long },
    ]
}

fn load(global: &[PolicySource], acme: &[PolicySource]) -> Result<Option<Policies>, Vec<PolicyError>> {
    let tenants = BTreeMap::from([("acme".to_string(), acme.to_vec())]);
    Policies::load(claims(), global, &tenants)
}

const HAIKU: &str = "anthropic.claude-3-haiku-20240307-v1:0";

fn facts(streaming: bool, max_tokens: Option<i64>) -> Facts {
    Facts { streaming, hour_utc: 10, max_tokens, service_tier: None }
}

#[test]
fn the_schema_parses_with_claims_of_every_type() {
    let all = vec![
        ClaimDecl { name: "custom:plan".into(), ty: ClaimType::String },
        ClaimDecl { name: "n".into(), ty: ClaimType::Long },
        ClaimDecl { name: "b".into(), ty: ClaimType::Bool },
        ClaimDecl { name: "teams".into(), ty: ClaimType::StringSet },
    ];
    let _ = Schema::from_cedarschema_str(&schema_text(&all)).unwrap().0;
    let _ = Schema::from_cedarschema_str(&schema_text(&[])).unwrap().0;
}

#[test]
fn no_sources_means_no_policies() {
    assert!(Policies::load(claims(), &[], &BTreeMap::new()).unwrap().is_none());
}

#[test]
fn permit_forbid_and_default_deny() {
    let p = load(
        &[src(
            "common.cedar",
            r#"@id("models-for-eng")
permit(principal, action in TenantGate::Action::"ModelCall", resource)
when { principal.groups.contains("eng") };
forbid(principal, action == TenantGate::Action::"ConverseStream", resource)
when { principal.claims has "custom:plan" && principal.claims["custom:plan"] == "free" };"#,
        )],
        &[],
    )
    .unwrap()
    .unwrap();
    let alice = principal("acme", "alice");
    let v = p.evaluate(&alice, Operation::Converse, PolicyResource::Model(HAIKU), &facts(false, None)).unwrap();
    assert!(v.allowed, "{v:?}");
    assert_eq!(v.policies, ["models-for-eng"]);
    // Not a model call: no permit applies, default deny.
    let v = p.evaluate(&alice, Operation::Retrieve, PolicyResource::KnowledgeBase("KB1"), &facts(false, None)).unwrap();
    assert!(!v.allowed && v.policies.is_empty(), "{v:?}");
    // A forbid wins over the permit.
    let mut free = principal("acme", "bob");
    free.claims.insert("custom:plan".into(), serde_json::json!("free"));
    let v = p.evaluate(&free, Operation::ConverseStream, PolicyResource::Model(HAIKU), &facts(true, None)).unwrap();
    assert!(!v.allowed);
    assert_eq!(v.policies, ["common.cedar:1"]);
    // Without the group: no permit.
    let mut outsider = principal("acme", "carol");
    outsider.groups.clear();
    assert!(!p.evaluate(&outsider, Operation::Converse, PolicyResource::Model(HAIKU), &facts(false, None)).unwrap().allowed);
}

#[test]
fn context_and_claims_of_other_types() {
    let p = load(
        &[],
        &[src(
            "acme.cedar",
            r#"permit(principal, action, resource is TenantGate::Model)
when { context has max_tokens && context.max_tokens <= 1024 && principal.claims has level && principal.claims.level >= 2 };"#,
        )],
    )
    .unwrap()
    .unwrap();
    let mut alice = principal("acme", "alice");
    alice.claims.insert("level".into(), serde_json::json!(3));
    let ok = |who: &Principal, max| p.evaluate(who, Operation::Converse, PolicyResource::Model(HAIKU), &facts(false, max)).unwrap().allowed;
    assert!(ok(&alice, Some(1024)));
    assert!(!ok(&alice, Some(1025)));
    assert!(!ok(&alice, None), "no stated limit is not within the limit");
    // A claim of another type than declared is absent.
    alice.claims.insert("level".into(), serde_json::json!("3"));
    assert!(!ok(&alice, Some(10)));
    // Policies of acme do not apply to globex (no global policies): None.
    assert!(p.evaluate(&principal("globex", "x"), Operation::Converse, PolicyResource::Model(HAIKU), &facts(false, None)).is_none());
    assert!(p.applies_to("acme") && !p.applies_to("globex"));
}

#[test]
fn tenants_are_principals_in_their_tenant() {
    let p = load(&[src("g.cedar", r#"permit(principal in TenantGate::Tenant::"acme", action, resource);"#)], &[])
        .unwrap()
        .unwrap();
    let f = facts(false, None);
    assert!(p.evaluate(&principal("acme", "a"), Operation::InvokeAgent, PolicyResource::Agent { agent: "A", alias: "B" }, &f).unwrap().allowed);
    assert!(!p.evaluate(&principal("globex", "a"), Operation::InvokeAgent, PolicyResource::Agent { agent: "A", alias: "B" }, &f).unwrap().allowed);
}

#[test]
fn errors_name_the_file_and_line() {
    let errs = load(&[src("bad.cedar", "permit(principal, action, resource);\n\npermit(principal, action, resource) when { principal.nope == 1 };")], &[])
        .unwrap_err();
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(errs[0].origin, "bad.cedar");
    assert_eq!(errs[0].line, Some(3), "{errs:?}");
    let errs = load(&[], &[src("syntax.cedar", "permit(principal, action, resource)\nforbid(")]).unwrap_err();
    assert!(errs.iter().all(|e| e.origin == "syntax.cedar" && e.line.is_some()), "{errs:?}");
    let errs = load(&[src("t.cedar", "permit(principal == ?principal, action, resource);")], &[]).unwrap_err();
    assert!(errs[0].message.contains("templates"), "{errs:?}");
    // An unknown action or entity type is a schema error.
    let errs = load(&[src("a.cedar", r#"permit(principal, action == TenantGate::Action::"Delete", resource);"#)], &[]).unwrap_err();
    assert_eq!(errs[0].line, Some(1), "{errs:?}");
}

#[test]
fn slices_hold_only_policies_whose_action_scope_can_match() {
    let p = load(
        &[src(
            "g.cedar",
            r#"permit(principal, action in TenantGate::Action::"Agent", resource);
permit(principal, action == TenantGate::Action::"Converse", resource);
permit(principal, action in [TenantGate::Action::"Retrieve", TenantGate::Action::"SageMaker"], resource);
forbid(principal, action, resource) when { context.hour_utc > 30 };"#,
        )],
        &[],
    )
    .unwrap()
    .unwrap();
    let g = p.global.as_ref().unwrap();
    let n = |op| g.by_op[&op].policies().count();
    assert_eq!(n(Operation::InvokeAgent), 2);
    assert_eq!(n(Operation::Converse), 2);
    assert_eq!(n(Operation::ConverseStream), 1);
    assert_eq!(n(Operation::Retrieve), 2);
    assert_eq!(n(Operation::InvokeEndpointAsync), 2);
}

/// The decision cache answers only for exactly the same inputs: every input
/// a policy can read changes the answer when it changes, in a cached set as
/// in an uncached one.
#[test]
fn remembered_decisions_answer_only_for_the_same_inputs() {
    let text = r#"permit(principal, action in TenantGate::Action::"ModelCall", resource)
when { principal.groups.contains("eng") && !(principal.claims has level && principal.claims.level < 1)
  && resource.id like "*haiku*" && context.hour_utc < 18 && !context.streaming
  && (context has max_tokens && context.max_tokens <= 1024)
  && !(context has service_tier && context.service_tier == "priority") };
forbid(principal == TenantGate::User::"acme/mallory", action, resource);"#;
    let cached = load(&[src("p.cedar", text)], &[]).unwrap().unwrap();
    let mut uncached = load(&[src("p.cedar", text)], &[]).unwrap().unwrap();
    uncached.set_decision_cache(0);
    let base = principal("acme", "alice");
    let ok = Facts { streaming: false, hour_utc: 10, max_tokens: Some(512), service_tier: None };
    let mut cases: Vec<(Principal, Operation, &str, Facts, bool)> = vec![(base.clone(), Operation::Converse, HAIKU, ok.clone(), true)];
    let mut no_group = base.clone();
    no_group.groups = vec!["sales".into()];
    cases.push((no_group, Operation::Converse, HAIKU, ok.clone(), false));
    let mut low = base.clone();
    low.claims.insert("level".into(), serde_json::json!(0));
    cases.push((low, Operation::Converse, HAIKU, ok.clone(), false));
    let mut mallory = base.clone();
    mallory.user = "mallory".into();
    cases.push((mallory, Operation::Converse, HAIKU, ok.clone(), false));
    let mut other_tenant = base.clone();
    other_tenant.tenant = "globex".into();
    cases.push((other_tenant, Operation::Converse, HAIKU, ok.clone(), true));
    cases.push((base.clone(), Operation::Converse, "anthropic.claude-3-opus", ok.clone(), false));
    cases.push((base.clone(), Operation::Retrieve, HAIKU, ok.clone(), false));
    cases.push((base.clone(), Operation::Converse, HAIKU, Facts { hour_utc: 19, ..ok.clone() }, false));
    cases.push((base.clone(), Operation::Converse, HAIKU, Facts { streaming: true, ..ok.clone() }, false));
    cases.push((base.clone(), Operation::Converse, HAIKU, Facts { max_tokens: Some(4096), ..ok.clone() }, false));
    cases.push((base.clone(), Operation::Converse, HAIKU, Facts { max_tokens: None, ..ok.clone() }, false));
    cases.push((base.clone(), Operation::Converse, HAIKU, Facts { service_tier: Some("priority".into()), ..ok.clone() }, false));
    // Twice over: the second round is answered from the cache.
    for round in 0..2 {
        for (who, op, model, facts, expected) in &cases {
            let resource = if *op == Operation::Retrieve { PolicyResource::KnowledgeBase(model) } else { PolicyResource::Model(model) };
            let a = cached.evaluate(who, *op, resource, facts).unwrap();
            let b = uncached.evaluate(who, *op, resource, facts).unwrap();
            assert_eq!(a, b, "round {round}: {who:?} {op:?} {model} {facts:?}");
            assert_eq!(a.allowed, *expected, "round {round}: {who:?} {op:?} {model} {facts:?}");
        }
    }
    assert_eq!(cached.cache.as_ref().unwrap().len(), cases.len());
    assert!(uncached.cache.is_none());
}

#[test]
fn a_full_cache_stays_bounded() {
    let mut p = load(&[src("p.cedar", r#"permit(principal, action, resource);"#)], &[]).unwrap().unwrap();
    p.set_decision_cache(16);
    for i in 0..1_000 {
        let who = principal("acme", &format!("user-{i}"));
        assert!(p.evaluate(&who, Operation::Converse, PolicyResource::Model(HAIKU), &facts(false, None)).unwrap().allowed);
    }
    assert!(p.cache.as_ref().unwrap().len() <= 16);
}

/// An error while evaluating (here an overflow on a large stated limit)
/// denies, even beside a permit, and says why.
#[test]
fn an_evaluation_error_denies() {
    let p = load(
        &[src(
            "p.cedar",
            r#"@id("all")
permit(principal, action, resource);
@id("overflowing")
forbid(principal, action == TenantGate::Action::"Converse", resource)
when { context has max_tokens && context.max_tokens * 1000000000000 < 0 };"#,
        )],
        &[],
    )
    .unwrap()
    .unwrap();
    let alice = principal("acme", "alice");
    let small = p.evaluate(&alice, Operation::Converse, PolicyResource::Model(HAIKU), &facts(false, Some(5))).unwrap();
    assert!(small.allowed && small.errors.is_empty(), "{small:?}");
    let huge = p.evaluate(&alice, Operation::Converse, PolicyResource::Model(HAIKU), &facts(false, Some(i64::MAX / 2))).unwrap();
    assert!(!huge.allowed, "{huge:?}");
    assert_eq!(huge.errors.len(), 1, "{huge:?}");
    assert!(huge.errors[0].contains("overflow"), "{huge:?}");
    // Remembered, it still denies.
    assert_eq!(p.evaluate(&alice, Operation::Converse, PolicyResource::Model(HAIKU), &facts(false, Some(i64::MAX / 2))).unwrap(), huge);
}

#[test]
fn flow_actions_and_resources() {
    let p = load(
        &[src(
            "flows.cedar",
            r#"permit(principal, action in TenantGate::Action::"Flow", resource is TenantGate::Flow)
when { resource.flow == "FLOW123456" }
unless { resource has alias && resource.alias == "TSTALIASID" };
forbid(principal, action == TenantGate::Action::"StopFlowExecution", resource)
unless { principal.groups.contains("ops") };"#,
        )],
        &[],
    )
    .unwrap()
    .unwrap();
    let alice = principal("acme", "alice");
    let flow = |alias| PolicyResource::Flow { flow: "FLOW123456", alias };
    let ask = |who, op, r| p.evaluate(who, op, r, &facts(false, None)).unwrap().allowed;
    assert!(ask(&alice, Operation::InvokeFlow, flow(Some("ALIAS12345"))));
    assert!(ask(&alice, Operation::ListFlowExecutions, flow(None)));
    assert!(!ask(&alice, Operation::StartFlowExecution, flow(Some("TSTALIASID"))));
    assert!(!ask(&alice, Operation::GetFlowExecution, PolicyResource::Flow { flow: "FLOWABCDEF", alias: Some("A") }));
    // alice is in "eng" and "ops" (test_support); without ops, Stop is forbidden.
    assert!(ask(&alice, Operation::StopFlowExecution, flow(Some("ALIAS12345"))));
    let mut dev = principal("acme", "dev");
    dev.groups = vec!["eng".into()];
    assert!(!ask(&dev, Operation::StopFlowExecution, flow(Some("ALIAS12345"))));
    assert!(ask(&dev, Operation::GetExecutionFlowSnapshot, flow(Some("ALIAS12345"))));
    // Another family's action is not in the group.
    assert!(!ask(&alice, Operation::InvokeAgent, PolicyResource::Agent { agent: "FLOW123456", alias: "A" }));
    let schema = schema_text(&[]);
    for op in ["InvokeFlow", "StartFlowExecution", "GetFlowExecution", "ListFlowExecutions", "StopFlowExecution", "ListFlowExecutionEvents", "GetExecutionFlowSnapshot"] {
        assert!(schema.contains(&format!("action \"{op}\" in [\"Flow\"] appliesTo {{ principal: User, resource: Flow,")), "{op}");
    }
}
