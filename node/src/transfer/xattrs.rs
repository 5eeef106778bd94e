//! Which extended attributes travel with a layer, and how the ids inside some of them
//! are shifted.
//!
//! - `user.*`: the container's own, and `user.overlay.*` (opaque directories, redirects)
//!   of an overlay mounted with `userxattr`; `trusted.overlay.*`: the same for a
//!   privileged container's overlay. Copied as they are.
//! - `security.capability`: file capabilities. A version 3 value names the root id it
//!   applies to (a host id); it travels container-relative like an owner. A version 2
//!   value applies to host root: kept for a privileged container, dropped from an
//!   unprivileged one (where the kernel ignores it anyway).
//! - `system.posix_acl_access`/`_default`: named user and group entries are shifted.
//!
//! Everything else (`security.selinux`, other `trusted.*`) stays behind.

use std::path::Path;

use sha2::{Digest, Sha256};

use super::error::TransferError;
use super::ids::IdRange;

const CAPABILITY: &[u8] = b"security.capability";
const ACL_ACCESS: &[u8] = b"system.posix_acl_access";
const ACL_DEFAULT: &[u8] = b"system.posix_acl_default";

const CAP_REVISION_MASK: u32 = 0xFF00_0000;
const CAP_REVISION_2: u32 = 0x0200_0000;
const CAP_REVISION_3: u32 = 0x0300_0000;
const CAP_V2_LEN: usize = 20;
const CAP_V3_LEN: usize = 24;

const ACL_VERSION: u32 = 2;
const ACL_USER: u16 = 0x02;
const ACL_GROUP: u16 = 0x08;

/// An xattr as (name, value).
pub(crate) type Xattr = (Vec<u8>, Vec<u8>);

/// Whether an xattr with this name travels.
pub(crate) fn allowed(name: &[u8]) -> bool {
    name.starts_with(b"user.")
        || name.starts_with(b"trusted.overlay.")
        || name == CAPABILITY
        || name == ACL_ACCESS
        || name == ACL_DEFAULT
}

/// The wire value of a host xattr, with ids made container-relative; `None` = dropped.
pub(crate) fn to_wire(
    name: &[u8],
    value: &[u8],
    ids: IdRange,
    path: &Path,
) -> Result<Option<Vec<u8>>, TransferError> {
    if name == CAPABILITY {
        return capability_to_wire(value, ids, path);
    }
    if name == ACL_ACCESS || name == ACL_DEFAULT {
        return shift_acl(name, value, path, |id| ids.container_id(id, path, "acl id")).map(Some);
    }
    Ok(Some(value.to_vec()))
}

/// The host value of a wire xattr for a container with the range `ids`.
pub(crate) fn from_wire(
    name: &[u8],
    value: &[u8],
    ids: IdRange,
    path: &Path,
) -> Result<Vec<u8>, TransferError> {
    if !allowed(name) {
        return Err(TransferError::XattrNotAllowed {
            path: path.to_path_buf(),
            name: String::from_utf8_lossy(name).into_owned(),
        });
    }
    if name == CAPABILITY {
        return capability_from_wire(value, ids, path);
    }
    if name == ACL_ACCESS || name == ACL_DEFAULT {
        return shift_acl(name, value, path, |id| ids.host_id(id, path, "acl id"));
    }
    Ok(value.to_vec())
}

/// A digest of a sorted xattr list, for change detection.
pub(crate) fn digest(list: &[Xattr]) -> [u8; 16] {
    let mut h = Sha256::new();
    for (name, value) in list {
        h.update((name.len() as u64).to_le_bytes());
        h.update(name);
        h.update((value.len() as u64).to_le_bytes());
        h.update(value);
    }
    let full = h.finalize();
    let mut out = [0u8; 16];
    out.copy_from_slice(&full[..16]);
    out
}

fn bad(name: &[u8], path: &Path) -> TransferError {
    TransferError::BadXattr {
        path: path.to_path_buf(),
        name: String::from_utf8_lossy(name).into_owned(),
    }
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Wire form: always version 3 with a container-relative root id.
fn capability_to_wire(
    value: &[u8],
    ids: IdRange,
    path: &Path,
) -> Result<Option<Vec<u8>>, TransferError> {
    if value.len() < 4 {
        return Err(bad(CAPABILITY, path));
    }
    let magic = le32(value, 0);
    let host_root = match (magic & CAP_REVISION_MASK, value.len()) {
        (CAP_REVISION_2, CAP_V2_LEN) => 0,
        (CAP_REVISION_3, CAP_V3_LEN) => le32(value, 20),
        _ => return Err(bad(CAPABILITY, path)),
    };
    if magic & CAP_REVISION_MASK == CAP_REVISION_2 && ids.to_container(0).is_none() {
        return Ok(None);
    }
    let root = ids.container_id(host_root, path, "capability root id")?;
    let mut out = Vec::with_capacity(CAP_V3_LEN);
    out.extend_from_slice(&((magic & !CAP_REVISION_MASK) | CAP_REVISION_3).to_le_bytes());
    out.extend_from_slice(&value[4..CAP_V2_LEN]);
    out.extend_from_slice(&root.to_le_bytes());
    Ok(Some(out))
}

/// Host form: version 3 naming the target's root, or version 2 for host root.
fn capability_from_wire(value: &[u8], ids: IdRange, path: &Path) -> Result<Vec<u8>, TransferError> {
    if value.len() != CAP_V3_LEN || le32(value, 0) & CAP_REVISION_MASK != CAP_REVISION_3 {
        return Err(bad(CAPABILITY, path));
    }
    let flags = le32(value, 0) & !CAP_REVISION_MASK;
    let root = ids.host_id(le32(value, 20), path, "capability root id")?;
    let (revision, len) = if root == 0 {
        (CAP_REVISION_2, CAP_V2_LEN)
    } else {
        (CAP_REVISION_3, CAP_V3_LEN)
    };
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(&(flags | revision).to_le_bytes());
    out.extend_from_slice(&value[4..CAP_V2_LEN]);
    if root != 0 {
        out.extend_from_slice(&root.to_le_bytes());
    }
    Ok(out)
}

/// POSIX ACL xattr: a version word, then (tag u16, perm u16, id u32) entries.
fn shift_acl(
    name: &[u8],
    value: &[u8],
    path: &Path,
    mut shift: impl FnMut(u32) -> Result<u32, TransferError>,
) -> Result<Vec<u8>, TransferError> {
    if value.len() < 4 || !(value.len() - 4).is_multiple_of(8) || le32(value, 0) != ACL_VERSION {
        return Err(bad(name, path));
    }
    let mut out = value.to_vec();
    for at in (4..value.len()).step_by(8) {
        let tag = u16::from_le_bytes([value[at], value[at + 1]]);
        if tag == ACL_USER || tag == ACL_GROUP {
            let id = shift(le32(value, at + 4))?;
            out[at + 4..at + 8].copy_from_slice(&id.to_le_bytes());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cap_v3(root: u32) -> Vec<u8> {
        let mut v = (CAP_REVISION_3 | 1).to_le_bytes().to_vec();
        v.extend_from_slice(&[0x00, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        v.extend_from_slice(&root.to_le_bytes());
        v
    }

    #[test]
    fn capability_root_id_is_shifted_between_ranges() {
        let p = Path::new("bin/ping");
        let from = IdRange::unprivileged(1_000_000);
        let to = IdRange::unprivileged(2_000_000);
        let wire = to_wire(CAPABILITY, &cap_v3(1_000_000), from, p)
            .unwrap()
            .unwrap();
        assert_eq!(le32(&wire, 20), 0);
        let host = from_wire(CAPABILITY, &wire, to, p).unwrap();
        assert_eq!(host, cap_v3(2_000_000));
        // Into a privileged container: version 2, no root id.
        let host = from_wire(CAPABILITY, &wire, IdRange::PRIVILEGED, p).unwrap();
        assert_eq!(host.len(), CAP_V2_LEN);
        assert_eq!(le32(&host, 0), CAP_REVISION_2 | 1);
        // Another container's root is refused; a v2 value is dropped.
        assert!(to_wire(CAPABILITY, &cap_v3(5), from, p).is_err());
        assert_eq!(to_wire(CAPABILITY, &host, from, p).unwrap(), None);
        assert!(to_wire(CAPABILITY, &host, IdRange::PRIVILEGED, p)
            .unwrap()
            .is_some());
    }

    #[test]
    fn acl_named_entries_are_shifted() {
        let p = Path::new("etc");
        let mut acl = ACL_VERSION.to_le_bytes().to_vec();
        for (tag, id) in [
            (1u16, u32::MAX),
            (ACL_USER, 1_000_007),
            (ACL_GROUP, 1_000_009),
        ] {
            acl.extend_from_slice(&tag.to_le_bytes());
            acl.extend_from_slice(&7u16.to_le_bytes());
            acl.extend_from_slice(&id.to_le_bytes());
        }
        let from = IdRange::unprivileged(1_000_000);
        let wire = to_wire(ACL_ACCESS, &acl, from, p).unwrap().unwrap();
        assert_eq!(
            (le32(&wire, 4 + 4), le32(&wire, 12 + 4), le32(&wire, 20 + 4)),
            (u32::MAX, 7, 9)
        );
        let back = from_wire(ACL_ACCESS, &wire, from, p).unwrap();
        assert_eq!(back, acl);
        assert!(to_wire(ACL_ACCESS, &acl[..7], from, p).is_err());
        assert!(from_wire(b"security.selinux", b"x", from, p).is_err());
    }
}
