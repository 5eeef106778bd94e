//! Shared helpers for the runtime integration tests: root check, a busybox image built
//! once per target dir, a per-test runtime with its own directories and cgroup group that
//! force-stops and deletes its containers on drop, and exec helpers.

#![allow(dead_code)]

use std::fs;
use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use shoal_node::cgroups::{CgroupManager, Limits};
use shoal_node::runtime::{ContainerConfig, ExecRequest, Runtime, RuntimeConfig};

/// True if the tests can run; prints why not otherwise.
pub fn root_or_skip(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    eprintln!("skipping {test}: needs root (namespaces, cgroups, mounts)");
    false
}

fn build_image(dest: &Path) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/build-busybox-image");
    if script.exists() {
        let status = Command::new("bash")
            .arg(&script)
            .arg("--rootfs")
            .arg(dest)
            .status()
            .expect("running build-busybox-image");
        assert!(status.success(), "build-busybox-image failed");
        return;
    }
    // Fallback: a minimal image straight from the host's static busybox.
    for d in [
        "bin", "sbin", "etc", "proc", "sys", "dev", "tmp", "root", "usr/bin",
    ] {
        fs::create_dir_all(dest.join(d)).unwrap();
    }
    fs::copy("/bin/busybox", dest.join("bin/busybox")).unwrap();
    let out = Command::new("/bin/busybox").arg("--list").output().unwrap();
    for applet in String::from_utf8_lossy(&out.stdout).lines() {
        let _ = std::os::unix::fs::symlink("busybox", dest.join("bin").join(applet));
    }
    std::os::unix::fs::symlink("../bin/busybox", dest.join("sbin/init")).unwrap();
    fs::write(dest.join("etc/inittab"), "::sysinit:/bin/true\n").unwrap();
}

/// The shared read-only busybox rootfs (built once, under the target dir).
pub fn image() -> PathBuf {
    let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let dest = base.join("busybox-rootfs");
    if dest.join("sbin/init").exists() {
        return dest;
    }
    fs::create_dir_all(&base).unwrap();
    let lock = fs::File::create(base.join("busybox-rootfs.lock")).unwrap();
    let _lock = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive).unwrap();
    if dest.join("sbin/init").exists() {
        return dest;
    }
    let tmp = base.join(format!("busybox-rootfs.tmp{}", std::process::id()));
    let _ = fs::remove_dir_all(&tmp);
    build_image(&tmp);
    fs::rename(&tmp, &dest).unwrap();
    dest
}

static SEQ: AtomicUsize = AtomicUsize::new(0);

/// A runtime with its own directories and cgroup group; cleans up on drop.
pub struct TestEnv {
    pub dir: tempfile::TempDir,
    pub rt: Option<Runtime>,
    pub group: String,
    pub names: Vec<String>,
}

impl TestEnv {
    pub fn new(tag: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix(&format!("shoal-rt-{tag}-"))
            .tempdir()
            .unwrap();
        let group = format!(
            "shoal-rt-{}-{}-{}",
            tag,
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let rt = Runtime::new(Self::config_for(dir.path(), &group)).unwrap();
        Self {
            dir,
            rt: Some(rt),
            group,
            names: Vec::new(),
        }
    }

    pub fn config_for(dir: &Path, group: &str) -> RuntimeConfig {
        RuntimeConfig {
            containers_dir: dir.join("containers"),
            run_dir: dir.join("run"),
            shoald_exe: PathBuf::from(env!("CARGO_BIN_EXE_shoald")),
            cgroup_group: group.to_string(),
        }
    }

    pub fn rt(&self) -> &Runtime {
        self.rt.as_ref().unwrap()
    }

    /// Replaces the runtime with a fresh instance (a "restarted daemon").
    pub fn reopen(&mut self) {
        self.rt = None;
        self.rt = Some(Runtime::new(Self::config_for(self.dir.path(), &self.group)).unwrap());
    }

    pub fn container_config(&self, name: &str, privileged: bool) -> ContainerConfig {
        ContainerConfig {
            name: name.to_string(),
            image_rootfs: image(),
            privileged,
            limits: Limits {
                memory_bytes: Some(64 << 20),
                cpu_millicores: Some(500),
                pids_max: Some(200),
            },
            stop_signal: libc::SIGUSR2,
            env: vec![("SHOAL_TEST".into(), "1".into())],
            fence: false,
        }
    }

    /// Creates a container (registered for cleanup).
    pub fn create(&mut self, name: &str, privileged: bool) -> ContainerConfig {
        let cfg = self.container_config(name, privileged);
        self.names.push(name.to_string());
        self.rt().create(&cfg).unwrap();
        cfg
    }

    pub fn container_dir(&self, name: &str) -> PathBuf {
        self.dir.path().join("containers").join(name)
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        if let Some(rt) = &self.rt {
            for name in &self.names {
                let _ = rt.stop(name, Duration::ZERO, true);
                let _ = rt.delete(name);
            }
        }
        if let Ok(mgr) = CgroupManager::detect(&self.group) {
            let _ = mgr.remove_base();
        }
    }
}

/// Output of a finished exec.
#[derive(Debug)]
pub struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

fn read_all(fd: OwnedFd) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = fs::File::from(fd).read_to_end(&mut s);
        String::from_utf8_lossy(&s).into_owned()
    })
}

pub fn req(argv: &[&str]) -> ExecRequest {
    ExecRequest {
        argv: argv.iter().map(|s| s.to_string()).collect(),
        env: vec![],
        cwd: None,
        uid: 0,
        gid: 0,
        tty: None,
    }
}

/// Runs `argv` in the container with `input` on stdin and collects the output.
pub fn exec_with(rt: &Runtime, name: &str, r: &ExecRequest, input: &[u8]) -> Output {
    let s = rt
        .exec(name, r)
        .unwrap_or_else(|e| panic!("exec {:?}: {e}", r.argv));
    let out = read_all(s.stdout);
    let err = s.stderr.map(read_all);
    {
        use std::io::Write;
        let mut stdin = fs::File::from(s.stdin);
        let _ = stdin.write_all(input);
    }
    let code = s.control.wait().unwrap();
    Output {
        code,
        stdout: out.join().unwrap(),
        stderr: err.map(|h| h.join().unwrap()).unwrap_or_default(),
    }
}

pub fn exec(rt: &Runtime, name: &str, argv: &[&str]) -> Output {
    exec_with(rt, name, &req(argv), b"")
}

/// `sh -c script`, asserting success; returns stdout.
pub fn sh(rt: &Runtime, name: &str, script: &str) -> String {
    let o = exec(rt, name, &["/bin/sh", "-c", script]);
    assert_eq!(o.code, 0, "{script}: {o:?}");
    o.stdout
}

/// Host /dev/null must stay root:root 0666 (the runtime binds it, never changes it).
pub fn assert_host_dev_null_untouched() {
    use std::os::unix::fs::MetadataExt;
    let m = fs::metadata("/dev/null").unwrap();
    assert_eq!((m.uid(), m.gid()), (0, 0), "host /dev/null owner changed");
    assert_eq!(m.mode() & 0o7777, 0o666, "host /dev/null mode changed");
}
