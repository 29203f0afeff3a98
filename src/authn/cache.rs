//! Cache of verified tokens, so a token seen before costs a SHA-256 and a map
//! look-up instead of a signature verification (RSA in pure Rust is slow).
//!
//! Keyed by SHA-256 of the token bytes. A hit re-checks `exp`/`nbf` against
//! the clock and the key-set generation it was verified under, so an expired
//! token or a key removed from the JWKS never rides on the cache. Sharded
//! mutexes keep contention low; each shard is bounded, and a full shard
//! first drops expired entries, then is cleared if still mostly full, so an
//! insert is O(1) amortised.

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
            if shard.len() > self.per_shard * 3 / 4 {
                shard.clear();
            }
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

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().unwrap().len()).sum()
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
}
