//! The leader manages roles itself, as LXD does: the first members become voters (3 by
//! default, always an odd number), the next ones stand-bys (non-voting Raft learners, 2 at
//! most), and the rest agents. A voter that goes offline is replaced by an online stand-by
//! that has caught up, preferring a failure domain the remaining voters do not cover.
//!
//! Agents are Raft learners too for now (they replicate the whole log); following only
//! their part of the state through a watch stream is future work.

use openraft::ChangeMembers;
use shoal_raft::consensus::{MemberNode, NodeId};
use shoal_raft::Member;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::node::ClusterNode;

/// Role policy.
#[derive(Debug, Clone, Copy)]
pub struct RolePolicy {
    /// Voters wanted (odd, 1 to 7).
    pub voters: usize,
    /// Stand-bys wanted.
    pub standbys: usize,
    /// A voter offline for this long is replaced by a stand-by.
    pub replace_after: Duration,
}

impl Default for RolePolicy {
    fn default() -> Self {
        Self {
            voters: 3,
            standbys: 2,
            replace_after: Duration::from_secs(10),
        }
    }
}

/// The role a member has, from the Raft membership.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Leader,
    Voter,
    Standby,
    Agent,
    /// Known to the state but not yet in the Raft group.
    Pending,
}

impl Role {
    /// The names shown by `shoal cluster list`.
    pub fn names(self) -> Vec<String> {
        match self {
            Role::Leader => vec!["leader".into(), "voter".into()],
            Role::Voter => vec!["voter".into()],
            Role::Standby => vec!["standby".into()],
            Role::Agent => vec!["agent".into()],
            Role::Pending => vec!["pending".into()],
        }
    }
}

/// Roles of every member by name.
pub fn roles(node: &ClusterNode, members: &BTreeMap<String, Member>) -> BTreeMap<String, Role> {
    let m = node.raft.metrics().borrow().clone();
    let membership = m.membership_config.membership();
    let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
    let learners: BTreeSet<NodeId> = membership.learner_ids().collect();
    let mut standbys = 0;
    let mut out = BTreeMap::new();
    let mut by_id: Vec<&Member> = members.values().collect();
    by_id.sort_by_key(|m| m.id);
    for mem in by_id {
        let role = if m.current_leader == Some(mem.id) {
            Role::Leader
        } else if voters.contains(&mem.id) {
            Role::Voter
        } else if learners.contains(&mem.id) {
            standbys += 1;
            if standbys <= RolePolicy::default().standbys {
                Role::Standby
            } else {
                Role::Agent
            }
        } else if mem.id > super::node::RAFT_MEMBERS {
            Role::Agent
        } else {
            Role::Pending
        };
        out.insert(mem.name.clone(), role);
    }
    out
}

fn odd_at_most(n: usize) -> usize {
    if n == 0 {
        0
    } else if n % 2 == 1 {
        n
    } else {
        n - 1
    }
}

/// One pass of the leader's role management.
async fn reconcile(
    node: &ClusterNode,
    policy: RolePolicy,
    offline_since: &mut BTreeMap<NodeId, Instant>,
) {
    let metrics = node.raft.metrics().borrow().clone();
    let membership = metrics.membership_config.membership().clone();
    let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
    let learners: BTreeSet<NodeId> = membership.learner_ids().collect();
    let members: Vec<Member> = node.shared.read(|s| s.members.values().cloned().collect());
    let known: BTreeSet<NodeId> = members.iter().map(|m| m.id).collect();
    let last_log = metrics.last_log_index.unwrap_or(0);
    let caught_up = |id: &NodeId| {
        metrics
            .replication
            .as_ref()
            .and_then(|r| r.get(id).cloned().flatten())
            .map(|l| l.index + 100 >= last_log)
            .unwrap_or(false)
    };

    // New members become learners; members beyond the Raft group are agents.
    for m in &members {
        if !voters.contains(&m.id)
            && !learners.contains(&m.id)
            && m.id != 0
            && m.id <= super::node::RAFT_MEMBERS
        {
            let n = MemberNode {
                name: m.name.clone(),
                addr: m.address.clone(),
            };
            if let Err(e) = node.raft.add_learner(m.id, n, false).await {
                tracing::warn!(member = %m.name, error = %e, "adding learner failed");
            } else {
                tracing::info!(member = %m.name, id = m.id, "added as stand-by");
            }
        }
    }
    // Members removed from the state leave the Raft group.
    let gone: BTreeSet<NodeId> = voters
        .iter()
        .chain(learners.iter())
        .filter(|id| !known.contains(*id))
        .copied()
        .collect();
    if !gone.is_empty() {
        let new_voters: BTreeSet<NodeId> = voters.difference(&gone).copied().collect();
        if new_voters != voters && !new_voters.is_empty() {
            if let Err(e) = node.raft.change_membership(new_voters, false).await {
                tracing::warn!(error = %e, "removing voters failed");
            }
        }
        let lost: BTreeSet<NodeId> = gone.intersection(&learners).copied().collect();
        if !lost.is_empty() {
            if let Err(e) = node
                .raft
                .change_membership(ChangeMembers::RemoveNodes(lost), false)
                .await
            {
                tracing::warn!(error = %e, "removing learners failed");
            }
        }
        return;
    }

    let name_of = |id: &NodeId| members.iter().find(|m| m.id == *id).map(|m| m.name.clone());
    let domain_of = |id: &NodeId| {
        members
            .iter()
            .find(|m| m.id == *id)
            .map(|m| m.failure_domain.clone())
            .unwrap_or_default()
    };
    let online = |id: &NodeId| name_of(id).map(|n| node.is_online(&n)).unwrap_or(false);
    for id in voters.iter().chain(learners.iter()) {
        if online(id) {
            offline_since.remove(id);
        } else {
            offline_since.entry(*id).or_insert_with(Instant::now);
        }
    }
    let dead: BTreeSet<NodeId> = voters
        .iter()
        .filter(|id| {
            offline_since
                .get(id)
                .map(|t| t.elapsed() >= policy.replace_after)
                .unwrap_or(false)
        })
        .copied()
        .collect();
    let live_voters: BTreeSet<NodeId> = voters.difference(&dead).copied().collect();
    let mut candidates: Vec<NodeId> = learners
        .iter()
        .filter(|id| online(id) && caught_up(id))
        .copied()
        .collect();
    // Prefer failure domains the live voters lack, then the oldest member.
    let covered: BTreeSet<String> = live_voters.iter().map(domain_of).collect();
    candidates.sort_by_key(|id| (covered.contains(&domain_of(id)), *id));
    let want = plan_voters(&live_voters, &candidates, policy.voters);
    if let Some(want) = want {
        if want != voters && want.contains(&node.id) {
            tracing::info!(?voters, ?want, "changing voters");
            match node.raft.change_membership(want.clone(), true).await {
                Ok(_) => tracing::info!(voters = ?want, "voters changed"),
                Err(e) => tracing::warn!(error = %e, "changing voters failed"),
            }
        }
    }
}

/// The voter set to move to: the live voters plus enough candidates (in order) to reach the
/// largest odd count the policy and the candidates allow. `None` when no such set is at
/// least as large as the live voters (never shrink automatically).
fn plan_voters(
    live: &BTreeSet<NodeId>,
    candidates: &[NodeId],
    max_voters: usize,
) -> Option<BTreeSet<NodeId>> {
    let reachable = odd_at_most(max_voters.min(live.len() + candidates.len()));
    if reachable < live.len() || reachable == 0 {
        return None;
    }
    let mut want = live.clone();
    for c in candidates {
        if want.len() >= reachable {
            break;
        }
        want.insert(*c);
    }
    Some(want)
}

/// Runs the role manager: acts only while this member leads.
pub async fn run(node: Arc<ClusterNode>, policy: RolePolicy) {
    let mut offline_since = BTreeMap::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let leading = node.is_leader();
        node.note_leadership(leading);
        if leading {
            reconcile(&node, policy, &mut offline_since).await;
        } else {
            offline_since.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_grow_replace_and_never_shrink() {
        let set = |v: &[u64]| v.iter().copied().collect::<BTreeSet<u64>>();
        // Two hosts: one voter, the other stays a stand-by.
        assert_eq!(plan_voters(&set(&[1]), &[2], 3), Some(set(&[1])));
        // Three: all vote.
        assert_eq!(plan_voters(&set(&[1]), &[2, 3], 3), Some(set(&[1, 2, 3])));
        // A dead voter (3) is replaced by the stand-by 4.
        assert_eq!(plan_voters(&set(&[1, 2]), &[4], 3), Some(set(&[1, 2, 4])));
        // Nothing to replace it with: leave the set alone.
        assert_eq!(plan_voters(&set(&[1, 2]), &[], 3), None);
        // Never more than the policy.
        assert_eq!(
            plan_voters(&set(&[1, 2, 3]), &[4, 5], 3),
            Some(set(&[1, 2, 3]))
        );
        assert_eq!(
            plan_voters(&set(&[1, 2, 3]), &[4, 5], 5),
            Some(set(&[1, 2, 3, 4, 5]))
        );
    }

    #[test]
    fn voter_counts_are_odd() {
        assert_eq!(odd_at_most(0), 0);
        assert_eq!(odd_at_most(1), 1);
        assert_eq!(odd_at_most(2), 1);
        assert_eq!(odd_at_most(3), 3);
        assert_eq!(odd_at_most(4), 3);
    }
}
