//! Decisions already made, so a request like one seen before does not run
//! Cedar again (docs/policies.md "Cost").
//!
//! A Cedar decision is a pure function of its inputs: the principal's
//! attributes (tenant, user, groups, the configured claims), the action,
//! the resource's attributes and the context. The key holds every one of
//! them, compared whole (not only by hash), so a hit is exactly the verdict
//! Cedar would give. The cache belongs to one compiled policy set: a reload
//! builds a new set with an empty cache. Sharded mutexes keep contention
//! low; each shard is bounded, and a full shard is emptied (decisions are
//! cheap to make again; memory stays bounded).

use super::cedar::{ClaimDecl, Facts, PolicyResource, Verdict};
use crate::principal::Principal;
use crate::route::Operation;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::Mutex;

const SHARDS: usize = 8;

/// The resource as the key holds it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Resource {
    Model(String),
    KnowledgeBase(String),
    Agent(String, String),
    Endpoint(String, Option<String>),
    Guardrail(String, String),
    AsyncInvocation(Option<String>),
    Session(Option<String>),
    GuardrailChecks(u8),
}

impl Resource {
    fn of(r: PolicyResource<'_>) -> Resource {
        match r {
            PolicyResource::Model(m) => Resource::Model(m.into()),
            PolicyResource::KnowledgeBase(k) => Resource::KnowledgeBase(k.into()),
            PolicyResource::Agent { agent, alias } => Resource::Agent(agent.into(), alias.into()),
            PolicyResource::Endpoint { name, target_model } => Resource::Endpoint(name.into(), target_model.map(Into::into)),
            PolicyResource::Guardrail { id, version } => Resource::Guardrail(id.into(), version.into()),
            PolicyResource::AsyncInvocation(arn) => Resource::AsyncInvocation(arn.map(Into::into)),
            PolicyResource::Session(id) => Resource::Session(id.map(Into::into)),
            PolicyResource::GuardrailChecks(bits) => Resource::GuardrailChecks(bits),
        }
    }
}

/// Every input of one decision.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct Key {
    op: Operation,
    tenant: String,
    user: String,
    groups: Vec<String>,
    /// The configured claims' values in the token (compact JSON), in the
    /// order of `policy.claims`; None when the token lacks the claim.
    claims: Vec<Option<String>>,
    resource: Resource,
    facts: Facts,
}

impl Key {
    pub(super) fn new(
        claims: &[ClaimDecl],
        principal: &Principal,
        op: Operation,
        resource: PolicyResource<'_>,
        facts: &Facts,
    ) -> Key {
        Key {
            op,
            tenant: principal.tenant.clone(),
            user: principal.user.clone(),
            groups: principal.groups.clone(),
            claims: claim_values(claims, &principal.claims),
            resource: Resource::of(resource),
            facts: facts.clone(),
        }
    }
}

fn claim_values(decls: &[ClaimDecl], claims: &Map<String, Value>) -> Vec<Option<String>> {
    decls.iter().map(|d| claims.get(&d.name).map(Value::to_string)).collect()
}

pub(super) struct DecisionCache {
    shards: Box<[Mutex<HashMap<Key, Verdict>>]>,
    per_shard: usize,
    hasher: std::hash::RandomState,
}

impl DecisionCache {
    /// None when `capacity` is 0 (every request is evaluated).
    pub(super) fn new(capacity: usize) -> Option<DecisionCache> {
        (capacity > 0).then(|| DecisionCache {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            per_shard: capacity.div_ceil(SHARDS),
            hasher: std::hash::RandomState::new(),
        })
    }

    fn shard(&self, key: &Key) -> std::sync::MutexGuard<'_, HashMap<Key, Verdict>> {
        let m = &self.shards[(self.hasher.hash_one(key) as usize) % SHARDS];
        // A panic while holding the lock leaves at worst a missing entry.
        m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(super) fn get(&self, key: &Key) -> Option<Verdict> {
        self.shard(key).get(key).cloned()
    }

    pub(super) fn insert(&self, key: Key, verdict: Verdict) {
        let mut shard = self.shard(&key);
        if shard.len() >= self.per_shard {
            shard.clear();
        }
        shard.insert(key, verdict);
    }

    /// Entries held, for tests.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().map_or(0, |s| s.len())).sum()
    }
}
