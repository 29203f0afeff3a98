//! Validated configuration (docs/reference.md §3). `parse.rs` turns TOML text into these
//! types, collecting every error with its key path and line; nothing here is
//! raw TOML. Templates, globs and regexes are compiled once, at load.

mod parse;
pub mod reload;

pub use parse::{is_valid_tenant_id, PolicyConfig, known_keys, load_file, parse_str, COMPARISON_OPERATORS, LOGICAL_OPERATORS};

use crate::glob::Glob;
use crate::template::{JsonTemplate, Template};
use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// One configuration problem: the TOML key path (`tenants.acme.models[1]`),
/// the 1-based line when known, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub key: String,
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "line {line}: {}: {}", self.key, self.message),
            None => write!(f, "{}: {}", self.key, self.message),
        }
    }
}

#[derive(Debug)]
pub struct Config {
    pub server: ServerConfig,
    pub identity: IdentityConfig,
    pub aws: AwsConfig,
    pub credentials: CredentialsConfig,
    pub rate_limit: RateLimitConfig,
    pub redaction: RedactionConfig,
    /// `[policy]` and `[tenants.ID.policy]`: Cedar policies, compiled.
    pub policy: PolicyConfig,
    /// `[tenants.ID]` merged over `[tenant_defaults]`, key by key.
    pub tenants: BTreeMap<String, Arc<TenantPolicy>>,
    /// `[tenant_defaults]` alone: the policy of a tenant admitted by
    /// `allow_unlisted` (None when `allow_unlisted` is false).
    pub unlisted: Option<Arc<TenantPolicy>>,
    /// `fold_tenant_id` of every listed tenant id (the configuration never
    /// lists two ids that fold to the same string).
    pub folded_tenants: HashSet<String>,
}

/// The case-folded form of a tenant id, used to tell apart ids that AWS
/// might treat as one (SageMaker endpoint names, IAM names compare without
/// case). Unicode lower-casing, so the rule does not rest on the ASCII-only
/// tenant id pattern that is checked first anyway.
pub fn fold_tenant_id(id: &str) -> String {
    id.to_lowercase()
}

impl Config {
    /// The policy of a tenant: its own merged table, else the defaults when
    /// `allow_unlisted`, else None (403 `unknown_tenant`). An id equal to a
    /// listed one ignoring case, but not exactly, is None too: it is neither
    /// that tenant nor a stranger that `allow_unlisted` may admit (it would
    /// reach the listed tenant's case-insensitive AWS names).
    pub fn policy_for(&self, tenant: &str) -> Option<&Arc<TenantPolicy>> {
        match self.tenants.get(tenant) {
            Some(p) => Some(p),
            None if self.folded_tenants.contains(&fold_tenant_id(tenant)) => None,
            None => self.unlisted.as_ref(),
        }
    }

    /// Whether `tenant` has its own `[tenants.ID]` table (exact spelling).
    pub fn is_listed(&self, tenant: &str) -> bool {
        self.tenants.contains_key(tenant)
    }
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    pub max_body_bytes: u64,
    pub header_timeout: Duration,
    /// `server.body_timeout_secs`: the request body must be complete this
    /// long after the headers, or 400 `body_timeout` (read per request, so
    /// a reload applies it).
    pub body_timeout: Duration,
    /// `server.client_write_timeout_secs`: a response the sidecar holds whole
    /// (errors, filtered or redacted answers) whose write to the client makes
    /// no progress this long closes the connection (read per request).
    pub client_write_timeout: Duration,
    pub shutdown_grace: Duration,
    /// Name of the env var holding the session MAC key (docs/reference.md §5.2).
    pub session_key_env: String,
    pub tls: Option<TlsFiles>,
    /// Most distinct `tenant` label values in `/metrics`
    /// (`server.metrics_max_tenants`, default 1000); later tenants are
    /// counted as `_other`. Read once, when the sidecar starts.
    pub metrics_max_tenants: usize,
    /// Audit lines held for stdout (`server.audit_queue_lines`, default
    /// 16,384); when full, lines are dropped and counted. Read once, when
    /// the sidecar starts.
    pub audit_queue_lines: usize,
    /// `server.max_json_nodes` / `server.max_json_depth`: the most values
    /// and the deepest nesting of a request body the sidecar parses,
    /// checked before any tree is built (400 `invalid_parameter`).
    pub max_json_nodes: u64,
    pub max_json_depth: u32,
    /// `server.max_buffered_bytes`: request and response bytes all
    /// requests may hold in memory at once (503 `overloaded` past it).
    pub max_buffered_bytes: u64,
    /// `server.max_buffered_bytes_per_tenant`: one tenant's share of it
    /// (default half; 429 `memory_limited` past it).
    pub max_buffered_bytes_per_tenant: u64,
}

impl ServerConfig {
    pub fn json_limits(&self) -> crate::budget::json_scan::JsonLimits {
        crate::budget::json_scan::JsonLimits { max_nodes: self.max_json_nodes, max_depth: self.max_json_depth }
    }

    pub fn buffer_limits(&self) -> crate::budget::BufferLimits {
        crate::budget::BufferLimits { total: self.max_buffered_bytes, per_tenant: self.max_buffered_bytes_per_tenant }
    }
}

#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

#[derive(Debug, Clone)]
pub struct IdentityConfig {
    /// Lower-case header name carrying the token (default `x-tenant-token`).
    /// Stripped from every request, in both modes.
    pub header: http::HeaderName,
    pub mode: IdentityMode,
}

#[derive(Debug, Clone)]
pub enum IdentityMode {
    Jwt(JwtConfig),
    Static { tenant: String },
}

#[derive(Debug, Clone)]
pub struct JwtConfig {
    pub issuer: String,
    pub audiences: Vec<String>,
    /// Never contains `none` (rejected at load).
    pub algorithms: Vec<jsonwebtoken::Algorithm>,
    pub key_source: KeySource,
    pub jwks_refresh: Duration,
    pub leeway_secs: u64,
    pub tenant_claim: String,
    pub user_claim: String,
    pub groups_claim: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    JwksUrl(String),
    /// Relative paths are resolved against the config file's directory at load.
    JwksFile(PathBuf),
    PemFile(PathBuf),
    /// Name of the env var holding the HS256 secret (read at start, not at load).
    Hs256SecretEnv(String),
    Hs256SecretFile(PathBuf),
}

#[derive(Debug, Clone)]
pub struct AwsConfig {
    pub region: String,
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
    pub stream_idle_timeout: Duration,
    pub ca_file: Option<PathBuf>,
    pub endpoints: Endpoints,
}

/// Explicit endpoints, validated as absolute `http://` or `https://` URLs
/// with no query; `None` means the regional default.
#[derive(Debug, Clone, Default)]
pub struct Endpoints {
    pub bedrock_runtime: Option<http::Uri>,
    pub bedrock_agent_runtime: Option<http::Uri>,
    pub sagemaker_runtime: Option<http::Uri>,
    pub sts: Option<http::Uri>,
}

#[derive(Debug, Clone, PartialEq)]
#[allow(clippy::large_enum_variant)] // one per Config; boxing buys nothing
pub enum CredentialsConfig {
    AssumeRole(AssumeRoleConfig),
    /// Per-tenant keys from env vars named in `[tenants.ID.static_credentials]`.
    Static,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AssumeRoleConfig {
    pub role_arn: Template,
    pub session_name: Template,
    pub session_tags: Vec<(String, Template)>,
    pub source_identity: Option<Template>,
    pub duration_secs: u32,
    pub refresh_before_secs: u64,
    /// Content of `session_policy_file`, read at load, as a template.
    pub session_policy: Option<Template>,
    pub external_id: Option<String>,
}

#[derive(Debug, Clone)]
pub enum RateLimitBackend {
    Local,
    Redis { url: String, on_backend_error: OnBackendError },
}

/// `rate_limit.on_backend_error`. Defined with the audit record, which
/// names it (`rate_limit_fallback`) when it decided a request's admission.
pub use crate::audit::OnBackendError;

#[derive(Debug, Clone)]
pub struct RateLimitConfig {
    pub backend: RateLimitBackend,
}

#[derive(Debug, Clone)]
pub struct RedactionConfig {
    /// The source patterns, in order.
    pub patterns: Vec<String>,
    /// All patterns combined into one alternation (`(?:p1)|(?:p2)`), compiled
    /// once; None when there are no patterns.
    pub combined: Option<regex::Regex>,
    pub replacement: String,
    pub strip_response_headers: Vec<HeaderMatch>,
}

/// `strip_response_headers` entry: an exact lower-case name, or a prefix when
/// the configured name ends in `*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderMatch {
    Exact(String),
    Prefix(String),
}

impl HeaderMatch {
    pub fn matches(&self, lower_name: &str) -> bool {
        match self {
            HeaderMatch::Exact(n) => n == lower_name,
            HeaderMatch::Prefix(p) => lower_name.starts_with(p.as_str()),
        }
    }
}

/// The effective policy of one tenant after merging (docs/reference.md §3).
#[derive(Debug, Clone)]
pub struct TenantPolicy {
    pub models: Vec<Glob>,
    /// Requested model id -> replacement (e.g. an application inference profile ARN).
    pub model_map: BTreeMap<String, String>,
    pub guardrail: Option<Guardrail>,
    pub request_metadata: Vec<(String, Template)>,
    pub rate_limit: TenantRateLimit,
    pub knowledge_base: KnowledgeBasePolicy,
    pub agents: AgentsPolicy,
    pub sagemaker: SageMakerPolicy,
    pub async_invoke: AsyncInvokePolicy,
    pub sessions: SessionsPolicy,
    pub guardrail_checks: GuardrailChecksPolicy,
    /// `inline_agent`: the agent InvokeInlineAgent runs for the tenant;
    /// None: InvokeInlineAgent is refused (403 `operation_not_allowed`).
    pub inline_agent: Option<InlineAgentPolicy>,
    pub static_credentials: Option<StaticCredentialsEnv>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Guardrail {
    pub id: String,
    pub version: String,
    /// ConverseStream `guardrailConfig.streamProcessingMode`, always set
    /// (the client's value replaced).
    pub stream_processing_mode: StreamProcessingMode,
    /// Whether Converse `guardContent` blocks (which narrow what the
    /// guardrail evaluates) may be sent; refused when false.
    pub allow_guard_content: bool,
}

impl Guardrail {
    /// A guardrail with the defaults: synchronous stream processing, no
    /// `guardContent`.
    pub fn new(id: impl Into<String>, version: impl Into<String>) -> Guardrail {
        Guardrail {
            id: id.into(),
            version: version.into(),
            stream_processing_mode: StreamProcessingMode::Sync,
            allow_guard_content: false,
        }
    }
}

/// `guardrail.stream_processing_mode`: whether streamed text is evaluated
/// before it reaches the client (`sync`, the default) or alongside
/// (`async`: lower latency, but text may stream out before it is judged,
/// and AWS does not mask sensitive information in this mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamProcessingMode {
    Sync,
    Async,
}

impl StreamProcessingMode {
    /// The value of ConverseStream `guardrailConfig.streamProcessingMode`.
    pub fn as_str(self) -> &'static str {
        match self {
            StreamProcessingMode::Sync => "sync",
            StreamProcessingMode::Async => "async",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct TenantRateLimit {
    pub requests_per_second: f64,
    pub burst: u32,
    pub max_concurrent: u32,
    /// 0 = unlimited.
    pub tokens_per_minute: u64,
    pub user_requests_per_second: Option<f64>,
    pub user_burst: Option<u32>,
}

#[derive(Debug, Clone)]
pub struct KnowledgeBasePolicy {
    pub allowed: Vec<String>,
    pub filter_key: String,
    pub extra_filters: Vec<JsonTemplate>,
    pub allowed_source_prefixes: Vec<Template>,
    /// `userContext.userId` for ACL-aware retrieval, rendered from the
    /// verified identity; None: no userContext is sent.
    pub user_context: Option<Template>,
}

#[derive(Debug, Clone)]
pub struct AgentsPolicy {
    /// Globs on `agentId/aliasId`.
    pub allowed: Vec<Glob>,
    pub session_attributes: Vec<(String, Template)>,
    pub inject_user_token: bool,
    pub inject_scoped_credentials: bool,
    /// Knowledge bases attached to the tenant's agents: every InvokeAgent
    /// carries a `knowledgeBaseConfigurations` entry with the tenant filter
    /// for each (added when the client sent none).
    pub knowledge_bases: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct SageMakerPolicy {
    /// Logical name the app uses -> real endpoint name (template).
    pub endpoints: Vec<(String, Template)>,
    pub target_model: Option<Template>,
    /// Templates that render to globs.
    pub allowed_target_models: Vec<Template>,
    pub allowed_input_prefixes: Vec<Template>,
}

/// `guardrail_checks` (docs/reference.md §5.1): which kinds of checks
/// InvokeGuardrailChecks may run for the tenant.
#[derive(Debug, Clone, Default)]
pub struct GuardrailChecksPolicy {
    /// Check kinds, as AWS names the members of `checks`
    /// (`contentFilter`, `promptAttack`, `sensitiveInformation`); empty:
    /// InvokeGuardrailChecks is refused for the tenant.
    pub allowed: Vec<String>,
}

/// The kinds of checks InvokeGuardrailChecks runs (the members of its
/// `checks` and of its answer's `results` and `usage`).
pub const GUARDRAIL_CHECK_KINDS: [&str; 3] = ["contentFilter", "promptAttack", "sensitiveInformation"];

/// `async_invoke` (docs/reference.md §16): where the tenant's
/// asynchronous invocations write, and what is forced on each job.
#[derive(Debug, Clone, Default)]
pub struct AsyncInvokePolicy {
    /// Output `s3Uri` prefix (template); unset: the async-invoke operations
    /// are refused for the tenant.
    pub output_prefix: Option<Template>,
    /// Forced `kmsKeyId` (template); unset: the client's is removed.
    pub kms_key_id: Option<Template>,
    /// Forced `bucketOwner` (12-digit account id); unset: the client's is
    /// removed.
    pub bucket_owner: Option<String>,
    /// Tags added to every job (key -> template), replacing a client tag
    /// with the same key.
    pub tags: Vec<(String, Template)>,
}

/// `sessions` (docs/reference.md §5.3, §16): what every session the tenant
/// creates through the Sessions API is given.
#[derive(Debug, Clone, Default)]
pub struct SessionsPolicy {
    /// CreateSession's `encryptionKeyArn` (template), always this one;
    /// unset: the Sessions API is refused for the tenant.
    pub kms_key_arn: Option<Template>,
    /// Tags added to every session (key -> template), replacing a client
    /// tag with the same key.
    pub tags: Vec<(String, Template)>,
}

/// `inline_agent` (docs/agents.md, "Inline agents"): the whole agent
/// definition of every InvokeInlineAgent of the tenant. The client sends
/// only its input and session; everything here is forced.
#[derive(Debug, Clone)]
pub struct InlineAgentPolicy {
    /// `foundationModel`, as configured: decided by `models` and mapped by
    /// `model_map` on every request.
    pub foundation_model: String,
    /// `instruction` (template; at least 40 characters of literal text).
    pub instruction: Template,
    /// `actionGroups`: AWS `AgentActionGroup` objects whose string values
    /// are templates (checked against the AWS model at load).
    pub action_groups: Vec<JsonTemplate>,
    /// `knowledgeBases`: knowledge base id -> description (template); each
    /// id is in `knowledge_base.allowed` and gets the forced filter.
    pub knowledge_bases: Vec<(String, Template)>,
    /// `idleSessionTTLInSeconds` (60 to 3600); None: AWS's default.
    pub idle_session_ttl_secs: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StaticCredentialsEnv {
    pub access_key_id_env: String,
    pub secret_access_key_env: String,
    pub session_token_env: Option<String>,
}
