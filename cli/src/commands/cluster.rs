//! Cluster commands: `shoal cluster list|show|add|remove|trust add|list|remove`.
//!
//! `add` and `trust add` print the token alone on stdout, so that
//! `token=$(shoal cluster add b)` works; what to do with it goes to stderr,
//! and only when a person is watching. `list` also teaches the configuration
//! the members' addresses, so the CLI still finds the cluster when the member
//! it was set up with goes away.

use std::io::IsTerminal;
use std::path::Path;

use anyhow::Result;
use clap::{Args, Subcommand, ValueEnum};
use shoal_proto::api::{
    CreateTokenRequest, CreateTokenResponse, ListMembersRequest, ListTrustRequest,
    RemoveMemberRequest, RevokeTrustRequest, ShowClusterRequest,
};

use crate::config_edit::learn_addresses;
use crate::connect::Connection;
use crate::duration::parse_ttl;
use crate::error::status_error;
use crate::output::{print, render_list, render_one, rfc3339_ms, warn_stale, DetailFormat, Format};
use crate::view::cluster::{self, ClusterView};
use crate::view::member::{self, MemberView};
use crate::view::trust::{self, TrustView};

#[derive(Subcommand, Debug)]
pub(crate) enum ClusterCommand {
    /// List the members of the cluster
    #[command(alias = "ls")]
    List {
        /// Output format
        #[arg(short = 'f', long, value_enum, default_value_t)]
        format: Format,
    },
    /// Show the leader, term, commit index and each member's replication lag
    Show {
        /// Output format
        #[arg(short = 'f', long, value_enum, default_value_t)]
        format: DetailFormat,
        /// Ask the member the client connects to for its own view (term, leader, applied
        /// index, state digest) instead of the leader's
        #[arg(long)]
        local: bool,
    },
    /// Print a single-use token for a new host to join with
    Add(TokenArgs),
    /// Remove a member
    #[command(alias = "rm")]
    Remove {
        /// Member name
        name: String,
        /// Remove it even if it is offline or holds instances (a dead host)
        #[arg(long)]
        force: bool,
    },
    /// Manage the clients the cluster trusts
    #[command(subcommand)]
    Trust(TrustCommand),
    /// Evacuate a host: no new instances there; its instances move, stop or stay by their
    /// cluster.evacuate policy
    Evacuate {
        /// Member name
        name: String,
    },
    /// Restore an evacuated host: its instances come back
    Restore {
        /// Member name
        name: String,
    },
    /// Set how the scheduler places instances: spread (default) or binpack
    SetStrategy {
        /// spread or binpack
        strategy: String,
    },
}

#[derive(Subcommand, Debug)]
pub(crate) enum TrustCommand {
    /// Print a single-use token for a client to enrol with
    Add {
        #[command(flatten)]
        token: TokenArgs,
        /// Role of the client's certificate
        #[arg(long, value_enum, default_value_t)]
        role: Role,
    },
    /// List the clients the cluster trusts, has revoked, or holds a pending token for
    #[command(alias = "ls")]
    List {
        /// Output format
        #[arg(short = 'f', long, value_enum, default_value_t)]
        format: Format,
    },
    /// Revoke a client: every member refuses its certificate from now on (a pending token
    /// for it is cancelled)
    #[command(alias = "rm", alias = "revoke")]
    Remove {
        /// Client name, as `shoal cluster trust list` shows it
        name: String,
    },
}

#[derive(Args, Debug)]
pub(crate) struct TokenArgs {
    /// Name of the host (or client) the token is for
    pub(crate) name: String,
    /// Lifetime of the token, e.g. 3h, 30m, 90s (default: the cluster's, 3h)
    #[arg(long, value_name = "DURATION", value_parser = parse_ttl)]
    pub(crate) ttl: Option<u32>,
}

/// What a client may do.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub(crate) enum Role {
    /// Everything
    Admin,
    /// Instances and images
    Operator,
    /// Read only
    #[default]
    Viewer,
}

impl Role {
    fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Operator => "operator",
            Role::Viewer => "viewer",
        }
    }
}

/// Runs a cluster subcommand; `config` is the file to teach addresses to.
pub(crate) async fn run(conn: &Connection, config: &Path, cmd: ClusterCommand) -> Result<()> {
    match cmd {
        ClusterCommand::List { format } => list(conn, config, format).await,
        ClusterCommand::Show { format, local } => {
            let resp = conn
                .cluster()
                .show(ShowClusterRequest { local })
                .await
                .map_err(|s| status_error(s, conn))?
                .into_inner();
            print(&render_one(
                format,
                &ClusterView::from(resp),
                cluster::text,
            )?)
        }
        ClusterCommand::Add(a) => {
            let resp = create_token(conn, &a, "member", "").await?;
            print(&format!("{}\n", resp.token))?;
            hint(
                &format!(
                    "on host {name}, run: shoald --name {name} --join <token> ...",
                    name = a.name
                ),
                &resp,
            );
            Ok(())
        }
        ClusterCommand::Trust(TrustCommand::Add { token, role }) => {
            let resp = create_token(conn, &token, "client", role.as_str()).await?;
            print(&format!("{}\n", resp.token))?;
            hint(
                &format!(
                "on the client, run: shoal remote add <remote-name> {} --token <token> (role {})",
                conn.address,
                role.as_str()
            ),
                &resp,
            );
            Ok(())
        }
        ClusterCommand::Trust(TrustCommand::List { format }) => {
            let resp = conn
                .cluster()
                .list_trust(ListTrustRequest {})
                .await
                .map_err(|s| status_error(s, conn))?;
            warn_stale(&resp);
            let views: Vec<TrustView> = resp
                .into_inner()
                .clients
                .into_iter()
                .map(TrustView::from)
                .collect();
            print(&render_list(format, &views, trust::table)?)
        }
        ClusterCommand::Trust(TrustCommand::Remove { name }) => {
            let resp = conn
                .cluster()
                .revoke_trust(RevokeTrustRequest { name: name.clone() })
                .await
                .map_err(|s| status_error(s, conn))?
                .into_inner();
            if resp.fingerprint.is_empty() {
                eprintln!("cancelled the pending token for client '{name}'");
            } else {
                eprintln!(
                    "revoked client '{name}' (certificate fingerprint {}): every member refuses it now",
                    resp.fingerprint
                );
            }
            Ok(())
        }
        ClusterCommand::Remove { name, force } => {
            conn.cluster()
                .remove_member(RemoveMemberRequest { name, force })
                .await
                .map_err(|s| status_error(s, conn))?;
            Ok(())
        }
        ClusterCommand::Evacuate { name } => {
            let op = conn
                .cluster()
                .evacuate(shoal_proto::api::EvacuateRequest { name })
                .await
                .map_err(|s| status_error(s, conn))?
                .into_inner();
            let msg = crate::wait::wait_final(conn, op, 3600).await?;
            print(&format!("{msg}\n"))
        }
        ClusterCommand::SetStrategy { strategy } => {
            conn.cluster()
                .set_scheduler_strategy(shoal_proto::api::SetSchedulerStrategyRequest { strategy })
                .await
                .map_err(|s| status_error(s, conn))?;
            Ok(())
        }
        ClusterCommand::Restore { name } => {
            let op = conn
                .cluster()
                .restore(shoal_proto::api::RestoreRequest { name })
                .await
                .map_err(|s| status_error(s, conn))?
                .into_inner();
            let msg = crate::wait::wait_final(conn, op, 3600).await?;
            print(&format!("{msg}\n"))
        }
    }
}

async fn list(conn: &Connection, config: &Path, format: Format) -> Result<()> {
    let resp = conn
        .cluster()
        .list_members(ListMembersRequest {})
        .await
        .map_err(|s| status_error(s, conn))?
        .into_inner();
    let mut views: Vec<MemberView> = resp.members.into_iter().map(MemberView::from).collect();
    views.sort_by(|a, b| a.name.cmp(&b.name));
    print(&render_list(format, &views, member::table)?)?;
    let learned = addresses_to_learn(&views);
    if let Err(e) = learn_addresses(config, &conn.remote, &conn.address, &learned) {
        eprintln!("warning: cannot remember the members' addresses: {e:#}");
    }
    Ok(())
}

/// Member addresses, online members first.
fn addresses_to_learn(views: &[MemberView]) -> Vec<String> {
    let (online, other): (Vec<&MemberView>, Vec<&MemberView>) =
        views.iter().partition(|m| m.status == "Online");
    online
        .into_iter()
        .chain(other)
        .map(|m| m.address.clone())
        .collect()
}

async fn create_token(
    conn: &Connection,
    a: &TokenArgs,
    kind: &str,
    role: &str,
) -> Result<CreateTokenResponse> {
    Ok(conn
        .cluster()
        .create_token(CreateTokenRequest {
            name: a.name.clone(),
            kind: kind.to_string(),
            role: role.to_string(),
            ttl_seconds: a.ttl.unwrap_or(0),
        })
        .await
        .map_err(|s| status_error(s, conn))?
        .into_inner())
}

/// Tells a person at a terminal what to do with the token.
fn hint(what: &str, resp: &CreateTokenResponse) {
    if !std::io::stderr().is_terminal() {
        return;
    }
    let expiry = rfc3339_ms(resp.expires_at_ms)
        .map(|t| format!("; it is single-use and expires at {t}"))
        .unwrap_or_default();
    eprintln!("hint: {what}{expiry}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn online_members_are_learned_first() {
        let m = |name: &str, status: &str| MemberView {
            name: name.into(),
            address: format!("{name}:8443"),
            roles: vec![],
            status: status.into(),
            failure_domain: String::new(),
            message: String::new(),
            architecture: String::new(),
            id: 0,
        };
        let v = [m("a", "Offline"), m("b", "Online"), m("c", "Online")];
        assert_eq!(addresses_to_learn(&v), ["b:8443", "c:8443", "a:8443"]);
    }
}
