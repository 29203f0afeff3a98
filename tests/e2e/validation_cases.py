"""Hostile requests the request validator (src/validate, docs/security.md "Request
validation against the AWS service models") must refuse with 400
ValidationException before anything reaches upstream. Data only: each
`Case` is (operation, path, headers, body, expected), where `body` is a dict
(send it as JSON), `bytes` (send as is) or None (no body), and `expected` is
a substring of the error message. `reason` is the x-tenantgate-reason
(invalid_parameter unless noted).

Ids are the ones the e2e tenants use (acme: KB KBPOOLED01, agent
AGENT12345/ALIAS6789, HAIKU; SageMaker endpoints need the acme overrides of
test_sagemaker.py). Most body cases cannot go through boto3 (botocore's own
parameter validation refuses unknown members client-side); send them as raw
HTTP. Header and query cases work with boto3 too (a `before-send` or
`before-sign` event handler adding the header / query).
"""

from typing import NamedTuple, Optional, Union

HAIKU = "anthropic.claude-3-haiku-20240307-v1:0"
KB = "KBPOOLED01"
GLOBEX_KB = "KBGLOBEX99"
AGENT, ALIAS = "AGENT12345", "ALIAS6789"
ENDPOINT = "classifier"

UPDATE_HINT = "scripts/update-models.sh"


class Case(NamedTuple):
    operation: str
    path: str
    headers: dict
    body: Optional[Union[dict, bytes]]
    expected: str
    reason: str = "invalid_parameter"


def _q(text="q"):
    return {"text": text}


ACME_FILTER = {"equals": {"key": "tenant_id", "value": "acme"}}
GLOBEX_FILTER = {"equals": {"key": "tenant_id", "value": "globex"}}
RETRIEVE = f"/knowledgebases/{KB}/retrieve"
CONVERSE = f"/model/{HAIKU}/converse"
INVOKE = f"/model/{HAIKU}/invoke"
AGENT_PATH = f"/agents/{AGENT}/agentAliases/{ALIAS}/sessions/chat-42/text"
KB_CONFIG = {"type": "KNOWLEDGE_BASE", "knowledgeBaseConfiguration": {
    "knowledgeBaseId": KB, "modelArn": f"arn:aws:bedrock:us-east-1::foundation-model/{HAIKU}"}}
RERANK_CFG = {"type": "BEDROCK_RERANKING_MODEL", "bedrockRerankingConfiguration": {
    "modelConfiguration": {"modelArn": "arn:aws:bedrock:us-west-2::foundation-model/amazon.rerank-v1:0"}}}
RERANK_BASE = {"queries": [{"type": "TEXT", "textQuery": {"text": "q"}}],
               "sources": [{"type": "INLINE", "inlineDocumentSource": {"type": "TEXT", "textDocument": {"text": "d"}}}]}
JSON = {"content-type": "application/json"}

# Body members the model does not define (exact case), wrong types, null,
# unions, duplicate keys, caps. Every message names the JSON path; unknown
# members also carry UPDATE_HINT.
BODY_CASES = [
    Case("Retrieve", RETRIEVE, JSON,
         {"retrievalQuery": _q(), "retrievalConfiguration": {"vectorSearchConfiguration": {
             "filter": ACME_FILTER, "Filter": GLOBEX_FILTER}}},
         "retrievalConfiguration.vectorSearchConfiguration.Filter: not a member of KnowledgeBaseVectorSearchConfiguration"),
    Case("Retrieve", RETRIEVE, JSON,
         {"retrievalQuery": _q(), "retrievalConfiguration": {"VectorSearchConfiguration": {"filter": GLOBEX_FILTER}}},
         "retrievalConfiguration.VectorSearchConfiguration: not a member of KnowledgeBaseRetrievalConfiguration"),
    Case("Retrieve", RETRIEVE, JSON,
         {"retrievalQuery": _q(), "RetrievalConfiguration": {"vectorSearchConfiguration": {"filter": GLOBEX_FILTER}}},
         "RetrievalConfiguration: not a member of RetrieveRequest"),
    Case("Retrieve", RETRIEVE, JSON,
         {"retrievalQuery": _q(), "knowledgeBaseId": GLOBEX_KB},
         "knowledgeBaseId: a member of RetrieveRequest that belongs in the request path"),
    Case("RetrieveAndGenerate", "/retrieveAndGenerate", JSON,
         {"input": _q(), "retrieveAndGenerateConfiguration": {**KB_CONFIG, "KnowledgeBaseConfiguration": {
             "knowledgeBaseId": GLOBEX_KB, "modelArn": KB_CONFIG["knowledgeBaseConfiguration"]["modelArn"]}}},
         "retrieveAndGenerateConfiguration.KnowledgeBaseConfiguration: not a member of RetrieveAndGenerateConfiguration"),
    Case("RetrieveAndGenerate", "/retrieveAndGenerate", JSON,
         {"input": _q(), "retrieveAndGenerateConfiguration": {"type": "KNOWLEDGE_BASE", "knowledgeBaseConfiguration": {
             **KB_CONFIG["knowledgeBaseConfiguration"], "KnowledgeBaseId": GLOBEX_KB}}},
         "retrieveAndGenerateConfiguration.knowledgeBaseConfiguration.KnowledgeBaseId: not a member of "
         "KnowledgeBaseRetrieveAndGenerateConfiguration"),
    Case("RetrieveAndGenerateStream", "/retrieveAndGenerateStream", JSON,
         {"input": _q(), "retrieveAndGenerateConfiguration": {"type": "KNOWLEDGE_BASE", "knowledgeBaseConfiguration": {
             **KB_CONFIG["knowledgeBaseConfiguration"], "KnowledgeBaseId": GLOBEX_KB}}},
         "retrieveAndGenerateConfiguration.knowledgeBaseConfiguration.KnowledgeBaseId: not a member of "
         "KnowledgeBaseRetrieveAndGenerateConfiguration"),
    Case("InvokeAgent", AGENT_PATH, JSON,
         {"inputText": "hi", "sessionState": {"KnowledgeBaseConfigurations": [{"knowledgeBaseId": GLOBEX_KB,
             "retrievalConfiguration": {"vectorSearchConfiguration": {"numberOfResults": 3}}}]}},
         "sessionState.KnowledgeBaseConfigurations: not a member of SessionState"),
    Case("InvokeAgent", AGENT_PATH, JSON,
         {"inputText": "hi", "sessionState": {"SessionAttributes": {"tenantId": "globex"}}},
         "sessionState.SessionAttributes: not a member of SessionState"),
    Case("InvokeAgent", AGENT_PATH, JSON,
         {"inputText": "hi", "sessionState": {"files": [{"name": "a.csv", "useCase": "CHAT", "source": {
             "sourceType": "S3", "s3Location": {"uri": "s3://docs/tenants/acme/a.csv",
                                                "URI": "s3://docs/tenants/globex/roadmap.pdf"}}}]}},
         "sessionState.files[0].source.s3Location.URI: not a member of S3ObjectFile"),
    Case("Rerank", "/rerank", JSON,
         {**RERANK_BASE, "rerankingConfiguration": RERANK_CFG, "RerankingConfiguration": RERANK_CFG},
         "RerankingConfiguration: not a member of RerankRequest"),
    Case("Rerank", "/rerank", JSON,
         {**RERANK_BASE, "rerankingConfiguration": {**RERANK_CFG, "BedrockRerankingConfiguration":
             RERANK_CFG["bedrockRerankingConfiguration"]}},
         "rerankingConfiguration.BedrockRerankingConfiguration: not a member of RerankingConfiguration"),
    Case("Converse", CONVERSE, JSON,
         {"messages": [{"role": "user", "content": [{"text": 1}]}]},
         "messages[0].content[0].text: expected a string"),
    Case("Converse", CONVERSE, JSON,
         {"messages": [], "inferenceConfig": {"maxTokens": "5"}},
         "inferenceConfig.maxTokens: expected an integer"),
    Case("Converse", CONVERSE, JSON,
         {"messages": [], "guardrailConfig": None},
         "guardrailConfig: null is not a valid value"),
    Case("Converse", CONVERSE, JSON,
         {"messages": [{"role": "user", "content": [{"text": "a", "guardContent": {"text": {"text": "b"}}}]}]},
         "messages[0].content[0]: ContentBlock is a union: exactly one member must be set, 2 are"),
    Case("Retrieve", RETRIEVE, JSON,
         {"retrievalQuery": _q(), "retrievalConfiguration": {"vectorSearchConfiguration": {"filter": {}}}},
         "retrievalConfiguration.vectorSearchConfiguration.filter: RetrievalFilter is a union: exactly one member "
         "must be set, none is"),
    Case("Retrieve", RETRIEVE, JSON,
         b'{"retrievalQuery":{"text":"q"},"retrievalConfiguration":{"vectorSearchConfiguration":{"filter":'
         b'{"equals":{"key":"tenant_id","value":"acme"}},"filter":{"equals":{"key":"tenant_id","value":"globex"}}}}}',
         "retrievalConfiguration.vectorSearchConfiguration.filter: duplicate key"),
    Case("Converse", CONVERSE, JSON,
         b'{"messages":[{"role":"user","content":[{"text":"hi"}]}]} {"x":1}',
         "trailing characters", "invalid_json"),
    # Memory attack (10 MiB): refused by the counting pre-scan at the node cap,
# before any tree is built.
    Case("Retrieve", RETRIEVE, JSON,
         b'{"x":[' + b"[]," * 3_495_000 + b"[]]}",
         "request body has more than 100000 JSON values (server.max_json_nodes)"),
    Case("Converse", CONVERSE, JSON,
         b'{"messages":[],"additionalModelRequestFields":{"x":[' + b"[]," * 3_495_000 + b"[]]}}",
         "request body has more than 100000 JSON values (server.max_json_nodes)"),
    Case("Converse", CONVERSE, JSON,
         b'{"messages":[],"additionalModelRequestFields":' + b"[" * 100 + b"]" * 100 + b"}",
         "deeper than 64 (server.max_json_depth)"),
]

# Headers (rules in docs/security.md "Request validation": "_" refused, Connection cannot name a managed
# header, undefined x-amz-*/x-amzn-* refused, compressed bodies refused).
HEADER_CASES = [
    Case("InvokeModel", INVOKE, {**JSON, "connection": "keep-alive, x-amzn-bedrock-guardrailidentifier, "
                                                       "x-amzn-bedrock-guardrailversion"}, b"{}",
         "connection names `x-amzn-bedrock-guardrailidentifier`, a header the sidecar manages"),
    Case("InvokeModelWithResponseStream", f"/model/{HAIKU}/invoke-with-response-stream",
         {**JSON, "connection": "x-amzn-bedrock-guardrailversion"}, b"{}",
         "connection names `x-amzn-bedrock-guardrailversion`, a header the sidecar manages"),
    Case("Converse", CONVERSE, {**JSON, "connection": "x-tenant-token"},
         {"messages": [{"role": "user", "content": [{"text": "hi"}]}]},
         "connection names `x-tenant-token`, a header the sidecar manages"),
    Case("InvokeEndpoint", f"/endpoints/{ENDPOINT}/invocations",
         {"content-type": "text/csv", "x_amzn_sagemaker_target_model": "globex.tar.gz"}, b"5.1,3.5,1.4,0.2",
         "header `x_amzn_sagemaker_target_model`: names with `_` are not accepted"),
    Case("InvokeEndpoint", f"/endpoints/{ENDPOINT}/invocations",
         {"content-type": "text/csv", "x-amz-sagemaker-target-model": "globex.tar.gz"}, b"5.1,3.5,1.4,0.2",
         "header `x-amz-sagemaker-target-model` is not defined by the AWS model of InvokeEndpoint"),
    Case("InvokeModel", INVOKE, {**JSON, "x-amz-target": "AWSSecurityTokenServiceV20110615.AssumeRole"}, b"{}",
         "header `x-amz-target` is not defined by the AWS model of InvokeModel"),
    Case("Converse", CONVERSE, {**JSON, "x-amz-source-arn": "arn:aws:lambda:us-east-1:111122223333:function:x"},
         {"messages": [{"role": "user", "content": [{"text": "hi"}]}]},
         "header `x-amz-source-arn` is not defined by the AWS model of Converse"),
    Case("Converse", CONVERSE, {**JSON, "content-encoding": "gzip"},
         b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03\xab\xae\x05\x00C\xbf\xa6\xa3\x02\x00\x00\x00",
         "content-encoding `gzip`: the request body must not be encoded"),
]

# Query parameters: none is defined for the routed operations.
QUERY_CASES = [
    Case("InvokeModel", INVOKE + "?X-Amz-Security-Token=zzz&Action=AssumeRole", JSON, b"{}",
         "query parameter `X-Amz-Security-Token` is not defined by the AWS model of InvokeModel"),
    Case("Retrieve", RETRIEVE + "?knowledgeBaseId=" + GLOBEX_KB, JSON, {"retrievalQuery": _q()},
         "query parameter `knowledgeBaseId` is not defined by the AWS model of Retrieve"),
]

ALL_CASES = BODY_CASES + HEADER_CASES + QUERY_CASES

# Headers that must still pass (and be forwarded), as boto3 1.44.5 sends them.
BOTO3_FORWARDED = ["content-type", "user-agent", "amz-sdk-invocation-id", "amz-sdk-request"]
