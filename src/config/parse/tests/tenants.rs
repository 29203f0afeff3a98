//! `[tenant_defaults]` / `[tenants.ID]`: merging and per-key validation.

use super::*;
use crate::principal::Principal;
use serde_json::json;

const DEFAULTS: &str = r#"
[tenant_defaults]
models = ["amazon.titan-*"]
model_map = { "a" = "b" }
guardrail = { id = "gr-default", version = "1" }
request_metadata = { tenant = "{tenant}" }
[tenant_defaults.rate_limit]
requests_per_second = 10
burst = 20
user_requests_per_second = 2
[tenant_defaults.knowledge_base]
allowed = ["KBDEFAULT"]
filter_key = "org"
extra_filters = [{ equals = { key = "public", value = false } }]
[tenant_defaults.agents]
allowed = ["AG/*"]
session_attributes = { tenantId = "{tenant}" }
inject_user_token = true
[tenant_defaults.sagemaker]
endpoints = { clf = "shared-clf" }
target_model = "{tenant}.tar.gz"
"#;

#[test]
fn tenant_tables_override_defaults_key_by_key() {
    let text = doc(&format!(
        "{DEFAULTS}
[tenants.acme]
models = [\"anthropic.*\"]
guardrail = {{ id = \"gr-acme\", version = \"2\" }}
[tenants.acme.rate_limit]
burst = 99
[tenants.acme.knowledge_base]
allowed = [\"KBACME\"]
[tenants.acme.agents]
session_attributes = {{ userId = \"{{user}}\" }}
[tenants.acme.sagemaker]
endpoints = {{ other = \"acme-other\" }}

[tenants.globex]
"
    ));
    let c = ok(&text);
    let acme = &c.tenants["acme"];
    assert_eq!(acme.models.iter().map(|g| g.as_str()).collect::<Vec<_>>(), vec!["anthropic.*"], "list replaced whole");
    assert_eq!(acme.model_map.get("a").map(String::as_str), Some("b"), "inherited");
    assert_eq!(acme.guardrail.as_ref().map(|g| (g.id.as_str(), g.version.as_str())), Some(("gr-acme", "2")));
    assert_eq!(acme.rate_limit.requests_per_second, 10.0, "sub-table key inherited");
    assert_eq!(acme.rate_limit.burst, 99, "sub-table key overridden");
    assert_eq!(acme.rate_limit.max_concurrent, 16, "built-in default");
    assert_eq!(acme.rate_limit.user_requests_per_second, Some(2.0));
    assert_eq!(acme.rate_limit.user_burst, Some(4), "default user burst: 2 x user rps");
    assert_eq!(acme.knowledge_base.allowed, vec!["KBACME".to_string()]);
    assert_eq!(acme.knowledge_base.filter_key, "org");
    assert_eq!(acme.knowledge_base.extra_filters.len(), 1);
    let attrs: Vec<&str> = acme.agents.session_attributes.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(attrs, vec!["userId"], "inline map replaced whole");
    assert!(acme.agents.inject_user_token);
    assert_eq!(acme.agents.allowed.len(), 1);
    let eps: Vec<&str> = acme.sagemaker.endpoints.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(eps, vec!["other"]);
    let p = Principal::static_tenant("acme");
    assert_eq!(acme.sagemaker.target_model.as_ref().map(|t| t.render(&p)), Some(Ok("acme.tar.gz".into())));

    let globex = &c.tenants["globex"];
    assert_eq!(globex.models[0].as_str(), "amazon.titan-*");
    assert_eq!(globex.guardrail.as_ref().map(|g| g.id.as_str()), Some("gr-default"));
    assert_eq!(globex.rate_limit.burst, 20);
    assert!(c.unlisted.is_none());
}

#[test]
fn allow_unlisted_is_only_valid_in_defaults() {
    let e = errs(&doc("[tenants.acme]\nallow_unlisted = true\n"));
    find(&e, "tenants.acme.allow_unlisted", "only valid in [tenant_defaults]");
}

#[test]
fn invalid_tenant_ids_are_errors() {
    let e = errs(&doc("[tenants.\"-bad\"]\n[tenants.\"a/b\"]\n[tenants.\"ok.id_1\"]\n"));
    find(&e, "tenants.-bad", "not a valid tenant id");
    find(&e, "tenants.\"a/b\"", "not a valid tenant id");
    assert_eq!(e.len(), 2, "{}", list(&e));
    let c = ok(&doc("[tenants.\"ok.id_1\"]\n"));
    assert!(c.tenants.contains_key("ok.id_1"));
    find(&errs(&doc("[tenants]\nacme = 1\n")), "tenants.acme", "expected a table");
}

#[test]
fn unknown_keys_inside_tenant_tables() {
    let e = errs(&doc("[tenants.acme]\nmodel = []\n[tenants.acme.knowledge_base]\nfilterkey = \"x\"\n[tenant_defaults.rate_limit]\nrps = 1\n[tenants.acme.guardrail]\nid = \"g\"\nversion = \"1\"\nname = \"x\"\n"));
    find(&e, "tenants.acme.model", "did you mean `models`");
    find(&e, "tenants.acme.knowledge_base.filterkey", "did you mean `filter_key`");
    find(&e, "tenant_defaults.rate_limit.rps", "unknown key");
    find(&e, "tenants.acme.guardrail.name", "unknown key");
}

#[test]
fn globs_are_validated_where_written() {
    let e = errs(&doc("[tenant_defaults]\nmodels = [\"ok\", \"\"]\n[tenants.acme.agents]\nallowed = [\"AGENT1\", \"\", \"A/*\", \"*\"]\n"));
    find(&e, "tenant_defaults.models[1]", "empty glob");
    find(&e, "tenants.acme.agents.allowed[0]", "agentId/aliasId");
    find(&e, "tenants.acme.agents.allowed[1]", "empty glob");
    assert_eq!(e.len(), 3, "{}", list(&e));
}

#[test]
fn templates_in_tenant_tables_are_validated_where_written() {
    let e = errs(&doc(
        "[tenants.acme]\nrequest_metadata = { tenant = \"{tenat}\" }\n[tenants.acme.agents]\nsession_attributes = { u = \"{claims.}\" }\n[tenants.acme.sagemaker]\ntarget_model = \"{tenant\"\nallowed_target_models = [\"{user}}\"]\n",
    ));
    find(&e, "tenants.acme.request_metadata.tenant", "unknown placeholder `{tenat}`");
    find(&e, "tenants.acme.agents.session_attributes.u", "names no claim");
    find(&e, "tenants.acme.sagemaker.target_model", "unclosed");
    find(&e, "tenants.acme.sagemaker.allowed_target_models[0]", "unmatched");
}

#[test]
fn numeric_ranges_in_rate_limits() {
    let e = errs(&doc("[tenant_defaults.rate_limit]\nrequests_per_second = 0\nburst = 0\nmax_concurrent = 0\ntokens_per_minute = -1\n[tenants.acme.rate_limit]\nuser_requests_per_second = -2\nuser_burst = 0\n"));
    find(&e, "tenant_defaults.rate_limit.requests_per_second", "greater than 0");
    find(&e, "tenant_defaults.rate_limit.burst", "at least 1");
    find(&e, "tenant_defaults.rate_limit.max_concurrent", "at least 1");
    find(&e, "tenant_defaults.rate_limit.tokens_per_minute", "at least 0");
    find(&e, "tenants.acme.rate_limit.user_requests_per_second", "greater than 0");
    find(&e, "tenants.acme.rate_limit.user_burst", "at least 1");
    let e = errs(&doc("[tenants.acme.rate_limit]\nuser_burst = 5\n"));
    find(&e, "tenants.acme.rate_limit.user_burst", "needs user_requests_per_second");
    let c = ok(&doc("[tenants.acme.rate_limit]\nrequests_per_second = 0.5\ntokens_per_minute = 0\n"));
    assert_eq!(c.tenants["acme"].rate_limit.requests_per_second, 0.5);
    assert_eq!(c.tenants["acme"].rate_limit.tokens_per_minute, 0);
}

#[test]
fn guardrail_needs_id_and_version() {
    let e = errs(&doc(
        "[tenants.acme]\nguardrail = { id = \"gr\" }\n[tenants.globex]\nguardrail = { id = \"\", version = \"1\" }\n",
    ));
    find(&e, "tenants.acme.guardrail.version", "missing required key");
    find(&e, "tenants.globex.guardrail.id", "must not be empty");
}

#[test]
fn guardrail_stream_mode_and_guard_content() {
    let c = ok(&doc("[tenants.acme]\nguardrail = { id = \"gr\", version = \"1\" }\n[tenants.globex]\nguardrail = { id = \"gr\", version = \"1\", stream_processing_mode = \"async\", allow_guard_content = true }\n"));
    let acme = c.tenants["acme"].guardrail.clone().unwrap();
    assert_eq!(acme.stream_processing_mode, crate::config::StreamProcessingMode::Sync, "default");
    assert!(!acme.allow_guard_content, "default");
    let globex = c.tenants["globex"].guardrail.clone().unwrap();
    assert_eq!(globex.stream_processing_mode.as_str(), "async");
    assert!(globex.allow_guard_content);
    let e = errs(&doc("[tenants.acme]\nguardrail = { id = \"gr\", version = \"1\", stream_processing_mode = \"ASYNC\", allow_guard_content = \"yes\" }\n[tenants.globex]\nguardrail = { stream_processing_mode = \"sync\" }\n"));
    find(&e, "tenants.acme.guardrail.stream_processing_mode", "\"sync\" or \"async\"");
    find(&e, "tenants.acme.guardrail.allow_guard_content", "boolean");
    find(&e, "tenants.globex.guardrail.id", "missing required key");
}

#[test]
fn model_map_keys_naming_one_model_twice_are_refused() {
    let e = errs(&doc("[tenants.acme]\nmodel_map = { \"m.x-v1:0\" = \"a\", \"arn:aws:bedrock:us-east-1::foundation-model/m.x-v1:0\" = \"b\" }\n"));
    find(&e, "tenants.acme.model_map.\"m.x-v1:0\"", "name the same model");
    ok(&doc("[tenants.acme]\nmodel_map = { \"m.x-v1:0\" = \"a\", \"us.m.x-v1:0\" = \"us.m.x-v1:0\" }\n"));
}

#[test]
fn location_prefixes_must_be_uris_and_end_in_slash_after_a_placeholder() {
    let e = errs(&doc("[tenants.acme.knowledge_base]\nallowed_source_prefixes = [\"s3://docs/{tenant}\", \"docs/\", \"\"]\n[tenants.acme.sagemaker]\nallowed_input_prefixes = [\"s3://in/{tenant}-x\"]\n"));
    find(&e, "tenants.acme.knowledge_base.allowed_source_prefixes[0]", "must end with `/`");
    find(&e, "tenants.acme.knowledge_base.allowed_source_prefixes[1]", "URI prefix");
    find(&e, "tenants.acme.knowledge_base.allowed_source_prefixes[2]", "must not be empty");
    find(&e, "tenants.acme.sagemaker.allowed_input_prefixes[0]", "must end with `/`");
    ok(&doc(
        "[tenants.acme.knowledge_base]\nallowed_source_prefixes = [\"s3://docs/{tenant}/\", \"s3://docs/public-\"]\n",
    ));
}

#[test]
fn sagemaker_endpoint_names() {
    let e = errs(&doc("[tenants.acme.sagemaker]\nendpoints = { \"bad name\" = \"x\", Clf = \"a\", clf = \"b\", ok = \"acme_{tenant}\" }\n"));
    find(&e, "tenants.acme.sagemaker.endpoints.\"bad name\"", "not a SageMaker endpoint name");
    assert!(e.iter().any(|x| x.message.contains("listed twice")), "{}", list(&e));
    find(&e, "tenants.acme.sagemaker.endpoints.ok", "not a SageMaker endpoint name");
}

#[test]
fn request_metadata_is_limited_to_16_entries() {
    let entries: Vec<String> = (0..17).map(|i| format!("k{i} = \"{{tenant}}\"")).collect();
    let e = errs(&doc(&format!("[tenants.acme]\nrequest_metadata = {{ {} }}\n", entries.join(", "))));
    find(&e, "tenants.acme.request_metadata", "at most 16");
}

#[test]
fn extra_filters_must_be_retrieval_filters() {
    let e = errs(&doc(r#"[tenants.acme.knowledge_base]
extra_filters = [
  { equals = { key = "a", value = "b" }, notEquals = { key = "c", value = "d" } },
  { bogus = { key = "a", value = "b" } },
  { andAll = [{ equals = { key = "a", value = 1 } }] },
  { in = { key = "group", value = "plain" } },
  { equals = { key = "dept", value = "{claims.}" } },
  { equals = { key = "", value = "x", extra = 1 } },
  { orAll = [{ equals = { key = "a", value = 1 } }, { startsWith = { key = "p" } }] },
  "not a table",
]
"#));
    let k = "tenants.acme.knowledge_base.extra_filters";
    find(&e, &format!("{k}[0]"), "exactly one operator key");
    find(&e, &format!("{k}[1].bogus"), "unknown filter operator");
    find(&e, &format!("{k}[2].andAll"), "at least two filters");
    find(&e, &format!("{k}[3].in.value"), "needs a list");
    find(&e, &format!("{k}[4].equals.value"), "names no claim");
    find(&e, &format!("{k}[5].equals.key"), "non-empty string");
    find(&e, &format!("{k}[5].equals.extra"), "unknown key");
    find(&e, &format!("{k}[6].orAll[1].startsWith.value"), "needs a `value`");
    find(&e, &format!("{k}[7]"), "exactly one operator key");
    let e = errs(&doc(
        "[tenants.acme.knowledge_base]\nextra_filters = [{ equals = { key = \"d\", value = 1979-05-27 } }]\n",
    ));
    find(&e, &format!("{k}[0].equals.value"), "dates are not allowed");
}

#[test]
fn extra_filters_render_with_lists() {
    let c = ok(&doc(r#"[tenants.acme.knowledge_base]
extra_filters = [
  { in = { key = "group", value = "{groups}" } },
  { orAll = [{ equals = { key = "plan", value = "{claims.custom:plan}" } }, { greaterThan = { key = "year", value = 2020 } }] },
  { in = { key = "region", value = ["eu", "us"] } },
]
"#));
    let f = &c.tenants["acme"].knowledge_base.extra_filters;
    let mut p = Principal::static_tenant("acme");
    p.groups = vec!["g1".into()];
    p.claims.insert("custom:plan".into(), json!("gold"));
    assert_eq!(f[0].render(&p), Ok(json!({"in": {"key": "group", "value": ["g1"]}})));
    assert_eq!(
        f[1].render(&p),
        Ok(
            json!({"orAll": [{"equals": {"key": "plan", "value": "gold"}}, {"greaterThan": {"key": "year", "value": 2020}}]})
        )
    );
    assert!(f[2].as_literal().is_some());
}

#[test]
fn static_credentials_replace_the_defaults_whole() {
    // One identity per table: a tenant's own table never inherits a key
    // (here the session token) from the defaults' table.
    let text = doc_with(
        IDENTITY,
        "source = \"static\"\n",
        "[tenant_defaults.static_credentials]\naccess_key_id_env = \"D_AKID\"\nsecret_access_key_env = \"D_SECRET\"\nsession_token_env = \"D_TOKEN\"\n[tenants.acme.static_credentials]\naccess_key_id_env = \"A\"\nsecret_access_key_env = \"S\"\n[tenants.globex]\n",
    );
    let c = ok(&text);
    let s = c.tenants["acme"].static_credentials.as_ref().expect("own table");
    assert_eq!((s.access_key_id_env.as_str(), s.secret_access_key_env.as_str()), ("A", "S"));
    assert_eq!(s.session_token_env, None, "the defaults' session token must not leak into acme's identity");
    // A tenant without a table of its own takes the defaults' table whole.
    let g = c.tenants["globex"].static_credentials.as_ref().expect("defaults");
    assert_eq!(
        (g.access_key_id_env.as_str(), g.secret_access_key_env.as_str(), g.session_token_env.as_deref()),
        ("D_AKID", "D_SECRET", Some("D_TOKEN"))
    );
    // A tenant's own table is complete on its own: the defaults' keys do not
    // fill in what it leaves out.
    let partial = doc_with(
        IDENTITY,
        "source = \"static\"\n",
        "[tenant_defaults.static_credentials]\naccess_key_id_env = \"D_AKID\"\nsecret_access_key_env = \"D_SECRET\"\n[tenants.acme.static_credentials]\naccess_key_id_env = \"A\"\n",
    );
    let e = errs(&partial);
    find(&e, "tenants.acme.static_credentials", "needs `secret_access_key_env` for tenant \"acme\"");
    let bad = doc_with(
        IDENTITY,
        "source = \"static\"\n",
        "[tenants.acme.static_credentials]\naccess_key_id_env = \"A-B\"\nsecret_access_key_env = \"S\"\nfoo = 1\n",
    );
    let e = errs(&bad);
    find(&e, "tenants.acme.static_credentials.access_key_id_env", "environment variable name");
    find(&e, "tenants.acme.static_credentials.foo", "unknown key");
}

#[test]
fn guardrail_is_never_completed_from_the_defaults() {
    // `guardrail` names one guardrail: a tenant's table missing `version`
    // is an error, not the defaults' version paired with another id.
    let e = errs(&doc(&format!("{DEFAULTS}[tenants.acme]\nguardrail = {{ id = \"gr-acme\" }}\n")));
    find(&e, "tenants.acme.guardrail.version", "");
}

#[test]
fn errors_in_defaults_are_reported_once() {
    let e = errs(&doc("[tenant_defaults.rate_limit]\nuser_burst = 3\n[tenants.a]\n[tenants.b]\n[tenants.c]\n"));
    let n = e.iter().filter(|x| x.key == "tenant_defaults.rate_limit.user_burst").count();
    assert_eq!(n, 1, "{}", list(&e));
}

#[test]
fn agent_knowledge_bases_must_be_allowed_knowledge_bases() {
    let e = errs(&doc(
        "[tenants.acme.knowledge_base]\nallowed = [\"KB1\"]\n[tenants.acme.agents]\nknowledge_bases = [\"KB1\", \"KB2\", \"\"]\n",
    ));
    find(&e, "tenants.acme.agents.knowledge_bases", "\"KB2\" is not in knowledge_base.allowed of tenant \"acme\"");
    find(&e, "tenants.acme.agents.knowledge_bases[2]", "must not be empty");
    assert!(!list(&e).contains("\"KB1\" is not"), "{}", list(&e));
    // Merged: the defaults' list checked against each tenant's allowlist.
    let c = ok(&doc("[tenant_defaults.agents]\nknowledge_bases = [\"KB1\"]\n[tenant_defaults.knowledge_base]\nallowed = [\"KB1\"]\n[tenants.acme]\n"));
    assert_eq!(c.tenants["acme"].agents.knowledge_bases, vec!["KB1".to_string()]);
    let e = errs(&doc("[tenant_defaults.agents]\nknowledge_bases = [\"KB1\"]\n[tenants.acme.knowledge_base]\nallowed = [\"KB9\"]\n"));
    find(&e, "tenant_defaults.agents.knowledge_bases", "\"KB1\" is not in knowledge_base.allowed of tenant \"acme\"");
}

#[test]
fn case_variants_of_listed_tenants_are_not_tenants() {
    let c = ok(&doc("[tenant_defaults]\nallow_unlisted = true\nmodels = [\"amazon.*\"]\n[tenants.acme]\nmodels = [\"anthropic.*\"]\n[tenants.Globex]\n"));
    assert!(std::sync::Arc::ptr_eq(c.policy_for("acme").expect("listed"), &c.tenants["acme"]));
    assert!(std::sync::Arc::ptr_eq(c.policy_for("Globex").expect("listed"), &c.tenants["Globex"]));
    for variant in ["ACME", "Acme", "acmE", "globex", "GLOBEX"] {
        assert!(c.policy_for(variant).is_none(), "{variant} must be unknown, not unlisted");
    }
    // Strangers are still admitted by allow_unlisted, in any case.
    assert!(c.policy_for("initech").is_some() && c.policy_for("INITECH").is_some());
    assert!(c.is_listed("acme") && !c.is_listed("ACME") && !c.is_listed("initech"));
}

#[test]
fn tenant_ids_must_differ_ignoring_case() {
    let e = errs(&doc("[tenants.acme]\n[tenants.ACME]\n"));
    find(&e, "tenants.acme", "tenant ids \"ACME\" and \"acme\" differ only in case");
    let e = errs(&doc_with(
        "mode = \"static\"\ntenant = \"ACME\"\n",
        CREDENTIALS,
        "[tenant_defaults]\nallow_unlisted = true\n[tenants.acme]\n",
    ));
    find(&e, "identity.tenant", "differs only in case from the listed tenant \"acme\"");
}

#[test]
fn tenant_id_folding_is_unicode_lower_case() {
    assert_eq!(crate::config::fold_tenant_id("ACME-1.x_Y"), "acme-1.x_y");
    // Not only ASCII: the Kelvin sign folds to `k` (tenant ids are ASCII by
    // their pattern, so this only matters if that pattern ever widens).
    assert_eq!(crate::config::fold_tenant_id("\u{212A}"), "k");
}
