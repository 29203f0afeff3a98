//! One test per class of configuration error outside the tenant tables.

use super::*;

#[test]
fn every_unknown_key_is_reported_with_its_line() {
    let text = doc_with(
        &format!("{IDENTITY}tenant_clam = \"x\"\n"),
        &format!("{CREDENTIALS}duraton_secs = 900\n"),
        "[server]\nlisten = \"127.0.0.1:8080\"\nmax_body = 5\n[rate_limit]\nbackend = \"local\"\n[redactions]\n",
    );
    let e = errs(&text);
    let clam = find(&e, "identity.tenant_clam", "did you mean `tenant_claim`");
    assert_eq!(clam.line, Some(5));
    find(&e, "credentials.duraton_secs", "did you mean `duration_secs`");
    let mb = find(&e, "server.max_body", "unknown key");
    assert_eq!(mb.line, Some(16));
    find(&e, "redactions", "unknown key");
    assert_eq!(e.len(), 4, "{}", list(&e));
}

#[test]
fn wrong_types_are_reported() {
    let text = doc("[server]\nlisten = 8080\nmax_body_bytes = \"10MB\"\n[redaction]\npatterns = \"x\"\n[tenant_defaults]\nmodels = \"amazon.*\"\nallow_unlisted = \"yes\"\n");
    let e = errs(&text);
    find(&e, "server.listen", "expected a string, found integer");
    find(&e, "server.max_body_bytes", "expected an integer, found string");
    find(&e, "redaction.patterns", "expected an array of strings, found string");
    find(&e, "tenant_defaults.models", "expected an array of strings");
    find(&e, "tenant_defaults.allow_unlisted", "expected a boolean");
    let e = errs(&doc("[tenant_defaults]\nmodels = [\"a\", 3]\n"));
    find(&e, "tenant_defaults.models[1]", "expected a string, found integer");
}

#[test]
fn missing_required_tables_and_keys() {
    let e = errs("");
    find(&e, "identity", "missing required table");
    find(&e, "aws", "missing required table");
    find(&e, "credentials", "missing required table");
    let e = errs("[identity]\nmode = \"jwt\"\n[aws]\n[credentials]\n");
    find(&e, "identity.issuer", "missing required key");
    find(&e, "identity.audiences", "missing required key");
    find(&e, "identity.jwks_url", "missing key source");
    find(&e, "aws.region", "missing required key");
    find(&e, "credentials.role_arn", "missing required key");
}

#[test]
fn jwt_key_sources_exactly_one() {
    let two = format!("{IDENTITY}hs256_secret_env = \"SECRET\"\n");
    let e = errs(&doc_with(&two, CREDENTIALS, ""));
    find(&e, "identity.hs256_secret_env", "only one key source");
    let none = "issuer = \"https://i\"\naudiences = [\"a\"]\n";
    let e = errs(&doc_with(none, CREDENTIALS, ""));
    find(&e, "identity.jwks_url", "missing key source");
    let bad_env = "issuer = \"https://i\"\naudiences = [\"a\"]\nhs256_secret_env = \"1BAD-NAME\"\n";
    find(&errs(&doc_with(bad_env, CREDENTIALS, "")), "identity.hs256_secret_env", "environment variable name");
}

#[test]
fn jwks_url_must_be_https_unless_loopback() {
    let id = |url: &str| format!("issuer = \"https://i\"\naudiences = [\"a\"]\njwks_url = \"{url}\"\n");
    find(&errs(&doc_with(&id("http://idp.example/jwks"), CREDENTIALS, "")), "identity.jwks_url", "https://");
    find(&errs(&doc_with(&id("ftp://x/jwks"), CREDENTIALS, "")), "identity.jwks_url", "absolute http");
    find(&errs(&doc_with(&id("/jwks.json"), CREDENTIALS, "")), "identity.jwks_url", "absolute http");
    for good in ["http://127.0.0.1:9000/jwks.json", "http://localhost/jwks", "http://[::1]:1/j", "https://idp/x?y=1"] {
        ok(&doc_with(&id(good), CREDENTIALS, ""));
    }
}

#[test]
fn algorithms_allowlist_rules() {
    let with =
        |algs: &str, src: &str| format!("issuer = \"https://i\"\naudiences = [\"a\"]\n{src}\nalgorithms = {algs}\n");
    let jwks = "jwks_url = \"https://i/jwks\"";
    let hs = "hs256_secret_env = \"S\"";
    let e = errs(&doc_with(&with("[\"RS256\", \"none\", \"XS999\", \"HS256\"]", jwks), CREDENTIALS, ""));
    find(&e, "identity.algorithms[1]", "never accepted");
    find(&e, "identity.algorithms[2]", "unknown algorithm");
    find(&e, "identity.algorithms[3]", "needs an HMAC secret");
    let e = errs(&doc_with(&with("[\"NONE\"]", jwks), CREDENTIALS, ""));
    find(&e, "identity.algorithms[0]", "never accepted");
    find(&errs(&doc_with(&with("[\"ES256\"]", hs), CREDENTIALS, "")), "identity.algorithms[0]", "needs a public key");
    find(&errs(&doc_with(&with("[]", jwks), CREDENTIALS, "")), "identity.algorithms", "at least one");
    let c = ok(&doc_with(&with("[\"RS256\", \"PS512\", \"ES384\", \"EdDSA\", \"RS256\"]", jwks), CREDENTIALS, ""));
    let IdentityMode::Jwt(j) = &c.identity.mode else { panic!("jwt") };
    assert_eq!(j.algorithms.len(), 4, "duplicates dropped");
    let c = ok(&doc_with(&format!("issuer = \"https://i\"\naudiences = [\"a\"]\n{hs}\n"), CREDENTIALS, ""));
    let IdentityMode::Jwt(j) = &c.identity.mode else { panic!("jwt") };
    assert_eq!(j.algorithms, vec![jsonwebtoken::Algorithm::HS256], "HMAC source defaults to HS256");
    assert_eq!(j.key_source, KeySource::Hs256SecretEnv("S".into()));
}

#[test]
fn audiences_and_issuer_must_not_be_empty() {
    let e = errs(&doc_with("issuer = \"\"\naudiences = []\njwks_url = \"https://i/j\"\n", CREDENTIALS, ""));
    find(&e, "identity.issuer", "must not be empty");
    find(&e, "identity.audiences", "at least one audience");
    let e = errs(&doc_with("issuer = \"x\"\naudiences = [\"\"]\njwks_url = \"https://i/j\"\n", CREDENTIALS, ""));
    find(&e, "identity.audiences[0]", "must not be empty");
}

#[test]
fn identity_ranges_and_header() {
    let id = format!("{IDENTITY}leeway_secs = 3600\njwks_refresh_secs = 0\nheader = \"content-type\"\n");
    let e = errs(&doc_with(&id, CREDENTIALS, ""));
    find(&e, "identity.leeway_secs", "between 0 and 300");
    find(&e, "identity.jwks_refresh_secs", "between 1 and");
    find(&e, "identity.header", "cannot carry the identity token");
    let id = format!("{IDENTITY}header = \"bad header\"\n");
    find(&errs(&doc_with(&id, CREDENTIALS, "")), "identity.header", "not a valid header name");
    let c = ok(&doc_with(&format!("{IDENTITY}header = \"X-User-JWT\"\n"), CREDENTIALS, ""));
    assert_eq!(c.identity.header.as_str(), "x-user-jwt");
}

#[test]
fn static_identity_rejects_jwt_keys_and_bad_tenants() {
    let listed = "[tenants.acme]\n";
    let c = ok(&doc_with("mode = \"static\"\ntenant = \"acme\"\nheader = \"x-tok\"\n", CREDENTIALS, listed));
    assert!(matches!(&c.identity.mode, IdentityMode::Static { tenant } if tenant == "acme"));
    let e =
        errs(&doc_with("mode = \"static\"\ntenant = \"acme\"\nissuer = \"x\"\nleeway_secs = 5\n", CREDENTIALS, listed));
    find(&e, "identity.issuer", "not allowed with mode = \"static\"");
    find(&e, "identity.leeway_secs", "not allowed with mode = \"static\"");
    find(
        &errs(&doc_with("mode = \"static\"\ntenant = \"-bad\"\n", CREDENTIALS, "")),
        "identity.tenant",
        "not a valid tenant id",
    );
    find(&errs(&doc_with("mode = \"static\"\n", CREDENTIALS, "")), "identity.tenant", "missing required key");
    let e = errs(&doc_with("mode = \"static\"\ntenant = \"initech\"\n", CREDENTIALS, listed));
    find(&e, "identity.tenant", "not listed in [tenants]");
    let unlisted = "[tenant_defaults]\nallow_unlisted = true\n";
    ok(&doc_with("mode = \"static\"\ntenant = \"initech\"\n", CREDENTIALS, unlisted));
    find(
        &errs(&doc_with(&format!("{IDENTITY}tenant = \"acme\"\n"), CREDENTIALS, "")),
        "identity.tenant",
        "only valid with mode = \"static\"",
    );
    find(&errs(&doc_with("mode = \"oidc\"\n", CREDENTIALS, "")), "identity.mode", "unknown mode");
}

#[test]
fn socket_addresses_and_server_ranges() {
    let e = errs(&doc("[server]\nlisten = \"localhost:8080\"\nadmin_listen = \"1.2.3.4\"\nmax_body_bytes = 0\nheader_timeout_secs = 0\nsession_key_env = \"not ok\"\n"));
    find(&e, "server.listen", "not a socket address");
    find(&e, "server.admin_listen", "not a socket address");
    find(&e, "server.max_body_bytes", "at least 1");
    find(&e, "server.header_timeout_secs", "between 1 and 3600");
    find(&e, "server.session_key_env", "environment variable name");
    let e = errs(&doc("[server]\nlisten = \"0.0.0.0:9000\"\nadmin_listen = \"0.0.0.0:9000\"\n"));
    find(&e, "server.admin_listen", "must differ from listen");
    let c = ok(&doc("[server]\nlisten = \"[::]:8443\"\nadmin_listen = \"0.0.0.0:0\"\nshutdown_grace_secs = 0\n"));
    assert_eq!(c.server.listen.port(), 8443);
    assert_eq!(c.server.shutdown_grace.as_secs(), 0);
}

#[test]
fn endpoints_must_be_http_urls_without_path_or_query() {
    let e = errs(&doc_with(IDENTITY, CREDENTIALS, "").replace(
        "region = \"us-east-1\"\n",
        "region = \"us-east-1\"\n[aws.endpoints]\nbedrock_runtime = \"bedrock.local\"\nsts = \"https://sts.example/path\"\nsagemaker_runtime = \"https://x?y=1\"\nbedrock_agent_runtime = \"https://user@host\"\nbogus = \"https://x\"\n",
    ));
    find(&e, "aws.endpoints.bedrock_runtime", "absolute http");
    find(&e, "aws.endpoints.sts", "must not have a path");
    find(&e, "aws.endpoints.sagemaker_runtime", "must not have a query");
    find(&e, "aws.endpoints.bedrock_agent_runtime", "user info");
    find(&e, "aws.endpoints.bogus", "unknown key");
    let c = ok(&doc_with(IDENTITY, CREDENTIALS, "").replace(
        "region = \"us-east-1\"\n",
        "region = \"us-east-1\"\n[aws.endpoints]\nbedrock_runtime = \"http://127.0.0.1:4566\"\nsts = \"https://vpce-1.sts.us-east-1.vpce.amazonaws.com/\"\n",
    ));
    assert_eq!(c.aws.endpoints.bedrock_runtime.as_ref().map(|u| u.to_string()), Some("http://127.0.0.1:4566/".into()));
    assert!(c.aws.endpoints.sts.is_some());
}

#[test]
fn aws_region_and_timeouts() {
    let bad = doc("").replace(
        "region = \"us-east-1\"",
        "region = \"US East\"\nconnect_timeout_ms = 0\nresponse_timeout_secs = 0\nstream_idle_timeout_secs = 0",
    );
    let e = errs(&bad);
    find(&e, "aws.region", "not an AWS region");
    find(&e, "aws.connect_timeout_ms", "between 1 and");
    find(&e, "aws.response_timeout_secs", "between 1 and");
    find(&e, "aws.stream_idle_timeout_secs", "between 1 and");
}

#[test]
fn assume_role_rules_and_ranges() {
    let creds = "role_arn = \"role/{tenant}\"\nsession_name = \"tg {tenat}\"\nduration_secs = 800\nsession_tags = { TenantID = \"{tenant\" }\n";
    let e = errs(&doc_with(IDENTITY, creds, ""));
    find(&e, "credentials.role_arn", "not a role ARN");
    find(&e, "credentials.session_name", "invalid template: unknown placeholder `{tenat}`");
    find(&e, "credentials.duration_secs", "between 900 and 43200");
    find(&e, "credentials.session_tags.TenantID", "unclosed");
    let creds = format!("{CREDENTIALS}duration_secs = 900\nrefresh_before_secs = 900\n");
    find(&errs(&doc_with(IDENTITY, &creds, "")), "credentials.refresh_before_secs", "must be less than duration_secs");
    let creds = format!("{CREDENTIALS}session_name = \"tenant group\"\n");
    find(&errs(&doc_with(IDENTITY, &creds, "")), "credentials.session_name", "STS session names");
    let creds = format!("{CREDENTIALS}session_tags = {{ \"aws:x\" = \"{{tenant}}\" }}\n");
    find(&errs(&doc_with(IDENTITY, &creds, "")), "credentials.session_tags.\"aws:x\"", "not a valid tag key");
    let creds = format!("{CREDENTIALS}source_identity = \"{{user}}\"\nexternal_id = \"ext\"\nsession_tags = {{}}\n");
    let c = ok(&doc_with(IDENTITY, &creds, ""));
    let CredentialsConfig::AssumeRole(ar) = &c.credentials else { panic!("assume_role") };
    assert!(ar.session_tags.is_empty());
    assert_eq!(ar.source_identity.as_ref().map(|t| t.source()), Some("{user}"));
    assert_eq!(ar.external_id.as_deref(), Some("ext"));
}

#[test]
fn static_credentials_source_rules() {
    let e = errs(&doc_with(
        IDENTITY,
        "source = \"static\"\nrole_arn = \"arn:aws:iam::1:role/x\"\nduration_secs = 900\n",
        "[tenants.acme]\n[tenants.globex.static_credentials]\naccess_key_id_env = \"G_AKID\"\n",
    ));
    find(&e, "credentials.role_arn", "only valid with source = \"assume_role\"");
    find(&e, "credentials.duration_secs", "only valid with source = \"assume_role\"");
    find(&e, "tenants.acme.static_credentials", "needs `access_key_id_env` for tenant \"acme\"");
    find(&e, "tenants.acme.static_credentials", "needs `secret_access_key_env`");
    find(&e, "tenants.globex.static_credentials", "needs `secret_access_key_env`");
    let e = errs(&doc_with(
        IDENTITY,
        CREDENTIALS,
        "[tenants.acme.static_credentials]\naccess_key_id_env = \"A\"\nsecret_access_key_env = \"B\"\n",
    ));
    find(&e, "tenants.acme.static_credentials", "only valid with credentials.source = \"static\"");
    find(&errs(&doc_with(IDENTITY, "source = \"sso\"\n", "")), "credentials.source", "unknown source");
    let good = "[tenants.acme.static_credentials]\naccess_key_id_env = \"ACME_AKID\"\nsecret_access_key_env = \"ACME_SECRET\"\nsession_token_env = \"ACME_TOKEN\"\n";
    let c = ok(&doc_with(IDENTITY, "source = \"static\"\n", good));
    assert!(matches!(c.credentials, CredentialsConfig::Static));
    let s = c.tenants["acme"].static_credentials.as_ref().expect("static creds");
    assert_eq!(s.access_key_id_env, "ACME_AKID");
    assert_eq!(s.session_token_env.as_deref(), Some("ACME_TOKEN"));
    let unlisted = "[tenant_defaults]\nallow_unlisted = true\n";
    find(
        &errs(&doc_with(IDENTITY, "source = \"static\"\n", unlisted)),
        "tenant_defaults.static_credentials",
        "unlisted tenants",
    );
}

#[test]
fn rate_limit_backend_rules() {
    let e = errs(&doc("[rate_limit]\nbackend = \"local\"\nredis_url = \"redis://x\"\non_backend_error = \"deny\"\n"));
    find(&e, "rate_limit.redis_url", "only valid with backend = \"redis\"");
    find(&e, "rate_limit.on_backend_error", "only valid with backend = \"redis\"");
    find(&errs(&doc("[rate_limit]\nredis_url = \"redis://x\"\n")), "rate_limit.redis_url", "only valid");
    find(&errs(&doc("[rate_limit]\nbackend = \"redis\"\n")), "rate_limit.redis_url", "missing required key");
    let e = errs(&doc("[rate_limit]\nbackend = \"redis\"\nredis_url = \"http://x\"\non_backend_error = \"retry\"\n"));
    find(&e, "rate_limit.redis_url", "redis://");
    find(&e, "rate_limit.on_backend_error", "unknown value");
    find(&errs(&doc("[rate_limit]\nbackend = \"memcached\"\n")), "rate_limit.backend", "unknown backend");
    let c = ok(&doc(
        "[rate_limit]\nbackend = \"redis\"\nredis_url = \"rediss://cache:6380\"\non_backend_error = \"deny\"\n",
    ));
    assert!(
        matches!(&c.rate_limit.backend, RateLimitBackend::Redis { url, on_backend_error: OnBackendError::Deny } if url == "rediss://cache:6380")
    );
    // Parsed the way the client will open it, and the password never echoed.
    let e = errs(&doc("[rate_limit]\nbackend = \"redis\"\nredis_url = \"redis://:hunter2@cache:6379/notadb\"\n"));
    let msg = find(&e, "rate_limit.redis_url", "not a usable Redis URL");
    assert!(!msg.message.contains("hunter2"), "{}", msg.message);
    let c = ok(&doc("[rate_limit]\nbackend = \"redis\"\nredis_url = \"redis://user:pw@10.0.0.7:6379/2\"\n"));
    assert!(matches!(c.rate_limit.backend, RateLimitBackend::Redis { on_backend_error: OnBackendError::Local, .. }));
}

#[test]
fn redaction_patterns_are_validated_one_by_one_and_combined() {
    let e = errs(&doc("[redaction]\npatterns = [\"ok\", \"(unclosed\", \"a*\"]\n"));
    find(&e, "redaction.patterns[1]", "invalid regular expression");
    find(&e, "redaction.patterns[2]", "matches the empty string");
    assert_eq!(e.len(), 2, "{}", list(&e));
    let c = ok(&doc("[redaction]\npatterns = ['secret-\\d+', 'tok_[a-z]+']\nreplacement = \"***\"\n"));
    let re = c.redaction.combined.as_ref().expect("combined");
    assert_eq!(re.replace_all("secret-12 and tok_abc", "X"), "X and X");
    assert_eq!(re.as_str(), "(?:secret-\\d+)|(?:tok_[a-z]+)");
    assert_eq!(c.redaction.replacement, "***");
    let c = ok(&doc("[redaction]\npatterns = []\n"));
    assert!(c.redaction.combined.is_none());
}

#[test]
fn strip_response_headers_become_header_matches() {
    let c = ok(&doc("[redaction]\nstrip_response_headers = [\"X-Amzn-RequestId\", \"x-amzn-bedrock-*\"]\n"));
    assert_eq!(
        c.redaction.strip_response_headers,
        vec![HeaderMatch::Exact("x-amzn-requestid".into()), HeaderMatch::Prefix("x-amzn-bedrock-".into())]
    );
    assert!(c.redaction.strip_response_headers[1].matches("x-amzn-bedrock-trace"));
    let e = errs(&doc("[redaction]\nstrip_response_headers = [\"*\", \"bad header\"]\n"));
    find(&e, "redaction.strip_response_headers[0]", "must not be empty");
    find(&e, "redaction.strip_response_headers[1]", "not a valid header name");
}

#[test]
fn all_errors_of_a_file_are_collected_in_one_pass() {
    let text = doc_with(
        "issuer = \"x\"\naudiences = []\nalgorithms = [\"none\"]\n",
        "role_arn = \"nope\"\n",
        "[server]\nlisten = \"x\"\n[tenants.\"bad/id\"]\n[tenants.acme]\nmodels = [\"\"]\n[redaction]\npatterns = [\"(\"]\n",
    );
    let e = errs(&text);
    assert!(e.len() >= 7, "{}", list(&e));
    for key in [
        "identity.audiences",
        "identity.algorithms[0]",
        "identity.jwks_url",
        "credentials.role_arn",
        "server.listen",
        "tenants.\"bad/id\"",
        "tenants.acme.models[0]",
        "redaction.patterns[0]",
    ] {
        assert!(e.iter().any(|x| x.key == key), "missing {key}:\n{}", list(&e));
    }
    assert!(e.iter().all(|x| x.line.is_some()), "{}", list(&e));
}
