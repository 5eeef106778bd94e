//! Scratch directories for the targets that write files: on tmpfs when there is one
//! (`syncfs` is then cheap), removed when dropped.

use std::fs;
use std::path::{Path, PathBuf};

/// A fresh temporary directory, on `/dev/shm` if it exists.
pub(crate) fn tempdir() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    let base = if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    };
    tempfile::Builder::new()
        .prefix("shoal-fuzz-")
        .tempdir_in(base)
        .expect("create a scratch directory")
}

/// Every path under `root` (relative, sorted), never following symlinks.
pub(crate) fn listing(root: &Path) -> Vec<PathBuf> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let path = e.path();
            out.push(path.strip_prefix(root).unwrap_or(&path).to_path_buf());
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                walk(root, &path, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}
