//! Response filtering (the `filter` stage of the pipeline): what comes back
//! from upstream is checked and rewritten for the tenant before the client
//! sees it.
//!
//! - [`chunks`]: knowledge-base results and citations from outside the
//!   tenant's `allowed_source_prefixes` (docs/reference.md §5.2).
//! - [`uri`]: the canonical prefix matching behind it.
//! - [`encoding`]: answers in a content coding are decoded before inspection.
//! - [`seal_rag_response_session`]: the RetrieveAndGenerate `sessionId`
//!   handed to the client is bound to its tenant and user.

pub mod chunks;
pub mod encoding;
pub mod eventstream;
pub mod redact;
pub mod uri;

use crate::principal::Principal;
use crate::session::SessionKeys;
use serde_json::Value;

/// RetrieveAndGenerate response: replaces Bedrock's `sessionId` with the
/// sealed form for this principal (docs/reference.md §5.2). Returns true when a session id
/// was sealed; a body without a string `sessionId` is left as it is.
///
/// ```text
/// {"output": {"text": "..."}, "citations": [...], "sessionId": "3f1c2a9e-5d6b-4c8e-9a0f-1b2c3d4e5f60"}
/// ->
/// {"output": {"text": "..."}, "citations": [...], "sessionId": "3f1c2a9e-5d6b-4c8e-9a0f-1b2c3d4e5f60.9b1e0c6f5a7d4e2b8c3f1a0d9e8b7c6a"}
/// ```
///
/// For RetrieveAndGenerateStream the id travels in the
/// `x-amzn-bedrock-knowledge-base-session-id` response header: seal it with
/// `SessionKeys::seal_rag_session` directly.
pub fn seal_rag_response_session(body: &mut Value, principal: &Principal, keys: &SessionKeys) -> bool {
    match body.get_mut("sessionId") {
        Some(Value::String(id)) => {
            *id = keys.seal_rag_session(&principal.tenant, &principal.user, id);
            true
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::alice;
    use serde_json::json;

    #[test]
    fn response_session_is_sealed_for_the_principal_and_opens_for_it_only() {
        let keys = SessionKeys::new(b"k-k-k-k-k-k-k-k-k-k-k-k-k-k-k-k-");
        let mut body = json!({"output": {"text": "hi"}, "sessionId": "sess-1", "citations": []});
        assert!(seal_rag_response_session(&mut body, &alice(), &keys));
        let sealed = body["sessionId"].as_str().unwrap().to_string();
        assert!(sealed.starts_with("sess-1."));
        assert_eq!(keys.open_rag_session("acme", "alice", &sealed).unwrap(), "sess-1");
        assert_eq!(keys.open_rag_session("acme", "bob", &sealed).unwrap_err().reason(), "cross_tenant");
        assert_eq!(body["output"]["text"], "hi");
    }

    #[test]
    fn response_without_a_session_id_is_untouched() {
        let keys = SessionKeys::new(b"k");
        for mut body in [json!({"output": {}}), json!({"sessionId": 5}), json!([1]), json!(null)] {
            let before = body.clone();
            assert!(!seal_rag_response_session(&mut body, &alice(), &keys));
            assert_eq!(body, before);
        }
    }
}
