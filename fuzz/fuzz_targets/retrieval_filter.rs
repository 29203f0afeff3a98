//! Filter composition: arbitrary bodies through what the pipeline does for
//! Retrieve: the request validator (`validate::validate_body`), then the
//! rewrite (the client's filter, extra group filters, the tenant clause) on
//! the validated tree. Oracles:
//! - no panic; refusals are 4xx;
//! - the rewritten body still conforms to the AWS model of Retrieve;
//! - whatever the body held, the filter sent is the tenant clause alone or
//!   an `andAll` whose first member is the tenant clause, the extra filter
//!   second, and no other `filter` member (in any case) left beside it, so a
//!   client filter can only narrow.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};
use std::sync::OnceLock;
use tenantgate::config::{Config, TenantPolicy};
use tenantgate::principal::Principal;
use tenantgate::family::knowledge_bases::rewrite_retrieve;
use tenantgate::family::Ctx;
use tenantgate::session::SessionKeys;
use tenantgate::route::Operation;
use tenantgate::validate;

const CONFIG: &str = r#"
[aws]
region = "us-east-1"
[identity]
mode = "static"
tenant = "acme"
[credentials]
source = "static"
[tenants.acme]
models = ["amazon.rerank-*"]
[tenants.acme.static_credentials]
access_key_id_env = "A"
secret_access_key_env = "B"
[tenants.acme.knowledge_base]
allowed = ["KB1"]
filter_key = "tenant_id"
extra_filters = [{ in = { key = "group", value = "{groups}" } }]
"#;

fn policy() -> &'static TenantPolicy {
    static P: OnceLock<Config> = OnceLock::new();
    let cfg = P.get_or_init(|| tenantgate::config::parse_str(CONFIG, std::path::Path::new(".")).expect("config"));
    cfg.policy_for("acme").expect("acme")
}

fuzz_target!(|data: &[u8]| {
    let raw = bytes::Bytes::copy_from_slice(data);
    let mut body = match validate::validate_body(Operation::Retrieve, &raw, validate::JsonLimits::default()) {
        Ok(v) => v.expect("Retrieve has a JSON body"),
        Err(e) => {
            assert!(e.status().is_client_error(), "{e:?}");
            return;
        }
    };
    let mut principal = Principal::static_tenant("acme");
    principal.groups = vec!["eng".into(), "ops".into()];
    if let Err(e) = rewrite_retrieve(&Ctx::new(Operation::Retrieve, &principal, policy(), &SessionKeys::new(b"fuzz-fuzz-fuzz-fuzz-fuzz-fuzz-fu")), &mut body, "KB1") {
        assert!(e.status().is_client_error(), "{e:?}");
        return;
    }
    validate::validate_value(Operation::Retrieve, &body).expect("the rewritten body conforms to the model");
    let vsc = body
        .pointer("/retrievalConfiguration/vectorSearchConfiguration")
        .and_then(Value::as_object)
        .expect("vectorSearchConfiguration present after the rewrite");
    let tenant = json!({"equals": {"key": "tenant_id", "value": "acme"}});
    let extra = json!({"in": {"key": "group", "value": ["eng", "ops"]}});
    let filter = vsc.get("filter").expect("filter present");
    let members = filter.get("andAll").and_then(Value::as_array).expect("andAll");
    assert_eq!(members.first(), Some(&tenant), "{filter}");
    assert_eq!(members.get(1), Some(&extra), "{filter}");
    for k in vsc.keys() {
        assert!(k == "filter" || !k.eq_ignore_ascii_case("filter"), "stray {k}");
    }
});
