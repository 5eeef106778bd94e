//! The fault suite (issue 5): a workload of cluster writes and instance operations from
//! several clients, faults injected through `deploy/local-cluster`, and the invariants
//! checked afterwards, from the hosts themselves where the cluster's own view could lie:
//!
//! - I1 no acknowledged write is lost and the register history is linearizable
//!   ([`invariants::check_history`]);
//! - I2 at most one leader per term, sampled from every member's own view
//!   ([`invariants::LeaderWatch`]);
//! - I3 all replicas end with the same applied state: applied index and sha256 of the state,
//!   each member answering for itself ([`invariants::converged`]);
//! - I4 no instance runs on two hosts at once, from `/proc` ([`invariants::HostWatch`]);
//! - I5 instances that may be recreated run again within 15 s ([`invariants::HostWatch::wait_running_elsewhere`]);
//! - I6 nothing is left after `down` ([`invariants::Leaks`]).
//!
//! The quick tier is `tests/tests/faults.rs`; the long tier is `shoal-soak`.

pub mod bed;
pub mod fault;
pub mod invariants;
pub mod workload;

pub use bed::Bed;
pub use fault::{inject, Fault};
pub use invariants::{HostWatch, LeaderWatch, Leaks};
pub use workload::{History, Workload, WorkloadConfig};

use std::sync::Arc;
use std::time::{Duration, Instant};

/// What one fault round did and found.
#[derive(Debug, Clone)]
pub struct RoundReport {
    pub round: u64,
    pub fault: Fault,
    pub what: String,
    pub calls: usize,
    pub acked_writes: usize,
    pub instance_calls: usize,
    /// Instance operations by outcome, with a few of their errors.
    pub instance_outcomes: String,
    pub took: Duration,
    /// Broken invariants (and faults that could not be carried out).
    pub violations: Vec<String>,
}

fn instance_outcomes(h: &History) -> String {
    use std::collections::BTreeMap;
    let mut by: BTreeMap<(String, String), usize> = BTreeMap::new();
    let mut errors: Vec<String> = Vec::new();
    for c in &h.instances {
        *by.entry((c.op.clone(), format!("{:?}", c.outcome)))
            .or_default() += 1;
        let first = c.error.lines().next().unwrap_or("").to_string();
        if !first.is_empty() && !errors.contains(&first) && errors.len() < 3 {
            errors.push(first);
        }
    }
    let counts: Vec<String> = by
        .iter()
        .map(|((op, o), n)| format!("{op} {o} {n}"))
        .collect();
    format!("{}; errors: {errors:?}", counts.join(", "))
}

/// One round: the workload runs while `fault` is injected and repaired; then I1 (this
/// round's history), I3 (convergence), I2 and I4 (so far) are checked, and the round's
/// instances are deleted.
pub fn round(
    bed: &Arc<Bed>,
    watch: &HostWatch,
    leaders: &LeaderWatch,
    fault: Fault,
    rng: &mut Rng,
    round: u64,
    mut cfg: WorkloadConfig,
) -> RoundReport {
    let t = Instant::now();
    cfg.key_prefix = format!("f{round}k");
    cfg.seed = rng.next_u64();
    let prefix = cfg.key_prefix.clone();
    let wl = Workload::start(bed, cfg);
    std::thread::sleep(Duration::from_millis(1500));
    let injected = inject(bed, fault, rng, watch, round);
    std::thread::sleep(Duration::from_millis(1500));
    let history = wl.finish();
    let mut violations = Vec::new();
    let what = match injected {
        Ok(w) => w,
        Err(e) => {
            violations.push(format!("{}: {e}", fault.name()));
            String::new()
        }
    };
    if let Err(e) = invariants::check_history(&history.registers) {
        violations.push(e);
    }
    if let Err(e) = invariants::converged(bed, Duration::from_secs(30)) {
        violations.push(e);
    }
    if let Err(e) = leaders.check() {
        violations.push(e);
    }
    if let Err(e) = watch.check() {
        violations.push(e);
    }
    // The round's instances go, so that rounds do not pile up containers.
    for i in bed.instances() {
        let name = i["name"].as_str().unwrap_or("");
        if name.starts_with(&prefix) {
            let _ = bed.cli(&["delete", "--force", name], Duration::from_secs(60));
        }
    }
    RoundReport {
        round,
        fault,
        what,
        calls: history.calls(),
        acked_writes: history.acked_writes(),
        instance_calls: history.instances.len(),
        instance_outcomes: instance_outcomes(&history),
        took: t.elapsed(),
        violations,
    }
}

/// A small xorshift generator: the suite is reproducible from its seed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// One element of `items`.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}
