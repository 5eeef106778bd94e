//! Finding the cgroup hierarchies and the daemon's own cgroup in each.
//!
//! `/proc/self/cgroup` names every hierarchy this process belongs to (`ID:CONTROLLERS:PATH`,
//! `0::PATH` for cgroup v2); `/proc/self/mountinfo` says where each one is mounted and which
//! subtree the mount shows (field 4, not `/` inside a cgroup namespace or for bind mounts).
//! Joining the two gives the directory of our own cgroup per hierarchy. Hierarchies that
//! are not mounted where we can reach them are skipped.

use std::path::{Path, PathBuf};

use super::error::CgroupError;

/// Which cgroup layout the host uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CgroupVersion {
    /// Only v1 hierarchies (controllers under `/sys/fs/cgroup/<ctrl>`).
    V1,
    /// One unified v2 hierarchy.
    V2,
    /// v1 controllers plus a cgroup2 mount (usually `/sys/fs/cgroup/unified`).
    Hybrid,
}

/// Whether a hierarchy is a v1 one (`cgroup`) or the unified one (`cgroup2`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Flavor {
    V1,
    V2,
}

/// One mounted hierarchy and this process's cgroup directory in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Hierarchy {
    pub(crate) flavor: Flavor,
    /// v1: the controllers as listed in /proc/self/cgroup (`cpu`, `cpuacct`,
    /// `name=systemd`). v2: the controllers the manager enables for its children.
    pub(crate) controllers: Vec<String>,
    /// A cgroup directory in this hierarchy: our own cgroup as discovered (with the path
    /// prefix applied), or a container's cgroup below it.
    pub(crate) dir: PathBuf,
}

impl Hierarchy {
    /// `unified` for v2, else the comma-joined controllers (`cpu,cpuacct`, `name=systemd`).
    pub(crate) fn label(&self) -> String {
        match self.flavor {
            Flavor::V2 => "unified".to_string(),
            Flavor::V1 => self.controllers.join(","),
        }
    }

    pub(crate) fn has(&self, controller: &str) -> bool {
        self.controllers.iter().any(|c| c == controller)
    }

    /// The same hierarchy, pointing at another cgroup directory.
    pub(crate) fn with_dir(&self, dir: PathBuf) -> Hierarchy {
        Hierarchy {
            dir,
            ..self.clone()
        }
    }
}

/// The hierarchy that holds `controller`: a v1 one, or v2 with it enabled for children.
pub(crate) fn find<'a>(hierarchies: &'a [Hierarchy], controller: &str) -> Option<&'a Hierarchy> {
    hierarchies.iter().find(|h| h.has(controller))
}

/// The unified (v2) hierarchy, if mounted.
pub(crate) fn unified(hierarchies: &[Hierarchy]) -> Option<&Hierarchy> {
    hierarchies.iter().find(|h| h.flavor == Flavor::V2)
}

struct Mount {
    root: String,
    mountpoint: String,
    fstype: String,
    superopts: Vec<String>,
}

struct Membership {
    controllers: Vec<String>,
    path: String,
}

/// Joins mountinfo and /proc/self/cgroup, in mountinfo order.
pub(crate) fn discover(
    mountinfo: &str,
    self_cgroup: &str,
    prefix: Option<&Path>,
) -> Result<Vec<Hierarchy>, CgroupError> {
    let mounts = parse_mountinfo(mountinfo)?;
    let mut members = parse_self_cgroup(self_cgroup)?;
    let mut found = Vec::new();
    for mount in &mounts {
        let flavor = match mount.fstype.as_str() {
            "cgroup" => Flavor::V1,
            "cgroup2" => Flavor::V2,
            _ => continue,
        };
        let idx = members.iter().position(|m| match flavor {
            Flavor::V2 => m.controllers.is_empty(),
            Flavor::V1 => {
                !m.controllers.is_empty()
                    && m.controllers.iter().all(|c| mount.superopts.contains(c))
            }
        });
        let Some(idx) = idx else { continue };
        let Some(rel) = relative_to_root(&mount.root, &members[idx].path).map(str::to_string)
        else {
            tracing::debug!(mountpoint = %mount.mountpoint, root = %mount.root,
                "cgroup mount does not show our cgroup, trying other mounts");
            continue;
        };
        let member = members.remove(idx);
        let mut own = match prefix {
            Some(p) => p.join(mount.mountpoint.trim_start_matches('/')),
            None => PathBuf::from(&mount.mountpoint),
        };
        let rel = rel.trim_matches('/');
        if !rel.is_empty() {
            own.push(rel);
        }
        let controllers = match flavor {
            Flavor::V1 => member.controllers,
            Flavor::V2 => Vec::new(),
        };
        found.push(Hierarchy {
            flavor,
            controllers,
            dir: own,
        });
    }
    for m in &members {
        tracing::debug!(controllers = %m.controllers.join(","), "cgroup hierarchy not mounted, skipped");
    }
    if found.is_empty() {
        return Err(CgroupError::NoHierarchy);
    }
    Ok(found)
}

/// Classifies the found hierarchies.
pub(crate) fn version_of(hierarchies: &[Hierarchy]) -> CgroupVersion {
    let v1 = hierarchies
        .iter()
        .filter(|h| h.flavor == Flavor::V1)
        .any(|h| h.controllers.iter().any(|c| !c.starts_with("name=")));
    let v2 = hierarchies.iter().any(|h| h.flavor == Flavor::V2);
    match (v1, v2) {
        (true, true) => CgroupVersion::Hybrid,
        (false, true) => CgroupVersion::V2,
        _ => CgroupVersion::V1,
    }
}

/// The part of `path` below the mount's root, or `None` if the mount does not show it.
fn relative_to_root<'a>(root: &str, path: &'a str) -> Option<&'a str> {
    if root == "/" {
        return Some(path);
    }
    let rest = path.strip_prefix(root.trim_end_matches('/'))?;
    (rest.is_empty() || rest.starts_with('/')).then_some(rest)
}

fn parse_mountinfo(text: &str) -> Result<Vec<Mount>, CgroupError> {
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let bad = || CgroupError::Mountinfo {
            line: line.to_string(),
        };
        let fields: Vec<&str> = line.split(' ').collect();
        let sep = fields
            .iter()
            .skip(6)
            .position(|f| *f == "-")
            .map(|p| p + 6)
            .ok_or_else(bad)?;
        if fields.len() < sep + 4 {
            return Err(bad());
        }
        out.push(Mount {
            root: unescape(fields[3]),
            mountpoint: unescape(fields[4]),
            fstype: fields[sep + 1].to_string(),
            superopts: fields[sep + 3].split(',').map(str::to_string).collect(),
        });
    }
    Ok(out)
}

fn parse_self_cgroup(text: &str) -> Result<Vec<Membership>, CgroupError> {
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(ctrls), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(CgroupError::SelfCgroup {
                line: line.to_string(),
            });
        };
        if id.parse::<u32>().is_err() || !path.starts_with('/') {
            return Err(CgroupError::SelfCgroup {
                line: line.to_string(),
            });
        }
        out.push(Membership {
            controllers: ctrls
                .split(',')
                .filter(|c| !c.is_empty())
                .map(str::to_string)
                .collect(),
            path: path.trim_end_matches(" (deleted)").to_string(),
        });
    }
    Ok(out)
}

/// Undoes mountinfo's octal escapes (`\040` for a space and so on).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let oct = bytes
            .get(i + 1..i + 4)
            .filter(|o| o.iter().all(|b| (b'0'..=b'7').contains(b)));
        if let (b'\\', Some(oct)) = (bytes[i], oct) {
            let v = oct
                .iter()
                .fold(0u32, |acc, b| acc * 8 + u32::from(b - b'0'));
            if let Ok(v) = u8::try_from(v) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// This development host, verbatim (hybrid, cpu and cpuacct mounted separately).
    pub(crate) const HOST_MOUNTINFO: &str = "\
22 1 0:20 / / rw,relatime - overlay overlay rw,lowerdir=/l,upperdir=/u,workdir=/w
23 22 0:21 / /sys rw,nosuid,nodev,noexec,relatime - sysfs sysfs rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
    pub(crate) const HOST_SELF_CGROUP: &str = "\
9:name=systemd:/
8:pids:/
7:blkio:/
6:freezer:/
5:devices:/
4:memory:/process_api/fc5df87933119b5d71b4854e017a6bd5
3:cpuset:/
2:cpuacct:/
1:cpu:/
0::/
";

    #[test]
    fn this_host_is_hybrid_with_ten_hierarchies() {
        let h = discover(HOST_MOUNTINFO, HOST_SELF_CGROUP, None).unwrap();
        let labels: Vec<String> = h.iter().map(Hierarchy::label).collect();
        assert_eq!(
            labels,
            [
                "cpu",
                "cpuacct",
                "cpuset",
                "memory",
                "devices",
                "freezer",
                "blkio",
                "pids",
                "name=systemd",
                "unified"
            ]
        );
        assert_eq!(
            h[3].dir,
            Path::new("/sys/fs/cgroup/memory/process_api/fc5df87933119b5d71b4854e017a6bd5")
        );
        assert_eq!(h[0].dir, Path::new("/sys/fs/cgroup/cpu"));
        assert_eq!(h[9].dir, Path::new("/sys/fs/cgroup/unified"));
        assert_eq!(version_of(&h), CgroupVersion::Hybrid);
    }

    #[test]
    fn systemd_hybrid_with_comounted_controllers_and_prefix() {
        let mi = "\
30 24 0:26 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw,nsdelegate
32 30 0:28 / /sys/fs/cgroup/systemd rw,nosuid shared:11 - cgroup cgroup rw,xattr,name=systemd
35 30 0:31 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:15 - cgroup cgroup rw,cpu,cpuacct
36 30 0:32 / /sys/fs/cgroup/net_cls,net_prio rw,nosuid shared:16 - cgroup cgroup rw,net_cls,net_prio
37 30 0:33 / /sys/fs/cgroup/memory rw,nosuid shared:17 - cgroup cgroup rw,memory
";
        let sc = "\
12:memory:/system.slice/shoald.service
5:net_cls,net_prio:/
3:cpu,cpuacct:/system.slice/shoald.service
1:name=systemd:/system.slice/shoald.service
0::/system.slice/shoald.service
";
        let h = discover(mi, sc, Some(Path::new("/tmp/fake"))).unwrap();
        let labels: Vec<String> = h.iter().map(Hierarchy::label).collect();
        assert_eq!(
            labels,
            [
                "unified",
                "name=systemd",
                "cpu,cpuacct",
                "net_cls,net_prio",
                "memory"
            ]
        );
        assert_eq!(
            h[2].dir,
            Path::new("/tmp/fake/sys/fs/cgroup/cpu,cpuacct/system.slice/shoald.service")
        );
        assert!(h[2].has("cpuacct") && h[2].has("cpu"));
        assert_eq!(
            h[3].dir,
            Path::new("/tmp/fake/sys/fs/cgroup/net_cls,net_prio")
        );
        assert_eq!(version_of(&h), CgroupVersion::Hybrid);
    }

    #[test]
    fn pure_v2_and_pure_v1() {
        let mi = "29 23 0:26 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot\n";
        let h = discover(mi, "0::/user.slice/shoal.scope\n", None).unwrap();
        assert_eq!(h.len(), 1);
        assert_eq!(h[0].dir, Path::new("/sys/fs/cgroup/user.slice/shoal.scope"));
        assert_eq!(version_of(&h), CgroupVersion::V2);

        let mi = "\
25 24 0:22 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids
26 24 0:23 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,release_agent=/x,name=systemd
";
        let h = discover(mi, "2:pids:/a\n1:name=systemd:/a\n", None).unwrap();
        assert_eq!(version_of(&h), CgroupVersion::V1);
    }

    #[test]
    fn mount_root_and_escapes_are_honoured() {
        // A bind mount of a subtree (as in a container), then a mount showing everything.
        let mi = "\
40 31 0:32 /lxc/c1 /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
41 31 0:32 /other /mnt/memory rw - cgroup cgroup rw,memory
42 31 0:38 / /mnt/with\\040space rw - cgroup2 cgroup2 rw
";
        let h = discover(mi, "4:memory:/lxc/c1/inner\n0::/x\n", None).unwrap();
        assert_eq!(h[0].dir, Path::new("/sys/fs/cgroup/memory/inner"));
        assert_eq!(h[1].dir, Path::new("/mnt/with space/x"));
        assert_eq!(relative_to_root("/lxc/c1", "/lxc/c10"), None);
        assert_eq!(relative_to_root("/lxc/c1", "/lxc/c1"), Some(""));
    }

    #[test]
    fn unmounted_hierarchies_are_skipped_and_nothing_is_an_error() {
        let h = discover(HOST_MOUNTINFO, "4:memory:/a\n13:rdma:/\n", None).unwrap();
        assert_eq!(h.len(), 1);
        let err = discover("", HOST_SELF_CGROUP, None).unwrap_err();
        assert!(matches!(err, CgroupError::NoHierarchy));
    }

    #[test]
    fn malformed_input_is_reported_with_the_line() {
        let err = discover("31 23 0:28 / /sys\n", "0::/\n", None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "parsing mountinfo: malformed line \"31 23 0:28 / /sys\""
        );
        let err = discover(HOST_MOUNTINFO, "garbage\n", None).unwrap_err();
        assert!(err.to_string().contains("\"garbage\""), "{err}");
    }
}
