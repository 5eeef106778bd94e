//! Instance commands: `launch`, `init`, `list`, `info`, and the life-cycle
//! verbs `start`, `stop`, `restart`, `freeze`, `unfreeze`, `delete`.
//!
//! Every change returns an operation; unless `--no-wait` the command follows
//! it to the end (see `wait.rs`). Verbs accept several names and stop at the
//! first failure, as `lxc` does.

use anyhow::Result;
use clap::Args;
use shoal_proto::api::{
    CreateInstanceRequest, DeleteInstanceRequest, FreezeInstanceRequest, GetInstanceRequest,
    ListInstancesRequest, Operation, RestartInstanceRequest, StartInstanceRequest,
    StopInstanceRequest, UnfreezeInstanceRequest,
};

use crate::connect::Connection;
use crate::error::status_error;
use crate::keyvalue::{parse_pair, to_map};
use crate::output::{print, render_list, render_one, DetailFormat, Format};
use crate::view::instance::{self, InstanceView};
use crate::wait::wait;

/// Arguments of `launch` and `init`.
#[derive(Args, Debug)]
pub(crate) struct CreateArgs {
    /// Image alias or fingerprint
    pub(crate) image: String,
    /// Name of the new instance
    pub(crate) name: String,
    /// Configuration key (repeatable), e.g. -c limits.memory=256MiB
    // Short only: `--config` is the global configuration-file flag.
    #[arg(id = "config_pairs", short = 'c', value_name = "KEY=VALUE", value_parser = parse_pair)]
    pub(crate) config: Vec<(String, String)>,
    /// Cluster member to place the instance on (default: the scheduler chooses)
    #[arg(long, value_name = "HOST")]
    pub(crate) target: Option<String>,
    /// Return once the change is committed, without waiting for the outcome
    #[arg(long)]
    pub(crate) no_wait: bool,
}

/// Arguments of `list`.
#[derive(Args, Debug)]
pub(crate) struct ListArgs {
    /// Output format
    #[arg(short = 'f', long, value_enum, default_value_t)]
    pub(crate) format: Format,
}

/// Arguments of `info`.
#[derive(Args, Debug)]
pub(crate) struct InfoArgs {
    /// Instance name
    pub(crate) name: String,
    /// Output format
    #[arg(short = 'f', long, value_enum, default_value_t)]
    pub(crate) format: DetailFormat,
}

/// Arguments of `start`, `freeze` and `unfreeze`.
#[derive(Args, Debug)]
pub(crate) struct NamesArgs {
    /// Instance names
    #[arg(required = true, value_name = "NAME")]
    pub(crate) names: Vec<String>,
    /// Return once the change is committed, without waiting for the outcome
    #[arg(long)]
    pub(crate) no_wait: bool,
}

/// Arguments of `stop` and `restart`.
#[derive(Args, Debug)]
pub(crate) struct StopArgs {
    /// Instance names
    #[arg(required = true, value_name = "NAME")]
    pub(crate) names: Vec<String>,
    /// Kill at once instead of asking init to shut down
    #[arg(short = 'f', long)]
    pub(crate) force: bool,
    /// Seconds to wait for a clean shutdown before killing (default 30)
    #[arg(long, value_name = "SECS")]
    pub(crate) timeout: Option<u32>,
    /// Return once the change is committed, without waiting for the outcome
    #[arg(long)]
    pub(crate) no_wait: bool,
}

/// Arguments of `delete`.
#[derive(Args, Debug)]
pub(crate) struct DeleteArgs {
    /// Instance names
    #[arg(required = true, value_name = "NAME")]
    pub(crate) names: Vec<String>,
    /// Stop a running instance first (killing it)
    #[arg(short = 'f', long)]
    pub(crate) force: bool,
    /// Return once the change is committed, without waiting for the outcome
    #[arg(long)]
    pub(crate) no_wait: bool,
}

/// A life-cycle verb applied to one instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verb {
    Start,
    Stop { force: bool, timeout: u32 },
    Restart { force: bool, timeout: u32 },
    Freeze,
    Unfreeze,
    Delete { force: bool },
}

/// `launch` (start = true) and `init` (start = false).
pub(crate) async fn create(conn: &Connection, args: CreateArgs, start: bool) -> Result<()> {
    let req = CreateInstanceRequest {
        name: args.name,
        image: args.image,
        config: to_map(args.config),
        start,
        target: args.target.unwrap_or_default(),
    };
    let op = conn
        .instances()
        .create(req)
        .await
        .map_err(|s| status_error(s, conn))?
        .into_inner();
    finish(conn, op, args.no_wait, 0).await
}

/// `list`.
pub(crate) async fn list(conn: &Connection, args: ListArgs) -> Result<()> {
    let resp = conn
        .instances()
        .list(ListInstancesRequest {})
        .await
        .map_err(|s| status_error(s, conn))?;
    crate::output::warn_stale(&resp);
    let resp = resp.into_inner();
    let mut views: Vec<InstanceView> = resp.instances.into_iter().map(InstanceView::from).collect();
    views.sort_by(|a, b| a.name.cmp(&b.name));
    print(&render_list(args.format, &views, instance::table)?)
}

/// `info`.
pub(crate) async fn info(conn: &Connection, args: InfoArgs) -> Result<()> {
    let inst = conn
        .instances()
        .get(GetInstanceRequest { name: args.name })
        .await
        .map_err(|s| status_error(s, conn))?;
    crate::output::warn_stale(&inst);
    let inst = inst.into_inner();
    print(&render_one(
        args.format,
        &InstanceView::from(inst),
        instance::text,
    )?)
}

/// Applies `verb` to each name in turn, stopping at the first failure.
pub(crate) async fn apply(
    conn: &Connection,
    verb: Verb,
    names: Vec<String>,
    no_wait: bool,
) -> Result<()> {
    for name in names {
        let op = call(conn, verb, name).await?;
        finish(conn, op, no_wait, wait_timeout(verb)).await?;
    }
    Ok(())
}

async fn call(conn: &Connection, verb: Verb, name: String) -> Result<Operation> {
    let mut c = conn.instances();
    let r = match verb {
        Verb::Start => c.start(StartInstanceRequest { name }).await,
        Verb::Stop { force, timeout } => {
            c.stop(StopInstanceRequest {
                name,
                force,
                timeout_seconds: timeout,
            })
            .await
        }
        Verb::Restart { force, timeout } => {
            c.restart(RestartInstanceRequest {
                name,
                force,
                timeout_seconds: timeout,
            })
            .await
        }
        Verb::Freeze => c.freeze(FreezeInstanceRequest { name }).await,
        Verb::Unfreeze => c.unfreeze(UnfreezeInstanceRequest { name }).await,
        Verb::Delete { force } => c.delete(DeleteInstanceRequest { name, force }).await,
    };
    Ok(r.map_err(|s| status_error(s, conn))?.into_inner())
}

async fn finish(conn: &Connection, op: Operation, no_wait: bool, timeout: u32) -> Result<()> {
    if no_wait {
        return Ok(());
    }
    wait(conn, op, timeout).await
}

/// Seconds `Operations.Wait` may take: the server default (300, sent as 0)
/// unless a long stop timeout needs more.
pub(crate) fn wait_timeout(verb: Verb) -> u32 {
    match verb {
        Verb::Stop { timeout, .. } | Verb::Restart { timeout, .. } if timeout > 240 => {
            timeout.saturating_add(60)
        }
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_stops_wait_longer() {
        assert_eq!(wait_timeout(Verb::Start), 0);
        assert_eq!(
            wait_timeout(Verb::Stop {
                force: false,
                timeout: 30
            }),
            0
        );
        assert_eq!(
            wait_timeout(Verb::Restart {
                force: false,
                timeout: 600
            }),
            660
        );
    }
}
