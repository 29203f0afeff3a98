//! Label sets of the metric families and the bounded tenant label table.

use super::{NO_TENANT, OTHER_TENANT};
use prometheus_client::encoding::EncodeLabelSet;
use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct RequestLabels {
    pub(super) tenant: Arc<str>,
    pub(super) operation: &'static str,
    pub(super) decision: &'static str,
    pub(super) status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct OperationLabels {
    pub(super) operation: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct TokenLabels {
    pub(super) tenant: Arc<str>,
    pub(super) direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct TenantOnlyLabels {
    pub(super) tenant: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct ThrottleLabels {
    pub(super) tenant: Arc<str>,
    pub(super) reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct ResultLabels {
    pub(super) result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct ActionLabels {
    pub(super) action: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct ResponseLabels {
    pub(super) response: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct StateLabels {
    pub(super) state: &'static str,
}

/// Interns tenant label values up to the cardinality bound.
pub(super) struct TenantLabels {
    pub(super) known: RwLock<HashSet<Arc<str>>>,
    /// The bound; may be set again (`init`): values already interned keep
    /// their series, only new ones are held to it.
    pub(super) max: AtomicUsize,
    pub(super) other: Arc<str>,
    pub(super) none: Arc<str>,
}

impl TenantLabels {
    pub(super) fn new(max: usize) -> Self {
        TenantLabels {
            known: RwLock::new(HashSet::new()),
            max: AtomicUsize::new(max),
            other: Arc::from(OTHER_TENANT),
            none: Arc::from(NO_TENANT),
        }
    }

    pub(super) fn label(&self, tenant: Option<&str>) -> Arc<str> {
        let Some(t) = tenant else { return self.none.clone() };
        if !crate::config::is_valid_tenant_id(t) {
            return self.other.clone();
        }
        {
            let known = self.known.read().unwrap_or_else(|e| e.into_inner());
            if let Some(l) = known.get(t) {
                return l.clone();
            }
            if known.len() >= self.max.load(Ordering::Relaxed) {
                return self.other.clone();
            }
        }
        let mut known = self.known.write().unwrap_or_else(|e| e.into_inner());
        if let Some(l) = known.get(t) {
            return l.clone();
        }
        if known.len() >= self.max.load(Ordering::Relaxed) {
            return self.other.clone();
        }
        let l: Arc<str> = Arc::from(t);
        known.insert(l.clone());
        l
    }
}
