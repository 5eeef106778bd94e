//! The test bed of `deploy/local-cluster`, isolated per test: its own state directory,
//! name prefix (namespaces, bridge, veths), subnet and CLI configuration. Dropping the
//! handle runs `down`, so a failing test still cleans up.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

/// Whether the tests run as root (the end-to-end tests need it).
pub fn is_root() -> bool {
    nix::unistd::Uid::effective().is_root()
}

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// Directory of the built binaries (the profile dir this test runs from).
pub fn bin_dir() -> PathBuf {
    if let Ok(d) = std::env::var("SHOAL_BIN_DIR") {
        return PathBuf::from(d);
    }
    let exe = std::env::current_exe().expect("current exe");
    let mut dir = exe.parent().expect("exe dir").to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir
}

/// Output of one CLI call.
#[derive(Debug)]
pub struct CliOutput {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl CliOutput {
    fn from(o: Output) -> Self {
        Self {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }

    /// Panics with both streams unless the call succeeded.
    pub fn ok(self) -> Self {
        assert_eq!(
            self.code, 0,
            "command failed: stdout={} stderr={}",
            self.stdout, self.stderr
        );
        self
    }

    /// Parses stdout as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.stdout))
    }
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A running test bed.
pub struct Testbed {
    dir: tempfile::TempDir,
    prefix: String,
    config: PathBuf,
    down: bool,
}

impl Testbed {
    /// Brings up `hosts` simulated hosts.
    pub fn up(hosts: usize) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("shoal-testbed-")
            .tempdir()
            .context("creating the test bed dir")?;
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let id = (std::process::id() * 31 + n) % 36u32.pow(4);
        let prefix = format!("t{}", radix36(id, 4));
        let config = dir.path().join("cli.toml");
        let mut tb = Self {
            dir,
            prefix,
            config,
            down: false,
        };
        let out = tb.script(&["up", "--hosts", &hosts.to_string()])?;
        if out.code != 0 {
            let mut logs = String::new();
            if let Ok(dirs) = std::fs::read_dir(tb.state_dir().join("hosts")) {
                for d in dirs.flatten() {
                    let log =
                        std::fs::read_to_string(d.path().join("shoald.log")).unwrap_or_default();
                    let tail: Vec<&str> = log.lines().rev().take(15).collect();
                    logs.push_str(&format!(
                        "\n--- {} shoald.log (last lines) ---\n{}",
                        d.file_name().to_string_lossy(),
                        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                    ));
                }
            }
            tb.down_now();
            bail!(
                "local-cluster up failed: {}{}{logs}",
                out.stdout,
                out.stderr
            );
        }
        Ok(tb)
    }

    fn state_dir(&self) -> PathBuf {
        self.dir.path().join("bed")
    }

    /// Runs `deploy/local-cluster ARGS` for this test bed.
    pub fn script(&self, args: &[&str]) -> Result<CliOutput> {
        let bins = bin_dir();
        let out = Command::new(workspace().join("deploy/local-cluster"))
            .args(args)
            .env("SHOAL_TESTBED_DIR", self.state_dir())
            .env("SHOAL_TESTBED_PREFIX", &self.prefix)
            .env("SHOAL_CONFIG", &self.config)
            .env("SHOALD_BIN", bins.join("shoald"))
            .env("SHOAL_BIN", bins.join("shoal"))
            .stdin(Stdio::null())
            .output()
            .context("running deploy/local-cluster")?;
        Ok(CliOutput::from(out))
    }

    /// The data directory of host `name`.
    pub fn host_dir(&self, name: &str) -> PathBuf {
        self.state_dir().join("hosts").join(name)
    }

    /// The name prefix of this test bed's namespaces and interfaces.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Path of the CLI configuration.
    pub fn config(&self) -> &Path {
        &self.config
    }

    /// A `shoal` command set up for this test bed.
    pub fn shoal_cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(bin_dir().join("shoal"));
        c.args(args)
            .env("SHOAL_CONFIG", &self.config)
            .stdin(Stdio::null());
        c
    }

    /// Runs `shoal ARGS`.
    pub fn shoal(&self, args: &[&str]) -> CliOutput {
        CliOutput::from(self.shoal_cmd(args).output().expect("running shoal"))
    }

    fn down_now(&mut self) {
        if !self.down {
            self.down = true;
            match self.script(&["down"]) {
                Ok(o) if o.code == 0 => {}
                Ok(o) => eprintln!("local-cluster down failed: {}{}", o.stdout, o.stderr),
                Err(e) => eprintln!("local-cluster down failed: {e:#}"),
            }
        }
    }

    /// Tears the test bed down now.
    pub fn down(mut self) {
        self.down_now();
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        self.down_now();
    }
}

fn radix36(mut n: u32, width: usize) -> String {
    let digits = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut s = vec![b'0'; width];
    for i in (0..width).rev() {
        s[i] = digits[(n % 36) as usize];
        n /= 36;
    }
    String::from_utf8(s).expect("ascii")
}
