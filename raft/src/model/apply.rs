//! Deterministic application of commands. A refused command changes nothing but the revision:
//! every check happens before the first write.

use super::command::{Command, CommandResult};
use super::config::InstanceConfig;
use super::error::ModelError;
use super::names::InstanceName;
use super::state::{ClusterState, DesiredState, Instance, InstanceStatus, ObservedState};

fn validate_alias(alias: &str) -> Result<(), ModelError> {
    let bad = |r: &str| ModelError::InvalidAlias {
        alias: alias.to_string(),
        reason: r.to_string(),
    };
    if alias.is_empty() || alias.len() > 255 {
        return Err(bad("an alias has 1 to 255 characters"));
    }
    if alias
        .chars()
        .any(|c| c.is_whitespace() || c == '/' || c.is_control())
    {
        return Err(bad("white space and '/' are not allowed"));
    }
    if alias.len() >= 12 && alias.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(bad("it would read as a fingerprint"));
    }
    Ok(())
}

fn instance_mut<'a>(
    state: &'a mut ClusterState,
    name: &str,
) -> Result<&'a mut Instance, ModelError> {
    let key = InstanceName::new(name)?;
    state
        .instances
        .get_mut(&key)
        .ok_or_else(|| ModelError::InstanceNotFound(name.to_string()))
}

/// Refuses a compare-and-set write when the record moved on.
fn check_version(inst: &Instance, name: &str, expected: Option<u64>) -> Result<(), ModelError> {
    match expected {
        Some(v) if v != inst.version => Err(ModelError::VersionConflict {
            what: format!("instance {name}"),
            expected: v,
            found: inst.version,
        }),
        _ => Ok(()),
    }
}

/// Refuses a host's word about an instance unless it holds the current placement.
pub(crate) fn check_placement(
    inst: &Instance,
    name: &str,
    node: &str,
    generation: u64,
) -> Result<(), ModelError> {
    if inst.location != node || generation != inst.placement_generation {
        return Err(ModelError::StalePlacement {
            instance: name.to_string(),
            node: node.to_string(),
            reported: generation,
            current: inst.placement_generation,
        });
    }
    Ok(())
}

fn state_word(i: &Instance) -> String {
    format!("{:?}", i.status.state).to_lowercase()
}

/// Applies `cmd` as log entry `index`, and keeps the scheduler's load index (if built) in
/// step with the instances it changed.
pub fn apply(
    state: &mut ClusterState,
    index: u64,
    cmd: &Command,
) -> Result<CommandResult, ModelError> {
    let refresh = crate::scheduler::LoadRefresh::before(state, cmd);
    let result = apply_command(state, index, cmd);
    refresh.after(state);
    result
}

fn apply_command(
    state: &mut ClusterState,
    index: u64,
    cmd: &Command,
) -> Result<CommandResult, ModelError> {
    state.revision = index;
    match cmd {
        Command::Batch { commands } => Ok(CommandResult::Batch(
            commands.iter().map(|c| apply(state, index, c)).collect(),
        )),
        Command::RegisterMember { member } => {
            state.members.insert(member.name.clone(), member.clone());
            Ok(CommandResult::Done)
        }
        Command::Bootstrap { .. }
        | Command::CreateToken { .. }
        | Command::Join { .. }
        | Command::Enroll { .. }
        | Command::RevokeIdentity { .. }
        | Command::RemoveMember { .. } => super::apply_cluster::apply_cluster(state, cmd),
        Command::AddImage {
            image,
            aliases,
            node,
        } => {
            for a in aliases {
                validate_alias(a)?;
            }
            let entry = state
                .images
                .entry(image.fingerprint.clone())
                .or_insert_with(|| image.clone());
            if !node.is_empty() {
                entry.locations.insert(node.clone());
            }
            let out = entry.clone();
            for a in aliases {
                state.aliases.insert(a.clone(), image.fingerprint.clone());
            }
            Ok(CommandResult::Image(Box::new(out)))
        }
        Command::DeleteImage { fingerprint } => {
            if !state.images.contains_key(fingerprint) {
                return Err(ModelError::ImageNotFound(fingerprint.clone()));
            }
            let users: Vec<String> = state
                .instances
                .values()
                .filter(|i| &i.image_fingerprint == fingerprint)
                .map(|i| i.name.to_string())
                .collect();
            if !users.is_empty() {
                return Err(ModelError::ImageInUse {
                    image: fingerprint.clone(),
                    instances: users.join(", "),
                });
            }
            state.images.remove(fingerprint);
            state.aliases.retain(|_, fp| fp != fingerprint);
            Ok(CommandResult::Done)
        }
        Command::SetAlias { alias, fingerprint } => {
            validate_alias(alias)?;
            let img = state
                .images
                .get(fingerprint)
                .ok_or_else(|| ModelError::ImageNotFound(fingerprint.clone()))?
                .clone();
            state.aliases.insert(alias.clone(), fingerprint.clone());
            Ok(CommandResult::Image(Box::new(img)))
        }
        Command::DeleteAlias { alias } => {
            if state.aliases.remove(alias).is_none() {
                return Err(ModelError::ImageNotFound(alias.clone()));
            }
            Ok(CommandResult::Done)
        }
        Command::CreateInstance {
            name,
            image,
            config,
            start,
            location,
            now_ms,
        } => {
            let key = InstanceName::new(name)?;
            InstanceConfig::parse(config)?;
            if state.instances.contains_key(&key) {
                return Err(ModelError::InstanceExists(name.clone()));
            }
            let fingerprint = state
                .resolve_image(image)
                .ok_or_else(|| ModelError::ImageNotFound(image.clone()))?
                .fingerprint
                .clone();
            if !state.members.contains_key(location) {
                return Err(ModelError::MemberNotFound(location.clone()));
            }
            super::apply_placement::check_create(state, name, config, location, &fingerprint)?;
            let inst = Instance {
                name: key.clone(),
                image: image.clone(),
                image_fingerprint: fingerprint,
                config: config.clone(),
                desired: if *start {
                    DesiredState::Running
                } else {
                    DesiredState::Stopped
                },
                desired_revision: index,
                restart_revision: 0,
                stop_force: false,
                stop_timeout_s: 0,
                location: location.clone(),
                placement_generation: 1,
                status: InstanceStatus::pending(*now_ms),
                created_at_ms: *now_ms,
                version: index,
                origin: None,
                moving: None,
            };
            state.instances.insert(key, inst.clone());
            Ok(CommandResult::Instance(Box::new(inst)))
        }
        Command::SetDesired {
            name,
            desired,
            force,
            timeout_s,
            restart,
            expected_version,
        } => {
            let inst = instance_mut(state, name)?;
            check_version(inst, name, *expected_version)?;
            if inst.desired == DesiredState::Deleted {
                return Err(ModelError::WrongState {
                    name: name.clone(),
                    state: "being deleted".into(),
                    hint: "wait for the deletion to finish".into(),
                });
            }
            let live = matches!(
                inst.status.state,
                ObservedState::Running | ObservedState::Frozen
            ) || inst.desired != DesiredState::Stopped;
            if *desired == DesiredState::Deleted && live && !*force {
                return Err(ModelError::WrongState {
                    name: name.clone(),
                    state: state_word(inst),
                    hint: "stop it first, or delete with --force".into(),
                });
            }
            if *desired == DesiredState::Frozen && inst.desired != DesiredState::Running {
                return Err(ModelError::WrongState {
                    name: name.clone(),
                    state: state_word(inst),
                    hint: "only a running instance can be frozen".into(),
                });
            }
            inst.desired = *desired;
            inst.desired_revision = index;
            inst.stop_force = *force;
            inst.stop_timeout_s = *timeout_s;
            if *restart {
                inst.restart_revision = index;
            }
            inst.version = index;
            Ok(CommandResult::Instance(Box::new(inst.clone())))
        }
        Command::ReportStatus {
            name,
            node,
            placement_generation,
            status,
            if_version,
        } => {
            let inst = instance_mut(state, name)?;
            check_version(inst, name, *if_version)?;
            check_placement(inst, name, node, *placement_generation)?;
            inst.status = status.clone();
            inst.version = index;
            Ok(CommandResult::Instance(Box::new(inst.clone())))
        }
        Command::Relocate { .. }
        | Command::MarkUnreachable { .. }
        | Command::SetOrigin { .. }
        | Command::SetEvacuated { .. } => super::apply_move::apply_move(state, index, cmd),
        Command::BeginMove { .. }
        | Command::AdvanceMove { .. }
        | Command::CommitMove { .. }
        | Command::CloseMove { .. } => super::apply_move::apply_journal(state, index, cmd),
        Command::SetSchedulerConfig { .. }
        | Command::CreatePlacementGroup { .. }
        | Command::DeletePlacementGroup { .. } => {
            super::apply_placement::apply_placement(state, cmd)
        }
        Command::ForgetInstance {
            name,
            node,
            placement_generation,
        } => {
            let inst = instance_mut(state, name)?;
            check_placement(inst, name, node, *placement_generation)?;
            if inst.desired != DesiredState::Deleted {
                return Err(ModelError::WrongState {
                    name: name.clone(),
                    state: state_word(inst),
                    hint: "only an instance being deleted can be forgotten".into(),
                });
            }
            let key = inst.name.clone();
            state.instances.remove(&key);
            Ok(CommandResult::Done)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::state::{Image, Member};
    use std::collections::BTreeMap;

    fn base() -> ClusterState {
        let mut s = ClusterState::default();
        let member = Member {
            id: 1,
            name: "a".into(),
            address: "198.18.0.2:8443".into(),
            architecture: "x86_64".into(),
            failure_domain: "default".into(),
            joined_at_ms: 1,
            ..Default::default()
        };
        apply(&mut s, 1, &Command::RegisterMember { member }).unwrap();
        let image = Image {
            fingerprint: "ab".repeat(32),
            size: 10,
            architecture: "x86_64".into(),
            os: "busybox".into(),
            release: "1.36".into(),
            description: String::new(),
            stop_signal: "SIGUSR2".into(),
            created_at_ms: 1,
            locations: Default::default(),
        };
        apply(
            &mut s,
            2,
            &Command::AddImage {
                image,
                aliases: vec!["busybox".into()],
                node: "a".into(),
            },
        )
        .unwrap();
        s
    }

    fn create(name: &str, config: &[(&str, &str)]) -> Command {
        Command::CreateInstance {
            name: name.into(),
            image: "busybox".into(),
            config: config
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
            start: true,
            location: "a".into(),
            now_ms: 5,
        }
    }

    #[test]
    fn create_resolves_alias_and_prefix() {
        let mut s = base();
        apply(&mut s, 3, &create("c1", &[("limits.memory", "64MiB")])).unwrap();
        let i = &s.instances[&InstanceName::new("c1").unwrap()];
        assert_eq!(i.image_fingerprint, "ab".repeat(32));
        assert_eq!(i.desired, DesiredState::Running);
        assert_eq!(i.status.state, ObservedState::Pending);
        assert!(s.resolve_image(&"ab".repeat(6)).is_some());
        assert!(s.resolve_image("abab").is_none());
    }

    #[test]
    fn refused_commands_change_nothing_but_revision() {
        let mut s = base();
        apply(&mut s, 3, &create("c1", &[])).unwrap();
        for (i, cmd) in [
            create("c1", &[]),
            create("9x", &[]),
            create("c2", &[("limits.memory", "lots")]),
            create("c2", &[("nope", "1")]),
            Command::CreateInstance {
                name: "c3".into(),
                image: "nothing".into(),
                config: BTreeMap::new(),
                start: true,
                location: "a".into(),
                now_ms: 1,
            },
            Command::DeleteImage {
                fingerprint: "ab".repeat(32),
            },
        ]
        .iter()
        .enumerate()
        {
            let before = s.clone();
            assert!(apply(&mut s, 10 + i as u64, cmd).is_err(), "{cmd:?}");
            let mut after = s.clone();
            after.revision = before.revision;
            assert_eq!(before, after);
        }
    }

    #[test]
    fn delete_running_needs_force() {
        let mut s = base();
        apply(&mut s, 3, &create("c1", &[])).unwrap();
        let del = |force| Command::SetDesired {
            name: "c1".into(),
            desired: DesiredState::Deleted,
            force,
            timeout_s: 0,
            restart: false,
            expected_version: None,
        };
        let e = apply(&mut s, 4, &del(false)).unwrap_err().to_string();
        assert!(e.contains("--force"), "{e}");
        apply(&mut s, 5, &del(true)).unwrap();
        let forget = Command::ForgetInstance {
            name: "c1".into(),
            node: "a".into(),
            placement_generation: 1,
        };
        apply(&mut s, 6, &forget).unwrap();
        assert!(s.instances.is_empty());
    }

    #[test]
    fn stale_reports_and_versions_are_refused() {
        let mut s = base();
        apply(&mut s, 3, &create("c1", &[])).unwrap();
        let report = |node: &str, generation| Command::ReportStatus {
            name: "c1".into(),
            node: node.into(),
            placement_generation: generation,
            status: InstanceStatus::pending(9),
            if_version: None,
        };
        assert!(matches!(
            apply(&mut s, 4, &report("a", 0)),
            Err(ModelError::StalePlacement { .. })
        ));
        assert!(apply(&mut s, 5, &report("b", 1)).is_err());
        apply(&mut s, 6, &report("a", 1)).unwrap();
        let cas = Command::SetDesired {
            name: "c1".into(),
            desired: DesiredState::Stopped,
            force: false,
            timeout_s: 0,
            restart: false,
            expected_version: Some(3),
        };
        assert!(matches!(
            apply(&mut s, 7, &cas),
            Err(ModelError::VersionConflict { .. })
        ));
    }

    #[test]
    fn aliases_are_validated() {
        let mut s = base();
        let set = |alias: &str| Command::SetAlias {
            alias: alias.into(),
            fingerprint: "ab".repeat(32),
        };
        assert!(apply(&mut s, 3, &set("my alias")).is_err());
        assert!(apply(&mut s, 4, &set("abcdefabcdef")).is_err());
        apply(&mut s, 5, &set("tiny")).unwrap();
        assert_eq!(s.aliases_of(&"ab".repeat(32)), vec!["busybox", "tiny"]);
    }
}
