//! The demo's world: a temp dir with the HS256 secret of the demo's identity
//! provider, the sidecar's base AWS key (random secret, given to the sidecar
//! through the standard `AWS_*` environment variables as in production and to
//! the simulator as the account's only long-term key), the configuration
//! text, and a token minter.

use crate::secret::SecretString;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

pub const ISSUER: &str = "https://idp.demo.example/";
pub const AUDIENCE: &str = "demo-app";

/// The configured tenants: each must get exactly one STS session.
pub const TENANTS: [&str; 3] = ["acme", "globex", "hooli"];
/// Account of the roles the tenants' sessions assume.
pub const ACCOUNT: &str = "111122223333";

/// The sidecar's own (base) credentials. They sign STS AssumeRole calls and
/// nothing else.
pub struct BaseKey {
    pub access_key_id: &'static str,
    pub secret: SecretString,
}

/// One base key per process: the environment is process-wide, so every demo
/// run in this process (the unit tests run two) must agree on it.
fn base_key() -> &'static BaseKey {
    static KEY: OnceLock<BaseKey> = OnceLock::new();
    KEY.get_or_init(|| BaseKey {
        access_key_id: "AKIADEMOSIDECAR00001",
        secret: SecretString::new(random_hex(20)),
    })
}

/// The demo configuration. `{SIM}` is replaced by the simulator's URL.
/// Otherwise an ordinary config file (with `hs256.secret` beside it).
pub const DEMO_TOML: &str = r#"
[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"

[identity]
mode = "jwt"
issuer = "https://idp.demo.example/"
audiences = ["demo-app"]
algorithms = ["HS256"]
hs256_secret_file = "hs256.secret"

[aws]
region = "us-east-1"
connect_timeout_ms = 1000
response_timeout_secs = 10
stream_idle_timeout_secs = 10
[aws.endpoints]
bedrock_runtime = "{SIM}"
bedrock_agent_runtime = "{SIM}"
sagemaker_runtime = "{SIM}"
sts = "{SIM}"

# The sidecar's base key (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY) only calls
# STS AssumeRole: every tenant request is signed with that tenant's own
# temporary session, tagged TenantID for IAM ABAC.
[credentials]
source = "assume_role"
role_arn = "arn:aws:iam::111122223333:role/tenant-{tenant}"
session_name = "tenantgate-{tenant}"
session_tags = { TenantID = "{tenant}" }
duration_secs = 3600

[tenant_defaults]
models = []
[tenant_defaults.rate_limit]
requests_per_second = 100
burst = 100

# acme: pooled resources (a shared knowledge base, a shared multi-model
# endpoint), isolated by server-side rewriting and response filtering.
[tenants.acme]
models = ["anthropic.claude-3-haiku-*", "amazon.titan-embed-text-v2:0", "amazon.nova-reel-v1:0"]
model_map = { "anthropic.claude-3-haiku-20240307-v1:0" = "arn:aws:bedrock:us-east-1:111122223333:application-inference-profile/acme-haiku" }
guardrail = { id = "gr-acme", version = "1" }
request_metadata = { tenant = "{tenant}", user = "{user}" }
[tenants.acme.knowledge_base]
allowed = ["KBPOOLED01"]
filter_key = "tenant_id"
allowed_source_prefixes = ["s3://docs/tenants/{tenant}/", "s3://docs/public/"]
[tenants.acme.agents]
allowed = ["SUPPORT001/*"]
session_attributes = { tenantId = "{tenant}", userId = "{user}" }
[tenants.acme.async_invoke]
output_prefix = "s3://media-out/{tenant}/"
kms_key_id = "arn:aws:kms:us-east-1:111122223333:alias/{tenant}-media"
tags = { TenantID = "{tenant}" }
[tenants.acme.sagemaker]
endpoints = { classifier = "shared-classifier" }
target_model = "{tenant}.tar.gz"
allowed_target_models = ["{tenant}.tar.gz", "{tenant}/*"]

# globex: silo resources (its own knowledge base and endpoint), isolated by
# routing globex to them only.
[tenants.globex]
models = ["amazon.nova-lite-v1:0", "meta.llama3-*"]
request_metadata = { tenant = "{tenant}", user = "{user}" }
[tenants.globex.knowledge_base]
allowed = ["KBGLOBEX01"]
filter_key = "tenant_id"
allowed_source_prefixes = ["s3://docs/tenants/{tenant}/"]
[tenants.globex.sagemaker]
endpoints = { classifier = "globex-classifier" }
# Cedar policies on top of the allowlists (docs/policies.md): everything
# globex's allowlists allow, but model calls only with short answers.
[tenants.globex.policy]
inline = '''
@id("globex-may-use-its-resources")
permit(principal, action, resource);
@id("globex-short-answers-only")
forbid(principal, action in TenantGate::Action::"ModelCall", resource)
  unless { context has max_tokens && context.max_tokens <= 1024 };
'''

# hooli: a trial plan with a tiny request budget.
[tenants.hooli]
models = ["amazon.nova-lite-v1:0"]
[tenants.hooli.rate_limit]
requests_per_second = 1
burst = 2
"#;

pub struct DemoEnv {
    pub dir: PathBuf,
    hs256: Vec<u8>,
    pub base: &'static BaseKey,
}

fn random_hex(n: usize) -> String {
    let mut b = vec![0u8; n];
    if getrandom::fill(&mut b).is_err() {
        // No OS randomness: fall back to the clock; the demo is local only.
        let t = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(7);
        b.iter_mut()
            .enumerate()
            .for_each(|(i, x)| *x = (t >> ((i % 16) * 8)) as u8 ^ i as u8);
    }
    super::sigv4_check::hex(&b)
}

impl DemoEnv {
    /// Creates the temp dir and the identity provider's secret, and points
    /// the AWS credential chain of this process at the base key (call it
    /// before any other thread exists).
    pub fn create() -> Result<DemoEnv, String> {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir =
            std::env::temp_dir().join(format!("tenantgate-demo-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        let hs256 = random_hex(32).into_bytes();
        std::fs::write(dir.join("hs256.secret"), &hs256)
            .map_err(|e| format!("write secret: {e}"))?;
        let base = base_key();
        aws_environment(base);
        Ok(DemoEnv { dir, hs256, base })
    }

    pub fn config_text(&self, sim_url: &str) -> String {
        DEMO_TOML.replace("{SIM}", sim_url)
    }

    pub fn base_dir(&self) -> &Path {
        &self.dir
    }

    /// An HS256 token from the demo's identity provider. `exp_offset` is
    /// relative to now (negative: already expired).
    pub fn token(&self, tenant: &str, user: &str, exp_offset: i64) -> String {
        self.token_with_key(tenant, user, exp_offset, &self.hs256)
    }

    /// A token signed with some other key (a forgery).
    pub fn forged_token(&self, tenant: &str, user: &str) -> String {
        self.token_with_key(tenant, user, 300, b"not-the-identity-provider-key-000")
    }

    fn token_with_key(&self, tenant: &str, user: &str, exp_offset: i64, key: &[u8]) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let claims = serde_json::json!({
            "iss": ISSUER, "aud": AUDIENCE, "sub": user, "tenant_id": tenant,
            "iat": now, "exp": now + exp_offset,
        });
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(key),
        )
        .unwrap_or_default()
    }
}

impl Drop for DemoEnv {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `ASIA0001K2J4...` -> `ASIA0001...`: enough to tell keys apart, never a
/// whole key.
pub fn key_prefix(akid: &str) -> String {
    format!("{}...", akid.get(..8).unwrap_or(akid))
}

/// The standard AWS credential chain of this process resolves to the base
/// key from the environment and nothing else: no profile, no web identity,
/// no container or instance metadata credentials, no endpoint overrides, no
/// proxy for 127.0.0.1.
/// Only changes what differs, so a second demo run in the same process
/// leaves the environment untouched.
fn aws_environment(base: &BaseKey) {
    const CLEAR: &[&str] = &[
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_ROLE_ARN",
        "AWS_ROLE_SESSION_NAME",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_CONTAINER_AUTHORIZATION_TOKEN",
        "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_STS",
        "AWS_USE_FIPS_ENDPOINT",
        "AWS_USE_DUALSTACK_ENDPOINT",
    ];
    let set: [(&str, &str); 5] = [
        ("AWS_ACCESS_KEY_ID", base.access_key_id),
        ("AWS_SECRET_ACCESS_KEY", base.secret.expose()),
        ("AWS_CONFIG_FILE", "/dev/null"),
        ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ];
    for name in CLEAR {
        if std::env::var_os(name).is_some() {
            std::env::remove_var(name);
        }
    }
    for (name, value) in set {
        if std::env::var(name).ok().as_deref() != Some(value) {
            std::env::set_var(name, value);
        }
    }
    // The AWS SDK's HTTP client honours HTTP(S)_PROXY / ALL_PROXY; the
    // simulator is on this machine, so it must bypass any proxy.
    for name in ["NO_PROXY", "no_proxy"] {
        let old = std::env::var(name).unwrap_or_default();
        if !old.split(',').any(|h| h.trim() == "127.0.0.1") {
            let new = if old.is_empty() {
                "127.0.0.1,localhost".to_string()
            } else {
                format!("127.0.0.1,localhost,{old}")
            };
            std::env::set_var(name, new);
        }
    }
}
