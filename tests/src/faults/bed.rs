//! The test bed as the fault suite uses it: CLI calls with a time limit (a paused leader
//! must not hang a client), one CLI configuration per host (to ask one member for its own
//! view), and the cluster's shape (leader, replicas, hosts).

use crate::testbed::{bin_dir, workspace, CliOutput, Testbed};
use anyhow::{bail, Context, Result};
use serde_json::Value;
use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs `cmd`, killing it (our own child, by pid) after `limit`: `None` means it timed out.
pub fn run_timeout(mut cmd: Command, limit: Duration) -> Option<CliOutput> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().ok()?;
    let mut out = child.stdout.take()?;
    let mut err = child.stderr.take()?;
    let to = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let te = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let t = Instant::now();
    let code = loop {
        match child.try_wait() {
            Ok(Some(st)) => break Some(st.code().unwrap_or(-1)),
            Ok(None) if t.elapsed() > limit => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(_) => break None,
        }
    };
    let stdout = to.join().unwrap_or_default();
    let stderr = te.join().unwrap_or_default();
    code.map(|code| CliOutput {
        code,
        stdout,
        stderr,
    })
}

/// A running test bed with the suite's helpers.
pub struct Bed {
    pub tb: Testbed,
    configs: tempfile::TempDir,
    /// Origin of every timestamp in the suite's records.
    pub t0: Instant,
    /// Fingerprints of the images the register workload writes (alias values).
    pub values: Vec<String>,
}

impl Bed {
    /// Brings up `hosts` hosts and imports `images` images in all (for register values).
    pub fn up(hosts: usize, images: usize) -> Result<Self> {
        let tb = Testbed::up(hosts)?;
        let configs = tempfile::Builder::new().prefix("shoal-faults-").tempdir()?;
        // The CLI's credentials live in host a's data dir, which a fault may wipe: keep
        // copies beside the suite's own CLI configuration.
        let mut text = std::fs::read_to_string(tb.config())?;
        for f in ["ca.crt", "admin.crt", "admin.key"] {
            let from = tb.host_dir("a").join("tls").join(f);
            let to = configs.path().join(f);
            std::fs::copy(&from, &to).with_context(|| format!("copying {}", from.display()))?;
            text = text.replace(&*from.to_string_lossy(), &to.to_string_lossy());
        }
        std::fs::write(configs.path().join("cli.toml"), text)?;
        let mut bed = Self {
            tb,
            configs,
            t0: Instant::now(),
            values: Vec::new(),
        };
        bed.values.push(bed.fingerprint_of("busybox")?);
        for k in 1..images {
            let tar = bed.configs.path().join(format!("img{k}.tar.gz"));
            let st = Command::new(workspace().join("deploy/build-busybox-image"))
                .arg(&tar)
                .env("SOURCE_DATE_EPOCH", (1_000_000 + k).to_string())
                .stdout(Stdio::null())
                .status()?;
            if !st.success() {
                bail!("build-busybox-image failed");
            }
            let alias = format!("img{k}");
            let out = bed
                .cli(
                    &["image", "import", tar.to_str().unwrap(), "--alias", &alias],
                    Duration::from_secs(60),
                )
                .context("image import timed out")?;
            if out.code != 0 {
                bail!("image import: {}", out.stderr);
            }
            bed.values.push(bed.fingerprint_of(&alias)?);
        }
        Ok(bed)
    }

    fn fingerprint_of(&self, alias: &str) -> Result<String> {
        let out = self
            .cli(
                &["image", "list", "--format", "json"],
                Duration::from_secs(20),
            )
            .context("image list timed out")?;
        let images = out.json();
        images
            .as_array()
            .into_iter()
            .flatten()
            .find(|i| {
                i["aliases"]
                    .as_array()
                    .is_some_and(|a| a.iter().any(|a| a == alias))
            })
            .and_then(|i| i["fingerprint"].as_str().map(str::to_string))
            .with_context(|| format!("no image with alias {alias}: {images}"))
    }

    /// Microseconds since `t0`.
    pub fn now_us(&self) -> u64 {
        self.t0.elapsed().as_micros() as u64
    }

    /// `shoal ARGS` against the cluster (any member), within `limit`.
    pub fn cli(&self, args: &[&str], limit: Duration) -> Option<CliOutput> {
        let mut c = Command::new(bin_dir().join("shoal"));
        c.args(args)
            .env("SHOAL_CONFIG", self.configs.path().join("cli.toml"));
        run_timeout(c, limit)
    }

    /// `shoal ARGS` against host `host` only.
    pub fn cli_on(&self, host: &str, args: &[&str], limit: Duration) -> Option<CliOutput> {
        let cfg = self.config_for(host).ok()?;
        let mut c = Command::new(bin_dir().join("shoal"));
        c.args(args).env("SHOAL_CONFIG", cfg);
        run_timeout(c, limit)
    }

    /// `deploy/local-cluster ARGS`, failing unless it succeeds.
    pub fn script(&self, args: &[&str]) -> Result<CliOutput> {
        let out = self.tb.script(args)?;
        if out.code != 0 {
            bail!(
                "local-cluster {} failed: {}{}",
                args.join(" "),
                out.stdout,
                out.stderr
            );
        }
        Ok(out)
    }

    /// A CLI configuration that names only `host`'s address.
    fn config_for(&self, host: &str) -> Result<PathBuf> {
        let path = self.configs.path().join(format!("cli-{host}.toml"));
        if path.exists() {
            return Ok(path);
        }
        let addr = self
            .addresses()?
            .into_iter()
            .find(|(h, _)| h == host)
            .map(|(_, a)| a)
            .with_context(|| format!("no host {host}"))?;
        let base = std::fs::read_to_string(self.configs.path().join("cli.toml"))?;
        let one: String = base
            .lines()
            .map(|l| {
                if l.starts_with("addresses") {
                    format!("addresses = [\"{addr}\"]")
                } else {
                    l.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        std::fs::write(&path, one + "\n")?;
        Ok(path)
    }

    /// Hosts and their addresses (`local-cluster status`).
    pub fn addresses(&self) -> Result<Vec<(String, String)>> {
        let out = self.script(&["status"])?;
        Ok(out
            .stdout
            .lines()
            .filter_map(|l| {
                let mut f = l.split('\t');
                Some((f.next()?.to_string(), f.next()?.to_string()))
            })
            .collect())
    }

    /// Names of the hosts that hold a member (running or stopped by a fault; a wiped
    /// host holds none).
    pub fn hosts(&self) -> Vec<String> {
        self.addresses()
            .map(|v| {
                v.into_iter()
                    .map(|(h, _)| h)
                    .filter(|h| self.host_dir(h).join("member.json").exists())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The data directory of `host`.
    pub fn host_dir(&self, host: &str) -> PathBuf {
        self.tb.host_dir(host)
    }

    /// The last `lines` lines of every host's `shoald.log` (wiped hosts keep theirs), for
    /// a failure report; the whole logs are copied to a directory that outlives the test
    /// bed (`/tmp/shoal-faults-logs-<prefix>`), named in the report.
    pub fn log_tails(&self, lines: usize) -> String {
        let keep = std::env::temp_dir().join(format!("shoal-faults-logs-{}", self.tb.prefix()));
        let _ = std::fs::create_dir_all(&keep);
        let mut out = format!("(whole logs kept in {})", keep.display());
        let hosts_dir = self.host_dir("a").parent().map(PathBuf::from);
        let mut dirs: Vec<PathBuf> = hosts_dir
            .and_then(|d| std::fs::read_dir(d).ok())
            .map(|r| r.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        dirs.sort();
        for d in dirs {
            let host = d
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let log = std::fs::read_to_string(d.join("shoald.log")).unwrap_or_default();
            let _ = std::fs::write(keep.join(format!("{host}-shoald.log")), &log);
            let tail: Vec<&str> = log.lines().rev().take(lines).collect();
            out.push_str(&format!(
                "\n--- {host} shoald.log (last {} lines) ---\n{}",
                tail.len(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            ));
        }
        out
    }

    /// The leader's `cluster show`, if a leader answers.
    pub fn show(&self) -> Option<Value> {
        let out = self.cli(
            &["cluster", "show", "--format", "json"],
            Duration::from_secs(8),
        )?;
        (out.code == 0).then(|| out.json())
    }

    /// One member's own view (`cluster show --local`).
    pub fn show_local(&self, host: &str) -> Option<Value> {
        let out = self.cli_on(
            host,
            &["cluster", "show", "--local", "--format", "json"],
            Duration::from_secs(4),
        )?;
        (out.code == 0).then(|| out.json())
    }

    /// The current leader's name.
    pub fn leader(&self) -> Option<String> {
        let v = self.show()?;
        let l = v["leader"].as_str()?.to_string();
        (!l.is_empty()).then_some(l)
    }

    /// Waits for a leader.
    pub fn wait_leader(&self, limit: Duration) -> Result<String> {
        let t = Instant::now();
        loop {
            if let Some(l) = self.leader() {
                return Ok(l);
            }
            if t.elapsed() > limit {
                bail!("no leader within {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Members with a replica (leader, voters, stand-bys) and their roles.
    pub fn replicas(&self) -> Vec<(String, String)> {
        self.show()
            .and_then(|v| {
                v["members"].as_array().map(|m| {
                    m.iter()
                        .map(|m| {
                            (
                                m["name"].as_str().unwrap_or("").to_string(),
                                m["role"].as_str().unwrap_or("").to_string(),
                            )
                        })
                        .collect()
                })
            })
            .unwrap_or_default()
    }

    /// Voters, the leader included.
    pub fn voters(&self) -> Vec<String> {
        self.replicas()
            .into_iter()
            .filter(|(_, r)| r == "leader" || r == "voter")
            .map(|(n, _)| n)
            .collect()
    }

    /// `cluster list` as JSON.
    pub fn members(&self) -> Vec<Value> {
        self.cli(
            &["cluster", "list", "--format", "json"],
            Duration::from_secs(8),
        )
        .filter(|o| o.code == 0)
        .and_then(|o| o.json().as_array().cloned())
        .unwrap_or_default()
    }

    /// `list` as JSON.
    pub fn instances(&self) -> Vec<Value> {
        self.cli(&["list", "--format", "json"], Duration::from_secs(15))
            .filter(|o| o.code == 0 && !o.stderr.contains("may be stale"))
            .and_then(|o| o.json().as_array().cloned())
            .unwrap_or_default()
    }

    /// Waits until every host is an Online member (or Evacuated) and a leader answers.
    pub fn wait_all_online(&self, limit: Duration) -> Result<()> {
        let t = Instant::now();
        let hosts = self.hosts();
        loop {
            let members = self.members();
            let online = hosts.iter().all(|h| {
                members.iter().any(|m| {
                    m["name"] == h.as_str()
                        && (m["status"] == "Online" || m["status"] == "Evacuated")
                })
            });
            if online && members.len() == hosts.len() {
                return Ok(());
            }
            if t.elapsed() > limit {
                bail!("not every host online within {limit:?}: {members:?}");
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// Launches `name` (busybox, small) and waits for it, within 90 s.
    pub fn launch(&self, name: &str, extra: &[&str]) -> Result<()> {
        let mut args = vec![
            "launch",
            "busybox",
            name,
            "-c",
            "limits.memory=32MiB",
            "-c",
            "limits.processes=50",
        ];
        args.extend_from_slice(extra);
        let out = self
            .cli(&args, Duration::from_secs(90))
            .with_context(|| format!("launch {name} timed out"))?;
        if out.code != 0 {
            bail!("launch {name}: {}", out.stderr);
        }
        Ok(())
    }
}
