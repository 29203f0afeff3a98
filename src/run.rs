//! `tenantgate run`: start the sidecar, then wait for signals. SIGTERM and
//! SIGINT drain and exit 0; SIGHUP reloads the config file (SPEC §10): the
//! new file is validated completely first, and an invalid one leaves the
//! running config in force.

use crate::config::Config;
use crate::server::{build_snapshot, Sidecar};
use std::path::PathBuf;
use std::sync::Arc;
use tokio::signal::unix::{signal, SignalKind};

pub async fn run(cfg: Config, path: PathBuf) -> Result<(), String> {
    let sidecar = Sidecar::start(cfg, Some(path.clone())).await?;
    let mut term = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| e.to_string())?;
    let mut hup = signal(SignalKind::hangup()).map_err(|e| e.to_string())?;
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => reload(&sidecar, &path).await,
        }
    }
    tracing::info!("shutting down: draining in-flight requests");
    sidecar.shutdown().await;
    tracing::info!("stopped");
    Ok(())
}

pub async fn reload(sidecar: &Sidecar, path: &std::path::Path) {
    match crate::config::load_file(path) {
        Ok(cfg) => match build_snapshot(cfg, Some(&sidecar.proxy().snapshot.load_full())).await {
            Ok(snap) => {
                sidecar.proxy().snapshot.store(Arc::new(snap));
                tracing::info!(path = %path.display(), "configuration reloaded");
            }
            Err(e) => tracing::error!(path = %path.display(), "reload failed, keeping the running config: {e}"),
        },
        Err(errors) => {
            for e in &errors {
                tracing::error!(path = %path.display(), "reload rejected: {e}");
            }
            tracing::error!("reload failed with {} error(s), keeping the running config", errors.len());
        }
    }
}
