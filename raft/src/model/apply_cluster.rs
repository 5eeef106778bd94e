//! Membership, tokens and identities: the cluster-administration part of `apply`.

use super::command::{Command, CommandResult};
use super::error::ModelError;
use super::state::{ClusterState, Token, TokenKind};

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
            let exists = match token.kind {
                TokenKind::Member => state.members.contains_key(&token.name),
                TokenKind::Client { .. } => state.identities.contains_key(&token.name),
            };
            if exists {
                return Err(ModelError::MemberExists(token.name.clone()));
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
            let id = state.members.values().map(|m| m.id).max().unwrap_or(0) + 1;
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
            let mut id = identity.clone();
            if let TokenKind::Client { role } = &token.kind {
                id.role = role.clone();
            }
            state.tokens.remove(&token.name);
            state.identities.insert(id.name.clone(), id);
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
            },
        };
        apply_cluster(&mut s, &enroll).unwrap();
        assert_eq!(
            s.identities["alice"].role, "viewer",
            "the token decides the role"
        );
    }
}
