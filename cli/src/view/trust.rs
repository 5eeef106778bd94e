//! How a trusted client prints: `shoal cluster trust list`.

use serde::Serialize;
use shoal_proto::api::TrustedClient;

use crate::output::{rfc3339_ms, Table};

/// One client, as `--format json|yaml` prints it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub(crate) struct TrustView {
    pub(crate) name: String,
    /// "admin", "operator" or "viewer".
    pub(crate) role: String,
    /// "trusted", "revoked" or "pending" (a token not used yet).
    pub(crate) status: String,
    /// sha256 (hex) of its current certificate; empty when pending.
    pub(crate) fingerprint: String,
    /// RFC 3339: enrolled (or token issued, when pending).
    pub(crate) created_at: String,
    /// RFC 3339; empty if not revoked.
    pub(crate) revoked_at: String,
    /// RFC 3339, for a pending token; empty otherwise.
    pub(crate) expires_at: String,
    /// How many certificates issued to this name are refused.
    pub(crate) revoked_certificates: u32,
}

impl From<TrustedClient> for TrustView {
    fn from(c: TrustedClient) -> Self {
        let time = |ms: i64| {
            if ms == 0 {
                String::new()
            } else {
                rfc3339_ms(ms).unwrap_or_default()
            }
        };
        TrustView {
            name: c.name,
            role: c.role,
            status: c.status,
            fingerprint: c.fingerprint,
            created_at: time(c.created_at_ms),
            revoked_at: time(c.revoked_at_ms),
            expires_at: time(c.expires_at_ms),
            revoked_certificates: c.revoked_certificates,
        }
    }
}

/// Rows for `shoal cluster trust list`: the fingerprint shortened to 16 digits, and one
/// date column that means what the status says (enrolled, revoked, or token expiry).
pub(crate) fn table(items: &[TrustView]) -> Table {
    Table {
        headers: vec![
            "NAME",
            "ROLE",
            "STATUS",
            "FINGERPRINT",
            "SINCE",
            "REVOKED CERTS",
        ],
        rows: items
            .iter()
            .map(|c| {
                let since = match c.status.as_str() {
                    "revoked" => c.revoked_at.clone(),
                    "pending" => format!("expires {}", c.expires_at),
                    _ => c.created_at.clone(),
                };
                vec![
                    c.name.clone(),
                    c.role.clone(),
                    c.status.clone(),
                    c.fingerprint.chars().take(16).collect(),
                    since,
                    c.revoked_certificates.to_string(),
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
    fn statuses_print_their_own_date() {
        let v: Vec<TrustView> = [
            TrustedClient {
                name: "alice".into(),
                role: "operator".into(),
                status: "revoked".into(),
                fingerprint: "ab".repeat(32),
                created_at_ms: 1_000,
                revoked_at_ms: 86_400_000,
                revoked_certificates: 1,
                ..Default::default()
            },
            TrustedClient {
                name: "bob".into(),
                role: "viewer".into(),
                status: "pending".into(),
                expires_at_ms: 3_600_000,
                ..Default::default()
            },
        ]
        .into_iter()
        .map(TrustView::from)
        .collect();
        let text = render_list(Format::Table, &v, table).unwrap();
        assert!(text.contains("abababababababab "), "{text}");
        assert!(text.contains("1970-01-02"), "{text}");
        assert!(text.contains("expires 1970-01-01T01:00:00"), "{text}");
        let json = render_list(Format::Json, &v, table).unwrap();
        let parsed: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(parsed[0]["fingerprint"], "ab".repeat(32));
        assert_eq!(parsed[1]["revoked_at"], "");
    }
}
