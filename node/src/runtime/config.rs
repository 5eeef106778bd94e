//! Configuration types, the on-disk layout of a container and its stored files.
//!
//! ```text
//! <containers_dir>/                   mode 0711
//!   idmap.json  idmap.lock            host id ranges of all containers (see idmap.rs)
//!   .rootfs/                          empty; every container's overlay mount point, used
//!                                     only inside each container's own mount namespace
//!   <name>/                           mode 0711, root-owned
//!     config.json                     StoredConfig (written by create, atomically)
//!     monitor.lock                    flock held by the live monitor
//!     monitor.log  console.log[.1]    monitor stderr; init's console, size-capped
//!     upper/ work/                    overlay upper and work dirs (owned by mapped root)
//! <run_dir>/<name>.sock               the monitor's control socket (SOCK_SEQPACKET)
//! <run_dir>/<name>.state              MonitorState: last exit status (written by the monitor)
//! <run_dir>/lease                     the host's lease expiry, unix ms (see lease.rs)
//! ```

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::error::RuntimeError;
use super::idmap::IdRange;
use crate::cgroups::Limits;

/// Where the runtime keeps its files and how it starts monitors.
#[derive(Clone, Debug)]
pub struct RuntimeConfig {
    /// One directory per container (persistent).
    pub containers_dir: PathBuf,
    /// Control sockets of the monitors (a short path on a tmpfs such as /run/shoal is best).
    pub run_dir: PathBuf,
    /// The `shoald` binary; monitors are `shoald monitor ...`.
    pub shoald_exe: PathBuf,
    /// Name of the cgroup beneath the daemon's own that holds the containers' cgroups.
    pub cgroup_group: String,
}

/// What a container is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerConfig {
    /// Container name, also its hostname: `[A-Za-z0-9][A-Za-z0-9-]{0,62}`.
    pub name: String,
    /// The unpacked, read-only image rootfs (the overlay's lower layer).
    pub image_rootfs: PathBuf,
    /// Run without a user namespace (container root is host root). Only on request.
    pub privileged: bool,
    /// cgroup limits.
    pub limits: Limits,
    /// Signal that asks init to shut down cleanly (busybox: SIGUSR2).
    pub stop_signal: i32,
    /// Extra environment for init.
    pub env: Vec<(String, String)>,
    /// Fence on lease loss: the cluster may restart this instance elsewhere, so its
    /// monitor SIGKILLs it once the host's lease (`<run_dir>/lease`) has expired. `false`
    /// keeps it running (`cluster.evacuate=stay`, or a policy that must never stop it).
    /// Changeable later with `Runtime::set_fence`.
    pub fence: bool,
}

/// `Limits` as stored on disk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StoredLimits {
    pub(crate) memory_bytes: Option<u64>,
    pub(crate) cpu_millicores: Option<u64>,
    pub(crate) pids_max: Option<u64>,
}

impl From<&Limits> for StoredLimits {
    fn from(l: &Limits) -> Self {
        Self {
            memory_bytes: l.memory_bytes,
            cpu_millicores: l.cpu_millicores,
            pids_max: l.pids_max,
        }
    }
}

impl From<StoredLimits> for Limits {
    fn from(l: StoredLimits) -> Self {
        Limits {
            memory_bytes: l.memory_bytes,
            cpu_millicores: l.cpu_millicores,
            pids_max: l.pids_max,
        }
    }
}

/// `config.json`: the container config plus what `create` decided (the id range).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StoredConfig {
    pub(crate) name: String,
    pub(crate) image_rootfs: PathBuf,
    pub(crate) privileged: bool,
    pub(crate) limits: StoredLimits,
    pub(crate) stop_signal: i32,
    #[serde(default)]
    pub(crate) env: Vec<(String, String)>,
    /// Fence on lease loss (see [`ContainerConfig::fence`]); absent in older files: off.
    #[serde(default)]
    pub(crate) fence: bool,
    /// Host id range of container root; `None` for privileged containers.
    pub(crate) idmap: Option<IdRange>,
}

impl StoredConfig {
    pub(crate) fn new(cfg: &ContainerConfig, idmap: Option<IdRange>) -> Self {
        Self {
            name: cfg.name.clone(),
            image_rootfs: cfg.image_rootfs.clone(),
            privileged: cfg.privileged,
            limits: StoredLimits::from(&cfg.limits),
            stop_signal: cfg.stop_signal,
            env: cfg.env.clone(),
            fence: cfg.fence,
            idmap,
        }
    }

    /// Whether `cfg` describes the same container (ignoring the id range create chose,
    /// and the fencing policy, which may change over a container's life).
    pub(crate) fn matches(&self, cfg: &ContainerConfig) -> bool {
        let mut other = Self::new(cfg, self.idmap);
        other.fence = self.fence;
        *self == other
    }

    /// Host uid/gid of container root (0 for privileged containers).
    pub(crate) fn root_id(&self) -> u32 {
        self.idmap.map_or(0, |r| r.host_base)
    }
}

/// `state.json`, written by the monitor when the container starts and when it stops.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct MonitorState {
    pub(crate) running: bool,
    pub(crate) monitor_pid: i32,
    pub(crate) init_pid: Option<i32>,
    /// Exit code of init, or 128 + signal.
    pub(crate) exit_code: Option<i32>,
    pub(crate) started_unix_ms: u64,
    /// init was SIGKILLed because the host's lease expired (the exit reason).
    #[serde(default)]
    pub(crate) fenced: bool,
}

/// Checks a container name: it becomes a hostname, a directory, a cgroup and a socket name.
pub(crate) fn validate_name(name: &str) -> Result<(), RuntimeError> {
    let bad = |reason| {
        Err(RuntimeError::InvalidName {
            name: name.to_string(),
            reason,
        })
    };
    if name.is_empty() || name.len() > 63 {
        return bad("must be 1 to 63 characters long");
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return bad("only ASCII letters, digits and '-' are allowed");
    }
    if name.starts_with('-') {
        return bad("must not start with '-'");
    }
    Ok(())
}

/// Checks the cgroup group name: one plain path component.
pub(crate) fn validate_group(group: &str) -> Result<(), RuntimeError> {
    let plain = !group.is_empty()
        && !group.starts_with('.')
        && group
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if plain {
        return Ok(());
    }
    Err(RuntimeError::InvalidConfig {
        name: "-".into(),
        field: "cgroup_group",
        reason: format!("{group:?} is not a plain cgroup name"),
    })
}

/// The files of one container.
#[derive(Clone, Debug)]
pub(crate) struct ContainerPaths {
    pub(crate) dir: PathBuf,
}

impl ContainerPaths {
    pub(crate) fn new(containers_dir: &Path, name: &str) -> Self {
        Self {
            dir: containers_dir.join(name),
        }
    }
    pub(crate) fn config(&self) -> PathBuf {
        self.dir.join("config.json")
    }
    pub(crate) fn lock(&self) -> PathBuf {
        self.dir.join("monitor.lock")
    }
    pub(crate) fn monitor_log(&self) -> PathBuf {
        self.dir.join("monitor.log")
    }
    pub(crate) fn console_log(&self) -> PathBuf {
        self.dir.join("console.log")
    }
}

/// Names of the entries inside a container directory that the container child uses
/// relative to it (it `fchdir`s there first, so paths stay short).
pub(crate) const UPPER: &str = "upper";
pub(crate) const WORK: &str = "work";
/// The overlay mount point, relative to a container dir: one empty directory shared by
/// all containers, each mounting on it in its own mount namespace (so a container
/// directory holds only what must persist). The idmapped image is attached there first
/// and the overlay stacked on top of it, with the image as its lowerdir.
pub(crate) const ROOTFS: &str = "../.rootfs";
/// That directory's name inside `containers_dir`.
pub(crate) const SHARED_ROOTFS: &str = ".rootfs";

/// The socket file name of a container's monitor inside the run dir.
pub(crate) fn socket_name(name: &str) -> String {
    format!("{name}.sock")
}

/// The monitor's state file (last exit status), in the run dir: it describes the
/// current boot only.
pub(crate) fn state_path(run_dir: &Path, name: &str) -> PathBuf {
    run_dir.join(format!("{name}.state"))
}

/// Reads and parses a JSON file.
pub(crate) fn read_json<T: serde::de::DeserializeOwned>(
    name: &str,
    step: &'static str,
    path: &Path,
) -> Result<T, RuntimeError> {
    let bytes = fs::read(path).map_err(|err| RuntimeError::io(name, step, path, err))?;
    serde_json::from_slice(&bytes).map_err(|err| RuntimeError::Json {
        name: name.to_string(),
        step,
        path: path.to_path_buf(),
        err,
    })
}

/// Writes a JSON file atomically (temporary file, fsync-free rename: these files are
/// rewritten whole, and a torn write must never be visible).
pub(crate) fn write_json<T: Serialize>(
    name: &str,
    step: &'static str,
    path: &Path,
    value: &T,
) -> Result<(), RuntimeError> {
    let bytes = serde_json::to_vec_pretty(value).map_err(|err| RuntimeError::Json {
        name: name.to_string(),
        step,
        path: path.to_path_buf(),
        err,
    })?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let write = || -> std::io::Result<()> {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(&bytes)?;
        fs::rename(&tmp, path)
    };
    write().map_err(|err| {
        let _ = fs::remove_file(&tmp);
        RuntimeError::io(name, step, path, err)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ContainerConfig {
        ContainerConfig {
            name: "web-1".into(),
            image_rootfs: "/var/lib/shoal/images/abc/rootfs".into(),
            privileged: false,
            limits: Limits {
                memory_bytes: Some(64 << 20),
                cpu_millicores: Some(500),
                pids_max: None,
            },
            stop_signal: libc::SIGUSR2,
            env: vec![("A".into(), "b".into())],
            fence: true,
        }
    }

    #[test]
    fn names() {
        assert!(validate_name("web-1").is_ok());
        assert!(validate_name("A").is_ok());
        assert!(validate_name(&"a".repeat(63)).is_ok());
        for bad in ["", "-a", "a_b", "a.b", "a/b", "ä", &"a".repeat(64)] {
            assert!(validate_name(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn stored_config_round_trips() {
        let range = IdRange {
            host_base: 1_065_536,
            size: 65536,
        };
        let stored = StoredConfig::new(&sample(), Some(range));
        let json = serde_json::to_string(&stored).unwrap();
        let back: StoredConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(back, stored);
        assert!(back.matches(&sample()));
        assert_eq!(back.root_id(), 1_065_536);
        let mut other = sample();
        other.fence = false;
        assert!(back.matches(&other), "the fencing policy may change");
        other.privileged = true;
        assert!(!back.matches(&other));
        assert_eq!(Limits::from(back.limits), sample().limits);
    }

    #[test]
    fn stored_config_parses_without_env() {
        let json = r#"{"name":"a","image_rootfs":"/i","privileged":true,
            "limits":{"memory_bytes":null,"cpu_millicores":null,"pids_max":5},
            "stop_signal":12,"idmap":null}"#;
        let c: StoredConfig = serde_json::from_str(json).unwrap();
        assert!(c.env.is_empty());
        assert!(!c.fence, "older configs never fence");
        assert_eq!(c.root_id(), 0);
        assert_eq!(c.limits.pids_max, Some(5));
    }

    #[test]
    fn json_files_are_replaced_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let st = MonitorState {
            running: true,
            monitor_pid: 5,
            init_pid: Some(6),
            exit_code: None,
            started_unix_ms: 7,
            fenced: true,
        };
        write_json("c", "writing state", &path, &st).unwrap();
        let back: MonitorState = read_json("c", "reading state", &path).unwrap();
        assert_eq!(back, st);
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temp file left"
        );
        let err = read_json::<MonitorState>("c", "reading state", &dir.path().join("x"));
        assert!(err.unwrap_err().to_string().contains("reading state"));
    }
}
