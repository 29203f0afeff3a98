//! Tenant-scoped credentials (SPEC §6). One entry point for the pipeline:
//! `CredentialProvider::for_tenant`, which returns credentials that belong to
//! that tenant and to no other, or 503 `credentials_unavailable`. There is no
//! fallback to the sidecar's own credentials or to another tenant's.
//!
//! Sources:
//! - `static`: per-tenant keys from the env vars named in the tenant's
//!   `static_credentials` table, read once at start-up.
//! - `assume_role`: STS AssumeRole with session tags, cached per rendered
//!   request (see `sts.rs` when enabled).

use crate::config::{Config, CredentialsConfig, StaticCredentialsEnv, TenantPolicy};
use crate::error::ProxyError;
use crate::principal::Principal;
use aws_credential_types::Credentials;
use std::collections::HashMap;
use std::sync::Arc;

/// Credentials of one tenant. `Debug` shows the access key id only (the
/// `aws-credential-types` type redacts the secret and the session token).
#[derive(Clone, Debug)]
pub struct TenantCredentials(pub Credentials);

enum Source {
    /// Keyed by the env var names (the `static_credentials` table), so two
    /// tenants that name the same vars share an entry, and only them.
    Static(HashMap<StaticCredentialsEnv, Result<Credentials, String>>),
    AssumeRoleUnsupported,
}

pub struct CredentialProvider {
    source: Source,
}

fn read_env(env: &StaticCredentialsEnv) -> Result<Credentials, String> {
    let get = |name: &str| match std::env::var(name) {
        Ok(v) if !v.is_empty() => Ok(v),
        _ => Err(format!("environment variable {name} is not set")),
    };
    let akid = get(&env.access_key_id_env)?;
    let secret = get(&env.secret_access_key_env)?;
    let token = match &env.session_token_env {
        Some(name) => Some(get(name)?),
        None => None,
    };
    Ok(Credentials::new(akid, secret, token, None, "tenantgate-static"))
}

impl CredentialProvider {
    /// Reads every static key named in the config now; a missing variable is
    /// logged here and answered with 503 for that tenant's requests.
    pub fn from_config(cfg: &Config) -> Arc<Self> {
        let source = match &cfg.credentials {
            CredentialsConfig::Static => {
                let mut map = HashMap::new();
                let policies = cfg
                    .tenants
                    .iter()
                    .map(|(id, p)| (id.as_str(), p))
                    .chain(cfg.unlisted.iter().map(|p| ("(unlisted tenants)", p)));
                for (tenant, policy) in policies {
                    if let Some(env) = &policy.static_credentials {
                        let entry = map.entry(env.clone()).or_insert_with(|| read_env(env));
                        if let Err(e) = entry {
                            tracing::error!(tenant, "static credentials unavailable: {e}");
                        }
                    }
                }
                Source::Static(map)
            }
            CredentialsConfig::AssumeRole(_) => {
                tracing::error!("credentials.source = \"assume_role\" is not available in this build; every request will get 503 credentials_unavailable");
                Source::AssumeRoleUnsupported
            }
        };
        Arc::new(CredentialProvider { source })
    }

    pub async fn for_tenant(
        &self,
        principal: &Principal,
        policy: &TenantPolicy,
    ) -> Result<TenantCredentials, ProxyError> {
        match &self.source {
            Source::Static(map) => {
                let env = policy.static_credentials.as_ref().ok_or_else(|| {
                    ProxyError::CredentialsUnavailable(format!(
                        "tenant {} has no static_credentials",
                        principal.tenant
                    ))
                })?;
                match map.get(env) {
                    Some(Ok(c)) => Ok(TenantCredentials(c.clone())),
                    Some(Err(e)) => Err(ProxyError::CredentialsUnavailable(e.clone())),
                    None => Err(ProxyError::CredentialsUnavailable(format!(
                        "no credentials loaded for tenant {}",
                        principal.tenant
                    ))),
                }
            }
            Source::AssumeRoleUnsupported => Err(ProxyError::CredentialsUnavailable(
                "assume_role source not available".into(),
            )),
        }
    }
}
