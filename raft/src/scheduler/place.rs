//! `place`: run the filter on every candidate host, score those that pass, take the best.
//!
//! Score, compared in order (lower wins):
//! 1. the placement group, when the instance is in one: for spread, fewer of its instances on
//!    the host, then in the host's failure domain; for compact, more of them. Strict groups
//!    also filter; permissive ones only score.
//! 2. the strategy, over CPU and memory after placing the instance (dimensions whose capacity
//!    is unknown left out): spread takes the host whose fuller resource is least full, then
//!    the lower sum of both; bin-pack takes the highest sum, then the fuller resource.
//! 3. fewer instances (spread) or more (bin-pack), then the host name.
//!
//! On a large cluster, a spread placement outside any placement group scores only the first
//! [`SAMPLE`] hosts that fit, scanning from a point chosen by the instance's name (as
//! Kubernetes scores a share of the nodes and Nomad a few of them): the least loaded of 256
//! fitting hosts is nearly as good as the least loaded of all, and placing stays cheap at a
//! thousand hosts. When fewer fit, every host is examined, so a refusal still says why for
//! each host. Bin-packing, targets and placement groups always examine every host.

use std::collections::HashMap;

use super::error::{names, NoFit};
use super::filter::{check_loaded, Refusal, Want};
use super::load::{Demand, HostLoad, InFlight, View};
use super::request::{Placement, PlacementRequest, Target};
use crate::model::{ClusterState, GroupPolicy, InstanceConfig, Member, PlacementGroup, Strategy};

/// How many fitting hosts a sampled placement scores (see the module doc).
pub const SAMPLE: usize = 256;

/// Where a sampled scan starts: a hash of the instance name (FNV-1a), so concurrent
/// placements on different members start at different hosts.
fn start_of(name: &str, hosts: usize) -> usize {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h % hosts.max(1) as u64) as usize
}

/// Lower is better; see the module doc.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Score {
    group: (u32, u32),
    primary: u64,
    secondary: u64,
    instances: u32,
}

/// Parts per million of `cap` that `used` takes, 0 if the capacity is unknown. (Floating point
/// is fine here: only the leader scores, and apply re-checks with integers.)
fn ppm(used: u64, cap: u64) -> u64 {
    if cap == 0 {
        0
    } else {
        (used as f64 * 1e6 / cap as f64) as u64
    }
}

/// (fuller resource, sum) of CPU and memory on `member` once `demand` is added; a resource
/// of unknown capacity counts as empty.
fn fullness(member: &Member, load: HostLoad, demand: &Demand) -> (u64, u64) {
    let (cap, used) = (&member.capacity, &load.reserved);
    let cpu = ppm(
        used.cpu_millicores.saturating_add(demand.cpu_millicores),
        cap.cpu_millicores,
    );
    let memory = ppm(
        used.memory_bytes.saturating_add(demand.memory_bytes),
        cap.memory_bytes,
    );
    (cpu.max(memory), cpu + memory)
}

/// How many instances of the group each failure domain runs.
fn domain_counts<'a>(
    state: &'a ClusterState,
    load: &View<'a>,
    group: &'a str,
) -> HashMap<&'a str, u32> {
    let mut out = HashMap::new();
    for (host, n) in load.group_hosts(group) {
        if let Some(m) = state.members.get(host) {
            *out.entry(m.failure_domain.as_str()).or_default() += n;
        }
    }
    out
}

fn score(
    strategy: Strategy,
    member: &Member,
    host: HostLoad,
    load: &View,
    want: &Want,
    domains: &HashMap<&str, u32>,
) -> Score {
    let group = match want.group {
        None => (0, 0),
        Some(g) => {
            let here = load.group_on(&g.name, &member.name);
            let domain = domains
                .get(member.failure_domain.as_str())
                .copied()
                .unwrap_or(0);
            match g.policy {
                GroupPolicy::Spread => (here, domain),
                GroupPolicy::Compact => (u32::MAX - here, u32::MAX - domain),
            }
        }
    };
    let (max, sum) = fullness(member, host, &want.demand);
    match strategy {
        Strategy::Spread => Score {
            group,
            primary: max,
            secondary: sum,
            instances: host.instances,
        },
        Strategy::BinPack => Score {
            group,
            primary: u64::MAX - sum,
            secondary: u64::MAX - max,
            instances: u32::MAX - host.instances,
        },
    }
}

/// The placement group `config` names, if any.
pub(crate) fn resolve_group<'a>(
    state: &'a ClusterState,
    config: &InstanceConfig,
) -> Result<Option<&'a PlacementGroup>, (String, String)> {
    match &config.placement_group {
        None => Ok(None),
        Some(name) => state.placement_groups.get(name).map(Some).ok_or_else(|| {
            (
                name.clone(),
                names(state.placement_groups.keys().map(String::as_str)),
            )
        }),
    }
}

/// Chooses a host for `req` on the snapshot `state`; `online` says which members hold a
/// lease. Commit the result with `Command::CreateInstance { location: placement.host, .. }`.
pub fn place(
    state: &ClusterState,
    online: &dyn Fn(&str) -> bool,
    req: &PlacementRequest,
) -> Result<Placement, NoFit> {
    place_with(state, online, req, &InFlight::default())
}

/// `place`, counting also the plans in `in_flight` (submitted, not yet applied).
pub fn place_with(
    state: &ClusterState,
    online: &dyn Fn(&str) -> bool,
    req: &PlacementRequest,
    in_flight: &InFlight,
) -> Result<Placement, NoFit> {
    let config = InstanceConfig::parse(&req.config)?;
    let group = resolve_group(state, &config)
        .map_err(|(group, known)| NoFit::UnknownPlacementGroup { group, known })?;
    if state.members.is_empty() {
        return Err(NoFit::NoMembers {
            instance: req.instance.clone(),
        });
    }
    let mut hosts: Box<dyn Iterator<Item = &Member>> = Box::new(state.members.values());
    let mut in_group: Option<&str> = None;
    match &req.target {
        Target::Any => {}
        Target::Host(h) => {
            let m = state.members.get(h).ok_or_else(|| NoFit::UnknownHost {
                host: h.clone(),
                members: names(state.members.keys().map(String::as_str)),
            })?;
            hosts = Box::new(std::iter::once(m));
        }
        Target::Group(g) => {
            if !state.members.values().any(|m| m.groups.contains(g)) {
                let mut all: Vec<&str> = state
                    .members
                    .values()
                    .flat_map(|m| m.groups.iter().map(String::as_str))
                    .collect();
                all.sort_unstable();
                all.dedup();
                return Err(NoFit::EmptyGroup {
                    group: g.clone(),
                    groups: names(all.into_iter()),
                });
            }
            in_group = Some(g);
        }
    }
    let want = Want {
        demand: Demand::of(&config, &state.scheduler),
        architecture: &req.architecture,
        labels: &config.placement_labels,
        group,
    };
    let view = View::new(state.load_index(), Some(in_flight));
    let load = &view;
    let domains = group
        .map(|g| domain_counts(state, load, &g.name))
        .unwrap_or_default();
    let sampled = group.is_none()
        && state.scheduler.strategy == Strategy::Spread
        && !matches!(req.target, Target::Host(_))
        && state.members.len() > SAMPLE;
    if sampled {
        let start = start_of(&req.instance, state.members.len());
        hosts = Box::new(
            state
                .members
                .values()
                .skip(start)
                .chain(state.members.values().take(start)),
        );
    }
    let mut best: Option<(Score, &str)> = None;
    let mut candidates = 0;
    let mut refused: Vec<(&str, Refusal)> = Vec::new();
    for m in hosts {
        if sampled && candidates >= SAMPLE {
            break;
        }
        let host = load.host(&m.name);
        let verdict = if !online(&m.name) {
            Err(Refusal::Offline)
        } else if let Some(g) = in_group.filter(|g| !m.groups.contains(*g)) {
            Err(Refusal::NotInGroup {
                group: g.to_string(),
            })
        } else {
            check_loaded(load, host, m, &want)
        };
        match verdict {
            Ok(()) => {
                candidates += 1;
                let s = score(state.scheduler.strategy, m, host, load, &want, &domains);
                if best.is_none_or(|(b, _)| s < b) {
                    best = Some((s, &m.name));
                }
            }
            Err(why) => refused.push((&m.name, why)),
        }
    }
    match best {
        Some((_, host)) => Ok(Placement {
            host: host.to_string(),
            candidates,
            demand: want.demand,
            group: config.placement_group.clone(),
        }),
        None => Err(NoFit::NoHostFits {
            instance: req.instance.clone(),
            demand: want.demand,
            hosts: refused
                .into_iter()
                .map(|(h, why)| (h.to_string(), why))
                .collect(),
        }),
    }
}
