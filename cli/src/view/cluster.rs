//! How the Raft view prints: `shoal cluster show`.

use serde::Serialize;
use shoal_proto::api::{MemberProgress, ShowClusterResponse};

use crate::output::{render_table, Table};

/// The cluster's consensus state, as `--format json|yaml` prints it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub(crate) struct ClusterView {
    /// Name of the leader; empty while there is none.
    pub(crate) leader: String,
    pub(crate) term: u64,
    pub(crate) commit_index: u64,
    pub(crate) last_log_index: u64,
    /// The member that answered.
    pub(crate) answered_by: String,
    /// The answering member's applied index and the sha256 of its replicated state.
    pub(crate) applied_index: u64,
    pub(crate) state_digest: String,
    /// Raft members (voters and stand-bys), by name.
    pub(crate) members: Vec<ProgressView>,
}

/// One Raft member's replication progress.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub(crate) struct ProgressView {
    pub(crate) name: String,
    pub(crate) id: u64,
    /// "leader", "voter" or "standby".
    pub(crate) role: String,
    /// Last entry known to be on it (0 if unknown).
    pub(crate) matched_index: u64,
    /// Entries behind the leader's last log index.
    pub(crate) lag: u64,
}

impl From<MemberProgress> for ProgressView {
    fn from(m: MemberProgress) -> Self {
        ProgressView {
            name: m.name,
            id: m.id,
            role: m.role,
            matched_index: m.matched_index,
            lag: m.lag,
        }
    }
}

impl From<ShowClusterResponse> for ClusterView {
    fn from(r: ShowClusterResponse) -> Self {
        let mut members: Vec<ProgressView> = r.members.into_iter().map(Into::into).collect();
        members.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
        ClusterView {
            leader: r.leader,
            term: r.term,
            commit_index: r.commit_index,
            last_log_index: r.last_log_index,
            answered_by: r.answered_by,
            applied_index: r.applied_index,
            state_digest: r.state_digest,
            members,
        }
    }
}

/// The text form: the summary, then a table of members.
pub(crate) fn text(v: &ClusterView) -> String {
    let or_none = |s: &str| {
        if s.is_empty() {
            "(none)".to_string()
        } else {
            s.to_string()
        }
    };
    let mut out = format!(
        "Leader: {}\nTerm: {}\nCommit index: {}\nLast log index: {}\nAnswered by: {}\nMembers:\n",
        or_none(&v.leader),
        v.term,
        v.commit_index,
        v.last_log_index,
        or_none(&v.answered_by),
    );
    out.push_str(&render_table(&Table {
        headers: vec!["NAME", "ID", "ROLE", "MATCHED INDEX", "LAG"],
        rows: v
            .members
            .iter()
            .map(|m| {
                vec![
                    m.name.clone(),
                    m.id.to_string(),
                    m.role.clone(),
                    m.matched_index.to_string(),
                    m.lag.to_string(),
                ]
            })
            .collect(),
    }));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ClusterView {
        let p = |name: &str, id, role: &str, matched, lag| MemberProgress {
            name: name.into(),
            id,
            role: role.into(),
            matched_index: matched,
            lag,
        };
        ClusterView::from(ShowClusterResponse {
            leader: "a".into(),
            term: 4,
            commit_index: 120,
            last_log_index: 121,
            members: vec![p("b", 2, "voter", 119, 2), p("a", 1, "leader", 121, 0)],
            answered_by: "b".into(),
            ..Default::default()
        })
    }

    #[test]
    fn text_has_summary_and_sorted_members() {
        let want = "\
Leader: a
Term: 4
Commit index: 120
Last log index: 121
Answered by: b
Members:
+------+----+--------+---------------+-----+
| NAME | ID | ROLE   | MATCHED INDEX | LAG |
+------+----+--------+---------------+-----+
| a    | 1  | leader | 121           | 0   |
| b    | 2  | voter  | 119           | 2   |
+------+----+--------+---------------+-----+
";
        assert_eq!(text(&sample()), want);
        let mut v = sample();
        v.leader.clear();
        assert!(text(&v).starts_with("Leader: (none)\n"));
    }

    #[test]
    fn json_fields() {
        let j = serde_json::to_value(sample()).unwrap();
        assert_eq!(j["leader"], "a");
        assert_eq!(j["commit_index"], 120);
        assert_eq!(j["last_log_index"], 121);
        assert_eq!(j["answered_by"], "b");
        assert_eq!(j["members"][1]["matched_index"], 119);
        assert_eq!(j["members"][1]["lag"], 2);
        assert_eq!(j["members"][0]["role"], "leader");
    }
}
