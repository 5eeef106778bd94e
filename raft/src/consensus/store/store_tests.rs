//! Durability tests of the sled store: what is applied, logged or installed survives a
//! reopen, and a damaged database is refused at open with the tree and key named.

use openraft::storage::{RaftLogStorage, RaftLogStorageExt, RaftStateMachine};
use openraft::{
    CommittedLeaderId, Entry, EntryPayload, LogId, Membership, RaftLogReader, RaftSnapshotBuilder,
    StoredMembership, Vote,
};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use super::{open, LogStore, StateMachineStore};
use crate::consensus::types::{CommandResponse, MemberNode, NodeId, TypeConfig};
use crate::model::{
    ClusterState, Command, DesiredState, Image, InstanceName, InstanceStatus, Member,
    ObservedState, Token, TokenKind,
};

fn log_id(index: u64) -> LogId<NodeId> {
    LogId::new(CommittedLeaderId::new(1, 1), index)
}

fn normal(index: u64, cmd: Command) -> Entry<TypeConfig> {
    Entry {
        log_id: log_id(index),
        payload: EntryPayload::Normal(cmd),
    }
}

fn blank(index: u64) -> Entry<TypeConfig> {
    Entry {
        log_id: log_id(index),
        payload: EntryPayload::Blank,
    }
}

fn membership(index: u64) -> Entry<TypeConfig> {
    let nodes = BTreeMap::from([(
        1,
        MemberNode {
            name: "a".into(),
            addr: "127.0.0.1:1".into(),
        },
    )]);
    Entry {
        log_id: log_id(index),
        payload: EntryPayload::Membership(Membership::new(vec![BTreeSet::from([1])], nodes)),
    }
}

fn member(name: &str) -> Member {
    Member {
        id: 0,
        name: name.into(),
        address: format!("{name}:8443"),
        architecture: "x86_64".into(),
        failure_domain: "default".into(),
        joined_at_ms: 1,
        ..Default::default()
    }
}

const FP: &str = "abababababababababababababababababababababababababababababababab";

fn image() -> Image {
    Image {
        fingerprint: FP.into(),
        size: 10,
        architecture: "x86_64".into(),
        os: "busybox".into(),
        release: "1.36".into(),
        description: String::new(),
        stop_signal: "SIGUSR2".into(),
        created_at_ms: 1,
        locations: Default::default(),
    }
}

fn create(name: &str) -> Command {
    Command::CreateInstance {
        name: name.into(),
        image: "busybox".into(),
        config: BTreeMap::new(),
        start: true,
        location: "a".into(),
        now_ms: 5,
    }
}

/// Entries 1..=6: membership, blank, a member, an image with two aliases, two instances.
fn cluster() -> Vec<Entry<TypeConfig>> {
    vec![
        membership(1),
        blank(2),
        normal(
            3,
            Command::RegisterMember {
                member: member("a"),
            },
        ),
        normal(
            4,
            Command::AddImage {
                image: image(),
                aliases: vec!["busybox".into(), "bb".into()],
                node: "a".into(),
            },
        ),
        normal(5, create("c1")),
        normal(6, create("c2")),
    ]
}

async fn apply(
    sm: &mut StateMachineStore,
    entries: Vec<Entry<TypeConfig>>,
) -> Vec<CommandResponse> {
    sm.apply(entries).await.expect("apply")
}

fn snapshot_of(sm: &StateMachineStore) -> ClusterState {
    sm.state().read(Clone::clone)
}

async fn reopen(
    dir: &Path,
    stores: (LogStore, StateMachineStore),
) -> (LogStore, StateMachineStore) {
    drop(stores);
    open(dir).await.expect("the store reopens")
}

#[tokio::test]
async fn state_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (log, mut sm) = open(dir.path()).await.unwrap();
    let responses = apply(&mut sm, cluster()).await;
    assert!(responses.iter().all(|r| r.result.is_ok()), "{responses:?}");
    assert_eq!(responses[4].revision, 5);
    let before = snapshot_of(&sm);
    let (_, mem_before) = sm.applied_state().await.unwrap();

    let (_log, mut sm) = reopen(dir.path(), (log, sm)).await;
    let after = snapshot_of(&sm);
    assert_eq!(before, after);
    assert_eq!(after.revision, 6);
    assert!(after.members.contains_key("a"));
    assert!(after
        .instances
        .contains_key(&InstanceName::new("c2").unwrap()));
    assert_eq!(after.aliases_of(FP), vec!["bb", "busybox"]);
    let (last, mem) = sm.applied_state().await.unwrap();
    assert_eq!(last, Some(log_id(6)));
    assert_eq!(mem, mem_before);
    assert_eq!(mem.log_id(), &Some(log_id(1)));
}

fn membership_of(index: u64, ids: &[NodeId]) -> Entry<TypeConfig> {
    let nodes: BTreeMap<NodeId, MemberNode> = ids
        .iter()
        .map(|id| {
            let node = MemberNode {
                name: format!("m{id}"),
                addr: format!("127.0.0.{id}:8443"),
            };
            (*id, node)
        })
        .collect();
    let voters = BTreeSet::from([ids[0]]);
    Entry {
        log_id: log_id(index),
        payload: EntryPayload::Membership(Membership::new(vec![voters], nodes)),
    }
}

fn join_token(name: &str, hash: &str) -> Command {
    Command::CreateToken {
        token: Token {
            name: name.into(),
            kind: TokenKind::Member,
            secret_hash: hash.into(),
            created_at_ms: 0,
            expires_at_ms: i64::MAX,
        },
    }
}

fn join(name: &str, hash: &str) -> Command {
    Command::Join {
        secret_hash: hash.into(),
        now_ms: 1,
        member: member(name),
    }
}

/// A member removed and joining again (a wiped host under its old name) never gets a node
/// id that is still in the Raft membership, even inside a batch; once the leader took the
/// old id out of the membership, it is free again.
#[tokio::test]
async fn a_join_never_takes_a_node_id_still_in_the_raft_membership() {
    let dir = tempfile::tempdir().unwrap();
    let (_log, mut sm) = open(dir.path()).await.unwrap();
    let mut entries = vec![normal(
        1,
        Command::Bootstrap {
            ca: crate::model::CaRecord {
                cert_pem: "c".into(),
                key_pem: "k".into(),
            },
            member: member("a"),
        },
    )];
    for (i, n) in ["b", "c", "d"].iter().enumerate() {
        let i = i as u64;
        entries.push(normal(2 + 2 * i, join_token(n, n)));
        entries.push(normal(3 + 2 * i, join(n, n)));
    }
    entries.push(membership_of(8, &[1, 2, 3, 4]));
    apply(&mut sm, entries).await;
    let ids = |sm: &StateMachineStore| -> BTreeMap<String, u64> {
        snapshot_of(sm)
            .members
            .values()
            .map(|m| (m.name.clone(), m.id))
            .collect()
    };
    assert_eq!(ids(&sm)["d"], 4);

    // d is removed and joins again before its id 4 left the Raft membership.
    let r = apply(
        &mut sm,
        vec![
            normal(9, Command::RemoveMember { name: "d".into() }),
            normal(10, join_token("d", "d2")),
            normal(
                11,
                Command::Batch {
                    commands: vec![join("d", "d2")],
                },
            ),
        ],
    )
    .await;
    assert!(r.iter().all(|r| r.result.is_ok()), "{r:?}");
    assert_eq!(ids(&sm)["d"], 5, "id 4 is still a Raft member");

    // Again, after the leader took 4 out (and added 5): 4 is free again.
    let r = apply(
        &mut sm,
        vec![
            membership_of(12, &[1, 2, 3, 5]),
            normal(13, Command::RemoveMember { name: "d".into() }),
            normal(14, join_token("d", "d3")),
            normal(15, join("d", "d3")),
        ],
    )
    .await;
    assert!(r.iter().all(|r| r.result.is_ok()), "{r:?}");
    assert_eq!(ids(&sm)["d"], 4);
}

#[tokio::test]
async fn refused_commands_still_advance_last_applied() {
    let dir = tempfile::tempdir().unwrap();
    let (log, mut sm) = open(dir.path()).await.unwrap();
    apply(&mut sm, cluster()).await;
    let before = snapshot_of(&sm);
    let responses = apply(
        &mut sm,
        vec![normal(7, create("c1")), normal(8, create("9bad"))],
    )
    .await;
    assert_eq!(responses.len(), 2);
    assert!(responses.iter().all(|r| r.result.is_err()), "{responses:?}");
    assert_eq!(responses[1].revision, 8);
    assert_eq!(sm.applied_state().await.unwrap().0, Some(log_id(8)));

    let (_log, mut sm) = reopen(dir.path(), (log, sm)).await;
    assert_eq!(sm.applied_state().await.unwrap().0, Some(log_id(8)));
    let mut after = snapshot_of(&sm);
    assert_eq!(after.revision, 8);
    after.revision = before.revision;
    assert_eq!(before, after);
}

/// Deletions and cross-record changes (an image deleted with its aliases, a consumed
/// token) reach the disk too: the reopened state equals the one in memory.
#[tokio::test]
async fn every_kind_of_change_is_persisted() {
    let dir = tempfile::tempdir().unwrap();
    let (log, mut sm) = open(dir.path()).await.unwrap();
    apply(&mut sm, cluster()).await;
    let delete = |name: &str| Command::SetDesired {
        name: name.into(),
        desired: DesiredState::Deleted,
        force: true,
        timeout_s: 0,
        restart: false,
        expected_version: None,
    };
    let forget = |name: &str| Command::ForgetInstance {
        name: name.into(),
        node: "a".into(),
        placement_generation: 1,
    };
    let status = InstanceStatus {
        state: ObservedState::Running,
        observed_revision: 5,
        message: String::new(),
        init_pid: Some(42),
        usage: None,
        updated_at_ms: 9,
    };
    let token = Token {
        name: "b".into(),
        kind: TokenKind::Member,
        secret_hash: "h".into(),
        created_at_ms: 0,
        expires_at_ms: 100,
    };
    let entries = vec![
        normal(
            7,
            Command::ReportStatus {
                name: "c2".into(),
                node: "a".into(),
                placement_generation: 1,
                status,
                if_version: None,
            },
        ),
        normal(8, delete("c1")),
        normal(9, delete("c2")),
        normal(10, forget("c1")),
        normal(11, forget("c2")),
        normal(
            12,
            Command::DeleteImage {
                fingerprint: FP.into(),
            },
        ),
        normal(13, Command::CreateToken { token }),
        normal(
            14,
            Command::Join {
                secret_hash: "h".into(),
                now_ms: 1,
                member: member("b"),
            },
        ),
    ];
    let responses = apply(&mut sm, entries).await;
    assert!(responses.iter().all(|r| r.result.is_ok()), "{responses:?}");
    let before = snapshot_of(&sm);
    assert!(before.instances.is_empty() && before.images.is_empty() && before.aliases.is_empty());
    assert!(before.tokens.is_empty() && before.members.contains_key("b"));

    let (_log, sm) = reopen(dir.path(), (log, sm)).await;
    assert_eq!(snapshot_of(&sm), before);
}

#[tokio::test]
async fn snapshot_installs_on_a_fresh_store() {
    let dir_a = tempfile::tempdir().unwrap();
    let dir_b = tempfile::tempdir().unwrap();
    let (_log_a, mut a) = open(dir_a.path()).await.unwrap();
    apply(&mut a, cluster()).await;
    let snap = a
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap();
    assert_eq!(snap.meta.last_log_id, Some(log_id(6)));

    let (log_b, mut b) = open(dir_b.path()).await.unwrap();
    // Something to replace: the install must not merge.
    apply(
        &mut b,
        vec![normal(
            1,
            Command::RegisterMember {
                member: member("z"),
            },
        )],
    )
    .await;
    let mut revisions = b.state().subscribe();
    let mut data = b.begin_receiving_snapshot().await.unwrap();
    *data = *snap.snapshot;
    b.install_snapshot(&snap.meta, data).await.unwrap();
    assert!(revisions.has_changed().unwrap());
    assert_eq!(*revisions.borrow_and_update(), 6);
    assert_eq!(snapshot_of(&b), snapshot_of(&a));
    assert_eq!(
        b.applied_state().await.unwrap(),
        a.applied_state().await.unwrap()
    );
    let current = b.get_current_snapshot().await.unwrap().unwrap();
    assert_eq!(current.meta, snap.meta);

    let (_log_b, mut b) = reopen(dir_b.path(), (log_b, b)).await;
    assert_eq!(snapshot_of(&b), snapshot_of(&a));
    assert_eq!(
        b.applied_state().await.unwrap(),
        a.applied_state().await.unwrap()
    );
    assert_eq!(
        b.get_current_snapshot().await.unwrap().unwrap().meta,
        snap.meta
    );
}

/// A crash after the snapshot was stored but before the trees were rewritten: the marker
/// makes `open` finish the install.
#[tokio::test]
async fn interrupted_install_is_finished_at_open() {
    let dir_a = tempfile::tempdir().unwrap();
    let dir_b = tempfile::tempdir().unwrap();
    let (_log_a, mut a) = open(dir_a.path()).await.unwrap();
    apply(&mut a, cluster()).await;
    let snap = a
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap();

    let stores = open(dir_b.path()).await.unwrap();
    stores
        .1
        .mark_installing(&snap.meta, snap.snapshot.get_ref())
        .unwrap();
    let (_log_b, mut b) = reopen(dir_b.path(), stores).await;
    assert_eq!(snapshot_of(&b), snapshot_of(&a));
    assert_eq!(b.applied_state().await.unwrap().0, Some(log_id(6)));
}

#[tokio::test]
async fn log_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, sm) = open(dir.path()).await.unwrap();
    let entries: Vec<_> = (1..=10).map(blank).collect();
    log.blocking_append(entries).await.unwrap();
    log.save_vote(&Vote::new(3, 2)).await.unwrap();
    log.save_committed(Some(log_id(7))).await.unwrap();
    log.truncate(log_id(9)).await.unwrap();
    log.purge(log_id(3)).await.unwrap();

    let (mut log, _sm) = reopen(dir.path(), (log, sm)).await;
    let state = log.get_log_state().await.unwrap();
    assert_eq!(state.last_purged_log_id, Some(log_id(3)));
    assert_eq!(state.last_log_id, Some(log_id(8)));
    assert_eq!(log.read_vote().await.unwrap(), Some(Vote::new(3, 2)));
    assert_eq!(log.read_committed().await.unwrap(), Some(log_id(7)));
    let got = log.try_get_log_entries(0..100).await.unwrap();
    let indexes: Vec<u64> = got.iter().map(|e| e.log_id.index).collect();
    assert_eq!(indexes, (4..=8).collect::<Vec<_>>());
}

#[tokio::test]
async fn subscribers_see_every_apply() {
    let dir = tempfile::tempdir().unwrap();
    let (_log, mut sm) = open(dir.path()).await.unwrap();
    let shared = sm.state();
    let mut rx = shared.subscribe();
    assert_eq!(*rx.borrow_and_update(), 0);
    apply(&mut sm, cluster()).await;
    assert!(rx.has_changed().unwrap());
    assert_eq!(*rx.borrow_and_update(), 6);
    assert_eq!(shared.read(|s| s.instances.len()), 2);
    assert_eq!(shared.last_applied(), Some(log_id(6)));
    apply(&mut sm, vec![blank(7)]).await;
    assert_eq!(*rx.borrow_and_update(), 7);
}

async fn corrupt(tree: &str, key: &[u8], value: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, mut sm) = open(dir.path()).await.unwrap();
    log.blocking_append(cluster()).await.unwrap();
    apply(&mut sm, cluster()).await;
    drop((log, sm));
    {
        let db = sled::open(dir.path()).unwrap();
        db.open_tree(tree).unwrap().insert(key, value).unwrap();
        db.flush().unwrap();
    }
    let err = open(dir.path())
        .await
        .expect_err("a corrupt store is refused");
    let msg = err.to_string();
    assert!(msg.contains(&dir.path().display().to_string()), "{msg}");
    msg
}

#[tokio::test]
async fn corrupt_values_are_reported_at_open() {
    let msg = corrupt("instances", b"c1", b"{not json").await;
    assert!(msg.contains("tree 'instances', key 'c1'"), "{msg}");
    let msg = corrupt("members", b"b", &serde_json::to_vec(&member("a")).unwrap()).await;
    assert!(msg.contains("tree 'members', key 'b'"), "{msg}");
    let msg = corrupt("sm_meta", b"last_applied", b"7x").await;
    assert!(msg.contains("tree 'sm_meta', key 'last_applied'"), "{msg}");
    let msg = corrupt("log", &3u64.to_be_bytes(), b"[]").await;
    assert!(msg.contains("tree 'log', key '3'"), "{msg}");
    let entry = serde_json::to_vec(&blank(5)).unwrap();
    let msg = corrupt("log", &9u64.to_be_bytes(), &entry).await;
    assert!(msg.contains("holds the entry of index 5"), "{msg}");
    let msg = corrupt("snapshot", b"meta", b"{}").await;
    assert!(msg.contains("tree 'snapshot', key 'meta'"), "{msg}");
    let msg = corrupt("log_meta", b"vote", b"nope").await;
    assert!(msg.contains("tree 'log_meta', key 'vote'"), "{msg}");
}

#[tokio::test]
async fn memberships_are_kept_with_their_log_id() {
    let dir = tempfile::tempdir().unwrap();
    let (_log, mut sm) = open(dir.path()).await.unwrap();
    apply(&mut sm, vec![membership(1), blank(2)]).await;
    let (last, mem) = sm.applied_state().await.unwrap();
    assert_eq!(last, Some(log_id(2)));
    assert_eq!(mem.log_id(), &Some(log_id(1)));
    assert_ne!(mem, StoredMembership::default());
}

/// Sequential durable writes: one append (one fsync) and one apply per command, as a lone
/// leader does. Run with `--ignored --nocapture` to print the rate.
#[tokio::test]
#[ignore]
async fn sequential_write_rate() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, mut sm) = open(dir.path()).await.unwrap();
    log.blocking_append(cluster()).await.unwrap();
    apply(&mut sm, cluster()).await;
    let n = 2000;
    let start = std::time::Instant::now();
    for i in 7..7 + n {
        let cmd = Command::ReportStatus {
            name: "c1".into(),
            node: "a".into(),
            placement_generation: 1,
            status: InstanceStatus::pending(i as i64),
            if_version: None,
        };
        log.blocking_append([normal(i, cmd.clone())]).await.unwrap();
        apply(&mut sm, vec![normal(i, cmd)]).await;
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    println!("{rate:.0} durable writes/s");
}

/// sled recovers a database whose file is damaged near its start as an empty one; the
/// marker file catches that.
#[tokio::test]
async fn damaged_database_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, mut sm) = open(dir.path()).await.unwrap();
    log.blocking_append(cluster()).await.unwrap();
    apply(&mut sm, cluster()).await;
    drop((log, sm));
    let db = dir.path().join("db");
    let mut bytes = std::fs::read(&db).unwrap();
    for b in bytes.iter_mut().skip(100).step_by(7) {
        *b ^= 0x5a;
    }
    std::fs::write(&db, bytes).unwrap();
    let msg = open(dir.path()).await.expect_err("refused").to_string();
    assert!(msg.contains(&dir.path().display().to_string()), "{msg}");
    assert!(
        msg.contains("lost its contents") || msg.contains("corrupt"),
        "{msg}"
    );
}

#[tokio::test]
async fn a_deleted_marker_is_rewritten() {
    let dir = tempfile::tempdir().unwrap();
    let stores = open(dir.path()).await.unwrap();
    let marker = dir.path().join(super::marker::MARKER_FILE);
    let id = std::fs::read_to_string(&marker).unwrap();
    std::fs::remove_file(&marker).unwrap();
    let stores = reopen(dir.path(), stores).await;
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), id);
    drop(stores);
    std::fs::write(&marker, "another\n").unwrap();
    let msg = open(dir.path()).await.expect_err("refused").to_string();
    assert!(msg.contains("names store 'another'"), "{msg}");
}
