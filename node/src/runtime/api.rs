//! The public face of the runtime: [`Runtime`] and its lifecycle calls.
//!
//! All calls are synchronous and may block (the daemon runs them in `spawn_blocking`).
//! The runtime keeps no state of its own beyond its config: every answer comes from the
//! container's directory or its monitor, so a restarted daemon simply makes a new
//! `Runtime` and finds running containers again (adoption).

use std::fs;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::Signal;

use super::client::{call, done, monitor_error, unexpected, Call};
use super::config::{
    read_json, state_path, validate_group, validate_name, write_json, ContainerConfig,
    ContainerPaths, MonitorState, RuntimeConfig, StoredConfig, SHARED_ROOTFS, UPPER, WORK,
};
use super::error::RuntimeError;
use super::exec_session::ExecSession;
use super::idmap::IdmapAllocator;
use super::lease::{read_lease, remove_lease, unix_now_ms, write_lease};
use super::protocol::{Reply, Request};
use super::spawn::{readonly_exe, spawn_monitor};
use super::types::{ContainerState, ContainerStatus, ExecRequest};
use crate::cgroups::{CgroupManager, Limits, Usage};

/// How long to wait for the monitor's answer to quick requests.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Extra time on top of a stop's own timeout.
const STOP_SLACK: Duration = Duration::from_secs(30);

/// The container runtime of one daemon.
pub struct Runtime {
    cfg: RuntimeConfig,
    /// The shoald binary, as a read-only detached mount when the kernel allows (monitors
    /// are exec'd through it, so /proc/<pid>/exe of a monitor can never be written).
    exe: OwnedFd,
}

impl Runtime {
    /// Prepares the directories and the read-only view of the shoald binary.
    pub fn new(cfg: RuntimeConfig) -> Result<Self, RuntimeError> {
        for (dir, mode) in [(&cfg.containers_dir, 0o711), (&cfg.run_dir, 0o700)] {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(mode)
                .create(dir)
                .map_err(|e| RuntimeError::io("-", "creating directory", dir, e))?;
        }
        validate_group(&cfg.cgroup_group)?;
        let exe = readonly_exe(&cfg.shoald_exe)?;
        Ok(Self { cfg, exe })
    }

    /// The runtime's configuration.
    pub fn config(&self) -> &RuntimeConfig {
        &self.cfg
    }

    fn paths(&self, name: &str) -> ContainerPaths {
        ContainerPaths::new(&self.cfg.containers_dir, name)
    }

    /// Path of the container's console log (init's console output).
    pub fn console_log(&self, name: &str) -> PathBuf {
        self.paths(name).console_log()
    }

    fn load(&self, name: &str) -> Result<StoredConfig, RuntimeError> {
        validate_name(name)?;
        let path = self.paths(name).config();
        if !path.exists() {
            return Err(RuntimeError::NotFound { name: name.into() });
        }
        read_json(name, "reading config", &path)
    }

    /// Creates the container's directory, id range and config. Creating the same container
    /// again with the same config is a no-op (a different `fence` is applied as by
    /// [`Runtime::set_fence`]); on failure nothing is left behind.
    pub fn create(&self, cfg: &ContainerConfig) -> Result<(), RuntimeError> {
        let name = cfg.name.as_str();
        validate_name(name)?;
        cfg.limits
            .validate()
            .map_err(|e| RuntimeError::cgroup(name, "checking limits", e))?;
        if !cfg.image_rootfs.is_absolute() || !cfg.image_rootfs.is_dir() {
            return Err(RuntimeError::InvalidConfig {
                name: name.into(),
                field: "image_rootfs",
                reason: format!(
                    "{} is not an absolute path to a directory",
                    cfg.image_rootfs.display()
                ),
            });
        }
        if Signal::try_from(cfg.stop_signal).is_err() {
            return Err(RuntimeError::InvalidConfig {
                name: name.into(),
                field: "stop_signal",
                reason: format!("{} is not a signal", cfg.stop_signal),
            });
        }
        let paths = self.paths(name);
        if paths.config().exists() {
            let old = self.load(name)?;
            return if old.matches(cfg) {
                if old.fence != cfg.fence {
                    self.set_fence(name, cfg.fence)?;
                }
                Ok(())
            } else {
                Err(RuntimeError::AlreadyExists { name: name.into() })
            };
        }
        let result = self.create_fresh(cfg, &paths);
        if result.is_err() {
            let _ = fs::remove_dir_all(&paths.dir);
            if !cfg.privileged {
                let _ =
                    IdmapAllocator::update(&self.cfg.containers_dir, name, |a| Ok(a.free(name)));
            }
        }
        result
    }

    fn create_fresh(
        &self,
        cfg: &ContainerConfig,
        paths: &ContainerPaths,
    ) -> Result<(), RuntimeError> {
        let name = cfg.name.as_str();
        let idmap = if cfg.privileged {
            None
        } else {
            Some(IdmapAllocator::update(
                &self.cfg.containers_dir,
                name,
                |a| a.allocate(name),
            )?)
        };
        let root = idmap.map_or(0, |r| r.host_base);
        let mk = |path: &Path, mode: u32| {
            fs::DirBuilder::new()
                .mode(mode)
                .create(path)
                .and_then(|()| fs::set_permissions(path, fs::Permissions::from_mode(mode)))
                .map_err(|e| RuntimeError::io(name, "creating directory", path, e))
        };
        let shared = self.cfg.containers_dir.join(SHARED_ROOTFS);
        if !shared.is_dir() {
            mk(&shared, 0o755)?;
        }
        mk(&paths.dir, 0o711)?;
        for sub in [UPPER, WORK] {
            let p = paths.dir.join(sub);
            mk(&p, 0o755)?;
            std::os::unix::fs::chown(&p, Some(root), Some(root))
                .map_err(|e| RuntimeError::io(name, "chown to container root", &p, e))?;
        }
        write_json(
            name,
            "writing config",
            &paths.config(),
            &StoredConfig::new(cfg, idmap),
        )
    }

    /// Starts the container's monitor; returns once init has been exec'd, or with the
    /// error of the step that failed.
    /// A container that fences does not start while the host's lease has expired.
    pub fn start(&self, name: &str) -> Result<(), RuntimeError> {
        let stored = self.load(name)?;
        if self.query(name)?.is_some() {
            return Err(RuntimeError::AlreadyRunning { name: name.into() });
        }
        if stored.fence {
            if let Some(at) = read_lease(&self.cfg.run_dir).expired_at(unix_now_ms()) {
                return Err(RuntimeError::LeaseExpired {
                    name: name.into(),
                    expired_at_ms: at,
                });
            }
        }
        spawn_monitor(&self.cfg, &self.exe, name, &self.paths(name))
    }

    /// Asks the monitor for the state; `None` if no monitor answers, or if it answers
    /// that init is gone (it is exiting and has written the state file already).
    fn query(&self, name: &str) -> Result<Option<Reply>, RuntimeError> {
        let reply = call(
            &self.cfg.run_dir,
            name,
            "state",
            &Request::State,
            REQUEST_TIMEOUT,
        )?
        .map(|c| c.reply);
        Ok(match reply {
            Some(Reply::Error(e)) if e.errno == Errno::ESRCH as i32 => None,
            other => other,
        })
    }

    /// The container's current state.
    pub fn state(&self, name: &str) -> Result<ContainerState, RuntimeError> {
        self.load(name)?;
        match self.query(name)? {
            Some(Reply::State {
                status,
                init_pid,
                usage,
                fenced,
            }) => Ok(ContainerState {
                status,
                init_pid: Some(init_pid),
                exit_code: None,
                fenced,
                usage: usage.map(|u| Usage {
                    memory_bytes: u.memory_bytes,
                    cpu_nanos: u.cpu_nanos,
                    pids: u.pids,
                }),
            }),
            Some(other) => Err(unexpected(name, "state", &other)),
            None => {
                let path = state_path(&self.cfg.run_dir, name);
                let (exit_code, fenced) =
                    match read_json::<MonitorState>(name, "reading state", &path) {
                        Ok(st) => (st.exit_code, st.fenced),
                        Err(_) => (None, false),
                    };
                Ok(ContainerState {
                    status: ContainerStatus::Stopped,
                    init_pid: None,
                    exit_code,
                    fenced,
                    usage: None,
                })
            }
        }
    }

    /// Stops the container: the stop signal (re-sent until init reacts) and SIGKILL after
    /// `timeout`, or SIGKILL at once with `force`. Returns once init is gone, the cgroup is
    /// removed and the monitor is exiting. Stopping a stopped container is a no-op.
    pub fn stop(&self, name: &str, timeout: Duration, force: bool) -> Result<(), RuntimeError> {
        self.load(name)?;
        let req = Request::Stop {
            timeout_ms: timeout.as_millis() as u64,
            force,
        };
        match call(&self.cfg.run_dir, name, "stop", &req, timeout + STOP_SLACK)? {
            None => Ok(()),
            Some(c) => done(name, "stop", c.reply),
        }
    }

    fn simple(&self, name: &str, op: &'static str, req: Request) -> Result<(), RuntimeError> {
        self.load(name)?;
        match call(&self.cfg.run_dir, name, op, &req, REQUEST_TIMEOUT)? {
            None => Err(RuntimeError::NotRunning { name: name.into() }),
            Some(c) => done(name, op, c.reply),
        }
    }

    /// Freezes every process of the container.
    pub fn freeze(&self, name: &str) -> Result<(), RuntimeError> {
        self.simple(name, "freeze", Request::Freeze)
    }

    /// Thaws a frozen container.
    pub fn unfreeze(&self, name: &str) -> Result<(), RuntimeError> {
        self.simple(name, "unfreeze", Request::Thaw)
    }

    /// Changes the limits: stored for the next start and applied now if running.
    pub fn update_limits(&self, name: &str, limits: &Limits) -> Result<(), RuntimeError> {
        let mut stored = self.load(name)?;
        limits
            .validate()
            .map_err(|e| RuntimeError::cgroup(name, "checking limits", e))?;
        stored.limits = limits.into();
        write_json(name, "writing config", &self.paths(name).config(), &stored)?;
        if self.query(name)?.is_some() {
            let mgr = CgroupManager::detect(&self.cfg.cgroup_group)
                .map_err(|e| RuntimeError::cgroup(name, "detecting cgroups", e))?;
            let cg = mgr
                .open(name)
                .map_err(|e| RuntimeError::cgroup(name, "opening the cgroup", e))?;
            cg.set_limits(limits)
                .map_err(|e| RuntimeError::cgroup(name, "setting limits", e))?;
        }
        Ok(())
    }

    /// Changes whether the container is fenced when the host's lease expires: stored for
    /// the next start and, if it runs, told to its monitor (which then checks the lease at
    /// once, so turning fencing on with an expired lease kills the container).
    pub fn set_fence(&self, name: &str, fence: bool) -> Result<(), RuntimeError> {
        let mut stored = self.load(name)?;
        if stored.fence != fence {
            stored.fence = fence;
            write_json(name, "writing config", &self.paths(name).config(), &stored)?;
        }
        // A monitor that is starting reads the stored value after binding its socket, so
        // either it sees the new value or this request reaches it.
        let req = Request::SetFence { fence };
        match call(&self.cfg.run_dir, name, "set fence", &req, REQUEST_TIMEOUT)? {
            None => Ok(()),
            Some(c) => done(name, "set fence", c.reply),
        }
    }

    /// Records the host's lease expiry (Unix milliseconds) in `<run_dir>/lease`, atomically.
    /// The daemon calls it after every successful heartbeat; monitors of fencing
    /// containers SIGKILL them once the recorded expiry has passed. Write an expiry a
    /// margin (≥ 0.5 s) before the leader's, so the kill lands before the leader may
    /// restart the instance elsewhere.
    pub fn renew_lease(&self, expires_at_ms: i64) -> Result<(), RuntimeError> {
        write_lease(&self.cfg.run_dir, expires_at_ms)
    }

    /// Removes the lease file: no lease, so no monitor fences (single-host clusters, or
    /// fencing disabled by the operator). Clearing a missing lease is a no-op.
    pub fn clear_lease(&self) -> Result<(), RuntimeError> {
        remove_lease(&self.cfg.run_dir)
    }

    /// Removes a stopped container: its directory, leftover cgroups and its id range.
    /// Deleting a container that does not exist is a no-op.
    pub fn delete(&self, name: &str) -> Result<(), RuntimeError> {
        validate_name(name)?;
        let paths = self.paths(name);
        if paths.dir.exists() && self.query(name)?.is_some() {
            return Err(RuntimeError::StillRunning { name: name.into() });
        }
        if let Ok(mgr) = CgroupManager::detect(&self.cfg.cgroup_group) {
            if let Ok(cg) = mgr.open(name) {
                let _ = cg.kill_all();
                cg.remove()
                    .map_err(|e| RuntimeError::cgroup(name, "removing the cgroup", e))?;
            }
        }
        match fs::remove_dir_all(&paths.dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(RuntimeError::io(
                    name,
                    "removing the container directory",
                    &paths.dir,
                    e,
                ))
            }
        }
        IdmapAllocator::update(&self.cfg.containers_dir, name, |a| Ok(a.free(name)))?;
        let _ = super::protocol::unlink_socket(&self.cfg.run_dir, name);
        let _ = fs::remove_file(state_path(&self.cfg.run_dir, name));
        Ok(())
    }

    /// Names of all containers, sorted.
    pub fn list(&self) -> Result<Vec<String>, RuntimeError> {
        let dir = &self.cfg.containers_dir;
        let entries =
            fs::read_dir(dir).map_err(|e| RuntimeError::io("-", "listing containers", dir, e))?;
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter(|e| e.path().join("config.json").is_file())
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| validate_name(n).is_ok())
            .collect();
        names.sort();
        Ok(names)
    }

    /// Runs a command in the running container; see [`ExecSession`].
    pub fn exec(&self, name: &str, req: &ExecRequest) -> Result<ExecSession, RuntimeError> {
        self.load(name)?;
        if req.argv.is_empty() {
            return Err(RuntimeError::InvalidConfig {
                name: name.into(),
                field: "argv",
                reason: "must not be empty".into(),
            });
        }
        let Some(Call { reply, fds, sock }) = call(
            &self.cfg.run_dir,
            name,
            "exec",
            &Request::Exec(req.clone()),
            REQUEST_TIMEOUT,
        )?
        else {
            return Err(RuntimeError::NotRunning { name: name.into() });
        };
        match reply {
            Reply::ExecStarted { pid } => ExecSession::new(name, pid, req.tty.is_some(), fds, sock),
            Reply::Error(e) => Err(monitor_error(name, "exec", e)),
            other => Err(unexpected(name, "exec", &other)),
        }
    }
}
