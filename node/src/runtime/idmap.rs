//! Host id ranges for unprivileged containers.
//!
//! Container root (uid/gid 0) and the next 65535 ids map to a host range that belongs to
//! that container alone: `base + k * size` for the smallest free slot `k`, so two containers
//! never share a host id and a breakout lands in an id that owns nothing else. The
//! allocation is remembered in `<containers_dir>/idmap.json` (written atomically, under an
//! flock on `idmap.lock` so concurrent daemons or threads cannot hand out a slot twice)
//! and freed when the container is deleted.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::path::Path;

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use super::config::{read_json, write_json};
use super::error::RuntimeError;

/// First host id handed out.
pub const IDMAP_BASE: u32 = 1_000_000;
/// Ids per container (uid and gid 0..65535 inside).
pub const IDMAP_SIZE: u32 = 65536;

/// A host id range: container id `n` is host id `host_base + n`, for `n < size`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdRange {
    pub host_base: u32,
    pub size: u32,
}

/// Which container holds which range.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdmapAllocator {
    base: u32,
    size: u32,
    /// Container name -> host base.
    allocations: BTreeMap<String, u32>,
}

impl Default for IdmapAllocator {
    fn default() -> Self {
        Self::new(IDMAP_BASE, IDMAP_SIZE)
    }
}

impl IdmapAllocator {
    pub fn new(base: u32, size: u32) -> Self {
        Self {
            base,
            size,
            allocations: BTreeMap::new(),
        }
    }

    /// The range of `name`, allocating the lowest free slot if it has none. Idempotent.
    pub fn allocate(&mut self, name: &str) -> Result<IdRange, RuntimeError> {
        if let Some(range) = self.get(name) {
            return Ok(range);
        }
        let used: std::collections::BTreeSet<u32> = self.allocations.values().copied().collect();
        // A range ends before u32::MAX, which is (uid_t)-1 and never a valid id.
        let slots = (u64::from(u32::MAX) - u64::from(self.base)) / u64::from(self.size.max(1));
        for k in 0..slots {
            let host_base = u64::from(self.base) + k * u64::from(self.size);
            let Ok(host_base) = u32::try_from(host_base) else {
                break;
            };
            if !used.contains(&host_base) {
                self.allocations.insert(name.to_string(), host_base);
                return Ok(IdRange {
                    host_base,
                    size: self.size,
                });
            }
        }
        Err(RuntimeError::IdmapExhausted {
            name: name.to_string(),
            used: self.allocations.len(),
            size: self.size,
        })
    }

    /// The range of `name`, if it has one.
    pub fn get(&self, name: &str) -> Option<IdRange> {
        self.allocations.get(name).map(|&host_base| IdRange {
            host_base,
            size: self.size,
        })
    }

    /// Releases the range of `name`; returns it if there was one.
    pub fn free(&mut self, name: &str) -> Option<IdRange> {
        let host_base = self.allocations.remove(name)?;
        Some(IdRange {
            host_base,
            size: self.size,
        })
    }

    /// Number of allocated ranges.
    pub fn len(&self) -> usize {
        self.allocations.len()
    }

    /// Whether no range is allocated.
    pub fn is_empty(&self) -> bool {
        self.allocations.is_empty()
    }

    /// Runs `f` on the allocator stored in `dir` under an exclusive lock and saves it if
    /// `f` succeeds. A missing file is an empty allocator.
    pub(crate) fn update<T>(
        dir: &Path,
        name: &str,
        f: impl FnOnce(&mut IdmapAllocator) -> Result<T, RuntimeError>,
    ) -> Result<T, RuntimeError> {
        let lock_path = dir.join("idmap.lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|err| RuntimeError::io(name, "opening id map lock", &lock_path, err))?;
        let _lock = Flock::lock(file, FlockArg::LockExclusive)
            .map_err(|(_, errno)| RuntimeError::sys(name, "locking the id map", errno))?;
        let path = dir.join("idmap.json");
        let mut alloc = if path.exists() {
            read_json::<IdmapAllocator>(name, "reading id map", &path)?
        } else {
            IdmapAllocator::default()
        };
        let before = alloc.clone();
        let out = f(&mut alloc)?;
        if alloc != before {
            write_json(name, "writing id map", &path, &alloc)?;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn overlaps(a: IdRange, b: IdRange) -> bool {
        let (a0, a1) = (
            u64::from(a.host_base),
            u64::from(a.host_base) + u64::from(a.size),
        );
        let (b0, b1) = (
            u64::from(b.host_base),
            u64::from(b.host_base) + u64::from(b.size),
        );
        a0 < b1 && b0 < a1
    }

    #[test]
    fn ranges_are_distinct_and_reused_after_free() {
        let mut a = IdmapAllocator::default();
        let r1 = a.allocate("one").unwrap();
        let r2 = a.allocate("two").unwrap();
        let r3 = a.allocate("three").unwrap();
        assert_eq!(r1.host_base, 1_000_000);
        assert_eq!(r2.host_base, 1_065_536);
        assert_eq!(r3.host_base, 1_131_072);
        assert!(!overlaps(r1, r2) && !overlaps(r2, r3) && !overlaps(r1, r3));
        assert_eq!(a.allocate("two").unwrap(), r2, "allocate is idempotent");
        assert_eq!(a.free("two"), Some(r2));
        assert_eq!(a.free("two"), None);
        assert_eq!(
            a.allocate("four").unwrap(),
            r2,
            "lowest free slot is reused"
        );
        assert_eq!(a.len(), 3);
    }

    #[test]
    fn exhaustion_is_an_error() {
        // Only two whole ranges fit below u32::MAX (which is not a valid id).
        let mut a = IdmapAllocator::new(u32::MAX - 2500, 1000);
        a.allocate("a").unwrap();
        a.allocate("b").unwrap();
        let err = a.allocate("c").unwrap_err();
        assert!(
            matches!(err, RuntimeError::IdmapExhausted { used: 2, .. }),
            "{err}"
        );
    }

    #[test]
    fn persisted_under_lock() {
        let dir = tempfile::tempdir().unwrap();
        let r1 = IdmapAllocator::update(dir.path(), "x", |a| a.allocate("x")).unwrap();
        let r2 = IdmapAllocator::update(dir.path(), "y", |a| a.allocate("y")).unwrap();
        assert_ne!(r1, r2);
        let again = IdmapAllocator::update(dir.path(), "x", |a| a.allocate("x")).unwrap();
        assert_eq!(again, r1, "the stored allocation is found again");
        let freed = IdmapAllocator::update(dir.path(), "x", |a| Ok(a.free("x"))).unwrap();
        assert_eq!(freed, Some(r1));
        let json = std::fs::read_to_string(dir.path().join("idmap.json")).unwrap();
        assert!(json.contains("\"y\"") && !json.contains("\"x\""), "{json}");
        // A failing closure saves nothing.
        let err = IdmapAllocator::update(dir.path(), "z", |a| {
            a.allocate("z")?;
            Err::<(), _>(RuntimeError::NotFound { name: "z".into() })
        });
        assert!(err.is_err());
        let json = std::fs::read_to_string(dir.path().join("idmap.json")).unwrap();
        assert!(!json.contains("\"z\""));
    }

    #[test]
    fn concurrent_updates_never_share_a_range() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let path = path.clone();
                std::thread::spawn(move || {
                    let name = format!("c{i}");
                    IdmapAllocator::update(&path, &name, |a| a.allocate(&name)).unwrap()
                })
            })
            .collect();
        let mut bases: Vec<u32> = handles
            .into_iter()
            .map(|h| h.join().unwrap().host_base)
            .collect();
        bases.sort_unstable();
        bases.dedup();
        assert_eq!(bases.len(), 8);
    }
}
