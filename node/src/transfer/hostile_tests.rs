//! Streams crafted to escape `dest`, smuggle ids or devices, or break the format are
//! refused, and refused streams write nothing.

use std::fs;
use std::os::unix::fs::{symlink, MetadataExt};
use std::path::Path;

use nix::sys::stat::{makedev, mknod, Mode, SFlag};

use super::format::{Counts, Encoder, EntryHead, Kind};
use super::import::staging_dir;
use super::testutil::{root_or_skip, tempdir};
use super::{export, import, IdRange, TransferError};

const TO: u32 = 2_000_000;

fn head(path: &[u8], kind: Kind) -> EntryHead {
    let mode = if kind == Kind::Dir { 0o755 } else { 0o644 };
    EntryHead {
        path: path.to_vec(),
        kind,
        mode,
        uid: 0,
        gid: 0,
        mtime: (1_600_000_000, 0),
        xattrs: Vec::new(),
    }
}

/// A stream of `records`; the trailer counts what was written.
fn stream(delta: bool, records: impl FnOnce(&mut Encoder<&mut Vec<u8>>) -> Counts) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut enc = Encoder::new(&mut buf, delta).unwrap();
    let counts = records(&mut enc);
    enc.finish(counts).unwrap();
    buf
}

fn counts(entries: u64, deleted: u64, data_bytes: u64) -> Counts {
    Counts {
        entries,
        deleted,
        data_bytes,
    }
}

fn import_into(bytes: &[u8], dest: &Path) -> Result<super::ImportStats, TransferError> {
    import(&mut &bytes[..], dest, IdRange::unprivileged(TO), 1 << 20)
}

/// A full stream holding a root directory and one file at `path`.
fn file_at(path: &[u8]) -> Vec<u8> {
    stream(false, |e| {
        e.entry(&head(b"", Kind::Dir)).unwrap();
        e.entry(&head(path, Kind::File { size: 1 })).unwrap();
        e.put(b"x").unwrap();
        counts(2, 0, 1)
    })
}

#[test]
fn hostile_paths_are_refused_and_nothing_is_written() {
    let tmp = tempdir();
    let dst = tmp.path().join("dst");
    for bad in [
        &b"../evil"[..],
        b"/tmp/evil",
        b"a/../../evil",
        b"a\0b",
        b"a//b",
        b"./evil",
        b"a/",
        b"..",
    ] {
        let err = import_into(&file_at(bad), &dst).unwrap_err();
        assert!(matches!(err, TransferError::BadPath { .. }), "{err}");
    }
    let link = stream(false, |e| {
        e.link(b"x", b"../../etc/passwd").unwrap();
        counts(1, 0, 0)
    });
    assert!(matches!(
        import_into(&link, &dst),
        Err(TransferError::BadPath { .. })
    ));
    let delete = stream(true, |e| {
        e.delete(b"../x").unwrap();
        counts(0, 1, 0)
    });
    fs::create_dir(&dst).unwrap();
    assert!(matches!(
        import_into(&delete, &dst),
        Err(TransferError::BadPath { .. })
    ));
    fs::remove_dir(&dst).unwrap();
    assert_eq!(
        fs::read_dir(tmp.path()).unwrap().count(),
        0,
        "nothing written, staging removed"
    );
}

#[test]
fn symlinks_from_the_stream_or_the_copy_are_never_followed() {
    if !root_or_skip("symlinks_from_the_stream_or_the_copy_are_never_followed") {
        return;
    }
    let tmp = tempdir();
    let outside = tmp.path().join("outside");
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("victim"), b"host file").unwrap();
    fs::create_dir(outside.join("b")).unwrap();
    let dst = tmp.path().join("dst");

    // A symlink entry, then an entry beneath it.
    let through = stream(false, |e| {
        e.entry(&head(b"", Kind::Dir)).unwrap();
        let target = outside.as_os_str().as_encoded_bytes().to_vec();
        e.entry(&head(b"l", Kind::Symlink { target })).unwrap();
        e.entry(&head(b"l/x", Kind::File { size: 1 })).unwrap();
        e.put(b"x").unwrap();
        counts(3, 0, 1)
    });
    let err = import_into(&through, &dst).unwrap_err();
    assert!(matches!(err, TransferError::ParentNotDir { .. }), "{err}");
    assert!(!outside.join("x").exists());
    fs::remove_dir_all(&dst).unwrap();

    // A copy holding a symlink; deltas try to delete and create through it, and to
    // chown a directory after swapping its parent for a symlink.
    fs::create_dir_all(dst.join("a/b")).unwrap();
    symlink(&outside, dst.join("l")).unwrap();
    let delete = stream(true, |e| {
        e.delete(b"l/victim").unwrap();
        counts(0, 1, 0)
    });
    assert!(matches!(
        import_into(&delete, &dst),
        Err(TransferError::ParentNotDir { .. })
    ));
    assert!(outside.join("victim").exists());
    let swap = stream(true, |e| {
        e.entry(&head(b"a/b", Kind::Dir)).unwrap();
        let target = outside.as_os_str().as_encoded_bytes().to_vec();
        e.entry(&head(b"a", Kind::Symlink { target })).unwrap();
        counts(2, 0, 0)
    });
    let err = import_into(&swap, &dst).unwrap_err();
    assert!(matches!(err, TransferError::ParentNotDir { .. }), "{err}");
    let b = fs::metadata(outside.join("b")).unwrap();
    assert_eq!((b.uid(), b.mode() & 0o7777), (0, 0o755));
}

#[test]
fn links_must_point_at_earlier_non_directories() {
    let tmp = tempdir();
    let dst = tmp.path().join("dst");
    let unknown = stream(false, |e| {
        e.entry(&head(b"", Kind::Dir)).unwrap();
        e.link(b"x", b"later").unwrap();
        counts(2, 0, 0)
    });
    assert!(matches!(
        import_into(&unknown, &dst),
        Err(TransferError::BadLink { .. })
    ));
    let to_dir = stream(false, |e| {
        e.entry(&head(b"d", Kind::Dir)).unwrap();
        e.link(b"x", b"d").unwrap();
        counts(2, 0, 0)
    });
    assert!(matches!(
        import_into(&to_dir, &dst),
        Err(TransferError::BadLink { .. })
    ));
    assert!(!dst.exists());
}

#[test]
fn duplicates_bad_modes_and_disallowed_xattrs_are_refused() {
    let tmp = tempdir();
    let dst = tmp.path().join("dst");
    let twice = stream(false, |e| {
        e.entry(&head(b"d", Kind::Dir)).unwrap();
        e.entry(&head(b"d", Kind::Dir)).unwrap();
        counts(2, 0, 0)
    });
    assert!(matches!(
        import_into(&twice, &dst),
        Err(TransferError::Duplicate { .. })
    ));
    let selinux = stream(false, |e| {
        let mut h = head(b"d", Kind::Dir);
        h.xattrs.push((
            b"security.selinux".to_vec(),
            b"system_u:object_r:shadow_t".to_vec(),
        ));
        e.entry(&h).unwrap();
        counts(1, 0, 0)
    });
    assert!(matches!(
        import_into(&selinux, &dst),
        Err(TransferError::XattrNotAllowed { .. })
    ));
    let mode = stream(false, |e| {
        e.entry(&EntryHead {
            mode: 0o20644,
            ..head(b"d", Kind::Dir)
        })
        .unwrap();
        counts(1, 0, 0)
    });
    assert!(matches!(
        import_into(&mode, &dst),
        Err(TransferError::BadMode { .. })
    ));
    let mut unknown = file_at(b"f");
    unknown[11] = b'Q';
    assert!(matches!(
        import_into(&unknown, &dst),
        Err(TransferError::UnknownRecord { tag: b'Q' })
    ));
    assert!(!dst.exists());
}

#[test]
fn ids_outside_the_range_are_refused_both_ways() {
    let tmp = tempdir();
    let dst = tmp.path().join("dst");
    for (uid, gid) in [(65_536, 0), (0, 70_000), (u32::MAX, 0)] {
        let s = stream(false, |e| {
            e.entry(&EntryHead {
                uid,
                gid,
                ..head(b"", Kind::Dir)
            })
            .unwrap();
            counts(1, 0, 0)
        });
        let err = import_into(&s, &dst).unwrap_err();
        assert!(matches!(err, TransferError::IdOutOfRange { .. }), "{err}");
    }
    assert!(!dst.exists());

    // Export: a file owned by an id below the source's range.
    let src = tmp.path().join("src");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("f"), b"x").unwrap();
    let mine = fs::metadata(&src).unwrap().uid();
    let range = IdRange {
        base: mine + 1,
        size: 65536,
    };
    let err = export(&src, range, None, &mut Vec::new()).unwrap_err();
    assert!(
        matches!(err, TransferError::IdOutOfRange { what: "uid", .. }),
        "{err}"
    );
}

#[test]
fn device_nodes_other_than_whiteouts_are_refused() {
    if !root_or_skip("device_nodes_other_than_whiteouts_are_refused") {
        return;
    }
    let tmp = tempdir();
    let src = tmp.path().join("src");
    fs::create_dir(&src).unwrap();
    mknod(
        &src.join("null"),
        SFlag::S_IFCHR,
        Mode::from_bits_retain(0o666),
        makedev(1, 3),
    )
    .unwrap();
    let err = export(&src, IdRange::PRIVILEGED, None, &mut Vec::new()).unwrap_err();
    assert!(
        matches!(
            err,
            TransferError::Device {
                major: 1,
                minor: 3,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn limits_truncation_checksum_and_destination_state_are_checked() {
    let tmp = tempdir();
    let dst = tmp.path().join("dst");
    let good = stream(false, |e| {
        let mut h = head(b"", Kind::Dir);
        h.xattrs
            .push((b"user.note".to_vec(), b"hello world".to_vec()));
        e.entry(&h).unwrap();
        counts(1, 0, 0)
    });
    let too_small = import(&mut &good[..], &dst, IdRange::unprivileged(TO), 20);
    assert!(matches!(
        too_small,
        Err(TransferError::TooLarge { limit: 20 })
    ));
    let cut = &good[..good.len() - 1];
    assert!(matches!(
        import_into(cut, &dst),
        Err(TransferError::Truncated)
    ));
    let mut flipped = good.clone();
    let at = flipped.windows(5).position(|w| w == b"hello").unwrap();
    flipped[at] ^= 1;
    assert!(matches!(
        import_into(&flipped, &dst),
        Err(TransferError::Checksum { .. })
    ));
    let mut trailing = good.clone();
    trailing.push(0);
    assert!(matches!(
        import_into(&trailing, &dst),
        Err(TransferError::TrailingData)
    ));
    let wrong_counts = stream(false, |e| {
        e.entry(&head(b"", Kind::Dir)).unwrap();
        counts(2, 0, 0)
    });
    assert!(matches!(
        import_into(&wrong_counts, &dst),
        Err(TransferError::TrailerCount { .. })
    ));
    assert!(matches!(
        import_into(b"NOTSHOAL\x01\x00\x00", &dst),
        Err(TransferError::BadMagic)
    ));
    assert!(!dst.exists() && !staging_dir(&dst).unwrap().exists());

    let delta = stream(true, |_| counts(0, 0, 0));
    assert!(matches!(
        import_into(&delta, &dst),
        Err(TransferError::DeltaWithoutBase { .. })
    ));
    fs::create_dir(&dst).unwrap();
    fs::write(dst.join("stale"), b"").unwrap();
    assert!(matches!(
        import_into(&good, &dst),
        Err(TransferError::DestNotEmpty { .. })
    ));
}
