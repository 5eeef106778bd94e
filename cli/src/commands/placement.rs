//! `shoal placement`: placement groups, which spread instances apart or keep them together
//! (`-c placement.group=NAME` on an instance).

use anyhow::Result;
use clap::Subcommand;
use serde::Serialize;
use shoal_proto::api::{DeletePlacementGroupRequest, ListPlacementGroupsRequest, PlacementGroup};

use crate::connect::Connection;
use crate::error::status_error;
use crate::output::{print, render_list, Format, Table};

/// Placement group commands.
#[derive(Subcommand, Debug)]
pub(crate) enum PlacementCommand {
    /// Create a placement group
    Create {
        /// Group name
        name: String,
        /// spread (different hosts, then failure domains) or compact (together)
        #[arg(long, default_value = "spread")]
        policy: String,
        /// Make it a rule (no fit is an error) rather than a preference
        #[arg(long)]
        strict: bool,
    },
    /// List placement groups
    #[command(alias = "ls")]
    List {
        /// Output format
        #[arg(short = 'f', long, value_enum, default_value_t)]
        format: Format,
    },
    /// Delete a placement group no instance uses
    #[command(alias = "rm")]
    Delete {
        /// Group name
        name: String,
    },
}

#[derive(Serialize)]
struct GroupView {
    name: String,
    policy: String,
    strict: bool,
}

fn table(groups: &[GroupView]) -> Table {
    Table {
        headers: vec!["NAME", "POLICY", "STRICT"],
        rows: groups
            .iter()
            .map(|g| vec![g.name.clone(), g.policy.clone(), g.strict.to_string()])
            .collect(),
    }
}

/// Runs a placement subcommand.
pub(crate) async fn run(conn: &Connection, cmd: PlacementCommand) -> Result<()> {
    match cmd {
        PlacementCommand::Create {
            name,
            policy,
            strict,
        } => {
            conn.cluster()
                .create_placement_group(PlacementGroup {
                    name,
                    policy,
                    strict,
                })
                .await
                .map_err(|s| status_error(s, conn))?;
            Ok(())
        }
        PlacementCommand::List { format } => {
            let resp = conn
                .cluster()
                .list_placement_groups(ListPlacementGroupsRequest {})
                .await
                .map_err(|s| status_error(s, conn))?
                .into_inner();
            let views: Vec<GroupView> = resp
                .groups
                .into_iter()
                .map(|g| GroupView {
                    name: g.name,
                    policy: g.policy,
                    strict: g.strict,
                })
                .collect();
            print(&render_list(format, &views, table)?)
        }
        PlacementCommand::Delete { name } => {
            conn.cluster()
                .delete_placement_group(DeletePlacementGroupRequest { name })
                .await
                .map_err(|s| status_error(s, conn))?;
            Ok(())
        }
    }
}
