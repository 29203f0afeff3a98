//! The upstream side: endpoints per service (docs/reference.md §3 `[aws.endpoints]`,
//! defaults from the region) and one pooled HTTP(S) client (hyper-util +
//! rustls) shared by every request.

use crate::config::AwsConfig;
use crate::route::Service;
use crate::tls::HttpsConnector;
use bytes::Bytes;
use http::uri::{Authority, Scheme};
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::time::Duration;

pub type HttpClient = Client<HttpsConnector, Full<Bytes>>;

/// Where one service's requests go.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub scheme: Scheme,
    pub authority: Authority,
    /// Path prefix of the endpoint URL without a trailing `/` (usually empty).
    pub base_path: String,
    /// Value of the `host` header sent upstream (no default port).
    pub host: http::HeaderValue,
}

impl Endpoint {
    pub fn from_uri(uri: &http::Uri) -> Result<Endpoint, String> {
        let scheme = uri.scheme().cloned().ok_or("endpoint has no scheme")?;
        let authority = uri.authority().cloned().ok_or("endpoint has no host")?;
        let default_port = if scheme == Scheme::HTTPS { 443 } else { 80 };
        let host = match authority.port_u16() {
            Some(p) if p == default_port => authority.host().to_string(),
            _ => authority.as_str().to_string(),
        };
        let host = http::HeaderValue::from_str(&host).map_err(|e| e.to_string())?;
        Ok(Endpoint {
            scheme,
            authority,
            base_path: uri.path().trim_end_matches('/').to_string(),
            host,
        })
    }

    /// Absolute URI for an already-encoded path and optional raw query.
    pub fn uri(&self, path: &str, query: Option<&str>) -> Result<http::Uri, http::Error> {
        let pq = match query {
            Some(q) if !q.is_empty() => format!("{}{path}?{q}", self.base_path),
            _ => format!("{}{path}", self.base_path),
        };
        http::Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(pq)
            .build()
    }
}

#[derive(Debug, Clone)]
pub struct Endpoints {
    pub bedrock_runtime: Endpoint,
    pub bedrock_agent_runtime: Endpoint,
    pub sagemaker_runtime: Endpoint,
}

impl Endpoints {
    pub fn from_config(aws: &AwsConfig) -> Result<Endpoints, String> {
        let pick = |explicit: &Option<http::Uri>, default: String| -> Result<Endpoint, String> {
            match explicit {
                Some(u) => Endpoint::from_uri(u),
                None => Endpoint::from_uri(&default.parse::<http::Uri>().map_err(|e| e.to_string())?),
            }
        };
        let r = &aws.region;
        Ok(Endpoints {
            bedrock_runtime: pick(
                &aws.endpoints.bedrock_runtime,
                format!("https://bedrock-runtime.{r}.amazonaws.com"),
            )?,
            bedrock_agent_runtime: pick(
                &aws.endpoints.bedrock_agent_runtime,
                format!("https://bedrock-agent-runtime.{r}.amazonaws.com"),
            )?,
            sagemaker_runtime: pick(
                &aws.endpoints.sagemaker_runtime,
                format!("https://runtime.sagemaker.{r}.amazonaws.com"),
            )?,
        })
    }

    pub fn for_service(&self, s: Service) -> &Endpoint {
        match s {
            Service::BedrockRuntime => &self.bedrock_runtime,
            Service::BedrockAgentRuntime => &self.bedrock_agent_runtime,
            Service::SageMakerRuntime => &self.sagemaker_runtime,
        }
    }
}

/// One pooled client for every upstream request: keep-alive, TCP_NODELAY,
/// `connect_timeout_ms`, trust roots = webpki + `aws.ca_file`.
pub fn build_client(aws: &AwsConfig) -> Result<HttpClient, String> {
    let connector = crate::tls::https_connector(aws.ca_file.as_deref(), aws.connect_timeout)?;
    Ok(Client::builder(TokioExecutor::new())
        .timer(TokioTimer::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(256)
        .build(connector))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_host_drops_default_port_and_keeps_others() {
        let e = Endpoint::from_uri(&"https://bedrock-runtime.us-east-1.amazonaws.com:443".parse().unwrap()).unwrap();
        assert_eq!(e.host, "bedrock-runtime.us-east-1.amazonaws.com");
        let e = Endpoint::from_uri(&"http://127.0.0.1:9000/prefix/".parse().unwrap()).unwrap();
        assert_eq!(e.host, "127.0.0.1:9000");
        assert_eq!(e.uri("/model/m/converse", Some("a=1")).unwrap().to_string(), "http://127.0.0.1:9000/prefix/model/m/converse?a=1");
    }
}
