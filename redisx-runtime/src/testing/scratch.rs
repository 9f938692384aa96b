//! [`ScratchDir`]: a fresh temporary directory for the files of a deployment (cluster node
//! configurations, sentinel configurations), removed when its guard is dropped.
//!
//! The guard is dropped like the process handles are: at the end of the test, and also while a
//! panicking test unwinds. A deployment keeps it after its processes, so that they are killed
//! (and can write no more) before their directory goes. A guard that is never dropped (a
//! deployment shared until the process exits) is removed by a watchdog like the servers': a
//! `sh` that waits for the end of a pipe from the test process, lets the servers' watchdogs
//! kill them, then removes the directory.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// A directory of its own under [`std::env::temp_dir`], removed with everything in it on drop.
#[derive(Debug)]
pub(crate) struct ScratchDir {
    path: PathBuf,
    /// The `sh` that removes the directory once its stdin (our pipe) ends: when this guard is
    /// dropped, or when the test process exits without dropping it.
    remover: Option<Child>,
}

/// The remover: wait for the pipe's end, give the servers' watchdogs a moment to kill the
/// processes writing into the directory, remove it. `$1` is the directory.
const REMOVER: &str = r#"read -r _; sleep 1; rm -rf -- "$1""#;

impl ScratchDir {
    /// Creates `redisx-<kind>-<pid>-<counter>-<nanos>` in the temporary directory.
    ///
    /// # Panics
    /// When the directory cannot be created.
    pub(crate) fn new(kind: &str) -> Self {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let name = format!("redisx-{kind}-{}-{n}-{nanos:x}", std::process::id());
        let path = std::env::temp_dir().join(name);
        std::fs::create_dir(&path).unwrap_or_else(|e| {
            panic!(
                "cannot create the scratch directory {} for a {kind}: {e}",
                path.display()
            )
        });
        // Without the remover (no `/bin/sh`), the directory is still removed on drop.
        let remover = Command::new("/bin/sh")
            .args(["-c", REMOVER, "sh"])
            .arg(&path)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok();
        ScratchDir { path, remover }
    }

    /// The directory.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The path of the file `name` in the directory.
    pub(crate) fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        // Nothing to report to: a directory left behind in the temporary directory is harmless.
        let _ = std::fs::remove_dir_all(&self.path);
        if let Some(mut remover) = self.remover.take() {
            // Its work is done: stop it rather than let it sleep, and reap it.
            let _ = remover.kill();
            let _ = remover.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ScratchDir;

    #[test]
    fn is_fresh_and_removed_on_drop() {
        let a = ScratchDir::new("unit");
        let b = ScratchDir::new("unit");
        assert_ne!(a.path(), b.path());
        std::fs::write(a.file("x.conf"), "x").unwrap();
        let path = a.path().to_owned();
        assert!(path.join("x.conf").is_file());
        drop(a);
        assert!(!path.exists());
        assert!(b.path().is_dir());
    }
}
