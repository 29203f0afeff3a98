//! The demo's world: a temp dir with the HS256 secret, two tenants' static
//! AWS keys (random secrets, passed to the sidecar through env vars as in
//! production), the configuration text, and a token minter.

use crate::secret::SecretString;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

pub const ISSUER: &str = "https://idp.demo.example/";
pub const AUDIENCE: &str = "demo-app";

/// One tenant's static key pair, given to the simulator (as the "account")
/// and to the sidecar (through env vars).
pub struct TenantKey {
    pub tenant: &'static str,
    pub access_key_id: &'static str,
    pub secret: SecretString,
    pub akid_env: &'static str,
    pub secret_env: &'static str,
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

[credentials]
source = "static"

[redaction]
# Internal ARNs (they carry the AWS account id) never reach the application.
patterns = ['arn:aws:bedrock:[a-z0-9-]+:\d{12}:[A-Za-z0-9/._:-]+']
replacement = "[redacted]"

[tenant_defaults]
models = []
[tenant_defaults.rate_limit]
requests_per_second = 100
burst = 100

[tenants.acme]
models = ["anthropic.claude-3-haiku-*", "amazon.titan-embed-text-v2:0"]
model_map = { "anthropic.claude-3-haiku-20240307-v1:0" = "arn:aws:bedrock:us-east-1:111122223333:application-inference-profile/acme-haiku" }
guardrail = { id = "gr-acme", version = "1" }
request_metadata = { tenant = "{tenant}", user = "{user}" }
[tenants.acme.static_credentials]
access_key_id_env = "TENANTGATE_DEMO_ACME_AKID"
secret_access_key_env = "TENANTGATE_DEMO_ACME_SECRET"

[tenants.globex]
models = ["amazon.nova-lite-v1:0", "meta.llama3-*"]
request_metadata = { tenant = "{tenant}", user = "{user}" }
[tenants.globex.static_credentials]
access_key_id_env = "TENANTGATE_DEMO_GLOBEX_AKID"
secret_access_key_env = "TENANTGATE_DEMO_GLOBEX_SECRET"
"#;

pub struct DemoEnv {
    pub dir: PathBuf,
    hs256: Vec<u8>,
    pub keys: Vec<TenantKey>,
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
    /// Creates the temp dir and the secrets, and exports the tenants' keys
    /// into this process's environment for the sidecar's static source.
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
        let keys = vec![
            TenantKey {
                tenant: "acme",
                access_key_id: "AKIAACMEDEMOKEY00001",
                secret: SecretString::new(random_hex(20)),
                akid_env: "TENANTGATE_DEMO_ACME_AKID",
                secret_env: "TENANTGATE_DEMO_ACME_SECRET",
            },
            TenantKey {
                tenant: "globex",
                access_key_id: "AKIAGLOBEXDEMOKEY001",
                secret: SecretString::new(random_hex(20)),
                akid_env: "TENANTGATE_DEMO_GLOBEX_AKID",
                secret_env: "TENANTGATE_DEMO_GLOBEX_SECRET",
            },
        ];
        for k in &keys {
            std::env::set_var(k.akid_env, k.access_key_id);
            std::env::set_var(k.secret_env, k.secret.expose());
        }
        Ok(DemoEnv { dir, hs256, keys })
    }

    pub fn config_text(&self, sim_url: &str) -> String {
        DEMO_TOML.replace("{SIM}", sim_url)
    }

    pub fn base_dir(&self) -> &Path {
        &self.dir
    }

    /// The tenant that owns an access key id.
    pub fn owner_of(&self, akid: &str) -> Option<&'static str> {
        self.keys
            .iter()
            .find(|k| k.access_key_id == akid)
            .map(|k| k.tenant)
    }

    pub fn key_of(&self, tenant: &str) -> Option<&'static str> {
        self.keys
            .iter()
            .find(|k| k.tenant == tenant)
            .map(|k| k.access_key_id)
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

/// `AKIAACMEDEMOKEY00001` -> `AKIAACME...`: enough to tell keys apart.
pub fn key_prefix(akid: &str) -> String {
    format!("{}...", akid.get(..8).unwrap_or(akid))
}
