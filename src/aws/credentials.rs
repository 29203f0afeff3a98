//! Tenant-scoped credentials (docs/reference.md §6). One entry point for the pipeline:
//! `CredentialProvider::for_tenant`, which returns credentials that belong to
//! that tenant and to no other, or 503 `credentials_unavailable`. There is no
//! fallback to the sidecar's own credentials or to another tenant's.
//!
//! Sources:
//! - `static`: per-tenant keys from the env vars named in the tenant's
//!   `static_credentials` table, read once at start-up.
//! - `assume_role`: STS AssumeRole with the rendered role ARN, session name,
//!   session tags, source identity, session policy and external id; cached
//!   per rendered request (`cache.rs`), so templates using `{user}` mean one
//!   STS session per user.

use super::cache::{CacheStats, CredCache};
use super::sts::{sts_endpoint, sts_http_client, AssumeRoleRequest, StsFetcher};
use crate::config::{AssumeRoleConfig, Config, CredentialsConfig, StaticCredentialsEnv, TenantPolicy};
use crate::error::ProxyError;
use crate::principal::Principal;
use crate::template::MissingClaim;
use aws_credential_types::Credentials;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// Most STS sessions cached at once. Each entry is about 1.5 KB (the key
/// plus an STS session token of up to ~1 KB), so the cache stays under
/// ~75 MB even at the bound; past it, the least recently used sixteenth is
/// dropped and fetched again on its next request.
pub const MAX_CACHED_SESSIONS: usize = 50_000;
/// Every STS call is bounded by this (both in the SDK and around it).
pub const STS_TIMEOUT: Duration = Duration::from_secs(5);

/// Credentials of one tenant. `Debug` shows the access key id only (the
/// `aws-credential-types` type redacts the secret and the session token).
#[derive(Clone, Debug)]
pub struct TenantCredentials(pub Credentials);

enum Source {
    /// Keyed by the env var names (the `static_credentials` table), so two
    /// tenants that name the same vars share an entry, and only them.
    Static(HashMap<StaticCredentialsEnv, Result<Credentials, String>>),
    AssumeRole {
        cfg: Box<AssumeRoleConfig>,
        cache: Arc<CredCache<AssumeRoleRequest, StsFetcher>>,
    },
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

fn missing(e: MissingClaim) -> ProxyError {
    ProxyError::MissingClaim(e.0)
}

/// Render the AssumeRole request of one principal.
pub fn render_request(cfg: &AssumeRoleConfig, p: &Principal) -> Result<AssumeRoleRequest, ProxyError> {
    let mut tags = Vec::with_capacity(cfg.session_tags.len());
    for (k, t) in &cfg.session_tags {
        tags.push((k.clone(), t.render(p).map_err(missing)?));
    }
    Ok(AssumeRoleRequest {
        role_arn: cfg.role_arn.render(p).map_err(missing)?,
        session_name: cfg.session_name.render(p).map_err(missing)?,
        tags,
        source_identity: cfg.source_identity.as_ref().map(|t| t.render(p)).transpose().map_err(missing)?,
        policy: cfg.session_policy.as_ref().map(|t| t.render(p)).transpose().map_err(missing)?,
        external_id: cfg.external_id.clone(),
        duration_secs: cfg.duration_secs,
    })
}

fn per_user(cfg: &AssumeRoleConfig) -> bool {
    cfg.role_arn.uses_user()
        || cfg.session_name.uses_user()
        || cfg.session_tags.iter().any(|(_, t)| t.uses_user())
        || cfg.source_identity.as_ref().is_some_and(|t| t.uses_user())
        || cfg.session_policy.as_ref().is_some_and(|t| t.uses_user())
}

impl CredentialProvider {
    /// Reads every static key named in the config now (a missing variable is
    /// logged here and answered with 503 for that tenant's requests), or sets
    /// up the STS client (an unusable `aws.ca_file` is an error). Nothing
    /// here waits on STS.
    pub async fn from_config(cfg: &Config) -> Result<Arc<Self>, String> {
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
            CredentialsConfig::AssumeRole(ar) => {
                let endpoint = sts_endpoint(cfg.aws.endpoints.sts.as_ref());
                let http = sts_http_client(cfg.aws.ca_file.as_deref())?;
                let fetcher =
                    StsFetcher::new(&cfg.aws.region, endpoint, STS_TIMEOUT, cfg.aws.connect_timeout, http).await;
                let refresh = Duration::from_secs(ar.refresh_before_secs);
                let cache = CredCache::new(fetcher, MAX_CACHED_SESSIONS, refresh, STS_TIMEOUT);
                Source::AssumeRole { cfg: Box::new(ar.clone()), cache }
            }
        };
        Ok(Arc::new(CredentialProvider { source }))
    }

    /// Start-up work in the background, best effort: say whether base
    /// credentials resolve, and fetch the listed tenants' sessions (those
    /// whose templates do not depend on the user).
    pub fn start(self: &Arc<Self>, cfg: &Config) {
        let Source::AssumeRole { cfg: ar, cache } = &self.source else { return };
        let cache = cache.clone();
        let mut warm = Vec::new();
        if !per_user(ar) {
            for tenant in cfg.tenants.keys() {
                match render_request(ar, &Principal::static_tenant(tenant)) {
                    Ok(r) => warm.push((tenant.clone(), r)),
                    Err(e) => tracing::debug!(tenant, "not pre-fetching credentials: {e}"),
                }
            }
        }
        tokio::spawn(async move {
            cache_fetcher_check(&cache).await;
            for (tenant, req) in warm {
                let cache = cache.clone();
                tokio::spawn(async move {
                    match cache.get(&req.cache_key(), req.clone()).await {
                        Ok(_) => tracing::debug!(tenant, "credentials pre-fetched"),
                        Err(e) => tracing::warn!(tenant, "pre-fetching credentials failed (will retry on first request): {e}"),
                    }
                });
            }
        });
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
            Source::AssumeRole { cfg, cache } => {
                let req = render_request(cfg, principal)?;
                let key = req.cache_key();
                cache.get(&key, req).await.map(TenantCredentials).map_err(|e| {
                    ProxyError::CredentialsUnavailable(format!("tenant {}: {e}", principal.tenant))
                })
            }
        }
    }

    /// STS counters and the number of cached sessions (None for `static`).
    pub fn sts_stats(&self) -> Option<(&CacheStats, usize)> {
        match &self.source {
            Source::Static(_) => None,
            Source::AssumeRole { cache, .. } => Some((&cache.stats, cache.len())),
        }
    }
}

async fn cache_fetcher_check(cache: &Arc<CredCache<AssumeRoleRequest, StsFetcher>>) {
    cache.fetcher().check_base_credentials().await;
}
