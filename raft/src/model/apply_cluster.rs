//! Membership, tokens and identities: the cluster-administration part of `apply`.

use super::command::{Command, CommandResult};
use super::error::ModelError;
use super::state::{ClusterState, Token, TokenKind};
use std::cell::RefCell;
use std::collections::BTreeSet;

thread_local! {
    /// The node ids in the Raft membership as of the entry being applied, set by the state
    /// machine around each apply ([`with_raft_members`]).
    static RAFT_MEMBERS: RefCell<BTreeSet<u64>> = const { RefCell::new(BTreeSet::new()) };
}

/// Runs `f` (an apply) knowing the node ids in the Raft membership (voters and learners) as
/// of the entry being applied. Every replica applies the same entries with the same
/// membership, so the ids a join allocates stay deterministic. Without it (a bare model, as
/// in unit tests) no id is taken by the Raft membership.
pub(crate) fn with_raft_members<R>(ids: BTreeSet<u64>, f: impl FnOnce() -> R) -> R {
    let old = RAFT_MEMBERS.with(|m| m.replace(ids));
    let r = f();
    RAFT_MEMBERS.with(|m| *m.borrow_mut() = old);
    r
}

/// The node id for a joining member: the lowest one that no member holds and that is not
/// in the Raft membership. A removed member's id stays in the membership until the leader
/// takes it out; a member joining meanwhile (often the same host, wiped, under the same name
/// and address) must not inherit it, or the leader would take its empty log for the old
/// member's log going backwards. Low ids are reused once free, so the Raft group (ids up to
/// 5) keeps its places.
fn allocate_id(state: &ClusterState) -> u64 {
    let used: BTreeSet<u64> = state.members.values().map(|m| m.id).collect();
    RAFT_MEMBERS.with(|raft| {
        let raft = raft.borrow();
        (1..)
            .find(|id| !used.contains(id) && !raft.contains(id))
            .expect("a free node id")
    })
}

fn consume(
    state: &ClusterState,
    secret_hash: &str,
    now_ms: i64,
    want_member: bool,
) -> Result<Token, ModelError> {
    let token = state
        .tokens
        .values()
        .find(|t| t.secret_hash == secret_hash)
        .ok_or_else(|| {
            ModelError::TokenRefused("unknown token (already used, revoked or forged)".into())
        })?;
    if token.expires_at_ms <= now_ms {
        return Err(ModelError::TokenRefused(format!(
            "the token for '{}' expired; create a new one",
            token.name
        )));
    }
    let is_member = token.kind == TokenKind::Member;
    if is_member != want_member {
        return Err(ModelError::TokenRefused(if want_member {
            "this is a client token, not a join token".into()
        } else {
            "this is a join token, not a client token".into()
        }));
    }
    Ok(token.clone())
}

/// Whether a client named `name` holds a trusted (enrolled, not revoked) identity.
fn trusted(state: &ClusterState, name: &str) -> bool {
    state.identities.get(name).is_some_and(|i| i.trusted())
}

/// Applies the cluster-administration commands.
pub(crate) fn apply_cluster(
    state: &mut ClusterState,
    cmd: &Command,
) -> Result<CommandResult, ModelError> {
    match cmd {
        Command::Bootstrap { ca, member } => {
            if state.ca.is_some() {
                return Err(ModelError::AlreadyBootstrapped);
            }
            state.ca = Some(ca.clone());
            let mut m = member.clone();
            m.id = 1;
            state.members.insert(m.name.clone(), m);
            Ok(CommandResult::Done)
        }
        Command::CreateToken { token } => {
            match token.kind {
                TokenKind::Member if state.members.contains_key(&token.name) => {
                    return Err(ModelError::MemberExists(token.name.clone()));
                }
                TokenKind::Client { .. } if trusted(state, &token.name) => {
                    return Err(ModelError::IdentityExists(token.name.clone()));
                }
                _ => {}
            }
            state.tokens.insert(token.name.clone(), token.clone());
            Ok(CommandResult::Done)
        }
        Command::Join {
            secret_hash,
            now_ms,
            member,
        } => {
            let token = consume(state, secret_hash, *now_ms, true)?;
            if token.name != member.name {
                return Err(ModelError::TokenRefused(format!(
                    "the token was issued for '{}', not '{}'",
                    token.name, member.name
                )));
            }
            if state.members.contains_key(&member.name) {
                return Err(ModelError::MemberExists(member.name.clone()));
            }
            let id = allocate_id(state);
            let mut m = member.clone();
            m.id = id;
            state.tokens.remove(&token.name);
            state.members.insert(m.name.clone(), m);
            Ok(CommandResult::Member(id))
        }
        Command::Enroll {
            secret_hash,
            now_ms,
            identity,
        } => {
            let token = consume(state, secret_hash, *now_ms, false)?;
            if token.name != identity.name {
                return Err(ModelError::TokenRefused(format!(
                    "the token was issued for '{}', not '{}'",
                    token.name, identity.name
                )));
            }
            if trusted(state, &identity.name) {
                return Err(ModelError::IdentityExists(identity.name.clone()));
            }
            let mut id = identity.clone();
            if let TokenKind::Client { role } = &token.kind {
                id.role = role.clone();
            }
            // A name enrolled again keeps the certificates revoked before.
            id.revoked_at_ms = None;
            id.revoked = state
                .identities
                .get(&id.name)
                .map(|old| old.revoked.clone())
                .unwrap_or_default();
            state.tokens.remove(&token.name);
            state.identities.insert(id.name.clone(), id);
            Ok(CommandResult::Done)
        }
        Command::RevokeIdentity { name, now_ms } => {
            let pending = state
                .tokens
                .get(name)
                .is_some_and(|t| matches!(t.kind, TokenKind::Client { .. }));
            match state.identities.get(name) {
                Some(id) if !id.trusted() && !pending => {
                    return Err(ModelError::IdentityRevoked(name.clone()))
                }
                None if !pending => return Err(ModelError::IdentityNotFound(name.clone())),
                _ => {}
            }
            if pending {
                state.tokens.remove(name);
            }
            if let Some(id) = state.identities.get_mut(name) {
                if id.revoked_at_ms.is_none() {
                    id.revoked_at_ms = Some(*now_ms);
                    let fp = id.fingerprint.to_ascii_lowercase();
                    id.revoked.insert(fp);
                }
            }
            Ok(CommandResult::Done)
        }
        Command::RemoveMember { name } => {
            if state.members.remove(name).is_none() {
                return Err(ModelError::MemberNotFound(name.clone()));
            }
            Ok(CommandResult::Done)
        }
        _ => unreachable!("apply_cluster only receives cluster commands"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::state::{CaRecord, Member};

    fn member(name: &str) -> Member {
        Member {
            id: 0,
            name: name.into(),
            address: format!("{name}:8443"),
            architecture: "x86_64".into(),
            failure_domain: "default".into(),
            joined_at_ms: 0,
            ..Default::default()
        }
    }

    fn token(name: &str, hash: &str, expires: i64, kind: TokenKind) -> Command {
        Command::CreateToken {
            token: Token {
                name: name.into(),
                kind,
                secret_hash: hash.into(),
                created_at_ms: 0,
                expires_at_ms: expires,
            },
        }
    }

    fn boot() -> ClusterState {
        let mut s = ClusterState::default();
        let ca = CaRecord {
            cert_pem: "c".into(),
            key_pem: "k".into(),
        };
        apply_cluster(
            &mut s,
            &Command::Bootstrap {
                ca,
                member: member("a"),
            },
        )
        .unwrap();
        s
    }

    #[test]
    fn join_consumes_a_token_once_and_allocates_ids() {
        let mut s = boot();
        apply_cluster(&mut s, &token("b", "h1", 100, TokenKind::Member)).unwrap();
        let join = |hash: &str, now, name: &str| Command::Join {
            secret_hash: hash.into(),
            now_ms: now,
            member: member(name),
        };
        assert!(apply_cluster(&mut s, &join("forged", 1, "b")).is_err());
        assert!(
            apply_cluster(&mut s, &join("h1", 1, "c")).is_err(),
            "wrong name"
        );
        assert_eq!(
            apply_cluster(&mut s, &join("h1", 1, "b")).unwrap(),
            CommandResult::Member(2)
        );
        let again = apply_cluster(&mut s, &join("h1", 2, "b")).unwrap_err();
        assert!(again.to_string().contains("already used"), "{again}");
        apply_cluster(&mut s, &token("c", "h2", 100, TokenKind::Member)).unwrap();
        let expired = apply_cluster(&mut s, &join("h2", 100, "c")).unwrap_err();
        assert!(expired.to_string().contains("expired"), "{expired}");
        assert!(apply_cluster(
            &mut s,
            &Command::Bootstrap {
                ca: CaRecord {
                    cert_pem: String::new(),
                    key_pem: String::new()
                },
                member: member("z"),
            }
        )
        .is_err());
    }

    #[test]
    fn join_takes_the_lowest_id_neither_a_member_nor_a_raft_member_holds() {
        let mut s = boot();
        let join = |s: &mut ClusterState, name: &str, hash: &str| {
            apply_cluster(s, &token(name, hash, 100, TokenKind::Member)).unwrap();
            let cmd = Command::Join {
                secret_hash: hash.into(),
                now_ms: 1,
                member: member(name),
            };
            apply_cluster(s, &cmd).unwrap()
        };
        assert_eq!(join(&mut s, "b", "h1"), CommandResult::Member(2));
        assert_eq!(join(&mut s, "c", "h2"), CommandResult::Member(3));
        let remove = Command::RemoveMember { name: "b".into() };
        apply_cluster(&mut s, &remove).unwrap();
        // b's id 2 is still in the Raft membership: the new b gets another.
        let raft: BTreeSet<u64> = [1, 2, 3].into();
        let r = with_raft_members(raft, || join(&mut s, "b", "h3"));
        assert_eq!(r, CommandResult::Member(4));
        apply_cluster(&mut s, &remove).unwrap();
        // Out of the membership: 2 is reused (low ids are the Raft group's places).
        let raft: BTreeSet<u64> = [1, 3, 4].into();
        let r = with_raft_members(raft, || join(&mut s, "b", "h4"));
        assert_eq!(r, CommandResult::Member(2));
        // The context does not outlive the call.
        assert_eq!(join(&mut s, "e", "h5"), CommandResult::Member(4));
    }

    #[test]
    fn client_tokens_do_not_join_and_set_the_role() {
        let mut s = boot();
        let kind = TokenKind::Client {
            role: "viewer".into(),
        };
        apply_cluster(&mut s, &token("alice", "h", 100, kind)).unwrap();
        let join = Command::Join {
            secret_hash: "h".into(),
            now_ms: 1,
            member: member("alice"),
        };
        assert!(apply_cluster(&mut s, &join).is_err());
        let enroll = Command::Enroll {
            secret_hash: "h".into(),
            now_ms: 1,
            identity: crate::model::state::Identity {
                name: "alice".into(),
                role: "admin".into(),
                fingerprint: "f".into(),
                created_at_ms: 1,
                revoked_at_ms: None,
                revoked: Default::default(),
            },
        };
        apply_cluster(&mut s, &enroll).unwrap();
        assert_eq!(
            s.identities["alice"].role, "viewer",
            "the token decides the role"
        );
    }

    fn enroll(hash: &str, name: &str, fingerprint: &str) -> Command {
        Command::Enroll {
            secret_hash: hash.into(),
            now_ms: 1,
            identity: crate::model::state::Identity {
                name: name.into(),
                role: String::new(),
                fingerprint: fingerprint.into(),
                created_at_ms: 1,
                revoked_at_ms: None,
                revoked: Default::default(),
            },
        }
    }

    fn client(role: &str) -> TokenKind {
        TokenKind::Client { role: role.into() }
    }

    fn revoke(name: &str, now_ms: i64) -> Command {
        Command::RevokeIdentity {
            name: name.into(),
            now_ms,
        }
    }

    #[test]
    fn a_revoked_certificate_stays_refused_even_after_a_new_enrolment() {
        let mut s = boot();
        apply_cluster(&mut s, &token("alice", "h1", 100, client("operator"))).unwrap();
        apply_cluster(&mut s, &enroll("h1", "alice", "f1")).unwrap();
        assert!(s.identities["alice"].trusted());
        assert!(s.revocation("alice", "f1").is_none());
        // A trusted client gets no second token, and cannot be enrolled over.
        let again = apply_cluster(&mut s, &token("alice", "h2", 100, client("admin")));
        assert_eq!(again, Err(ModelError::IdentityExists("alice".into())));

        apply_cluster(&mut s, &revoke("alice", 7)).unwrap();
        let id = &s.identities["alice"];
        assert!(!id.trusted() && id.revoked_at_ms == Some(7));
        assert_eq!(
            s.revocation("alice", "F1").map(|i| i.name.as_str()),
            Some("alice")
        );
        assert!(
            s.revocation("bob", "f1").is_none(),
            "revocations are per name"
        );
        assert_eq!(
            apply_cluster(&mut s, &revoke("alice", 8)),
            Err(ModelError::IdentityRevoked("alice".into()))
        );
        assert_eq!(
            apply_cluster(&mut s, &revoke("nobody", 8)),
            Err(ModelError::IdentityNotFound("nobody".into()))
        );

        // A new certificate for the same name: trusted, the old one still refused.
        apply_cluster(&mut s, &token("alice", "h3", 100, client("viewer"))).unwrap();
        apply_cluster(&mut s, &enroll("h3", "alice", "f2")).unwrap();
        let id = &s.identities["alice"];
        assert!(id.trusted() && id.role == "viewer" && id.revoked_at_ms.is_none());
        assert!(s.revocation("alice", "f1").is_some());
        assert!(s.revocation("alice", "f2").is_none());
        apply_cluster(&mut s, &revoke("alice", 9)).unwrap();
        assert!(s.revocation("alice", "f1").is_some() && s.revocation("alice", "f2").is_some());
    }

    #[test]
    fn revoking_a_pending_client_cancels_its_token() {
        let mut s = boot();
        apply_cluster(&mut s, &token("bob", "h1", 100, client("viewer"))).unwrap();
        apply_cluster(&mut s, &revoke("bob", 2)).unwrap();
        assert!(s.tokens.is_empty() && s.identities.is_empty());
        let err = apply_cluster(&mut s, &enroll("h1", "bob", "f")).unwrap_err();
        assert!(err.to_string().contains("already used, revoked"), "{err}");
        // A member's join token is not a client's: revoking its name does not cancel it.
        apply_cluster(&mut s, &token("c", "h2", 100, TokenKind::Member)).unwrap();
        assert_eq!(
            apply_cluster(&mut s, &revoke("c", 3)),
            Err(ModelError::IdentityNotFound("c".into()))
        );
        assert!(s.tokens.contains_key("c"));
    }

    #[test]
    fn one_token_enrols_once_when_two_use_it_at_once() {
        // Two enrolments with one token race to the log: the first applied wins, the
        // second is refused and changes nothing.
        let mut s = boot();
        apply_cluster(&mut s, &token("carol", "h", 100, client("viewer"))).unwrap();
        apply_cluster(&mut s, &enroll("h", "carol", "first")).unwrap();
        let before = s.clone();
        let err = apply_cluster(&mut s, &enroll("h", "carol", "second")).unwrap_err();
        assert!(matches!(err, ModelError::TokenRefused(_)), "{err}");
        assert_eq!(s, before);
        assert_eq!(s.identities["carol"].fingerprint, "first");
    }
}
