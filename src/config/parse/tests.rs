//! Config parsing tests: one test per class of error, defaults, merging.

mod errors;
mod files;
mod tenants;

use super::*;
pub(super) use crate::config::{
    CredentialsConfig, HeaderMatch, IdentityMode, KeySource, OnBackendError, RateLimitBackend,
};
use std::path::PathBuf;

pub(super) const IDENTITY: &str = r#"issuer = "https://issuer.example"
audiences = ["app"]
jwks_url = "https://issuer.example/jwks.json"
"#;
pub(super) const CREDENTIALS: &str = r#"role_arn = "arn:aws:iam::111122223333:role/pool"
"#;

/// A minimal valid document with the given `[identity]` and `[credentials]`
/// bodies, followed by `rest`.
pub(super) fn doc_with(identity: &str, credentials: &str, rest: &str) -> String {
    format!("[identity]\n{identity}\n[aws]\nregion = \"us-east-1\"\n\n[credentials]\n{credentials}\n{rest}")
}

pub(super) fn doc(rest: &str) -> String {
    doc_with(IDENTITY, CREDENTIALS, rest)
}

pub(super) fn parse(text: &str) -> Result<Config, Vec<ConfigError>> {
    parse_str(text, Path::new("/nonexistent-base"))
}

pub(super) fn ok(text: &str) -> Config {
    match parse(text) {
        Ok(c) => c,
        Err(e) => panic!("expected a valid config, got:\n{}", list(&e)),
    }
}

pub(super) fn errs(text: &str) -> Vec<ConfigError> {
    match parse(text) {
        Ok(_) => panic!("expected errors for:\n{text}"),
        Err(e) => e,
    }
}

pub(super) fn list(errors: &[ConfigError]) -> String {
    errors.iter().map(|e| format!("  {e}")).collect::<Vec<_>>().join("\n")
}

/// The error with exactly `key` whose message contains `needle`.
#[track_caller]
pub(super) fn find<'e>(errors: &'e [ConfigError], key: &str, needle: &str) -> &'e ConfigError {
    match errors.iter().find(|e| e.key == key && e.message.contains(needle)) {
        Some(e) => e,
        None => panic!("no error at `{key}` containing {needle:?}; got:\n{}", list(errors)),
    }
}

/// A scratch directory removed on drop.
pub(super) struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("tenantgate-cfg-{}-{tag}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    pub fn file(&self, name: &str, content: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, content).expect("write temp file");
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn minimal_config_gets_the_documented_defaults() {
    let c = ok(&doc(""));
    assert_eq!(c.server.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(c.server.admin_listen.to_string(), "127.0.0.1:9901");
    assert_eq!(c.server.max_body_bytes, 10_485_760);
    assert_eq!(c.server.header_timeout.as_secs(), 10);
    assert_eq!(c.server.shutdown_grace.as_secs(), 30);
    assert_eq!(c.server.session_key_env, "TENANTGATE_SESSION_KEY");
    assert!(c.server.tls.is_none());
    assert_eq!(c.identity.header.as_str(), "x-tenant-token");
    let IdentityMode::Jwt(j) = &c.identity.mode else { panic!("jwt mode") };
    assert_eq!(j.algorithms, vec![jsonwebtoken::Algorithm::RS256]);
    assert_eq!(j.jwks_refresh.as_secs(), 3600);
    assert_eq!(j.leeway_secs, 30);
    assert_eq!((j.tenant_claim.as_str(), j.user_claim.as_str()), ("tenant_id", "sub"));
    assert_eq!(j.groups_claim, None);
    assert_eq!(c.aws.connect_timeout.as_millis(), 3000);
    assert_eq!(c.aws.response_timeout.as_secs(), 300);
    assert_eq!(c.aws.stream_idle_timeout.as_secs(), 120);
    let CredentialsConfig::AssumeRole(ar) = &c.credentials else { panic!("assume_role") };
    assert_eq!(ar.session_name.source(), "tenantgate-{tenant}");
    assert_eq!(ar.session_tags.len(), 1);
    assert_eq!(ar.session_tags[0].0, "TenantID");
    assert_eq!(ar.session_tags[0].1.source(), "{tenant}");
    assert_eq!((ar.duration_secs, ar.refresh_before_secs), (3600, 300));
    assert!(matches!(c.rate_limit.backend, RateLimitBackend::Local));
    assert_eq!(c.redaction.patterns, vec![sections::COGNITO_IDENTITY_ID.to_string()]);
    assert_eq!(c.redaction.replacement, "[redacted]");
    let re = c.redaction.combined.as_ref().expect("default pattern");
    assert!(re.is_match("id us-east-1:0f2c1a3b-1111-2222-3333-444455556666 end"));
    assert!(c.tenants.is_empty());
    assert!(c.unlisted.is_none());
    assert!(c.policy_for("acme").is_none());
}

#[test]
fn unlisted_policy_is_the_defaults_only_when_allowed() {
    let c = ok(&doc("[tenant_defaults]\nallow_unlisted = true\nmodels = [\"amazon.*\"]\n"));
    let p = c.policy_for("anyone").expect("admitted by allow_unlisted");
    assert_eq!(p.models.len(), 1);
    assert_eq!(p.rate_limit.requests_per_second, 20.0);
    assert_eq!(p.rate_limit.burst, 40);
    assert_eq!(p.rate_limit.max_concurrent, 16);
    assert_eq!(p.rate_limit.tokens_per_minute, 200_000);
    assert_eq!(p.knowledge_base.filter_key, "tenant_id");
    assert!(!p.agents.inject_user_token && !p.agents.inject_scoped_credentials);
    assert!(p.static_credentials.is_none());
}

#[test]
fn syntax_errors_are_reported_with_lines_and_nothing_else() {
    let e = errs("[server]\nlisten = \"127.0.0.1:8080\"\nmax_body_bytes = = 3\n");
    assert!(!e.is_empty());
    assert!(e.iter().all(|x| x.key.is_empty() && x.message.starts_with("TOML syntax error")), "{}", list(&e));
    assert_eq!(e[0].line, Some(3));
    let dup = errs("[server]\nlisten = \"a\"\nlisten = \"b\"\n");
    assert_eq!(dup[0].line, Some(3), "{}", list(&dup));
}

#[test]
fn load_file_read_error_is_one_error_with_empty_key() {
    let e = load_file(Path::new("/definitely/not/here/config.toml")).expect_err("missing file");
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].key, "");
    assert!(e[0].message.contains("cannot read"));
}

#[test]
fn load_file_resolves_relative_paths_against_the_file_directory() {
    let dir = TempDir::new("load");
    dir.file("jwks.json", r#"{"keys": []}"#);
    let identity = "issuer = \"https://i\"\naudiences = [\"a\"]\njwks_file = \"jwks.json\"\n";
    let path = dir.file("config.toml", &doc_with(identity, CREDENTIALS, ""));
    let c = load_file(&path).unwrap_or_else(|e| panic!("{}", list(&e)));
    let IdentityMode::Jwt(j) = &c.identity.mode else { panic!("jwt") };
    assert_eq!(j.key_source, KeySource::JwksFile(dir.0.join("jwks.json")));
}

#[test]
fn display_includes_line_and_key() {
    let e = ConfigError { key: "tenants.acme.models[1]".into(), line: Some(7), message: "invalid glob".into() };
    assert_eq!(e.to_string(), "line 7: tenants.acme.models[1]: invalid glob");
}

#[test]
fn tenant_id_pattern() {
    for ok in ["a", "acme", "Acme-1", "a.b_c-d", "0", &"x".repeat(64)] {
        assert!(is_valid_tenant_id(ok), "{ok}");
    }
    for bad in ["", "-a", ".a", "_a", "a/b", "a b", "a:b", "é", &"x".repeat(65), "a\n"] {
        assert!(!is_valid_tenant_id(bad), "{bad:?}");
    }
}

#[test]
fn never_panics_on_arbitrary_input() {
    let samples = [
        "",
        "=",
        "[[identity]]\nmode = 1",
        "identity = 3\naws = []\ncredentials = \"x\"\ntenants = 1\ntenant_defaults = []",
        "[tenants]\nacme = 1\n\"\" = {}\n",
        "[tenants.acme]\nrate_limit = 5\nknowledge_base = []\nagents = \"x\"\nsagemaker = 1\nstatic_credentials = 2\nguardrail = \"g\"",
        "[tenants.acme.knowledge_base]\nextra_filters = [1, \"x\", [], {}, { in = 1 }, { andAll = 3 }, { equals = { key = 1979-05-27 } }]",
        "[server]\nmax_body_bytes = 0x7fffffffffffffff\nheader_timeout_secs = -1\nlisten = 99999999999999999999",
        "[redaction]\npatterns = [\"(\", \"\", \"a{99999999}\"]\nstrip_response_headers = [\"*\", \"\", \"x y\"]",
        "[tenant_defaults.rate_limit]\nrequests_per_second = nan\nburst = 1e3\nuser_requests_per_second = -inf",
    ];
    for s in samples {
        let _ = parse(s);
        let _ = parse(&doc(s));
    }
}

#[test]
fn missing_key_errors_point_at_their_table() {
    let e = errs("[identity]\nmode = \"static\"\ntenant = \"a\"\n\n[aws]\nconnect_timeout_ms = 5\n[credentials]\nsource = \"static\"\n[tenant_defaults]\nallow_unlisted = true\n");
    assert_eq!(find(&e, "aws.region", "missing required key").line, Some(5), "{}", list(&e));
    let e = errs(&doc("[tenants.acme]\nguardrail = { id = \"x\" }\n"));
    let g = find(&e, "tenants.acme.guardrail.version", "missing");
    assert!(g.line.is_some(), "{}", list(&e));
}

#[test]
fn metrics_max_tenants_default_and_range() {
    assert_eq!(ok(&doc("")).server.metrics_max_tenants, 1000);
    assert_eq!(ok(&format!("[server]\nmetrics_max_tenants = 1\n{}", doc(""))).server.metrics_max_tenants, 1);
    assert_eq!(ok(&format!("[server]\nmetrics_max_tenants = 100000\n{}", doc(""))).server.metrics_max_tenants, 100_000);
    for bad in ["0", "100001", "-5"] {
        let e = errs(&format!("[server]\nmetrics_max_tenants = {bad}\n{}", doc("")));
        find(&e, "server.metrics_max_tenants", "must be between 1 and 100000");
    }
    let e = errs(&format!("[server]\nmetrics_max_tenants = \"many\"\n{}", doc("")));
    find(&e, "server.metrics_max_tenants", "expected an integer");
}

#[test]
fn body_timeout_default_and_range() {
    assert_eq!(ok(&doc("")).server.body_timeout.as_secs(), 30);
    assert_eq!(ok(&format!("[server]\nbody_timeout_secs = 1\n{}", doc(""))).server.body_timeout.as_secs(), 1);
    assert_eq!(ok(&format!("[server]\nbody_timeout_secs = 3600\n{}", doc(""))).server.body_timeout.as_secs(), 3600);
    for bad in ["0", "3601", "-1"] {
        let e = errs(&format!("[server]\nbody_timeout_secs = {bad}\n{}", doc("")));
        find(&e, "server.body_timeout_secs", "between 1 and 3600");
    }
}

#[test]
fn audit_queue_lines_default_and_range() {
    assert_eq!(ok(&doc("")).server.audit_queue_lines, 16_384);
    assert_eq!(ok(&format!("[server]\naudit_queue_lines = 1\n{}", doc(""))).server.audit_queue_lines, 1);
    for bad in ["0", "1048577", "-1"] {
        let e = errs(&format!("[server]\naudit_queue_lines = {bad}\n{}", doc("")));
        find(&e, "server.audit_queue_lines", "between 1 and 1048576");
    }
}

#[test]
fn json_caps_default_and_range() {
    let c = ok(&doc(""));
    assert_eq!((c.server.max_json_nodes, c.server.max_json_depth), (100_000, 64));
    let c = ok(&format!("[server]\nmax_json_nodes = 1\nmax_json_depth = 128\n{}", doc("")));
    assert_eq!((c.server.max_json_nodes, c.server.max_json_depth), (1, 128));
    for bad in ["0", "100000001", "-1"] {
        let e = errs(&format!("[server]\nmax_json_nodes = {bad}\n{}", doc("")));
        find(&e, "server.max_json_nodes", "between 1 and 100000000");
    }
    for bad in ["0", "129"] {
        let e = errs(&format!("[server]\nmax_json_depth = {bad}\n{}", doc("")));
        find(&e, "server.max_json_depth", "between 1 and 128");
    }
}

#[test]
fn client_write_timeout_default_and_range() {
    assert_eq!(ok(&doc("")).server.client_write_timeout.as_secs(), 30);
    for good in [1, 3600] {
        let c = ok(&format!("[server]\nclient_write_timeout_secs = {good}\n{}", doc("")));
        assert_eq!(c.server.client_write_timeout.as_secs(), good);
    }
    for bad in ["0", "3601", "-1"] {
        let e = errs(&format!("[server]\nclient_write_timeout_secs = {bad}\n{}", doc("")));
        find(&e, "server.client_write_timeout_secs", "between 1 and 3600");
    }
    let e = errs(&format!("[server]\nclient_write_timeout_secs = \"30\"\n{}", doc("")));
    find(&e, "server.client_write_timeout_secs", "expected an integer");
}

#[test]
fn buffer_budget_defaults_and_checks() {
    let c = ok(&doc(""));
    assert_eq!((c.server.max_buffered_bytes, c.server.max_buffered_bytes_per_tenant), (32 << 20, 16 << 20));
    // The share defaults to half of whatever total is set.
    let c = ok(&format!("[server]\nmax_buffered_bytes = 67108864\n{}", doc("")));
    assert_eq!(c.server.max_buffered_bytes_per_tenant, 32 << 20);
    let c = ok(&format!("[server]\nmax_buffered_bytes = 67108864\nmax_buffered_bytes_per_tenant = 67108864\n{}", doc("")));
    assert_eq!(c.server.max_buffered_bytes_per_tenant, 64 << 20);
    let e = errs(&format!("[server]\nmax_buffered_bytes_per_tenant = 40000000\n{}", doc("")));
    find(&e, "server.max_buffered_bytes_per_tenant", "more than max_buffered_bytes");
    for bad in ["0", "-1"] {
        let e = errs(&format!("[server]\nmax_buffered_bytes = {bad}\n{}", doc("")));
        find(&e, "server.max_buffered_bytes", "at least 1");
    }
    // A share below max_body_bytes could never admit a body that size.
    let e = errs(&format!("[server]\nmax_buffered_bytes = 8388608\n{}", doc("")));
    find(&e, "server.max_buffered_bytes", "below max_body_bytes");
    let e = errs(&format!("[server]\nmax_body_bytes = 20000000\n{}", doc("")));
    find(&e, "server.max_body_bytes", "below max_body_bytes");
    let e = errs(&format!("[server]\nmax_body_bytes = 2000\nmax_buffered_bytes_per_tenant = 1000\n{}", doc("")));
    find(&e, "server.max_buffered_bytes_per_tenant", "below max_body_bytes");
    let c = ok(&format!("[server]\nmax_body_bytes = 1000\nmax_buffered_bytes = 2000\n{}", doc("")));
    assert_eq!(c.server.buffer_limits(), crate::budget::BufferLimits { total: 2000, per_tenant: 1000 });
}

#[test]
fn known_keys_are_full_paths_from_the_parser_lists() {
    let keys = known_keys();
    for k in [
        "server.listen",
        "server.metrics_max_tenants",
        "identity.tenant",
        "identity.jwks_url",
        "aws.endpoints.sts",
        "credentials.external_id",
        "rate_limit.on_backend_error",
        "redaction.strip_response_headers",
        "tenant_defaults.allow_unlisted",
        "tenant_defaults.rate_limit.user_burst",
        "tenants.<id>.models",
        "tenants.<id>.guardrail.version",
        "tenants.<id>.static_credentials.session_token_env",
    ] {
        assert!(keys.iter().any(|x| x == k), "{k} missing from {keys:?}");
    }
    for k in ["server", "aws.endpoints", "tenants.<id>.allow_unlisted", "tenants.<id>.rate_limit", "tenants"] {
        assert!(!keys.iter().any(|x| x == k), "{k} must not be a key: {keys:?}");
    }
    let mut dedup = keys.clone();
    dedup.sort();
    dedup.dedup();
    assert_eq!(dedup.len(), keys.len(), "duplicates in {keys:?}");
}
