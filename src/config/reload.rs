//! Config file watch (docs/reference.md §10). The reload itself (validate, swap, keep the
//! old config on error) is `run::reload`; this decides *when*.
//!
//! Polling, no inotify: every `interval` the watcher takes a `Fingerprint` of
//! the path — the file it resolves to through every symlink, its mtime and
//! size, and a SHA-256 of its content (a config file is small). That sees an
//! in-place rewrite, an atomic rename over the path, and a Kubernetes
//! ConfigMap update, where the mounted directory swaps its `..data` symlink
//! so the path stays the same while the file behind it is new.
//!
//! Files the configuration reads (Cedar policy files) are companions of
//! the path: their content is part of the fingerprint, so editing a policy
//! file reloads the configuration like editing the file itself.
//!
//! A change is reported when the file behind the path or its content differs
//! from the one in force (a `touch` alone reloads nothing; a ConfigMap swap
//! with the same config but other sibling files, such as a JWKS, does). It is
//! reported once the file has held still for a short settle time, so an
//! editor writing in several steps gives one reload. A path that is missing
//! or unreadable (mid-swap) is tried again on the next tick.

use sha2::{Digest, Sha256};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// How often the config path is looked at.
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);
/// Longest wait for a changed file to hold still before it is reported.
const MAX_SETTLE: Duration = Duration::from_millis(500);

/// What the config path resolves to, at one moment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fingerprint {
    target: PathBuf,
    modified: Option<SystemTime>,
    len: u64,
    digest: [u8; 32],
}

impl Fingerprint {
    /// Reads `path` through its symlinks. Fails while the path is missing,
    /// and when the file behind it was swapped during the read.
    pub fn of(path: &Path) -> io::Result<Fingerprint> {
        Self::of_with(path, &[])
    }

    /// `of`, with the content of each companion file in the digest (a
    /// missing companion counts as empty: the reload then reports it).
    pub fn of_with(path: &Path, companions: &[PathBuf]) -> io::Result<Fingerprint> {
        let target = std::fs::canonicalize(path)?;
        let meta = std::fs::metadata(&target)?;
        let mut bytes = std::fs::read(&target)?;
        for c in companions {
            bytes.extend_from_slice(c.as_os_str().as_encoded_bytes());
            bytes.push(0);
            bytes.extend_from_slice(&Sha256::digest(std::fs::read(c).unwrap_or_default()));
        }
        if std::fs::canonicalize(path)? != target {
            return Err(io::Error::new(io::ErrorKind::Interrupted, "config file swapped while reading it"));
        }
        Ok(Fingerprint {
            target,
            modified: meta.modified().ok(),
            len: meta.len(),
            digest: Sha256::digest(&bytes).into(),
        })
    }

    /// Whether loading `self` could give another config than `other`.
    pub fn changed_from(&self, other: &Fingerprint) -> bool {
        self.target != other.target || self.digest != other.digest
    }
}

/// The fingerprint of the file in force, shared by the watcher and SIGHUP
/// reloads, so one edit is reloaded once whichever noticed it first.
#[derive(Clone, Debug, Default)]
pub struct InForce(Arc<Mutex<Option<Fingerprint>>>, Arc<Mutex<Vec<PathBuf>>>);

impl InForce {
    pub fn new(fp: Option<Fingerprint>) -> Self {
        InForce(Arc::new(Mutex::new(fp)), Arc::default())
    }

    /// The companion files of the configuration in force.
    pub fn companions(&self) -> Vec<PathBuf> {
        self.1.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn set_companions(&self, files: Vec<PathBuf>) {
        *self.1.lock().unwrap_or_else(|e| e.into_inner()) = files;
    }

    /// The fingerprint of `path` with the companions in force.
    pub fn fingerprint(&self, path: &Path) -> io::Result<Fingerprint> {
        Fingerprint::of_with(path, &self.companions())
    }

    /// Records `fp` as in force; true when it differs from what was.
    pub fn set(&self, fp: Fingerprint) -> bool {
        let mut cur = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let changed = cur.as_ref().is_none_or(|c| fp.changed_from(c));
        *cur = Some(fp);
        changed
    }

    fn differs(&self, fp: &Fingerprint) -> bool {
        let cur = self.0.lock().unwrap_or_else(|e| e.into_inner());
        cur.as_ref().is_none_or(|c| fp.changed_from(c))
    }
}

async fn fingerprint(path: &Path, in_force: InForce) -> io::Result<Fingerprint> {
    let p = path.to_path_buf();
    tokio::task::spawn_blocking(move || in_force.fingerprint(&p))
        .await
        .unwrap_or_else(|e| Err(io::Error::other(e.to_string())))
}

/// Watches `path` every `interval` until `stop` turns true (or its sender is
/// gone). Each change is one message on the returned channel; messages never
/// queue up (one pending reload reads the newest file anyway).
pub fn spawn(
    path: PathBuf,
    interval: Duration,
    in_force: InForce,
    stop: watch::Receiver<bool>,
) -> (JoinHandle<()>, mpsc::Receiver<()>) {
    let (tx, rx) = mpsc::channel(1);
    let task = tokio::spawn(watch_loop(path, interval, in_force, stop, tx));
    (task, rx)
}

async fn watch_loop(
    path: PathBuf,
    interval: Duration,
    in_force: InForce,
    mut stop: watch::Receiver<bool>,
    tx: mpsc::Sender<()>,
) {
    let settle = (interval / 2).min(MAX_SETTLE);
    let mut last_error: Option<String> = None;
    // Sleeps for `d`; false when the watcher is to stop.
    async fn pause(stop: &mut watch::Receiver<bool>, d: Duration) -> bool {
        if *stop.borrow() {
            return false;
        }
        tokio::select! {
            _ = tokio::time::sleep(d) => true,
            r = stop.changed() => r.is_ok() && !*stop.borrow(),
        }
    }
    while pause(&mut stop, interval).await {
        let seen = match fingerprint(&path, in_force.clone()).await {
            Ok(fp) => {
                if last_error.take().is_some() {
                    tracing::info!(path = %path.display(), "config file readable again");
                }
                fp
            }
            Err(e) => {
                let msg = e.to_string();
                if last_error.as_deref() != Some(msg.as_str()) {
                    tracing::warn!(path = %path.display(), "config file not readable, retrying: {msg}");
                    last_error = Some(msg);
                }
                continue;
            }
        };
        if !in_force.differs(&seen) {
            continue;
        }
        // Changed: report it once it has held still for `settle`.
        if !pause(&mut stop, settle).await {
            break;
        }
        match fingerprint(&path, in_force.clone()).await {
            Ok(again) if again == seen => {}
            _ => continue,
        }
        if in_force.set(seen) {
            tracing::info!(path = %path.display(), "config file changed");
            if let Err(mpsc::error::TrySendError::Closed(())) = tx.try_send(()) {
                break;
            }
        }
    }
}

#[cfg(test)]
#[path = "reload_tests.rs"]
mod tests;
