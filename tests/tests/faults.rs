//! Fault suite, quick tier (issue 5). Three test beds, each taking a series of faults while
//! three clients write and read registers (image aliases) and launch, stop, start and
//! delete instances. After every fault: I1 (linearizable history, no acknowledged write
//! lost), I2 (one leader per term, from every member's own view), I3 (every replica at the
//! same applied index with the same state digest), I4 (no instance on two hosts at once,
//! from /proc); I5 where a host with recreatable instances is cut off; I6 (nothing left)
//! after `down`. The library is `shoal_tests::faults`; `shoal-soak` is the long tier.
//!
//! The test beds run one after another (this machine has two cores). Needs root.

use shoal_tests::faults::{self, Bed, Fault, HostWatch, LeaderWatch, Leaks, Rng, WorkloadConfig};
use shoal_tests::is_root;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn series(hosts: usize, list: &[Fault], seed: u64) {
    if !is_root() {
        eprintln!("skipping: end-to-end tests need root");
        return;
    }
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let t0 = Instant::now();
    let bed = Arc::new(Bed::up(hosts, 3).expect("test bed up"));
    let watch = HostWatch::start(&bed, Duration::from_millis(250));
    let mut leaders = LeaderWatch::start(&bed, Duration::from_millis(700));
    let mut rng = Rng::new(seed);
    let mut violations = Vec::new();
    for (i, f) in list.iter().enumerate() {
        let r = faults::round(
            &bed,
            &watch,
            &leaders,
            *f,
            &mut rng,
            i as u64,
            WorkloadConfig::default(),
        );
        eprintln!(
            "round {} {}: {} ({} calls, {} acknowledged writes, {} instance operations, {:.1} s)\n  instance operations: {}{}",
            r.round,
            f.name(),
            r.what,
            r.calls,
            r.acked_writes,
            r.instance_calls,
            r.took.as_secs_f64(),
            r.instance_outcomes,
            if r.violations.is_empty() {
                String::new()
            } else {
                format!("\n  VIOLATIONS: {:#?}", r.violations)
            }
        );
        assert!(r.calls > 5, "too few calls to say anything: {r:?}");
        violations.extend(r.violations);
    }
    if !violations.is_empty() {
        eprintln!("{}", bed.log_tails(40));
    }
    leaders.stop();
    let (samples, terms) = leaders.stats();
    eprintln!(
        "I2: {samples} leader samples over {terms} terms; I4: {} host scans",
        watch.scans()
    );
    drop(watch);
    let leaks = Leaks::note(&bed);
    drop(leaders);
    match Arc::try_unwrap(bed) {
        Ok(bed) => bed.tb.down(),
        Err(_) => panic!("the test bed is still shared"),
    }
    if let Err(e) = leaks.check() {
        violations.push(e);
    }
    eprintln!("series done in {:.0} s", t0.elapsed().as_secs_f64());
    assert!(violations.is_empty(), "{violations:#?}");
}

/// Consensus faults: the leader killed, paused and isolated; voters killed in a loop;
/// every member killed at once.
#[test]
fn consensus_faults_keep_every_invariant() {
    series(
        3,
        &[
            Fault::KillLeader,
            Fault::PauseLeader,
            Fault::IsolateLeader,
            Fault::KillVotersLoop,
            Fault::KillAll,
        ],
        11,
    );
}

/// Network and disk faults on four hosts: one-way partitions, packet loss, a worker host
/// cut off while running recreatable instances (I5), a full disk on a voter, and a host
/// joining and leaving while a voter is down.
#[test]
fn network_and_disk_faults_keep_every_invariant() {
    series(
        4,
        &[
            Fault::OneWayPartition,
            Fault::PacketLoss,
            Fault::IsolateWorker,
            Fault::DiskFull,
            Fault::MembershipChangeDuringFault,
        ],
        23,
    );
}

/// Crashes at fail points (in create, in a move before and after its commit), a corrupted
/// store refused at start, and a member replaced by one with a wiped disk.
#[test]
fn crashes_and_damaged_disks_keep_every_invariant() {
    series(
        4,
        &[
            Fault::CrashInCreate,
            Fault::CrashInMove,
            Fault::CorruptStore,
            Fault::ReplaceWiped,
        ],
        37,
    );
}

/// Known bug, reported and not fixed yet: the member orchestrating a move dies right
/// after the commit point (the instance was stopped for the move); no one starts it on
/// its new host, so it stays Stopped. Run with `--ignored` once moves are resumable.
#[test]
#[ignore = "known bug: a move whose orchestrator dies leaves the instance stopped"]
fn a_move_survives_its_orchestrator_dying_after_the_commit() {
    series(4, &[Fault::CrashAfterMoveCommit], 41);
}
