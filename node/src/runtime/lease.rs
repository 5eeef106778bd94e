//! The host's cluster lease as a file the monitors can watch: `<run_dir>/lease`.
//!
//! The daemon renews a lease with the cluster leader and, after every successful
//! heartbeat, writes the expiry here (Unix milliseconds as text, `1764390000000\n`,
//! replaced atomically). Each monitor whose container may be restarted elsewhere
//! (`fence`) reads it a few times a second and SIGKILLs its container once the expiry is
//! in the past, so a daemon that died (and so stopped renewing) looks to the cluster like
//! a host that fenced itself:
//!
//! ```text
//! daemon ── heartbeat ok ──► renew_lease(expiry) ──► <run_dir>/lease  (tmp + rename)
//!                                                         │ read ≤ every 250 ms
//! monitor (fence = true) ◄────────────────────────────────┘
//!   missing file        → no lease: never fence (single host, fencing disabled)
//!   unparsable file     → logged, treated as no lease
//!   expiry ≤ now        → SIGKILL init, state file records `fenced`
//! ```

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use super::error::RuntimeError;

/// The lease file's name inside the run dir (no container file can collide with it:
/// theirs end in `.sock` or `.state`).
pub(crate) const LEASE_FILE: &str = "lease";

/// Distinguishes temporary files of concurrent writers in one process.
static TMP_SEQ: AtomicU64 = AtomicU64::new(0);

/// What the lease file says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Lease {
    /// No file: the host holds no lease, nothing is ever fenced.
    Missing,
    /// The lease expires at this Unix time in milliseconds.
    ExpiresAt(i64),
    /// The file exists but could not be read or parsed (treated like `Missing`).
    Unreadable(String),
}

impl Lease {
    /// The expiry if the lease has expired at `now_ms`.
    pub(crate) fn expired_at(&self, now_ms: i64) -> Option<i64> {
        match self {
            Lease::ExpiresAt(at) if *at <= now_ms => Some(*at),
            _ => None,
        }
    }
}

pub(crate) fn lease_path(run_dir: &Path) -> PathBuf {
    run_dir.join(LEASE_FILE)
}

/// Wall-clock time in Unix milliseconds (the lease is a wall-clock instant).
pub(crate) fn unix_now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Parses the file's text: one integer, surrounding whitespace allowed.
pub(crate) fn parse_lease(text: &str) -> Result<i64, String> {
    let t = text.trim();
    t.parse::<i64>()
        .map_err(|e| format!("expected unix milliseconds, found {t:?}: {e}"))
}

/// Reads the lease file of `run_dir`.
pub(crate) fn read_lease(run_dir: &Path) -> Lease {
    let path = lease_path(run_dir);
    match fs::read_to_string(&path) {
        Ok(text) => match parse_lease(&text) {
            Ok(at) => Lease::ExpiresAt(at),
            Err(e) => Lease::Unreadable(format!("{}: {e}", path.display())),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Lease::Missing,
        Err(e) => Lease::Unreadable(format!("reading {}: {e}", path.display())),
    }
}

/// Replaces the lease file with `expires_at_ms` (temporary file + rename, so a reader
/// sees the old or the new expiry, never a torn one).
pub(crate) fn write_lease(run_dir: &Path, expires_at_ms: i64) -> Result<(), RuntimeError> {
    let path = lease_path(run_dir);
    let tmp = run_dir.join(format!(
        ".{LEASE_FILE}.tmp{}-{}",
        std::process::id(),
        TMP_SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let write = || -> std::io::Result<()> {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(format!("{expires_at_ms}\n").as_bytes())?;
        fs::rename(&tmp, &path)
    };
    write().map_err(|err| {
        let _ = fs::remove_file(&tmp);
        RuntimeError::io("-", "writing the lease", &path, err)
    })
}

/// Removes the lease file: from now on no monitor fences. Removing a missing file is fine.
pub(crate) fn remove_lease(run_dir: &Path) -> Result<(), RuntimeError> {
    let path = lease_path(run_dir);
    match fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(err) => Err(RuntimeError::io("-", "removing the lease", &path, err)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_unix_milliseconds() {
        assert_eq!(parse_lease("1764390000000\n"), Ok(1_764_390_000_000));
        assert_eq!(parse_lease("  42 "), Ok(42));
        assert_eq!(parse_lease("-5"), Ok(-5));
        for bad in ["", "\n", "12x", "1.5", "0x10", "1 2"] {
            assert!(parse_lease(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn only_a_past_expiry_counts_as_expired() {
        assert_eq!(Lease::ExpiresAt(100).expired_at(100), Some(100));
        assert_eq!(Lease::ExpiresAt(100).expired_at(150), Some(100));
        assert_eq!(Lease::ExpiresAt(100).expired_at(99), None);
        assert_eq!(Lease::Missing.expired_at(i64::MAX), None);
        assert_eq!(Lease::Unreadable("x".into()).expired_at(i64::MAX), None);
    }

    #[test]
    fn write_read_replace_and_remove() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_lease(dir.path()), Lease::Missing);
        write_lease(dir.path(), 1_764_390_000_000).unwrap();
        assert_eq!(
            fs::read_to_string(dir.path().join("lease")).unwrap(),
            "1764390000000\n"
        );
        write_lease(dir.path(), 7).unwrap();
        assert_eq!(read_lease(dir.path()), Lease::ExpiresAt(7));
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temp file left"
        );
        fs::write(dir.path().join("lease"), "soon").unwrap();
        assert!(matches!(read_lease(dir.path()), Lease::Unreadable(e) if e.contains("soon")));
        remove_lease(dir.path()).unwrap();
        assert_eq!(read_lease(dir.path()), Lease::Missing);
        remove_lease(dir.path()).unwrap();
        let gone = dir.path().join("missing");
        assert!(write_lease(&gone, 1)
            .unwrap_err()
            .to_string()
            .contains("writing the lease"));
    }
}
