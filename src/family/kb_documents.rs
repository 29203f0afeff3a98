//! Knowledge-base operations beyond retrieval (docs/reference.md §5.2,
//! docs/knowledge-bases.md "Documents and generated queries").
//!
//! **GetDocumentContent** (`POST /knowledgebases/{kb}/datasources/{ds}/documents/{doc}/content`)
//! answers with a presigned S3 URL to one ingested document. A shared
//! knowledge base holds every tenant's documents, and the document id says
//! nothing of whose a document is, so the rule is the one Retrieve's
//! post-filter applies to chunks: the document must be stored under the
//! tenant's rendered `knowledge_base.allowed_source_prefixes`.
//! - the knowledge base is on the allowlist (403 `knowledge_base_not_allowed`);
//! - a tenant without `allowed_source_prefixes` cannot use the operation
//!   (403 `operation_not_allowed`): nothing would tell its documents apart;
//! - `userContext` comes from the verified identity (`knowledge_base.user_context`),
//!   never from the client, as for Retrieve;
//! - the answer is buffered (it is small) and its `presignedUrl` read as an
//!   S3 location (virtual-hosted or path style, key percent-decoded once);
//!   outside the prefixes, or not an S3 URL at all: 403
//!   `location_not_allowed` and nothing of the answer reaches the client.
//!
//! **GenerateQuery** (`POST /generateQuery`) turns a question into SQL for a
//! structured knowledge base; it reads and returns no data. The knowledge
//! base named by `transformationConfiguration.textToSqlConfiguration.knowledgeBaseConfiguration.knowledgeBaseArn`
//! must be on the allowlist (its id decides); the body goes upstream as
//! judged (re-serialised: a duplicate key cannot name another one).

use super::knowledge_bases::{force_user_context, kb_allowed, RewriteNote};
use super::{body_object, to_bytes, Ctx, RequestBody};
use crate::decide;
use crate::error::ProxyError;
use crate::filter::uri::PrefixSet;
use crate::post::Post;
use bytes::Bytes;
use serde_json::Value;

/// Where GenerateQuery names its knowledge base.
const GENERATE_QUERY_KB: &str = "/transformationConfiguration/textToSqlConfiguration/knowledgeBaseConfiguration/knowledgeBaseArn";

/// GetDocumentContent's request for this tenant, and the answer's filter.
pub(crate) fn rewrite_get_document(ctx: &Ctx<'_>, kb: &str, body: RequestBody) -> Result<(Bytes, Post), ProxyError> {
    kb_allowed(ctx, kb)?;
    let prefixes = decide::source_prefixes(&ctx.request())?;
    if prefixes.is_empty() {
        return Err(ProxyError::OperationNotAllowed(format!(
            "GetDocumentContent (tenant {:?} has no knowledge_base.allowed_source_prefixes, so its documents cannot be told from others')",
            ctx.principal.tenant
        )));
    }
    let mut v = body.tree()?;
    force_user_context(body_object(&mut v)?, ctx, &mut RewriteNote::default())?;
    Ok((to_bytes(&v)?, Post::DocumentContent { prefixes }))
}

/// GetDocumentContent's answer when the document is the tenant's (see the
/// module doc), re-serialised from the tree judged.
pub fn filter_document_content(body: &[u8], prefixes: &[String]) -> Result<Vec<u8>, ProxyError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| ProxyError::UpstreamError(format!("GetDocumentContent answer is not JSON: {e}")))?;
    let url = v
        .get("presignedUrl")
        .and_then(Value::as_str)
        .ok_or_else(|| ProxyError::UpstreamError("GetDocumentContent answer has no presignedUrl".into()))?;
    let own = s3_location_of_url(url).is_some_and(|loc| PrefixSet::new(prefixes).allows_uri(&loc));
    if !own {
        return Err(ProxyError::LocationNotAllowed(
            "the document is not stored under an allowed source prefix of this tenant".into(),
        ));
    }
    serde_json::to_vec(&v).map_err(|e| ProxyError::UpstreamError(e.to_string()))
}

/// The `s3://bucket/key` an S3 HTTPS URL points to: virtual-hosted
/// (`https://BUCKET.s3.REGION.amazonaws.com/KEY`, `BUCKET.s3.amazonaws.com`,
/// `BUCKET.s3-REGION...`) or path style (`https://s3.REGION.amazonaws.com/BUCKET/KEY`);
/// the query (the signature) is ignored and the key percent-decoded once.
/// Anything else (another scheme or host, a port, userinfo, an empty
/// bucket or key, invalid UTF-8) is `None`.
pub fn s3_location_of_url(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    if !scheme.eq_ignore_ascii_case("https") {
        return None;
    }
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (host, tail) = rest.split_at(end);
    if host.is_empty() || !host.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-') {
        return None;
    }
    let host = host.to_ascii_lowercase();
    let path = tail.split(['?', '#']).next().unwrap_or("");
    let path = path.strip_prefix('/')?;
    let service = host.strip_suffix(".amazonaws.com").or_else(|| host.strip_suffix(".amazonaws.com.cn"))?;
    let (bucket, key) = if service == "s3" || service.starts_with("s3.") || service.starts_with("s3-") {
        path.split_once('/')?
    } else {
        let at = [".s3.", ".s3-"].iter().filter_map(|m| service.rfind(m)).max().or_else(|| {
            service.strip_suffix(".s3").map(|b| b.len())
        })?;
        (&service[..at], path)
    };
    let key = percent_encoding::percent_decode_str(key).decode_utf8().ok()?;
    if bucket.is_empty() || key.is_empty() || bucket.contains('%') {
        return None;
    }
    Some(format!("s3://{bucket}/{key}"))
}

/// GenerateQuery's knowledge base (its id, from the ARN), decided by the
/// allowlist.
pub(crate) fn generate_query_kb<'v>(ctx: &Ctx<'_>, v: Option<&'v Value>) -> Result<&'v str, ProxyError> {
    let id = generate_query_kb_id(v)?;
    kb_allowed(ctx, id)?;
    Ok(id)
}

/// GenerateQuery's knowledge base id (from the ARN), not yet decided.
fn generate_query_kb_id(v: Option<&Value>) -> Result<&str, ProxyError> {
    let arn = v
        .and_then(|v| v.pointer(GENERATE_QUERY_KB))
        .ok_or_else(|| {
            ProxyError::InvalidParameter(
                "transformationConfiguration.textToSqlConfiguration.knowledgeBaseConfiguration.knowledgeBaseArn is required".into(),
            )
        })?
        .as_str()
        .ok_or_else(|| ProxyError::InvalidParameter("knowledgeBaseArn must be a string".into()))?;
    let id = knowledge_base_id_of_arn(arn).ok_or_else(|| {
        ProxyError::InvalidParameter(format!(
            "knowledgeBaseArn {:?} is not a knowledge base ARN (arn:aws:bedrock:REGION:ACCOUNT:knowledge-base/ID)",
            decide::truncate(arn, 200)
        ))
    })?;
    Ok(id)
}

/// GenerateQuery's request, forwarded as judged; returns the knowledge base.
/// The knowledge base goes into `resource` (the audit record's) before it
/// is decided, so a denial names it too.
pub(crate) fn rewrite_generate_query(ctx: &Ctx<'_>, body: RequestBody, resource: &mut Option<String>) -> Result<Bytes, ProxyError> {
    let v = body.tree()?;
    let kb = generate_query_kb_id(Some(&v))?;
    *resource = Some(kb.to_string());
    kb_allowed(ctx, kb)?;
    to_bytes(&v)
}

/// `arn:aws(-cn|-us-gov):bedrock:REGION:ACCOUNT:knowledge-base/ID` -> `ID`.
pub fn knowledge_base_id_of_arn(arn: &str) -> Option<&str> {
    let parts: Vec<&str> = arn.split(':').collect();
    let [a, partition, service, region, account, resource] = parts.as_slice() else { return None };
    let id = resource.strip_prefix("knowledge-base/")?;
    let ok = *a == "arn"
        && matches!(*partition, "aws" | "aws-cn" | "aws-us-gov")
        && *service == "bedrock"
        && region.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && account.len() == 12
        && account.bytes().all(|b| b.is_ascii_digit())
        && !id.is_empty()
        && id.bytes().all(|b| b.is_ascii_alphanumeric());
    ok.then_some(id)
}

#[cfg(test)]
#[path = "kb_documents_tests.rs"]
mod tests;
