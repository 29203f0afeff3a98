//! Which config changes the credential provider sees across a reload.

use super::CredentialInputs;
use crate::config::{parse_str, Config};
use std::path::PathBuf;

const ASSUME_ROLE: &str = r#"[identity]
issuer = "https://issuer.example"
audiences = ["app"]
jwks_url = "https://issuer.example/jwks.json"

[aws]
region = "us-east-1"
connect_timeout_ms = 3000
response_timeout_secs = 300
stream_idle_timeout_secs = 120
ca_file = "ca-a.pem"

[aws.endpoints]
sts = "https://sts.a.example"
bedrock_runtime = "https://bedrock.a.example"

[credentials]
role_arn = "arn:aws:iam::111122223333:role/a"
session_name = "tenantgate-{tenant}"
session_tags = { TenantID = "{tenant}" }
source_identity = "{user}"
duration_secs = 3600
refresh_before_secs = 300
session_policy_file = "policy-a.json"
external_id = "ext-a"

[tenants.acme]
models = ["amazon.nova-*"]
"#;

const STATIC: &str = r#"[identity]
issuer = "https://issuer.example"
audiences = ["app"]
jwks_url = "https://issuer.example/jwks.json"

[aws]
region = "us-east-1"

[credentials]
source = "static"

[tenant_defaults]
models = ["amazon.nova-*"]
allow_unlisted = true
static_credentials = { access_key_id_env = "DEF_AKID", secret_access_key_env = "DEF_SECRET" }

[tenants.acme]
static_credentials = { access_key_id_env = "ACME_AKID", secret_access_key_env = "ACME_SECRET" }
"#;

/// A scratch directory with the files the documents name (two CA files,
/// two policies), removed on drop.
struct Files(PathBuf);

impl Files {
    fn new(tag: &str) -> Files {
        let dir = std::env::temp_dir().join(format!("tenantgate-server-{}-{tag}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for name in ["ca-a.pem", "ca-b.pem"] {
            std::fs::write(dir.join(name), "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n").unwrap();
        }
        std::fs::write(dir.join("policy-a.json"), r#"{"Version":"2012-10-17","Statement":[]}"#).unwrap();
        let deny = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Action":"*","Resource":"*"}]}"#;
        std::fs::write(dir.join("policy-b.json"), deny).unwrap();
        Files(dir)
    }

    fn load(&self, text: &str) -> Config {
        parse_str(text, &self.0).unwrap_or_else(|e| panic!("{e:?}\n{text}"))
    }

    /// `base` with `from` replaced by `to` (which must occur), and whether
    /// the credential inputs stayed equal.
    fn unchanged_after(&self, base: &str, from: &str, to: &str) -> bool {
        assert!(base.contains(from), "{from:?} not in the document");
        let (a, b) = (self.load(base), self.load(&base.replacen(from, to, 1)));
        CredentialInputs::of(&a) == CredentialInputs::of(&b)
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn credential_inputs_see_each_credentials_field() {
    let files = Files::new("fields");
    assert!(files.unchanged_after(ASSUME_ROLE, "", ""), "the same document is equal to itself");
    for (from, to) in [
        ("role/a", "role/b"),
        ("tenantgate-{tenant}", "tg-{tenant}"),
        ("TenantID = \"{tenant}\"", "TenantID = \"{tenant}\", Team = \"x\""),
        ("source_identity = \"{user}\"", "source_identity = \"u-{user}\""),
        ("duration_secs = 3600", "duration_secs = 7200"),
        ("refresh_before_secs = 300", "refresh_before_secs = 600"),
        ("policy-a.json", "policy-b.json"),
        ("ext-a", "ext-b"),
        ("region = \"us-east-1\"", "region = \"eu-west-1\""),
        ("https://sts.a.example", "https://sts.b.example"),
        ("connect_timeout_ms = 3000", "connect_timeout_ms = 4000"),
        ("ca-a.pem", "ca-b.pem"),
    ] {
        assert!(!files.unchanged_after(ASSUME_ROLE, from, to), "{from:?} -> {to:?} not seen");
    }
}

#[test]
fn credential_inputs_see_each_static_credentials_env() {
    let files = Files::new("static");
    for (from, to) in [
        ("ACME_AKID", "ACME_AKID2"),
        ("ACME_SECRET", "ACME_SECRET2"),
        ("secret_access_key_env = \"ACME_SECRET\"", "secret_access_key_env = \"ACME_SECRET\", session_token_env = \"ACME_TOKEN\""),
        ("DEF_AKID", "DEF_AKID2"),
        ("allow_unlisted = true", "allow_unlisted = false"),
        ("[tenants.acme]", "[tenants.globex]\nstatic_credentials = { access_key_id_env = \"G\", secret_access_key_env = \"GS\" }\n\n[tenants.acme]"),
    ] {
        assert!(!files.unchanged_after(STATIC, from, to), "{from:?} -> {to:?} not seen");
    }
}

#[test]
fn credential_inputs_ignore_unrelated_changes() {
    let files = Files::new("unrelated");
    for (from, to) in [
        ("models = [\"amazon.nova-*\"]", "models = [\"anthropic.*\"]"),
        ("response_timeout_secs = 300", "response_timeout_secs = 30"),
        ("stream_idle_timeout_secs = 120", "stream_idle_timeout_secs = 60"),
        ("https://bedrock.a.example", "https://bedrock.b.example"),
    ] {
        assert!(files.unchanged_after(ASSUME_ROLE, from, to), "{from:?} -> {to:?} seen");
    }
    assert!(files.unchanged_after(STATIC, "models = [\"amazon.nova-*\"]", "models = [\"anthropic.*\"]"));
}
