//! The tarball as received: streamed to disk while hashed (its sha256 is the image's
//! fingerprint), bounded in size, and sniffed for its compression.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

use super::error::ImageError;

/// How the tarball is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Compression {
    None,
    Gzip,
}

/// The sha256 of a file, as lowercase hex.
pub fn sha256_file(path: &Path) -> Result<String, ImageError> {
    let mut file = File::open(path).map_err(|source| ImageError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    let mut hasher = Sha256::new();
    io::copy(&mut file, &mut hasher).map_err(|source| ImageError::ReadMetadataFile {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(hex::encode(hasher.finalize()))
}

/// 64 lowercase hex digits, so a fingerprint can never name another path.
pub(crate) fn check_fingerprint(fp: &str) -> Result<(), ImageError> {
    if fp.len() == 64 && fp.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        Ok(())
    } else {
        Err(ImageError::InvalidFingerprint {
            fingerprint: fp.to_string(),
        })
    }
}

/// Copy `src` to a new file at `path`, hashing; refuse more than `limit` bytes.
pub(crate) fn stream_to_file(
    src: &mut impl Read,
    path: &Path,
    limit: u64,
) -> Result<(String, u64), ImageError> {
    let write_err = |source| ImageError::WriteTemp {
        path: path.to_path_buf(),
        source,
    };
    let mut out = File::create_new(path).map_err(write_err)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut size: u64 = 0;
    loop {
        let n = match src.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(source) => return Err(ImageError::ReadSource { source }),
        };
        size += n as u64;
        if size > limit {
            return Err(ImageError::TarballTooLarge { limit });
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n]).map_err(write_err)?;
    }
    out.flush().map_err(write_err)?;
    Ok((hex::encode(hasher.finalize()), size))
}

/// Tell plain tar from gzip by the magic bytes; name the compressions we refuse.
pub(crate) fn detect(path: &Path) -> Result<Compression, ImageError> {
    let mut head = [0u8; 6];
    let mut file = File::open(path).map_err(|source| ImageError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    let mut n = 0;
    while n < head.len() {
        match file.read(&mut head[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(source) => return Err(ImageError::ReadSource { source }),
        }
    }
    let head = &head[..n];
    let refused = |found| Err(ImageError::UnsupportedCompression { found });
    if head.starts_with(&[0x1f, 0x8b]) {
        Ok(Compression::Gzip)
    } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
        refused("xz")
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        refused("zstd")
    } else if head.starts_with(b"BZh") {
        refused("bzip2")
    } else if head.starts_with(&[0x04, 0x22, 0x4d, 0x18]) {
        refused("lz4")
    } else {
        Ok(Compression::None)
    }
}

pub(crate) fn rename(from: &Path, to: &Path) -> Result<(), ImageError> {
    fs::rename(from, to).map_err(|source| ImageError::Rename {
        from: from.to_path_buf(),
        to: to.to_path_buf(),
        source,
    })
}

pub(crate) fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}-{}-{}-{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_sha256_file_and_fingerprints() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        fs::write(&path, b"abc").unwrap();
        let fp = sha256_file(&path).unwrap();
        assert_eq!(
            fp,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        check_fingerprint(&fp).unwrap();
        assert!(check_fingerprint(&fp.to_uppercase()).is_err());
        assert!(matches!(
            sha256_file(&dir.path().join("missing")),
            Err(ImageError::Open { .. })
        ));
    }

    #[test]
    fn image_detects_compression() {
        let dir = tempfile::tempdir().unwrap();
        let cases: [(&[u8], Option<Compression>); 6] = [
            (&[0x1f, 0x8b, 8, 0], Some(Compression::Gzip)),
            (b"rootfs/\0\0\0", Some(Compression::None)),
            (b"", Some(Compression::None)),
            (&[0xfd, b'7', b'z', b'X', b'Z', 0], None),
            (&[0x28, 0xb5, 0x2f, 0xfd], None),
            (b"BZh91AY", None),
        ];
        for (i, (head, want)) in cases.iter().enumerate() {
            let path = dir.path().join(i.to_string());
            fs::write(&path, head).unwrap();
            assert_eq!(detect(&path).ok(), *want, "case {i}");
        }
    }
}
