//! The monitor's side of starting a container (HOST-FACTS bring-up order):
//!
//! ```text
//! monitor                                         container child (child.rs)
//!   create cgroups + limits, chown to mapped root
//!   pty, image tree (open_tree CLONE), seccomp
//!   clone3(NEWUSER|NEWPID|NEWNS|NEWUTS|NEWIPC|NEWNET,
//!          PIDFD, INTO_CGROUP v2) ──────────────────────────►  waits for Image
//!   write uid_map, gid_map ("0 <base> 65536")
//!   mount_setattr(image, IDMAP, /proc/<pid>/ns/user)
//!   send Image + fd ─────────────────────────────────────────►  setresuid 0, join v1 cgroups
//!                                                                ("0" > tasks), overlay,
//!                   ◄──────────────────── RootfsPin + fd ──────  /dev, /proc, /sys,
//!                                                                unshare(NEWCGROUP), cgroup
//!                                                                mounts, pivot, caps,
//!   read error pipe: EOF = exec'd, else WireError  ◄───────────  seccomp, exec init
//! ```
//!
//! No `cgroup.procs` write is on this path (see cgjoin.rs for why that matters).

use std::fs::File;
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{fcntl, open, FcntlArg, FdFlag, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::pty::{openpty, Winsize};
use nix::sched::CloneFlags;
use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
use nix::sys::stat::Mode;
use nix::sys::wait::{waitid, waitpid, Id, WaitPidFlag, WaitStatus};
use nix::unistd::{Gid, Pid, Uid};

use super::super::config::{ContainerPaths, StoredConfig};
use super::super::protocol::{self, WireError};
use super::cgjoin::CgroupJoin;
use super::child::{self, ChildPlan, Handshake};
use crate::cgroups::{CgroupError, CgroupManager, ContainerCgroup};
use crate::sys::{self, Forked, MountAttr};
use seccompiler::BpfProgram;

/// How long the child may take from clone to exec.
const SETUP_TIMEOUT: Duration = Duration::from_secs(30);

/// A started container.
pub(crate) struct Launched {
    pub(crate) pid: Pid,
    pub(crate) pidfd: OwnedFd,
    pub(crate) cgroup: ContainerCgroup,
    /// How exec helpers join the cgroups.
    pub(crate) join: CgroupJoin,
    pub(crate) console_master: OwnedFd,
    /// Kept open so the master never reports a hangup when init closes its console.
    pub(crate) _console_slave: OwnedFd,
    /// Keeps the overlay alive past init's exit (see [`Handshake::RootfsPin`]).
    pub(crate) rootfs_pin: Option<OwnedFd>,
}

fn cg_err(step: &'static str) -> impl Fn(CgroupError) -> WireError {
    move |e| WireError::new(step, Errno::EIO, e.to_string())
}

fn fail(step: &'static str) -> impl Fn(Errno) -> WireError {
    move |e| WireError::new(step, e, "")
}

fn cloexec(fd: &OwnedFd) -> Result<(), Errno> {
    fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)).map(drop)
}

/// What to undo if the start fails half-way.
struct Undo {
    child: Option<(Pid, OwnedFd)>,
    cgroup: Option<ContainerCgroup>,
}

impl Undo {
    fn run(&mut self) {
        if let Some((pid, pidfd)) = self.child.take() {
            let _ = sys::pidfd_send_signal(pidfd.as_fd(), libc::SIGKILL);
            let _ = waitpid(pid, None);
        }
        if let Some(cg) = self.cgroup.take() {
            let _ = cg.kill_all();
            let _ = cg.remove();
        }
    }
}

/// Starts the container described by `cfg`; returns once init has been exec'd.
pub(crate) fn launch(
    single: sys::SingleThreaded,
    name: &str,
    paths: &ContainerPaths,
    cfg: &StoredConfig,
    group: &str,
    seccomp: &BpfProgram,
) -> Result<Launched, WireError> {
    let mgr = CgroupManager::detect(group).map_err(cg_err("detecting cgroups"))?;
    if let Ok(stale) = mgr.open(name) {
        let _ = stale.kill_all();
        stale.remove().map_err(cg_err("removing a stale cgroup"))?;
    }
    let cgroup = mgr
        .create(name, &cfg.limits.into())
        .map_err(cg_err("creating the cgroup"))?;
    let mut undo = Undo {
        child: None,
        cgroup: Some(cgroup.clone()),
    };
    match start_init(single, name, paths, cfg, seccomp, &cgroup, &mut undo) {
        Ok(launched) => Ok(launched),
        Err(e) => {
            undo.run();
            Err(e)
        }
    }
}

fn start_init(
    single: sys::SingleThreaded,
    name: &str,
    paths: &ContainerPaths,
    cfg: &StoredConfig,
    seccomp: &BpfProgram,
    cgroup: &ContainerCgroup,
    undo: &mut Undo,
) -> Result<Launched, WireError> {
    let userns = !cfg.privileged && cfg.idmap.is_some();
    let root = cfg.root_id();
    if userns {
        cgroup
            .chown(root, root)
            .map_err(cg_err("delegating the cgroup to container root"))?;
    }
    let size = Winsize {
        ws_row: 24,
        ws_col: 80,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    let pty = openpty(&size, None).map_err(fail("opening the console pty"))?;
    cloexec(&pty.master).map_err(fail("console pty cloexec"))?;
    cloexec(&pty.slave).map_err(fail("console pty cloexec"))?;
    if userns {
        // Our own fresh pty (not a shared host device): container root must own it.
        nix::unistd::fchown(
            &pty.slave,
            Some(Uid::from_raw(root)),
            Some(Gid::from_raw(root)),
        )
        .map_err(fail("chown of the console pty"))?;
    }
    let console_path = std::fs::read_link(format!("/proc/self/fd/{}", pty.slave.as_raw_fd()))
        .map_err(|e| {
            WireError::new(
                "finding the console pty",
                Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
                "",
            )
        })?;
    let image = sys::open_tree(
        None,
        &cfg.image_rootfs,
        sys::OPEN_TREE_CLONE | sys::OPEN_TREE_CLOEXEC,
    )
    .map_err(|e| {
        WireError::new(
            "cloning the image mount",
            e,
            cfg.image_rootfs.display().to_string(),
        )
    })?;
    let plan = ChildPlan {
        name: name.to_string(),
        userns,
        dir: paths.dir.clone(),
        console_slave: pty.slave,
        console_path,
        cgroup_labels: cgroup.paths().into_iter().map(|(l, _)| l).collect(),
        join: CgroupJoin::new(cgroup)?,
        env: child::init_env(&cfg.env),
        seccomp: seccomp.clone(),
    };
    let (parent_sock, child_sock) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(fail("socketpair"))?;
    let (err_r, err_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(fail("pipe"))?;

    let mut flags = CloneFlags::CLONE_NEWPID
        | CloneFlags::CLONE_NEWNS
        | CloneFlags::CLONE_NEWUTS
        | CloneFlags::CLONE_NEWIPC
        | CloneFlags::CLONE_NEWNET;
    if userns {
        flags |= CloneFlags::CLONE_NEWUSER;
    }
    let (forked, in_v2) = plan
        .join
        .clone(single, flags.bits() as u64)
        .map_err(fail("clone3"))?;
    let (pid, pidfd) = match forked {
        Forked::Child => {
            drop(parent_sock);
            drop(err_r);
            child::run(&plan, child_sock.as_fd(), err_w.as_fd())
        }
        Forked::Parent { pid, pidfd } => (
            pid,
            pidfd.ok_or_else(|| WireError::new("clone3", Errno::EBADF, "no pidfd"))?,
        ),
    };
    drop(child_sock);
    drop(err_w);
    undo.child = Some((pid, pidfd));
    let released = if in_v2 {
        Ok(())
    } else {
        plan.join.join_v2(pid)
    }
    .and_then(|()| release_child(cfg, pid, userns, &image, &parent_sock));
    match released {
        Ok(()) => wait_exec(err_r, undo, SETUP_TIMEOUT)?,
        // The child may have failed first (that is why it stopped listening): prefer its
        // own report, which names the real step.
        Err(e) => {
            return match wait_exec(err_r, undo, Duration::from_millis(200)) {
                Err(child) if child.step != "waiting for init to start" => Err(child),
                _ => Err(e),
            }
        }
    }
    let rootfs_pin = match protocol::recv::<Handshake>(parent_sock.as_fd(), true) {
        Ok((Handshake::RootfsPin, fds)) => fds.into_iter().next(),
        _ => None,
    };
    let (pid, pidfd) = undo.child.take().expect("child is set");
    undo.cgroup = None;
    Ok(Launched {
        pid,
        pidfd,
        cgroup: cgroup.clone(),
        join: plan.join,
        console_master: pty.master,
        _console_slave: plan.console_slave,
        rootfs_pin,
    })
}

/// Writes the child's id maps, idmaps the image with its user namespace and sends it.
fn release_child(
    cfg: &StoredConfig,
    pid: Pid,
    userns: bool,
    image: &OwnedFd,
    sock: &OwnedFd,
) -> Result<(), WireError> {
    if let (true, Some(range)) = (userns, cfg.idmap) {
        let map = format!("0 {} {}\n", range.host_base, range.size);
        for file in ["uid_map", "gid_map"] {
            let path = format!("/proc/{pid}/{file}");
            std::fs::write(&path, &map).map_err(|e| {
                WireError::new(
                    "writing the id map",
                    Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
                    path.clone(),
                )
            })?;
        }
        let ns_path = format!("/proc/{pid}/ns/user");
        let userns_fd = open(
            Path::new(&ns_path),
            OFlag::O_RDONLY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(fail("opening the container user namespace"))?;
        let attr = MountAttr {
            set: libc::MOUNT_ATTR_IDMAP,
            clr: 0,
            userns: Some(userns_fd.as_fd()),
        };
        sys::mount_setattr_fd(Some(image.as_fd()), Path::new(""), 0, &attr)
            .map_err(fail("idmapping the image mount"))?;
    }
    protocol::send(sock.as_fd(), &Handshake::Image, &[image.as_raw_fd()])
        .map_err(fail("releasing the child"))
}

/// Waits until the child has exec'd init (error pipe closed without data) or failed.
fn wait_exec(err_r: OwnedFd, undo: &Undo, timeout: Duration) -> Result<(), WireError> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(WireError::new(
                "waiting for init to start",
                Errno::ETIMEDOUT,
                "",
            ));
        }
        let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
        let mut fds = [PollFd::new(err_r.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(0) | Err(Errno::EINTR) => continue,
            Ok(_) => break,
            Err(e) => return Err(WireError::new("waiting for init to start", e, "")),
        }
    }
    let mut buf = Vec::new();
    File::from(err_r).read_to_end(&mut buf).map_err(|e| {
        WireError::new(
            "reading the setup result",
            Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
            "",
        )
    })?;
    if !buf.is_empty() {
        return Err(
            serde_json::from_slice::<WireError>(&buf).unwrap_or_else(|_| {
                WireError::new(
                    "container setup",
                    Errno::EPROTO,
                    String::from_utf8_lossy(&buf).into_owned(),
                )
            }),
        );
    }
    // EOF without an error: exec succeeded, unless the child died without a word.
    if let Some((_, pidfd)) = &undo.child {
        let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
        match waitid(Id::PIDFd(pidfd.as_fd()), flags) {
            Ok(WaitStatus::StillAlive) | Err(_) => {}
            Ok(status) => {
                return Err(WireError::new(
                    "container setup",
                    Errno::ECHILD,
                    format!("init exited during start: {status:?}"),
                ))
            }
        }
    }
    Ok(())
}
