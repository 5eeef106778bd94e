//! Where an entry of an LXD-style unified tarball belongs: `metadata.yaml`, `rootfs/...`
//! or `templates/...` (ignored). Entry names are checked here, before anything touches
//! the disk: absolute paths and `..` are refused, `.` components are dropped.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use super::error::ImageError;

/// Where a tarball entry belongs.
pub(crate) enum Place {
    /// `.` or `./`: nothing to do.
    Skip,
    Metadata,
    Template,
    /// Relative to `rootfs/`; empty for `rootfs/` itself.
    Rootfs(PathBuf),
}

/// Classify an entry name: refuse absolute paths and `..`, drop `.` components.
pub(crate) fn place(raw: &[u8], name: &str) -> Result<Place, ImageError> {
    if raw.first() == Some(&b'/') {
        return Err(ImageError::AbsolutePath {
            entry: name.to_string(),
        });
    }
    let mut parts = Vec::new();
    for part in raw.split(|b| *b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => {
                return Err(ImageError::ParentComponent {
                    entry: name.to_string(),
                })
            }
            p => parts.push(OsStr::from_bytes(p)),
        }
    }
    match parts.split_first() {
        None => Ok(Place::Skip),
        Some((first, [])) if *first == "metadata.yaml" => Ok(Place::Metadata),
        Some((first, _)) if *first == "templates" => Ok(Place::Template),
        Some((first, rest)) if *first == "rootfs" => Ok(Place::Rootfs(rest.iter().collect())),
        Some(_) => Err(ImageError::UnexpectedEntry {
            entry: name.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rootfs(raw: &str) -> PathBuf {
        match place(raw.as_bytes(), raw) {
            Ok(Place::Rootfs(p)) => p,
            _ => panic!("{raw} is not a rootfs entry"),
        }
    }

    #[test]
    fn image_layout_places_entries() {
        assert!(matches!(place(b"./", "./"), Ok(Place::Skip)));
        assert!(matches!(place(b"metadata.yaml", ""), Ok(Place::Metadata)));
        assert!(matches!(place(b"./metadata.yaml", ""), Ok(Place::Metadata)));
        assert!(matches!(
            place(b"templates/hosts.tpl", ""),
            Ok(Place::Template)
        ));
        assert_eq!(rootfs("rootfs/"), PathBuf::new());
        assert_eq!(
            rootfs("./rootfs/./etc//passwd"),
            PathBuf::from("etc/passwd")
        );
    }

    #[test]
    fn image_layout_refuses_bad_names() {
        assert!(matches!(
            place(b"/rootfs/etc", ""),
            Err(ImageError::AbsolutePath { .. })
        ));
        assert!(matches!(
            place(b"rootfs/../x", ""),
            Err(ImageError::ParentComponent { .. })
        ));
        assert!(matches!(
            place(b"rootfs/a/..", ""),
            Err(ImageError::ParentComponent { .. })
        ));
        assert!(matches!(
            place(b"etc/passwd", ""),
            Err(ImageError::UnexpectedEntry { .. })
        ));
        assert!(matches!(
            place(b"metadata.yaml/x", ""),
            Err(ImageError::UnexpectedEntry { .. })
        ));
    }
}
