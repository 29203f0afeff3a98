use super::*;
use crate::config::{ConfigError, TenantPolicy};
use crate::route::Operation;
use crate::session::SessionKeys;
use crate::test_support::*;
use serde_json::json;

fn keys() -> SessionKeys {
    SessionKeys::new(b"inline-tests-inline-tests-inline")
}

const BASE: &str = r#"
[aws]
region = "us-east-1"
[identity]
mode = "static"
tenant = "acme"
[credentials]
source = "static"
[tenant_defaults.static_credentials]
access_key_id_env = "TG_TEST_UNUSED_AKID"
secret_access_key_env = "TG_TEST_UNUSED_SECRET"
"#;

const ACME: &str = r#"
[tenants.acme]
models = ["anthropic.claude-3-haiku-*"]
model_map = { "anthropic.claude-3-haiku-20240307-v1:0" = "arn:aws:bedrock:us-east-1:111122223333:application-inference-profile/acme-haiku" }
guardrail = { id = "gr-acme", version = "3" }
[tenants.acme.knowledge_base]
allowed = ["KBPOOLED01", "KBOTHER001"]
filter_key = "tenant_id"
extra_filters = [ { in = { key = "group", value = "{groups}" } } ]
allowed_source_prefixes = ["s3://docs/tenants/{tenant}/"]
[tenants.acme.agents]
session_attributes = { tenantId = "{tenant}", userId = "{user}" }
[tenants.acme.inline_agent]
foundation_model = "anthropic.claude-3-haiku-20240307-v1:0"
instruction = "You are the order assistant of {tenant}. Answer only about this tenant's orders."
idle_session_ttl_secs = 900
knowledge_bases = { KBPOOLED01 = "Product manuals of {tenant}" }
action_groups = [
  { actionGroupName = "orders", description = "Looks up orders", actionGroupExecutor = { lambda = "arn:aws:lambda:us-east-1:111122223333:function:orders-{tenant}" }, functionSchema = { functions = [ { name = "get_order", parameters = { order_id = { type = "string", required = true } } } ] } },
  { actionGroupName = "confirm", actionGroupExecutor = { customControl = "RETURN_CONTROL" }, functionSchema = { functions = [ { name = "confirm_refund", description = "Asks {user} to confirm" } ] } },
]
"#;

fn parse(extra: &str) -> Result<crate::config::Config, Vec<ConfigError>> {
    crate::config::parse_str(&format!("{BASE}{extra}"), std::path::Path::new("."))
}

fn acme() -> TenantPolicy {
    let cfg = parse(ACME).unwrap_or_else(|e| panic!("{e:?}"));
    (**cfg.tenants.get("acme").unwrap()).clone()
}

fn errors(extra: &str) -> Vec<String> {
    match parse(extra) {
        Ok(_) => panic!("accepted:\n{extra}"),
        Err(e) => e.iter().map(ToString::to_string).collect(),
    }
}

fn run_as(who: &crate::principal::Principal, policy: &TenantPolicy, body: &mut Value) -> Result<InlineRewrite, ProxyError> {
    rewrite_inline_agent(&Ctx::new(Operation::InvokeInlineAgent, who, policy, &keys()), "chat-42", body, None)
}

fn run(policy: &TenantPolicy, body: &mut Value) -> Result<InlineRewrite, ProxyError> {
    run_as(&alice(), policy, body)
}

fn acme_filter() -> Value {
    json!({"andAll": [acme_clause(), groups_clause()]})
}

#[test]
fn the_whole_definition_comes_from_the_configuration() {
    let policy = acme();
    let mut body = json!({"inputText": "Where is order 7?", "enableTrace": true, "endSession": false,
        "streamingConfigurations": {"streamFinalResponse": true, "applyGuardrailInterval": 50}});
    let out = run(&policy, &mut body).unwrap();
    assert_eq!(
        body,
        json!({
            "inputText": "Where is order 7?", "enableTrace": true, "endSession": false,
            "streamingConfigurations": {"streamFinalResponse": true, "applyGuardrailInterval": 50},
            "inlineSessionState": {"sessionAttributes": {"tenantId": "acme", "userId": "alice"}},
            "foundationModel": "arn:aws:bedrock:us-east-1:111122223333:application-inference-profile/acme-haiku",
            "instruction": "You are the order assistant of acme. Answer only about this tenant's orders.",
            "actionGroups": [
                {"actionGroupName": "orders", "description": "Looks up orders",
                 "actionGroupExecutor": {"lambda": "arn:aws:lambda:us-east-1:111122223333:function:orders-acme"},
                 "functionSchema": {"functions": [{"name": "get_order", "parameters": {"order_id": {"type": "string", "required": true}}}]}},
                {"actionGroupName": "confirm", "actionGroupExecutor": {"customControl": "RETURN_CONTROL"},
                 "functionSchema": {"functions": [{"name": "confirm_refund", "description": "Asks alice to confirm"}]}}
            ],
            "knowledgeBases": [{"knowledgeBaseId": "KBPOOLED01", "description": "Product manuals of acme",
                "retrievalConfiguration": {"vectorSearchConfiguration": {"filter": acme_filter()}}}],
            "guardrailConfiguration": {"guardrailIdentifier": "gr-acme", "guardrailVersion": "3"},
            "idleSessionTTLInSeconds": 900
        })
    );
    assert_eq!(out.upstream_session_id, keys().agent_session_id("acme", "alice", "chat-42"));
    assert_eq!(out.model, "anthropic.claude-3-haiku-20240307-v1:0");
    assert!(out.upstream_model.ends_with("application-inference-profile/acme-haiku"));
    assert_eq!((out.action_groups, out.knowledge_bases.clone(), out.guardrail), (2, vec!["KBPOOLED01".to_string()], true));
    // What goes upstream fits the AWS model of the operation.
    crate::validate::validate_value(Operation::InvokeInlineAgent, &body).unwrap();
}

#[test]
fn the_knowledge_base_filter_is_the_one_retrieve_gets() {
    let policy = acme();
    let mut body = json!({"inputText": "manual"});
    run(&policy, &mut body).unwrap();
    let forced = crate::family::retrieval_filter::forced_filter(&policy, &alice(), None, "f").unwrap();
    assert_eq!(body["knowledgeBases"][0]["retrievalConfiguration"]["vectorSearchConfiguration"]["filter"], forced);
    // Another user of another tenant with the same configuration: its own clause.
    let mut other = alice();
    other.tenant = "globex".into();
    other.groups = vec![];
    let mut body = json!({});
    run_as(&other, &policy, &mut body).unwrap();
    let f = &body["knowledgeBases"][0]["retrievalConfiguration"]["vectorSearchConfiguration"]["filter"];
    assert_eq!(f["andAll"][0], json!({"equals": {"key": "tenant_id", "value": "globex"}}));
}

/// Every member of the AWS request shape but the client's own (and the
/// path's `sessionId`) is refused, naming it: derived from the vendored
/// model, so a member AWS adds is refused until decided.
#[test]
fn every_other_member_of_the_aws_model_is_refused() {
    let model: Value = serde_json::from_str(include_str!("../../models/aws/bedrock-agent-runtime/service-2.json")).unwrap();
    let members = model["shapes"]["InvokeInlineAgentRequest"]["members"].as_object().unwrap();
    let mut refused = 0;
    for name in members.keys().filter(|k| !CLIENT_MEMBERS.contains(&k.as_str()) && k.as_str() != "sessionId") {
        let mut body = json!({"inputText": "hi"});
        body[name] = json!("x");
        let e = run(&acme(), &mut body).unwrap_err();
        assert_eq!(e.reason(), "invalid_parameter", "{name}");
        assert!(e.to_string().contains(&format!("`{name}` may not be sent")), "{e}");
        refused += 1;
    }
    for must in ["instruction", "foundationModel", "actionGroups", "knowledgeBases", "guardrailConfiguration", "collaborators",
        "agentCollaboration", "customerEncryptionKeyArn", "promptOverrideConfiguration", "idleSessionTTLInSeconds",
        "bedrockModelConfigurations", "orchestrationType", "customOrchestration", "collaboratorConfigurations", "agentName",
        "promptCreationConfigurations"] {
        assert!(members.contains_key(must) && !CLIENT_MEMBERS.contains(&must), "{must}");
    }
    assert!(refused >= 16);
    // Other spellings (the validator refuses them first; the family too).
    for name in ["Instruction", "FOUNDATIONMODEL", "sessionId", "inputtext"] {
        let mut body = json!({});
        body[name] = json!("x");
        assert_eq!(run(&acme(), &mut body).unwrap_err().reason(), "invalid_parameter", "{name}");
    }
    let inline = model["shapes"]["InlineSessionState"]["members"].as_object().unwrap();
    assert_eq!(inline.len(), STATE_MEMBERS.len(), "InlineSessionState changed: decide its new members");
    for name in ["knowledgeBaseConfigurations", "SessionAttributes", "agentId"] {
        let mut body = json!({"inlineSessionState": {name: {}}});
        let e = run(&acme(), &mut body).unwrap_err();
        assert!(e.to_string().contains(&format!("`inlineSessionState.{name}` may not be sent")), "{e}");
    }
}

#[test]
fn a_tenant_without_an_inline_agent_is_refused() {
    let mut policy = acme();
    policy.inline_agent = None;
    let e = run(&policy, &mut json!({"inputText": "hi"})).unwrap_err();
    assert_eq!(e.reason(), "operation_not_allowed");
    assert!(e.to_string().contains("has no inline_agent"), "{e}");
    let who = alice();
    let keys = keys();
    let ctx = Ctx::new(Operation::InvokeInlineAgent, &who, &policy, &keys);
    let route = crate::route::classify(&http::Method::POST, "/agents/chat-42").unwrap();
    assert_eq!(crate::family::authorize(&ctx, &route).unwrap_err().reason(), "operation_not_allowed");
}

#[test]
fn model_and_knowledge_bases_are_decided_on_every_request() {
    // A policy that changed since the configuration was checked (the
    // checks at load are a convenience; the decision is here).
    let mut policy = acme();
    policy.models.clear();
    let e = run(&policy, &mut json!({})).unwrap_err();
    assert_eq!(e.reason(), "model_not_allowed");
    let mut policy = acme();
    policy.knowledge_base.allowed = vec!["KBOTHER001".into()];
    assert_eq!(run(&policy, &mut json!({})).unwrap_err().reason(), "knowledge_base_not_allowed");
    // Unmapped: sent as configured.
    let mut policy = acme();
    policy.model_map.clear();
    let mut body = json!({});
    let out = run(&policy, &mut body).unwrap();
    assert_eq!((body["foundationModel"].as_str(), out.upstream_model.as_str()), (Some(out.model.as_str()), out.model.as_str()));
}

#[test]
fn no_guardrail_ttl_groups_or_knowledge_bases_when_none_is_configured() {
    let cfg = parse(
        r#"
[tenants.acme]
models = ["amazon.nova-*"]
[tenants.acme.inline_agent]
foundation_model = "amazon.nova-pro-v1:0"
instruction = "You answer questions about the weather and nothing else."
"#,
    )
    .unwrap();
    let policy = (**cfg.tenants.get("acme").unwrap()).clone();
    let mut body = json!({"inputText": "rain?"});
    run(&policy, &mut body).unwrap();
    assert_eq!(
        body,
        json!({"inputText": "rain?", "inlineSessionState": {"sessionAttributes": {}},
               "foundationModel": "amazon.nova-pro-v1:0",
               "instruction": "You answer questions about the weather and nothing else."})
    );
}

#[test]
fn a_claim_the_token_lacks_is_missing_claim() {
    let cfg = parse(
        r#"
[tenants.acme]
models = ["amazon.nova-*"]
[tenants.acme.inline_agent]
foundation_model = "amazon.nova-pro-v1:0"
instruction = "You answer questions of customers on the {claims.custom:plan} plan, politely."
"#,
    )
    .unwrap();
    let policy = (**cfg.tenants.get("acme").unwrap()).clone();
    let mut body = json!({});
    run(&policy, &mut body).unwrap();
    assert_eq!(body["instruction"], "You answer questions of customers on the gold plan, politely.");
    let mut who = alice();
    who.claims.remove("custom:plan");
    let e = run_as(&who, &policy, &mut json!({})).unwrap_err();
    assert_eq!(e, ProxyError::MissingClaim("custom:plan".into()));
}

#[test]
fn session_attributes_are_forced_as_invoke_agent_forces_them() {
    let mut body = json!({"inputText": "hi", "inlineSessionState": {
        "sessionAttributes": {"tenantId": "globex", "USERID": "gary", "userJWT": "forged", "locale": "de"},
        "promptSessionAttributes": {"TenantId": "globex", "tone": "formal"},
        "invocationId": "inv-1",
        "returnControlInvocationResults": [{"functionResult": {"actionGroup": "confirm", "function": "confirm_refund",
            "responseBody": {"TEXT": {"body": "yes"}}}}],
        "conversationHistory": {"messages": [{"role": "user", "content": [{"text": "earlier"}]}]}}});
    let out = run(&acme(), &mut body).unwrap();
    let state = &body["inlineSessionState"];
    assert_eq!(state["sessionAttributes"], json!({"tenantId": "acme", "userId": "alice", "locale": "de"}));
    assert_eq!(state["promptSessionAttributes"], json!({"tenantId": "acme", "userId": "alice", "tone": "formal"}));
    // The app's own turn data is kept as sent.
    assert_eq!(state["invocationId"], "inv-1");
    assert_eq!(state["returnControlInvocationResults"][0]["functionResult"]["actionGroup"], "confirm");
    assert_eq!(state["conversationHistory"]["messages"][0]["content"][0]["text"], "earlier");
    assert_eq!(out.attributes_set, vec!["tenantId".to_string(), "userId".to_string()]);
    let mut removed = out.attributes_removed.clone();
    removed.sort();
    assert_eq!(removed, vec!["USERID", "promptSessionAttributes.TenantId", "tenantId", "userJWT"]);
}

#[test]
fn files_are_checked_against_the_source_prefixes() {
    let file = |uri: &str| json!({"name": "a.csv", "useCase": "CODE_INTERPRETER", "source": {"sourceType": "S3", "s3Location": {"uri": uri}}});
    let mut body = json!({"inlineSessionState": {"files": [file("s3://docs/tenants/acme/a.csv"),
        {"name": "b.txt", "useCase": "CHAT", "source": {"sourceType": "BYTE_CONTENT", "byteContent": {"mediaType": "text/plain", "data": "aGk="}}}]}});
    assert_eq!(run(&acme(), &mut body).unwrap().s3_files, 1);
    for uri in ["s3://docs/tenants/globex/a.csv", "s3://docs/tenants/acme2/a.csv", "s3://other/tenants/acme/a.csv"] {
        let mut body = json!({"inlineSessionState": {"files": [file(uri)]}});
        assert_eq!(run(&acme(), &mut body).unwrap_err().reason(), "location_not_allowed", "{uri}");
    }
}

#[test]
fn session_ids_are_namespaced_per_tenant_and_user_like_invoke_agent() {
    let policy = acme();
    let k = keys();
    let a = run(&policy, &mut json!({})).unwrap().upstream_session_id;
    let mut bob = alice();
    bob.user = "bob".into();
    let b = run_as(&bob, &policy, &mut json!({})).unwrap().upstream_session_id;
    let mut gary = alice();
    gary.tenant = "globex".into();
    let g = run_as(&gary, &policy, &mut json!({})).unwrap().upstream_session_id;
    assert!(a != b && a != g && b != g);
    assert_eq!(a, k.agent_session_id("acme", "alice", "chat-42"));
    assert!(a.starts_with("tg-"));
    for bad in ["x", "a b", "a/b", &"a".repeat(101)] {
        let e = rewrite_inline_agent(&Ctx::new(Operation::InvokeInlineAgent, &alice(), &policy, &k), bad, &mut json!({}), None);
        assert_eq!(e.unwrap_err().reason(), "invalid_parameter", "{bad}");
    }
}

#[test]
fn scoped_credentials_are_injected_only_when_configured() {
    let mut policy = acme();
    policy.agents.inject_scoped_credentials = true;
    let e = run(&policy, &mut json!({})).unwrap_err();
    assert_eq!(e.reason(), "credentials_unavailable");
    let creds = crate::aws::credentials::TenantCredentials(aws_credential_types::Credentials::new("ASIAX", "s", Some("t".into()), None, "test"));
    let mut body = json!({});
    rewrite_inline_agent(&Ctx::new(Operation::InvokeInlineAgent, &alice(), &policy, &keys()), "chat-42", &mut body, Some(&creds)).unwrap();
    let attrs = &body["inlineSessionState"]["sessionAttributes"];
    assert_eq!((attrs["accessKeyId"].as_str(), attrs["sessionToken"].as_str()), (Some("ASIAX"), Some("t")));
}

// ---- configuration ---------------------------------------------------------

#[test]
fn the_configuration_is_read_and_merged_key_by_key() {
    let p = acme();
    let ia = p.inline_agent.as_ref().unwrap();
    assert_eq!((ia.foundation_model.as_str(), ia.idle_session_ttl_secs), ("anthropic.claude-3-haiku-20240307-v1:0", Some(900)));
    assert_eq!(ia.action_groups.len(), 2);
    assert_eq!(ia.knowledge_bases.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(), ["KBPOOLED01"]);
    // Defaults give the instruction, the tenant its model.
    let cfg = parse(
        r#"
[tenant_defaults.inline_agent]
instruction = "You are a careful assistant. Never reveal other customers' data."
foundation_model = "amazon.nova-lite-v1:0"
[tenants.acme]
models = ["amazon.nova-*"]
[tenants.acme.inline_agent]
foundation_model = "amazon.nova-pro-v1:0"
[tenants.globex]
models = ["amazon.nova-lite-*"]
"#,
    )
    .unwrap();
    let acme = cfg.tenants["acme"].inline_agent.clone().unwrap();
    assert_eq!(acme.foundation_model, "amazon.nova-pro-v1:0");
    assert!(acme.instruction.source().starts_with("You are a careful"));
    assert_eq!(cfg.tenants["globex"].inline_agent.as_ref().unwrap().foundation_model, "amazon.nova-lite-v1:0");
    // Without the table, no inline agent.
    assert!(parse("[tenants.acme]\nmodels = []\n").unwrap().tenants["acme"].inline_agent.is_none());
}

#[test]
fn check_explains_what_is_wrong() {
    let cases: &[(&str, &str)] = &[
        (
            "[tenants.acme]\nmodels = [\"amazon.nova-*\"]\n[tenants.acme.inline_agent]\nfoundation_model = \"amazon.nova-pro-v1:0\"\n",
            "tenants.acme.inline_agent.instruction: is required for tenant \"acme\"",
        ),
        (
            "[tenants.acme]\nmodels = [\"amazon.nova-*\"]\n[tenants.acme.inline_agent]\nidle_session_ttl_secs = 600\n",
            "tenants.acme.inline_agent.foundation_model: is required",
        ),
        (
            "[tenants.acme]\nmodels = [\"amazon.nova-*\"]\n[tenants.acme.inline_agent]\nfoundation_model = \"amazon.nova-pro-v1:0\"\ninstruction = \"Be brief, {tenant}.\"\n",
            "must hold at least 40 characters besides its placeholders",
        ),
        ("[tenants.acme]\nmodels = [\"amazon.nova-*\"]\n[tenants.acme.inline_agent]\n", "tenants.acme.inline_agent: is empty"),
        (
            "[tenants.acme]\nmodels = [\"anthropic.*\"]\n[tenants.acme.inline_agent]\nfoundation_model = \"amazon.nova-pro-v1:0\"\ninstruction = \"You answer questions about the weather and nothing else.\"\n",
            "\"amazon.nova-pro-v1:0\" does not match a `models` glob of tenant \"acme\"",
        ),
        (
            "[tenants.acme]\nmodels = [\"amazon.*\"]\n[tenants.acme.inline_agent]\nfoundation_model = \"amazon.nova-{tenant}\"\ninstruction = \"You answer questions about the weather and nothing else.\"\n",
            "no template placeholders",
        ),
        (
            "[tenants.acme]\nmodels = [\"amazon.*\"]\n[tenants.acme.knowledge_base]\nallowed = [\"KBA\"]\n[tenants.acme.inline_agent]\nfoundation_model = \"amazon.nova-pro-v1:0\"\ninstruction = \"You answer questions about the weather and nothing else.\"\nknowledge_bases = { KBB = \"weather data\" }\n",
            "knowledge base \"KBB\" is not in knowledge_base.allowed of tenant \"acme\"",
        ),
        (
            "[tenants.acme]\nmodels = [\"amazon.*\"]\n[tenants.acme.inline_agent]\nfoundation_model = \"amazon.nova-pro-v1:0\"\ninstruction = \"You answer questions about the weather and nothing else.\"\nknowledge_bases = { \"KB-1\" = \"weather data\" }\n",
            "\"KB-1\" is not a knowledge base id",
        ),
        (
            "[tenants.acme]\nmodels = [\"amazon.*\"]\n[tenants.acme.inline_agent]\nfoundation_model = \"amazon.nova-pro-v1:0\"\ninstruction = \"You answer questions about the weather and nothing else.\"\nidle_session_ttl_secs = 30\n",
            "tenants.acme.inline_agent.idle_session_ttl_secs: must be between 60 and 3600",
        ),
        (
            "[tenants.acme]\nmodels = [\"amazon.*\"]\n[tenants.acme.inline_agent]\nfoundation_model = \"amazon.nova-pro-v1:0\"\ninstruction = \"You answer questions about the weather and nothing else.\"\naction_groups = [ { ActionGroupName = \"a\" } ]\n",
            "tenants.acme.inline_agent.action_groups[0]: not an AWS AgentActionGroup: ActionGroupName: not a member of AgentActionGroup",
        ),
        (
            "[tenants.acme]\nmodels = [\"amazon.*\"]\n[tenants.acme.inline_agent]\nfoundation_model = \"amazon.nova-pro-v1:0\"\ninstruction = \"You answer questions about the weather and nothing else.\"\naction_groups = [ { actionGroupName = \"a\", actionGroupExecutor = { lambda = \"x\", customControl = \"RETURN_CONTROL\" } } ]\n",
            "actionGroupExecutor: ActionGroupExecutor is a union",
        ),
        (
            "[tenants.acme]\nmodels = [\"amazon.*\"]\n[tenants.acme.inline_agent]\nfoundation_model = \"amazon.nova-pro-v1:0\"\ninstruction = \"You answer questions about the weather and nothing else.\"\naction_groups = [ { actionGroupName = \"a\" }, { actionGroupName = \"a\" } ]\n",
            "tenants.acme.inline_agent.action_groups[1]: actionGroupName \"a\" is used twice",
        ),
        (
            "[tenants.acme]\nmodels = [\"amazon.*\"]\n[tenants.acme.inline_agent]\nfoundation_model = \"amazon.nova-pro-v1:0\"\ninstruction = \"You answer questions about the weather and nothing else.\"\naction_groups = [ { description = \"no name\" } ]\n",
            "action_groups[0]: needs actionGroupName",
        ),
        (
            "[tenants.acme]\nmodels = [\"amazon.*\"]\n[tenants.acme.inline_agent]\nfoundation_model = \"amazon.nova-pro-v1:0\"\ninstruction = \"You answer questions about the weather and nothing else.\"\ncollaborators = []\n",
            "tenants.acme.inline_agent.collaborators",
        ),
    ];
    let errs = errors("[tenants.acme]\nmodels = [\"anthropic.*\"]\n[tenants.acme.inline_agent]\nfoundation_model = \"amazon.nova-pro-v1:0\"\ninstruction = \"short\"\n");
    assert!(errs.iter().any(|e| e.contains("does not match a `models` glob")), "{errs:#?}");
    assert!(!errs.iter().any(|e| e.contains("is required")), "{errs:#?}");
    for (text, want) in cases {
        let errs = errors(text);
        assert!(errs.iter().any(|e| e.contains(want)), "want {want:?} in {errs:#?}");
    }
}
