//! The verified identity of one request. Built only by `authn` from a verified
//! JWT or from the static tenant of the pod; never from a request body.

use crate::secret::SecretString;
use serde_json::{Map, Value};

#[derive(Debug, Clone)]
pub struct Principal {
    /// Tenant id, already checked against the tenant id pattern (docs/reference.md §3).
    pub tenant: String,
    /// User id from `user_claim`; `-` in static mode.
    pub user: String,
    /// Values of `groups_claim` (empty when absent or in static mode).
    pub groups: Vec<String>,
    /// All claims of the verified token (empty in static mode), for `{claims.NAME}`.
    pub claims: Map<String, Value>,
    /// The verified token itself, for `inject_user_token`; `None` in static mode.
    pub token: Option<SecretString>,
}

impl Principal {
    pub fn static_tenant(tenant: &str) -> Self {
        Principal {
            tenant: tenant.to_string(),
            user: "-".to_string(),
            groups: Vec::new(),
            claims: Map::new(),
            token: None,
        }
    }
}
