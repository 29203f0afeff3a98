//! Asynchronous invocations (docs/reference.md §5.1, §16; docs/model-calls.md,
//! "Asynchronous invocations"): StartAsyncInvoke (`POST /async-invoke`),
//! GetAsyncInvoke (`GET /async-invoke/{invocationArn}`) and ListAsyncInvokes
//! (`GET /async-invoke`).
//!
//! AWS keeps async jobs per account, not per tenant: any caller can read or
//! list every job, and an idempotency token returns the job it first
//! started. The tenant's jobs are the ones writing under its rendered
//! `async_invoke.output_prefix`; without one the three operations are
//! refused for the tenant (403 `operation_not_allowed`).
//!
//! StartAsyncInvoke, before and after (tenant acme, user alice,
//! `output_prefix = "s3://media-out/{tenant}/"`, `kms_key_id = "arn:..:key/K"`,
//! no `bucket_owner`, `tags = { TenantID = "{tenant}" }`,
//! `model_map = { "amazon.nova-reel-v1:0" = "arn:..:application-inference-profile/acme-reel" }`):
//!
//! ```text
//! {"modelId":"amazon.nova-reel-v1:0","modelInput":{..},
//!  "outputDataConfig":{"s3OutputDataConfig":{"s3Uri":"s3://media-out/acme/v1/","kmsKeyId":"arn:..:key/OTHER","bucketOwner":"444455556666"}},
//!  "clientRequestToken":"t-1","tags":[{"key":"TenantID","value":"globex"},{"key":"app","value":"x"}]}
//! ->
//! {"modelId":"arn:..:application-inference-profile/acme-reel","modelInput":{..},
//!  "outputDataConfig":{"s3OutputDataConfig":{"s3Uri":"s3://media-out/acme/v1/","kmsKeyId":"arn:..:key/K"}},
//!  "clientRequestToken":"tga-<40 hex: MAC(acme, alice, t-1)>","tags":[{"key":"app","value":"x"},{"key":"TenantID","value":"acme"}]}
//! ```
//!
//! `modelInput` is a document (the model's own request) and gets no
//! guardrail: Bedrock has none for async invocations.
//!
//! GetAsyncInvoke and ListAsyncInvokes: the answer is buffered and judged
//! (`Post::AsyncJob`, `Post::AsyncJobs`): a job whose output is not under the
//! prefix is 403 `location_not_allowed` (Get) or left out of the page
//! (List, counted in `x-tenantgate-dropped-results`); `nextToken` passes
//! unchanged, so a page may hold fewer entries than `maxResults`, or none,
//! while a `nextToken` is present.

use super::{missing_claim, to_bytes, Ctx, Hooks, Notes, PolicyQuestion, RequestBody};
use crate::aws::credentials::TenantCredentials;
use crate::decide::cedar::PolicyResource;
use crate::decide::{self, model_map, Resource};
use crate::error::ProxyError;
use crate::post::Post;
use crate::route::{Operation, Target};
use bytes::Bytes;
use http::HeaderMap;
use serde_json::{Map, Value};

/// The async-invoke family.
pub struct AsyncJobs;

impl Hooks for AsyncJobs {
    /// The tenant must have an output prefix (it must render); GetAsyncInvoke's
    /// ARN must be an async invocation ARN.
    fn authorize(ctx: &Ctx<'_>, target: &Target) -> Result<(), ProxyError> {
        decide::output_prefix(&ctx.request())?;
        match (ctx.op, target) {
            (Operation::GetAsyncInvoke, Target::AsyncInvocation(arn)) => check_invocation_arn(arn),
            (Operation::StartAsyncInvoke | Operation::ListAsyncInvokes, Target::Nothing) => Ok(()),
            _ => Err(super::foreign_target(ctx)),
        }
    }

    /// ListAsyncInvokes: each parameter at most once, each value as the
    /// model defines it; forwarded as sent.
    fn rewrite_query(ctx: &Ctx<'_>, _target: &mut Target, query: &mut Option<String>) -> Result<(), ProxyError> {
        match query.as_deref() {
            Some(q) if ctx.op == Operation::ListAsyncInvokes => check_list_query(q),
            // The other two define no query parameter (the validator
            // refused any name); an empty `?` adds nothing.
            _ => Ok(()),
        }
    }

    fn rewrite(
        ctx: &Ctx<'_>,
        _target: &mut Target,
        _headers: &mut HeaderMap,
        body: RequestBody,
        _creds: &TenantCredentials,
        notes: &mut Notes,
    ) -> Result<(Bytes, Post), ProxyError> {
        let prefixes = decide::output_prefix(&ctx.request())?;
        match ctx.op {
            Operation::StartAsyncInvoke => {
                let mut v = body.tree()?;
                // The audit record names the model asked for, denied too.
                notes.resource = v.get("modelId").and_then(Value::as_str).map(String::from);
                let (model, upstream) = rewrite_start(ctx, &mut v)?;
                notes.resource = Some(model);
                notes.upstream_resource = upstream;
                Ok((to_bytes(&v)?, Post::Stream))
            }
            Operation::GetAsyncInvoke => Ok((body.bytes, Post::AsyncJob { prefixes })),
            Operation::ListAsyncInvokes => Ok((body.bytes, Post::AsyncJobs { prefixes })),
            _ => Err(super::foreign_target(ctx)),
        }
    }

    /// StartAsyncInvoke: its model (the allowlist first); Get: the
    /// invocation; List: an invocation without id.
    fn policy_question<'a>(
        ctx: &Ctx<'_>,
        target: &'a Target,
        _headers: &'a HeaderMap,
        body: &'a RequestBody,
    ) -> Result<PolicyQuestion<'a>, ProxyError> {
        let resource = match (ctx.op, target) {
            (Operation::StartAsyncInvoke, _) => {
                let m = body
                    .json
                    .as_ref()
                    .and_then(|v| v.get("modelId"))
                    .and_then(Value::as_str)
                    .ok_or_else(|| ProxyError::InvalidParameter("modelId is required".into()))?;
                ctx.decide(Resource::Model(m))?;
                PolicyResource::Model(m)
            }
            (Operation::GetAsyncInvoke, Target::AsyncInvocation(arn)) => PolicyResource::AsyncInvocation(Some(arn)),
            (Operation::ListAsyncInvokes, _) => PolicyResource::AsyncInvocation(None),
            _ => return Err(super::foreign_target(ctx)),
        };
        Ok(PolicyQuestion::of(resource))
    }
}

/// AWS's `InvocationArn` pattern:
/// `arn:aws(-[^:]+)?:bedrock:[a-z0-9-]{1,20}:[0-9]{12}:async-invoke/[a-z0-9]{12}`.
pub fn is_invocation_arn(arn: &str) -> bool {
    let parts: Vec<&str> = arn.split(':').collect();
    let [arn_word, partition, service, region, account, resource] = parts.as_slice() else { return false };
    let partition_ok = *partition == "aws"
        || partition.strip_prefix("aws-").is_some_and(|p| !p.is_empty());
    let region_ok = (1..=20).contains(&region.len())
        && region.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    let id_ok = resource.strip_prefix("async-invoke/").is_some_and(|id| {
        id.len() == 12 && id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    });
    *arn_word == "arn"
        && partition_ok
        && *service == "bedrock"
        && region_ok
        && account.len() == 12
        && account.bytes().all(|b| b.is_ascii_digit())
        && id_ok
}

fn check_invocation_arn(arn: &str) -> Result<(), ProxyError> {
    if is_invocation_arn(arn) {
        return Ok(());
    }
    Err(ProxyError::InvalidParameter(format!(
        "invocationArn {:?} is not an async invocation ARN (arn:aws:bedrock:REGION:ACCOUNT:async-invoke/ID)",
        decide::truncate(arn, 200)
    )))
}

/// ListAsyncInvokes' query parameters (the validator already refused
/// names the model does not define).
fn check_list_query(q: &str) -> Result<(), ProxyError> {
    super::query::for_each_pair(q, |name, value| {
        let ok = super::query::paging_value_ok(name, value).unwrap_or_else(|| match name {
            "sortBy" => value == "SubmissionTime",
            "sortOrder" => matches!(value, "Ascending" | "Descending"),
            "statusEquals" => matches!(value, "InProgress" | "Completed" | "Failed"),
            "submitTimeAfter" | "submitTimeBefore" => {
                !value.is_empty()
                    && value.len() <= 64
                    && value.bytes().all(|b| b.is_ascii_digit() || matches!(b, b'-' | b':' | b'.' | b'T' | b'Z' | b'+'))
            }
            _ => false,
        });
        if ok {
            Ok(())
        } else {
            Err(super::query::value_not_allowed(name, value, "the AWS model of ListAsyncInvokes"))
        }
    })
}

/// StartAsyncInvoke's body for this tenant (see the module doc). Returns the
/// model as requested and, when `model_map` changed it, the model called.
fn rewrite_start(ctx: &Ctx<'_>, v: &mut Value) -> Result<(String, Option<String>), ProxyError> {
    let cfg = &ctx.policy.async_invoke;
    // Render everything first: a missing claim leaves nothing half done.
    let kms = cfg.kms_key_id.as_ref().map(|t| t.render(ctx.principal)).transpose().map_err(missing_claim)?;
    let mut tags = Vec::with_capacity(cfg.tags.len());
    for (k, t) in &cfg.tags {
        tags.push((k.clone(), t.render(ctx.principal).map_err(missing_claim)?));
    }
    let obj = super::body_object(v)?;
    let model = obj
        .get("modelId")
        .and_then(Value::as_str)
        .ok_or_else(|| ProxyError::InvalidParameter("modelId is required".into()))?
        .to_string();
    ctx.decide(Resource::Model(&model))?;
    let upstream = model_map::upstream_model(ctx.policy, ctx.principal, &model)?;
    let s3 = obj
        .get_mut("outputDataConfig")
        .and_then(|o| o.get_mut("s3OutputDataConfig"))
        .and_then(Value::as_object_mut)
        .ok_or_else(|| ProxyError::InvalidParameter("outputDataConfig.s3OutputDataConfig is required".into()))?;
    let uri = s3
        .get("s3Uri")
        .and_then(Value::as_str)
        .ok_or_else(|| ProxyError::InvalidParameter("outputDataConfig.s3OutputDataConfig.s3Uri is required".into()))?;
    ctx.decide(Resource::OutputLocation(uri))?;
    force(s3, "kmsKeyId", kms);
    force(s3, "bucketOwner", cfg.bucket_owner.clone());
    if let Some(token) = obj.get("clientRequestToken") {
        let token = token
            .as_str()
            .ok_or_else(|| ProxyError::InvalidParameter("clientRequestToken must be a string".into()))?;
        let namespaced = ctx.keys.async_invoke_token(&ctx.principal.tenant, &ctx.principal.user, token);
        obj.insert("clientRequestToken".into(), Value::String(namespaced));
    }
    if !tags.is_empty() {
        let list = match obj.entry("tags").or_insert_with(|| Value::Array(Vec::new())) {
            Value::Array(a) => a,
            _ => return Err(ProxyError::InvalidParameter("tags must be a list".into())),
        };
        list.retain(|t| !t.get("key").and_then(Value::as_str).is_some_and(|k| tags.iter().any(|(tk, _)| tk == k)));
        for (k, val) in tags {
            let mut tag = Map::new();
            tag.insert("key".into(), Value::String(k));
            tag.insert("value".into(), Value::String(val));
            list.push(Value::Object(tag));
        }
    }
    let changed = (upstream != model).then(|| upstream.clone());
    obj.insert("modelId".into(), Value::String(upstream));
    Ok((model, changed))
}

/// The tenant's value of an output member, or none: the client's never goes.
fn force(s3: &mut Map<String, Value>, key: &str, value: Option<String>) {
    match value {
        Some(v) => {
            s3.insert(key.into(), Value::String(v));
        }
        None => {
            s3.remove(key);
        }
    }
}

/// True when a job (GetAsyncInvoke's answer, or one ListAsyncInvokes
/// summary) writes under one of `prefixes`.
pub fn job_is_tenants(job: &Value, prefixes: &[String]) -> bool {
    job.pointer("/outputDataConfig/s3OutputDataConfig/s3Uri")
        .and_then(Value::as_str)
        .is_some_and(|uri| {
            !uri.strip_prefix("s3://").is_none_or(|rest| rest.contains("//"))
                && crate::filter::uri::PrefixSet::new(prefixes).allows_uri(uri)
        })
}

/// GetAsyncInvoke's answer, re-serialised from the tree judged (a
/// duplicated key cannot show the client another job), when the job is the
/// tenant's; else 403 `location_not_allowed` (nothing of the job is
/// returned).
pub fn filter_job(body: &[u8], prefixes: &[String]) -> Result<Vec<u8>, ProxyError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| ProxyError::UpstreamError(format!("GetAsyncInvoke answer is not JSON: {e}")))?;
    if job_is_tenants(&v, prefixes) {
        serde_json::to_vec(&v).map_err(|e| ProxyError::UpstreamError(e.to_string()))
    } else {
        Err(ProxyError::LocationNotAllowed("the async invocation does not write under this tenant's output prefix".into()))
    }
}

/// ListAsyncInvokes' page with only the tenant's jobs (re-serialised from
/// the tree judged), and how many were left out. `nextToken` and every
/// other member pass unchanged.
pub fn filter_jobs(body: &[u8], prefixes: &[String]) -> Result<(Vec<u8>, u64), ProxyError> {
    let mut v: Value = serde_json::from_slice(body)
        .map_err(|e| ProxyError::UpstreamError(format!("ListAsyncInvokes answer is not JSON: {e}")))?;
    if !v.is_object() {
        return Err(ProxyError::UpstreamError("ListAsyncInvokes answer is not a JSON object".into()));
    }
    let mut dropped = 0;
    match v.get_mut("asyncInvokeSummaries") {
        None => {}
        Some(Value::Array(items)) => {
            let before = items.len();
            items.retain(|job| job_is_tenants(job, prefixes));
            dropped = (before - items.len()) as u64;
        }
        Some(_) => return Err(ProxyError::UpstreamError("ListAsyncInvokes asyncInvokeSummaries is not a list".into())),
    }
    let out = serde_json::to_vec(&v).map_err(|e| ProxyError::UpstreamError(e.to_string()))?;
    Ok((out, dropped))
}

#[cfg(test)]
#[path = "async_jobs_tests.rs"]
mod tests;
