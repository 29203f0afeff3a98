//! Malformed input never panics: random JSON built from the vocabulary of
//! the request and response shapes (so the walkers go deep) is fed to every
//! rewrite and filter function, and random subtrees of valid bodies are
//! replaced by random values.

use crate::filter::chunks::{
    citation_event_is_clean, citation_event_payload_is_clean, filter_retrieve_response, rag_answer_is_clean,
    SourceFilter,
};
use crate::family::agents::rewrite_invoke_agent;
use crate::family::knowledge_bases::{rewrite_retrieve, rewrite_retrieve_and_generate};
use crate::session::SessionKeys;
use crate::family::Ctx;
use crate::route::Operation;
use crate::test_support::{alice, policy};
use serde_json::{json, Map, Value};

const KEYS: &[&str] = &[
    "retrievalConfiguration",
    "vectorSearchConfiguration",
    "filter",
    "andAll",
    "orAll",
    "equals",
    "in",
    "notIn",
    "key",
    "value",
    "rerankingConfiguration",
    "type",
    "bedrockRerankingConfiguration",
    "modelConfiguration",
    "modelArn",
    "implicitFilterConfiguration",
    "retrieveAndGenerateConfiguration",
    "knowledgeBaseConfiguration",
    "knowledgeBaseId",
    "externalSourcesConfiguration",
    "sources",
    "sourceType",
    "s3Location",
    "uri",
    "url",
    "byteContent",
    "sessionId",
    "sessionState",
    "sessionAttributes",
    "promptSessionAttributes",
    "memoryId",
    "knowledgeBaseConfigurations",
    "files",
    "source",
    "retrievalResults",
    "location",
    "webLocation",
    "customDocumentLocation",
    "id",
    "sqlLocation",
    "citations",
    "retrievedReferences",
    "citation",
    "userJWT",
];
const STRINGS: &[&str] = &[
    "",
    "KNOWLEDGE_BASE",
    "EXTERNAL_SOURCES",
    "BEDROCK_RERANKING_MODEL",
    "S3",
    "WEB",
    "CUSTOM",
    "SQL",
    "BYTE_CONTENT",
    "KBPOOLED01",
    "anthropic.claude-3-haiku-20240307-v1:0",
    "s3://docs/tenants/acme/x",
    "s3://docs/tenants/acme/../globex",
    "s3://docs/tenants/acme/%2e%2e/x",
    "https://a@b/c",
    "%",
    "%%2",
    "\u{0}",
    "é",
    "tenant_id",
    "{tenant}",
    "x.y",
    "..",
    "/",
];

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn value(&mut self, depth: usize) -> Value {
        let kinds = if depth == 0 { 5 } else { 7 };
        match self.below(kinds) {
            0 => Value::Null,
            1 => json!(self.below(2) == 0),
            2 => json!(self.next() as i64),
            3 | 4 => json!(STRINGS[self.below(STRINGS.len())]),
            5 => Value::Array((0..self.below(4)).map(|_| self.value(depth - 1)).collect()),
            _ => {
                let mut m = Map::new();
                for _ in 0..self.below(4) {
                    m.insert(KEYS[self.below(KEYS.len())].to_string(), self.value(depth - 1));
                }
                Value::Object(m)
            }
        }
    }
    /// Replaces one random subtree of `v` with a random value.
    fn mutate(&mut self, v: &mut Value) {
        let replace = self.below(4) == 0;
        match v {
            Value::Object(m) if !m.is_empty() && !replace => {
                let k = m.keys().nth(self.below(m.len())).cloned().unwrap_or_default();
                if let Some(child) = m.get_mut(&k) {
                    self.mutate(child);
                }
            }
            Value::Array(a) if !a.is_empty() && !replace => {
                let i = self.below(a.len());
                self.mutate(&mut a[i]);
            }
            _ => *v = self.value(4),
        }
    }
}

struct Fixture {
    pol: crate::config::TenantPolicy,
    keys: SessionKeys,
    p: crate::principal::Principal,
    prefixes: Vec<String>,
}

fn fixture() -> Fixture {
    Fixture {
        pol: policy(),
        keys: SessionKeys::new(b"robustness-robustness-robustness"),
        p: alice(),
        prefixes: vec!["s3://docs/tenants/acme/".to_string()],
    }
}

fn exercise(f: &Fixture, body: &Value) {
    let Fixture { pol, keys, p, prefixes } = f;
    let _ = rewrite_retrieve(&Ctx::new(Operation::Retrieve, p, pol, keys), &mut body.clone(), "KBPOOLED01");
    let _ = rewrite_retrieve_and_generate(&Ctx::new(Operation::RetrieveAndGenerate, p, pol, keys), &mut body.clone());
    let _ = rewrite_invoke_agent(&Ctx::new(Operation::InvokeAgent, p, pol, keys), "AGENT12345", "ALIAS6789", "chat-42", &mut body.clone(), None);
    let _ = filter_retrieve_response(body.to_string().as_bytes(), prefixes);
    let _ = rag_answer_is_clean(body, prefixes);
    let _ = citation_event_is_clean(body, prefixes);
    let _ = citation_event_payload_is_clean(body.to_string().as_bytes(), prefixes);
    let _ = SourceFilter::new(prefixes).allows_location(body);
}

#[test]
fn random_json_never_panics() {
    let f = fixture();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for _ in 0..3000 {
        let v = rng.value(6);
        exercise(&f, &v);
    }
}

#[test]
fn mutated_valid_bodies_never_panic() {
    let seeds = [
        json!({"retrievalQuery": {"text": "q"}, "retrievalConfiguration": {"vectorSearchConfiguration": {
            "filter": {"andAll": [{"equals": {"key": "a", "value": 1}}, {"in": {"key": "b", "value": ["x"]}}]},
            "rerankingConfiguration": {"type": "BEDROCK_RERANKING_MODEL", "bedrockRerankingConfiguration": {"modelConfiguration": {"modelArn": "amazon.rerank-v1:0"}}}}}}),
        json!({"sessionId": "x.y", "retrieveAndGenerateConfiguration": {"type": "EXTERNAL_SOURCES",
            "externalSourcesConfiguration": {"modelArn": "anthropic.claude-3-haiku-20240307-v1:0",
            "sources": [{"sourceType": "S3", "s3Location": {"uri": "s3://docs/tenants/acme/a"}}]}}}),
        json!({"memoryId": "mem-1", "sessionState": {"sessionAttributes": {"tenantId": "x"}, "promptSessionAttributes": {},
            "knowledgeBaseConfigurations": [{"knowledgeBaseId": "KBPOOLED01"}],
            "files": [{"source": {"sourceType": "S3", "s3Location": {"uri": "s3://docs/tenants/acme/f"}}}]}}),
        json!({"retrievalResults": [{"location": {"type": "S3", "s3Location": {"uri": "s3://docs/tenants/acme/a"}}}],
            "citations": [{"retrievedReferences": [{"location": {"type": "WEB", "webLocation": {"url": "https://x/"}}}]}],
            "citation": {"retrievedReferences": []}}),
    ];
    let f = fixture();
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    for seed in &seeds {
        for _ in 0..1500 {
            let mut v = seed.clone();
            rng.mutate(&mut v);
            exercise(&f, &v);
        }
    }
}
