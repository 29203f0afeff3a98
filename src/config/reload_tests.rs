use super::*;
use std::fs;
use std::os::unix::fs::symlink;
use tokio::time::timeout;

const TICK: Duration = Duration::from_millis(40);

struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Dir {
        let mut b = [0u8; 8];
        let _ = getrandom::fill(&mut b);
        let p = std::env::temp_dir().join(format!("tenantgate-reload-{name}-{}", u64::from_le_bytes(b)));
        fs::create_dir_all(&p).unwrap();
        Dir(p)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

struct Watch {
    rx: mpsc::Receiver<()>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

fn start(path: &Path) -> Watch {
    start_with(path, TICK)
}

fn start_with(path: &Path, tick: Duration) -> Watch {
    let in_force = InForce::new(Some(Fingerprint::of(path).unwrap()));
    let (stop, stop_rx) = watch::channel(false);
    let (task, rx) = spawn(path.to_path_buf(), tick, in_force, stop_rx);
    Watch { rx, stop, task }
}

impl Watch {
    /// Exactly one change is reported, and nothing more for a while after.
    async fn expect_one(&mut self) {
        timeout(TICK * 50, self.rx.recv()).await.expect("no change reported").expect("watcher ended");
        self.expect_none().await;
    }

    async fn expect_none(&mut self) {
        assert!(timeout(TICK * 6, self.rx.recv()).await.is_err(), "unexpected change reported");
    }

    async fn stop(self) {
        self.stop.send(true).unwrap();
        timeout(Duration::from_secs(2), self.task).await.expect("watcher did not stop").unwrap();
    }
}

/// Writes `text` to a sibling temp file and renames it over `path`.
fn replace(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, text).unwrap();
    fs::rename(&tmp, path).unwrap();
}

#[tokio::test]
async fn rewrite_in_place_reloads_once() {
    let d = Dir::new("inplace");
    let path = d.0.join("config.toml");
    fs::write(&path, "a = 1\n").unwrap();
    let mut w = start(&path);
    w.expect_none().await;
    fs::write(&path, "a = 2\n").unwrap();
    w.expect_one().await;
    // Same content again (a touch, a no-op save): nothing to reload.
    fs::write(&path, "a = 2\n").unwrap();
    w.expect_none().await;
    w.stop().await;
}

#[tokio::test]
async fn edit_in_several_writes_reloads_once() {
    let d = Dir::new("steps");
    let path = d.0.join("config.toml");
    fs::write(&path, "a = 1\n").unwrap();
    // A slower tick (100 ms settle), so a busy test machine does not
    // stall the writer long enough to look like two edits.
    let mut w = start_with(&path, TICK * 5);
    // An editor truncating and writing in pieces, faster than the settle time.
    for i in 0..8 {
        fs::write(&path, "b = 1\n".repeat(i)).unwrap();
        tokio::time::sleep(TICK / 4).await;
    }
    w.expect_one().await;
    w.stop().await;
}

#[tokio::test]
async fn atomic_rename_reloads_once() {
    let d = Dir::new("rename");
    let path = d.0.join("config.toml");
    fs::write(&path, "a = 1\n").unwrap();
    let mut w = start(&path);
    replace(&path, "a = 2\n");
    w.expect_one().await;
    w.stop().await;
}

/// A ConfigMap volume: `config.toml -> ..data/config.toml`,
/// `..data -> ..2024_01_01_v1`; an update writes a new timestamped dir and
/// renames a new `..data` symlink over the old one.
#[tokio::test]
async fn configmap_symlink_swap_reloads_once() {
    let d = Dir::new("configmap");
    let v1 = d.0.join("..v1");
    fs::create_dir(&v1).unwrap();
    fs::write(v1.join("config.toml"), "a = 1\n").unwrap();
    symlink("..v1", d.0.join("..data")).unwrap();
    symlink("..data/config.toml", d.0.join("config.toml")).unwrap();
    let path = d.0.join("config.toml");
    let mut w = start(&path);
    w.expect_none().await;

    let swap = |version: &str, text: &str| {
        let dir = d.0.join(version);
        fs::create_dir(&dir).unwrap();
        fs::write(dir.join("config.toml"), text).unwrap();
        symlink(version, d.0.join("..data_tmp")).unwrap();
        fs::rename(d.0.join("..data_tmp"), d.0.join("..data")).unwrap();
    };
    swap("..v2", "a = 2\n");
    fs::remove_dir_all(&v1).unwrap();
    w.expect_one().await;
    // Same config text, but a new version dir (another key of the ConfigMap
    // changed, e.g. the JWKS next to it): reload, since files it names moved.
    swap("..v3", "a = 2\n");
    w.expect_one().await;
    w.stop().await;
}

#[tokio::test]
async fn removed_then_restored_is_retried_never_fatal() {
    let d = Dir::new("removed");
    let path = d.0.join("config.toml");
    fs::write(&path, "a = 1\n").unwrap();
    let mut w = start(&path);
    fs::remove_file(&path).unwrap();
    w.expect_none().await;
    fs::write(&path, "a = 1\n").unwrap();
    w.expect_none().await; // back as it was: nothing changed
    fs::remove_file(&path).unwrap();
    tokio::time::sleep(TICK * 3).await;
    fs::write(&path, "a = 3\n").unwrap();
    w.expect_one().await;
    w.stop().await;
}

#[tokio::test]
async fn a_sighup_reload_is_not_repeated_by_the_watcher() {
    let d = Dir::new("sighup");
    let path = d.0.join("config.toml");
    fs::write(&path, "a = 1\n").unwrap();
    let in_force = InForce::new(Some(Fingerprint::of(&path).unwrap()));
    let (stop, stop_rx) = watch::channel(false);
    let (task, rx) = spawn(path.clone(), TICK, in_force.clone(), stop_rx);
    let mut w = Watch { rx, stop, task };
    fs::write(&path, "a = 2\n").unwrap();
    // What run.rs does on SIGHUP before reloading.
    assert!(in_force.set(Fingerprint::of(&path).unwrap()));
    w.expect_none().await;
    w.stop().await;
}

#[tokio::test]
async fn stops_when_the_sender_is_gone() {
    let d = Dir::new("dropped");
    let path = d.0.join("config.toml");
    fs::write(&path, "a = 1\n").unwrap();
    let w = start(&path);
    drop(w.stop);
    timeout(Duration::from_secs(2), w.task).await.expect("watcher did not stop").unwrap();
}

#[test]
fn fingerprint_sees_target_and_content() {
    let d = Dir::new("fp");
    let a = d.0.join("a.toml");
    let b = d.0.join("b.toml");
    fs::write(&a, "x = 1\n").unwrap();
    fs::write(&b, "x = 1\n").unwrap();
    let link = d.0.join("config.toml");
    symlink("a.toml", &link).unwrap();
    let fa = Fingerprint::of(&link).unwrap();
    assert!(!fa.changed_from(&Fingerprint::of(&a).unwrap()));
    fs::remove_file(&link).unwrap();
    symlink("b.toml", &link).unwrap();
    assert!(Fingerprint::of(&link).unwrap().changed_from(&fa), "other target");
    fs::write(&b, "x = 2\n").unwrap();
    assert!(Fingerprint::of(&b).unwrap().changed_from(&Fingerprint::of(&a).unwrap()), "other content");
    fs::remove_file(&b).unwrap();
    assert_eq!(Fingerprint::of(&link).unwrap_err().kind(), io::ErrorKind::NotFound);
}
