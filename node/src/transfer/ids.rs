//! Owners travel container-relative: host id minus the source's base. The target adds
//! its own base, so a layer moves between id ranges (1000000+5 → 2000000+5) and an id
//! outside the range never reaches the stream or the disk.

use std::path::Path;

use super::error::TransferError;

/// A container's host id range: container id `n` is host id `base + n`, for `n < size`.
/// uids and gids share it (Shoal maps both the same way).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IdRange {
    pub base: u32,
    pub size: u32,
}

impl IdRange {
    /// A privileged container: no user namespace, host ids are container ids.
    pub const PRIVILEGED: IdRange = IdRange {
        base: 0,
        size: u32::MAX,
    };

    /// An unprivileged container's 65536 ids from `base`.
    pub fn unprivileged(base: u32) -> IdRange {
        IdRange { base, size: 65536 }
    }

    /// The container id of host id `host`, if the range holds it.
    pub(crate) fn to_container(self, host: u32) -> Option<u32> {
        host.checked_sub(self.base).filter(|id| *id < self.size)
    }

    /// The host id of container id `id`; never `u32::MAX` (the "no change" id).
    pub(crate) fn to_host(self, id: u32) -> Option<u32> {
        if id >= self.size {
            return None;
        }
        self.base.checked_add(id).filter(|h| *h != u32::MAX)
    }

    pub(crate) fn container_id(
        self,
        host: u32,
        path: &Path,
        what: &'static str,
    ) -> Result<u32, TransferError> {
        self.to_container(host)
            .ok_or_else(|| self.out_of_range(path, what, host))
    }

    pub(crate) fn host_id(
        self,
        id: u32,
        path: &Path,
        what: &'static str,
    ) -> Result<u32, TransferError> {
        self.to_host(id)
            .ok_or_else(|| self.out_of_range(path, what, id))
    }

    fn out_of_range(self, path: &Path, what: &'static str, id: u32) -> TransferError {
        TransferError::IdOutOfRange {
            path: path.to_path_buf(),
            what,
            id: id.into(),
            base: self.base,
            size: self.size,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shifts_within_the_range_only() {
        let r = IdRange::unprivileged(1_000_000);
        assert_eq!(r.to_container(1_000_005), Some(5));
        assert_eq!(r.to_container(999_999), None);
        assert_eq!(r.to_container(1_065_536), None);
        assert_eq!(r.to_host(65_535), Some(1_065_535));
        assert_eq!(r.to_host(65_536), None);
        let top = IdRange {
            base: u32::MAX - 10,
            size: 65536,
        };
        assert_eq!(top.to_host(10), None);
        assert_eq!(top.to_host(11), None);
        assert_eq!(IdRange::PRIVILEGED.to_container(0), Some(0));
        assert_eq!(
            IdRange::PRIVILEGED.to_host(u32::MAX - 1),
            Some(u32::MAX - 1)
        );
    }
}
