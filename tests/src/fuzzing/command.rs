//! Raft commands as they arrive from a peer (`Submit` carries them as JSON) and as the log
//! replays them: decoded, then applied to a small cluster state.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

use shoal_raft::{apply, Capacity, ClusterState, Command, Image, Member};

/// Log index the fuzzed commands are applied at (after the seed's).
const INDEX: u64 = 100;

/// A cluster of two members (`a`, `b`), the image `busybox` and the instance `c1` on `a`,
/// built through `apply` as the log would build it.
pub fn seeded_state() -> ClusterState {
    static STATE: OnceLock<ClusterState> = OnceLock::new();
    STATE
        .get_or_init(|| {
            let mut state = ClusterState::default();
            for (i, cmd) in seed_commands().iter().enumerate() {
                apply(&mut state, i as u64 + 1, cmd)
                    .unwrap_or_else(|e| panic!("seed command {cmd:?}: {e}"));
            }
            state
        })
        .clone()
}

/// The commands [`seeded_state`] applies, also the seeds of the `raft_command` corpus.
pub fn seed_commands() -> Vec<Command> {
    let member = |name: &str| Member {
        id: 0,
        name: name.into(),
        address: format!("{name}:8443"),
        architecture: "x86_64".into(),
        failure_domain: "default".into(),
        joined_at_ms: 1,
        capacity: Capacity {
            cpu_millicores: 4000,
            memory_bytes: 8 << 30,
            processes: 10_000,
        },
        labels: BTreeMap::from([("zone".into(), "eu".into())]),
        groups: BTreeSet::new(),
        evacuated: false,
    };
    let fp = "ab".repeat(32);
    vec![
        Command::RegisterMember {
            member: member("a"),
        },
        Command::RegisterMember {
            member: member("b"),
        },
        Command::AddImage {
            image: Image {
                fingerprint: fp.clone(),
                size: 1,
                architecture: "x86_64".into(),
                os: "busybox".into(),
                release: "1".into(),
                description: String::new(),
                stop_signal: "SIGUSR2".into(),
                created_at_ms: 1,
                locations: BTreeSet::new(),
            },
            aliases: vec!["busybox".into()],
            node: "a".into(),
        },
        Command::CreateInstance {
            name: "c1".into(),
            image: "busybox".into(),
            config: BTreeMap::from([("limits.memory".into(), "64MiB".into())]),
            start: true,
            location: "a".into(),
            now_ms: 10,
        },
    ]
}

/// Applies `cmd` to `state` and checks that the model keeps its promises: `apply` is
/// deterministic, and a refused command changes nothing but the revision.
pub(crate) fn apply_checked(state: &mut ClusterState, index: u64, cmd: &Command) {
    // A refused command changes nothing but the revision (the log index it was at).
    let mut before = state.clone();
    before.revision = index;
    let mut twin = state.clone();
    let result = apply(state, index, cmd);
    let again = apply(&mut twin, index, cmd);
    assert_eq!(result, again, "apply is not deterministic for {cmd:?}");
    assert!(*state == twin, "apply is not deterministic for {cmd:?}");
    if let Err(e) = &result {
        assert!(!e.to_string().is_empty(), "an empty error for {cmd:?}");
        assert!(
            *state == before,
            "the refused command {cmd:?} ({e}) changed the state: {:?}",
            changed(&before, state)
        );
    }
}

/// Target `raft_command`: each line of `data` is a command as JSON, applied in turn to
/// [`seeded_state`].
pub fn raft_command(data: &[u8]) {
    let mut state = seeded_state();
    for (i, line) in data.split(|b| *b == b'\n').enumerate().take(32) {
        let Ok(cmd) = serde_json::from_slice::<Command>(line) else {
            continue;
        };
        let json = serde_json::to_vec(&cmd).expect("commands serialize");
        let back: Command = serde_json::from_slice(&json).expect("a command's JSON decodes");
        assert_eq!(back, cmd, "JSON round trip");
        apply_checked(&mut state, INDEX + i as u64, &cmd);
    }
}

/// The parts of the state that differ between `a` and `b`.
fn changed(a: &ClusterState, b: &ClusterState) -> Vec<&'static str> {
    let mut out = Vec::new();
    let mut field = |name, same: bool| {
        if !same {
            out.push(name);
        }
    };
    field("revision", a.revision == b.revision);
    field("members", a.members == b.members);
    field("images", a.images == b.images);
    field("aliases", a.aliases == b.aliases);
    field("instances", a.instances == b.instances);
    field("ca", a.ca == b.ca);
    field("tokens", a.tokens == b.tokens);
    field("identities", a.identities == b.identities);
    field("scheduler", a.scheduler == b.scheduler);
    field("placement_groups", a.placement_groups == b.placement_groups);
    field("load", a.load == b.load);
    out
}
