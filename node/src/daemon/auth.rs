//! Who is calling, and may they: every RPC is checked against the role in the caller's
//! client certificate. The TLS layer has already verified the certificate against the
//! cluster CA (a connection without a certificate is let through TLS only so that `Join`
//! and `Enroll` can work, and is refused by every other call here).
//!
//! A member may forward a client's call to another member (exec to the instance's host);
//! it then names the original caller in the `x-shoal-on-behalf-of` header (`name;role`),
//! which is believed only from a member certificate.

use tonic::{Request, Status};

use crate::cluster::pki::{identity_of, Role};

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
