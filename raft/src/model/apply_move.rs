//! Moving instances between hosts in the record: relocation (healing, evacuation, moves),
//! marking instances unreachable, and evacuated members.

use super::command::{Command, CommandResult};
use super::error::ModelError;
use super::names::InstanceName;
use super::state::{
    ClusterState, DesiredState, Instance, InstanceStatus, MovePhase, MoveRecord, ObservedState,
};

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
            place_anew(
                inst,
                to,
                from,
                *remember_origin,
                index,
                reason.clone(),
                *now_ms,
            );
            // A relocation by healing or evacuation voids any move in progress: its
            // coordinator's commit is refused from now on.
            inst.moving = None;
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

/// What is desired of an instance when a move ends: a frozen instance comes back running
/// (it was stopped for the move).
fn after_move(before: DesiredState) -> DesiredState {
    match before {
        DesiredState::Running | DesiredState::Frozen => DesiredState::Running,
        other => other,
    }
}

/// The instance and its move in progress, if `session` names it.
fn journaled<'a>(
    state: &'a mut ClusterState,
    name: &str,
    session: &str,
) -> Result<&'a mut Instance, ModelError> {
    let key = InstanceName::new(name)?;
    let inst = state
        .instances
        .get_mut(&key)
        .ok_or_else(|| ModelError::InstanceNotFound(name.to_string()))?;
    match &inst.moving {
        Some(m) if m.session == session => Ok(inst),
        other => Err(ModelError::NoSuchMove {
            name: name.to_string(),
            session: session.to_string(),
            now: other
                .as_ref()
                .map(|m| format!("another move is in progress: {}", m.describe()))
                .unwrap_or_else(|| "no move is in progress".into()),
        }),
    }
}

/// Applies the commands of the move journal (`Instance::moving`).
pub(crate) fn apply_journal(
    state: &mut ClusterState,
    index: u64,
    cmd: &Command,
) -> Result<CommandResult, ModelError> {
    match cmd {
        Command::BeginMove {
            name,
            from,
            to,
            mode,
            session,
            coordinator,
            expected_generation,
            remember_origin,
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
            if let Some(m) = &inst.moving {
                return Err(ModelError::MoveInProgress {
                    name: name.clone(),
                    what: m.describe(),
                });
            }
            super::apply::check_placement(inst, name, from, *expected_generation)?;
            if inst.desired == DesiredState::Deleted {
                return Err(ModelError::WrongState {
                    name: name.clone(),
                    state: "being deleted".into(),
                    hint: "it will not be moved".into(),
                });
            }
            if to == from {
                return Err(ModelError::WrongState {
                    name: name.clone(),
                    state: format!("already on {to}"),
                    hint: "name another target host".into(),
                });
            }
            let (fp, config) = (inst.image_fingerprint.clone(), inst.config.clone());
            super::apply_placement::check_create(state, name, &config, to, &fp)?;
            let inst = state.instances.get_mut(&key).expect("checked above");
            inst.moving = Some(MoveRecord {
                session: session.clone(),
                source: from.clone(),
                target: to.clone(),
                mode: mode.clone(),
                phase: MovePhase::Preparing,
                coordinator: coordinator.clone(),
                desired_before: inst.desired,
                remember_origin: *remember_origin,
                started_at_ms: *now_ms,
                updated_at_ms: *now_ms,
            });
            inst.version = index;
            Ok(CommandResult::Instance(Box::new(inst.clone())))
        }
        Command::AdvanceMove {
            name,
            session,
            now_ms,
        } => {
            let inst = journaled(state, name, session)?;
            let m = inst.moving.as_mut().expect("journaled");
            if m.phase > MovePhase::Copied {
                return Err(ModelError::WrongState {
                    name: name.clone(),
                    state: "already placed on its move's target".into(),
                    hint: "the copy is done".into(),
                });
            }
            m.phase = MovePhase::Copied;
            m.updated_at_ms = *now_ms;
            inst.version = index;
            Ok(CommandResult::Instance(Box::new(inst.clone())))
        }
        Command::CommitMove {
            name,
            session,
            expected_generation,
            now_ms,
        } => {
            let inst = journaled(state, name, session)?;
            let m = inst.moving.clone().expect("journaled");
            if m.phase == MovePhase::Committed {
                // Committed already (a retried commit): nothing to do.
                return Ok(CommandResult::Instance(Box::new(inst.clone())));
            }
            if m.phase != MovePhase::Copied {
                return Err(ModelError::WrongState {
                    name: name.clone(),
                    state: format!("{:?}", m.phase).to_lowercase(),
                    hint: "a move commits only once its target holds a complete copy".into(),
                });
            }
            super::apply::check_placement(inst, name, &m.source, *expected_generation)?;
            if inst.desired == DesiredState::Deleted {
                return Err(ModelError::WrongState {
                    name: name.clone(),
                    state: "being deleted".into(),
                    hint: "it will not be moved".into(),
                });
            }
            let (fp, config) = (inst.image_fingerprint.clone(), inst.config.clone());
            if !state.members.contains_key(&m.target) {
                return Err(ModelError::MemberNotFound(m.target.clone()));
            }
            super::apply_placement::check_create(state, name, &config, &m.target, &fp)?;
            let inst = state
                .instances
                .get_mut(&InstanceName::new(name)?)
                .expect("checked above");
            let message = format!("moved from {}", m.source);
            place_anew(
                inst,
                &m.target,
                &m.source,
                m.remember_origin,
                index,
                message,
                *now_ms,
            );
            inst.desired = after_move(m.desired_before);
            inst.stop_force = false;
            let rec = inst.moving.as_mut().expect("journaled");
            rec.phase = MovePhase::Committed;
            rec.updated_at_ms = *now_ms;
            inst.version = index;
            Ok(CommandResult::Instance(Box::new(inst.clone())))
        }
        Command::CloseMove {
            name,
            session,
            reason,
            now_ms,
        } => {
            let inst = journaled(state, name, session)?;
            let m = inst.moving.take().expect("journaled");
            if m.phase < MovePhase::Committed && inst.desired != DesiredState::Deleted {
                // Rolled back: the instance is whole on its source; what was desired
                // before the move comes back there.
                let want = after_move(m.desired_before);
                if inst.desired != want {
                    inst.desired = want;
                    inst.desired_revision = index;
                    inst.stop_force = false;
                }
                if !reason.is_empty() {
                    inst.status.message = format!("move to {} rolled back: {reason}", m.target);
                    inst.status.updated_at_ms = *now_ms;
                }
            }
            inst.version = index;
            Ok(CommandResult::Instance(Box::new(inst.clone())))
        }
        _ => unreachable!("apply_journal only receives move journal commands"),
    }
}

/// Places `inst` on `to` with a new placement generation (reports from `from` are refused
/// from now on); its host acts on it as new, and `origin` remembers `from` if asked.
fn place_anew(
    inst: &mut Instance,
    to: &str,
    from: &str,
    remember_origin: bool,
    index: u64,
    message: String,
    now_ms: i64,
) {
    inst.location = to.to_string();
    inst.placement_generation += 1;
    inst.desired_revision = index;
    inst.restart_revision = 0;
    inst.status = InstanceStatus {
        message,
        ..InstanceStatus::pending(now_ms)
    };
    if remember_origin {
        inst.origin.get_or_insert_with(|| from.to_string());
    } else {
        inst.origin = None;
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

    fn begin(session: &str, generation: u64) -> Command {
        Command::BeginMove {
            name: "c1".into(),
            from: "a".into(),
            to: "b".into(),
            mode: "cold".into(),
            session: session.into(),
            coordinator: "a".into(),
            expected_generation: generation,
            remember_origin: false,
            now_ms: 1,
        }
    }

    fn advance(session: &str) -> Command {
        Command::AdvanceMove {
            name: "c1".into(),
            session: session.into(),
            now_ms: 2,
        }
    }

    fn commit(session: &str, generation: u64) -> Command {
        Command::CommitMove {
            name: "c1".into(),
            session: session.into(),
            expected_generation: generation,
            now_ms: 3,
        }
    }

    fn close(session: &str) -> Command {
        Command::CloseMove {
            name: "c1".into(),
            session: session.into(),
            reason: "its coordinator a restarted".into(),
            now_ms: 4,
        }
    }

    fn stop() -> Command {
        Command::SetDesired {
            name: "c1".into(),
            desired: DesiredState::Stopped,
            force: false,
            timeout_s: 0,
            restart: false,
            expected_version: None,
        }
    }

    fn c1(s: &ClusterState) -> &crate::model::Instance {
        &s.instances[&InstanceName::new("c1").unwrap()]
    }

    #[test]
    fn a_move_is_journaled_once_and_its_steps_name_its_session() {
        let mut s = cluster();
        assert!(
            apply(&mut s, 5, &begin("s1", 7)).is_err(),
            "wrong generation"
        );
        assert!(c1(&s).moving.is_none());
        apply(&mut s, 6, &begin("s1", 1)).unwrap();
        let m = c1(&s).moving.clone().unwrap();
        assert_eq!(
            (m.phase, m.source.as_str(), m.target.as_str()),
            (MovePhase::Preparing, "a", "b")
        );
        assert_eq!(m.desired_before, DesiredState::Running);
        // A second move is refused, naming the first.
        let again = apply(&mut s, 7, &begin("s2", 1)).unwrap_err();
        assert!(
            matches!(again, ModelError::MoveInProgress { .. }),
            "{again}"
        );
        assert!(again.to_string().contains("moving from a to b"), "{again}");
        // Steps of another session change nothing.
        let before = c1(&s).clone();
        for cmd in [advance("s2"), commit("s2", 1), close("s2")] {
            assert!(matches!(
                apply(&mut s, 8, &cmd),
                Err(ModelError::NoSuchMove { .. })
            ));
        }
        assert_eq!(c1(&s), &before);
        // No commit before the target holds a complete copy.
        assert!(apply(&mut s, 9, &commit("s1", 1)).is_err());
        assert_eq!(c1(&s).location, "a");
    }

    #[test]
    fn the_commit_places_it_on_the_target_and_restores_what_was_desired() {
        let mut s = cluster();
        apply(&mut s, 5, &begin("s1", 1)).unwrap();
        apply(&mut s, 6, &stop()).unwrap();
        apply(&mut s, 7, &advance("s1")).unwrap();
        assert_eq!(c1(&s).moving.as_ref().unwrap().phase, MovePhase::Copied);
        assert!(
            apply(&mut s, 8, &commit("s1", 2)).is_err(),
            "stale generation"
        );
        apply(&mut s, 9, &commit("s1", 1)).unwrap();
        let i = c1(&s);
        assert_eq!((i.location.as_str(), i.placement_generation), ("b", 2));
        assert_eq!((i.desired, i.desired_revision), (DesiredState::Running, 9));
        assert_eq!(i.moving.as_ref().unwrap().phase, MovePhase::Committed);
        // A retried commit is a no-op; the old host's word is refused.
        apply(&mut s, 10, &commit("s1", 1)).unwrap();
        assert_eq!(c1(&s).placement_generation, 2);
        let stale = Command::ReportStatus {
            name: "c1".into(),
            node: "a".into(),
            placement_generation: 1,
            status: InstanceStatus::pending(10),
            if_version: None,
        };
        assert!(apply(&mut s, 11, &stale).is_err());
        // Closing a committed move finishes it: it stays on b, as desired.
        apply(&mut s, 12, &close("s1")).unwrap();
        let i = c1(&s);
        assert!(i.moving.is_none());
        assert_eq!(
            (i.location.as_str(), i.desired),
            ("b", DesiredState::Running)
        );
        assert_eq!(i.desired_revision, 9, "finishing asks nothing new of b");
        assert!(apply(&mut s, 13, &close("s1")).is_err(), "closed once");
    }

    #[test]
    fn closing_before_the_commit_rolls_back_on_the_source() {
        for copied in [false, true] {
            let mut s = cluster();
            apply(&mut s, 5, &begin("s1", 1)).unwrap();
            apply(&mut s, 6, &stop()).unwrap();
            if copied {
                apply(&mut s, 7, &advance("s1")).unwrap();
            }
            apply(&mut s, 8, &close("s1")).unwrap();
            let i = c1(&s);
            assert!(i.moving.is_none());
            assert_eq!((i.location.as_str(), i.placement_generation), ("a", 1));
            assert_eq!((i.desired, i.desired_revision), (DesiredState::Running, 8));
            assert!(i.status.message.contains("rolled back"), "{:?}", i.status);
            // The commit that comes too late is refused; a new move can begin.
            assert!(matches!(
                apply(&mut s, 9, &commit("s1", 1)),
                Err(ModelError::NoSuchMove { .. })
            ));
            apply(&mut s, 10, &begin("s2", 1)).unwrap();
        }
        // A stopped instance stays stopped when its move is rolled back.
        let mut s = cluster();
        apply(&mut s, 5, &stop()).unwrap();
        apply(&mut s, 6, &begin("s1", 1)).unwrap();
        apply(&mut s, 7, &close("s1")).unwrap();
        assert_eq!(
            (c1(&s).desired, c1(&s).desired_revision),
            (DesiredState::Stopped, 5)
        );
    }

    #[test]
    fn healing_voids_a_move_and_deletion_blocks_its_commit() {
        let mut s = cluster();
        apply(&mut s, 5, &begin("s1", 1)).unwrap();
        apply(&mut s, 6, &advance("s1")).unwrap();
        apply(&mut s, 7, &relocate(1)).unwrap();
        assert!(c1(&s).moving.is_none());
        assert!(apply(&mut s, 8, &commit("s1", 1)).is_err());
        // A move to a host that is not a member is refused at once.
        let mut s = cluster();
        let mut cmd = begin("s1", 1);
        if let Command::BeginMove { to, .. } = &mut cmd {
            *to = "zz".into();
        }
        assert!(matches!(
            apply(&mut s, 5, &cmd),
            Err(ModelError::MemberNotFound(_))
        ));
        apply(&mut s, 6, &begin("s1", 1)).unwrap();
        apply(&mut s, 7, &advance("s1")).unwrap();
        let delete = Command::SetDesired {
            name: "c1".into(),
            desired: DesiredState::Deleted,
            force: true,
            timeout_s: 0,
            restart: false,
            expected_version: None,
        };
        apply(&mut s, 8, &delete).unwrap();
        assert!(apply(&mut s, 9, &commit("s1", 1)).is_err());
        apply(&mut s, 10, &close("s1")).unwrap();
        assert_eq!(
            (c1(&s).desired, c1(&s).location.as_str()),
            (DesiredState::Deleted, "a")
        );
    }

    #[test]
    fn journal_commands_touch_their_instance_record() {
        let s = cluster();
        for cmd in [begin("s", 1), advance("s"), commit("s", 1), close("s")] {
            assert_eq!(
                crate::model::touched(&s, &cmd),
                vec![crate::model::StateKey::Instance("c1".into())]
            );
        }
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
