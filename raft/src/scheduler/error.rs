//! Why an instance could not be placed: the whole cluster's answer, host by host.

use std::fmt::Write;

use super::filter::Refusal;
use super::load::Demand;
use crate::model::ConfigError;

/// No host can take the instance, or the request cannot be placed at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoFit {
    #[error("the cluster has no members to place '{instance}' on")]
    NoMembers { instance: String },
    #[error("unknown target host '{host}' (members: {members})")]
    UnknownHost { host: String, members: String },
    #[error("cluster group @{group} has no members (groups: {groups})")]
    EmptyGroup { group: String, groups: String },
    #[error("unknown placement group '{group}' (placement groups: {known})")]
    UnknownPlacementGroup { group: String, known: String },
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Every candidate host refused, each for the reason given.
    #[error("{}", no_host_text(.instance, .demand, .hosts))]
    NoHostFits {
        instance: String,
        demand: Demand,
        hosts: Vec<(String, Refusal)>,
    },
}

/// `none` or the names joined with commas.
pub(crate) fn names<'a>(it: impl Iterator<Item = &'a str>) -> String {
    let list: Vec<&str> = it.collect();
    if list.is_empty() {
        "none".to_string()
    } else {
        list.join(", ")
    }
}

fn no_host_text(instance: &str, demand: &Demand, hosts: &[(String, Refusal)]) -> String {
    let mut out = format!("no host can take instance '{instance}' ({demand}):");
    for (host, why) in hosts {
        let _ = write!(out, "\n  {host}: {why}");
    }
    out
}
