//! The container's filesystem view, built by the container child in its own mount
//! namespace through the [`Sys`] trait (so the plan is unit-tested with a recording fake).
//!
//! ```text
//! cwd = <container dir>           (chdir'd before anything; all paths are relative)
//! /            rprivate           nothing propagates back to the host
//! R=../.rootfs move_mount(image)  idmapped for unprivileged containers
//! R            overlay on top     lowerdir=R,upperdir=upper,workdir=work[,userxattr]
//! rootfs/dev   tmpfs              null zero full random urandom tty (bound host nodes),
//!                                 console (bound pty slave), pts (devpts newinstance),
//!                                 ptmx -> pts/ptmx, shm (tmpfs), mqueue, fd/std* links
//! rootfs/proc  proc               masked paths, read-only paths, /proc/sys/net rw again
//! rootfs/sys   sysfs ro           /sys/firmware and powercap masked
//! rootfs/sys/fs/cgroup            (after unshare(CLONE_NEWCGROUP)) tmpfs with one mount per
//!                                 v1 hierarchy + unified, then the tmpfs is made ro
//! pivot_root(".", "."), umount2(".", MNT_DETACH), chdir("/")
//! ```
//!
//! Host device nodes are bind-mounted and never chowned or chmodded: the mount target is
//! the host's node.

use std::os::fd::BorrowedFd;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::MsFlags;

use super::super::config::{ROOTFS, UPPER, WORK};
use super::super::protocol::WireError;
use crate::sys::{FileKind, Sys};

/// `MOUNT_ATTR_RDONLY`.
const ATTR_RDONLY: u64 = libc::MOUNT_ATTR_RDONLY;

/// Device nodes bound from the host.
pub(crate) const DEVICES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];

/// Paths hidden from the container (runc's list): files get /dev/null bound over them,
/// directories a read-only empty tmpfs.
pub(crate) const MASKED: [&str; 12] = [
    "proc/acpi",
    "proc/asound",
    "proc/interrupts",
    "proc/kcore",
    "proc/keys",
    "proc/latency_stats",
    "proc/timer_list",
    "proc/timer_stats",
    "proc/sched_debug",
    "proc/scsi",
    "sys/firmware",
    "sys/devices/virtual/powercap",
];

/// Paths made read-only (runc's list).
pub(crate) const READ_ONLY: [&str; 5] = [
    "proc/bus",
    "proc/fs",
    "proc/irq",
    "proc/sys",
    "proc/sysrq-trigger",
];

fn err(step: &str, path: &Path, errno: Errno) -> WireError {
    WireError::new(step, errno, path.display().to_string())
}

fn root(p: &str) -> PathBuf {
    Path::new(ROOTFS).join(p)
}

/// Makes every mount private, attaches the image and mounts the overlay on `rootfs`.
pub(crate) fn mount_overlay(
    sys: &dyn Sys,
    image: BorrowedFd<'_>,
    userns: bool,
) -> Result<(), WireError> {
    let slash = Path::new("/");
    sys.mount(
        None,
        slash,
        None,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None,
    )
    .map_err(|e| err("making / private", slash, e))?;
    let target = Path::new(ROOTFS);
    sys.attach_mount(image, target)
        .map_err(|e| err("attaching the image", target, e))?;
    // The overlay goes on top of the image on the same mount point; "lowerdir" resolves
    // to the image before the overlay covers it.
    let mut data = format!("lowerdir={ROOTFS},upperdir={UPPER},workdir={WORK}");
    if userns {
        // Without userxattr an overlay in a user namespace cannot use trusted.* xattrs,
        // and opaque directories turn into EIO.
        data.push_str(",userxattr");
    }
    sys.mount(
        Some(Path::new("overlay")),
        target,
        Some("overlay"),
        MsFlags::empty(),
        Some(&data),
    )
    .map_err(|e| err("mounting the overlay rootfs", target, e))
}

/// Makes sure a top-level mount point is a real directory of the rootfs: a symlink left in
/// the upper layer by an earlier run must not redirect our mounts.
fn mount_point(sys: &dyn Sys, rel: &str) -> Result<PathBuf, WireError> {
    let path = root(rel);
    match sys.kind(&path) {
        Some(FileKind::Dir) => Ok(path),
        None => sys
            .mkdir(&path, 0o755)
            .map(|()| path.clone())
            .map_err(|e| err("creating a mount point", &path, e)),
        Some(_) => Err(err("checking a mount point", &path, Errno::ENOTDIR)),
    }
}

/// /dev: tmpfs, bound host device nodes, console, devpts, shm, mqueue, links.
pub(crate) fn mount_dev(sys: &dyn Sys, console: Option<&Path>) -> Result<(), WireError> {
    let dev = mount_point(sys, "dev")?;
    let nosuid_noexec = MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC;
    let all = nosuid_noexec | MsFlags::MS_NODEV;
    sys.mount(
        Some(Path::new("tmpfs")),
        &dev,
        Some("tmpfs"),
        nosuid_noexec,
        Some("mode=755,size=65536k"),
    )
    .map_err(|e| err("mounting /dev", &dev, e))?;
    for name in DEVICES {
        let target = dev.join(name);
        sys.create_file(&target, 0o600)
            .map_err(|e| err("creating a device mount point", &target, e))?;
        let host = Path::new("/dev").join(name);
        sys.mount(Some(&host), &target, None, MsFlags::MS_BIND, None)
            .map_err(|e| err("binding a host device", &target, e))?;
    }
    if let Some(slave) = console {
        let target = dev.join("console");
        sys.create_file(&target, 0o600)
            .map_err(|e| err("creating /dev/console", &target, e))?;
        sys.mount(Some(slave), &target, None, MsFlags::MS_BIND, None)
            .map_err(|e| err("binding the console", &target, e))?;
    }
    let pts = dev.join("pts");
    sys.mkdir(&pts, 0o755)
        .map_err(|e| err("creating /dev/pts", &pts, e))?;
    sys.mount(
        Some(Path::new("devpts")),
        &pts,
        Some("devpts"),
        nosuid_noexec,
        Some("newinstance,ptmxmode=0666,mode=0620,gid=5"),
    )
    .map_err(|e| err("mounting devpts", &pts, e))?;
    let shm = dev.join("shm");
    sys.mkdir(&shm, 0o1777)
        .map_err(|e| err("creating /dev/shm", &shm, e))?;
    sys.mount(
        Some(Path::new("shm")),
        &shm,
        Some("tmpfs"),
        all,
        Some("mode=1777,size=65536k"),
    )
    .map_err(|e| err("mounting /dev/shm", &shm, e))?;
    let mqueue = dev.join("mqueue");
    sys.mkdir(&mqueue, 0o755)
        .map_err(|e| err("creating /dev/mqueue", &mqueue, e))?;
    sys.mount(
        Some(Path::new("mqueue")),
        &mqueue,
        Some("mqueue"),
        all,
        None,
    )
    .map_err(|e| err("mounting mqueue", &mqueue, e))?;
    let links = [
        ("ptmx", "pts/ptmx"),
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ];
    for (link, target) in links {
        let path = dev.join(link);
        sys.symlink(Path::new(target), &path)
            .map_err(|e| err("creating a /dev symlink", &path, e))?;
    }
    Ok(())
}

/// /proc and /sys with masked and read-only paths.
pub(crate) fn mount_proc_sys(sys: &dyn Sys) -> Result<(), WireError> {
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    let proc = mount_point(sys, "proc")?;
    sys.mount(Some(Path::new("proc")), &proc, Some("proc"), flags, None)
        .map_err(|e| err("mounting /proc", &proc, e))?;
    let sysfs = mount_point(sys, "sys")?;
    sys.mount(
        Some(Path::new("sysfs")),
        &sysfs,
        Some("sysfs"),
        flags | MsFlags::MS_RDONLY,
        None,
    )
    .map_err(|e| err("mounting /sys", &sysfs, e))?;
    for rel in MASKED {
        let path = root(rel);
        match sys.kind(&path) {
            None => continue,
            Some(FileKind::Dir) => sys.mount(
                Some(Path::new("tmpfs")),
                &path,
                Some("tmpfs"),
                flags | MsFlags::MS_RDONLY,
                Some("mode=555"),
            ),
            Some(_) => sys.mount(
                Some(Path::new("/dev/null")),
                &path,
                None,
                MsFlags::MS_BIND,
                None,
            ),
        }
        .map_err(|e| err("masking a path", &path, e))?;
    }
    for rel in READ_ONLY {
        let path = root(rel);
        if sys.kind(&path).is_none() {
            continue;
        }
        sys.mount(
            Some(&path),
            &path,
            None,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None,
        )
        .map_err(|e| err("binding a read-only path", &path, e))?;
        sys.set_mount_attr(&path, ATTR_RDONLY, 0, true)
            .map_err(|e| err("making a path read-only", &path, e))?;
    }
    // Like LXC's proc:mixed: the container's own network namespace stays configurable.
    let net = root("proc/sys/net");
    if sys.kind(&net) == Some(FileKind::Dir) {
        sys.mount(Some(&net), &net, None, MsFlags::MS_BIND, None)
            .map_err(|e| err("binding /proc/sys/net", &net, e))?;
        sys.set_mount_attr(&net, 0, ATTR_RDONLY, false)
            .map_err(|e| err("making /proc/sys/net writable", &net, e))?;
    }
    Ok(())
}

/// Directory name and mount options for one hierarchy label from the cgroup manager
/// (`memory`, `cpu,cpuacct`, `name=systemd`, `unified`).
pub(crate) fn cgroup_mount_args(label: &str) -> (String, Option<&'static str>, String) {
    if label == "unified" {
        return ("unified".into(), Some("cgroup2"), String::new());
    }
    let dir = label
        .split(',')
        .map(|c| c.strip_prefix("name=").unwrap_or(c))
        .collect::<Vec<_>>()
        .join(",");
    let data = if label.split(',').all(|c| c.starts_with("name=")) {
        format!("none,{label}")
    } else {
        label.to_string()
    };
    (dir, Some("cgroup"), data)
}

/// /sys/fs/cgroup inside the container's cgroup namespace. `labels` come from the cgroup
/// manager; a pure v2 host has just `unified`, mounted directly on /sys/fs/cgroup.
pub(crate) fn mount_cgroups(sys: &dyn Sys, labels: &[String]) -> Result<(), WireError> {
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    let base = root("sys/fs/cgroup");
    if labels.is_empty() {
        return Ok(());
    }
    if labels.iter().all(|l| l == "unified") {
        return sys
            .mount(
                Some(Path::new("cgroup2")),
                &base,
                Some("cgroup2"),
                flags,
                None,
            )
            .map_err(|e| err("mounting cgroup2", &base, e));
    }
    sys.mount(
        Some(Path::new("tmpfs")),
        &base,
        Some("tmpfs"),
        flags,
        Some("mode=755,size=1024k"),
    )
    .map_err(|e| err("mounting the cgroup tmpfs", &base, e))?;
    for label in labels {
        let (dir, fstype, data) = cgroup_mount_args(label);
        let target = base.join(&dir);
        sys.mkdir(&target, 0o755)
            .map_err(|e| err("creating a cgroup mount point", &target, e))?;
        let data = (!data.is_empty()).then_some(data.as_str());
        sys.mount(Some(Path::new("cgroup")), &target, fstype, flags, data)
            .map_err(|e| err("mounting a cgroup hierarchy", &target, e))?;
        // Co-mounted controllers (cpu,cpuacct) get one link per controller.
        if dir.contains(',') {
            for ctrl in dir.split(',') {
                let link = base.join(ctrl);
                sys.symlink(Path::new(&dir), &link)
                    .map_err(|e| err("linking a cgroup controller", &link, e))?;
            }
        }
    }
    sys.set_mount_attr(&base, ATTR_RDONLY, 0, false)
        .map_err(|e| err("making /sys/fs/cgroup read-only", &base, e))
}

/// Switches the root to `rootfs` and detaches the old one.
pub(crate) fn pivot(sys: &dyn Sys) -> Result<(), WireError> {
    let rootfs = Path::new(ROOTFS);
    let dot = Path::new(".");
    sys.chdir(rootfs)
        .map_err(|e| err("entering the rootfs", rootfs, e))?;
    sys.pivot_root(dot, dot)
        .map_err(|e| err("pivot_root", rootfs, e))?;
    sys.umount_detach(dot)
        .map_err(|e| err("detaching the old root", dot, e))?;
    let slash = Path::new("/");
    sys.chdir(slash).map_err(|e| err("chdir /", slash, e))
}

#[cfg(test)]
#[path = "rootfs_tests.rs"]
mod tests;
