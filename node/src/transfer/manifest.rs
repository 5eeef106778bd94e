//! What an export saw, entry by entry, so the next export of the same layer (precopy:
//! the container kept running) sends only what changed and lists what disappeared.
//!
//! An entry is unchanged when kind, size, mode, owner, mtime, ctime, inode and xattrs all
//! match. ctime moves on every change to an inode (data, metadata, xattrs, links,
//! renames), and nobody can set it, so the comparison cannot be fooled by `touch -d`.
//! Two cases are always sent again:
//! - *racy* entries: changed while they were read, or with a ctime within a second of
//!   the read (timestamps are coarse: a write in the same tick may not move them);
//! - non-directories with more than one link: the stream links a path only to an
//!   earlier path of the same stream, so a whole hard-link group travels together.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use nix::sys::stat::{FileStat, SFlag};

/// Entries an export saw, by path relative to the layer ("" is the layer's root).
#[derive(Clone, Debug, Default)]
pub struct Manifest {
    pub(crate) entries: BTreeMap<PathBuf, Stamp>,
}

impl Manifest {
    /// Number of entries (the root included).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether the export saw `path` (relative to the layer).
    pub fn contains(&self, path: &Path) -> bool {
        self.entries.contains_key(path)
    }

    /// Paths in stream order (parents before children).
    pub fn paths(&self) -> impl Iterator<Item = &Path> {
        self.entries.keys().map(PathBuf::as_path)
    }
}

/// One entry as seen by an export.
#[derive(Clone, Debug)]
pub(crate) struct Stamp {
    pub(crate) format: u32,
    pub(crate) mode: u32,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    pub(crate) size: i64,
    pub(crate) mtime: (i64, i64),
    pub(crate) ctime: (i64, i64),
    pub(crate) ino: u64,
    pub(crate) dev: u64,
    pub(crate) nlink: u64,
    pub(crate) xattrs: [u8; 16],
    pub(crate) racy: bool,
}

/// How close to "now" a ctime makes an entry racy.
const RACY_NS: i128 = 1_000_000_000;

impl Stamp {
    pub(crate) fn new(st: &FileStat, xattrs: [u8; 16]) -> Stamp {
        let stamp = Stamp {
            format: st.st_mode & SFlag::S_IFMT.bits(),
            mode: st.st_mode & 0o7777,
            uid: st.st_uid,
            gid: st.st_gid,
            size: st.st_size,
            mtime: (st.st_mtime, st.st_mtime_nsec),
            ctime: (st.st_ctime, st.st_ctime_nsec),
            ino: st.st_ino,
            dev: st.st_dev,
            nlink: st.st_nlink,
            xattrs,
            racy: false,
        };
        let racy = stamp.recent();
        Stamp { racy, ..stamp }
    }

    fn recent(&self) -> bool {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as i128)
            .unwrap_or(0);
        let ctime = i128::from(self.ctime.0) * 1_000_000_000 + i128::from(self.ctime.1);
        ctime + RACY_NS >= now
    }

    /// Whether the inode changed between `self` and a later stat of it.
    pub(crate) fn moved(&self, later: &FileStat) -> bool {
        later.st_ino != self.ino
            || later.st_size != self.size
            || (later.st_mtime, later.st_mtime_nsec) != self.mtime
            || (later.st_ctime, later.st_ctime_nsec) != self.ctime
    }

    fn same(&self, o: &Stamp) -> bool {
        (self.format, self.mode, self.uid, self.gid, self.size)
            == (o.format, o.mode, o.uid, o.gid, o.size)
            && (self.mtime, self.ctime, self.ino, self.dev, self.xattrs)
                == (o.mtime, o.ctime, o.ino, o.dev, o.xattrs)
    }

    fn is_dir(&self) -> bool {
        self.format == SFlag::S_IFDIR.bits()
    }
}

/// Whether `now` must be sent, given what the previous export saw (`None`: full export).
pub(crate) fn must_send(since: Option<&Manifest>, path: &Path, now: &Stamp) -> bool {
    let Some(since) = since else { return true };
    let Some(before) = since.entries.get(path) else {
        return true;
    };
    before.racy || !before.same(now) || (!now.is_dir() && now.nlink > 1)
}

/// Paths the previous export saw that are gone now, without the descendants of a
/// deleted directory (deleting it removes them).
pub(crate) fn deletions(since: &Manifest, now: &Manifest) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
    for path in since.entries.keys() {
        if now.entries.contains_key(path) {
            continue;
        }
        if out.last().is_some_and(|last| path.starts_with(last)) {
            continue;
        }
        out.push(path.clone());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(ctime: i64) -> Stamp {
        Stamp {
            format: SFlag::S_IFREG.bits(),
            mode: 0o644,
            uid: 0,
            gid: 0,
            size: 1,
            mtime: (1, 0),
            ctime: (ctime, 0),
            ino: 7,
            dev: 1,
            nlink: 1,
            xattrs: [0; 16],
            racy: false,
        }
    }

    #[test]
    fn unchanged_entries_are_skipped_racy_and_linked_ones_are_not() {
        let mut m = Manifest::default();
        m.entries.insert("a".into(), stamp(5));
        assert!(!must_send(Some(&m), Path::new("a"), &stamp(5)));
        assert!(must_send(Some(&m), Path::new("a"), &stamp(6)));
        assert!(must_send(Some(&m), Path::new("b"), &stamp(5)));
        assert!(must_send(None, Path::new("a"), &stamp(5)));
        let linked = Stamp {
            nlink: 2,
            ..stamp(5)
        };
        assert!(must_send(Some(&m), Path::new("a"), &linked));
        m.entries.get_mut(Path::new("a")).unwrap().racy = true;
        assert!(must_send(Some(&m), Path::new("a"), &stamp(5)));
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        assert!(stamp(now).recent());
        assert!(!stamp(now - 5).recent());
    }

    #[test]
    fn deletions_skip_descendants_of_deleted_directories() {
        let mut old = Manifest::default();
        for p in ["", "a", "a/b", "a/b/c", "a0", "d", "d/e", "d/f"] {
            old.entries.insert(p.into(), stamp(1));
        }
        let mut now = Manifest::default();
        for p in ["", "d", "d/f"] {
            now.entries.insert(p.into(), stamp(1));
        }
        let gone = deletions(&old, &now);
        assert_eq!(gone, vec![PathBuf::from("a"), "a0".into(), "d/e".into()]);
    }
}
