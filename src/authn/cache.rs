//! Cache of verified tokens, so a token seen before costs a SHA-256 and a map
//! look-up instead of a signature verification (RSA in pure Rust is slow).
//!
//! Keyed by SHA-256 of the token bytes. A hit re-checks `exp`/`nbf` against
//! the clock and the key-set generation it was verified under, so an expired
//! token or a key removed from the JWKS never rides on the cache. Sharded
//! mutexes keep contention low; each shard is bounded. A full shard first
//! drops expired entries, then, if still over seven eighths full, the
//! entries that expire soonest (they have the least use left) down to seven
//! eighths: a full cache keeps 7/8 of its live tokens, and the selection
//! (O(n) per eviction, one eviction per n/8 inserts) is O(1) amortised.

use super::token::TimeBounds;
use crate::error::ProxyError;
use crate::principal::Principal;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::sync::{Mutex, MutexGuard};

const SHARDS: usize = 16;

/// SHA-256 of a token. Already uniformly distributed, so it hashes itself.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct TokenDigest(pub(crate) [u8; 32]);

impl Hash for TokenDigest {
    fn hash<H: Hasher>(&self, state: &mut H) {
        let mut w = [0u8; 8];
        w.copy_from_slice(&self.0[8..16]);
        state.write_u64(u64::from_le_bytes(w));
    }
}

/// Pass-through hasher for `TokenDigest` (which writes one u64).
#[derive(Default)]
pub(crate) struct DigestHasher(u64);

impl Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Not used by TokenDigest; fold anyway so the hasher stays correct.
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type Shard = HashMap<TokenDigest, Entry, BuildHasherDefault<DigestHasher>>;

pub(crate) struct Entry {
    pub(crate) principal: Principal,
    pub(crate) bounds: TimeBounds,
    /// Generation of the key set that verified the signature.
    pub(crate) generation: u64,
}

/// Removes the entries that expire soonest until `shard` holds `keep`.
fn evict_soonest_expiring(shard: &mut Shard, keep: usize) {
    let Some(excess) = shard.len().checked_sub(keep).filter(|n| *n > 0) else {
        return;
    };
    let mut exps: Vec<i64> = shard.values().map(|e| e.bounds.exp).collect();
    let (_, cut, _) = exps.select_nth_unstable(excess - 1);
    let cut = *cut;
    // Everything expiring before `cut` goes, then ties at `cut` until the
    // count is reached (two passes so a tie never displaces an earlier one).
    shard.retain(|_, e| e.bounds.exp >= cut);
    let mut left = shard.len().saturating_sub(keep);
    shard.retain(|_, e| {
        if left > 0 && e.bounds.exp == cut {
            left -= 1;
            false
        } else {
            true
        }
    });
}

pub(crate) struct TokenCache {
    shards: Box<[Mutex<Shard>]>,
    per_shard: usize,
}

impl TokenCache {
    pub(crate) fn new(capacity: usize) -> Self {
        let per_shard = capacity.div_ceil(SHARDS).max(1);
        TokenCache {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            per_shard,
        }
    }

    fn shard(&self, key: &TokenDigest) -> MutexGuard<'_, Shard> {
        let m = &self.shards[usize::from(key.0[0]) % SHARDS];
        // A panic while holding the lock cannot leave a half-written entry
        // that matters (worst case a stale miss), so poisoning is ignored.
        m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// `None` on a miss (or an entry from an older key set); otherwise the
    /// cached principal, or `InvalidToken` when it is expired / not yet valid.
    pub(crate) fn get(
        &self,
        key: &TokenDigest,
        generation: u64,
        now: i64,
        leeway: i64,
    ) -> Option<Result<Principal, ProxyError>> {
        let mut shard = self.shard(key);
        let entry = shard.get(key)?;
        if entry.generation != generation {
            shard.remove(key);
            return None;
        }
        match entry.bounds.check(now, leeway) {
            Ok(()) => Some(Ok(entry.principal.clone())),
            Err(e) => {
                if entry.bounds.expired(now, leeway) {
                    shard.remove(key);
                }
                Some(Err(e))
            }
        }
    }

    pub(crate) fn insert(&self, key: TokenDigest, entry: Entry, now: i64, leeway: i64) {
        let mut shard = self.shard(&key);
        if shard.len() >= self.per_shard && !shard.contains_key(&key) {
            shard.retain(|_, e| !e.bounds.expired(now, leeway));
            let keep = self.per_shard - self.per_shard.div_ceil(8);
            evict_soonest_expiring(&mut shard, keep);
        }
        shard.insert(key, entry);
    }

    pub(crate) fn clear(&self) {
        for s in self.shards.iter() {
            s.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clear();
        }
    }

    /// Entries held (live or not yet dropped); locks each shard in turn.
    pub(crate) fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(std::sync::PoisonError::into_inner).len())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(exp: i64, generation: u64) -> Entry {
        Entry {
            principal: Principal::static_tenant("acme"),
            bounds: TimeBounds { exp, nbf: None },
            generation,
        }
    }

    fn digest(i: u32) -> TokenDigest {
        use sha2::{Digest, Sha256};
        TokenDigest(Sha256::digest(i.to_le_bytes()).into())
    }

    #[test]
    fn hit_checks_expiry_and_generation() {
        let c = TokenCache::new(100);
        c.insert(digest(1), entry(100, 1), 0, 0);
        assert!(matches!(c.get(&digest(1), 1, 50, 0), Some(Ok(_))));
        assert!(matches!(
            c.get(&digest(1), 1, 100, 0),
            Some(Err(ProxyError::InvalidToken(_)))
        ));
        // expired entries are dropped on sight
        assert!(c.get(&digest(1), 1, 50, 0).is_none());
        c.insert(digest(2), entry(100, 1), 0, 0);
        assert!(
            c.get(&digest(2), 2, 50, 0).is_none(),
            "older key set must miss"
        );
        assert_eq!(c.len(), 0);
    }

    #[test]
    fn bounded_when_full() {
        let c = TokenCache::new(160);
        for i in 0..10_000 {
            c.insert(digest(i), entry(1_000, 1), 0, 0);
        }
        assert!(c.len() <= 160 + SHARDS, "len {}", c.len());
        // expired entries are evicted first, live ones survive when possible
        let c = TokenCache::new(SHARDS * 4);
        for i in 0..2_000 {
            c.insert(
                digest(i),
                entry(if i % 2 == 0 { 10 } else { 1_000 }, 1),
                20,
                0,
            );
        }
        assert!(c.len() <= SHARDS * 4);
    }

    #[test]
    fn full_cache_keeps_seven_eighths_and_evicts_soonest_expiring() {
        // One shard's worth of keys (same first byte), so the shard fills.
        let per_shard = 64;
        let c = TokenCache::new(per_shard * SHARDS);
        let in_shard0: Vec<TokenDigest> = (0..)
            .map(digest)
            .filter(|d| usize::from(d.0[0]) % SHARDS == 0)
            .take(per_shard + 1)
            .collect();
        // exp = 1_000 + i: entry 0 expires soonest.
        for (i, d) in in_shard0[..per_shard].iter().enumerate() {
            c.insert(*d, entry(1_000 + i as i64, 1), 0, 0);
        }
        assert_eq!(c.len(), per_shard);
        c.insert(in_shard0[per_shard], entry(5_000, 1), 0, 0);
        // 64 - 8 kept, plus the new one; the 8 soonest-expiring went.
        assert_eq!(c.len(), per_shard - per_shard / 8 + 1);
        for (i, d) in in_shard0[..per_shard].iter().enumerate() {
            let hit = c.get(d, 1, 0, 0).is_some();
            assert_eq!(hit, i >= per_shard / 8, "entry {i}");
        }
        assert!(c.get(&in_shard0[per_shard], 1, 0, 0).is_some());
    }

    #[test]
    fn eviction_with_tied_expiry_is_exact() {
        let mut shard = Shard::default();
        for i in 0..100u32 {
            let exp = if i < 10 { 5 } else { 50 };
            shard.insert(digest(i), entry(exp, 1));
        }
        evict_soonest_expiring(&mut shard, 70);
        assert_eq!(shard.len(), 70);
        assert!(shard.values().all(|e| e.bounds.exp == 50));
        evict_soonest_expiring(&mut shard, 80);
        assert_eq!(shard.len(), 70, "under the bound nothing goes");
        evict_soonest_expiring(&mut shard, 0);
        assert!(shard.is_empty());
    }
}
