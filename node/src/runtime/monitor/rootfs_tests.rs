//! Unit tests of the rootfs plan against the recording fake.

use std::os::fd::AsFd;
use std::path::Path;

use nix::errno::Errno;

use super::*;
use crate::sys::fake::RecordingSys;

fn devnull() -> std::fs::File {
    std::fs::File::open("/dev/null").unwrap()
}

#[test]
fn overlay_in_a_user_namespace_uses_userxattr_and_the_idmapped_image() {
    let fake = RecordingSys::default();
    let img = devnull();
    mount_overlay(&fake, img.as_fd(), true).unwrap();
    let lines = fake.lines();
    assert!(
        lines[0].starts_with("mount - / - MS_REC | MS_PRIVATE"),
        "{lines:?}"
    );
    assert!(
        lines[1].starts_with("attach fd") && lines[1].ends_with(" ../.rootfs"),
        "{lines:?}"
    );
    assert_eq!(
        lines[2],
        "mount overlay ../.rootfs overlay (empty) \
         lowerdir=../.rootfs,upperdir=upper,workdir=work,userxattr"
    );
}

#[test]
fn privileged_overlay_has_no_userxattr() {
    let fake = RecordingSys::default();
    let img = devnull();
    mount_overlay(&fake, img.as_fd(), false).unwrap();
    assert!(
        fake.lines()[2].ends_with("workdir=work"),
        "{:?}",
        fake.lines()
    );
}

#[test]
fn dev_binds_host_nodes_and_never_changes_them() {
    let fake = RecordingSys::with_paths(&[("../.rootfs/dev", FileKind::Dir)]);
    mount_dev(&fake, Some(Path::new("/proc/self/fd/7"))).unwrap();
    let lines = fake.lines();
    assert!(
        lines[0].starts_with("mount tmpfs ../.rootfs/dev tmpfs"),
        "{lines:?}"
    );
    for d in DEVICES {
        let bind = format!("mount /dev/{d} ../.rootfs/dev/{d} - MS_BIND -");
        assert!(lines.contains(&bind), "missing {bind}: {lines:?}");
    }
    assert!(lines.contains(&"mount /proc/self/fd/7 ../.rootfs/dev/console - MS_BIND -".to_string()));
    assert!(lines
        .iter()
        .any(|l| l.starts_with("mount devpts ../.rootfs/dev/pts devpts")
            && l.ends_with("newinstance,ptmxmode=0666,mode=0620,gid=5")));
    assert!(lines.contains(&"symlink ../.rootfs/dev/ptmx -> pts/ptmx".to_string()));
    assert!(lines
        .iter()
        .any(|l| l.starts_with("mount mqueue ../.rootfs/dev/mqueue mqueue")));
    assert!(lines
        .iter()
        .any(|l| l.starts_with("mount shm ../.rootfs/dev/shm tmpfs")));
    // The trait has no chown/chmod at all; make sure nothing touches a bound node after
    // the bind either (the only operations on a device path are create + bind).
    for d in DEVICES {
        let path = format!("../.rootfs/dev/{d}");
        let ops: Vec<_> = lines
            .iter()
            .filter(|l| l.contains(&format!("{path} ")))
            .collect();
        assert_eq!(ops.len(), 2, "{d}: {ops:?}");
    }
}

#[test]
fn a_symlinked_mount_point_is_refused() {
    let fake = RecordingSys::with_paths(&[("../.rootfs/dev", FileKind::Symlink)]);
    let e = mount_dev(&fake, None).unwrap_err();
    assert_eq!(e.errno, Errno::ENOTDIR as i32);
    assert_eq!(e.step, "checking a mount point");
    assert!(
        fake.lines().is_empty(),
        "nothing mounted: {:?}",
        fake.lines()
    );
}

#[test]
fn missing_mount_points_are_created() {
    let fake = RecordingSys::default();
    mount_proc_sys(&fake).unwrap();
    let lines = fake.lines();
    assert_eq!(lines[0], "mkdir ../.rootfs/proc 755");
    assert!(
        lines[1].starts_with("mount proc ../.rootfs/proc proc"),
        "{lines:?}"
    );
}

#[test]
fn proc_and_sys_are_masked_and_read_only() {
    let fake = RecordingSys::with_paths(&[
        ("../.rootfs/proc", FileKind::Dir),
        ("../.rootfs/sys", FileKind::Dir),
        ("../.rootfs/proc/kcore", FileKind::File),
        ("../.rootfs/proc/keys", FileKind::File),
        ("../.rootfs/proc/acpi", FileKind::Dir),
        ("../.rootfs/sys/firmware", FileKind::Dir),
        ("../.rootfs/proc/sys", FileKind::Dir),
        ("../.rootfs/proc/sys/net", FileKind::Dir),
        ("../.rootfs/proc/sysrq-trigger", FileKind::File),
    ]);
    mount_proc_sys(&fake).unwrap();
    let lines = fake.lines();
    let has = |s: &str| lines.iter().any(|l| l.starts_with(s));
    assert!(has(
        "mount sysfs ../.rootfs/sys sysfs MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC"
    ));
    assert!(has("mount /dev/null ../.rootfs/proc/kcore - MS_BIND"));
    assert!(has("mount /dev/null ../.rootfs/proc/keys - MS_BIND"));
    assert!(has("mount tmpfs ../.rootfs/proc/acpi tmpfs MS_RDONLY"));
    assert!(has("mount tmpfs ../.rootfs/sys/firmware tmpfs MS_RDONLY"));
    assert!(
        !has("mount /dev/null ../.rootfs/proc/timer_list"),
        "missing paths are skipped"
    );
    assert!(has(
        "mount ../.rootfs/proc/sys ../.rootfs/proc/sys - MS_BIND | MS_REC"
    ));
    assert!(has(
        "setattr ../.rootfs/proc/sys set=0x1 clr=0x0 recursive=true"
    ));
    assert!(has("setattr ../.rootfs/proc/sysrq-trigger set=0x1"));
    let net = lines
        .iter()
        .position(|l| l == "setattr ../.rootfs/proc/sys/net set=0x0 clr=0x1 recursive=false")
        .expect("net made writable");
    let sys_ro = lines
        .iter()
        .position(|l| l.starts_with("setattr ../.rootfs/proc/sys set=0x1"))
        .unwrap();
    assert!(
        net > sys_ro,
        "net is re-enabled after /proc/sys went read-only"
    );
}

#[test]
fn hybrid_cgroup_mounts() {
    let labels: Vec<String> = ["cpu,cpuacct", "memory", "name=systemd", "unified"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let fake = RecordingSys::default();
    mount_cgroups(&fake, &labels).unwrap();
    let lines = fake.lines();
    let want = [
        "mount tmpfs ../.rootfs/sys/fs/cgroup tmpfs MS_NOSUID | MS_NODEV | MS_NOEXEC mode=755,size=1024k",
        "mkdir ../.rootfs/sys/fs/cgroup/cpu,cpuacct 755",
        "mount cgroup ../.rootfs/sys/fs/cgroup/cpu,cpuacct cgroup MS_NOSUID | MS_NODEV | MS_NOEXEC cpu,cpuacct",
        "symlink ../.rootfs/sys/fs/cgroup/cpu -> cpu,cpuacct",
        "symlink ../.rootfs/sys/fs/cgroup/cpuacct -> cpu,cpuacct",
        "mkdir ../.rootfs/sys/fs/cgroup/memory 755",
        "mount cgroup ../.rootfs/sys/fs/cgroup/memory cgroup MS_NOSUID | MS_NODEV | MS_NOEXEC memory",
        "mkdir ../.rootfs/sys/fs/cgroup/systemd 755",
        "mount cgroup ../.rootfs/sys/fs/cgroup/systemd cgroup MS_NOSUID | MS_NODEV | MS_NOEXEC none,name=systemd",
        "mkdir ../.rootfs/sys/fs/cgroup/unified 755",
        "mount cgroup ../.rootfs/sys/fs/cgroup/unified cgroup2 MS_NOSUID | MS_NODEV | MS_NOEXEC -",
        "setattr ../.rootfs/sys/fs/cgroup set=0x1 clr=0x0 recursive=false",
    ];
    assert_eq!(lines, want);
}

#[test]
fn pure_v2_mounts_cgroup2_directly() {
    let fake = RecordingSys::default();
    mount_cgroups(&fake, &["unified".to_string()]).unwrap();
    assert_eq!(
        fake.lines(),
        ["mount cgroup2 ../.rootfs/sys/fs/cgroup cgroup2 MS_NOSUID | MS_NODEV | MS_NOEXEC -"]
    );
}

#[test]
fn pivot_order() {
    let fake = RecordingSys::default();
    pivot(&fake).unwrap();
    assert_eq!(
        fake.lines(),
        ["chdir ../.rootfs", "pivot_root . .", "umount .", "chdir /"]
    );
}

#[test]
fn failures_name_the_step_and_path() {
    let fake = RecordingSys {
        fail_on: Some("mount devpts".into()),
        ..RecordingSys::with_paths(&[("../.rootfs/dev", FileKind::Dir)])
    };
    let e = mount_dev(&fake, None).unwrap_err();
    assert_eq!(e.step, "mounting devpts");
    assert_eq!(e.errno, Errno::EPERM as i32);
    assert_eq!(e.detail, "../.rootfs/dev/pts");
}
