//! Which entries of the cluster state a command may change.
//!
//! A durable store keeps the state as one record per member, image, alias and instance, and
//! writes after each command only the records the command touched: `touched` names them. It is
//! computed from the state *before* the command is applied (deleting an image also removes
//! the aliases that pointed at it, which only the old state knows). The store then writes the
//! current value of each key, or deletes it when the entry is gone. The revision is not a key:
//! every command changes it.

use super::command::Command;
use super::state::ClusterState;

/// One record of the cluster state.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum StateKey {
    /// A member, by name.
    Member(String),
    /// An image, by fingerprint.
    Image(String),
    /// An alias, by its name.
    Alias(String),
    /// An instance, by name (as the command spells it; it may be invalid, in which case
    /// there is no such instance).
    Instance(String),
    /// The cluster CA.
    Ca,
    /// A join or enrolment token, by the name it was issued for.
    Token(String),
    /// A client identity, by name.
    Identity(String),
    /// The scheduler options.
    Scheduler,
    /// All placement groups (they are few: one record).
    PlacementGroups,
}

/// The token a join or enrolment would consume, if any.
fn token_by_hash(state: &ClusterState, secret_hash: &str) -> Vec<StateKey> {
    state
        .tokens
        .values()
        .filter(|t| t.secret_hash == secret_hash)
        .map(|t| StateKey::Token(t.name.clone()))
        .collect()
}

/// The records `cmd` may change when applied to `state`. Call it before `apply`. A superset
/// is correct (an untouched record is rewritten with its own value); a missing key is not.
pub fn touched(state: &ClusterState, cmd: &Command) -> Vec<StateKey> {
    match cmd {
        Command::RegisterMember { member } => vec![StateKey::Member(member.name.clone())],
        Command::RemoveMember { name } => vec![StateKey::Member(name.clone())],
        Command::Bootstrap { member, .. } => {
            vec![StateKey::Ca, StateKey::Member(member.name.clone())]
        }
        Command::CreateToken { token } => vec![StateKey::Token(token.name.clone())],
        Command::Join {
            secret_hash,
            member,
            ..
        } => {
            let mut keys = token_by_hash(state, secret_hash);
            keys.push(StateKey::Member(member.name.clone()));
            keys
        }
        Command::Enroll {
            secret_hash,
            identity,
            ..
        } => {
            let mut keys = token_by_hash(state, secret_hash);
            keys.push(StateKey::Identity(identity.name.clone()));
            keys
        }
        Command::RevokeIdentity { name, .. } => {
            vec![
                StateKey::Identity(name.clone()),
                StateKey::Token(name.clone()),
            ]
        }
        Command::AddImage { image, aliases, .. } => {
            let mut keys = vec![StateKey::Image(image.fingerprint.clone())];
            keys.extend(aliases.iter().cloned().map(StateKey::Alias));
            keys
        }
        Command::DeleteImage { fingerprint } => {
            let mut keys = vec![StateKey::Image(fingerprint.clone())];
            keys.extend(
                state
                    .aliases_of(fingerprint)
                    .into_iter()
                    .map(StateKey::Alias),
            );
            keys
        }
        Command::SetAlias { alias, .. } | Command::DeleteAlias { alias } => {
            vec![StateKey::Alias(alias.clone())]
        }
        Command::CreateInstance { name, .. }
        | Command::SetDesired { name, .. }
        | Command::ReportStatus { name, .. }
        | Command::ForgetInstance { name, .. }
        | Command::Relocate { name, .. }
        | Command::MarkUnreachable { name, .. }
        | Command::SetOrigin { name, .. }
        | Command::BeginMove { name, .. }
        | Command::AdvanceMove { name, .. }
        | Command::CommitMove { name, .. }
        | Command::CloseMove { name, .. } => vec![StateKey::Instance(name.clone())],
        Command::SetEvacuated { name, .. } => vec![StateKey::Member(name.clone())],
        Command::SetSchedulerConfig { .. } => vec![StateKey::Scheduler],
        Command::CreatePlacementGroup { .. } | Command::DeletePlacementGroup { .. } => {
            vec![StateKey::PlacementGroups]
        }
        // Each command's keys, all from the state before the batch. Still a superset: where
        // a command's keys depend on the state (the aliases of a deleted image, the token a
        // join consumes), a record an earlier command of the batch changed is among that
        // command's own keys.
        Command::Batch { commands } => commands.iter().flat_map(|c| touched(state, c)).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{
        apply, CaRecord, DesiredState, GroupPolicy, Identity, Image, InstanceStatus, Member,
        ObservedState, PlacementGroup, SchedulerConfig, Strategy, Token, TokenKind,
    };
    use std::collections::{BTreeMap, BTreeSet};

    /// Every record that differs between two states.
    fn changed(before: &ClusterState, after: &ClusterState) -> BTreeSet<StateKey> {
        fn diff<K: Ord + Clone, V: PartialEq>(a: &BTreeMap<K, V>, b: &BTreeMap<K, V>) -> Vec<K> {
            a.keys()
                .chain(b.keys())
                .filter(|k| a.get(*k) != b.get(*k))
                .cloned()
                .collect()
        }
        let mut out = BTreeSet::new();
        out.extend(
            diff(&before.members, &after.members)
                .into_iter()
                .map(StateKey::Member),
        );
        out.extend(
            diff(&before.images, &after.images)
                .into_iter()
                .map(StateKey::Image),
        );
        out.extend(
            diff(&before.aliases, &after.aliases)
                .into_iter()
                .map(StateKey::Alias),
        );
        out.extend(
            diff(&before.instances, &after.instances)
                .into_iter()
                .map(|n| StateKey::Instance(n.as_str().to_string())),
        );
        out.extend(
            diff(&before.tokens, &after.tokens)
                .into_iter()
                .map(StateKey::Token),
        );
        out.extend(
            diff(&before.identities, &after.identities)
                .into_iter()
                .map(StateKey::Identity),
        );
        if before.ca != after.ca {
            out.insert(StateKey::Ca);
        }
        if before.scheduler != after.scheduler {
            out.insert(StateKey::Scheduler);
        }
        if before.placement_groups != after.placement_groups {
            out.insert(StateKey::PlacementGroups);
        }
        out
    }

    fn token(name: &str, hash: &str, kind: TokenKind) -> Command {
        Command::CreateToken {
            token: Token {
                name: name.into(),
                kind,
                secret_hash: hash.into(),
                created_at_ms: 0,
                expires_at_ms: 100,
            },
        }
    }

    fn identity(name: &str) -> Identity {
        Identity {
            name: name.into(),
            role: String::new(),
            fingerprint: "ff".into(),
            created_at_ms: 1,
            revoked_at_ms: None,
            revoked: Default::default(),
        }
    }

    fn image(fp: &str) -> Image {
        Image {
            fingerprint: fp.into(),
            size: 1,
            architecture: "x86_64".into(),
            os: "busybox".into(),
            release: "1".into(),
            description: String::new(),
            stop_signal: "SIGUSR2".into(),
            created_at_ms: 1,
            locations: Default::default(),
        }
    }

    fn commands() -> Vec<Command> {
        let fp1 = "ab".repeat(32);
        let fp2 = "cd".repeat(32);
        let m = |name: &str| Member {
            id: 0,
            name: name.into(),
            address: format!("{name}:1"),
            architecture: "x86_64".into(),
            failure_domain: "default".into(),
            joined_at_ms: 1,
            ..Default::default()
        };
        let member = |name: &str| Command::RegisterMember { member: m(name) };
        let join = |hash: &str, name: &str| Command::Join {
            secret_hash: hash.into(),
            now_ms: 5,
            member: m(name),
        };
        let enroll = |hash: &str, name: &str| Command::Enroll {
            secret_hash: hash.into(),
            now_ms: 5,
            identity: identity(name),
        };
        let ca = CaRecord {
            cert_pem: "c".into(),
            key_pem: "k".into(),
        };
        let create = |name: &str, image: &str| Command::CreateInstance {
            name: name.into(),
            image: image.into(),
            config: BTreeMap::new(),
            start: false,
            location: "a".into(),
            now_ms: 2,
        };
        let desired = |name: &str, desired| Command::SetDesired {
            name: name.into(),
            desired,
            force: true,
            timeout_s: 3,
            restart: false,
            expected_version: None,
        };
        vec![
            Command::Bootstrap {
                ca: ca.clone(),
                member: m("a"),
            },
            Command::Bootstrap { ca, member: m("z") },
            member("b"),
            member("a"),
            token("c", "h1", TokenKind::Member),
            token("d", "h2", TokenKind::Member),
            token(
                "alice",
                "h3",
                TokenKind::Client {
                    role: "admin".into(),
                },
            ),
            join("h1", "x"),
            join("h3", "alice"),
            join("h1", "c"),
            join("h1", "c"),
            enroll("h2", "d"),
            enroll("h3", "alice"),
            enroll("h3", "alice"),
            token(
                "bob",
                "h4",
                TokenKind::Client {
                    role: "viewer".into(),
                },
            ),
            Command::RevokeIdentity {
                name: "alice".into(),
                now_ms: 6,
            },
            Command::RevokeIdentity {
                name: "bob".into(),
                now_ms: 6,
            },
            Command::RevokeIdentity {
                name: "nobody".into(),
                now_ms: 6,
            },
            Command::RemoveMember { name: "d".into() },
            Command::RemoveMember { name: "c".into() },
            Command::RemoveMember { name: "c".into() },
            Command::AddImage {
                image: image(&fp1),
                aliases: vec!["one".into(), "uno".into()],
                node: "a".into(),
            },
            Command::AddImage {
                image: image(&fp2),
                aliases: vec!["two".into()],
                node: "b".into(),
            },
            Command::AddImage {
                image: image(&fp1),
                aliases: vec!["two".into(), "bad alias".into()],
                node: "b".into(),
            },
            Command::AddImage {
                image: image(&fp1),
                aliases: vec!["two".into()],
                node: "b".into(),
            },
            Command::SetAlias {
                alias: "deux".into(),
                fingerprint: fp2.clone(),
            },
            Command::DeleteAlias {
                alias: "uno".into(),
            },
            Command::DeleteAlias {
                alias: "uno".into(),
            },
            create("c1", "one"),
            create("c1", "one"),
            create("9bad", "one"),
            create("c2", "deux"),
            desired("c1", DesiredState::Running),
            Command::ReportStatus {
                name: "c1".into(),
                node: "a".into(),
                placement_generation: 1,
                status: InstanceStatus {
                    state: ObservedState::Running,
                    observed_revision: 15,
                    message: String::new(),
                    init_pid: Some(7),
                    usage: None,
                    updated_at_ms: 9,
                },
                if_version: None,
            },
            Command::DeleteImage {
                fingerprint: fp1.clone(),
            },
            desired("c1", DesiredState::Deleted),
            Command::ForgetInstance {
                name: "c1".into(),
                node: "a".into(),
                placement_generation: 1,
            },
            Command::DeleteImage {
                fingerprint: fp1.clone(),
            },
            Command::DeleteImage { fingerprint: fp1 },
            Command::SetSchedulerConfig {
                config: SchedulerConfig {
                    strategy: Strategy::BinPack,
                    ..Default::default()
                },
            },
            Command::CreatePlacementGroup {
                group: PlacementGroup {
                    name: "web".into(),
                    policy: GroupPolicy::Spread,
                    strict: true,
                },
            },
            Command::DeletePlacementGroup { name: "web".into() },
        ]
    }

    #[test]
    fn touched_covers_every_change() {
        let mut state = ClusterState::default();
        for (i, cmd) in commands().iter().enumerate() {
            let before = state.clone();
            let keys: BTreeSet<StateKey> = touched(&before, cmd).into_iter().collect();
            let _ = apply(&mut state, i as u64 + 1, cmd);
            let missing: Vec<_> = changed(&before, &state)
                .difference(&keys)
                .cloned()
                .collect();
            assert!(missing.is_empty(), "{cmd:?} changed {missing:?}");
        }
        assert!(state.images.keys().eq([&"cd".repeat(32)]) && state.aliases.keys().eq(["deux"]));
        assert!(state.ca.is_some() && state.identities.contains_key("alice"));
        assert!(state.tokens.keys().eq(["d"]) && state.members.keys().eq(["a", "b"]));
    }

    /// The same commands in batches of every size from 1 to 7: the same final state and
    /// the same results as one by one, and the batch's keys cover every change.
    #[test]
    fn batches_apply_like_their_commands_and_touch_a_superset() {
        let cmds = commands();
        let mut single = ClusterState::default();
        let mut single_results = Vec::new();
        for (i, cmd) in cmds.iter().enumerate() {
            single_results.push(apply(&mut single, i as u64 + 1, cmd));
        }
        for size in 1..=7 {
            let mut state = ClusterState::default();
            let mut results = Vec::new();
            for (i, chunk) in cmds.chunks(size).enumerate() {
                let batch = Command::Batch {
                    commands: chunk.to_vec(),
                };
                let before = state.clone();
                let keys: BTreeSet<StateKey> = touched(&before, &batch).into_iter().collect();
                match apply(&mut state, i as u64 + 1, &batch) {
                    Ok(crate::model::CommandResult::Batch(r)) => results.extend(r),
                    other => panic!("a batch answers with a batch: {other:?}"),
                }
                let missing: Vec<_> = changed(&before, &state)
                    .difference(&keys)
                    .cloned()
                    .collect();
                assert!(missing.is_empty(), "batch of {size} changed {missing:?}");
            }
            // Versions and revisions follow the entry index, which differs; the rest
            // must match.
            let ok = |r: &Vec<Result<crate::model::CommandResult, crate::model::ModelError>>| {
                r.iter().map(|x| x.is_ok()).collect::<Vec<_>>()
            };
            assert_eq!(ok(&results), ok(&single_results), "batch size {size}");
            assert_eq!(
                state.instances.keys().collect::<Vec<_>>(),
                single.instances.keys().collect::<Vec<_>>()
            );
            assert_eq!(state.aliases, single.aliases);
            assert!(state.images.keys().eq(single.images.keys()));
            assert!(state.members.keys().eq(single.members.keys()));
            assert!(state.tokens.keys().eq(single.tokens.keys()));
        }
    }

    #[test]
    fn delete_image_touches_its_aliases() {
        let mut state = ClusterState::default();
        let fp = "ab".repeat(32);
        apply(
            &mut state,
            1,
            &Command::AddImage {
                image: image(&fp),
                aliases: vec!["x".into(), "y".into()],
                node: String::new(),
            },
        )
        .unwrap();
        let keys = touched(
            &state,
            &Command::DeleteImage {
                fingerprint: fp.clone(),
            },
        );
        assert_eq!(
            keys,
            vec![
                StateKey::Image(fp),
                StateKey::Alias("x".into()),
                StateKey::Alias("y".into())
            ]
        );
    }
}
