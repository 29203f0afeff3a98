use super::*;
use std::sync::atomic::AtomicUsize;

/// A fetcher that counts calls, can fail or hang, and issues credentials that
/// expire after a chosen time.
#[derive(Clone)]
struct Fake {
    calls: Arc<AtomicUsize>,
    mode: Arc<Mutex<&'static str>>,
    ttl: Duration,
    delay: Duration,
}

impl Fake {
    fn new(ttl: Duration) -> Self {
        Fake {
            calls: Arc::new(AtomicUsize::new(0)),
            mode: Arc::new(Mutex::new("ok")),
            ttl,
            delay: Duration::from_millis(20),
        }
    }
    fn set(&self, m: &'static str) {
        *self.mode.lock().unwrap() = m;
    }
    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl Fetcher<String> for Fake {
    fn fetch(&self, who: String) -> FetchFuture {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        let mode = *self.mode.lock().unwrap();
        let (ttl, delay) = (self.ttl, self.delay);
        Box::pin(async move {
            tokio::time::sleep(delay).await;
            match mode {
                "fail" => Err("sts says no".to_string()),
                "hang" => {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    Err("unreachable".into())
                }
                _ => Ok(Credentials::new(
                    format!("AKID-{who}-{n}"),
                    "secret",
                    Some("token".into()),
                    Some(SystemTime::now() + ttl),
                    "test",
                )),
            }
        })
    }
}

fn cache(f: &Fake, refresh_before: Duration) -> Arc<CredCache<String, Fake>> {
    CredCache::new(f.clone(), 100, refresh_before, Duration::from_millis(300))
}

#[tokio::test]
async fn many_requests_of_one_tenant_make_one_call() {
    let f = Fake::new(Duration::from_secs(3600));
    let c = cache(&f, Duration::from_secs(300));
    for _ in 0..50 {
        let k = c.get("acme", "acme".into()).await.unwrap();
        assert_eq!(k.access_key_id(), "AKID-acme-0");
    }
    assert_eq!(f.calls(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_concurrent_requests_for_a_cold_tenant_make_one_call() {
    let f = Fake::new(Duration::from_secs(3600));
    let c = cache(&f, Duration::from_secs(300));
    let mut tasks = Vec::new();
    for _ in 0..30 {
        let c = c.clone();
        tasks.push(tokio::spawn(async move { c.get("acme", "acme".into()).await }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap().access_key_id(), "AKID-acme-0");
    }
    assert_eq!(f.calls(), 1);
}

#[tokio::test]
async fn different_keys_never_share_credentials() {
    let f = Fake::new(Duration::from_secs(3600));
    let c = cache(&f, Duration::from_secs(300));
    let a = c.get("role|acme", "acme".into()).await.unwrap();
    let b = c.get("role|globex", "globex".into()).await.unwrap();
    assert_ne!(a.access_key_id(), b.access_key_id());
    assert!(b.access_key_id().contains("globex"));
}

#[tokio::test]
async fn refreshes_in_the_background_before_expiry() {
    // Credentials live 10 s; refresh when fewer than 9.9 s are left.
    let f = Fake::new(Duration::from_secs(10));
    let c = cache(&f, Duration::from_millis(9900));
    let first = c.get("acme", "acme".into()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    // Served from the cache at once, refresh started behind it.
    let served = c.get("acme", "acme".into()).await.unwrap();
    assert_eq!(served.access_key_id(), first.access_key_id());
    tokio::time::sleep(Duration::from_millis(100)).await;
    let later = c.get("acme", "acme".into()).await.unwrap();
    assert_eq!(later.access_key_id(), "AKID-acme-1");
    assert_eq!(f.calls(), 2);
}

#[tokio::test]
async fn sts_down_with_cached_credentials_keeps_serving_them() {
    let f = Fake::new(Duration::from_secs(10));
    let c = cache(&f, Duration::from_millis(9900));
    let first = c.get("acme", "acme".into()).await.unwrap();
    f.set("fail");
    tokio::time::sleep(Duration::from_millis(150)).await;
    for _ in 0..5 {
        let k = c.get("acme", "acme".into()).await.unwrap();
        assert_eq!(k.access_key_id(), first.access_key_id());
    }
}

#[tokio::test]
async fn sts_down_without_cached_credentials_fails() {
    let f = Fake::new(Duration::from_secs(3600));
    f.set("fail");
    let c = cache(&f, Duration::from_secs(300));
    let e = c.get("acme", "acme".into()).await.unwrap_err();
    assert!(e.contains("sts says no"));
    assert_eq!(c.stats.fetch_error.load(Ordering::Relaxed), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sts_hanging_times_out_and_waiters_do_not_queue_behind_it() {
    let f = Fake::new(Duration::from_secs(3600));
    f.set("hang");
    let c = cache(&f, Duration::from_secs(300));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let c = c.clone();
        tasks.push(tokio::spawn(async move { c.get("acme", "acme".into()).await }));
    }
    for t in tasks {
        assert!(t.await.unwrap().is_err());
    }
    // One 300 ms timeout, not ten in a row.
    assert!(started.elapsed() < Duration::from_millis(1500), "{:?}", started.elapsed());
    assert_eq!(f.calls(), 1);
    assert_eq!(c.stats.fetch_timeout.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn expired_credentials_are_never_returned() {
    let f = Fake::new(Duration::from_millis(5100));
    let c = cache(&f, Duration::from_millis(100));
    c.get("acme", "acme".into()).await.unwrap();
    f.set("fail");
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Within EXPIRY_MARGIN of expiry: not used, and STS is down.
    assert!(c.get("acme", "acme".into()).await.is_err());
}

#[tokio::test]
async fn the_cache_is_bounded() {
    let mut f = Fake::new(Duration::from_secs(3600));
    f.delay = Duration::ZERO;
    let c = CredCache::new(f.clone(), 64, Duration::from_secs(300), Duration::from_secs(1));
    for i in 0..500 {
        let t = format!("t{i}");
        c.get(&t, t.clone()).await.unwrap();
        assert!(c.len() <= 64, "len {}", c.len());
    }
    assert!(c.stats.evicted.load(Ordering::Relaxed) > 0);
    // The most recent tenant is still cached.
    let before = f.calls();
    c.get("t499", "t499".into()).await.unwrap();
    assert_eq!(f.calls(), before);
}
