//! Who is calling, and may they: every RPC is checked against the role in the caller's
//! client certificate. The TLS layer has already verified the certificate against the
//! cluster CA (a connection without a certificate is let through TLS only so that `Join`
//! and `Enroll` can work, and is refused by every other call here).
//!
//! A member may forward a client's call to another member (exec to the instance's host);
//! it then names the original caller in the `x-shoal-on-behalf-of` header (`name;role`),
//! which is believed only from a member certificate.
//!
//! Before any of that, every call on every service passes `refuse_revoked`: a client
//! certificate revoked with `shoal cluster trust remove` (a replicated record, which agents
//! receive in their view too) is refused with PERMISSION_DENIED, whatever the call.

use shoal_raft::ClusterState;
use tonic::{Request, Status};

use super::state::StateHandle;
use crate::cluster::pki::{identity_of, Role};
use crate::cluster::token::sha256_hex;

/// Header a forwarding member sets to name the original caller.
pub const ON_BEHALF_OF: &str = "x-shoal-on-behalf-of";

/// The verified identity of a caller.
#[derive(Debug, Clone)]
pub struct Caller {
    pub name: String,
    pub role: Role,
}

fn certificate_identity<T>(req: &Request<T>) -> Result<Caller, Status> {
    let certs = req.peer_certs().ok_or_else(|| {
        tracing::warn!("refused a call without a client certificate");
        Status::unauthenticated("a client certificate issued by this cluster is required")
    })?;
    let leaf = certs.first().ok_or_else(|| {
        tracing::warn!("refused a call without a client certificate");
        Status::unauthenticated("a client certificate issued by this cluster is required")
    })?;
    let (name, role) = identity_of(leaf.as_ref()).ok_or_else(|| {
        tracing::warn!("refused a certificate without a shoal role");
        Status::permission_denied("the client certificate carries no shoal role")
    })?;
    Ok(Caller { name, role })
}

/// Marks `req` (about to be relayed to another member) as made on behalf of `caller`; the
/// receiving member believes it because it comes with this member's certificate.
pub fn act_for<T>(req: &mut Request<T>, caller: &Caller) {
    if let Ok(v) = format!("{};{}", caller.name, caller.role.as_str()).parse() {
        req.metadata_mut().insert(ON_BEHALF_OF, v);
    }
}

/// Identifies the caller of `req`, following a member's `on-behalf-of` header.
pub fn caller<T>(req: &Request<T>) -> Result<Caller, Status> {
    let c = certificate_identity(req)?;
    if c.role == Role::Member {
        if let Some(v) = req.metadata().get(ON_BEHALF_OF) {
            let v = v
                .to_str()
                .map_err(|_| Status::invalid_argument("bad on-behalf-of header"))?;
            let (name, role) = v
                .split_once(';')
                .and_then(|(n, r)| Some((n.to_string(), Role::parse(r)?)))
                .filter(|(_, r)| *r != Role::Member)
                .ok_or_else(|| Status::invalid_argument("bad on-behalf-of header"))?;
            return Ok(Caller { name, role });
        }
    }
    Ok(c)
}

/// Checks that the caller of `req` holds at least `min` (viewer < operator < admin).
/// Member certificates are for member-to-member calls only.
pub fn require<T>(req: &Request<T>, min: Role, action: &str) -> Result<Caller, Status> {
    let c = caller(req)?;
    let allowed = c.role != Role::Member && c.role >= min;
    if !allowed {
        tracing::warn!(caller = %c.name, role = c.role.as_str(), action, "permission denied");
        return Err(Status::permission_denied(format!(
            "{} '{}' may not {action} (needs the {} role)",
            c.role.as_str(),
            c.name,
            min.as_str()
        )));
    }
    Ok(c)
}

/// Checks that `req` comes from another member.
pub fn require_member<T>(req: &Request<T>) -> Result<Caller, Status> {
    let c = certificate_identity(req)?;
    if c.role != Role::Member {
        tracing::warn!(caller = %c.name, role = c.role.as_str(), "refused a non-member on the internal API");
        return Err(Status::permission_denied(format!(
            "{} '{}' is not a cluster member: the internal API is for members only",
            c.role.as_str(),
            c.name
        )));
    }
    Ok(c)
}

/// The refusal for a call made with the client certificate `cert_der`, if the cluster
/// revoked it. Member certificates are never revoked this way (members are removed).
pub fn revoked(state: &ClusterState, cert_der: &[u8]) -> Option<Status> {
    let (name, role) = identity_of(cert_der)?;
    if role == Role::Member {
        return None;
    }
    let id = state.identities.get(&name)?;
    if id.revoked.is_empty() {
        return None;
    }
    let fingerprint = sha256_hex(cert_der);
    if !id.is_revoked(&fingerprint) {
        return None;
    }
    tracing::warn!(client = %name, %fingerprint, "refused a revoked client certificate");
    Some(Status::permission_denied(format!(
        "client certificate '{name}' (fingerprint {}) was revoked; ask an admin for a new one with `shoal cluster trust add {name}`",
        &fingerprint[..16]
    )))
}

/// An interceptor for the whole server: refuses every call made with a revoked client
/// certificate, as this member's (or agent's) replicated state says.
pub fn refuse_revoked(
    state: StateHandle,
) -> impl FnMut(Request<()>) -> Result<Request<()>, Status> + Clone {
    move |req: Request<()>| {
        let leaf = req.peer_certs().and_then(|c| c.first().cloned());
        if let Some(leaf) = leaf {
            if let Some(refusal) = state.read(|s| revoked(s, leaf.as_ref())) {
                return Err(refusal);
            }
        }
        Ok(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::pki::CertificateAuthority;
    use shoal_raft::{apply, Command, Identity, Token, TokenKind};

    fn der(pem: &str) -> Vec<u8> {
        x509_parser::pem::parse_x509_pem(pem.as_bytes())
            .unwrap()
            .1
            .contents
    }

    /// A token for `name` and its enrolment with `cert`.
    fn enrolment(tag: &str, name: &str, cert: &[u8]) -> [Command; 2] {
        let token = Token {
            name: name.into(),
            kind: TokenKind::Client {
                role: "operator".into(),
            },
            secret_hash: tag.into(),
            created_at_ms: 0,
            expires_at_ms: 100,
        };
        let identity = Identity {
            name: name.into(),
            role: String::new(),
            fingerprint: sha256_hex(cert),
            created_at_ms: 1,
            revoked_at_ms: None,
            revoked: Default::default(),
        };
        [
            Command::CreateToken { token },
            Command::Enroll {
                secret_hash: tag.into(),
                now_ms: 1,
                identity,
            },
        ]
    }

    #[test]
    fn a_revoked_certificate_is_refused_by_members_and_agents_with_a_clear_error() {
        let (ca, _) = CertificateAuthority::generate("t").unwrap();
        let old = der(&ca.issue("alice", Role::Operator, &[]).unwrap().0);
        let new = der(&ca.issue("alice", Role::Operator, &[]).unwrap().0);
        let bob = der(&ca.issue("bob", Role::Admin, &[]).unwrap().0);
        let member = der(&ca.issue("alice", Role::Member, &[]).unwrap().0);
        let mut log = Vec::new();
        log.extend(enrolment("h1", "alice", &old));
        log.extend(enrolment("h2", "bob", &bob));
        log.push(Command::RevokeIdentity {
            name: "alice".into(),
            now_ms: 5,
        });
        log.extend(enrolment("h3", "alice", &new));

        // A member applies the log; an agent follows it by deltas from an empty view.
        let mut s = ClusterState::default();
        let mut followed = ClusterState::default();
        let mut held = Default::default();
        for (i, cmd) in log.iter().enumerate() {
            let index = i as u64 + 1;
            if i == 4 {
                assert!(revoked(&s, &old).is_none(), "trusted before the revocation");
            }
            let keys = shoal_raft::model::touched(&s, cmd).into_iter().collect();
            apply(&mut s, index, cmd).unwrap();
            shoal_raft::model::ViewDelta::for_agent(&s, index, &keys, "f", &mut held)
                .apply_to(&mut followed);
        }
        // An agent's whole view, and the one kept by deltas, carry the revocations only.
        let view = shoal_raft::model::view_for(&s, "f");
        assert_eq!(view.identities, followed.identities);
        assert!(view.tokens.is_empty() && view.ca.is_none());
        assert!(
            !view.identities.contains_key("bob"),
            "only revocations travel"
        );
        for state in [&s, &view, &followed] {
            let refusal = revoked(state, &old).expect("the old certificate is refused");
            assert_eq!(refusal.code(), tonic::Code::PermissionDenied);
            let msg = refusal.message();
            assert!(
                msg.contains("'alice'")
                    && msg.contains(&sha256_hex(&old)[..16])
                    && msg.contains("was revoked")
                    && msg.contains("shoal cluster trust add alice"),
                "{msg}"
            );
            assert!(revoked(state, &new).is_none(), "the new certificate works");
            assert!(revoked(state, &bob).is_none());
            assert!(revoked(state, &member).is_none(), "members are not clients");
            assert!(revoked(state, b"not a certificate").is_none());
        }
    }
}
