//! How a cluster member prints: `shoal cluster list`.

use serde::Serialize;
use shoal_proto::api::Member;

use crate::output::Table;

/// One member, as `--format json|yaml` prints it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub(crate) struct MemberView {
    pub(crate) name: String,
    /// host:port of its API.
    pub(crate) address: String,
    /// Any of "leader", "voter", "standby", "agent".
    pub(crate) roles: Vec<String>,
    /// "Online", "Offline" or "Evacuated".
    pub(crate) status: String,
    pub(crate) failure_domain: String,
    /// Set when something is degraded.
    pub(crate) message: String,
    pub(crate) architecture: String,
    /// Raft node id.
    pub(crate) id: u64,
}

impl From<Member> for MemberView {
    fn from(m: Member) -> Self {
        MemberView {
            name: m.name,
            address: m.address,
            roles: m.roles,
            status: m.status,
            failure_domain: m.failure_domain,
            message: m.message,
            architecture: m.architecture,
            id: m.id,
        }
    }
}

/// Rows for `shoal cluster list`; roles joined by ",".
pub(crate) fn table(items: &[MemberView]) -> Table {
    Table {
        headers: vec![
            "NAME",
            "ADDRESS",
            "ROLES",
            "STATUS",
            "FAILURE DOMAIN",
            "ARCHITECTURE",
            "MESSAGE",
        ],
        rows: items
            .iter()
            .map(|m| {
                vec![
                    m.name.clone(),
                    m.address.clone(),
                    m.roles.join(","),
                    m.status.clone(),
                    m.failure_domain.clone(),
                    m.architecture.clone(),
                    m.message.clone(),
                ]
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::{render_list, Format};

    #[test]
    fn roles_join_in_tables_and_stay_a_list_in_json() {
        let v = vec![MemberView::from(Member {
            name: "n1".into(),
            address: "198.18.0.2:8443".into(),
            roles: vec!["leader".into(), "voter".into()],
            status: "Online".into(),
            failure_domain: "rack1".into(),
            message: "fully operational".into(),
            architecture: "x86_64".into(),
            id: 7,
        })];
        let csv = render_list(Format::Csv, &v, table).unwrap();
        assert_eq!(
            csv,
            "n1,198.18.0.2:8443,\"leader,voter\",Online,rack1,x86_64,fully operational\n"
        );
        let j = serde_json::to_value(&v).unwrap();
        assert_eq!(j[0]["roles"][0], "leader");
        assert_eq!(j[0]["failure_domain"], "rack1");
        assert_eq!(j[0]["id"], 7);
        // Fields print in the documented order.
        let text = serde_json::to_string(&v[0]).unwrap();
        let at = |k: &str| text.find(&format!("\"{k}\":")).unwrap();
        let order = [
            "name",
            "address",
            "roles",
            "status",
            "failure_domain",
            "message",
            "architecture",
            "id",
        ];
        assert!(order.windows(2).all(|w| at(w[0]) < at(w[1])), "{text}");
    }
}
