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
    let detail = status.source().map(error_chain);
    anyhow::anyhow!(describe(
        status.code(),
        status.message(),
        detail.as_deref(),
        &conn.remote,
        &conn.address,
        &conn.tried,
    ))
}

/// The readable message for a status code and its server message.
pub(crate) fn describe(
    code: Code,
    message: &str,
    detail: Option<&str>,
    remote: &str,
    address: &str,
    tried: &[String],
) -> String {
    let mut msg = message.trim().to_string();
    if let Some(d) = detail.filter(|d| !d.is_empty() && !msg.contains(*d)) {
        msg = if msg.is_empty() {
            d.to_string()
        } else {
            format!("{msg}: {d}")
        };
    }
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
        Code::PermissionDenied => prefixed("permission denied", &msg),
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
            None,
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
    fn prefixes_are_not_repeated() {
        assert_eq!(
            d(Code::PermissionDenied, "role viewer may not create"),
            "permission denied: role viewer may not create"
        );
        assert_eq!(
            d(Code::PermissionDenied, "permission denied for x"),
            "permission denied for x"
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
    fn detail_is_appended_once() {
        let m = describe(
            Code::Unknown,
            "transport error",
            Some("connection reset"),
            "r",
            "a",
            &["a".into()],
        );
        assert_eq!(m, "server error: transport error: connection reset");
        let m = describe(
            Code::Unknown,
            "h2: connection reset",
            Some("connection reset"),
            "r",
            "a",
            &[],
        );
        assert_eq!(m, "server error: h2: connection reset");
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
