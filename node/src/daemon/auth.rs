//! Who is calling, and may they: every RPC is checked against the role in the caller's
//! client certificate. The TLS layer has already verified the certificate against the
//! cluster CA; here we read its role and deny what it does not allow.

use tonic::{Request, Status};

use super::pki::{identity_of, Role};

/// The verified identity of a caller.
#[derive(Debug, Clone)]
pub struct Caller {
    pub name: String,
    pub role: Role,
}

/// Identifies the caller of `req` from its TLS client certificate.
pub fn caller<T>(req: &Request<T>) -> Result<Caller, Status> {
    let certs = req
        .peer_certs()
        .ok_or_else(|| Status::unauthenticated("a client certificate is required"))?;
    let leaf = certs
        .first()
        .ok_or_else(|| Status::unauthenticated("a client certificate is required"))?;
    let (name, role) = identity_of(leaf.as_ref()).ok_or_else(|| {
        tracing::warn!("refused a certificate without a shoal role");
        Status::permission_denied("the client certificate carries no shoal role")
    })?;
    Ok(Caller { name, role })
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
