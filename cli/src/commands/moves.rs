//! `shoal move` and `shoal copy`: instances change hosts with their data.

use anyhow::Result;
use clap::Args;
use shoal_proto::api::{CopyInstanceRequest, MoveInstanceRequest};

use crate::connect::Connection;
use crate::error::status_error;
use crate::output;
use crate::wait::wait_final;

/// `shoal move NAME --target HOST [--mode cold|precopy|live]`.
#[derive(Args, Debug)]
pub(crate) struct MoveArgs {
    /// Instance name
    pub(crate) name: String,
    /// Host to move to (default: the scheduler chooses another host)
    #[arg(long)]
    pub(crate) target: Option<String>,
    /// cold (stop, copy, start), precopy (copy while running, stop, copy the changes,
    /// start) or live (CRIU, where available)
    #[arg(long, default_value = "cold")]
    pub(crate) mode: String,
    /// Return once the move has started
    #[arg(long)]
    pub(crate) no_wait: bool,
}

/// `shoal copy NAME NEW [--target HOST]`.
#[derive(Args, Debug)]
pub(crate) struct CopyArgs {
    /// Instance to copy
    pub(crate) name: String,
    /// Name of the copy
    pub(crate) new_name: String,
    /// Host for the copy (default: the scheduler chooses)
    #[arg(long)]
    pub(crate) target: Option<String>,
    /// Return once the copy has started
    #[arg(long)]
    pub(crate) no_wait: bool,
}

/// Runs `shoal move`.
pub(crate) async fn run_move(conn: &Connection, a: MoveArgs) -> Result<()> {
    let op = conn
        .instances()
        .r#move(MoveInstanceRequest {
            name: a.name,
            target: a.target.unwrap_or_default(),
            mode: a.mode,
        })
        .await
        .map_err(|s| status_error(s, conn))?
        .into_inner();
    if a.no_wait {
        return Ok(());
    }
    let msg = wait_final(conn, op, 3600).await?;
    output::print(&format!("{msg}\n"))
}

/// Runs `shoal copy`.
pub(crate) async fn run_copy(conn: &Connection, a: CopyArgs) -> Result<()> {
    let op = conn
        .instances()
        .copy(CopyInstanceRequest {
            name: a.name,
            new_name: a.new_name,
            target: a.target.unwrap_or_default(),
        })
        .await
        .map_err(|s| status_error(s, conn))?
        .into_inner();
    if a.no_wait {
        return Ok(());
    }
    wait_final(conn, op, 3600).await.map(|_| ())
}
