//! Resource limits and usage counters, translated to v1 or v2 interface files.
//!
//! | limit          | v1 file                                        | v2 file                       |
//! |----------------|------------------------------------------------|-------------------------------|
//! | memory         | memory.limit_in_bytes (+ memsw if it exists)   | memory.max (+ memory.swap.max) |
//! | cpu            | cpu.cfs_period_us = 100000, cpu.cfs_quota_us   | cpu.max "QUOTA 100000"        |
//! | pids           | pids.max                                       | pids.max                      |
//!
//! | usage          | v1                     | v2                          |
//! |----------------|------------------------|-----------------------------|
//! | memory bytes   | memory.usage_in_bytes  | memory.current              |
//! | cpu nanos      | cpuacct.usage          | cpu.stat usage_usec × 1000  |
//! | tasks          | pids.current           | pids.current                |
//!
//! Each controller is looked up where the host has it (a v1 hierarchy first, else the
//! unified one if the manager enabled it there), so hybrid hosts need no special case.
//! `None` means "no limit" and is written as `-1` / `max`.

use std::io::ErrorKind;

use super::error::CgroupError;
use super::fsio::{parse_u64, procs_recursive, read_opt, read_u64, write_raw, write_value};
use super::hierarchy::{find, unified, Flavor, Hierarchy};

/// CFS period used for cpu quotas, in microseconds (100 ms).
pub const CPU_PERIOD_US: u64 = 100_000;

/// Smallest accepted cpu limit: the kernel's 1 ms minimum quota per 100 ms period.
pub const MIN_CPU_MILLICORES: u64 = 10;

/// Resource limits of one container; `None` means unlimited.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    /// Memory limit in bytes (no swap beyond it).
    pub memory_bytes: Option<u64>,
    /// CPU limit in thousandths of a core (1000 = one core), as a CFS quota over 100 ms.
    pub cpu_millicores: Option<u64>,
    /// Maximum number of tasks (processes and threads).
    pub pids_max: Option<u64>,
}

/// Resource usage of one container, read from the kernel's counters.
///
/// A counter whose controller the host does not offer reads 0 (pids falls back to the
/// number of processes listed in `cgroup.procs`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub memory_bytes: u64,
    pub cpu_nanos: u64,
    pub pids: u64,
}

impl Limits {
    /// Rejects values the kernel would refuse or that cannot run anything.
    pub fn validate(&self) -> Result<(), CgroupError> {
        if self.memory_bytes == Some(0) {
            return Err(CgroupError::InvalidLimit {
                field: "memory_bytes",
                value: 0,
                reason: "must be greater than 0",
            });
        }
        if let Some(m) = self.cpu_millicores {
            cpu_quota_us(m)?;
        }
        if self.pids_max == Some(0) {
            return Err(CgroupError::InvalidLimit {
                field: "pids_max",
                value: 0,
                reason: "must be at least 1",
            });
        }
        Ok(())
    }
}

/// The CFS quota for `millicores` over [`CPU_PERIOD_US`].
pub(crate) fn cpu_quota_us(millicores: u64) -> Result<u64, CgroupError> {
    let invalid = |reason| CgroupError::InvalidLimit {
        field: "cpu_millicores",
        value: millicores,
        reason,
    };
    if millicores < MIN_CPU_MILLICORES {
        return Err(invalid(
            "below the minimum of 10 (a 1 ms quota per 100 ms period)",
        ));
    }
    millicores
        .checked_mul(CPU_PERIOD_US / 1000)
        .ok_or_else(|| invalid("too large"))
}

/// Writes all three limits into the container's cgroups.
pub(crate) fn apply(dirs: &[Hierarchy], limits: &Limits) -> Result<(), CgroupError> {
    limits.validate()?;
    apply_memory(dirs, limits.memory_bytes)?;
    apply_cpu(dirs, limits.cpu_millicores)?;
    apply_pids(dirs, limits.pids_max)
}

/// The hierarchy for `controller`, or an error if a limit needs it and it is missing.
fn locate<'a>(
    dirs: &'a [Hierarchy],
    controller: &'static str,
    field: &'static str,
    wanted: bool,
) -> Result<Option<&'a Hierarchy>, CgroupError> {
    match find(dirs, controller) {
        Some(h) => Ok(Some(h)),
        None if wanted => Err(CgroupError::ControllerUnavailable { field, controller }),
        None => Ok(None),
    }
}

fn apply_memory(dirs: &[Hierarchy], bytes: Option<u64>) -> Result<(), CgroupError> {
    let Some(h) = locate(dirs, "memory", "memory_bytes", bytes.is_some())? else {
        return Ok(());
    };
    match h.flavor {
        Flavor::V1 => {
            let value = bytes.map_or_else(|| "-1".to_string(), |b| b.to_string());
            let mem = h.dir.join("memory.limit_in_bytes");
            let memsw = h.dir.join("memory.memsw.limit_in_bytes");
            let has_memsw = memsw.exists();
            match write_raw(&mem, &value) {
                Ok(()) if has_memsw => set_memsw(&memsw, &value),
                Ok(()) => Ok(()),
                // Raising the limit above memory+swap: the kernel wants memsw raised first.
                Err(err) if err.raw_os_error() == Some(libc::EINVAL) && has_memsw => {
                    set_memsw(&memsw, &value)?;
                    write_value(&mem, &value)
                }
                Err(err) => Err(CgroupError::Write {
                    path: mem,
                    value,
                    err,
                }),
            }
        }
        Flavor::V2 => {
            let value = bytes.map_or_else(|| "max".to_string(), |b| b.to_string());
            write_value(&h.dir.join("memory.max"), &value)?;
            let swap = h.dir.join("memory.swap.max");
            if swap.exists() {
                write_value(&swap, if bytes.is_some() { "0" } else { "max" })?;
            }
            Ok(())
        }
    }
}

/// memsw is optional (swap accounting may be off): EINVAL and ENOENT are ignored.
fn set_memsw(path: &std::path::Path, value: &str) -> Result<(), CgroupError> {
    match write_raw(path, value) {
        Ok(()) => Ok(()),
        Err(err)
            if err.raw_os_error() == Some(libc::EINVAL) || err.kind() == ErrorKind::NotFound =>
        {
            tracing::debug!(path = %path.display(), value, %err, "memsw limit not set");
            Ok(())
        }
        Err(err) => Err(CgroupError::Write {
            path: path.to_path_buf(),
            value: value.to_string(),
            err,
        }),
    }
}

fn apply_cpu(dirs: &[Hierarchy], millicores: Option<u64>) -> Result<(), CgroupError> {
    let Some(h) = locate(dirs, "cpu", "cpu_millicores", millicores.is_some())? else {
        return Ok(());
    };
    let quota = millicores.map(cpu_quota_us).transpose()?;
    match h.flavor {
        Flavor::V1 => {
            write_value(&h.dir.join("cpu.cfs_period_us"), &CPU_PERIOD_US.to_string())?;
            let q = quota.map_or_else(|| "-1".to_string(), |q| q.to_string());
            write_value(&h.dir.join("cpu.cfs_quota_us"), &q)
        }
        Flavor::V2 => {
            let q = quota.map_or_else(|| "max".to_string(), |q| q.to_string());
            write_value(&h.dir.join("cpu.max"), &format!("{q} {CPU_PERIOD_US}"))
        }
    }
}

fn apply_pids(dirs: &[Hierarchy], max: Option<u64>) -> Result<(), CgroupError> {
    let Some(h) = locate(dirs, "pids", "pids_max", max.is_some())? else {
        return Ok(());
    };
    let value = max.map_or_else(|| "max".to_string(), |m| m.to_string());
    write_value(&h.dir.join("pids.max"), &value)
}

/// Reads the usage counters of the container's cgroups.
pub(crate) fn read_usage(dirs: &[Hierarchy]) -> Result<Usage, CgroupError> {
    let memory_bytes = match find(dirs, "memory") {
        Some(h) if h.flavor == Flavor::V1 => read_u64(&h.dir.join("memory.usage_in_bytes"))?,
        Some(h) => read_u64(&h.dir.join("memory.current"))?,
        None => 0,
    };
    let cpu_nanos = match (find(dirs, "cpuacct"), unified(dirs)) {
        (Some(h), _) => read_u64(&h.dir.join("cpuacct.usage"))?,
        (None, Some(h)) => {
            let path = h.dir.join("cpu.stat");
            match read_opt(&path)? {
                Some(text) => cpu_stat_usage_usec(&path, &text)?.saturating_mul(1000),
                None => 0,
            }
        }
        (None, None) => 0,
    };
    let pids = match find(dirs, "pids") {
        Some(h) => read_u64(&h.dir.join("pids.current"))?,
        None => {
            let mut pids = Vec::new();
            for h in dirs {
                procs_recursive(&h.dir, &mut pids)?;
            }
            pids.sort_unstable();
            pids.dedup();
            pids.len() as u64
        }
    };
    Ok(Usage {
        memory_bytes,
        cpu_nanos,
        pids,
    })
}

fn cpu_stat_usage_usec(path: &std::path::Path, text: &str) -> Result<u64, CgroupError> {
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("usage_usec "))
        .ok_or_else(|| CgroupError::Parse {
            path: path.to_path_buf(),
            content: text.to_string(),
        })?;
    parse_u64(path, line)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::path::Path;

    fn v1(dir: &Path, ctrls: &[&str]) -> Hierarchy {
        Hierarchy {
            flavor: Flavor::V1,
            controllers: ctrls.iter().map(|c| c.to_string()).collect(),
            dir: dir.to_path_buf(),
        }
    }

    #[test]
    fn validation_messages_are_clear() {
        let bad = Limits {
            cpu_millicores: Some(5),
            ..Limits::default()
        };
        assert_eq!(
            bad.validate().unwrap_err().to_string(),
            "invalid limit cpu_millicores = 5: below the minimum of 10 (a 1 ms quota per 100 ms period)"
        );
        let bad = Limits {
            memory_bytes: Some(0),
            ..Limits::default()
        };
        assert!(bad
            .validate()
            .unwrap_err()
            .to_string()
            .contains("memory_bytes = 0"));
        let bad = Limits {
            pids_max: Some(0),
            ..Limits::default()
        };
        assert!(bad.validate().is_err());
        assert_eq!(cpu_quota_us(1500).unwrap(), 150_000);
        assert_eq!(cpu_quota_us(10).unwrap(), 1_000);
        assert!(cpu_quota_us(u64::MAX).is_err());
    }

    #[test]
    fn missing_controller_is_an_error_only_when_a_limit_needs_it() {
        let tmp = tempfile::tempdir().unwrap();
        let dirs = [v1(tmp.path(), &["name=systemd"])];
        apply(&dirs, &Limits::default()).unwrap();
        let err = apply(
            &dirs,
            &Limits {
                pids_max: Some(10),
                ..Limits::default()
            },
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot set pids_max: the pids controller is not available to the daemon's cgroup"
        );
    }

    #[test]
    fn cpu_stat_parsing() {
        let p = Path::new("/x/cpu.stat");
        let text = "usage_usec 1234\nuser_usec 1000\nsystem_usec 234\n";
        assert_eq!(cpu_stat_usage_usec(p, text).unwrap(), 1234);
        assert!(cpu_stat_usage_usec(p, "user_usec 1\n").is_err());
    }

    #[test]
    fn usage_falls_back_to_procs_without_pids_controller() {
        let tmp = tempfile::tempdir().unwrap();
        fs::write(tmp.path().join("cgroup.procs"), "7\n8\n").unwrap();
        let u = read_usage(&[v1(tmp.path(), &["name=systemd"])]).unwrap();
        assert_eq!(
            u,
            Usage {
                memory_bytes: 0,
                cpu_nanos: 0,
                pids: 2
            }
        );
    }
}
