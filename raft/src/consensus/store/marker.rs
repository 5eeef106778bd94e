//! The store's identity, kept both inside sled and in a small file next to it.
//!
//! sled treats a damaged log segment as the torn end of its log and silently recovers what
//! came before it: damage near the start of its file yields an *empty* database, which a Raft
//! member must never serve from (it would forget its vote and its log). So a new store gets
//! an id, written into sled (and flushed) and then into `store-id` beside it. At open, a
//! marker file whose id sled does not hold means sled lost the store's contents, and the
//! store is refused.
//!
//! Damage that cuts only the end of sled's log is not detected here: it looks like a crash
//! before the last flush.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use super::error::StoreError;
use super::trees::{encode, Trees, LOG_META};

/// The marker file, in the store's directory.
pub(crate) const MARKER_FILE: &str = "store-id";
const STORE_ID: &[u8] = b"store_id";

fn marker_err(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError {
    let path = path.to_path_buf();
    move |source| StoreError::Marker { path, source }
}

fn read_marker(path: &Path) -> Result<Option<String>, StoreError> {
    match fs::read_to_string(path) {
        Ok(s) => Ok(Some(s.trim().to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(marker_err(path)(e)),
    }
}

/// Writes the marker file atomically and durably (temporary file, fsync, rename, fsync of
/// the directory).
fn write_marker(dir: &Path, path: &Path, id: &str) -> Result<(), StoreError> {
    let tmp: PathBuf = dir.join(format!("{MARKER_FILE}.tmp"));
    let mut f = File::create(&tmp).map_err(marker_err(&tmp))?;
    f.write_all(format!("{id}\n").as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(marker_err(&tmp))?;
    fs::rename(&tmp, path).map_err(marker_err(path))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(marker_err(dir))
}

/// Checks that sled still holds the store the marker file names; gives a new store its id.
pub(crate) fn check(trees: &Trees, dir: &Path) -> Result<(), StoreError> {
    let path = dir.join(MARKER_FILE);
    let marker = read_marker(&path)?;
    let stored: Option<String> = trees.get(&trees.log_meta, LOG_META, STORE_ID)?;
    match (marker, stored) {
        (Some(m), Some(s)) if m == s => Ok(()),
        (Some(expected), found) => Err(StoreError::Lost {
            path: trees.path(),
            marker: path,
            expected,
            found: found.unwrap_or_else(|| "none: the database is empty".into()),
        }),
        // A crash between the two writes of a new store, or a deleted marker.
        (None, Some(s)) => write_marker(dir, &path, &s),
        (None, None) => {
            let nanos = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default();
            let id = format!("{nanos:x}-{:x}", std::process::id());
            trees
                .log_meta
                .insert(STORE_ID, encode("the store id", &id)?)
                .map_err(trees.write_err(LOG_META))?;
            trees.flush_blocking()?;
            write_marker(dir, &path, &id)
        }
    }
}
