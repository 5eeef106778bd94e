//! Hostile tarballs: each is refused with an error naming the entry and the problem, and
//! the store is left exactly as it was (only an empty `.tmp/`). Kept apart from
//! `unpack.rs` for length; it is that module's `mod tests`.

use std::fs;
use std::path::Path;

use tar::EntryType;

use crate::image::error::ImageError;
use crate::image::testutil::{gzip, Tarball, TestStore, GOOD_METADATA};
use crate::image::ImportLimits;

/// Import `bytes` into a fresh store, expect a refusal, check nothing is left behind.
fn refused(bytes: &[u8], limits: &ImportLimits) -> ImageError {
    let t = TestStore::new();
    let err = t
        .store
        .import(bytes, limits)
        .expect_err("hostile tarball was accepted");
    t.assert_empty();
    err
}

fn refused_default(tb: Tarball) -> ImageError {
    refused(&tb.finish(), &ImportLimits::default())
}

fn assert_names(err: &ImageError, entry: &str) {
    let msg = err.to_string();
    assert!(msg.contains(entry), "{msg:?} does not name {entry:?}");
}

fn base() -> Tarball {
    let mut t = Tarball::new();
    t.file("metadata.yaml", GOOD_METADATA.as_bytes())
        .dir("rootfs/", 0o755);
    t
}

#[test]
fn image_refuses_missing_metadata_or_rootfs() {
    let mut t = Tarball::new();
    t.dir("rootfs/", 0o755).file("rootfs/x", b"x");
    assert!(matches!(refused_default(t), ImageError::MissingMetadata));

    let mut t = Tarball::new();
    t.file("metadata.yaml", GOOD_METADATA.as_bytes());
    assert!(matches!(refused_default(t), ImageError::MissingRootfs));

    let mut t = Tarball::new();
    t.file("./metadata.yaml", GOOD_METADATA.as_bytes())
        .symlink("rootfs", "/");
    let err = refused_default(t);
    assert!(matches!(err, ImageError::Conflict { .. }), "{err}");
    assert!(err.to_string().contains("rootfs must be a directory"));

    assert!(matches!(
        refused(b"", &ImportLimits::default()),
        ImageError::MissingMetadata
    ));
}

#[test]
fn image_refuses_bad_metadata_naming_the_field() {
    let mut t = Tarball::new();
    t.file("metadata.yaml", b"creation_date: 5\n")
        .dir("rootfs/", 0o755);
    let err = refused_default(t);
    assert!(
        matches!(
            err,
            ImageError::MetadataField {
                field: "architecture",
                ..
            }
        ),
        "{err}"
    );

    let mut t = Tarball::new();
    t.dir("metadata.yaml", 0o755).dir("rootfs/", 0o755);
    assert_names(&refused_default(t), "metadata.yaml");
}

#[test]
fn image_refuses_absolute_and_dotdot_paths() {
    let mut t = base();
    t.file("/etc/shoal-pwned", b"x");
    let err = refused_default(t);
    assert!(matches!(err, ImageError::AbsolutePath { .. }), "{err}");
    assert_names(&err, "/etc/shoal-pwned");

    let mut t = base();
    t.file("rootfs/../../shoal-pwned", b"x");
    let err = refused_default(t);
    assert!(matches!(err, ImageError::ParentComponent { .. }), "{err}");
    assert_names(&err, "rootfs/../../shoal-pwned");
}

#[test]
fn image_refuses_unsafe_hard_links() {
    let cases = [
        ("/etc/shadow", "is absolute"),
        ("rootfs/../metadata.yaml", "contains .."),
        ("metadata.yaml", "is outside rootfs/"),
        ("rootfs/", "is outside rootfs/"),
        ("rootfs/nothing", "does not exist"),
        ("rootfs/dir", "is a directory"),
        ("rootfs/lnk/passwd", "goes through a symlink"),
    ];
    for (target, problem) in cases {
        let mut t = base();
        t.dir("rootfs/dir/", 0o755)
            .symlink("rootfs/lnk", "/etc")
            .hardlink("rootfs/evil", target);
        let err = refused_default(t);
        assert!(matches!(err, ImageError::UnsafeHardLink { .. }), "{err}");
        let msg = err.to_string();
        assert!(msg.contains("rootfs/evil") && msg.contains(target), "{msg}");
        assert!(msg.contains(problem), "{msg} lacks {problem}");
    }
}

#[test]
fn image_never_creates_through_symlinks() {
    let outside = tempfile::tempdir().unwrap();
    let victim = outside.path().join("victim");
    fs::write(&victim, b"original").unwrap();
    let out = outside.path().to_str().unwrap();

    // A file below a symlinked directory.
    let mut t = base();
    t.symlink("rootfs/escape", out)
        .file("rootfs/escape/pwned", b"x");
    let err = refused_default(t);
    assert!(matches!(err, ImageError::ThroughSymlink { .. }), "{err}");
    assert_names(&err, "rootfs/escape/pwned");
    assert!(err.to_string().contains("rootfs/escape"));

    // A directory below a symlinked directory, relative symlink this time.
    let mut t = base();
    t.symlink("rootfs/up", "../../../../../../../../..")
        .dir("rootfs/up/tmp/", 0o755);
    assert!(matches!(
        refused_default(t),
        ImageError::ThroughSymlink { .. }
    ));
    assert_eq!(fs::read_dir(outside.path()).unwrap().count(), 1);

    // A file replacing a symlink replaces it; it never writes through it.
    let t = TestStore::new();
    let mut tb = base();
    tb.symlink("rootfs/victim", victim.to_str().unwrap())
        .file("rootfs/victim", b"replaced");
    let img = t
        .store
        .import(&tb.finish()[..], &ImportLimits::default())
        .unwrap();
    let inside = t.store.rootfs(&img.fingerprint).join("victim");
    assert!(fs::symlink_metadata(&inside).unwrap().is_file());
    assert_eq!(fs::read(&inside).unwrap(), b"replaced");
    assert_eq!(fs::read(&victim).unwrap(), b"original");
}

#[test]
fn image_hard_link_to_a_symlink_links_the_symlink_not_its_target() {
    let outside = tempfile::tempdir().unwrap();
    let secret = outside.path().join("secret");
    fs::write(&secret, b"secret").unwrap();
    let t = TestStore::new();
    let mut tb = base();
    tb.symlink("rootfs/sl", secret.to_str().unwrap())
        .hardlink("rootfs/h", "rootfs/sl");
    let img = t
        .store
        .import(&tb.finish()[..], &ImportLimits::default())
        .unwrap();
    let h = t.store.rootfs(&img.fingerprint).join("h");
    assert!(fs::symlink_metadata(&h).unwrap().file_type().is_symlink());
    assert_eq!(fs::read_link(&h).unwrap(), secret);
    assert_eq!(
        std::os::unix::fs::MetadataExt::nlink(&fs::metadata(&secret).unwrap()),
        1
    );
}

#[test]
fn image_refuses_device_nodes() {
    for kind in [EntryType::Char, EntryType::Block] {
        let mut t = base();
        t.entry(kind, "rootfs/dev/sda", None, 0o600, b"");
        let err = refused_default(t);
        assert!(matches!(err, ImageError::DeviceNode { .. }), "{err}");
        let msg = err.to_string();
        assert!(msg.contains("rootfs/dev/sda"), "{msg}");
        assert!(msg.contains("device nodes are not allowed in images; the runtime creates /dev"));
    }
}

#[test]
fn image_refuses_unexpected_top_level_and_ignores_templates() {
    let mut t = base();
    t.file("etc/passwd", b"root::0:0::/:/bin/sh\n");
    let err = refused_default(t);
    assert!(matches!(err, ImageError::UnexpectedEntry { .. }), "{err}");
    assert_names(&err, "etc/passwd");

    let store = TestStore::new();
    let mut t = Tarball::good();
    t.dir("templates/", 0o755)
        .file("templates/hostname.tpl", b"{{ name }}");
    let img = store
        .store
        .import(&t.finish()[..], &ImportLimits::default())
        .unwrap();
    let dir = store.root().join(&img.fingerprint);
    assert!(!dir.join("templates").exists());
    assert!(!dir.join("rootfs/templates").exists());
}

#[test]
fn image_enforces_limits() {
    let bytes = Tarball::good().finish();
    let entries = 8; // metadata.yaml, rootfs/, etc/, hostname, bin/, su, sh, su2
    let ok = |limits: ImportLimits| {
        let t = TestStore::new();
        t.store.import(&bytes[..], &limits).unwrap();
    };
    let max = ImportLimits::default();

    let exact = bytes.len() as u64;
    ok(ImportLimits {
        max_tarball_bytes: exact,
        ..max
    });
    let err = refused(
        &bytes,
        &ImportLimits {
            max_tarball_bytes: exact - 1,
            ..max
        },
    );
    assert!(matches!(err, ImageError::TarballTooLarge { .. }), "{err}");

    ok(ImportLimits {
        max_entries: entries,
        ..max
    });
    let err = refused(
        &bytes,
        &ImportLimits {
            max_entries: entries - 1,
            ..max
        },
    );
    assert!(matches!(err, ImageError::TooManyEntries { .. }), "{err}");

    let biggest = GOOD_METADATA.len() as u64;
    ok(ImportLimits {
        max_entry_bytes: biggest,
        ..max
    });
    let err = refused(
        &bytes,
        &ImportLimits {
            max_entry_bytes: biggest - 1,
            ..max
        },
    );
    assert!(matches!(err, ImageError::EntryTooLarge { .. }), "{err}");
    assert_names(&err, "metadata.yaml");

    // A gzip bomb in miniature: small compressed, large unpacked.
    let mut t = base();
    t.file("rootfs/zeros", &vec![0u8; 1 << 20]);
    let gz = gzip(&t.finish());
    assert!(gz.len() < 64 * 1024);
    let err = refused(
        &gz,
        &ImportLimits {
            max_unpacked_bytes: 512 * 1024,
            ..max
        },
    );
    assert!(matches!(err, ImageError::UnpackedTooLarge { .. }), "{err}");
}

#[test]
fn image_refuses_other_compressions_and_garbage() {
    let xz = [0xfd, b'7', b'z', b'X', b'Z', 0x00, 1, 2, 3];
    let err = refused(&xz, &ImportLimits::default());
    let msg = err.to_string();
    assert!(matches!(
        err,
        ImageError::UnsupportedCompression { found: "xz" }
    ));
    assert!(msg.contains("xz") && msg.contains("gzip"), "{msg}");

    let zstd = [0x28, 0xb5, 0x2f, 0xfd, 0, 0];
    assert!(matches!(
        refused(&zstd, &ImportLimits::default()),
        ImageError::UnsupportedCompression { found: "zstd" }
    ));

    let garbage = vec![0x55u8; 4096];
    let err = refused(&garbage, &ImportLimits::default());
    assert!(matches!(err, ImageError::ReadArchive { .. }), "{err}");

    let truncated = &gzip(&Tarball::good().finish())[..200];
    assert!(matches!(
        refused(truncated, &ImportLimits::default()),
        ImageError::ReadArchive { .. }
    ));
}

#[test]
fn image_refuses_replacing_a_directory_with_a_file() {
    let mut t = base();
    t.dir("rootfs/etc/", 0o755)
        .file("rootfs/etc/passwd", b"x")
        .symlink("rootfs/etc", "/etc");
    let err = refused_default(t);
    assert!(matches!(err, ImageError::Conflict { .. }), "{err}");
    assert_names(&err, "rootfs/etc");
    assert!(Path::new("/etc/passwd").exists());
}
