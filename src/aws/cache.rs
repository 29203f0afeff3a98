//! Per-tenant credentials cache (docs/reference.md §6): bounded, single-flight per key,
//! refreshed ahead of expiry in the background, a timeout on every fetch.
//!
//! The key is the complete rendered AssumeRole request, so two requests share
//! credentials only when STS would have been asked for exactly the same
//! session. Fetching is behind the `Fetcher` trait so the cache is tested
//! without STS.

use aws_credential_types::Credentials;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

pub type FetchFuture = Pin<Box<dyn Future<Output = Result<Credentials, String>> + Send>>;

/// Fetches fresh credentials for one rendered request.
pub trait Fetcher<R>: Send + Sync + 'static {
    fn fetch(&self, req: R) -> FetchFuture;
}

/// Credentials this close to expiry are never used to sign.
pub const EXPIRY_MARGIN: Duration = Duration::from_secs(5);
/// A failed background refresh is retried at most this often.
const REFRESH_RETRY: Duration = Duration::from_secs(5);

/// Counters read by the metrics endpoint.
#[derive(Default, Debug)]
pub struct CacheStats {
    pub fetch_ok: AtomicU64,
    pub fetch_error: AtomicU64,
    pub fetch_timeout: AtomicU64,
    pub evicted: AtomicU64,
}

struct Entry {
    current: Mutex<Option<Credentials>>,
    /// Held while fetching: the single flight.
    flight: tokio::sync::Mutex<()>,
    attempts: AtomicU64,
    last_error: Mutex<String>,
    refreshing: AtomicBool,
    next_refresh_ms: AtomicU64,
    last_used_ms: AtomicU64,
}

impl Entry {
    fn new(now_ms: u64) -> Self {
        Entry {
            current: Mutex::new(None),
            flight: tokio::sync::Mutex::new(()),
            attempts: AtomicU64::new(0),
            last_error: Mutex::new(String::new()),
            refreshing: AtomicBool::new(false),
            next_refresh_ms: AtomicU64::new(0),
            last_used_ms: AtomicU64::new(now_ms),
        }
    }

    fn current(&self) -> Option<Credentials> {
        self.current.lock().ok().and_then(|c| c.clone())
    }
}

fn remaining(c: &Credentials, now: SystemTime) -> Duration {
    match c.expiry() {
        Some(exp) => exp.duration_since(now).unwrap_or(Duration::ZERO),
        None => Duration::MAX,
    }
}

pub struct CredCache<R, F> {
    fetcher: F,
    map: Mutex<HashMap<Arc<str>, Arc<Entry>>>,
    max_entries: usize,
    refresh_before: Duration,
    timeout: Duration,
    epoch: Instant,
    pub stats: CacheStats,
    _req: std::marker::PhantomData<fn(R)>,
}

impl<R, F> CredCache<R, F>
where
    R: Clone + Send + 'static,
    F: Fetcher<R>,
{
    pub fn new(fetcher: F, max_entries: usize, refresh_before: Duration, timeout: Duration) -> Arc<Self> {
        Arc::new(CredCache {
            fetcher,
            map: Mutex::new(HashMap::new()),
            max_entries: max_entries.max(1),
            refresh_before,
            timeout,
            epoch: Instant::now(),
            stats: CacheStats::default(),
            _req: std::marker::PhantomData,
        })
    }

    pub fn fetcher(&self) -> &F {
        &self.fetcher
    }

    pub fn len(&self) -> usize {
        self.map.lock().map(|m| m.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn entry(&self, key: &str) -> Arc<Entry> {
        let now = self.now_ms();
        let mut map = match self.map.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        if let Some(e) = map.get(key) {
            e.last_used_ms.store(now, Ordering::Relaxed);
            return e.clone();
        }
        if map.len() >= self.max_entries {
            self.evict(&mut map);
        }
        let e = Arc::new(Entry::new(now));
        map.insert(Arc::from(key), e.clone());
        e
    }

    /// At capacity: drop entries with no usable credentials that nobody is
    /// fetching, then the least recently used sixteenth.
    fn evict(&self, map: &mut HashMap<Arc<str>, Arc<Entry>>) {
        let before = map.len();
        let now = SystemTime::now();
        map.retain(|_, e| {
            Arc::strong_count(e) > 1 || e.current().is_some_and(|c| remaining(&c, now) > EXPIRY_MARGIN)
        });
        if map.len() >= self.max_entries {
            let mut ages: Vec<(u64, Arc<str>)> = map
                .iter()
                .filter(|(_, e)| Arc::strong_count(e) == 1)
                .map(|(k, e)| (e.last_used_ms.load(Ordering::Relaxed), k.clone()))
                .collect();
            ages.sort_unstable_by_key(|(t, _)| *t);
            let n = (self.max_entries / 16).max(1);
            for (_, k) in ages.into_iter().take(n) {
                map.remove(&k);
            }
        }
        self.stats.evicted.fetch_add((before - map.len()) as u64, Ordering::Relaxed);
    }

    /// Credentials for `key`, fetching them with `req` when there are none
    /// usable. Concurrent callers of a cold key wait for one fetch; a fetch
    /// that fails is reported to everyone who waited on it (no pile-up of
    /// sequential STS calls behind a failing one).
    pub async fn get(self: &Arc<Self>, key: &str, req: R) -> Result<Credentials, String> {
        let entry = self.entry(key);
        let now = SystemTime::now();
        if let Some(c) = entry.current() {
            let left = remaining(&c, now);
            if left > self.refresh_before.max(EXPIRY_MARGIN) {
                return Ok(c);
            }
            if left > EXPIRY_MARGIN {
                self.spawn_refresh(entry, req);
                return Ok(c);
            }
        }
        let seen = entry.attempts.load(Ordering::Acquire);
        let _flight = entry.flight.lock().await;
        if let Some(c) = entry.current() {
            if remaining(&c, SystemTime::now()) > EXPIRY_MARGIN {
                return Ok(c);
            }
        }
        if entry.attempts.load(Ordering::Acquire) != seen {
            // Someone fetched while we waited, and it failed.
            return Err(entry.last_error.lock().map(|e| e.clone()).unwrap_or_default());
        }
        self.fetch_into(&entry, req).await
    }

    async fn fetch_into(&self, entry: &Entry, req: R) -> Result<Credentials, String> {
        let result = match tokio::time::timeout(self.timeout, self.fetcher.fetch(req)).await {
            Ok(Ok(c)) => {
                self.stats.fetch_ok.fetch_add(1, Ordering::Relaxed);
                Ok(c)
            }
            Ok(Err(e)) => {
                self.stats.fetch_error.fetch_add(1, Ordering::Relaxed);
                Err(e)
            }
            Err(_) => {
                self.stats.fetch_timeout.fetch_add(1, Ordering::Relaxed);
                Err(format!("no answer within {:?}", self.timeout))
            }
        };
        match &result {
            Ok(c) => {
                if let Ok(mut cur) = entry.current.lock() {
                    *cur = Some(c.clone());
                }
            }
            Err(e) => {
                if let Ok(mut le) = entry.last_error.lock() {
                    le.clone_from(e);
                }
            }
        }
        entry.attempts.fetch_add(1, Ordering::AcqRel);
        result
    }

    fn spawn_refresh(self: &Arc<Self>, entry: Arc<Entry>, req: R) {
        let now = self.now_ms();
        if entry.next_refresh_ms.load(Ordering::Relaxed) > now
            || entry.refreshing.swap(true, Ordering::AcqRel)
        {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            let _flight = entry.flight.lock().await;
            let fresh = entry
                .current()
                .is_some_and(|c| remaining(&c, SystemTime::now()) > this.refresh_before);
            if !fresh {
                if let Err(e) = this.fetch_into(&entry, req).await {
                    tracing::warn!("background credentials refresh failed (cached credentials stay in use until they expire): {e}");
                    let retry = this.now_ms() + REFRESH_RETRY.as_millis() as u64;
                    entry.next_refresh_ms.store(retry, Ordering::Relaxed);
                }
            }
            entry.refreshing.store(false, Ordering::Release);
        });
    }
}

#[cfg(test)]
#[path = "cache_tests.rs"]
mod tests;
