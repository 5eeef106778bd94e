//! Image tarballs as `shoal image import` and peers' image fetches hand them to the store.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use shoal_node::image::{ImageMetadata, ImageStore, ImportLimits};

use super::scratch::{listing, tempdir};

/// Small bounds, so a fuzzed tarball cannot fill memory or the disk.
const LIMITS: ImportLimits = ImportLimits {
    max_tarball_bytes: 1 << 20,
    max_entry_bytes: 1 << 20,
    max_entries: 1024,
    max_unpacked_bytes: 8 << 20,
};

/// Target `image_tarball`: `data` as received (the store sniffs gzip itself).
pub fn image_tarball(data: &[u8]) {
    import_checked(data);
}

/// Target `image_tarball_gz`: `data` gzip-compressed first, so that mutations reach the
/// tar stream inside a gzip image.
pub fn image_tarball_gz(data: &[u8]) {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(data).expect("gzip into memory");
    import_checked(&gz.finish().expect("gzip into memory"));
}

/// Imports `bytes` into a fresh store beside a directory that must stay untouched, and
/// checks the store's promises: an accepted image is complete and listed; a refused one
/// gets an error message and leaves no new entry; nothing is written outside the store.
fn import_checked(bytes: &[u8]) {
    let scratch = tempdir();
    let root = scratch.path().join("store");
    let outside = scratch.path().join("outside");
    fs::create_dir(&outside).expect("create the outside directory");
    fs::write(outside.join("keep"), b"keep").expect("write the outside marker");
    let store = ImageStore::open(&root).expect("open a fresh store");
    let empty = listing(&root);

    match store.import(bytes, &LIMITS) {
        Ok(img) => {
            assert_eq!(store.list().unwrap(), vec![img.fingerprint.clone()]);
            assert_eq!(store.get(&img.fingerprint).unwrap().as_ref(), Some(&img));
            assert_eq!(img.size, bytes.len() as u64);
            let dir = root.join(&img.fingerprint);
            let text = fs::read_to_string(dir.join("metadata.yaml")).unwrap();
            assert_eq!(ImageMetadata::from_yaml(&text).unwrap(), img.metadata);
            let rootfs = fs::symlink_metadata(store.rootfs(&img.fingerprint)).unwrap();
            assert!(rootfs.is_dir(), "rootfs is not a directory");
            assert_eq!(fs::read(store.tarball(&img.fingerprint)).unwrap(), bytes);
            let stray: Vec<PathBuf> = listing(&root)
                .into_iter()
                .filter(|p| !p.starts_with(&img.fingerprint) && !p.starts_with(".tmp"))
                .collect();
            assert!(stray.is_empty(), "stray entries in the store: {stray:?}");
        }
        Err(e) => {
            assert!(!e.to_string().is_empty(), "an empty error message");
            assert_eq!(
                listing(&root),
                empty,
                "the refused import ({e}) left entries in the store"
            );
        }
    }
    assert_eq!(
        listing(scratch.path())
            .into_iter()
            .filter(|p| !p.starts_with("store"))
            .collect::<Vec<_>>(),
        vec![Path::new("outside").to_path_buf(), "outside/keep".into()],
        "the import wrote outside the store"
    );
    assert_eq!(fs::read(outside.join("keep")).unwrap(), b"keep");
}
