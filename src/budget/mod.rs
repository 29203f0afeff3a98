//! The process-wide budget for buffered bytes (docs/reference.md §3
//! `server.max_buffered_bytes`, `server.max_buffered_bytes_per_tenant`).
//!
//! Everything the sidecar holds whole in memory for a request is charged
//! here before it is allocated: the request body as it is read (the declared
//! `Content-Length` up front, else each growth of the buffer), the estimated
//! size of a parsed JSON tree (from [`json_scan`], before the tree is
//! built), and an upstream answer buffered to be judged or redacted. A
//! charge is a [`Reservation`]: it grows as bytes are buffered and gives
//! them back when dropped, so every exit path (error, client gone, panic
//! unwinding) releases what it held.
//!
//! Fair share: a tenant may hold at most `per_tenant` bytes (its share;
//! default half the total), so one tenant alone can never take the whole
//! budget and the others keep at least `total - per_tenant`. A charge that
//! would take its tenant over its share is 429 `memory_limited`; one that
//! fits the tenant's share but not what is left of the total (several
//! tenants at their shares together) is 503 `overloaded`. Both carry
//! `Retry-After: 1`: the bytes come back as soon as the requests holding
//! them end.
//!
//! Cost: a reservation is one map look-up under a mutex per request (the
//! tenant's counter, an `Arc` clone), then two compare-and-swap loops per
//! growth and two atomic subtractions on drop; no lock on the byte path.
//! The limits are read per charge from the request's config snapshot, so a
//! reload applies at once while the counters (the bytes really held) live
//! as long as the process.

pub mod json_scan;

#[cfg(test)]
mod tests;

use crate::config::ServerConfig;
use crate::error::ProxyError;
use crate::route::Operation;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// The byte limits in force (from `[server]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BufferLimits {
    /// `server.max_buffered_bytes`: all tenants together.
    pub total: u64,
    /// `server.max_buffered_bytes_per_tenant`: one tenant's share.
    pub per_tenant: u64,
}

/// Tenant counters kept before the map is pruned of idle ones.
const PRUNE_AT: usize = 1024;

#[derive(Default)]
struct TenantBytes {
    held: AtomicU64,
}

/// The per-process budget. Shared by every request (an `Arc` in `Proxy`),
/// it survives config reloads.
#[derive(Default)]
pub struct Budget {
    held: AtomicU64,
    tenants: Mutex<Tenants>,
}

#[derive(Default)]
struct Tenants {
    map: HashMap<Box<str>, Arc<TenantBytes>>,
    /// Prune again once the map reaches this size (grows with the number
    /// of tenants holding bytes at once, so pruning stays amortised).
    prune_at: usize,
}

impl Budget {
    pub fn new() -> Arc<Budget> {
        Arc::new(Budget::default())
    }

    /// Bytes held by all requests now (`tenantgate_buffered_bytes`).
    pub fn held(&self) -> u64 {
        self.held.load(Ordering::Relaxed)
    }

    /// Bytes held by one tenant's requests now.
    pub fn tenant_held(&self, tenant: &str) -> u64 {
        let t = self.tenants.lock().unwrap_or_else(PoisonError::into_inner);
        t.map.get(tenant).map_or(0, |c| c.held.load(Ordering::Relaxed))
    }

    /// An empty reservation for `tenant`'s request; grow it as bytes are
    /// buffered.
    pub fn reservation(self: &Arc<Self>, tenant: &str) -> Reservation {
        let counter = {
            let mut t = self.tenants.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(c) = t.map.get(tenant) {
                c.clone()
            } else {
                if t.map.len() >= t.prune_at.max(PRUNE_AT) {
                    // A counter only the map holds has no reservation
                    // (every reservation keeps an `Arc`), so it is 0 and
                    // can go; clones are only made under this lock.
                    t.map.retain(|_, c| Arc::strong_count(c) > 1);
                    t.prune_at = t.map.len() * 2;
                }
                let c = Arc::new(TenantBytes::default());
                t.map.insert(tenant.into(), c.clone());
                c
            }
        };
        Reservation { budget: self.clone(), tenant: counter, bytes: 0 }
    }

    #[cfg(test)]
    fn tenants_tracked(&self) -> usize {
        self.tenants.lock().unwrap_or_else(PoisonError::into_inner).map.len()
    }
}

/// Operations whose request body the sidecar parses as JSON: every one
/// whose AWS model gives it a JSON body (the request validator parses and
/// checks them all, document members such as Converse's
/// `additionalModelRequestFields` included); payload operations
/// (InvokeModel, SageMaker) are opaque.
pub fn parses_request_json(op: Operation) -> bool {
    crate::validate::has_json_body(op)
}

/// Before a request body is parsed: its structure within
/// `server.max_json_nodes` / `server.max_json_depth` (400
/// `invalid_parameter`, found without building anything), then the tree's
/// estimated size and the rewritten body serialised from it charged to
/// `mem` (which already holds the body itself).
pub fn charge_json_body(op: Operation, body: &[u8], server: &ServerConfig, mem: &mut Reservation) -> Result<(), ProxyError> {
    if !parses_request_json(op) {
        return Ok(());
    }
    let shape = json_scan::scan(body, &server.json_limits())?;
    let n = shape.tree_bytes(body.len()).saturating_add(body.len() as u64);
    mem.grow(n, &server.buffer_limits())?;
    Ok(())
}

/// Why a charge was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The tenant would hold more than its share (429 `memory_limited`).
    TenantShare,
    /// The process budget is taken (503 `overloaded`).
    Total,
}

impl From<Refused> for ProxyError {
    fn from(r: Refused) -> ProxyError {
        match r {
            Refused::TenantShare => ProxyError::MemoryLimited,
            Refused::Total => ProxyError::Overloaded,
        }
    }
}

/// Adds `n` to `counter` unless that would pass `limit`.
fn try_add(counter: &AtomicU64, n: u64, limit: u64) -> bool {
    let mut cur = counter.load(Ordering::Relaxed);
    loop {
        let Some(next) = cur.checked_add(n).filter(|&v| v <= limit) else { return false };
        match counter.compare_exchange_weak(cur, next, Ordering::AcqRel, Ordering::Relaxed) {
            Ok(_) => return true,
            Err(actual) => cur = actual,
        }
    }
}

/// Bytes one request holds, charged to its tenant and to the process; given
/// back on drop.
pub struct Reservation {
    budget: Arc<Budget>,
    tenant: Arc<TenantBytes>,
    bytes: u64,
}

impl Reservation {
    /// Bytes held by this reservation.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Charge `n` more bytes, or refuse (nothing charged).
    pub fn grow(&mut self, n: u64, limits: &BufferLimits) -> Result<(), Refused> {
        if n == 0 {
            return Ok(());
        }
        if !try_add(&self.tenant.held, n, limits.per_tenant) {
            return Err(Refused::TenantShare);
        }
        if !try_add(&self.budget.held, n, limits.total) {
            self.tenant.held.fetch_sub(n, Ordering::AcqRel);
            return Err(Refused::Total);
        }
        self.bytes += n;
        Ok(())
    }

    /// Hold at least `total` bytes in all.
    pub fn grow_to(&mut self, total: u64, limits: &BufferLimits) -> Result<(), Refused> {
        self.grow(total.saturating_sub(self.bytes), limits)
    }

    /// Hold at most `total` bytes: the rest goes back now.
    pub fn shrink_to(&mut self, total: u64) {
        let n = self.bytes.saturating_sub(total);
        if n > 0 {
            self.tenant.held.fetch_sub(n, Ordering::AcqRel);
            self.budget.held.fetch_sub(n, Ordering::AcqRel);
            self.bytes -= n;
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.shrink_to(0);
    }
}

impl std::fmt::Debug for Reservation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reservation").field("bytes", &self.bytes).finish()
    }
}
