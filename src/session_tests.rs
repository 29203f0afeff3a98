use super::*;

const BEDROCK_ID: &str = "3f1c2a9e-5d6b-4c8e-9a0f-1b2c3d4e5f60";

fn keys() -> SessionKeys {
    SessionKeys::new(b"0123456789abcdef0123456789abcdef")
}

fn bedrock_valid(id: &str) -> bool {
    !id.is_empty() && id.len() <= 100 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b))
}

#[test]
fn sealed_session_opens_for_its_own_tenant_and_user() {
    let k = keys();
    let sealed = k.seal_rag_session("acme", "alice", BEDROCK_ID);
    assert!(sealed.starts_with(&format!("{BEDROCK_ID}.")));
    assert_eq!(k.open_rag_session("acme", "alice", &sealed).unwrap(), BEDROCK_ID);
}

#[test]
fn sealed_session_is_a_valid_bedrock_session_id() {
    let sealed = keys().seal_rag_session("acme", "alice", BEDROCK_ID);
    assert!(bedrock_valid(&sealed), "{sealed}");
    assert_eq!(sealed.len(), 36 + 1 + 32);
}

#[test]
fn sealed_session_of_other_user_is_cross_tenant() {
    let k = keys();
    let sealed = k.seal_rag_session("acme", "alice", BEDROCK_ID);
    assert_eq!(k.open_rag_session("acme", "bob", &sealed).unwrap_err().reason(), "cross_tenant");
}

#[test]
fn sealed_session_of_other_tenant_is_cross_tenant() {
    let k = keys();
    let sealed = k.seal_rag_session("acme", "alice", BEDROCK_ID);
    assert_eq!(k.open_rag_session("globex", "alice", &sealed).unwrap_err().reason(), "cross_tenant");
}

#[test]
fn bare_bedrock_session_id_is_cross_tenant() {
    assert_eq!(keys().open_rag_session("acme", "alice", BEDROCK_ID).unwrap_err().reason(), "cross_tenant");
}

#[test]
fn malformed_or_tampered_suffixes_are_cross_tenant() {
    let k = keys();
    let sealed = k.seal_rag_session("acme", "alice", BEDROCK_ID);
    let (_, tag) = sealed.rsplit_once('.').unwrap();
    let mut flipped = tag.as_bytes().to_vec();
    flipped[0] = if flipped[0] == b'0' { b'1' } else { b'0' };
    let flipped = String::from_utf8(flipped).unwrap();
    let cases = [
        String::new(),
        ".".to_string(),
        format!(".{tag}"),
        format!("{BEDROCK_ID}."),
        format!("{BEDROCK_ID}.{}", &tag[..31]),
        format!("{BEDROCK_ID}.{tag}0"),
        format!("{BEDROCK_ID}.{}", tag.to_uppercase()),
        format!("{BEDROCK_ID}.{flipped}"),
        format!("{BEDROCK_ID}.{}", "z".repeat(32)),
        format!("other-id.{tag}"),
        format!("{sealed}.{tag}"),
        format!("{BEDROCK_ID}.é{}", &tag[2..]),
    ];
    for c in cases {
        assert_eq!(k.open_rag_session("acme", "alice", &c).unwrap_err().reason(), "cross_tenant", "{c:?}");
    }
}

#[test]
fn sealing_is_deterministic_across_replicas_with_the_same_key() {
    let a = SessionKeys::new(b"shared-key-shared-key-shared-key");
    let b = SessionKeys::new(b"shared-key-shared-key-shared-key");
    assert_eq!(a.seal_rag_session("acme", "alice", BEDROCK_ID), b.seal_rag_session("acme", "alice", BEDROCK_ID));
    assert_eq!(a.agent_session_id("acme", "alice", "s1"), b.agent_session_id("acme", "alice", "s1"));
    let sealed = a.seal_rag_session("acme", "alice", BEDROCK_ID);
    assert_eq!(b.open_rag_session("acme", "alice", &sealed).unwrap(), BEDROCK_ID);
}

#[test]
fn a_different_key_opens_nothing() {
    let sealed = keys().seal_rag_session("acme", "alice", BEDROCK_ID);
    let other = SessionKeys::new(b"another key entirely, 32 bytes!!");
    assert_eq!(other.open_rag_session("acme", "alice", &sealed).unwrap_err().reason(), "cross_tenant");
}

#[test]
fn field_framing_is_unambiguous() {
    let k = keys();
    assert_ne!(k.seal_rag_session("ab", "c", "x"), k.seal_rag_session("a", "bc", "x"));
    assert_ne!(k.agent_session_id("acme", "al", "ice"), k.agent_session_id("acme", "ali", "ce"));
    assert_ne!(k.agent_session_id("", "acme", "s"), k.agent_session_id("acme", "", "s"));
}

#[test]
fn session_ids_differ_per_tenant_and_user() {
    let k = keys();
    let base = k.agent_session_id("acme", "alice", "session-1");
    assert_ne!(base, k.agent_session_id("globex", "alice", "session-1"));
    assert_ne!(base, k.agent_session_id("acme", "bob", "session-1"));
    assert_ne!(base, k.agent_session_id("acme", "alice", "session-2"));
    assert_eq!(base, k.agent_session_id("acme", "alice", "session-1"));
}

#[test]
fn agent_session_and_memory_ids_are_valid_for_bedrock() {
    let k = keys();
    for client in ["s", "a b/c", &"x".repeat(1000), "é☃", ""] {
        let s = k.agent_session_id("acme", "alice", client);
        let m = k.agent_memory_id("acme", "alice", client);
        assert!(bedrock_valid(&s) && s.starts_with("tg-") && s.len() == 43, "{s}");
        assert!(bedrock_valid(&m) && m.starts_with("tgm-") && m.len() == 44, "{m}");
    }
}

#[test]
fn memory_ids_are_separated_from_session_ids() {
    let k = keys();
    let s = k.agent_session_id("acme", "alice", "x");
    let m = k.agent_memory_id("acme", "alice", "x");
    assert_ne!(s["tg-".len()..], m["tgm-".len()..]);
    // A RetrieveAndGenerate MAC is not an agent MAC either.
    let sealed = k.seal_rag_session("acme", "alice", "x");
    assert!(!s.ends_with(sealed.rsplit_once('.').unwrap().1));
}

#[test]
fn debug_never_prints_the_key() {
    let k = SessionKeys::new(b"super-secret-session-key-material");
    let d = format!("{k:?}");
    assert!(!d.contains("super-secret"), "{d}");
    assert_eq!(d, "SessionKeys([redacted])");
}

#[test]
fn from_env_uses_the_variable_when_set() {
    let var = "TENANTGATE_TEST_SESSION_KEY_SET_9F2A";
    std::env::set_var(var, "0123456789abcdef0123456789abcdef");
    let a = SessionKeys::from_env(var);
    std::env::remove_var(var);
    assert_eq!(a.seal_rag_session("t", "u", "id"), keys().seal_rag_session("t", "u", "id"));
}

#[test]
fn from_env_without_the_variable_is_random_per_process() {
    let var = "TENANTGATE_TEST_SESSION_KEY_UNSET_71C3";
    let a = SessionKeys::from_env(var);
    let b = SessionKeys::from_env(var);
    assert_ne!(a.seal_rag_session("t", "u", "id"), b.seal_rag_session("t", "u", "id"));
    // Still a working key.
    let sealed = a.seal_rag_session("t", "u", "id");
    assert_eq!(a.open_rag_session("t", "u", &sealed).unwrap(), "id");
}

#[test]
fn bedrock_ids_containing_dots_round_trip() {
    let k = keys();
    let sealed = k.seal_rag_session("acme", "alice", "a.b.c");
    assert_eq!(k.open_rag_session("acme", "alice", &sealed).unwrap(), "a.b.c");
}

#[test]
fn sagemaker_sessions_open_for_their_own_tenant_and_user_only() {
    let k = keys();
    let sealed = k.seal_sagemaker_session("acme", "alice", "sess.7f3a");
    assert_eq!(k.open_sagemaker_session("acme", "alice", &sealed).unwrap(), "sess.7f3a");
    for (t, u) in [("acme", "bob"), ("globex", "alice")] {
        assert_eq!(k.open_sagemaker_session(t, u, &sealed).unwrap_err().reason(), "cross_tenant");
    }
    assert_eq!(k.open_sagemaker_session("acme", "alice", "sess.7f3a").unwrap_err().reason(), "cross_tenant");
    // Labels separate the two kinds of session: one never opens as the other.
    let rag = k.seal_rag_session("acme", "alice", "sess.7f3a");
    assert!(k.open_sagemaker_session("acme", "alice", &rag).is_err());
    assert!(k.open_rag_session("acme", "alice", &sealed).is_err());
}
