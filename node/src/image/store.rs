//! The content-addressed image store on one host: `<data-dir>/images/<fingerprint>/`.
//!
//! ```text
//! import(src) --stream+sha256--> .tmp/import-*/image.partial
//!             --magic bytes----> image.tar | image.tar.gz   (kept for transfer to peers)
//!             --unpack---------> .tmp/import-*/{metadata.yaml, rootfs/}
//!             --syncfs, rename-> <fingerprint>/              (atomic: all or nothing)
//! ```
//!
//! The fingerprint is the sha256 of the tarball bytes as received, so peers agree on it.
//! A directory named after a fingerprint is always complete: imports build in `.tmp/` and
//! rename, deletes rename into `.tmp/` and then remove, and `open` clears `.tmp/`. Any
//! failure removes its temporary directory, so a refused tarball leaves nothing behind.
//!
//! The store root is mode 0700: unpacked images hold setuid-root binaries owned by host
//! uid 0, which host users must not reach. The runtime opens rootfs paths as root (before
//! it enters the container's user namespace).

use std::fs::{self, File, Permissions};
use std::io::{self, BufReader, Read};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;

use super::error::ImageError;
use super::fsops::remove_tree;
use super::metadata::ImageMetadata;
use super::tarball::{check_fingerprint, detect, rename, stream_to_file, unique_name, Compression};
use super::unpack::unpack;
use super::{ImportLimits, ImportedImage};

const TMP_DIR: &str = ".tmp";
const TARBALL_GZ: &str = "image.tar.gz";
const TARBALL_PLAIN: &str = "image.tar";
const METADATA: &str = "metadata.yaml";
const ROOTFS: &str = "rootfs";

/// Unpacked images and their tarballs, keyed by fingerprint.
#[derive(Debug, Clone)]
pub struct ImageStore {
    root: PathBuf,
    tmp: PathBuf,
}

/// Removes a temporary directory when dropped, unless it was renamed away.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        if let Err(e) = remove_tree(&self.0) {
            tracing::warn!(path = %self.0.display(), error = %e, "remove temporary image directory");
        }
    }
}

impl ImageStore {
    /// Open (creating) the store at `root`, usually `<data-dir>/images`, and remove what
    /// interrupted imports and deletes left behind.
    pub fn open(root: &Path) -> Result<Self, ImageError> {
        let root = root.to_path_buf();
        let tmp = root.join(TMP_DIR);
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&root)
            .map_err(|source| ImageError::CreateDir {
                path: root.clone(),
                source,
            })?;
        fs::set_permissions(&root, Permissions::from_mode(0o700)).map_err(|source| {
            ImageError::CreateDir {
                path: root.clone(),
                source,
            }
        })?;
        remove_tree(&tmp).map_err(|source| ImageError::Remove {
            path: tmp.clone(),
            source,
        })?;
        let store = Self { root, tmp };
        store.ensure_tmp()?;
        Ok(store)
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Import an image tarball (plain tar or gzip). Idempotent: importing bytes already in
    /// the store returns the stored image.
    pub fn import(
        &self,
        mut src: impl Read,
        limits: &ImportLimits,
    ) -> Result<ImportedImage, ImageError> {
        self.ensure_tmp()?;
        let work = TempDir(self.tmp.join(unique_name("import")));
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&work.0)
            .map_err(|source| ImageError::CreateDir {
                path: work.0.clone(),
                source,
            })?;

        let partial = work.0.join("image.partial");
        let (fingerprint, size) = stream_to_file(&mut src, &partial, limits.max_tarball_bytes)?;
        let final_dir = self.root.join(&fingerprint);
        if final_dir.is_dir() {
            drop(work);
            return self.existing(&fingerprint);
        }

        let compression = detect(&partial)?;
        let tarball = work.0.join(match compression {
            Compression::None => TARBALL_PLAIN,
            Compression::Gzip => TARBALL_GZ,
        });
        rename(&partial, &tarball)?;
        let file = File::open(&tarball).map_err(|source| ImageError::Open {
            path: tarball.clone(),
            source,
        })?;
        let reader = BufReader::with_capacity(256 * 1024, file);
        let metadata = match compression {
            Compression::None => unpack(reader, &work.0, limits)?,
            Compression::Gzip => unpack(MultiGzDecoder::new(reader), &work.0, limits)?,
        };

        let dir = File::open(&work.0).map_err(|source| ImageError::Open {
            path: work.0.clone(),
            source,
        })?;
        nix::unistd::syncfs(&dir).map_err(|e| ImageError::Sync {
            path: work.0.clone(),
            source: e.into(),
        })?;
        match fs::rename(&work.0, &final_dir) {
            Ok(()) => {}
            // Someone imported the same bytes meanwhile: theirs is as good as ours.
            Err(_) if final_dir.is_dir() => {
                drop(work);
                return self.existing(&fingerprint);
            }
            Err(source) => {
                return Err(ImageError::Rename {
                    from: work.0.clone(),
                    to: final_dir,
                    source,
                })
            }
        }
        tracing::info!(fingerprint = %fingerprint, size, os = %metadata.os, release = %metadata.release, "image imported");
        Ok(ImportedImage {
            fingerprint,
            size,
            metadata,
        })
    }

    /// Import the tarball at `path`.
    pub fn import_file(
        &self,
        path: &Path,
        limits: &ImportLimits,
    ) -> Result<ImportedImage, ImageError> {
        let file = File::open(path).map_err(|source| ImageError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        self.import(file, limits)
    }

    /// The image with this fingerprint, if the store has it.
    pub fn get(&self, fp: &str) -> Result<Option<ImportedImage>, ImageError> {
        check_fingerprint(fp)?;
        let dir = self.root.join(fp);
        if !dir.is_dir() {
            return Ok(None);
        }
        let path = dir.join(METADATA);
        let text = fs::read_to_string(&path)
            .map_err(|source| ImageError::ReadMetadataFile { path, source })?;
        let metadata = ImageMetadata::from_yaml(&text)?;
        let tarball = self.tarball(fp);
        let size = fs::metadata(&tarball)
            .map_err(|source| ImageError::ReadMetadataFile {
                path: tarball,
                source,
            })?
            .len();
        Ok(Some(ImportedImage {
            fingerprint: fp.to_string(),
            size,
            metadata,
        }))
    }

    /// `images/<fp>/rootfs`: the unpacked image, owned by uid 0, to be used read-only.
    /// `fp` must be a fingerprint from [`ImageStore::import`], [`ImageStore::list`] or
    /// [`ImageStore::get`]: it is joined to the path unchecked.
    pub fn rootfs(&self, fp: &str) -> PathBuf {
        self.root.join(fp).join(ROOTFS)
    }

    /// The tarball as imported (`image.tar.gz` or `image.tar`), to send to peers. The same
    /// caveat as [`ImageStore::rootfs`] applies to `fp`.
    pub fn tarball(&self, fp: &str) -> PathBuf {
        let dir = self.root.join(fp);
        let plain = dir.join(TARBALL_PLAIN);
        if plain.exists() {
            plain
        } else {
            dir.join(TARBALL_GZ)
        }
    }

    /// Fingerprints of every stored image, sorted.
    pub fn list(&self) -> Result<Vec<String>, ImageError> {
        let read_err = |source| ImageError::ReadDir {
            path: self.root.clone(),
            source,
        };
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.root).map_err(read_err)? {
            let entry = entry.map_err(read_err)?;
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            if check_fingerprint(&name).is_ok() && entry.path().is_dir() {
                out.push(name);
            }
        }
        out.sort();
        Ok(out)
    }

    /// Delete an image; deleting an absent image succeeds. The caller makes sure no
    /// container still uses it.
    pub fn delete(&self, fp: &str) -> Result<(), ImageError> {
        check_fingerprint(fp)?;
        let dir = self.root.join(fp);
        if !dir.exists() {
            return Ok(());
        }
        self.ensure_tmp()?;
        let doomed = self.tmp.join(unique_name("delete"));
        match fs::rename(&dir, &doomed) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(source) => {
                return Err(ImageError::Rename {
                    from: dir,
                    to: doomed,
                    source,
                })
            }
        }
        remove_tree(&doomed).map_err(|source| ImageError::Remove {
            path: doomed,
            source,
        })?;
        tracing::info!(fingerprint = %fp, "image deleted");
        Ok(())
    }

    fn existing(&self, fp: &str) -> Result<ImportedImage, ImageError> {
        self.get(fp)?.ok_or_else(|| ImageError::Open {
            path: self.root.join(fp),
            source: io::Error::from(io::ErrorKind::NotFound),
        })
    }

    fn ensure_tmp(&self) -> Result<(), ImageError> {
        match fs::DirBuilder::new().mode(0o700).create(&self.tmp) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
            Err(source) => Err(ImageError::CreateDir {
                path: self.tmp.clone(),
                source,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;
    use std::process::Command;

    use sha2::{Digest, Sha256};

    use super::*;
    use crate::image::sha256_file;
    use crate::image::testutil::{gzip, Tarball, TestStore};

    fn sha(bytes: &[u8]) -> String {
        hex::encode(Sha256::digest(bytes))
    }

    #[test]
    fn image_store_imports_a_good_tarball() {
        let t = TestStore::new();
        let mut tb = Tarball::good();
        tb.dir("rootfs/ro/", 0o555)
            .file("rootfs/ro/inside", b"x")
            .entry(tar::EntryType::Fifo, "rootfs/fifo", None, 0o640, b"");
        let bytes = tb.finish();
        let img = t
            .store
            .import(&bytes[..], &ImportLimits::default())
            .unwrap();
        assert_eq!(img.fingerprint, sha(&bytes));
        assert_eq!(img.size, bytes.len() as u64);
        assert_eq!(img.metadata.os, "test");
        assert_eq!(img.metadata.stop_signal, "SIGUSR2");
        assert_eq!(t.store.list().unwrap(), vec![img.fingerprint.clone()]);
        assert_eq!(t.store.get(&img.fingerprint).unwrap(), Some(img.clone()));

        let tarball = t.store.tarball(&img.fingerprint);
        assert!(tarball.ends_with("image.tar"));
        assert_eq!(fs::read(&tarball).unwrap(), bytes);
        assert_eq!(sha256_file(&tarball).unwrap(), img.fingerprint);

        let rootfs = t.store.rootfs(&img.fingerprint);
        assert_eq!(fs::read(rootfs.join("etc/hostname")).unwrap(), b"test\n");
        let su = fs::metadata(rootfs.join("bin/su")).unwrap();
        assert_eq!(su.mode() & 0o7777, 0o4755, "setuid kept");
        assert_eq!(su.mtime(), 1_600_000_000);
        assert_eq!(
            fs::metadata(rootfs.join("bin/su2")).unwrap().ino(),
            su.ino()
        );
        assert_eq!(
            fs::read_link(rootfs.join("bin/sh")).unwrap(),
            Path::new("/bin/busybox")
        );
        let ro = fs::metadata(rootfs.join("ro")).unwrap();
        assert_eq!(ro.mode() & 0o7777, 0o555);
        assert_eq!(ro.mtime(), 1_600_000_000);
        assert_eq!(fs::read(rootfs.join("ro/inside")).unwrap(), b"x");
        let fifo = fs::symlink_metadata(rootfs.join("fifo")).unwrap();
        assert_eq!(fifo.mode() & 0o170777, 0o010640);
        if nix::unistd::geteuid().is_root() {
            assert_eq!((su.uid(), su.gid()), (0, 0));
        }
        let mut top = t.listing();
        top.retain(|p| p.components().count() <= 2);
        let fp = &img.fingerprint;
        let want = [
            ".tmp",
            fp,
            &format!("{fp}/image.tar"),
            &format!("{fp}/metadata.yaml"),
        ];
        let mut want: Vec<PathBuf> = want.iter().map(PathBuf::from).collect();
        want.push(
            t.store
                .rootfs(fp)
                .strip_prefix(t.root())
                .unwrap()
                .to_path_buf(),
        );
        want.sort();
        assert_eq!(top, want);
        t.store.delete(&img.fingerprint).unwrap();
        t.assert_empty();
    }

    #[test]
    fn image_store_reimport_is_idempotent() {
        let t = TestStore::new();
        let bytes = Tarball::good().finish();
        let first = t
            .store
            .import(&bytes[..], &ImportLimits::default())
            .unwrap();
        let before = t.listing();
        let second = t
            .store
            .import(&bytes[..], &ImportLimits::default())
            .unwrap();
        assert_eq!(first, second);
        assert_eq!(t.listing(), before);
        assert_eq!(t.store.list().unwrap().len(), 1);
    }

    #[test]
    fn image_store_imports_gzip() {
        let t = TestStore::new();
        let plain = Tarball::good().finish();
        let gz = gzip(&plain);
        let img = t.store.import(&gz[..], &ImportLimits::default()).unwrap();
        assert_eq!(img.fingerprint, sha(&gz));
        assert!(t.store.tarball(&img.fingerprint).ends_with("image.tar.gz"));
        assert!(t.store.rootfs(&img.fingerprint).join("bin/su").is_file());
        // Same content, other bytes: another image.
        let other = t
            .store
            .import(&plain[..], &ImportLimits::default())
            .unwrap();
        assert_ne!(other.fingerprint, img.fingerprint);
        assert_eq!(t.store.list().unwrap().len(), 2);
    }

    #[test]
    fn image_store_delete_is_idempotent() {
        let t = TestStore::new();
        let img = t
            .store
            .import(&Tarball::good().finish()[..], &ImportLimits::default())
            .unwrap();
        t.store.delete(&img.fingerprint).unwrap();
        t.store.delete(&img.fingerprint).unwrap();
        assert_eq!(t.store.get(&img.fingerprint).unwrap(), None);
        assert!(t.store.list().unwrap().is_empty());
        t.assert_empty();
    }

    #[test]
    fn image_store_refuses_bad_fingerprints() {
        let t = TestStore::new();
        for bad in ["../etc", "", &"A".repeat(64), &"a".repeat(63), ".tmp"] {
            assert!(matches!(
                t.store.get(bad),
                Err(ImageError::InvalidFingerprint { .. })
            ));
            assert!(matches!(
                t.store.delete(bad),
                Err(ImageError::InvalidFingerprint { .. })
            ));
        }
        assert_eq!(t.store.get(&"0".repeat(64)).unwrap(), None);
    }

    #[test]
    fn image_store_open_removes_leftovers_and_keeps_images() {
        let t = TestStore::new();
        let img = t
            .store
            .import(&Tarball::good().finish()[..], &ImportLimits::default())
            .unwrap();
        let leftover = t.root().join(".tmp/import-1-2-3/rootfs/ro");
        fs::create_dir_all(&leftover).unwrap();
        fs::set_permissions(&leftover, Permissions::from_mode(0o555)).unwrap();
        let again = ImageStore::open(t.root()).unwrap();
        assert_eq!(again.list().unwrap(), vec![img.fingerprint.clone()]);
        assert!(fs::read_dir(t.root().join(".tmp"))
            .unwrap()
            .next()
            .is_none());
        let mode = fs::metadata(t.root()).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o700);
    }

    #[test]
    fn image_store_imports_the_busybox_image() {
        if !nix::unistd::geteuid().is_root() {
            println!("skipped: building the busybox image needs root (apt-get, owners)");
            return;
        }
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/build-busybox-image");
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("busybox.tar.gz");
        let status = Command::new(&script).arg(&out).status().unwrap();
        assert!(status.success(), "{} failed: {status}", script.display());

        let t = TestStore::new();
        let img = t.store.import_file(&out, &ImportLimits::default()).unwrap();
        assert_eq!(img.fingerprint, sha256_file(&out).unwrap());
        assert_eq!(img.metadata.os, "busybox");
        assert_eq!(img.metadata.architecture, "x86_64");
        assert_eq!(img.metadata.stop_signal_number().unwrap(), libc::SIGUSR2);
        assert!(img.metadata.creation_date > 0);
        let rootfs = t.store.rootfs(&img.fingerprint);
        let meta = |p: &str| fs::metadata(rootfs.join(p)).unwrap();
        let text = |p: &str| fs::read_to_string(rootfs.join(p)).unwrap();
        let link = fs::symlink_metadata(rootfs.join("sbin/init")).unwrap();
        assert!(link.file_type().is_symlink());
        assert_eq!(meta("sbin/init").ino(), meta("bin/busybox").ino());
        assert_eq!(meta("bin/busybox").mode() & 0o7777, 0o755);
        assert_eq!(meta("etc/init.d/rcS").mode() & 0o7777, 0o755);
        assert_eq!(meta("tmp").mode() & 0o7777, 0o1777);
        assert!(text("etc/inittab").contains("::sysinit:/etc/init.d/rcS"));
        assert!(text("etc/passwd").starts_with("root:x:0:0:root:/root:/bin/sh\n"));
        for path in ["dev", "proc", "sys", "run", "root", "var/log", "home"] {
            let m = fs::symlink_metadata(rootfs.join(path)).unwrap();
            assert!(m.is_dir(), "{path}");
            assert_eq!((m.uid(), m.gid()), (0, 0), "{path}");
        }
    }
}
