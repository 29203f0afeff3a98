//! `tenantgate run`: start the sidecar, then wait for signals. SIGTERM and
//! SIGINT drain and exit 0; SIGHUP and a change of the config file (polled,
//! `config::reload`) reload it (docs/reference.md §10): the new file is validated
//! completely first, and an invalid one leaves the running config in force.
//! Reloads run one at a time, here.

use crate::config::reload::{self, Fingerprint, InForce};
use crate::config::Config;
use crate::server::{build_snapshot, Sidecar};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;

pub async fn run(cfg: Config, path: PathBuf) -> Result<(), String> {
    // The file in force is the one just loaded (taken before anything slow).
    // Policy files are part of what is in force (`Fingerprint::of_with`).
    let in_force = InForce::new(Fingerprint::of_with(&path, &cfg.policy.files).ok());
    in_force.set_companions(cfg.policy.files.clone());
    let sidecar = Sidecar::start(cfg, Some(path.clone())).await?;
    let mut term = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| e.to_string())?;
    let mut hup = signal(SignalKind::hangup()).map_err(|e| e.to_string())?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let (watcher, mut changed) = reload::spawn(path.clone(), reload::POLL_INTERVAL, in_force.clone(), stop_rx);
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => {
                tracing::info!("SIGHUP: reloading the configuration");
                // Whatever is on disk now is what this reload applies, so the
                // watcher does not reload the same edit again.
                if let Ok(fp) = in_force.fingerprint(&path) {
                    in_force.set(fp);
                }
                reload_tracking(&sidecar, &path, &in_force).await;
            }
            Some(()) = changed.recv() => {
                reload_tracking(&sidecar, &path, &in_force).await;
            }
        }
    }
    tracing::info!("shutting down: draining in-flight requests");
    let _ = stop_tx.send(true);
    let _ = watcher.await;
    sidecar.shutdown().await;
    tracing::info!("stopped");
    Ok(())
}

/// `reload`, then the policy files of the configuration now in force become
/// the companions the watcher fingerprints (and the fingerprint in force is
/// retaken with them, so the new set is not reloaded again).
async fn reload_tracking(sidecar: &Sidecar, path: &Path, in_force: &InForce) {
    if reload(sidecar, path).await {
        let files = sidecar.proxy().snapshot.load().config.policy.files.clone();
        if files != in_force.companions() {
            in_force.set_companions(files);
            if let Ok(fp) = in_force.fingerprint(path) {
                in_force.set(fp);
            }
        }
    }
}

/// Loads, validates and builds the new snapshot, then swaps it in; on any
/// error the running config stays. Counted in
/// `tenantgate_config_reloads_total{result}`. Returns whether it applied.
pub async fn reload(sidecar: &Sidecar, path: &Path) -> bool {
    let metrics = crate::metrics::global();
    let cfg = match crate::config::load_file(path) {
        Ok(cfg) => cfg,
        Err(errors) => {
            for e in &errors {
                tracing::error!(path = %path.display(), "reload rejected: {e}");
            }
            tracing::error!("reload failed with {} error(s), keeping the running config", errors.len());
            metrics.config_reload(false);
            return false;
        }
    };
    let old = sidecar.proxy().snapshot.load_full();
    warn_restart_only(&old.config, &cfg);
    let rate_limit = cfg.rate_limit.backend.clone();
    match build_snapshot(cfg, Some(&old)).await {
        Ok(snap) => {
            // A new redis_url, on_backend_error or backend applies with the
            // config (a new backend connects first, bounded by ~1 s). Only a
            // URL the client cannot use fails here, and validation already
            // rejects those.
            if let Err(e) = sidecar.proxy().limiter.configure(&rate_limit).await {
                tracing::error!(path = %path.display(), "reload failed, keeping the running config: {e}");
                metrics.config_reload(false);
                return false;
            }
            if !Arc::ptr_eq(&old.creds, &snap.creds) {
                metrics.retire_credentials(&old.creds);
            }
            sidecar.proxy().snapshot.store(Arc::new(snap));
            metrics.config_reload(true);
            tracing::info!(path = %path.display(), "configuration reloaded");
            true
        }
        Err(e) => {
            tracing::error!(path = %path.display(), "reload failed, keeping the running config: {e}");
            metrics.config_reload(false);
            false
        }
    }
}

/// Listeners are bound once: a new address applies at the next restart.
fn warn_restart_only(old: &Config, new: &Config) {
    if old.server.listen != new.server.listen {
        tracing::warn!("server.listen changed to {}: takes effect on restart", new.server.listen);
    }
    if old.server.admin_listen != new.server.admin_listen {
        tracing::warn!("server.admin_listen changed to {}: takes effect on restart", new.server.admin_listen);
    }
}
