//! Bodies of the operations the botocore models do not define
//! (`Operation::has_aws_model`): ChatCompletions, OpenAI's Create chat
//! completion on bedrock-runtime. The body was parsed strictly (duplicate
//! keys, node and depth caps); these rules check what the sidecar judges.

use super::{shown, Seg, ValidationError, ValidationErrorKind};
use crate::route::Operation;
use serde_json::Value;

/// Top-level members of a chat completion request that the sidecar judges
/// or relies on: a member spelled in another case must not reach a lenient
/// reader upstream unjudged.
pub(crate) const JUDGED_MEMBERS: [&str; 5] = ["model", "messages", "stream", "stream_options", "amazon-bedrock-guardrailConfig"];

pub(super) fn check(op: Operation, v: &Value) -> Result<(), ValidationError> {
    let Value::Object(obj) = v else {
        return Err(ValidationError::new(
            ValidationErrorKind::NotAnObject,
            Vec::new(),
            "the request body must be a JSON object".into(),
        ));
    };
    debug_assert_eq!(op, Operation::ChatCompletions);
    let wrong = |key: &str, message: String| ValidationError::new(ValidationErrorKind::WrongType, vec![Seg::Key(key.into())], message);
    // Two members whose names differ only in case, or a case variant of a
    // member the sidecar judges: refused, whichever copy upstream would read.
    let mut lower: Vec<String> = obj.keys().map(|k| k.to_ascii_lowercase()).collect();
    lower.sort_unstable();
    if let Some(w) = lower.windows(2).find(|w| w[0] == w[1]) {
        return Err(ValidationError::new(
            ValidationErrorKind::DuplicateKey,
            vec![Seg::Key(w[0].clone())],
            "members whose names differ only in case are not accepted".into(),
        ));
    }
    for k in obj.keys() {
        if let Some(m) = JUDGED_MEMBERS.iter().find(|m| m.eq_ignore_ascii_case(k) && **m != k.as_str()) {
            return Err(ValidationError::new(
                ValidationErrorKind::WrongType,
                vec![Seg::Key(k.clone())],
                format!("unknown member {:?}: the member is spelled `{m}`", shown(k)),
            ));
        }
    }
    match obj.get("model") {
        Some(Value::String(_)) => {}
        None => return Err(wrong("model", "model is required".into())),
        Some(_) => return Err(wrong("model", "model must be a string".into())),
    }
    match obj.get("messages") {
        Some(Value::Array(_)) => {}
        None => return Err(wrong("messages", "messages is required".into())),
        Some(_) => return Err(wrong("messages", "messages must be an array".into())),
    }
    if obj.get("stream").is_some_and(|s| !s.is_boolean()) {
        return Err(wrong("stream", "stream must be a boolean".into()));
    }
    if let Some(so) = obj.get("stream_options") {
        let Value::Object(so) = so else {
            return Err(wrong("stream_options", "stream_options must be an object".into()));
        };
        if so.get("include_usage").is_some_and(|b| !b.is_boolean()) {
            return Err(wrong("stream_options", "stream_options.include_usage must be a boolean".into()));
        }
    }
    Ok(())
}
