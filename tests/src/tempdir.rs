//! A temporary directory for files a test makes (certificates, Unix sockets).

use std::path::PathBuf;

use crate::unique_prefix;

/// A fresh directory under the system temp dir, named after the test, removed when dropped.
///
/// ```
/// let dir = redisx_tests::tempdir::TempDir::new("my_test");
/// std::fs::write(dir.path("a.txt"), "a").unwrap();
/// assert!(dir.path("a.txt").exists());
/// ```
pub struct TempDir(PathBuf);

impl TempDir {
    /// Creates the directory; `what` goes into its name.
    ///
    /// # Panics
    /// When the directory cannot be created.
    pub fn new(what: &str) -> Self {
        let dir =
            std::env::temp_dir().join(unique_prefix(what).replace(':', "-").trim_end_matches('-'));
        std::fs::create_dir_all(&dir).expect("a temp dir");
        Self(dir)
    }

    /// The path of `name` inside the directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// The directory itself.
    pub fn root(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
