//! Deltas (precopy): after a full copy, an export `since` its manifest carries only
//! the changes and deletions, and brings the copy level with the source; a corrupted or
//! truncated delta changes nothing.

use std::fs;
use std::path::Path;
use std::time::Duration;

use super::import::staging_dir;
use super::testutil::{root_or_skip, sample_layer, snapshot, tempdir, Tree};
use super::{export, import, IdRange, Manifest, TransferError};

const FROM: u32 = 1_000_000;
const TO: u32 = 2_000_000;

fn send(src: &Path, since: Option<&Manifest>, dst: &Path) -> (Manifest, super::ExportStats) {
    let mut stream = Vec::new();
    let (m, sent) = export(src, IdRange::unprivileged(FROM), since, &mut stream).unwrap();
    let got = import(&mut &stream[..], dst, IdRange::unprivileged(TO), u64::MAX).unwrap();
    assert_eq!(
        (got.entries, got.deleted, got.delta),
        (sent.entries, sent.deleted, since.is_some())
    );
    assert_eq!(snapshot(dst, TO), snapshot(src, FROM));
    (m, sent)
}

/// A copy of the sample layer, made more than a second after it was built, so the
/// manifest holds no racy entries.
fn copied(src: &Path, dst: &Path) -> Manifest {
    fs::create_dir(src).unwrap();
    sample_layer(src, FROM);
    std::thread::sleep(Duration::from_millis(1100));
    send(src, None, dst).0
}

#[test]
fn delta_after_changes_brings_the_copy_level_with_the_source() {
    if !root_or_skip("delta_after_changes_brings_the_copy_level_with_the_source") {
        return;
    }
    let tmp = tempdir();
    let (src, dst) = (tmp.path().join("src"), tmp.path().join("dst"));
    let m1 = copied(&src, &dst);

    // Nothing changed: only the hard-link group (always sent whole) travels.
    let (m1, same) = send(&src, Some(&m1), &dst);
    assert_eq!((same.entries, same.bytes, same.deleted), (2, 1_000_000, 0));

    let t = Tree {
        root: &src,
        base: FROM,
    };
    // Same size, same mtime: only the ctime tells.
    fs::write(t.path("etc/hostname"), b"c2\n").unwrap();
    t.mtime("etc/hostname", 1_600_000_000);
    t.file("etc/new", b"added\n", 0o640);
    t.own("etc/new", 7, 8);
    fs::remove_file(t.path("home/user/notes")).unwrap();
    t.chmod("bin/su", 0o755);
    xattr::remove(t.path("etc/opaque"), "user.overlay.opaque").unwrap();
    xattr::set(t.path("etc"), "user.overlay.impure", b"y").unwrap();
    fs::remove_dir_all(t.path("run")).unwrap();
    fs::remove_file(t.path("etc/localtime")).unwrap();
    t.file("etc/localtime", b"TZif", 0o644);
    t.dir("newdir", 0o750);
    t.dir("newdir/sub", 0o755);
    t.file("newdir/sub/file", b"deep\n", 0o644);
    fs::remove_dir_all(t.path("srv")).unwrap();
    t.file("srv", b"now a file\n", 0o644);
    fs::remove_file(t.path("etc/empty")).unwrap();
    t.dir("etc/empty", 0o755);
    t.file("etc/empty/child", b"", 0o644);
    t.whiteout("etc/removed2");
    fs::remove_file(t.path("data/b")).unwrap();

    let (m2, changed) = send(&src, Some(&m1), &dst);
    assert_eq!(changed.deleted, 3, "home/user/notes, run, data/b");
    // The 17 changed entries: "", etc, etc/{hostname,new,localtime,empty,empty/child,
    // removed2,opaque}, bin/su, home/user, newdir{,/sub,/sub/file}, srv, data, data/a.
    assert_eq!(changed.entries, 17, "{changed:?}");
    assert_eq!(m2.len(), 24);
    assert!(!m2.contains(Path::new("run/initctl")) && m2.contains(Path::new("newdir/sub/file")));

    // Again: entries changed within the last second are racy and sent again.
    send(&src, Some(&m2), &dst);
    assert!(!staging_dir(&dst).unwrap().exists());
}

#[test]
fn a_corrupted_or_truncated_delta_changes_nothing() {
    if !root_or_skip("a_corrupted_or_truncated_delta_changes_nothing") {
        return;
    }
    let tmp = tempdir();
    let (src, dst) = (tmp.path().join("src"), tmp.path().join("dst"));
    let m1 = copied(&src, &dst);
    fs::write(src.join("etc/hostname"), b"CHANGED CONTENT\n").unwrap();
    fs::remove_file(src.join("etc/empty")).unwrap();
    let mut stream = Vec::new();
    export(&src, IdRange::unprivileged(FROM), Some(&m1), &mut stream).unwrap();
    let before = snapshot(&dst, TO);

    let at = stream.windows(7).position(|w| w == b"CHANGED").unwrap();
    let mut flipped = stream.clone();
    flipped[at + 3] ^= 0x20;
    let err = import(&mut &flipped[..], &dst, IdRange::unprivileged(TO), u64::MAX).unwrap_err();
    assert!(matches!(err, TransferError::Checksum { .. }), "{err}");
    assert_eq!(snapshot(&dst, TO), before);

    let cut = &stream[..stream.len() - 10];
    let err = import(&mut &cut[..], &dst, IdRange::unprivileged(TO), u64::MAX).unwrap_err();
    assert!(matches!(err, TransferError::Truncated), "{err}");
    assert_eq!(snapshot(&dst, TO), before);
    assert!(!staging_dir(&dst).unwrap().exists());

    // The intact stream still applies.
    import(&mut &stream[..], &dst, IdRange::unprivileged(TO), u64::MAX).unwrap();
    assert_eq!(snapshot(&dst, TO), snapshot(&src, FROM));
}
