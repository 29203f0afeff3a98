//! File references: resolved against the base directory, must exist at load.

use super::*;

fn parse_in(dir: &TempDir, text: &str) -> Result<Config, Vec<ConfigError>> {
    parse_str(text, &dir.0)
}

fn id_with(source: &str) -> String {
    format!("issuer = \"https://i\"\naudiences = [\"a\"]\n{source}\n")
}

#[test]
fn missing_files_are_errors() {
    let dir = TempDir::new("missing");
    let text = doc_with(
        &id_with("pem_file = \"keys/public.pem\""),
        &format!("{CREDENTIALS}session_policy_file = \"policy.json\"\n"),
        "[server]\ntls_cert_file = \"cert.pem\"\ntls_key_file = \"key.pem\"\n",
    )
    .replace("region = \"us-east-1\"", "region = \"us-east-1\"\nca_file = \"roots.pem\"");
    let e = parse_in(&dir, &text).expect_err("files are missing");
    for key in [
        "identity.pem_file",
        "credentials.session_policy_file",
        "server.tls_cert_file",
        "server.tls_key_file",
        "aws.ca_file",
    ] {
        find(&e, key, "file not found");
    }
    let e =
        parse_in(&dir, &doc_with(&id_with("hs256_secret_file = \"secret\""), CREDENTIALS, "")).expect_err("missing");
    find(&e, "identity.hs256_secret_file", "file not found");
    let e = parse_in(&dir, &doc_with(&id_with("jwks_file = \"jwks.json\""), CREDENTIALS, "")).expect_err("missing");
    find(&e, "identity.jwks_file", "file not found");
}

#[test]
fn existing_files_are_resolved_against_the_base_dir() {
    let dir = TempDir::new("exist");
    dir.file("public.pem", "-----BEGIN PUBLIC KEY-----\nMFkw\n-----END PUBLIC KEY-----\n");
    dir.file("cert.pem", "-----BEGIN CERTIFICATE-----\n");
    dir.file("key.pem", "-----BEGIN PRIVATE KEY-----\n");
    dir.file("roots.pem", "-----BEGIN CERTIFICATE-----\n");
    let text = doc_with(
        &id_with("pem_file = \"public.pem\"\nalgorithms = [\"ES256\"]"),
        CREDENTIALS,
        "[server]\ntls_cert_file = \"cert.pem\"\ntls_key_file = \"key.pem\"\n",
    )
    .replace("region = \"us-east-1\"", "region = \"us-east-1\"\nca_file = \"roots.pem\"");
    let c = parse_in(&dir, &text).unwrap_or_else(|e| panic!("{}", list(&e)));
    let IdentityMode::Jwt(j) = &c.identity.mode else { panic!("jwt") };
    assert_eq!(j.key_source, KeySource::PemFile(dir.0.join("public.pem")));
    let tls = c.server.tls.as_ref().expect("tls");
    assert_eq!(tls.cert_file, dir.0.join("cert.pem"));
    assert_eq!(tls.key_file, dir.0.join("key.pem"));
    assert_eq!(c.aws.ca_file, Some(dir.0.join("roots.pem")));
}

#[test]
fn key_files_must_look_like_what_they_are() {
    let dir = TempDir::new("content");
    dir.file("jwks.json", "{\"not\": \"a jwks\"}");
    dir.file("key.pem", "hello");
    dir.file("empty", "");
    let e = parse_in(&dir, &doc_with(&id_with("jwks_file = \"jwks.json\""), CREDENTIALS, "")).expect_err("bad jwks");
    find(&e, "identity.jwks_file", "not a JWKS document");
    let e = parse_in(&dir, &doc_with(&id_with("pem_file = \"key.pem\""), CREDENTIALS, "")).expect_err("bad pem");
    find(&e, "identity.pem_file", "not a PEM file");
    let e = parse_in(&dir, &doc_with(&id_with("hs256_secret_file = \"empty\""), CREDENTIALS, "")).expect_err("empty");
    find(&e, "identity.hs256_secret_file", "is empty");
}

#[test]
fn tls_needs_both_files() {
    let dir = TempDir::new("tls");
    dir.file("cert.pem", "x");
    let e = parse_in(&dir, &doc("[server]\ntls_cert_file = \"cert.pem\"\n")).expect_err("no key");
    find(&e, "server.tls_cert_file", "needs tls_key_file");
}

#[test]
fn session_policy_file_is_a_json_template() {
    let dir = TempDir::new("policy");
    dir.file(
        "policy.json",
        r#"{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "bedrock:*",
            "Resource": "arn:aws:bedrock:*:*:application-inference-profile/{tenant}-*"}]}"#,
    );
    dir.file("bad.json", r#"{"Resource": "{tenat}"}"#);
    dir.file("notjson.json", "Version: 1");
    let with = |f: &str| doc_with(IDENTITY, &format!("{CREDENTIALS}session_policy_file = \"{f}\"\n"), "");
    let c = parse_in(&dir, &with("policy.json")).unwrap_or_else(|e| panic!("{}", list(&e)));
    let CredentialsConfig::AssumeRole(ar) = &c.credentials else { panic!("assume_role") };
    let policy = ar.session_policy.as_ref().expect("policy");
    let rendered = policy.render(&crate::principal::Principal::static_tenant("acme")).expect("renders");
    let v: serde_json::Value = serde_json::from_str(&rendered).expect("valid JSON");
    assert_eq!(v["Statement"][0]["Resource"], "arn:aws:bedrock:*:*:application-inference-profile/acme-*");
    assert!(!policy.uses_user());
    let e = parse_in(&dir, &with("bad.json")).expect_err("bad placeholder");
    find(&e, "credentials.session_policy_file", "unknown placeholder");
    let e = parse_in(&dir, &with("notjson.json")).expect_err("not JSON");
    find(&e, "credentials.session_policy_file", "invalid JSON");
}
