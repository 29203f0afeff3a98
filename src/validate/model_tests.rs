use super::model::{models, Kind, Location};
use super::*;

/// Each routed operation's index in `Operation::ALL`. No `_` arm: a new
/// `Operation` fails to compile here until it is listed (and mapped in
/// `model_operation`).
fn index(op: Operation) -> usize {
    use Operation::*;
    match op {
        InvokeModel => 0,
        InvokeModelWithResponseStream => 1,
        Converse => 2,
        ConverseStream => 3,
        CountTokens => 4,
        ApplyGuardrail => 5,
        Retrieve => 6,
        RetrieveAndGenerate => 7,
        RetrieveAndGenerateStream => 8,
        InvokeAgent => 9,
        Rerank => 10,
        InvokeEndpoint => 11,
        InvokeEndpointWithResponseStream => 12,
        InvokeEndpointAsync => 13,
        GetAgentMemory => 14,
        DeleteAgentMemory => 15,
        StartAsyncInvoke => 16,
        GetAsyncInvoke => 17,
        ListAsyncInvokes => 18,
        OptimizePrompt => 19,
        GetDocumentContent => 20,
        GenerateQuery => 21,
        InvokeGuardrailChecks => 22,
        AgenticRetrieveStream => 23,
        InvokeInlineAgent => 24,
        CreateSession => 25,
        GetSession => 26,
        UpdateSession => 27,
        EndSession => 28,
        DeleteSession => 29,
        CreateInvocation => 30,
        ListInvocations => 31,
        PutInvocationStep => 32,
        GetInvocationStep => 33,
        ListInvocationSteps => 34,
        ListSessions => 35,
        InvokeFlow => 36,
        StartFlowExecution => 37,
        GetFlowExecution => 38,
        ListFlowExecutions => 39,
        StopFlowExecution => 40,
        ListFlowExecutionEvents => 41,
        GetExecutionFlowSnapshot => 42,
        ChatCompletions => 43,
    }
}

#[test]
fn models_load() {
    check_models().unwrap();
}

#[test]
fn every_routed_operation_has_a_model_shape() {
    for (i, op) in Operation::ALL.into_iter().enumerate() {
        assert_eq!(index(op), i);
        let om = operation_model(op).unwrap();
        assert_eq!(om.name(), op.name());
        assert_eq!(om.service(), model::service_name(op.service()));
    }
}

#[test]
fn payload_operations_are_opaque_the_others_json() {
    use Operation::*;
    for op in Operation::ALL {
        let opaque = matches!(
            op,
            InvokeModel | InvokeModelWithResponseStream | InvokeEndpoint | InvokeEndpointWithResponseStream | InvokeEndpointAsync
        );
        assert_eq!(operation_model(op).unwrap().opaque_body(), opaque, "{op:?}");
    }
}

#[test]
fn headers_query_and_labels_from_the_model() {
    let im = operation_model(Operation::InvokeModel).unwrap();
    assert!(im.defines_header("x-amzn-bedrock-guardrailidentifier"));
    assert!(im.defines_header("content-type"));
    assert!(!im.defines_header("x-amz-target"));
    assert_eq!(&*im.path_labels()[0], "modelId");
    let ag = operation_model(Operation::InvokeAgent).unwrap();
    assert!(ag.defines_header("x-amz-source-arn"));
    let labels: Vec<&str> = ag.path_labels().iter().map(|s| &**s).collect();
    assert_eq!(labels, ["agentAliasId", "agentId", "sessionId"]);
    let se = operation_model(Operation::InvokeEndpoint).unwrap();
    assert!(se.defines_header("x-amzn-sagemaker-target-model"));
    assert!(!se.defines_header("x-amz-sagemaker-target-model"));
    let mem = operation_model(Operation::GetAgentMemory).unwrap();
    let names: Vec<&str> = mem.query_names().iter().map(|s| &**s).collect();
    assert_eq!(names, ["maxItems", "memoryId", "memoryType", "nextToken"]);
    let del = operation_model(Operation::DeleteAgentMemory).unwrap();
    let names: Vec<&str> = del.query_names().iter().map(|s| &**s).collect();
    assert_eq!(names, ["memoryId", "sessionId"]);
    for op in Operation::ALL {
        let om = operation_model(op).unwrap();
        // Agent memory's ids in the query are namespaced
        // (`family::agent_memory`); ListAsyncInvokes' parameters are checked
        // by `family::async_jobs`.
        let expected: &[&str] = match op {
            Operation::GetAgentMemory => &["maxItems", "memoryId", "memoryType", "nextToken"],
            Operation::DeleteAgentMemory => &["memoryId", "sessionId"],
            // Checked by `family::sessions`.
            Operation::ListInvocations | Operation::ListInvocationSteps | Operation::ListSessions => &["maxResults", "nextToken"],
            // Checked (and the alias decided) by `family::flows`.
            Operation::ListFlowExecutions => &["flowAliasIdentifier", "maxResults", "nextToken"],
            Operation::ListFlowExecutionEvents => &["eventType", "maxResults", "nextToken"],
            Operation::ListAsyncInvokes => {
                &["maxResults", "nextToken", "sortBy", "sortOrder", "statusEquals", "submitTimeAfter", "submitTimeBefore"]
            }
            _ => &[],
        };
        let mut names: Vec<&str> = om.query_names().iter().map(|s| &**s).collect();
        names.sort();
        assert_eq!(names, expected, "{op:?} defines other query parameters: update the docs");
        assert!(om.header_names().iter().all(|h| h.to_ascii_lowercase() == **h));
    }
}

#[test]
fn the_whole_models_are_in_the_table() {
    let m = models().unwrap();
    // Operations tenantgate does not route yet are there too.
    assert!(m.operation_by_name("bedrock-agent-runtime", "InvokeInlineAgent").is_some());
    assert!(m.operation_by_name("bedrock-runtime", "StartAsyncInvoke").is_some());
    assert!(m.all_operations().count() > 30);
    // Member lists are sorted (binary search) and every location is known.
    for s in &m.shapes {
        if let Kind::Structure { members, .. } = &s.kind {
            assert!(members.windows(2).all(|w| w[0].name < w[1].name), "{}", s.name);
            assert!(members.iter().all(|mm| (mm.shape as usize) < m.shapes.len()));
            let _ = members.iter().filter(|mm| mm.location != Location::Body).count();
        }
    }
}

#[test]
fn a_model_that_does_not_load_is_reported() {
    assert!(model::build(&[("x", "{")]).is_err());
    let bad = r#"{"metadata":{"protocol":"json"},"operations":{},"shapes":{}}"#;
    assert!(model::build(&[("x", bad)]).unwrap_err().contains("protocol"));
    let dangling = r#"{"metadata":{"protocol":"rest-json"},"operations":{},"shapes":{"L":{"type":"list","member":{"shape":"Nope"}}}}"#;
    assert!(model::build(&[("x", dangling)]).unwrap_err().contains("Nope"));
}

#[test]
fn notice_names_the_botocore_version() {
    let notice = include_str!("../../models/aws/NOTICE");
    assert!(notice.contains(&format!("botocore {BOTOCORE_VERSION}")), "{notice}");
    assert!(notice.contains("Apache License, Version 2.0"));
    let script = include_str!("../../scripts/update-models.sh");
    assert!(script.contains(&format!("VERSION=\"${{1:-{BOTOCORE_VERSION}}}\"")));
}
