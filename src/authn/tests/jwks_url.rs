//! `jwks_url` against a tiny local HTTP server on 127.0.0.1:0: readiness,
//! retry after failures, rotation on an unknown `kid` (rate-limited), a failed
//! refresh keeping the last good keys, and seeding a reloaded authenticator.

use super::*;
use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;

/// What the JWKS server answers, and how many requests it has seen.
#[derive(Clone)]
struct JwksServer {
    answer: Arc<Mutex<(u16, String)>>,
    hits: Arc<AtomicUsize>,
    url: String,
}

impl JwksServer {
    async fn start(status: u16, body: String) -> Self {
        let answer = Arc::new(Mutex::new((status, body)));
        let hits = Arc::new(AtomicUsize::new(0));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "http://{}/.well-known/jwks.json",
            listener.local_addr().unwrap()
        );
        let (a, h) = (answer.clone(), hits.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (a, h) = (a.clone(), h.clone());
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |_req| {
                        h.fetch_add(1, Ordering::SeqCst);
                        let (status, body) = a.lock().unwrap().clone();
                        async move {
                            Ok::<_, Infallible>(
                                http::Response::builder()
                                    .status(status)
                                    .header("content-type", "application/json")
                                    .body(Full::new(Bytes::from(body)))
                                    .unwrap(),
                            )
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        JwksServer { answer, hits, url }
    }

    fn set(&self, status: u16, body: String) {
        *self.answer.lock().unwrap() = (status, body);
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

fn fast_timing(min_refetch: Duration) -> jwks::Timing {
    jwks::Timing {
        min_refetch,
        on_demand_wait: Duration::from_secs(5),
        fetch_timeout: Duration::from_secs(5),
        backoff_initial: Duration::from_millis(20),
        backoff_max: Duration::from_millis(50),
    }
}

fn url_authn(server: &JwksServer, min_refetch: Duration) -> Authenticator {
    let cfg = jwt_config(KeySource::JwksUrl(server.url.clone()), &[Algorithm::RS256]);
    Authenticator::with_timing(&cfg, None, Duration::from_secs(1), fast_timing(min_refetch))
        .unwrap()
}

async fn wait_ready(a: &Authenticator) {
    for _ in 0..500 {
        if a.is_ready() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("JWKS never loaded");
}

#[tokio::test]
async fn not_ready_until_the_jwks_loads() {
    let server = JwksServer::start(500, "oops".into()).await;
    let a = url_authn(&server, JWKS_MIN_REFETCH);
    let t = sign("rsa1", Algorithm::RS256, Some("k1"), &claims());
    assert!(!a.is_ready());
    assert_eq!(
        check(&a, &t).await.unwrap_err(),
        ProxyError::JwksUnavailable
    );
    a.start();
    a.start(); // idempotent
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(
        server.hits() >= 2,
        "retries with backoff ({} hits)",
        server.hits()
    );
    assert!(!a.is_ready());
    assert_eq!(
        check(&a, &t).await.unwrap_err(),
        ProxyError::JwksUnavailable
    );
    // a document without usable keys does not make it ready either
    server.set(200, r#"{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}"#.into());
    tokio::time::sleep(Duration::from_millis(120)).await;
    assert!(!a.is_ready());

    server.set(200, jwks(&[("k1", "rsa1")]));
    wait_ready(&a).await;
    assert_eq!(check(&a, &t).await.unwrap().tenant, "acme");
}

#[tokio::test]
async fn unknown_kid_refetches_at_most_once_per_interval() {
    let min = Duration::from_millis(400);
    let server = JwksServer::start(200, jwks(&[("k1", "rsa1")])).await;
    let a = url_authn(&server, min);
    a.start();
    wait_ready(&a).await;
    assert_eq!(server.hits(), 1);

    // rotation: the IdP now publishes k2 too
    server.set(200, jwks(&[("k1", "rsa1"), ("k2", "rsa2")]));
    let t2 = sign("rsa2", Algorithm::RS256, Some("k2"), &claims());
    // right after the initial fetch the refetch is rate-limited
    assert!(is_invalid(&check(&a, &t2).await));
    assert_eq!(server.hits(), 1);
    tokio::time::sleep(min + Duration::from_millis(50)).await;
    assert_eq!(check(&a, &t2).await.unwrap().tenant, "acme");
    assert_eq!(server.hits(), 2);

    // another new kid within the interval: no fetch, invalid
    server.set(200, jwks(&[("k1", "rsa1"), ("k2", "rsa2"), ("k3", "rsa1")]));
    let t3 = sign("rsa1", Algorithm::RS256, Some("k3"), &claims());
    for _ in 0..5 {
        assert!(is_invalid(&check(&a, &t3).await));
    }
    assert_eq!(server.hits(), 2);
    tokio::time::sleep(min + Duration::from_millis(50)).await;
    assert!(check(&a, &t3).await.is_ok());
    assert_eq!(server.hits(), 3);
    // known kids never fetch
    assert!(check(&a, &t2).await.is_ok());
    assert_eq!(server.hits(), 3);
    // nor do tokens rejected on their claims (expired, wrong issuer)
    tokio::time::sleep(min + Duration::from_millis(50)).await;
    let mut c = claims();
    c["exp"] = json!(now() - 60);
    assert!(is_invalid(
        &check(&a, &sign("rsa1", Algorithm::RS256, Some("k9"), &c)).await
    ));
    let mut c = claims();
    c["iss"] = json!("https://elsewhere.example");
    assert!(is_invalid(
        &check(&a, &sign("rsa1", Algorithm::RS256, Some("k9"), &c)).await
    ));
    assert_eq!(server.hits(), 3);
}

#[tokio::test]
async fn removed_key_stops_verifying_cached_tokens() {
    let server = JwksServer::start(200, jwks(&[("k1", "rsa1")])).await;
    let a = url_authn(&server, Duration::from_secs(3600));
    assert!(jwks::refresh_now(jwt(&a)).await.unwrap());
    let t1 = sign("rsa1", Algorithm::RS256, Some("k1"), &claims());
    assert!(check(&a, &t1).await.is_ok());
    assert_eq!(jwt(&a).cache.len(), 1);

    server.set(200, jwks(&[("k2", "rsa2")]));
    assert!(jwks::refresh_now(jwt(&a)).await.unwrap());
    assert!(is_invalid(&check(&a, &t1).await));
}

#[tokio::test]
async fn failed_refresh_keeps_the_last_good_keys() {
    let server = JwksServer::start(200, jwks(&[("k1", "rsa1")])).await;
    let a = url_authn(&server, Duration::from_secs(3600));
    a.start();
    wait_ready(&a).await;
    let t1 = sign("rsa1", Algorithm::RS256, Some("k1"), &claims());
    assert!(check(&a, &t1).await.is_ok());

    for (status, body) in [
        (503, "down".to_string()),
        (200, "not json".into()),
        (200, r#"{"keys":[]}"#.into()),
    ] {
        server.set(status, body);
        assert!(jwks::refresh_now(jwt(&a)).await.is_err());
        assert!(a.is_ready());
        assert_eq!(jwt(&a).cache.len(), 1, "cache kept");
        assert!(check(&a, &t1).await.is_ok());
    }
}

#[tokio::test]
async fn reload_seeds_keys_from_the_previous_authenticator() {
    let server = JwksServer::start(200, jwks(&[("k1", "rsa1")])).await;
    let old = url_authn(&server, JWKS_MIN_REFETCH);
    let new = url_authn(&server, JWKS_MIN_REFETCH);
    assert!(!new.seed_from(&old), "old has no keys yet");
    jwks::refresh_now(jwt(&old)).await.unwrap();
    assert!(new.seed_from(&old));
    assert!(new.is_ready());
    let t1 = sign("rsa1", Algorithm::RS256, Some("k1"), &claims());
    assert!(check(&new, &t1).await.is_ok());
    assert_eq!(server.hits(), 1);
}
