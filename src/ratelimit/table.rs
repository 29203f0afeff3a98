//! A bounded map from key bytes to shared entries, split into shards each
//! behind its own `RwLock`. A warm lookup takes one shard's read lock for a
//! hash-map probe and an `Arc` clone; the write lock is taken only to add an
//! entry or replace one whose limits changed.
//!
//! Bound: each shard holds at most `per_shard` entries. When a shard is full,
//! inserting first drops every entry that is unused and at rest (its state
//! equals a fresh one, so dropping it changes no decision); if that frees
//! nothing, the least recently seen unused entry goes (its tenant or user
//! starts over fresh: full burst, full token budget). Entries in use (a `Permit` in flight or a
//! check under way) are never dropped, so a shard can exceed `per_shard` by
//! at most its entries in use.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

pub(crate) trait Evict {
    /// Held by something other than the table's own reference count (e.g.
    /// requests in flight whose in-flight count lives here).
    fn in_use(&self) -> bool;
    /// Equal to a fresh entry at `now`.
    fn at_rest(&self, now: u64) -> bool;
    /// Last time (ns) a request looked at this entry.
    fn last_seen(&self) -> u64;
}

type Shard<V> = RwLock<HashMap<Box<[u8]>, Arc<V>>>;

pub(crate) struct Table<V> {
    shards: Box<[Shard<V>]>,
    per_shard: usize,
}

impl<V: Evict> Table<V> {
    /// `shards` is rounded up to a power of two.
    pub fn new(shards: usize, per_shard: usize) -> Self {
        let n = shards.max(1).next_power_of_two();
        Table { shards: (0..n).map(|_| RwLock::default()).collect(), per_shard: per_shard.max(1) }
    }

    /// Most entries the table keeps (beyond entries in use).
    pub fn capacity(&self) -> usize {
        self.shards.len() * self.per_shard
    }

    /// The entry for `key` if `fits` it, else a new one from `make`, which is
    /// handed the entry it replaces (limits changed) or `None`.
    pub fn get_or_make(&self, key: &[u8], now: u64, fits: impl Fn(&V) -> bool, make: impl FnOnce(Option<&V>) -> V) -> Arc<V> {
        let shard = self.shard(key);
        if let Some(e) = shard.read().unwrap_or_else(PoisonError::into_inner).get(key) {
            if fits(e) {
                return e.clone();
            }
        }
        let mut map = shard.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(e) = map.get_mut(key) {
            if !fits(e) {
                *e = Arc::new(make(Some(e)));
            }
            return e.clone();
        }
        if map.len() >= self.per_shard {
            make_room(&mut map, self.per_shard, now);
        }
        let e = Arc::new(make(None));
        map.insert(key.into(), e.clone());
        e
    }

    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.read().unwrap_or_else(PoisonError::into_inner).len()).sum()
    }

    fn shard(&self, key: &[u8]) -> &Shard<V> {
        // FNV-1a: spreads keys over shards; the maps themselves use SipHash.
        let h = key.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3));
        &self.shards[(h ^ (h >> 32)) as usize & (self.shards.len() - 1)]
    }
}

fn unused<V: Evict>(e: &Arc<V>) -> bool {
    Arc::strong_count(e) == 1 && !e.in_use()
}

fn make_room<V: Evict>(map: &mut HashMap<Box<[u8]>, Arc<V>>, per_shard: usize, now: u64) {
    map.retain(|_, e| !(unused(e) && e.at_rest(now)));
    if map.len() < per_shard {
        return;
    }
    let oldest = map.iter().filter(|(_, e)| unused(e)).min_by_key(|(_, e)| e.last_seen()).map(|(k, _)| k.clone());
    if let Some(k) = oldest {
        map.remove(&k);
    }
}
