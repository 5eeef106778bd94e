//! Cluster commands: `shoal cluster list`.

use anyhow::Result;
use clap::Subcommand;
use shoal_proto::api::ListMembersRequest;

use crate::connect::Connection;
use crate::error::status_error;
use crate::output::{print, render_list, Format};
use crate::view::member::{self, MemberView};

#[derive(Subcommand, Debug)]
pub(crate) enum ClusterCommand {
    /// List the members of the cluster
    #[command(alias = "ls")]
    List {
        /// Output format
        #[arg(short = 'f', long, value_enum, default_value_t)]
        format: Format,
    },
}

/// Runs a cluster subcommand.
pub(crate) async fn run(conn: &Connection, cmd: ClusterCommand) -> Result<()> {
    match cmd {
        ClusterCommand::List { format } => {
            let resp = conn
                .cluster()
                .list_members(ListMembersRequest {})
                .await
                .map_err(|s| status_error(s, conn))?
                .into_inner();
            let mut views: Vec<MemberView> =
                resp.members.into_iter().map(MemberView::from).collect();
            views.sort_by(|a, b| a.name.cmp(&b.name));
            print(&render_list(format, &views, member::table)?)
        }
    }
}
