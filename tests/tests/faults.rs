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

/// The member orchestrating a move dies right after the commit point (the instance was
/// stopped for the move): the move is journaled in the cluster state, so the restarted
/// member finishes it and the instance runs on its new host (and the series' invariants
/// hold: never on two hosts at once).
#[test]
fn a_move_survives_its_orchestrator_dying_after_the_commit() {
    series(4, &[Fault::CrashAfterMoveCommit], 41);
}

fn sleep_ms(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

fn wait_dead(bed: &Bed, host: &str) {
    let t = Instant::now();
    while faults::fault::daemon_alive(bed, host) {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "the fail point on {host} never fired (built with `cargo build --workspace --bins`?)"
        );
        sleep_ms(200);
    }
}

/// The instance `name` as `list --format json` shows it.
fn instance(bed: &Bed, name: &str) -> Option<serde_json::Value> {
    bed.instances().into_iter().find(|i| i["name"] == name)
}

/// Waits until `name` runs on `host` with no move in progress; the time it took.
fn wait_running_on(bed: &Bed, name: &str, host: &str, limit: Duration) -> Duration {
    let t = Instant::now();
    loop {
        let i = instance(bed, name);
        if let Some(i) = &i {
            if i["status"] == "Running" && i["location"] == host && i["moving"] == "" {
                return t.elapsed();
            }
        }
        assert!(
            t.elapsed() < limit,
            "{name} not running on {host} with no move in progress within {limit:?}: {i:?}\n{}",
            bed.log_tails(30)
        );
        sleep_ms(300);
    }
}

/// Whether `host` holds a container named `name` (running or not).
fn has_container(bed: &Bed, host: &str, name: &str) -> bool {
    bed.host_dir(host)
        .join("containers")
        .join(name)
        .join("config.json")
        .exists()
}

fn move_on(bed: &Bed, via: &str, name: &str, to: &str) -> Option<shoal_tests::CliOutput> {
    bed.cli_on(
        via,
        &["move", name, "--target", to],
        Duration::from_secs(90),
    )
}

/// The member orchestrating a move dies before the commit point, in two ways: (1) it is
/// the target, dying with the layer imported (`mover-after-pull`) and staying down, so the
/// leader rolls the move back once it is silent; (2) a third member dies with the copy
/// done (`orchestrate-before-commit`) and restarts, and rolls its own move back. Each time
/// the instance runs again on its source, whole (a file written inside survives), the
/// target's partial copy goes, a second move meanwhile is refused naming the first, and
/// the move can then be retried.
#[test]
fn a_move_survives_its_orchestrator_dying_before_the_commit() {
    if !is_root() {
        eprintln!("skipping: end-to-end tests need root");
        return;
    }
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let bed = Bed::up(4, 1).expect("test bed up");
    let leader = bed.wait_leader(Duration::from_secs(30)).expect("a leader");
    let others: Vec<String> = bed.hosts().into_iter().filter(|h| *h != leader).collect();
    let (src, dst, third) = (others[0].clone(), others[1].clone(), others[2].clone());
    let name = "mv1";
    bed.launch(name, &["--target", &src, "-c", "cluster.evacuate=migrate"])
        .expect("launch");
    let out = bed
        .cli(
            &["exec", name, "--", "sh", "-c", "echo kept > /root/mark"],
            Duration::from_secs(30),
        )
        .expect("exec");
    assert_eq!(out.code, 0, "{}", out.stderr);

    // 1. The target orchestrates and dies with the layer imported; it stays down.
    bed.script(&["stop-host", &dst]).unwrap();
    bed.script(&[
        "start-host",
        &dst,
        "--env",
        "FAILPOINTS=mover-after-pull=return",
    ])
    .unwrap();
    bed.wait_all_online(Duration::from_secs(30)).unwrap();
    let out = move_on(&bed, &dst, name, &dst);
    wait_dead(&bed, &dst);
    assert!(
        out.as_ref().is_none_or(|o| o.code != 0),
        "the move reported success although its orchestrator died: {out:?}"
    );
    let took = wait_running_on(&bed, name, &src, Duration::from_secs(40));
    eprintln!(
        "1. orchestrator (and target) {dst} died before the commit: {name} runs again on {src} \
         {:.1} s later, {dst} still down",
        took.as_secs_f64()
    );
    bed.script(&["start-host", &dst]).unwrap();
    bed.wait_all_online(Duration::from_secs(30)).unwrap();
    let t = Instant::now();
    while has_container(&bed, &dst, name) {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "{dst} kept the partial copy of {name}"
        );
        sleep_ms(300);
    }

    // 2. A third member orchestrates and dies with the copy done; it comes back.
    bed.script(&["stop-host", &third]).unwrap();
    bed.script(&[
        "start-host",
        &third,
        "--env",
        "FAILPOINTS=orchestrate-before-commit=return",
    ])
    .unwrap();
    bed.wait_all_online(Duration::from_secs(30)).unwrap();
    let out = move_on(&bed, &third, name, &dst);
    wait_dead(&bed, &third);
    assert!(
        out.as_ref().is_none_or(|o| o.code != 0),
        "the move reported success although its orchestrator died: {out:?}"
    );
    // The journal shows the move, and a second move is refused naming it.
    let shown = instance(&bed, name).expect("listed");
    let refused = move_on(&bed, &leader, name, &leader).expect("second move answered");
    assert!(
        shown["moving"]
            .as_str()
            .is_some_and(|m| m.contains(&format!("to {dst}")) && m.contains(&third)),
        "no move in progress shown: {shown}"
    );
    assert!(
        refused.code != 0 && refused.stderr.contains("moving from"),
        "a second move was not refused clearly: {refused:?}"
    );
    bed.script(&["start-host", &third]).unwrap();
    let took = wait_running_on(&bed, name, &src, Duration::from_secs(40));
    eprintln!(
        "2. orchestrator {third} died with the copy on {dst} done: rolled back, {name} runs on \
         {src} {:.1} s after {third} restarted",
        took.as_secs_f64()
    );
    let t = Instant::now();
    while has_container(&bed, &dst, name) {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "{dst} kept the copy of a move that was rolled back"
        );
        sleep_ms(300);
    }

    // 3. The retried move works, with the data.
    let out = move_on(&bed, &leader, name, &dst).expect("retried move answered");
    assert_eq!(out.code, 0, "retried move failed: {}", out.stderr);
    wait_running_on(&bed, name, &dst, Duration::from_secs(30));
    let out = bed
        .cli(
            &["exec", name, "--", "cat", "/root/mark"],
            Duration::from_secs(30),
        )
        .expect("exec");
    assert_eq!(out.stdout.trim(), "kept", "{}", out.stderr);
    let t = Instant::now();
    while has_container(&bed, &src, name) {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "{src} kept its copy after the move"
        );
        sleep_ms(300);
    }
    bed.tb.down();
}
