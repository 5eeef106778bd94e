//! Test helpers: image tarballs built in memory, including hostile ones (names and link
//! targets are written into the header verbatim, so `..` and absolute paths get through),
//! and a temporary store that is removed even when a test fails.

use std::io::Write;
use std::path::{Path, PathBuf};

use flate2::write::GzEncoder;
use flate2::Compression;
use tar::{EntryType, Header};

use super::store::ImageStore;

pub(crate) const GOOD_METADATA: &str = "architecture: x86_64\ncreation_date: 1700000000\n\
properties:\n  os: test\n  release: \"1\"\n  description: \"test image\"\nstop_signal: SIGUSR2\n";

/// Builds a tarball entry by entry.
pub(crate) struct Tarball {
    builder: tar::Builder<Vec<u8>>,
}

impl Tarball {
    pub(crate) fn new() -> Self {
        Self {
            builder: tar::Builder::new(Vec::new()),
        }
    }

    /// `metadata.yaml`, `rootfs/` and a few files: a valid image to extend.
    pub(crate) fn good() -> Self {
        let mut t = Self::new();
        t.file("metadata.yaml", GOOD_METADATA.as_bytes())
            .dir("rootfs/", 0o755)
            .dir("rootfs/etc/", 0o755)
            .file("rootfs/etc/hostname", b"test\n")
            .dir("rootfs/bin/", 0o755)
            .entry(
                EntryType::Regular,
                "rootfs/bin/su",
                None,
                0o4755,
                b"#!/bin/sh\n",
            )
            .symlink("rootfs/bin/sh", "/bin/busybox")
            .hardlink("rootfs/bin/su2", "rootfs/bin/su");
        t
    }

    pub(crate) fn entry(
        &mut self,
        kind: EntryType,
        name: &str,
        link: Option<&str>,
        mode: u32,
        data: &[u8],
    ) -> &mut Self {
        let mut h = Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_600_000_000);
        h.set_size(data.len() as u64);
        let old = h.as_old_mut();
        old.name[..name.len()].copy_from_slice(name.as_bytes());
        if let Some(link) = link {
            old.linkname[..link.len()].copy_from_slice(link.as_bytes());
        }
        h.set_cksum();
        self.builder.append(&h, data).unwrap();
        self
    }

    pub(crate) fn file(&mut self, name: &str, data: &[u8]) -> &mut Self {
        self.entry(EntryType::Regular, name, None, 0o644, data)
    }

    pub(crate) fn dir(&mut self, name: &str, mode: u32) -> &mut Self {
        self.entry(EntryType::Directory, name, None, mode, b"")
    }

    pub(crate) fn symlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.entry(EntryType::Symlink, name, Some(target), 0o777, b"")
    }

    pub(crate) fn hardlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.entry(EntryType::Link, name, Some(target), 0o644, b"")
    }

    pub(crate) fn finish(self) -> Vec<u8> {
        self.builder.into_inner().unwrap()
    }
}

pub(crate) fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

/// A store in a fresh temporary directory, removed on drop.
pub(crate) struct TestStore {
    pub(crate) store: ImageStore,
    _dir: tempfile::TempDir,
}

impl TestStore {
    pub(crate) fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("shoal-image-test-")
            .tempdir()
            .unwrap();
        let store = ImageStore::open(&dir.path().join("images")).unwrap();
        Self { store, _dir: dir }
    }

    pub(crate) fn root(&self) -> &Path {
        self.store.root()
    }

    /// Everything under the store root, as sorted relative paths.
    pub(crate) fn listing(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        walk(self.root(), self.root(), &mut out);
        out.sort();
        out
    }

    /// Nothing but the empty `.tmp/`.
    pub(crate) fn assert_empty(&self) {
        assert_eq!(self.listing(), vec![PathBuf::from(".tmp")]);
    }
}

fn walk(base: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        out.push(path.strip_prefix(base).unwrap().to_path_buf());
        if std::fs::symlink_metadata(&path).unwrap().is_dir() {
            walk(base, &path, out);
        }
    }
}
