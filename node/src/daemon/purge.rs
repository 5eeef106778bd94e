//! `shoald purge`: removes everything a host's daemon made on this machine (containers,
//! their monitors, cgroups, the socket directory), using the runtime's own records. Used by
//! the test bed's `down` and by operators decommissioning a host. It does not touch the
//! data directory's certificates or state; delete the directory afterwards if wanted.

use anyhow::{Context, Result};
use clap::Parser;
use std::path::PathBuf;
use std::time::Duration;

use crate::cgroups::CgroupManager;
use crate::runtime::{Runtime, RuntimeConfig};

/// `shoald purge`: force-stop and delete every container of a host.
#[derive(Debug, Parser)]
#[command(name = "shoald purge")]
pub struct PurgeArgs {
    /// The host's member name.
    #[arg(long)]
    pub name: String,
    /// The host's data directory.
    #[arg(long)]
    pub data_dir: PathBuf,
}

/// Runs the purge; returns the number of containers removed.
pub fn run(args: &PurgeArgs) -> Result<usize> {
    let data = std::fs::canonicalize(&args.data_dir)
        .with_context(|| format!("no data directory at {}", args.data_dir.display()))?;
    let group = super::server::cgroup_group(&args.name, &data);
    let rt = Runtime::new(RuntimeConfig {
        containers_dir: data.join("containers"),
        run_dir: super::server::run_dir(&data),
        shoald_exe: std::env::current_exe().context("finding the shoald binary")?,
        cgroup_group: group.clone(),
    })
    .context("opening the runtime")?;
    let mut removed = 0;
    let mut failures = Vec::new();
    for name in rt.list().context("listing containers")? {
        let r = rt
            .stop(&name, Duration::from_secs(0), true)
            .or_else(|e| match rt.state(&name) {
                Ok(s) if s.status == crate::runtime::ContainerStatus::Stopped => Ok(()),
                _ => Err(e),
            })
            .and_then(|_| rt.delete(&name));
        match r {
            Ok(()) => removed += 1,
            Err(e) => failures.push(format!("{name}: {e}")),
        }
    }
    if let Ok(m) = CgroupManager::detect(&group) {
        if let Err(e) = m.remove_base() {
            failures.push(format!("cgroups: {e}"));
        }
    }
    let _ = std::fs::remove_dir_all(super::server::run_dir(&data));
    if !failures.is_empty() {
        anyhow::bail!("could not remove: {}", failures.join("; "));
    }
    Ok(removed)
}
