//! The annotated example `config.toml` at the repository root must always
//! parse and validate, with the values it documents.

use std::path::Path;
use tenantgate::config::{load_file, parse_str, CredentialsConfig, IdentityMode, KeySource, RateLimitBackend};

fn example() -> tenantgate::config::Config {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config.toml");
    match load_file(&path) {
        Ok(c) => c,
        Err(errors) => {
            let list: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
            panic!("config.toml is invalid:\n{}", list.join("\n"));
        }
    }
}

#[test]
fn example_config_parses() {
    let c = example();
    assert_eq!(c.server.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(c.server.admin_listen.to_string(), "127.0.0.1:9901");
    assert_eq!(c.server.max_body_bytes, 10_485_760);
    assert_eq!(c.identity.header.as_str(), "x-tenant-token");
    let IdentityMode::Jwt(jwt) = &c.identity.mode else { panic!("jwt mode expected") };
    assert_eq!(jwt.tenant_claim, "custom:tenantId");
    assert_eq!(jwt.groups_claim.as_deref(), Some("cognito:groups"));
    assert!(matches!(&jwt.key_source, KeySource::JwksUrl(u) if u.starts_with("https://")));
    assert_eq!(jwt.algorithms, vec![jsonwebtoken::Algorithm::RS256]);
    assert_eq!(c.aws.region, "us-east-1");
    let CredentialsConfig::AssumeRole(ar) = &c.credentials else { panic!("assume_role expected") };
    assert_eq!(ar.session_name.source(), "tenantgate-{tenant}");
    assert_eq!(ar.session_tags.len(), 1);
    assert!(matches!(c.rate_limit.backend, RateLimitBackend::Local));
    assert!(c.redaction.combined.is_some());
    assert!(c.unlisted.is_none());
    assert_eq!(c.tenants.keys().collect::<Vec<_>>(), vec!["acme", "globex"]);
}

#[test]
fn example_tenants_merge_over_defaults() {
    let c = example();
    let acme = c.policy_for("acme").expect("acme listed");
    assert_eq!(acme.models.len(), 2);
    assert_eq!(acme.rate_limit.requests_per_second, 50.0);
    assert_eq!(acme.rate_limit.burst, 40, "burst inherited from tenant_defaults");
    assert_eq!(acme.rate_limit.user_burst, Some(10));
    assert_eq!(acme.knowledge_base.extra_filters.len(), 1);
    assert_eq!(acme.sagemaker.endpoints.len(), 1);
    let globex = c.policy_for("globex").expect("globex listed");
    assert_eq!(globex.knowledge_base.filter_key, "tenant_id");
    assert_eq!(globex.request_metadata.len(), 1, "request_metadata inherited from tenant_defaults");
    assert_eq!(globex.agents.session_attributes.len(), 1);
    assert!(globex.sagemaker.target_model.is_none());
    assert!(c.policy_for("initech").is_none(), "unlisted tenants are denied");
}

#[test]
fn example_config_parses_from_another_base_dir() {
    // No relative file paths are active in the example, so the base directory
    // does not matter.
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("config.toml")).expect("read config.toml");
    assert!(parse_str(&text, Path::new("/nonexistent")).is_ok());
}
