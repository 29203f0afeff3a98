//! Listeners: the proxy listener (app -> sidecar, optional TLS) and the admin
//! listener, with header timeout, keep-alive and graceful drain.

use crate::audit::Audit;
use crate::aws::credentials::CredentialProvider;
use crate::authn::Authenticator;
use crate::config::{Config, CredentialsConfig, StaticCredentialsEnv};
use crate::conn::{ClientConn, WatchedTcp};
use crate::proxy::{Proxy, Snapshot};
use crate::upstream::{build_client, Endpoints};
use crate::protocol::Protocol;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Process state the admin endpoints report.
pub struct ServerState {
    pub proxy: Arc<Proxy>,
    listening: AtomicBool,
    shutting_down: AtomicBool,
}

impl ServerState {
    pub fn not_ready_reason(&self) -> Option<&'static str> {
        if self.shutting_down.load(Ordering::Acquire) {
            Some("shutting down")
        } else if !self.listening.load(Ordering::Acquire) {
            Some("listeners not bound")
        } else if !self.proxy.is_ready() {
            Some("JWT signing keys not loaded")
        } else {
            None
        }
    }
}

impl crate::admin::AdminView for ServerState {
    fn not_ready_reason(&self) -> Option<&'static str> {
        ServerState::not_ready_reason(self)
    }

    fn scrape(&self) -> crate::admin::ScrapeView {
        let snapshot = self.proxy.snapshot.load();
        crate::admin::ScrapeView {
            verified_tokens_cached: snapshot.authn.cached_tokens(),
            buffered_bytes: self.proxy.budget.held(),
            creds: snapshot.creds.clone(),
        }
    }
}

pub struct Sidecar {
    pub proxy_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub state: Arc<ServerState>,
    pub config_path: Option<PathBuf>,
    shutdown_tx: watch::Sender<bool>,
    admin_shutdown_tx: watch::Sender<bool>,
    proxy_task: JoinHandle<GracefulShutdown>,
    admin_task: JoinHandle<GracefulShutdown>,
    grace: Duration,
}

/// Build the per-config part of the proxy (identity, credentials, endpoints).
/// On reload, `previous` hands over the last good JWKS so the new snapshot is
/// ready at once when the key source did not change.
pub async fn build_snapshot(config: Config, previous: Option<&Snapshot>) -> Result<Snapshot, String> {
    let authn = Authenticator::new(&config.identity, config.aws.ca_file.as_deref(), config.aws.connect_timeout)?;
    if let Some(prev) = previous {
        authn.seed_from(&prev.authn);
    }
    authn.start();
    // Cached STS sessions survive a reload that leaves the credentials
    // settings alone; anything that could change who a request is signed as
    // builds a fresh provider.
    let creds = match previous {
        Some(prev) if CredentialInputs::of(&prev.config) == CredentialInputs::of(&config) => prev.creds.clone(),
        _ => {
            let creds = CredentialProvider::from_config(&config).await?;
            creds.start(&config);
            creds
        }
    };
    let endpoints = Endpoints::from_config(&config.aws)?;
    let redactor = crate::filter::redact::Redactor::new(&config.redaction);
    Ok(Snapshot { config: Arc::new(config), redactor, authn, creds, endpoints })
}

/// Everything the credential provider is built from: the `[credentials]`
/// table, the region, the STS endpoint, the connect timeout and extra trust
/// roots of the STS client and, for static keys, which env vars each tenant
/// names. Equal inputs keep the provider (and its cached STS sessions).
#[derive(PartialEq)]
struct CredentialInputs<'a> {
    credentials: &'a CredentialsConfig,
    region: &'a str,
    sts: Option<&'a http::Uri>,
    connect_timeout: Duration,
    ca_file: Option<&'a Path>,
    /// Per listed tenant, then `""` for `[tenant_defaults]` when unlisted
    /// tenants are admitted.
    statics: Vec<(&'a str, Option<&'a StaticCredentialsEnv>)>,
}

impl<'a> CredentialInputs<'a> {
    fn of(cfg: &'a Config) -> Self {
        let statics = cfg
            .tenants
            .iter()
            .map(|(t, p)| (t.as_str(), p.static_credentials.as_ref()))
            .chain(cfg.unlisted.iter().map(|p| ("", p.static_credentials.as_ref())))
            .collect();
        CredentialInputs {
            credentials: &cfg.credentials,
            region: &cfg.aws.region,
            sts: cfg.aws.endpoints.sts.as_ref(),
            connect_timeout: cfg.aws.connect_timeout,
            ca_file: cfg.aws.ca_file.as_deref(),
            statics,
        }
    }
}

impl Sidecar {
    /// Binds both listeners (port 0 allowed), loads keys, spawns the serving
    /// tasks. Audit records go to stdout.
    pub async fn start(config: Config, config_path: Option<PathBuf>) -> Result<Sidecar, String> {
        let audit = Audit::stdout_with_queue(config.server.audit_queue_lines);
        Self::start_with_audit(config, config_path, audit).await
    }

    pub async fn start_with_audit(
        config: Config,
        config_path: Option<PathBuf>,
        audit: Arc<Audit>,
    ) -> Result<Sidecar, String> {
        // Every request is checked against the embedded AWS models: if they
        // do not load, refuse to start rather than refuse every request.
        crate::validate::check_models().map_err(|e| format!("embedded AWS service models: {e}"))?;
        let listen = config.server.listen;
        let admin_listen = config.server.admin_listen;
        let header_timeout = config.server.header_timeout;
        let grace = config.server.shutdown_grace;
        let tls = match &config.server.tls {
            Some(t) => Some(tokio_rustls::TlsAcceptor::from(Arc::new(crate::tls::server_config(
                &t.cert_file,
                &t.key_file,
            )?))),
            None => None,
        };
        let metrics = crate::metrics::init(config.server.metrics_max_tenants);
        // Every audit record (and every dropped audit line) feeds the
        // process metrics; the audit sink itself does not know them.
        audit.set_observer(Arc::new(metrics));
        let client = build_client(&config.aws)?;
        let rate_limit = config.rate_limit.backend.clone();
        let snapshot = build_snapshot(config, None).await?;
        let proxy = Proxy::new(snapshot, client, audit);
        // A shared backend that does not answer is not fatal (nor a reason
        // to be unready): on_backend_error applies while it is probed.
        proxy.limiter.configure(&rate_limit).await?;
        let state = Arc::new(ServerState {
            proxy: proxy.clone(),
            listening: AtomicBool::new(false),
            shutting_down: AtomicBool::new(false),
        });

        let proxy_l = bind_proxy_listener(listen).map_err(|e| format!("server.listen {listen}: {e}"))?;
        let admin_l = TcpListener::bind(admin_listen)
            .await
            .map_err(|e| format!("server.admin_listen {admin_listen}: {e}"))?;
        let proxy_addr = proxy_l.local_addr().map_err(|e| e.to_string())?;
        let admin_addr = admin_l.local_addr().map_err(|e| e.to_string())?;
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        // The admin listener outlives the proxy's drain: /healthz stays 200
        // and /readyz answers 503 until the process exits.
        let (admin_shutdown_tx, admin_shutdown_rx) = watch::channel(false);

        let p = proxy.clone();
        let proxy_task = tokio::spawn(accept_loop(proxy_l, shutdown_rx.clone(), header_timeout, move |stream, graceful| {
            let p = p.clone();
            let tls = tls.clone();
            let watcher = graceful.watcher();
            tokio::spawn(async move {
                // Read per connection: a reload applies to new connections
                // (and each request sets its own, see `Proxy::handle_on`).
                let conn = ClientConn::new(p.snapshot.load().config.server.client_write_timeout);
                let stream = WatchedTcp::new(stream, conn.clone());
                // HTTP/1.1: the connection's watchdog (one response at a
                // time). HTTP/2: the connection's watchdog for a client that
                // reads nothing at all, with the longer of the two write
                // timeouts (whole and streamed responses share it), and one
                // per stream for a client that stops granting a stream
                // window (`conn::WatchedStream`).
                let service = |protocol: Protocol| {
                    let conn = conn.clone();
                    let p = p.clone();
                    if protocol == Protocol::Http2 {
                        let cfg = p.snapshot.load().config.clone();
                        conn.begin_request(0, cfg.server.client_write_timeout.max(cfg.aws.stream_idle_timeout));
                    }
                    service_fn(move |req| {
                        let p = p.clone();
                        let conn = conn.clone();
                        async move {
                            if protocol == Protocol::Http1 {
                                return Ok::<_, Infallible>(p.handle_on(req, Some(&conn)).await.map(Served::Whole));
                            }
                            let stream = ClientConn::stream_of(&conn);
                            let resp = p.handle_on(req, Some(&stream)).await;
                            let on_stall = move |stall: crate::conn::Stall| {
                                crate::metrics::global().client_write_timeout(stall.streamed);
                                tracing::warn!(
                                    request_id = p.request_id_of(stall.request),
                                    streamed = stall.streamed,
                                    "HTTP/2 client granted no window to the response for {:?}; stream cut off",
                                    stall.timeout
                                );
                            };
                            Ok(crate::conn::watch_stream(resp, stream, on_stall).map(Served::Stream))
                        }
                    })
                };
                match tls {
                    None => {
                        let (protocol, stream) = match crate::protocol::by_preface(stream, header_timeout).await {
                            Ok(sniffed) => sniffed,
                            Err(e) => return tracing::debug!("proxy connection ended before a request: {e}"),
                        };
                        let builder = crate::protocol::builder(protocol, header_timeout);
                        let served = watcher.watch(builder.serve_connection(TokioIo::new(stream), service(protocol)));
                        serve_watched(served, &conn, &p).await;
                    }
                    Some(acceptor) => {
                        let accepted = tokio::time::timeout(header_timeout, acceptor.accept(stream)).await;
                        let tls_stream = match accepted {
                            Ok(Ok(s)) => s,
                            Ok(Err(e)) => return tracing::debug!("TLS handshake failed: {e}"),
                            Err(_) => return tracing::debug!("TLS handshake timed out"),
                        };
                        let protocol = crate::protocol::by_alpn(tls_stream.get_ref().1.alpn_protocol());
                        let builder = crate::protocol::builder(protocol, header_timeout);
                        let served = watcher.watch(builder.serve_connection(TokioIo::new(tls_stream), service(protocol)));
                        serve_watched(served, &conn, &p).await;
                    }
                }
            });
        }));

        let st = state.clone();
        let admin_task = tokio::spawn(accept_loop(admin_l, admin_shutdown_rx, header_timeout, move |stream, graceful| {
            let st = st.clone();
            let svc = service_fn(move |req| {
                let st = st.clone();
                async move { Ok::<_, Infallible>(crate::admin::handle(st.as_ref(), &req)) }
            });
            let conn = graceful.watch(http_builder(header_timeout).serve_connection(TokioIo::new(stream), svc));
            tokio::spawn(async move {
                let _ = conn.await;
            });
        }));
        state.listening.store(true, Ordering::Release);
        tracing::info!(%proxy_addr, %admin_addr, "tenantgate listening");
        Ok(Sidecar {
            proxy_addr,
            admin_addr,
            state,
            config_path,
            shutdown_tx,
            admin_shutdown_tx,
            proxy_task,
            admin_task,
            grace,
        })
    }

    pub fn proxy(&self) -> &Arc<Proxy> {
        &self.state.proxy
    }

    /// Graceful: readiness goes false at once, listeners stop accepting,
    /// in-flight requests and open streams get `shutdown_grace_secs` to end.
    pub async fn shutdown(self) {
        self.state.shutting_down.store(true, Ordering::Release);
        let _ = self.shutdown_tx.send(true);
        let proxy_graceful = self.proxy_task.await.ok();
        let drain = async {
            if let Some(g) = proxy_graceful {
                g.shutdown().await;
            }
        };
        if tokio::time::timeout(self.grace, drain).await.is_err() {
            tracing::warn!("shutdown grace of {:?} elapsed with requests still in flight", self.grace);
        }
        let _ = self.admin_shutdown_tx.send(true);
        if let Ok(g) = self.admin_task.await {
            let _ = tokio::time::timeout(Duration::from_secs(1), g.shutdown()).await;
        }
    }
}

/// The proxy listener, as `TcpListener::bind` makes it (address reuse,
/// backlog 1024), with the fixed send buffer its connections inherit
/// (`conn::CLIENT_SEND_BUFFER`).
pub(crate) fn bind_proxy_listener(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let sock = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    sock.set_reuseaddr(true)?;
    sock.set_send_buffer_size(crate::conn::CLIENT_SEND_BUFFER)?;
    sock.bind(addr)?;
    sock.listen(1024)
}

/// Serves one proxy connection until it ends, or until a response write has
/// waited on the client for longer than the timeout in force; then the
/// connection is dropped, which drops the response body (its slot is
/// released and its audit line says `client_stalled`) and resets the socket.
async fn serve_watched<F, E>(served: F, conn: &ClientConn, proxy: &Proxy)
where
    F: std::future::Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    tokio::select! {
        biased;
        r = served => {
            if let Err(e) = r {
                tracing::debug!("proxy connection ended: {e}");
            }
        }
        stall = conn.stalled() => {
            let request_id = proxy.request_id_of(stall.request);
            crate::metrics::global().client_write_timeout(stall.streamed);
            tracing::warn!(
                request_id,
                streamed = stall.streamed,
                "client read nothing of the response for {:?}; connection closed",
                stall.timeout
            );
        }
    }
}

/// A proxy response body: as the pipeline made it (HTTP/1.1, watched by the
/// connection's watchdog) or with its HTTP/2 stream's watchdog.
enum Served {
    Whole(crate::body::ProxyBody),
    Stream(crate::conn::WatchedStream<crate::body::ProxyBody>),
}

impl http_body::Body for Served {
    type Data = bytes::Bytes;
    type Error = crate::body::BoxError;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, Self::Error>>> {
        match self.get_mut() {
            Served::Whole(b) => std::pin::Pin::new(b).poll_frame(cx),
            Served::Stream(b) => std::pin::Pin::new(b).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Served::Whole(b) => b.is_end_stream(),
            Served::Stream(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> http_body::SizeHint {
        match self {
            Served::Whole(b) => b.size_hint(),
            Served::Stream(b) => b.size_hint(),
        }
    }
}

/// The admin listener's builder: HTTP/1.1 only (probes and scrapes).
fn http_builder(header_timeout: Duration) -> http1::Builder {
    let mut b = http1::Builder::new();
    b.timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .keep_alive(true)
        .max_buf_size(crate::protocol::H1_MAX_BUF);
    b
}

/// Accepts until shutdown; returns the graceful handle that watches every
/// connection it accepted.
async fn accept_loop<F>(
    listener: TcpListener,
    mut shutdown: watch::Receiver<bool>,
    _header_timeout: Duration,
    serve: F,
) -> GracefulShutdown
where
    F: Fn(TcpStream, &GracefulShutdown),
{
    let graceful = GracefulShutdown::new();
    loop {
        tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, _peer)) => {
                    let _ = stream.set_nodelay(true);
                    serve(stream, &graceful);
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off, never spin.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = shutdown.changed() => break,
        }
    }
    graceful
}

#[cfg(test)]
#[path = "server_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "server_h2_tests.rs"]
mod h2_tests;
