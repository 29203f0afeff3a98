use super::*;
use crate::{config::TenantPolicy, principal::Principal, session::SessionKeys};
use crate::test_support::{policy as base_policy, principal};
use http::HeaderMap;

const ALL_OPS: [Operation; 3] =
    [Operation::InvokeEndpoint, Operation::InvokeEndpointWithResponseStream, Operation::InvokeEndpointAsync];

fn tpl(s: &str) -> Template {
    Template::compile(s).unwrap()
}

/// acme's SageMaker policy as in the docs/reference.md §3 example, plus a bridge
/// endpoint templated on the tenant.
fn policy() -> TenantPolicy {
    let mut p = base_policy();
    p.sagemaker.endpoints =
        vec![("classifier".into(), tpl("acme-classifier")), ("bridge".into(), tpl("shared-{tenant}-ep"))];
    p.sagemaker.target_model = Some(tpl("{tenant}.tar.gz"));
    p.sagemaker.allowed_target_models = vec![tpl("{tenant}.tar.gz"), tpl("{tenant}/*")];
    p.sagemaker.allowed_input_prefixes = vec![tpl("s3://async-in/{tenant}/")];
    p
}

/// A silo tenant: endpoints only, no pool keys.
fn silo_policy() -> TenantPolicy {
    let mut p = policy();
    p.sagemaker.target_model = None;
    p.sagemaker.allowed_target_models.clear();
    p.sagemaker.allowed_input_prefixes.clear();
    p
}

fn keys() -> SessionKeys {
    SessionKeys::new(b"0123456789abcdef0123456789abcdef")
}

fn acme() -> Principal {
    principal("acme", "alice")
}

fn hdrs(list: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in list {
        h.append(HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
    }
    h
}

fn async_headers(loc: &str) -> HeaderMap {
    hdrs(&[(INPUT_LOCATION, loc)])
}

fn run(op: Operation, ep: &str, h: &mut HeaderMap, p: &TenantPolicy) -> Result<SageMakerRewrite, ProxyError> {
    let (who, keys) = (acme(), keys());
    rewrite_sagemaker(&Ctx::new(op, &who, p, &keys), ep, h)
}

fn invoke(ep: &str, h: &mut HeaderMap) -> Result<SageMakerRewrite, ProxyError> {
    run(Operation::InvokeEndpoint, ep, h, &policy())
}

fn reason(r: Result<SageMakerRewrite, ProxyError>) -> &'static str {
    r.unwrap_err().reason()
}

fn target(h: &HeaderMap) -> Option<&str> {
    h.get(TARGET_MODEL).map(|v| v.to_str().unwrap())
}

// ---- endpoint ----------------------------------------------------------

#[test]
fn logical_name_is_rewritten_to_the_configured_endpoint() {
    let mut h = HeaderMap::new();
    let r = invoke("classifier", &mut h).unwrap();
    assert_eq!(r.endpoint, "acme-classifier");
    assert!(r.notes.iter().any(|n| n.contains("\"classifier\" -> \"acme-classifier\"")), "{:?}", r.notes);
}

#[test]
fn bridge_endpoint_template_renders_the_tenant() {
    let mut h = HeaderMap::new();
    assert_eq!(invoke("bridge", &mut h).unwrap().endpoint, "shared-acme-ep");
    let mut h = HeaderMap::new();
    let r = rewrite_sagemaker(&Ctx::new(Operation::InvokeEndpoint, &principal("globex", "bob"), &policy(), &keys()), "bridge", &mut h);
    assert_eq!(r.unwrap().endpoint, "shared-globex-ep");
    assert_eq!(target(&h), Some("globex.tar.gz"));
}

#[test]
fn real_endpoint_name_of_the_tenant_passes() {
    for name in ["acme-classifier", "shared-acme-ep"] {
        let mut h = HeaderMap::new();
        assert_eq!(invoke(name, &mut h).unwrap().endpoint, name);
    }
}

#[test]
fn endpoint_names_compare_case_insensitively() {
    let mut h = HeaderMap::new();
    assert_eq!(invoke("CLASSIFIER", &mut h).unwrap().endpoint, "acme-classifier");
    assert_eq!(invoke("Classifier", &mut h).unwrap().endpoint, "acme-classifier");
    // A real name in another spelling is sent as configured.
    assert_eq!(invoke("ACME-Classifier", &mut h).unwrap().endpoint, "acme-classifier");
    assert_eq!(invoke("Shared-ACME-Ep", &mut h).unwrap().endpoint, "shared-acme-ep");
}

#[test]
fn other_tenants_endpoint_is_denied() {
    for name in ["globex-classifier", "shared-globex-ep", "acme-classifier2", "acme", "classifierx"] {
        let mut h = HeaderMap::new();
        let e = invoke(name, &mut h).unwrap_err();
        assert_eq!(e, ProxyError::EndpointNotAllowed { endpoint: name.into(), tenant: "acme".into() }, "{name}");
    }
}

#[test]
fn tenant_without_endpoints_reaches_none() {
    let mut p = policy();
    p.sagemaker.endpoints.clear();
    for name in ["classifier", "acme-classifier"] {
        assert_eq!(reason(run(Operation::InvokeEndpoint, name, &mut HeaderMap::new(), &p)), "endpoint_not_allowed");
    }
}

#[test]
fn invalid_endpoint_name_is_400_before_any_lookup() {
    for name in ["", "-classifier", "classifier-", "acme_classifier", "acme.classifier", "a/b", "a b", "ünï", "a%2Fb"]
    {
        assert_eq!(reason(invoke(name, &mut HeaderMap::new())), "invalid_parameter", "{name:?}");
    }
    let long = "a".repeat(64);
    assert_eq!(reason(invoke(&long, &mut HeaderMap::new())), "invalid_parameter");
    assert!(is_valid_endpoint_name(&"a".repeat(63)) && is_valid_endpoint_name("a--b") && is_valid_endpoint_name("A1"));
}

#[test]
fn rendered_endpoint_that_breaks_the_rules_fails_closed() {
    let mut p = policy();
    p.sagemaker.endpoints = vec![("bridge".into(), tpl("ep-{tenant}")), ("plan".into(), tpl("ep-{claims.plan}"))];
    // Tenant ids may hold `.` and `_`, which endpoint names may not.
    let dotted = principal("acme.eu", "alice");
    let e = rewrite_sagemaker(&Ctx::new(Operation::InvokeEndpoint, &dotted, &p, &keys()), "bridge", &mut HeaderMap::new()).unwrap_err();
    assert_eq!(e.reason(), "endpoint_not_allowed");
    // The same invalid value can't be reached as a real name either
    // (it isn't one, so it is 400 before the lookup).
    let e = rewrite_sagemaker(&Ctx::new(Operation::InvokeEndpoint, &dotted, &p, &keys()), "ep-acme.eu", &mut HeaderMap::new()).unwrap_err();
    assert_eq!(e.reason(), "invalid_parameter");
    // A claim with characters an endpoint name can't hold.
    let mut odd = acme();
    odd.claims.insert("plan".into(), serde_json::json!("gold/../x"));
    p.sagemaker.endpoints.remove(0);
    let e = rewrite_sagemaker(&Ctx::new(Operation::InvokeEndpoint, &odd, &p, &keys()), "plan", &mut HeaderMap::new()).unwrap_err();
    assert_eq!(e.reason(), "endpoint_not_allowed");
}

#[test]
fn endpoint_template_naming_an_absent_claim_is_missing_claim() {
    let mut p = policy();
    p.sagemaker.endpoints.push(("tiered".into(), tpl("ep-{claims.tier}")));
    let e = run(Operation::InvokeEndpoint, "tiered", &mut HeaderMap::new(), &p).unwrap_err();
    assert_eq!(e, ProxyError::MissingClaim("tier".into()));
    // A real-name lookup needs every value rendered.
    assert_eq!(reason(run(Operation::InvokeEndpoint, "ep-gold", &mut HeaderMap::new(), &p)), "missing_claim");
    // A logical name that renders fine does not depend on the other entry.
    assert_eq!(
        run(Operation::InvokeEndpoint, "classifier", &mut HeaderMap::new(), &p).unwrap().endpoint,
        "acme-classifier"
    );
    // With the claim, it renders.
    let mut with = acme();
    with.claims.insert("tier".into(), serde_json::json!("gold"));
    let r = rewrite_sagemaker(&Ctx::new(Operation::InvokeEndpoint, &with, &p, &keys()), "tiered", &mut HeaderMap::new()).unwrap();
    assert_eq!(r.endpoint, "ep-gold");
}

#[test]
fn non_sagemaker_operation_is_refused() {
    let e = run(Operation::Converse, "classifier", &mut HeaderMap::new(), &policy()).unwrap_err();
    assert_eq!(e.reason(), "operation_not_allowed");
}

// ---- target model (pool) ---------------------------------------------------

#[test]
fn target_model_is_injected_when_absent_for_all_three_operations() {
    for op in ALL_OPS {
        let mut h = if op == Operation::InvokeEndpointAsync {
            async_headers("s3://async-in/acme/in.json")
        } else {
            HeaderMap::new()
        };
        let r = run(op, "classifier", &mut h, &policy()).unwrap();
        assert_eq!(target(&h), Some("acme.tar.gz"), "{op:?}");
        assert!(r.notes.iter().any(|n| n.contains("injected")), "{:?}", r.notes);
    }
}

#[test]
fn no_target_model_is_injected_without_target_model_configured() {
    let mut h = HeaderMap::new();
    run(Operation::InvokeEndpoint, "classifier", &mut h, &silo_policy()).unwrap();
    assert_eq!(target(&h), None);
}

#[test]
fn client_target_model_matching_the_globs_is_kept() {
    for v in ["acme.tar.gz", "acme/v2.tar.gz", "acme/deep/er/m.tar.gz"] {
        let mut h = hdrs(&[(TARGET_MODEL, v)]);
        let r = invoke("classifier", &mut h).unwrap();
        assert_eq!(target(&h), Some(v), "kept as sent, not replaced");
        assert_eq!(h.get_all(TARGET_MODEL).iter().count(), 1);
        assert!(r.notes.iter().any(|n| n.contains("allowed by")), "{:?}", r.notes);
    }
}

#[test]
fn client_naming_another_tenants_model_is_cross_tenant() {
    for v in [
        "globex.tar.gz",
        "globex/v2.tar.gz",
        "acme",
        "acme.tar.gz.bak",
        "acmeco/x.tar.gz",
        "ACME.tar.gz",
        "x/acme.tar.gz",
    ] {
        let mut h = hdrs(&[(TARGET_MODEL, v)]);
        assert_eq!(reason(invoke("classifier", &mut h)), "cross_tenant", "{v}");
    }
}

#[test]
fn target_model_path_tricks_cannot_escape_the_tenant_glob() {
    for v in [
        "acme/../globex.tar.gz",
        "acme/../globex/m.tar.gz",
        "acme/./m.tar.gz",
        "acme//m.tar.gz",
        "acme/",
        "acme/%2e%2e/globex/m.tar.gz",
        "acme/..%2Fglobex.tar.gz",
        "acme/m%2Etar.gz",
        "acme/..\\globex.tar.gz",
    ] {
        let mut h = hdrs(&[(TARGET_MODEL, v)]);
        assert_eq!(reason(invoke("classifier", &mut h)), "cross_tenant", "{v}");
    }
}

#[test]
fn silo_tenant_may_not_name_a_target_model() {
    let mut h = hdrs(&[(TARGET_MODEL, "acme.tar.gz")]);
    assert_eq!(reason(run(Operation::InvokeEndpoint, "classifier", &mut h, &silo_policy())), "cross_tenant");
}

#[test]
fn client_sending_the_injected_value_passes_even_without_globs() {
    let mut p = policy();
    p.sagemaker.allowed_target_models.clear();
    let mut h = hdrs(&[(TARGET_MODEL, "acme.tar.gz")]);
    run(Operation::InvokeEndpoint, "classifier", &mut h, &p).unwrap();
    assert_eq!(target(&h), Some("acme.tar.gz"));
    let mut h = hdrs(&[(TARGET_MODEL, "acme/v2.tar.gz")]);
    assert_eq!(reason(run(Operation::InvokeEndpoint, "classifier", &mut h, &p)), "cross_tenant");
}

#[test]
fn repeated_target_model_header_is_400() {
    let mut h = hdrs(&[(TARGET_MODEL, "acme.tar.gz"), (TARGET_MODEL, "globex.tar.gz")]);
    assert_eq!(reason(invoke("classifier", &mut h)), "invalid_parameter");
}

#[test]
fn malformed_target_model_is_400() {
    for v in [" acme.tar.gz", "\tacme"] {
        let mut h = HeaderMap::new();
        h.insert(TARGET_MODEL, HeaderValue::from_str(v).unwrap());
        assert_eq!(reason(invoke("classifier", &mut h)), "invalid_parameter", "{v:?}");
    }
    let mut h = HeaderMap::new();
    h.insert(TARGET_MODEL, HeaderValue::from_bytes(b"acme\xff.tar.gz").unwrap());
    assert_eq!(reason(invoke("classifier", &mut h)), "invalid_parameter");
    let mut h = HeaderMap::new();
    h.insert(TARGET_MODEL, HeaderValue::from_static(""));
    assert_eq!(reason(invoke("classifier", &mut h)), "invalid_parameter");
    let mut h = hdrs(&[(TARGET_MODEL, &format!("acme/{}", "m".repeat(1100)))]);
    assert_eq!(reason(invoke("classifier", &mut h)), "invalid_parameter");
}

#[test]
fn wildcards_from_a_claim_never_widen_a_target_glob() {
    let mut p = policy();
    p.sagemaker.allowed_target_models = vec![tpl("{claims.team}/*")];
    let mut star = acme();
    star.claims.insert("team".into(), serde_json::json!("*"));
    let mut h = hdrs(&[(TARGET_MODEL, "globex/m.tar.gz")]);
    let e = rewrite_sagemaker(&Ctx::new(Operation::InvokeEndpoint, &star, &p, &keys()), "classifier", &mut h).unwrap_err();
    assert_eq!(e.reason(), "cross_tenant");
    // The same template with an ordinary claim works.
    let mut team = acme();
    team.claims.insert("team".into(), serde_json::json!("acme-ml"));
    let mut h = hdrs(&[(TARGET_MODEL, "acme-ml/m.tar.gz")]);
    rewrite_sagemaker(&Ctx::new(Operation::InvokeEndpoint, &team, &p, &keys()), "classifier", &mut h).unwrap();
}

#[test]
fn target_model_templates_naming_an_absent_claim_are_missing_claim() {
    let mut p = policy();
    p.sagemaker.target_model = Some(tpl("{claims.team}.tar.gz"));
    assert_eq!(reason(run(Operation::InvokeEndpoint, "classifier", &mut HeaderMap::new(), &p)), "missing_claim");
    let mut p = policy();
    p.sagemaker.allowed_target_models.push(tpl("{claims.team}/*"));
    let mut h = hdrs(&[(TARGET_MODEL, "acme/m.tar.gz")]);
    assert_eq!(reason(run(Operation::InvokeEndpoint, "classifier", &mut h, &p)), "missing_claim");
}

#[test]
fn unusable_rendered_target_model_fails_closed() {
    let mut p = policy();
    p.sagemaker.target_model = Some(tpl("models/{claims.team}/m.tar.gz"));
    for team in ["..", "a/../../b", "x\ny", "%2e%2e"] {
        let mut pr = acme();
        pr.claims.insert("team".into(), serde_json::json!(team));
        let mut h = HeaderMap::new();
        let e = rewrite_sagemaker(&Ctx::new(Operation::InvokeEndpoint, &pr, &p, &keys()), "classifier", &mut h).unwrap_err();
        assert_eq!(e.reason(), "cross_tenant", "{team:?}");
        assert_eq!(target(&h), None);
    }
}

// ---- other routing headers -----------------------------------------------

#[test]
fn target_variant_of_the_authorised_endpoint_passes() {
    let mut h = hdrs(&[(TARGET_VARIANT, "blue-v2")]);
    let r = invoke("classifier", &mut h).unwrap();
    assert_eq!(h.get(TARGET_VARIANT).unwrap(), "blue-v2");
    assert!(r.notes.iter().any(|n| n.contains("variant")), "{:?}", r.notes);
    for bad in ["-blue", "blue_v2", "a/b"] {
        let mut h = hdrs(&[(TARGET_VARIANT, bad)]);
        assert_eq!(reason(invoke("classifier", &mut h)), "invalid_parameter", "{bad}");
    }
}

#[test]
fn inference_component_and_container_of_another_tenant_are_cross_tenant() {
    for name in [INFERENCE_COMPONENT, TARGET_CONTAINER_HOSTNAME] {
        for v in ["globex-llm", "acme-llm", "shared"] {
            let mut h = hdrs(&[(name, v)]);
            assert_eq!(reason(invoke("classifier", &mut h)), "cross_tenant", "{name}: {v}");
        }
        let mut h = hdrs(&[(name, "bad_name")]);
        assert_eq!(reason(invoke("classifier", &mut h)), "invalid_parameter", "{name}");
    }
}

#[test]
fn inference_component_and_container_pass_when_the_tenants_globs_name_them() {
    let mut p = policy();
    p.sagemaker.allowed_target_models.push(tpl("{tenant}-*"));
    for name in [INFERENCE_COMPONENT, TARGET_CONTAINER_HOSTNAME] {
        let mut h = hdrs(&[(name, "acme-llm")]);
        let r = run(Operation::InvokeEndpoint, "classifier", &mut h, &p).unwrap();
        assert_eq!(h.get(name).unwrap(), "acme-llm");
        assert!(r.notes.iter().any(|n| n.contains("allowed by \"acme-*\"")), "{:?}", r.notes);
        let mut h = hdrs(&[(name, "globex-llm")]);
        assert_eq!(reason(run(Operation::InvokeEndpoint, "classifier", &mut h, &p)), "cross_tenant");
    }
}

#[test]
fn new_session_passes_and_async_has_no_sessions() {
    for op in [Operation::InvokeEndpoint, Operation::InvokeEndpointWithResponseStream] {
        let mut h = hdrs(&[(SESSION_ID, NEW_SESSION)]);
        run(op, "classifier", &mut h, &policy()).unwrap();
        assert_eq!(h.get(SESSION_ID).unwrap(), NEW_SESSION);
    }
    let mut h = async_headers("s3://async-in/acme/x.csv");
    h.insert(SESSION_ID, HeaderValue::from_static(NEW_SESSION));
    assert_eq!(reason(run(Operation::InvokeEndpointAsync, "classifier", &mut h, &policy())), "operation_not_allowed");
}

#[test]
fn session_ids_continue_only_for_the_tenant_and_user_they_were_sealed_for() {
    let sealed = keys().seal_sagemaker_session("acme", "alice", "c0ffee-42");
    let mut h = hdrs(&[(SESSION_ID, &sealed)]);
    run(Operation::InvokeEndpoint, "classifier", &mut h, &policy()).unwrap();
    assert_eq!(h.get(SESSION_ID).unwrap(), "c0ffee-42", "the MAC suffix is removed before forwarding");
    // Bare container ids, other users' and other tenants' ids: cross_tenant.
    let bob = keys().seal_sagemaker_session("acme", "bob", "c0ffee-42");
    let globex = keys().seal_sagemaker_session("globex", "alice", "c0ffee-42");
    for v in ["c0ffee-42", bob.as_str(), globex.as_str(), "c0ffee-42.00000000000000000000000000000000"] {
        let mut h = hdrs(&[(SESSION_ID, v)]);
        assert_eq!(reason(run(Operation::InvokeEndpointWithResponseStream, "classifier", &mut h, &policy())), "cross_tenant", "{v}");
    }
    // Two copies: one could be checked and the other acted on.
    let mut h = hdrs(&[(SESSION_ID, &sealed), (SESSION_ID, NEW_SESSION)]);
    assert_eq!(reason(run(Operation::InvokeEndpoint, "classifier", &mut h, &policy())), "invalid_parameter");
}

#[test]
fn response_session_ids_are_sealed_for_the_principal() {
    let mut h = hdrs(&[
        (NEW_SESSION_ID, "c0ffee-42; Expires=2026-12-03T18:00:00Z"),
        (CLOSED_SESSION_ID, "old-7"),
    ]);
    seal_response_sessions(&mut h, &acme(), &keys());
    let new = h.get(NEW_SESSION_ID).unwrap().to_str().unwrap();
    let (id, rest) = new.split_once(';').unwrap();
    assert_eq!(rest, " Expires=2026-12-03T18:00:00Z");
    assert_eq!(keys().open_sagemaker_session("acme", "alice", id).unwrap(), "c0ffee-42");
    let closed = h.get(CLOSED_SESSION_ID).unwrap().to_str().unwrap();
    assert_eq!(closed, keys().seal_sagemaker_session("acme", "alice", "old-7"));
    // An id that cannot be sealed into a header value is removed, never passed raw.
    let mut h = HeaderMap::new();
    h.insert(NEW_SESSION_ID, HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap());
    h.insert(CLOSED_SESSION_ID, HeaderValue::from_static(" ; Expires=x"));
    seal_response_sessions(&mut h, &acme(), &keys());
    assert!(h.get(NEW_SESSION_ID).is_none() && h.get(CLOSED_SESSION_ID).is_none());
}

#[test]
fn harmless_sagemaker_headers_pass_unchanged() {
    let list = [
        ("x-amzn-sagemaker-custom-attributes", "trace=abc"),
        ("x-amzn-sagemaker-enable-explanations", "`true`"),
        ("x-amzn-sagemaker-prefix-aware-id", "app-1"),
        ("x-amzn-sagemaker-inference-id", "req-42"),
        ("x-amzn-sagemaker-accept", "application/json"),
        ("content-type", "application/octet-stream"),
        ("accept", "application/json"),
        ("x-amzn-trace-id", "Root=1-abc"),
    ];
    let mut h = hdrs(&list);
    invoke("classifier", &mut h).unwrap();
    for (k, v) in list {
        assert_eq!(h.get(k).unwrap(), v, "{k}");
    }
}

#[test]
fn unknown_sagemaker_header_is_refused() {
    let mut h = hdrs(&[("x-amzn-sagemaker-route-to-model", "globex")]);
    let e = invoke("classifier", &mut h).unwrap_err();
    assert_eq!(e.reason(), "operation_not_allowed");
    assert!(e.message().contains("x-amzn-sagemaker-route-to-model"), "{}", e.message());
}

#[test]
fn repeated_routing_headers_are_400() {
    for name in [TARGET_VARIANT, INFERENCE_COMPONENT, "x-amzn-sagemaker-custom-attributes"] {
        let mut h = hdrs(&[(name, "a"), (name, "b")]);
        assert_eq!(reason(invoke("classifier", &mut h)), "invalid_parameter", "{name}");
    }
}

#[test]
fn connection_header_may_not_hide_a_sagemaker_header() {
    let mut h = hdrs(&[("connection", "keep-alive, X-Amzn-SageMaker-Target-Model")]);
    assert_eq!(reason(invoke("classifier", &mut h)), "invalid_parameter");
    let mut h = hdrs(&[("connection", "keep-alive")]);
    invoke("classifier", &mut h).unwrap();
}

#[test]
fn headers_are_only_checked_after_the_endpoint() {
    // An unauthorised endpoint is reported as such whatever the headers.
    let mut h = hdrs(&[(TARGET_MODEL, "globex.tar.gz"), (SESSION_ID, "x")]);
    assert_eq!(reason(invoke("globex-classifier", &mut h)), "endpoint_not_allowed");
}

// ---- InvokeEndpointAsync ---------------------------------------------------

fn async_run(h: &mut HeaderMap) -> Result<SageMakerRewrite, ProxyError> {
    run(Operation::InvokeEndpointAsync, "classifier", h, &policy())
}

#[test]
fn async_input_location_under_the_tenant_prefix_is_allowed() {
    for loc in ["s3://async-in/acme/in.json", "s3://async-in/acme/deep/er/x.csv", "S3://async-in/acme/x"] {
        let mut h = async_headers(loc);
        let r = async_run(&mut h).unwrap();
        assert_eq!(r.endpoint, "acme-classifier");
        assert_eq!(h.get(INPUT_LOCATION).unwrap(), loc, "forwarded as sent");
        assert!(r.notes.iter().any(|n| n.contains("input location")), "{:?}", r.notes);
    }
}

#[test]
fn async_input_location_is_required() {
    let e = async_run(&mut HeaderMap::new()).unwrap_err();
    assert_eq!(e.reason(), "invalid_parameter");
    assert!(e.message().contains("x-amzn-sagemaker-inputlocation"), "{}", e.message());
}

#[test]
fn async_input_location_of_another_tenant_is_denied() {
    for loc in [
        "s3://async-in/globex/in.json",
        "s3://async-in/acme-evil/x",
        "s3://async-in/acme",
        "s3://async-in/acmeco/x",
        "s3://async-in-evil/acme/x",
        "s3://ASYNC-IN/acme/x",
        "s3://async-in/ACME/x",
        "https://async-in/acme/x",
        "s3://async-in//acme/x",
        "async-in/acme/x",
    ] {
        let mut h = async_headers(loc);
        assert_eq!(reason(async_run(&mut h)), "location_not_allowed", "{loc}");
    }
}

#[test]
fn async_input_location_dot_and_percent_tricks_cannot_escape() {
    for loc in [
        "s3://async-in/acme/../globex/x.json",
        "s3://async-in/acme/./x.json",
        "s3://async-in/acme/..",
        "s3://async-in/acme/%2e%2e/globex/x",
        "s3://async-in/acme/%2E%2E/globex/x",
        "s3://async-in/acme/..%2Fglobex/x",
        "s3://async-in/acme/%252e%252e/globex/x",
        "s3://async-in/%61cme/x",
        "s3://async-in/acme%2F..%2Fglobex/x",
        "s3://user@async-in/acme/x",
    ] {
        let mut h = async_headers(loc);
        assert_eq!(reason(async_run(&mut h)), "location_not_allowed", "{loc}");
    }
}

#[test]
fn async_without_prefixes_allows_no_input_location() {
    let mut h = async_headers("s3://async-in/acme/in.json");
    assert_eq!(
        reason(run(Operation::InvokeEndpointAsync, "classifier", &mut h, &silo_policy())),
        "location_not_allowed"
    );
}

#[test]
fn async_prefix_template_naming_an_absent_claim_is_missing_claim() {
    let mut p = policy();
    p.sagemaker.allowed_input_prefixes.push(tpl("s3://async-in/teams/{claims.team}/"));
    let mut h = async_headers("s3://async-in/acme/in.json");
    assert_eq!(reason(run(Operation::InvokeEndpointAsync, "classifier", &mut h, &p)), "missing_claim");
}

#[test]
fn async_output_location_cannot_be_steered() {
    for (name, v) in [(S3_OUTPUT_PATH_EXTENSION, "globex"), (FILENAME, "result.out"), (INFERENCE_ID, "job-1")] {
        let mut h = async_headers("s3://async-in/acme/in.json");
        h.insert(HeaderName::from_static(name), HeaderValue::from_static(v));
        assert_eq!(reason(async_run(&mut h)), "location_not_allowed", "{name}");
    }
}

#[test]
fn async_only_headers_are_refused_on_the_other_operations() {
    for op in [Operation::InvokeEndpoint, Operation::InvokeEndpointWithResponseStream] {
        for name in [INPUT_LOCATION, S3_OUTPUT_PATH_EXTENSION, FILENAME] {
            let mut h = hdrs(&[(name, "s3://async-in/acme/x")]);
            assert_eq!(reason(run(op, "classifier", &mut h, &policy())), "invalid_parameter", "{op:?} {name}");
        }
    }
}

#[test]
fn repeated_input_location_is_400() {
    let mut h = hdrs(&[(INPUT_LOCATION, "s3://async-in/acme/a"), (INPUT_LOCATION, "s3://async-in/globex/b")]);
    assert_eq!(reason(async_run(&mut h)), "invalid_parameter");
}

// ---- general ---------------------------------------------------------------

#[test]
fn only_the_target_model_header_is_ever_added() {
    let before =
        hdrs(&[("content-type", "text/csv"), (TARGET_VARIANT, "blue"), (INPUT_LOCATION, "s3://async-in/acme/x")]);
    let mut h = before.clone();
    async_run(&mut h).unwrap();
    let mut added: Vec<&str> = h.keys().filter(|k| !before.contains_key(*k)).map(|k| k.as_str()).collect();
    added.sort();
    assert_eq!(added, [TARGET_MODEL]);
    for (k, v) in before.iter() {
        assert_eq!(h.get(k), Some(v));
    }
}

#[test]
fn denied_requests_report_no_other_tenants_data() {
    let e = invoke("globex-classifier", &mut HeaderMap::new()).unwrap_err();
    assert!(!e.message().contains("acme-classifier"), "{}", e.message());
    let e = invoke("classifier", &mut hdrs(&[(TARGET_MODEL, "globex.tar.gz")])).unwrap_err();
    assert!(!e.message().contains("acme/*"), "{}", e.message());
}
