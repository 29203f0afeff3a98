//! ListSessions' owner look-ups (docs/reference.md §5.3, "Sessions"): the
//! summaries of a ListSessions page name no owner, so every listed session
//! is looked up with GetSession, signed as the tenant like the request
//! itself, all of a page at once; the sessions whose `tenantgate.tenant`
//! and `tenantgate.user` metadata are the caller's are kept
//! (`family::sessions::filter_session_list`). A session gone in between
//! (404) is not the caller's; any other failed look-up fails the request
//! (502, or 504 on timeout): nothing of the page is shown. The answers are
//! charged to the tenant's share of `server.max_buffered_bytes` up front
//! (`MAX_LOOKUP_ANSWER` each).

use super::*;
use crate::family::sessions::answer_is_owned;
use crate::route::Service;
use crate::upstream::Endpoint;
use aws_credential_types::Credentials;
use http::{Method, StatusCode};
use std::time::Duration;

/// Largest GetSession answer read for a look-up (50 metadata entries of
/// 100-character keys and 5,000-character values fit, JSON-escaped text
/// aside); charged to the tenant's buffer budget for every listed session
/// before the look-ups start.
pub(super) const MAX_LOOKUP_ANSWER: usize = 320 * 1024;

impl Proxy {
    /// The sessions of `ids` that belong to `principal`.
    pub(super) async fn owned_sessions(
        &self,
        snap: &Snapshot,
        principal: &Principal,
        policy: &TenantPolicy,
        ids: Vec<String>,
    ) -> Result<Vec<String>, ProxyError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let cfg = &snap.config;
        let creds = snap.creds.for_tenant(principal, policy).await?;
        let endpoint = snap.endpoints.for_service(Service::BedrockAgentRuntime);
        let mut lookups = tokio::task::JoinSet::new();
        for id in ids {
            let (client, endpoint, creds) = (self.client.clone(), endpoint.clone(), creds.0.clone());
            let (region, timeout) = (cfg.aws.region.clone(), cfg.aws.response_timeout);
            lookups.spawn(async move {
                let answer = get_session(&client, &endpoint, &creds, &region, timeout, &id).await;
                (id, answer)
            });
        }
        let mut owned = Vec::new();
        while let Some(done) = lookups.join_next().await {
            let (id, answer) = done.map_err(|e| ProxyError::UpstreamError(format!("session owner look-up failed: {e}")))?;
            if answer?.is_some_and(|body| answer_is_owned(&body, &id, principal)) {
                owned.push(id);
            }
        }
        Ok(owned)
    }
}

/// GetSession of Bedrock's session `id`: its answer, or `None` when AWS
/// no longer has it (404).
async fn get_session(
    client: &crate::upstream::HttpClient,
    endpoint: &Endpoint,
    creds: &Credentials,
    region: &str,
    timeout: Duration,
    id: &str,
) -> Result<Option<Bytes>, ProxyError> {
    let failed = |m: String| ProxyError::UpstreamError(format!("session owner look-up: {m}"));
    let uri = endpoint.uri(&format!("/sessions/{}/", route::encode_label(id)), None).map_err(|e| failed(e.to_string()))?;
    let mut req = Request::builder()
        .method(Method::GET)
        .uri(uri)
        .header(header::HOST, endpoint.host.clone())
        .header(header::ACCEPT_ENCODING, "identity")
        .header(header::CONTENT_LENGTH, 0)
        .body(())
        .map_err(|e| failed(e.to_string()))?;
    sign_request(&mut req, &[], creds, region, Service::BedrockAgentRuntime.signing_name(), SystemTime::now())?;
    let req = req.map(|()| Full::new(Bytes::new()));
    let exchange = async {
        let resp = client.request(req).await.map_err(|e| failed(error_chain(&e)))?;
        let status = resp.status();
        let body = http_body_util::Limited::new(resp.into_body(), MAX_LOOKUP_ANSWER)
            .collect()
            .await
            .map_err(|e| failed(format!("reading the answer: {e}")))?
            .to_bytes();
        Ok::<_, ProxyError>((status, body))
    };
    let (status, body) = tokio::time::timeout(timeout, exchange).await.map_err(|_| ProxyError::UpstreamTimeout)??;
    match status {
        s if s.is_success() => Ok(Some(body)),
        StatusCode::NOT_FOUND => Ok(None),
        s => Err(failed(format!("GetSession answered {s}"))),
    }
}
