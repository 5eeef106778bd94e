//! Turning gRPC failures into messages for people.
//!
//! This is the one mapping from `tonic::Status` to what `shoal` prints. The
//! exit code is decided in `main`: 1 for every error, the command's own code
//! for `exec`.

use std::error::Error as StdError;

use tonic::{Code, Status};

use crate::connect::Connection;

/// Joins an error and its sources with ": ", skipping a source whose text the
/// previous message already contains (hyper and tonic often repeat it).
pub(crate) fn error_chain(e: &(dyn StdError + 'static)) -> String {
    let mut parts: Vec<String> = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(s) = cur {
        let text = s.to_string();
        if !text.is_empty() && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        cur = s.source();
    }
    parts.retain(|p| !p.is_empty());
    parts.join(": ")
}

/// Converts a failed call into an error naming where it was sent.
pub(crate) fn status_error(status: Status, conn: &Connection) -> anyhow::Error {
    let msg = match status.source() {
        // A source means the failure is local: the connection, not the server.
        Some(src) => transport_failure(&error_chain(src), &conn.remote, &conn.address),
        None => describe(
            status.code(),
            status.message(),
            &conn.remote,
            &conn.address,
            &conn.tried,
        ),
    };
    anyhow::anyhow!(msg)
}

/// Hint for a call the caller's role may not make.
pub(crate) const ROLE_HINT: &str = "your certificate's role does not allow this";

/// Hint for failures that look like a refused certificate.
pub(crate) const TLS_HINT: &str = "check ca, cert, key and server_name in the configuration";

/// Whether an error text looks like a TLS failure.
pub(crate) fn looks_like_tls(text: &str) -> bool {
    let t = text.to_ascii_lowercase();
    [
        "certificate",
        "handshake",
        "tls",
        "alert",
        "unknownissuer",
        "notvalidforname",
    ]
    .iter()
    .any(|w| t.contains(w))
}

/// The message for a call that failed on the connection.
pub(crate) fn transport_failure(chain: &str, remote: &str, address: &str) -> String {
    let mut detail = chain.trim();
    while let Some(rest) = detail.strip_prefix("transport error: ") {
        detail = rest;
    }
    let lower = detail.to_ascii_lowercase();
    let closed = [
        "broken pipe",
        "connection closed",
        "connection reset",
        "unexpected eof",
    ]
    .iter()
    .any(|w| lower.contains(w));
    // With TLS 1.3 a refused client certificate shows after the handshake,
    // as an alert or as the connection closing under the first request.
    let hint = if lower.contains("certificateexpired") || lower.contains("certificate expired") {
        ": the member refused the client certificate as expired; ask an admin for a new one (`shoal cluster trust add`, then `shoal remote add --token`)".to_string()
    } else if looks_like_tls(detail) {
        format!(": the member may have refused the client certificate; {TLS_HINT}")
    } else if closed {
        format!(": the member closed the connection; it may have stopped or refused the client certificate ({TLS_HINT})")
    } else {
        String::new()
    };
    format!("connection to {address} (remote {remote:?}) failed: {detail}{hint}")
}

/// The readable message for a status code and its server message.
pub(crate) fn describe(
    code: Code,
    message: &str,
    remote: &str,
    address: &str,
    tried: &[String],
) -> String {
    let msg = message.trim().to_string();
    let or_code = |m: &str| {
        if m.is_empty() {
            fallback(code).to_string()
        } else {
            m.to_string()
        }
    };
    match code {
        Code::Unavailable => {
            let tried = tried.join(", ");
            format!(
                "cluster unavailable: {} (remote {remote:?}: asked {address}; addresses tried: {tried})",
                or_code(&msg)
            )
        }
        // A revoked certificate: the server's message says what to do, no role is at fault.
        Code::PermissionDenied if msg.contains("was revoked") => {
            prefixed("permission denied", &msg)
        }
        Code::PermissionDenied => format!("{}: {ROLE_HINT}", prefixed("permission denied", &msg)),
        Code::Unauthenticated => format!(
            "{}: check cert and key in the configuration",
            prefixed("not authenticated", &msg)
        ),
        Code::DeadlineExceeded => prefixed("timed out", &msg),
        Code::Unimplemented => format!(
            "{}: the server may run an older version",
            prefixed("the server does not support this call", &msg)
        ),
        Code::ResourceExhausted => prefixed("out of resources", &msg),
        Code::Cancelled => prefixed("cancelled", &msg),
        Code::Aborted => format!("{}: try again", prefixed("conflicting change", &msg)),
        Code::Unknown | Code::Internal | Code::DataLoss => prefixed("server error", &msg),
        Code::Ok
        | Code::InvalidArgument
        | Code::NotFound
        | Code::AlreadyExists
        | Code::FailedPrecondition
        | Code::OutOfRange => or_code(&msg),
    }
}

/// Words for a code whose status carries no message.
fn fallback(code: Code) -> &'static str {
    match code {
        Code::NotFound => "not found",
        Code::AlreadyExists => "already exists",
        Code::InvalidArgument => "invalid argument",
        Code::FailedPrecondition => "not possible in the current state",
        Code::OutOfRange => "out of range",
        Code::Unavailable => "no member could serve the call",
        _ => "unexpected empty error",
    }
}

/// `prefix: msg`, without repeating a prefix the server already wrote.
fn prefixed(prefix: &str, msg: &str) -> String {
    if msg.is_empty() {
        prefix.to_string()
    } else if msg.to_ascii_lowercase().starts_with(prefix) {
        msg.to_string()
    } else {
        format!("{prefix}: {msg}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(code: Code, msg: &str) -> String {
        describe(
            code,
            msg,
            "local",
            "10.0.0.1:8443",
            &["10.0.0.9:8443".into(), "10.0.0.1:8443".into()],
        )
    }

    #[test]
    fn plain_codes_pass_the_message_through() {
        assert_eq!(
            d(Code::NotFound, "instance c1 not found"),
            "instance c1 not found"
        );
        assert_eq!(
            d(Code::AlreadyExists, "instance c1 already exists"),
            "instance c1 already exists"
        );
        assert_eq!(
            d(Code::InvalidArgument, "unknown config key foo"),
            "unknown config key foo"
        );
        assert_eq!(
            d(Code::FailedPrecondition, "instance c1 is stopped"),
            "instance c1 is stopped"
        );
        assert_eq!(d(Code::NotFound, ""), "not found");
    }

    #[test]
    fn unavailable_names_the_addresses() {
        let m = d(Code::Unavailable, "no leader");
        assert_eq!(
            m,
            "cluster unavailable: no leader (remote \"local\": asked 10.0.0.1:8443; addresses tried: 10.0.0.9:8443, 10.0.0.1:8443)"
        );
    }

    #[test]
    fn revoked_and_expired_certificates_say_what_to_do() {
        let m = d(
            Code::PermissionDenied,
            "client certificate 'alice' (fingerprint ab) was revoked; ask an admin",
        );
        assert!(
            m.starts_with("permission denied: client certificate 'alice'"),
            "{m}"
        );
        assert!(!m.contains(ROLE_HINT), "{m}");
        let m = transport_failure("received fatal alert: CertificateExpired", "r", "a:1");
        assert!(
            m.contains("refused the client certificate as expired"),
            "{m}"
        );
    }

    #[test]
    fn prefixes_are_not_repeated() {
        assert_eq!(
            d(Code::PermissionDenied, "role viewer may not create"),
            "permission denied: role viewer may not create: your certificate's role does not allow this"
        );
        assert_eq!(
            d(Code::PermissionDenied, "permission denied for x"),
            "permission denied for x: your certificate's role does not allow this"
        );
        assert_eq!(d(Code::Internal, ""), "server error");
        assert_eq!(d(Code::DeadlineExceeded, "wait"), "timed out: wait");
        assert!(d(Code::Unauthenticated, "").contains("check cert and key"));
        assert!(d(Code::Unimplemented, "").contains("older version"));
        assert_eq!(
            d(Code::Aborted, "version changed"),
            "conflicting change: version changed: try again"
        );
    }

    #[test]
    fn transport_failures_name_the_member() {
        let m = transport_failure("transport error: transport error: connection error: received fatal alert: DecryptError", "local", "a:1");
        assert_eq!(
            m,
            "connection to a:1 (remote \"local\") failed: connection error: received fatal alert: DecryptError: \
             the member may have refused the client certificate; check ca, cert, key and server_name in the configuration"
        );
        let m = transport_failure("connection error: broken pipe", "local", "a:1");
        assert!(m.starts_with("connection to a:1 (remote \"local\") failed: connection error: broken pipe: the member closed"), "{m}");
        let m = transport_failure("dns error: no such host", "local", "a:1");
        assert_eq!(
            m,
            "connection to a:1 (remote \"local\") failed: dns error: no such host"
        );
    }

    #[test]
    fn tls_words_are_spotted() {
        assert!(looks_like_tls(
            "a (invalid peer certificate: UnknownIssuer)"
        ));
        assert!(!looks_like_tls("a (connection refused)"));
    }

    #[derive(Debug)]
    struct Outer(std::io::Error);
    impl std::fmt::Display for Outer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "transport error")
        }
    }
    impl StdError for Outer {
        fn source(&self) -> Option<&(dyn StdError + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn chain_joins_sources() {
        let e = Outer(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "connection refused",
        ));
        assert_eq!(error_chain(&e), "transport error: connection refused");
    }
}
