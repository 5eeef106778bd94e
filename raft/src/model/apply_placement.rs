//! Scheduler options, placement groups and the re-check of a placement: the placement part
//! of `apply`.
//!
//! The leader plans a placement on a snapshot (`crate::scheduler::place`) and commits
//! `CreateInstance { location }`. Other creations may commit in between, so `apply` runs the
//! scheduler's filter again on that host against the state as it is now: a compare-and-set
//! on the host's free resources, evacuation, architecture, labels and placement group. Every
//! replica reaches the same verdict. Liveness is not re-checked: it is not replicated.

use std::collections::BTreeMap;

use super::command::{Command, CommandResult};
use super::config::{group_name_problem, InstanceConfig};
use super::error::ModelError;
use super::state::{ClusterState, DesiredState};
use crate::scheduler::{check_host, Demand, Want};

/// Most instances named in an "in use" error.
const LIST_AT_MOST: usize = 10;

/// Refuses creating `name` with `config` on `location` if that host cannot take it now.
pub(crate) fn check_create(
    state: &ClusterState,
    name: &str,
    config: &BTreeMap<String, String>,
    location: &str,
    fingerprint: &str,
) -> Result<(), ModelError> {
    let parsed = InstanceConfig::parse(config)?;
    let group = crate::scheduler::resolve_group(state, &parsed)
        .map_err(|(name, known)| ModelError::UnknownPlacementGroup { name, known })?;
    let member = state
        .members
        .get(location)
        .ok_or_else(|| ModelError::MemberNotFound(location.to_string()))?;
    let architecture = state
        .images
        .get(fingerprint)
        .map(|i| i.architecture.as_str())
        .unwrap_or_default();
    let want = Want {
        demand: Demand::of(&parsed, &state.scheduler),
        architecture,
        labels: &parsed.placement_labels,
        group,
    };
    check_host(state.load_index(), member, &want).map_err(|why| ModelError::PlanRejected {
        instance: name.to_string(),
        host: location.to_string(),
        reason: why.to_string(),
    })
}

/// Applies the scheduler and placement-group commands.
pub(crate) fn apply_placement(
    state: &mut ClusterState,
    cmd: &Command,
) -> Result<CommandResult, ModelError> {
    match cmd {
        Command::SetSchedulerConfig { config } => {
            if config.default_cpu_millicores > 4_096_000 {
                return Err(ModelError::InvalidSchedulerConfig(format!(
                    "the default CPU of an instance without limits.cpu is at most 4096 cores, not {} thousandths",
                    config.default_cpu_millicores
                )));
            }
            state.scheduler = config.clone();
            Ok(CommandResult::Done)
        }
        Command::CreatePlacementGroup { group } => {
            if let Some(why) = group_name_problem(&group.name) {
                return Err(ModelError::InvalidPlacementGroup {
                    name: group.name.clone(),
                    reason: why.to_string(),
                });
            }
            if state.placement_groups.contains_key(&group.name) {
                return Err(ModelError::PlacementGroupExists(group.name.clone()));
            }
            state
                .placement_groups
                .insert(group.name.clone(), group.clone());
            Ok(CommandResult::Done)
        }
        Command::DeletePlacementGroup { name } => {
            if !state.placement_groups.contains_key(name) {
                return Err(ModelError::UnknownPlacementGroup {
                    name: name.clone(),
                    known: crate::scheduler::names(
                        state.placement_groups.keys().map(String::as_str),
                    ),
                });
            }
            let users: Vec<&str> = state
                .instances
                .values()
                .filter(|i| {
                    i.desired != DesiredState::Deleted
                        && i.config.get("placement.group") == Some(name)
                })
                .map(|i| i.name.as_str())
                .collect();
            if !users.is_empty() {
                let mut list = users[..users.len().min(LIST_AT_MOST)].join(", ");
                if users.len() > LIST_AT_MOST {
                    list.push_str(&format!(" and {} more", users.len() - LIST_AT_MOST));
                }
                return Err(ModelError::PlacementGroupInUse {
                    name: name.clone(),
                    instances: list,
                });
            }
            state.placement_groups.remove(name);
            Ok(CommandResult::Done)
        }
        _ => unreachable!("apply_placement called with {cmd:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{GroupPolicy, PlacementGroup, SchedulerConfig, Strategy};
    use crate::scheduler::testkit::{member, Cluster, GIB, MIB};
    use crate::scheduler::LoadIndex;

    fn group(name: &str) -> Command {
        Command::CreatePlacementGroup {
            group: PlacementGroup {
                name: name.into(),
                policy: GroupPolicy::Spread,
                strict: true,
            },
        }
    }

    fn delete(name: &str) -> Command {
        Command::SetDesired {
            name: name.into(),
            desired: DesiredState::Deleted,
            force: true,
            timeout_s: 0,
            restart: false,
            expected_version: None,
        }
    }

    /// Applies `cmd`, expecting a refusal that changes nothing but the revision.
    fn refused(c: &mut Cluster, cmd: Command) -> ModelError {
        let before = c.state.clone();
        let e = c.apply(cmd).unwrap_err();
        let mut after = c.state.clone();
        after.revision = before.revision;
        assert_eq!(before, after);
        e
    }

    #[test]
    fn a_stale_plan_is_refused_at_apply() {
        let mut c = Cluster::new(vec![member("a", "r1", 4, 1536 * MIB)]);
        let cfg = [("limits.memory", "1GiB")];
        // Two plans made on the same snapshot both choose a; only one fits.
        let p1 = c.place(&Cluster::request("c1", &cfg, "")).unwrap();
        let p2 = c.place(&Cluster::request("c2", &cfg, "")).unwrap();
        assert_eq!((p1.host.as_str(), p2.host.as_str()), ("a", "a"));
        c.apply(Cluster::create("c1", &cfg, &p1.host)).unwrap();
        let e = refused(&mut c, Cluster::create("c2", &cfg, &p2.host));
        assert!(matches!(e, ModelError::PlanRejected { .. }), "{e:?}");
        assert_eq!(
            e.to_string(),
            "placing 'c2' on 'a' was refused: needs 1GiB memory, 512MiB free \
             (the cluster changed since the placement was planned; retry)"
        );
        // A fresh plan says why, host by host.
        let e = c.place(&Cluster::request("c2", &cfg, "")).unwrap_err();
        assert!(
            e.to_string().ends_with("a: needs 1GiB memory, 512MiB free"),
            "{e}"
        );
    }

    #[test]
    fn apply_refuses_evacuated_hosts_wrong_architecture_labels_and_unknown_groups() {
        let mut c = Cluster::new(vec![member("a", "r1", 4, GIB), member("b", "r1", 4, GIB)]);
        c.member_mut("b").evacuated = true;
        let e = refused(&mut c, Cluster::create("c1", &[], "b"));
        assert!(e.to_string().contains("refused: evacuated"), "{e}");
        let mut arm = Cluster::create("c1", &[], "a");
        if let Command::CreateInstance { image, .. } = &mut arm {
            *image = "armbox".into();
        }
        let e = refused(&mut c, arm);
        assert!(
            e.to_string()
                .contains("architecture x86_64, the image needs aarch64"),
            "{e}"
        );
        let e = refused(
            &mut c,
            Cluster::create("c1", &[("placement.labels", "gpu=yes")], "a"),
        );
        assert!(
            e.to_string().contains("no label gpu (wanted gpu=yes)"),
            "{e}"
        );
        let e = refused(
            &mut c,
            Cluster::create("c1", &[("placement.group", "web")], "a"),
        );
        assert_eq!(
            e.to_string(),
            "unknown placement group 'web' (placement groups: none)"
        );
        c.apply(group("web")).unwrap();
        c.apply(Cluster::create("c1", &[("placement.group", "web")], "a"))
            .unwrap();
        let e = refused(
            &mut c,
            Cluster::create("c2", &[("placement.group", "web")], "a"),
        );
        assert!(
            e.to_string()
                .contains("already runs 1 instance of placement group 'web' (strict spread)"),
            "{e}"
        );
    }

    #[test]
    fn placement_groups_are_created_and_deleted_with_checks() {
        let mut c = Cluster::new(vec![member("a", "r1", 4, GIB)]);
        c.apply(group("web")).unwrap();
        assert!(matches!(
            refused(&mut c, group("web")),
            ModelError::PlacementGroupExists(_)
        ));
        for bad in ["", "9x", "a b", &"x".repeat(64)] {
            assert!(matches!(
                refused(&mut c, group(bad)),
                ModelError::InvalidPlacementGroup { .. }
            ));
        }
        let e = refused(&mut c, Command::DeletePlacementGroup { name: "db".into() });
        assert_eq!(
            e.to_string(),
            "unknown placement group 'db' (placement groups: web)"
        );
        c.apply(Cluster::create("w1", &[("placement.group", "web")], "a"))
            .unwrap();
        let e = refused(&mut c, Command::DeletePlacementGroup { name: "web".into() });
        assert_eq!(
            e.to_string(),
            "placement group 'web' is used by instances: w1"
        );
        c.apply(delete("w1")).unwrap();
        c.apply(Command::DeletePlacementGroup { name: "web".into() })
            .unwrap();
        assert!(c.state.placement_groups.is_empty());
    }

    #[test]
    fn scheduler_options_are_checked() {
        let mut c = Cluster::new(vec![]);
        let set = |cpu| Command::SetSchedulerConfig {
            config: SchedulerConfig {
                strategy: Strategy::BinPack,
                default_cpu_millicores: cpu,
                ..Default::default()
            },
        };
        assert!(matches!(
            refused(&mut c, set(5_000_000)),
            ModelError::InvalidSchedulerConfig(_)
        ));
        c.apply(set(250)).unwrap();
        assert_eq!(c.state.scheduler.strategy, Strategy::BinPack);
    }

    #[test]
    fn the_load_index_follows_every_change() {
        let mut c = Cluster::new(vec![
            member("a", "r1", 64, 64 * GIB),
            member("b", "r2", 64, 64 * GIB),
        ]);
        c.apply(group("web")).unwrap();
        let _ = c.state.load_index();
        let forget = |name: &str, node: &str| Command::ForgetInstance {
            name: name.into(),
            node: node.into(),
            placement_generation: 1,
        };
        let cmds = vec![
            Cluster::create("c1", &[("limits.cpu", "2")], "a"),
            Cluster::create("c2", &[("placement.group", "web")], "a"),
            Cluster::create("c3", &[("placement.group", "web")], "b"),
            Cluster::create("c3", &[], "b"),
            Cluster::create("c4", &[("limits.memory", "1GiB")], "b"),
            delete("c1"),
            forget("c1", "a"),
            delete("c2"),
            Command::SetSchedulerConfig {
                config: SchedulerConfig {
                    default_memory_bytes: 32 * MIB,
                    ..Default::default()
                },
            },
            Cluster::create("c5", &[], "a"),
            forget("c2", "a"),
            Command::RemoveMember { name: "b".into() },
        ];
        for cmd in cmds {
            let _ = c.state.load_index();
            let _ = c.apply(cmd.clone());
            assert_eq!(
                *c.state.load_index(),
                LoadIndex::build(&c.state),
                "after {cmd:?}"
            );
        }
        let index = c.state.load_index();
        assert_eq!(index.host("a").instances, 1);
        assert_eq!(index.host("b").instances, 2);
        assert_eq!(index.group_on("web", "b"), 1);
    }
}
