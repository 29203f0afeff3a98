//! STS AssumeRole per tenant (docs/reference.md §6), with the sidecar's base credentials
//! from the standard AWS chain (environment, web identity token file as used
//! by EKS IRSA, EKS Pod Identity / container credentials, profile, instance
//! metadata), via `aws-config` and `aws-sdk-sts`.

use super::cache::{FetchFuture, Fetcher};
use crate::error::error_chain;
use aws_config::default_provider::credentials::DefaultCredentialsChain;
use aws_config::provider_config::ProviderConfig;
use aws_config::BehaviorVersion;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_credential_types::Credentials;
use aws_sdk_sts::config::retry::RetryConfig;
use aws_sdk_sts::config::timeout::TimeoutConfig;
use aws_sdk_sts::config::Region;
use aws_sdk_sts::types::Tag;
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode, TlsContext, TrustStore};
use aws_smithy_runtime_api::client::http::SharedHttpClient;
use std::path::Path;
use std::time::{Duration, SystemTime};

/// One rendered AssumeRole request. Its `cache_key` covers every field, so
/// different sessions never share credentials.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AssumeRoleRequest {
    pub role_arn: String,
    pub session_name: String,
    pub tags: Vec<(String, String)>,
    pub source_identity: Option<String>,
    pub policy: Option<String>,
    pub external_id: Option<String>,
    pub duration_secs: u32,
}

impl AssumeRoleRequest {
    pub fn cache_key(&self) -> String {
        // Length-prefixed fields: no value can forge a separator.
        let mut k = String::with_capacity(128);
        let mut put = |s: &str| {
            k.push_str(&s.len().to_string());
            k.push(':');
            k.push_str(s);
        };
        put(&self.role_arn);
        put(&self.session_name);
        for (t, v) in &self.tags {
            put(t);
            put(v);
        }
        put("|");
        put(self.source_identity.as_deref().unwrap_or("\u{0}"));
        put(self.policy.as_deref().unwrap_or("\u{0}"));
        k
    }
}

/// The STS endpoint: `aws.endpoints.sts`, else `AWS_ENDPOINT_URL_STS`, else
/// the regional default of the SDK.
pub fn sts_endpoint(configured: Option<&http::Uri>) -> Option<String> {
    configured
        .map(|u| u.to_string().trim_end_matches('/').to_string())
        .or_else(|| std::env::var("AWS_ENDPOINT_URL_STS").ok().filter(|v| !v.is_empty()))
}

/// The HTTP client of every STS call (per-tenant AssumeRole and the base
/// chain's web identity / container / instance metadata calls): the SDK's
/// own rustls client, trusting the platform roots plus every certificate of
/// `aws.ca_file`. The file is checked with the sidecar's TLS loader first,
/// so a bad file is a start-up error here, never a panic inside the SDK.
pub fn sts_http_client(ca_file: Option<&Path>) -> Result<Option<SharedHttpClient>, String> {
    let Some(path) = ca_file else { return Ok(None) };
    crate::tls::client_config(Some(path))?;
    let pem = std::fs::read(path).map_err(|e| format!("aws.ca_file {}: {e}", path.display()))?;
    let ctx = TlsContext::builder()
        .with_trust_store(TrustStore::default().with_pem_certificate(pem))
        .build()
        .map_err(|e| format!("aws.ca_file {}: {e}", path.display()))?;
    Ok(Some(
        aws_smithy_http_client::Builder::new()
            .tls_provider(tls::Provider::Rustls(CryptoMode::AwsLc))
            .tls_context(ctx)
            .build_https(),
    ))
}

pub struct StsFetcher {
    client: aws_sdk_sts::Client,
    base: SharedCredentialsProvider,
}

impl StsFetcher {
    /// Builds the base credentials chain and the STS client, both over
    /// `http` (see `sts_http_client`; None: the SDK's default client).
    /// Nothing is fetched here; readiness never waits on STS.
    pub async fn new(
        region: &str,
        endpoint: Option<String>,
        timeout: Duration,
        connect: Duration,
        http: Option<SharedHttpClient>,
    ) -> StsFetcher {
        let region = Region::new(region.to_string());
        let mut chain = DefaultCredentialsChain::builder().region(region.clone());
        if let Some(http) = &http {
            chain = chain.configure(
                ProviderConfig::default().with_region(Some(region.clone())).with_http_client(http.clone()),
            );
        }
        let base = SharedCredentialsProvider::new(chain.build().await);
        let mut b = aws_sdk_sts::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(region)
            .credentials_provider(base.clone())
            .retry_config(RetryConfig::standard().with_max_attempts(2))
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(connect)
                    .operation_timeout(timeout)
                    .build(),
            );
        if let Some(ep) = endpoint {
            b = b.endpoint_url(ep);
        }
        if let Some(http) = http {
            b = b.http_client(http);
        }
        StsFetcher { client: aws_sdk_sts::Client::from_conf(b.build()), base }
    }

    /// Resolve the base credentials once, to say clearly at start-up when the
    /// sidecar has none (it keeps running: requests get 503 until it has).
    pub async fn check_base_credentials(&self) {
        match tokio::time::timeout(Duration::from_secs(10), self.base.provide_credentials()).await {
            Ok(Ok(c)) => tracing::info!(access_key_id = %mask(c.access_key_id()), "base AWS credentials available"),
            Ok(Err(e)) => tracing::error!(
                "no usable base AWS credentials (environment, web identity/IRSA, Pod Identity, profile, instance metadata all failed): {}; every request will get 503 credentials_unavailable until this is fixed",
                error_chain(&e)
            ),
            Err(_) => tracing::error!("resolving base AWS credentials took over 10 s; STS AssumeRole will fail until they resolve"),
        }
    }
}

fn mask(akid: &str) -> String {
    let keep: String = akid.chars().take(8).collect();
    format!("{keep}…")
}


impl Fetcher<AssumeRoleRequest> for StsFetcher {
    fn fetch(&self, req: AssumeRoleRequest) -> FetchFuture {
        let client = self.client.clone();
        Box::pin(async move {
            let mut tags = Vec::with_capacity(req.tags.len());
            for (k, v) in &req.tags {
                tags.push(Tag::builder().key(k).value(v).build().map_err(|e| e.to_string())?);
            }
            let out = client
                .assume_role()
                .role_arn(&req.role_arn)
                .role_session_name(&req.session_name)
                .set_tags(if tags.is_empty() { None } else { Some(tags) })
                .set_source_identity(req.source_identity.clone())
                .set_policy(req.policy.clone())
                .set_external_id(req.external_id.clone())
                .duration_seconds(req.duration_secs as i32)
                .send()
                .await
                .map_err(|e| format!("STS AssumeRole {}: {}", req.role_arn, error_chain(&e)))?;
            let c = out
                .credentials()
                .ok_or_else(|| "STS AssumeRole returned no credentials".to_string())?;
            let expiry = SystemTime::try_from(*c.expiration())
                .map_err(|e| format!("STS AssumeRole returned a bad expiration: {e}"))?;
            Ok(Credentials::new(
                c.access_key_id(),
                c.secret_access_key(),
                Some(c.session_token().to_string()),
                Some(expiry),
                "tenantgate-sts",
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req() -> AssumeRoleRequest {
        AssumeRoleRequest {
            role_arn: "arn:aws:iam::1:role/r".into(),
            session_name: "tenantgate-acme".into(),
            tags: vec![("TenantID".into(), "acme".into())],
            source_identity: None,
            policy: None,
            external_id: None,
            duration_secs: 3600,
        }
    }

    #[test]
    fn cache_key_covers_every_rendered_field() {
        let a = req();
        let mut b = req();
        b.tags[0].1 = "globex".into();
        assert_ne!(a.cache_key(), b.cache_key());
        let mut c = req();
        c.source_identity = Some("alice".into());
        assert_ne!(a.cache_key(), c.cache_key());
        let mut d = req();
        d.policy = Some("{}".into());
        assert_ne!(a.cache_key(), d.cache_key());
        let mut e = req();
        e.session_name = "tenantgate-acme2".into();
        assert_ne!(a.cache_key(), e.cache_key());
    }

    #[test]
    fn cache_key_cannot_be_forged_with_separators() {
        let mut a = req();
        a.tags = vec![("A".into(), "x6:B1:y".into())];
        let mut b = req();
        b.tags = vec![("A".into(), "x".into()), ("B".into(), "y".into())];
        assert_ne!(a.cache_key(), b.cache_key());
    }
}
