use super::*;
use crate::route::Operation;
use crate::session::SessionKeys;
use crate::test_support::*;
use serde_json::json;

fn keys() -> SessionKeys {
    SessionKeys::new(b"agent-tests-agent-tests-agent-te")
}

fn rewrite(op: Operation, who: &crate::principal::Principal, q: Option<&str>) -> Result<MemoryQuery, ProxyError> {
    let (policy, keys) = (policy(), keys());
    rewrite_memory_query(&Ctx::new(op, who, &policy, &keys), q)
}

#[test]
fn memory_id_is_namespaced_and_the_rest_kept() {
    let q = rewrite(Operation::GetAgentMemory, &alice(), Some("maxItems=5&memoryId=alice-mem&memoryType=SESSION_SUMMARY&nextToken=a%2Fb")).unwrap();
    let up = keys().agent_memory_id("acme", "alice", "alice-mem");
    assert_eq!(q.query, format!("maxItems=5&memoryId={up}&memoryType=SESSION_SUMMARY&nextToken=a%2Fb"));
    assert_eq!((q.client_memory_id.as_str(), q.upstream_memory_id.as_str()), ("alice-mem", up.as_str()));
    assert!(up.starts_with("tgm-"));
}

#[test]
fn the_same_memory_id_of_two_users_goes_to_two_ids() {
    let a = rewrite(Operation::GetAgentMemory, &alice(), Some("memoryId=shared")).unwrap();
    let mut bob = alice();
    bob.user = "bob".into();
    let b = rewrite(Operation::GetAgentMemory, &bob, Some("memoryId=shared")).unwrap();
    let mut other = alice();
    other.tenant = "globex".into();
    let c = rewrite(Operation::GetAgentMemory, &other, Some("memoryId=shared")).unwrap();
    assert_ne!(a.upstream_memory_id, b.upstream_memory_id);
    assert_ne!(a.upstream_memory_id, c.upstream_memory_id);
    assert_ne!(b.upstream_memory_id, c.upstream_memory_id);
}

#[test]
fn delete_session_id_is_namespaced_as_invoke_agent_does() {
    let q = rewrite(Operation::DeleteAgentMemory, &alice(), Some("memoryId=m1&sessionId=chat-42")).unwrap();
    let k = keys();
    assert_eq!(
        q.query,
        format!("memoryId={}&sessionId={}", k.agent_memory_id("acme", "alice", "m1"), k.agent_session_id("acme", "alice", "chat-42"))
    );
}

#[test]
fn missing_repeated_or_malformed_ids_are_400() {
    for (op, q) in [
        (Operation::GetAgentMemory, None),
        (Operation::GetAgentMemory, Some("")),
        (Operation::GetAgentMemory, Some("memoryType=SESSION_SUMMARY")),
        (Operation::DeleteAgentMemory, Some("sessionId=chat-42")),
        (Operation::DeleteAgentMemory, None),
        (Operation::GetAgentMemory, Some("memoryId=a&memoryId=b")),
        (Operation::GetAgentMemory, Some("memoryId=a&memory%49d=b")),
        (Operation::GetAgentMemory, Some("memoryId=a%2Fb")),
        (Operation::GetAgentMemory, Some("memoryId=a+b")),
        (Operation::GetAgentMemory, Some("memoryId=")),
        (Operation::GetAgentMemory, Some("memoryId")),
        (Operation::GetAgentMemory, Some("memoryId=x")),
        (Operation::GetAgentMemory, Some("memoryId=%FF%FE")),
        (Operation::DeleteAgentMemory, Some("memoryId=m1&sessionId=a%20b")),
        (Operation::DeleteAgentMemory, Some("memoryId=m1&sessionId=s1&sessionId=s2")),
    ] {
        let e = rewrite(op, &alice(), q).unwrap_err();
        assert_eq!(e.reason(), "invalid_parameter", "{q:?}");
    }
    let long = format!("memoryId={}", "a".repeat(101));
    assert_eq!(rewrite(Operation::GetAgentMemory, &alice(), Some(&long)).unwrap_err().reason(), "invalid_parameter");
}

#[test]
fn summaries_of_another_memory_are_dropped() {
    let body = json!({"memoryContents": [
        {"sessionSummary": {"memoryId": "tgm-mine", "sessionId": "tg-1", "summaryText": "mine"}},
        {"sessionSummary": {"memoryId": "tgm-other", "sessionId": "tg-2", "summaryText": "theirs"}},
        {"sessionSummary": {"sessionId": "tg-3", "summaryText": "no id"}},
        {"sessionSummary": {"memoryId": "tgm-mine", "summaryText": "mine too"}, "somethingElse": {}},
        {"unknownKind": {"memoryId": "tgm-mine"}},
        {"sessionSummary": {"memoryId": "tgm-mine", "sessionId": "tg-4", "summaryText": "mine 2"}}
    ], "nextToken": "n"});
    let (out, dropped) = filter_memory_response(&Bytes::from(body.to_string()), "tgm-mine", "alice-mem").unwrap();
    let v: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(dropped, 4);
    assert_eq!(
        v,
        json!({"memoryContents": [
            {"sessionSummary": {"memoryId": "alice-mem", "sessionId": "tg-1", "summaryText": "mine"}},
            {"sessionSummary": {"memoryId": "alice-mem", "sessionId": "tg-4", "summaryText": "mine 2"}}
        ], "nextToken": "n"})
    );
    let (out, dropped) = filter_memory_response(&Bytes::from_static(b"{}"), "tgm-mine", "m").unwrap();
    assert_eq!((&out[..], dropped), (&b"{}"[..], 0));
    for bad in [&b"nope"[..], b"[]", br#"{"memoryContents": {}}"#] {
        let e = filter_memory_response(&Bytes::copy_from_slice(bad), "tgm-mine", "m").unwrap_err();
        assert_eq!(e.reason(), "upstream_error");
    }
}
