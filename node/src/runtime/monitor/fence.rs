//! Fencing: the monitor of a container that fences watches the host's lease file
//! (`<run_dir>/lease`, see `runtime/lease.rs`) and SIGKILLs init once the lease has
//! expired. The monitor outlives the daemon, so this still happens when shoald itself is
//! dead: to the cluster, a crashed daemon looks like a host that fenced itself.
//!
//! ```text
//! every loop turn, when due:  read lease ──► missing / unreadable ─► check again in 250 ms
//!                                        ├─► expires later ───────► check at min(250 ms, expiry)
//!                                        └─► expired ─────────────► SIGKILL init (pidfd), thaw,
//!                                                                   fenced = true; exit as after
//!                                                                   any stop (state file says so)
//! ```
//!
//! Reading one small file on a tmpfs costs microseconds, so polling is cheaper and simpler
//! than inotify (which would also miss a run dir replaced under us).

use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use super::super::super::lease::{read_lease, unix_now_ms, Lease};
use super::{Monitor, Stopping};
use crate::sys;

/// Longest interval between two reads of the lease file.
pub(crate) const LEASE_POLL: Duration = Duration::from_millis(250);

/// When the lease is read next, and the last problem logged (to log each one once).
pub(super) struct LeaseWatch {
    next_check: Instant,
    problem: Option<String>,
}

impl LeaseWatch {
    /// Due at once: a container started under an expired lease is fenced right away.
    pub(super) fn new() -> Self {
        Self {
            next_check: Instant::now(),
            problem: None,
        }
    }
}

/// What one read of the lease means.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    /// The lease expired at this Unix millisecond: fence now.
    Fence(i64),
    /// Read the lease again after this long.
    CheckIn(Duration),
}

fn judge(lease: &Lease, now_ms: i64) -> Verdict {
    if let Some(at) = lease.expired_at(now_ms) {
        return Verdict::Fence(at);
    }
    match lease {
        Lease::ExpiresAt(at) => {
            let left = Duration::from_millis(at.saturating_sub(now_ms).max(0) as u64);
            Verdict::CheckIn(left.min(LEASE_POLL))
        }
        Lease::Missing | Lease::Unreadable(_) => Verdict::CheckIn(LEASE_POLL),
    }
}

impl Monitor {
    /// Whether the lease matters now: the container fences and init still runs unfenced.
    fn watching_lease(&self) -> bool {
        self.cfg.fence && !self.fenced && self.exit_code.is_none()
    }

    /// When the loop must wake to read the lease, if it watches it.
    pub(super) fn lease_wakeup(&self) -> Option<Instant> {
        self.watching_lease().then_some(self.lease.next_check)
    }

    /// The daemon changed the fencing policy; the lease is read at once.
    pub(super) fn set_fence(&mut self, fence: bool) {
        if fence != self.cfg.fence {
            eprintln!("monitor {}: fencing on lease expiry: {fence}", self.name);
        }
        self.cfg.fence = fence;
        self.lease.next_check = Instant::now();
    }

    /// Reads the lease when due and fences if it has expired.
    pub(super) fn watch_lease(&mut self) {
        if !self.watching_lease() || Instant::now() < self.lease.next_check {
            return;
        }
        let lease = read_lease(&self.run_dir);
        let now_ms = unix_now_ms();
        match &lease {
            Lease::Unreadable(why) if self.lease.problem.as_ref() != Some(why) => {
                eprintln!(
                    "monitor {}: ignoring the lease (treated as no lease): {why}",
                    self.name
                );
                self.lease.problem = Some(why.clone());
            }
            Lease::Unreadable(_) => {}
            _ => self.lease.problem = None,
        }
        match judge(&lease, now_ms) {
            Verdict::Fence(at) => self.fence(at, now_ms),
            Verdict::CheckIn(d) => self.lease.next_check = Instant::now() + d,
        }
    }

    /// SIGKILLs init at once (the pid namespace goes with it); the loop then reaps it and
    /// exits as after any stop, recording `fenced` in the state file.
    fn fence(&mut self, expired_at: i64, now_ms: i64) {
        eprintln!(
            "monitor {}: FENCED: the host's lease expired at {expired_at} (unix ms, {} ms \
             ago): SIGKILL to init {}",
            self.name,
            now_ms - expired_at,
            self.launched.pid
        );
        if let Err(e) = sys::pidfd_send_signal(self.launched.pidfd.as_fd(), libc::SIGKILL) {
            eprintln!("monitor {}: fencing: SIGKILL to init: {e}", self.name);
        }
        // Killed first, thawed second: a frozen task dies on thaw without running again.
        if self.frozen {
            let _ = self.launched.cgroup.thaw();
            self.frozen = false;
        }
        self.fenced = true;
        let now = Instant::now();
        // Counts as a stop that has reached SIGKILL: exec and freeze are refused, stop
        // requests wait for the exit.
        let st = self.stop.get_or_insert_with(|| Stopping {
            signal: libc::SIGKILL,
            deadline: now,
            next_resend: now,
            killed: true,
            waiters: Vec::new(),
        });
        st.killed = true;
        st.deadline = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_expired_lease_fences() {
        assert_eq!(judge(&Lease::ExpiresAt(1000), 1000), Verdict::Fence(1000));
        assert_eq!(judge(&Lease::ExpiresAt(1000), 5000), Verdict::Fence(1000));
    }

    #[test]
    fn no_lease_never_fences() {
        for lease in [Lease::Missing, Lease::Unreadable("garbage".into())] {
            assert_eq!(judge(&lease, i64::MAX), Verdict::CheckIn(LEASE_POLL));
        }
    }

    #[test]
    fn the_next_read_lands_on_the_expiry() {
        assert_eq!(
            judge(&Lease::ExpiresAt(1000), 900),
            Verdict::CheckIn(Duration::from_millis(100))
        );
        assert_eq!(
            judge(&Lease::ExpiresAt(1_000_000), 900),
            Verdict::CheckIn(LEASE_POLL)
        );
        assert_eq!(
            judge(&Lease::ExpiresAt(i64::MAX), i64::MIN),
            Verdict::CheckIn(LEASE_POLL)
        );
    }
}
