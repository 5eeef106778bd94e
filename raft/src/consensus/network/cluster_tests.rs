//! Real Raft clusters over gRPC and mutual TLS on 127.0.0.1: election, replication, fail-over
//! within the 3 s the acceptance test allows, and a new member catching up through a snapshot
//! sent in chunks.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::error::RPCError;
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::VoteRequest;
use openraft::{Config, Vote};

use super::raft_config;
use super::testkit::{members, wait_for_leader, TestCa, TestNode};
use super::GrpcNetworkFactory;
use crate::consensus::types::NodeId;
use crate::model::{Command, Member};

fn register(name: &str) -> Command {
    Command::RegisterMember {
        member: Member {
            id: 0,
            name: name.to_string(),
            address: format!("198.18.0.{}:7443", name.len()),
            architecture: "x86_64".into(),
            failure_domain: "rack-with-a-rather-long-name-to-fatten-the-snapshot".into(),
            joined_at_ms: 1_700_000_000_000,
            ..Default::default()
        },
    }
}

async fn start_cluster(ca: &TestCa, config: Arc<Config>, n: u64) -> Vec<TestNode> {
    let mut nodes = Vec::new();
    for id in 1..=n {
        nodes.push(TestNode::start(ca, id, config.clone()).await);
    }
    let refs: Vec<&TestNode> = nodes.iter().collect();
    nodes[0].raft.initialize(members(&refs)).await.unwrap();
    nodes
}

fn by_id(nodes: &[TestNode], id: NodeId) -> &TestNode {
    nodes.iter().find(|n| n.id == id).unwrap()
}

async fn stop_all(nodes: &mut [TestNode]) {
    for n in nodes {
        n.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_elect_replicate_and_fail_over() {
    let ca = TestCa::new();
    let config = Arc::new(raft_config("test").validate().unwrap());
    let mut nodes = start_cluster(&ca, config, 3).await;

    let refs: Vec<&TestNode> = nodes.iter().collect();
    let leader = wait_for_leader(&refs, &[], Duration::from_secs(10))
        .await
        .expect("a leader is elected");

    let resp = by_id(&nodes, leader)
        .raft
        .client_write(register("alpha"))
        .await
        .expect("write commits");
    assert_eq!(resp.data.revision, resp.log_id.index);
    for n in &nodes {
        n.raft
            .wait(Some(Duration::from_secs(5)))
            .applied_index_at_least(Some(resp.log_id.index), "write applied")
            .await
            .unwrap();
        assert!(n.state().members.contains_key("alpha"), "node {}", n.id);
        // One reused connection per peer.
        assert!(n.network.cached_channels() <= 2, "node {}", n.id);
    }

    // A steady cluster does not hold needless elections.
    let term = by_id(&nodes, leader).raft.metrics().borrow().current_term;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for n in &nodes {
        let m = n.raft.metrics().borrow().clone();
        assert_eq!(
            (m.current_term, m.current_leader),
            (term, Some(leader)),
            "node {}",
            n.id
        );
    }

    // Kill the leader: no more heartbeats, no more answers.
    let killed = Instant::now();
    nodes
        .iter_mut()
        .find(|n| n.id == leader)
        .unwrap()
        .stop()
        .await;
    let rest: Vec<&TestNode> = nodes.iter().filter(|n| n.id != leader).collect();
    let budget = Duration::from_secs(3).saturating_sub(killed.elapsed());
    let new_leader = wait_for_leader(&rest, &[leader], budget).await;
    let took = killed.elapsed();
    let new_leader = new_leader.unwrap_or_else(|| panic!("no new leader {took:?} after the kill"));
    assert!(took <= Duration::from_secs(3), "fail-over took {took:?}");

    // The two survivors still commit.
    let resp = by_id(&nodes, new_leader)
        .raft
        .client_write(register("beta"))
        .await
        .expect("write commits without the old leader");
    for n in &rest {
        n.raft
            .wait(Some(Duration::from_secs(5)))
            .applied_index_at_least(Some(resp.log_id.index), "second write applied")
            .await
            .unwrap();
        assert!(n.state().members.contains_key("beta"), "node {}", n.id);
    }

    stop_all(&mut nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_learner_catches_up_through_chunked_snapshot() {
    let ca = TestCa::new();
    let chunk = 512;
    let config = Arc::new(
        Config {
            snapshot_max_chunk_size: chunk,
            max_in_snapshot_log_to_keep: 0,
            purge_batch_size: 1,
            ..raft_config("test")
        }
        .validate()
        .unwrap(),
    );
    let mut nodes = start_cluster(&ca, config.clone(), 3).await;
    let refs: Vec<&TestNode> = nodes.iter().collect();
    let leader = wait_for_leader(&refs, &[], Duration::from_secs(10))
        .await
        .expect("a leader is elected");
    let lead = by_id(&nodes, leader);

    let mut last = 0;
    for i in 0..40 {
        last = lead
            .raft
            .client_write(register(&format!("member-{i:02}")))
            .await
            .unwrap()
            .log_id
            .index;
    }
    lead.raft.trigger().snapshot().await.unwrap();
    let wait = lead.raft.wait(Some(Duration::from_secs(10)));
    wait.metrics(
        |m| m.snapshot.is_some_and(|s| s.index >= last),
        "snapshot built",
    )
    .await
    .unwrap();
    // The entries in the snapshot are gone, so a new member can only get the snapshot.
    wait.metrics(|m| m.purged.is_some_and(|p| p.index >= last), "log purged")
        .await
        .unwrap();

    let learner = TestNode::start(&ca, 4, config).await;
    lead.raft
        .add_learner(learner.id, learner.node.clone(), true)
        .await
        .expect("learner added and caught up");
    learner
        .raft
        .wait(Some(Duration::from_secs(10)))
        .applied_index_at_least(Some(last), "learner applied the snapshot")
        .await
        .unwrap();
    let chunks = learner.snapshot_chunks.load(Ordering::SeqCst);
    // 40 members of about 200 bytes each make a snapshot of well over 4 chunks.
    assert!(chunks > 4, "the snapshot came in {chunks} chunks");
    let want = lead.state();
    let got = learner.state();
    assert_eq!(got.members, want.members);
    assert_eq!(got.members.len(), 40);

    nodes.push(learner);
    stop_all(&mut nodes).await;
}

/// A member replaced under the same address by a fresh one with another node id (a wiped
/// host joining again) while the old id is still in the membership: the new member refuses
/// calls meant for the old id, so the leader sees the old member unreachable, rather than
/// taking the new member's empty log for the old one's going backwards (which made openraft
/// panic the leader's Raft core, and the cluster lost write availability).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_replaced_at_the_same_address_does_not_answer_for_the_old_one() {
    let ca = TestCa::new();
    let config = Arc::new(raft_config("test").validate().unwrap());
    let mut nodes = start_cluster(&ca, config.clone(), 3).await;
    let refs: Vec<&TestNode> = nodes.iter().collect();
    let leader = wait_for_leader(&refs, &[], Duration::from_secs(10))
        .await
        .expect("a leader is elected");

    // Node 4 joins as a learner and replicates.
    let mut old = TestNode::start(&ca, 4, config.clone()).await;
    let lead = by_id(&nodes, leader);
    lead.raft
        .add_learner(old.id, old.node.clone(), true)
        .await
        .expect("learner added");
    let mut last = 0;
    for i in 0..5 {
        last = lead
            .raft
            .client_write(register(&format!("before-{i}")))
            .await
            .unwrap()
            .log_id
            .index;
    }
    old.raft
        .wait(Some(Duration::from_secs(5)))
        .applied_index_at_least(Some(last), "node 4 caught up")
        .await
        .unwrap();

    // Node 4's host is wiped; a fresh member, node 5, starts at the same address.
    let addr = old.node.addr.clone();
    old.stop().await;
    drop(old);
    let new = TestNode::start_at(&ca, 5, config.clone(), &addr).await;

    // Asked as node 4, it refuses: the caller sees node 4 unreachable.
    let mut client = GrpcNetworkFactory::new(leader, ca.client_tls("m1"))
        .new_client(4, &new.node)
        .await;
    let res = client
        .vote(
            VoteRequest::new(Vote::new(1, leader), None),
            RPCOption::new(Duration::from_secs(2)),
        )
        .await;
    match res {
        Err(RPCError::Unreachable(e)) => {
            assert!(e.to_string().contains("not node 4"), "{e}")
        }
        other => panic!("expected node 5 to refuse a call for node 4, got {other:?}"),
    }

    // The leader keeps replicating to node 4's address while writes go on: it must not
    // mistake node 5 for node 4.
    let lead = by_id(&nodes, leader);
    for i in 0..5 {
        last = lead
            .raft
            .client_write(register(&format!("after-{i}")))
            .await
            .expect("the leader still commits")
            .log_id
            .index;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for n in &nodes {
        let m = n.raft.metrics().borrow().clone();
        assert!(
            m.running_state.is_ok(),
            "node {}: {:?}",
            n.id,
            m.running_state
        );
    }
    assert_eq!(
        new.raft.metrics().borrow().last_log_index,
        None,
        "node 5 took entries meant for node 4"
    );

    // The leader removes 4 and adds 5, which catches up.
    lead.raft
        .change_membership(openraft::ChangeMembers::RemoveNodes([4].into()), false)
        .await
        .expect("node 4 removed");
    lead.raft
        .add_learner(new.id, new.node.clone(), true)
        .await
        .expect("node 5 added");
    new.raft
        .wait(Some(Duration::from_secs(5)))
        .applied_index_at_least(Some(last), "node 5 caught up")
        .await
        .unwrap();
    assert_eq!(new.state().members, lead.state().members);
    assert!(lead.raft.metrics().borrow().running_state.is_ok());

    nodes.push(new);
    stop_all(&mut nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_from_another_ca_is_refused() {
    let ca = TestCa::new();
    let config = Arc::new(raft_config("test").validate().unwrap());
    let mut node = TestNode::start(&ca, 1, config).await;

    // Trusts the cluster CA, but its own certificate comes from elsewhere.
    let other = TestCa::new();
    let tls = ca_trust_with_foreign_identity(&ca, &other);
    let mut factory = GrpcNetworkFactory::new(9, tls);
    let mut client = factory.new_client(1, &node.node).await;
    let res = client
        .vote(
            VoteRequest::new(Vote::new(1, 9), None),
            RPCOption::new(Duration::from_secs(2)),
        )
        .await;
    match res {
        Err(RPCError::Unreachable(_)) => {}
        other => panic!("expected the handshake to fail, got {other:?}"),
    }
    node.stop().await;
}

fn ca_trust_with_foreign_identity(
    ca: &TestCa,
    other: &TestCa,
) -> tonic::transport::ClientTlsConfig {
    ca.client_tls("m9").identity(other.member("m9"))
}
