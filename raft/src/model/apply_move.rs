//! Moving instances between hosts in the record: relocation (healing, evacuation, moves),
//! marking instances unreachable, and evacuated members.

use super::command::{Command, CommandResult};
use super::error::ModelError;
use super::names::InstanceName;
use super::state::{ClusterState, DesiredState, InstanceStatus, ObservedState};

/// Applies the relocation commands.
pub(crate) fn apply_move(
    state: &mut ClusterState,
    index: u64,
    cmd: &Command,
) -> Result<CommandResult, ModelError> {
    match cmd {
        Command::Relocate {
            name,
            from,
            to,
            expected_generation,
            remember_origin,
            reason,
            now_ms,
        } => {
            let key = InstanceName::new(name)?;
            if !state.members.contains_key(to) {
                return Err(ModelError::MemberNotFound(to.clone()));
            }
            let inst = state
                .instances
                .get(&key)
                .ok_or_else(|| ModelError::InstanceNotFound(name.clone()))?;
            super::apply::check_placement(inst, name, from, *expected_generation)?;
            if inst.desired == DesiredState::Deleted {
                return Err(ModelError::WrongState {
                    name: name.clone(),
                    state: "being deleted".into(),
                    hint: "it will not be moved".into(),
                });
            }
            let (fp, config) = (inst.image_fingerprint.clone(), inst.config.clone());
            super::apply_placement::check_create(state, name, &config, to, &fp)?;
            let inst = state.instances.get_mut(&key).expect("checked above");
            inst.location = to.clone();
            inst.placement_generation += 1;
            inst.desired_revision = index;
            inst.restart_revision = 0;
            inst.status = InstanceStatus {
                message: reason.clone(),
                ..InstanceStatus::pending(*now_ms)
            };
            if *remember_origin {
                inst.origin.get_or_insert_with(|| from.clone());
            } else {
                inst.origin = None;
            }
            inst.version = index;
            Ok(CommandResult::Instance(Box::new(inst.clone())))
        }
        Command::MarkUnreachable {
            name,
            node,
            placement_generation,
            message,
            now_ms,
        } => {
            let key = InstanceName::new(name)?;
            let inst = state
                .instances
                .get_mut(&key)
                .ok_or_else(|| ModelError::InstanceNotFound(name.clone()))?;
            super::apply::check_placement(inst, name, node, *placement_generation)?;
            inst.status.state = ObservedState::Unknown;
            inst.status.message = message.clone();
            inst.status.init_pid = None;
            inst.status.updated_at_ms = *now_ms;
            inst.version = index;
            Ok(CommandResult::Instance(Box::new(inst.clone())))
        }
        Command::SetOrigin { name, origin } => {
            let key = InstanceName::new(name)?;
            let inst = state
                .instances
                .get_mut(&key)
                .ok_or_else(|| ModelError::InstanceNotFound(name.clone()))?;
            inst.origin = origin.clone();
            inst.version = index;
            Ok(CommandResult::Instance(Box::new(inst.clone())))
        }
        Command::SetEvacuated { name, evacuated } => {
            let m = state
                .members
                .get_mut(name)
                .ok_or_else(|| ModelError::MemberNotFound(name.clone()))?;
            m.evacuated = *evacuated;
            Ok(CommandResult::Done)
        }
        _ => unreachable!("apply_move only receives relocation commands"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::apply;
    use crate::model::state::{Image, Member};
    use std::collections::BTreeMap;

    fn cluster() -> ClusterState {
        let mut s = ClusterState::default();
        for (i, n) in ["a", "b"].iter().enumerate() {
            let member = Member {
                id: i as u64 + 1,
                name: n.to_string(),
                ..Default::default()
            };
            apply(&mut s, i as u64 + 1, &Command::RegisterMember { member }).unwrap();
        }
        let image = Image {
            fingerprint: "ab".repeat(32),
            size: 1,
            architecture: String::new(),
            os: String::new(),
            release: String::new(),
            description: String::new(),
            stop_signal: "SIGUSR2".into(),
            created_at_ms: 0,
            locations: Default::default(),
        };
        let add = Command::AddImage {
            image,
            aliases: vec!["busybox".into()],
            node: "a".into(),
        };
        apply(&mut s, 3, &add).unwrap();
        let create = Command::CreateInstance {
            name: "c1".into(),
            image: "busybox".into(),
            config: BTreeMap::new(),
            start: true,
            location: "a".into(),
            now_ms: 0,
        };
        apply(&mut s, 4, &create).unwrap();
        s
    }

    fn relocate(generation: u64) -> Command {
        Command::Relocate {
            name: "c1".into(),
            from: "a".into(),
            to: "b".into(),
            expected_generation: generation,
            remember_origin: true,
            reason: "host a is offline".into(),
            now_ms: 9,
        }
    }

    #[test]
    fn relocation_bumps_the_generation_and_refuses_stale_plans() {
        let mut s = cluster();
        assert!(apply(&mut s, 5, &relocate(7)).is_err(), "wrong generation");
        apply(&mut s, 6, &relocate(1)).unwrap();
        let i = &s.instances[&InstanceName::new("c1").unwrap()];
        assert_eq!((i.location.as_str(), i.placement_generation), ("b", 2));
        assert_eq!(i.desired_revision, 6);
        assert_eq!(i.origin.as_deref(), Some("a"));
        // The old host's reports are refused now.
        let stale = Command::ReportStatus {
            name: "c1".into(),
            node: "a".into(),
            placement_generation: 1,
            status: InstanceStatus::pending(10),
            if_version: None,
        };
        assert!(matches!(
            apply(&mut s, 7, &stale),
            Err(ModelError::StalePlacement { .. })
        ));
        assert!(apply(&mut s, 8, &relocate(1)).is_err(), "already moved");
    }

    #[test]
    fn unreachable_and_evacuated() {
        let mut s = cluster();
        let mark = Command::MarkUnreachable {
            name: "c1".into(),
            node: "a".into(),
            placement_generation: 1,
            message: "host a is offline".into(),
            now_ms: 1,
        };
        apply(&mut s, 5, &mark).unwrap();
        let i = &s.instances[&InstanceName::new("c1").unwrap()];
        assert_eq!(i.status.state, ObservedState::Unknown);
        apply(
            &mut s,
            6,
            &Command::SetEvacuated {
                name: "a".into(),
                evacuated: true,
            },
        )
        .unwrap();
        assert!(s.members["a"].evacuated);
    }
}
