//! Test helpers: build layer trees, snapshot a tree (owners container-relative) so a
//! source and its copy compare with `assert_eq!`, and root checks.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::AT_FDCWD;
use nix::sys::stat::{mknod, utimensat, Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchownat, Gid, Uid};
use sha2::{Digest, Sha256};

/// Whether the test runs as root; prints why it skips when not.
pub(crate) fn root_or_skip(test: &str) -> bool {
    let root = nix::unistd::geteuid().is_root();
    if !root {
        eprintln!("skipping {test}: needs root (chown to mapped ids, mknod, trusted xattrs)");
    }
    root
}

/// A fresh temporary directory for one test.
pub(crate) fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("shoal-transfer-test-")
        .tempdir()
        .unwrap()
}

/// One entry of a snapshot.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Node {
    pub(crate) kind: &'static str,
    pub(crate) mode: u32,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    pub(crate) mtime: (i64, i64),
    pub(crate) size: u64,
    pub(crate) content: Option<String>,
    pub(crate) target: Option<PathBuf>,
    pub(crate) rdev: u64,
    pub(crate) xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
    /// For multiply linked non-directories: the first path of the inode.
    pub(crate) link_group: Option<PathBuf>,
}

/// Every entry under `root` ("" = root), owners and capability root ids minus `base`.
pub(crate) fn snapshot(root: &Path, base: u32) -> BTreeMap<PathBuf, Node> {
    let mut out = BTreeMap::new();
    let mut inodes: HashMap<u64, PathBuf> = HashMap::new();
    walk(root, Path::new(""), base, &mut out, &mut inodes);
    out
}

fn walk(
    root: &Path,
    rel: &Path,
    base: u32,
    out: &mut BTreeMap<PathBuf, Node>,
    inodes: &mut HashMap<u64, PathBuf>,
) {
    let full = root.join(rel);
    let m = fs::symlink_metadata(&full).unwrap();
    let ft = m.file_type();
    let kind = if ft.is_dir() {
        "dir"
    } else if ft.is_file() {
        "file"
    } else if ft.is_symlink() {
        "symlink"
    } else if m.mode() & SFlag::S_IFMT.bits() == SFlag::S_IFCHR.bits() {
        "char"
    } else if m.mode() & SFlag::S_IFMT.bits() == SFlag::S_IFIFO.bits() {
        "fifo"
    } else {
        "other"
    };
    let mut xattrs = BTreeMap::new();
    for name in xattr::list(&full).unwrap() {
        let mut value = xattr::get(&full, &name).unwrap().unwrap();
        if name.as_bytes() == b"security.capability" && value.len() == 24 {
            let root_id = u32::from_le_bytes(value[20..24].try_into().unwrap()) - base;
            value[20..24].copy_from_slice(&root_id.to_le_bytes());
        }
        xattrs.insert(name.as_bytes().to_vec(), value);
    }
    let link_group = (!ft.is_dir() && m.nlink() > 1).then(|| {
        inodes
            .entry(m.ino())
            .or_insert_with(|| rel.to_path_buf())
            .clone()
    });
    let node = Node {
        kind,
        mode: m.mode() & 0o7777,
        uid: m.uid() - base,
        gid: m.gid() - base,
        mtime: (m.mtime(), m.mtime_nsec()),
        size: if ft.is_dir() { 0 } else { m.size() },
        content: ft
            .is_file()
            .then(|| hex::encode(Sha256::digest(fs::read(&full).unwrap()))),
        target: ft.is_symlink().then(|| fs::read_link(&full).unwrap()),
        rdev: m.rdev(),
        xattrs,
        link_group,
    };
    out.insert(rel.to_path_buf(), node);
    if ft.is_dir() {
        let mut names: Vec<_> = fs::read_dir(&full)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        for name in names {
            walk(root, &rel.join(name), base, out, inodes);
        }
    }
}

/// Builds trees; every owner is `base + id`.
pub(crate) struct Tree<'a> {
    pub(crate) root: &'a Path,
    pub(crate) base: u32,
}

impl Tree<'_> {
    pub(crate) fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    pub(crate) fn own(&self, rel: &str, uid: u32, gid: u32) {
        let (u, g) = (
            Uid::from_raw(self.base + uid),
            Gid::from_raw(self.base + gid),
        );
        fchownat(
            AT_FDCWD,
            &self.path(rel),
            Some(u),
            Some(g),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .unwrap();
    }

    pub(crate) fn chmod(&self, rel: &str, mode: u32) {
        fs::set_permissions(self.path(rel), fs::Permissions::from_mode(mode)).unwrap();
    }

    pub(crate) fn dir(&self, rel: &str, mode: u32) {
        fs::create_dir(self.path(rel)).unwrap();
        self.own(rel, 0, 0);
        self.chmod(rel, mode);
    }

    pub(crate) fn file(&self, rel: &str, data: &[u8], mode: u32) {
        fs::write(self.path(rel), data).unwrap();
        self.own(rel, 0, 0);
        self.chmod(rel, mode);
    }

    pub(crate) fn symlink(&self, rel: &str, target: &str) {
        symlink(target, self.path(rel)).unwrap();
        self.own(rel, 0, 0);
    }

    pub(crate) fn whiteout(&self, rel: &str) {
        mknod(&self.path(rel), SFlag::S_IFCHR, Mode::empty(), 0).unwrap();
        self.own(rel, 0, 0);
    }

    pub(crate) fn fifo(&self, rel: &str) {
        mknod(
            &self.path(rel),
            SFlag::S_IFIFO,
            Mode::from_bits_retain(0o644),
            0,
        )
        .unwrap();
        self.own(rel, 0, 0);
    }

    pub(crate) fn xattr(&self, rel: &str, name: &str, value: &[u8]) {
        xattr::set(self.path(rel), name, value).unwrap();
    }

    /// Sets an old mtime (seconds since the epoch plus a distinct nanosecond part).
    pub(crate) fn mtime(&self, rel: &str, secs: i64) {
        let t = TimeSpec::new(secs, 123_456_789);
        utimensat(
            AT_FDCWD,
            &self.path(rel),
            &t,
            &t,
            UtimensatFlags::NoFollowSymlink,
        )
        .unwrap();
    }
}

/// A version 3 file capability (cap_net_raw permitted+effective) for root `root_id`.
pub(crate) fn capability(root_id: u32) -> Vec<u8> {
    let mut v = 0x0300_0001u32.to_le_bytes().to_vec();
    v.extend_from_slice(&(1u32 << 13).to_le_bytes());
    v.extend_from_slice(&[0u8; 12]);
    v.extend_from_slice(&root_id.to_le_bytes());
    v
}

/// The sample layer of the round-trip and delta tests.
pub(crate) fn sample_layer(root: &Path, base: u32) {
    let t = Tree { root, base };
    t.own("", 0, 0);
    t.chmod("", 0o755);
    for d in ["etc", "etc/opaque", "bin", "home", "data", "run", "srv"] {
        t.dir(d, 0o755);
    }
    t.dir("home/user", 0o700);
    t.own("home/user", 1000, 1000);
    t.chmod("srv", 0o2775);
    t.own("srv", 0, 5);
    t.xattr("etc/opaque", "user.overlay.opaque", b"y");
    t.xattr("etc/opaque", "trusted.overlay.opaque", b"y");
    t.file("etc/hostname", b"c1\n", 0o644);
    t.file("etc/empty", b"", 0o600);
    t.file("etc/opaque/only", b"only in the upper layer\n", 0o644);
    t.file("bin/su", b"#!/bin/sh\n", 0o755);
    t.own("bin/su", 0, 0);
    t.chmod("bin/su", 0o4755);
    t.file("bin/ping", b"\x7fELF", 0o755);
    t.xattr("bin/ping", "security.capability", &capability(base));
    t.file("home/user/notes", b"remember\n", 0o600);
    t.own("home/user/notes", 1000, 1000);
    t.xattr("home/user/notes", "user.comment", b"a note");
    let big: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    t.file("data/a", &big, 0o644);
    t.own("data/a", 5, 5);
    fs::hard_link(t.path("data/a"), t.path("data/b")).unwrap();
    t.symlink("etc/localtime", "/usr/share/zoneinfo/UTC");
    t.symlink("data/dangling", "../nowhere");
    t.whiteout("etc/removed");
    t.whiteout("bin/gone");
    t.fifo("run/initctl");
    for (i, rel) in [
        "etc/hostname",
        "etc/empty",
        "etc/opaque/only",
        "bin/su",
        "bin/ping",
        "home/user/notes",
        "data/a",
        "etc/localtime",
        "data/dangling",
        "etc/removed",
        "bin/gone",
        "run/initctl",
    ]
    .iter()
    .enumerate()
    {
        t.mtime(rel, 1_600_000_000 + i as i64);
    }
    for rel in [
        "etc/opaque",
        "etc",
        "bin",
        "home/user",
        "home",
        "data",
        "run",
        "srv",
        "",
    ] {
        t.mtime(rel, 1_500_000_000);
    }
}
