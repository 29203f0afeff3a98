//! The simulator's request classification (which service and operation a
//! path names, and so which SigV4 signing name its credential scope must
//! carry) and credential checks (signature, scope, session token).

use super::sigv4_check::{SigError, SigV4Verifier};
use super::sim_sts::{self, Sessions};
use super::{sim_agent, sim_bedrock, sim_sagemaker};
use std::sync::RwLock;
use std::time::SystemTime;

/// What a request's path asks for.
pub enum Target {
    Sts,
    Bedrock(String, sim_bedrock::Op),
    Agent(sim_agent::Op),
    SageMaker(String),
    Unknown,
}

impl Target {
    pub fn classify(method: &http::Method, path: &str, query: Option<&str>, headers: &http::HeaderMap) -> Target {
        if method == http::Method::GET {
            if let Some((arn, op)) = sim_bedrock::route_get(path) {
                return Target::Bedrock(arn, op);
            }
            if let Some(op) = sim_agent::route_get(path, query) {
                return Target::Agent(op);
            }
            return Target::Unknown;
        }
        if method != http::Method::POST {
            return Target::Unknown;
        }
        if sim_sts::is_sts_request(method, path, headers) {
            Target::Sts
        } else if let Some((model, op)) = sim_bedrock::route(path) {
            Target::Bedrock(model, op)
        } else if let Some(op) = sim_agent::route(path) {
            Target::Agent(op)
        } else if let Some(name) = sim_sagemaker::route(path) {
            Target::SageMaker(name)
        } else {
            Target::Unknown
        }
    }

    /// The SigV4 signing name the credential scope must carry.
    pub fn signing_name(&self) -> Option<&'static str> {
        match self {
            Target::Sts => Some("sts"),
            Target::Bedrock(..) | Target::Agent(_) => Some("bedrock"),
            Target::SageMaker(_) => Some("sagemaker"),
            Target::Unknown => None,
        }
    }

    pub fn operation(&self) -> &'static str {
        match self {
            Target::Sts => "AssumeRole",
            Target::Bedrock(_, op) => op.name(),
            Target::Agent(op) => op.name(),
            Target::SageMaker(_) => "InvokeEndpoint",
            Target::Unknown => "unknown",
        }
    }

    pub fn resource(&self) -> Option<String> {
        match self {
            Target::Bedrock(model, _) => Some(model.clone()),
            Target::Agent(op) => Some(op.resource()),
            Target::SageMaker(name) => Some(name.clone()),
            Target::Sts | Target::Unknown => None,
        }
    }
}

/// Why AWS refused a request's credentials, in both error dialects.
pub struct Refusal {
    pub status: u16,
    /// restJson1 `x-amzn-ErrorType` (Bedrock, SageMaker).
    pub aws_type: &'static str,
    /// Query protocol `<Code>` (STS).
    pub sts_code: &'static str,
    pub message: String,
}

impl From<SigError> for Refusal {
    fn from(e: SigError) -> Refusal {
        let sts_code = match e {
            SigError::MissingAuthorization => "MissingAuthenticationToken",
            SigError::Malformed(_) => "IncompleteSignature",
            SigError::UnknownAccessKey(_) => "InvalidClientTokenId",
            SigError::Expired | SigError::Mismatch => "SignatureDoesNotMatch",
        };
        Refusal {
            status: 403,
            aws_type: e.aws_type(),
            sts_code,
            message: e.message(),
        }
    }
}

/// The signature, its scope's service, and the session token of a
/// temporary key; STS takes long-term keys only, and keys configured as
/// assume-role-only call nothing but STS.
pub fn check_signature(
    verifier: &RwLock<SigV4Verifier>,
    sts: &Sessions,
    parts: &http::request::Parts,
    path: &str,
    body: &[u8],
    target: &Target,
    now: SystemTime,
) -> Result<(), Refusal> {
    let verified = match verifier.read() {
        Ok(v) => v.verify(parts.method.as_str(), path, &parts.headers, body, now)?,
        Err(_) => return Err(SigError::Mismatch.into()),
    };
    if let Some(want) = target.signing_name() {
        if verified.service != want {
            return Err(Refusal {
                status: 403,
                aws_type: "InvalidSignatureException",
                sts_code: "SignatureDoesNotMatch",
                message: format!("Credential should be scoped to correct service: '{want}'."),
            });
        }
    }
    let akid = &verified.access_key_id;
    if !matches!(target, Target::Sts) && sts.is_assume_role_only(akid) {
        return Err(Refusal {
            status: 403,
            aws_type: "AccessDeniedException",
            sts_code: "AccessDenied",
            message: format!(
                "{akid} may call sts:AssumeRole only, not {}",
                target.operation()
            ),
        });
    }
    if matches!(target, Target::Sts) && sts.is_temporary(akid) {
        return Err(Refusal {
            status: 403,
            aws_type: "AccessDeniedException",
            sts_code: "AccessDenied",
            message: "this simulator's STS accepts long-term keys only".into(),
        });
    }
    let token = parts
        .headers
        .get("x-amz-security-token")
        .map(|v| v.to_str().unwrap_or("\u{0}"));
    sts.check_token(akid, token, now).map_err(|e| Refusal {
        status: 403,
        aws_type: e.aws_type(),
        sts_code: match e {
            sim_sts::TokenError::Invalid => "InvalidClientTokenId",
            sim_sts::TokenError::Expired => "ExpiredToken",
        },
        message: e.message().into(),
    })
}
