//! The faults. Each one breaks something through `deploy/local-cluster`, lets the workload
//! run into it, repairs it, and checks what that fault promises (a refused corrupt store,
//! an interrupted create finished after restart, an interrupted move leaving the instance
//! whole on one host, recreation within the bound). Every fault leaves the cluster with the
//! same hosts, all members again, so faults can follow each other in any order.

use super::bed::Bed;
use super::invariants::HostWatch;
use super::Rng;
use std::time::{Duration, Instant};

/// The faults the suite knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fault {
    KillLeader,
    KillVotersLoop,
    KillAll,
    PauseLeader,
    IsolateLeader,
    IsolateWorker,
    OneWayPartition,
    PacketLoss,
    DiskFull,
    CrashInCreate,
    CrashInMove,
    /// Known to fail (reported): the member orchestrating a move dies after the commit
    /// point, and nobody starts the instance on its new host. Not in `ALL`.
    CrashAfterMoveCommit,
    CorruptStore,
    MembershipChangeDuringFault,
    ReplaceWiped,
}

impl Fault {
    pub const ALL: [Fault; 14] = [
        Fault::KillLeader,
        Fault::KillVotersLoop,
        Fault::KillAll,
        Fault::PauseLeader,
        Fault::IsolateLeader,
        Fault::IsolateWorker,
        Fault::OneWayPartition,
        Fault::PacketLoss,
        Fault::DiskFull,
        Fault::CrashInCreate,
        Fault::CrashInMove,
        Fault::CorruptStore,
        Fault::MembershipChangeDuringFault,
        Fault::ReplaceWiped,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Fault::KillLeader => "kill-leader",
            Fault::KillVotersLoop => "kill-voters-loop",
            Fault::KillAll => "kill-all",
            Fault::PauseLeader => "pause-leader",
            Fault::IsolateLeader => "isolate-leader",
            Fault::IsolateWorker => "isolate-worker",
            Fault::OneWayPartition => "one-way-partition",
            Fault::PacketLoss => "packet-loss",
            Fault::DiskFull => "disk-full",
            Fault::CrashInCreate => "crash-in-create",
            Fault::CrashInMove => "crash-in-move",
            Fault::CrashAfterMoveCommit => "crash-after-move-commit",
            Fault::CorruptStore => "corrupt-store",
            Fault::MembershipChangeDuringFault => "membership-change-during-fault",
            Fault::ReplaceWiped => "replace-wiped",
        }
    }
}

fn sleep_ms(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

fn e(err: anyhow::Error) -> String {
    format!("{err:#}")
}

/// Injects `fault` and repairs it. `Ok` describes what happened; `Err` is a broken promise
/// or a fault that could not be set up.
pub fn inject(
    bed: &Bed,
    fault: Fault,
    rng: &mut Rng,
    watch: &HostWatch,
    round: u64,
) -> Result<String, String> {
    let leader = bed.wait_leader(Duration::from_secs(20)).map_err(e)?;
    let hosts = live_hosts(bed);
    let others: Vec<String> = hosts.iter().filter(|h| **h != leader).cloned().collect();
    let voters = bed.voters();
    let follower_voters: Vec<String> = voters.iter().filter(|h| **h != leader).cloned().collect();
    let r = match fault {
        Fault::KillLeader => {
            bed.script(&["stop-host", &leader]).map_err(e)?;
            sleep_ms(2000 + rng.below(2000));
            bed.script(&["start-host", &leader]).map_err(e)?;
            Ok(format!("killed leader {leader} and restarted it"))
        }
        Fault::KillVotersLoop => {
            let mut killed = Vec::new();
            for _ in 0..3 {
                let voters = bed.voters();
                let v = if voters.is_empty() {
                    leader.clone()
                } else {
                    rng.pick(&voters).clone()
                };
                bed.script(&["stop-host", &v]).map_err(e)?;
                sleep_ms(1000 + rng.below(2000));
                bed.script(&["start-host", &v]).map_err(e)?;
                killed.push(v);
                sleep_ms(1000);
            }
            Ok(format!("killed voters {killed:?} one after another"))
        }
        Fault::KillAll => {
            for h in &hosts {
                bed.script(&["stop-host", h]).map_err(e)?;
            }
            sleep_ms(1000 + rng.below(1000));
            for h in &hosts {
                bed.script(&["start-host", h]).map_err(e)?;
            }
            Ok(format!("killed every member {hosts:?} and restarted them"))
        }
        Fault::PauseLeader => {
            bed.script(&["pause", &leader]).map_err(e)?;
            sleep_ms(3000 + rng.below(2000));
            bed.script(&["resume", &leader]).map_err(e)?;
            Ok(format!("paused leader {leader} (SIGSTOP) and resumed it"))
        }
        Fault::IsolateLeader => {
            bed.script(&["isolate", &leader]).map_err(e)?;
            sleep_ms(3000 + rng.below(2000));
            bed.script(&["heal", &leader]).map_err(e)?;
            Ok(format!(
                "isolated leader {leader} in a minority and healed it"
            ))
        }
        Fault::IsolateWorker => isolate_worker(bed, &others, rng, watch, round),
        Fault::OneWayPartition => {
            let f = rng.pick(&follower_voters).clone();
            let (a, b) = if rng.below(2) == 0 {
                (leader.clone(), f)
            } else {
                (f, leader.clone())
            };
            bed.script(&["partition", &a, &b, "--one-way"]).map_err(e)?;
            sleep_ms(4000 + rng.below(2000));
            bed.script(&["unpartition"]).map_err(e)?;
            Ok(format!(
                "dropped packets from {a} to {b} (one way), then healed"
            ))
        }
        Fault::PacketLoss => {
            let pct = 10 + rng.below(25);
            let on: Vec<String> = if rng.below(2) == 0 {
                vec![leader.clone()]
            } else {
                hosts.clone()
            };
            for h in &on {
                bed.script(&["loss", h, &pct.to_string()]).map_err(e)?;
            }
            sleep_ms(5000 + rng.below(2000));
            bed.script(&["unpartition"]).map_err(e)?;
            Ok(format!("{pct}% packet loss on {on:?}, then none"))
        }
        Fault::DiskFull => disk_full(bed, &follower_voters, rng),
        Fault::CrashInCreate => crash_in_create(bed, &hosts, rng, round),
        Fault::CrashInMove => crash_in_move(bed, &hosts, &leader, rng, round, false),
        Fault::CrashAfterMoveCommit => crash_in_move(bed, &hosts, &leader, rng, round, true),
        Fault::CorruptStore => corrupt_store(bed, &follower_voters, rng),
        Fault::MembershipChangeDuringFault => membership_change(bed, &follower_voters, rng),
        Fault::ReplaceWiped => replace_wiped(bed, &others, rng),
    };
    // Repaired: every host is a member again.
    bed.wait_all_online(Duration::from_secs(45))
        .map_err(|err| format!("after {}: {err:#}", fault.name()))?;
    r
}

/// Hosts with a member on them (data and a daemon, or a daemon stopped by a fault).
pub fn live_hosts(bed: &Bed) -> Vec<String> {
    bed.hosts()
}

/// Whether host `host`'s shoald is running (from `local-cluster status`).
pub fn daemon_alive(bed: &Bed, host: &str) -> bool {
    bed.tb
        .script(&["status"])
        .map(|o| {
            o.stdout
                .lines()
                .any(|l| l.starts_with(&format!("{host}\t")) && !l.ends_with("shoald=-"))
        })
        .unwrap_or(false)
}

fn wait_daemon_dead(bed: &Bed, host: &str, limit: Duration) -> Result<(), String> {
    let t = Instant::now();
    while daemon_alive(bed, host) {
        if t.elapsed() > limit {
            return Err(format!(
                "the fail point on {host} never fired within {limit:?} (is shoald built with \
                 the failpoints feature? run `cargo build --workspace --bins`)"
            ));
        }
        sleep_ms(200);
    }
    Ok(())
}

/// Waits until `name` is Running at `location` (any location if `None`) in the cluster's view.
fn wait_running(
    bed: &Bed,
    name: &str,
    location: Option<&str>,
    limit: Duration,
) -> Result<String, String> {
    let t = Instant::now();
    loop {
        let list = bed.instances();
        if let Some(i) = list.iter().find(|i| i["name"] == name) {
            let loc = i["location"].as_str().unwrap_or("").to_string();
            if i["status"] == "Running" && location.is_none_or(|l| l == loc) {
                return Ok(loc);
            }
            if t.elapsed() > limit {
                return Err(format!(
                    "{name} not running{} within {limit:?}: {i}",
                    location.map(|l| format!(" on {l}")).unwrap_or_default()
                ));
            }
        } else if t.elapsed() > limit {
            return Err(format!("{name} missing from the list"));
        }
        sleep_ms(300);
    }
}

fn delete(bed: &Bed, names: &[String]) {
    for n in names {
        let _ = bed.cli(&["delete", "--force", n], Duration::from_secs(60));
    }
}

fn isolate_worker(
    bed: &Bed,
    others: &[String],
    rng: &mut Rng,
    watch: &HostWatch,
    round: u64,
) -> Result<String, String> {
    let worker = rng.pick(others).clone();
    let names: Vec<String> = (0..2).map(|i| format!("s{round}-{i}")).collect();
    for n in &names {
        bed.launch(n, &["--target", &worker, "-c", "cluster.evacuate=auto"])
            .map_err(e)?;
    }
    // Seen running there from the host itself first.
    let t = Instant::now();
    while names
        .iter()
        .any(|n| watch.host_of(n).as_deref() != Some(worker.as_str()))
    {
        if t.elapsed() > Duration::from_secs(10) {
            return Err(format!(
                "sentinels {names:?} never seen running on {worker}"
            ));
        }
        sleep_ms(200);
    }
    let since = bed.now_us();
    bed.script(&["isolate", &worker]).map_err(e)?;
    let r = watch.wait_running_elsewhere(&names, &worker, since, Duration::from_secs(15));
    bed.script(&["heal", &worker]).map_err(e)?;
    let took = r?;
    // The worker, back, removes its stale copies (I4 watches meanwhile).
    let containers = bed.host_dir(&worker).join("containers");
    let t = Instant::now();
    loop {
        let left: Vec<String> = names
            .iter()
            .filter(|n| containers.join(n).exists())
            .cloned()
            .collect();
        if left.is_empty() {
            break;
        }
        if t.elapsed() > Duration::from_secs(30) {
            return Err(format!("stale copies left on {worker}: {left:?}"));
        }
        sleep_ms(300);
    }
    delete(bed, &names);
    Ok(format!(
        "isolated worker {worker} running {names:?}: recreated elsewhere after {took:?}, stale copies removed"
    ))
}

fn disk_full(bed: &Bed, voters: &[String], rng: &mut Rng) -> Result<String, String> {
    let v = rng.pick(voters).clone();
    let raft = bed.host_dir(&v).join("raft");
    let limited = bed.host_dir(&v).join("mntns.pid").exists();
    if !limited {
        bed.script(&["stop-host", &v]).map_err(e)?;
        bed.script(&["limit-disk", &v, "96M"]).map_err(e)?;
        bed.script(&["start-host", &v]).map_err(e)?;
    }
    bed.script(&["fill-disk", &v]).map_err(e)?;
    sleep_ms(5000 + rng.below(2000));
    bed.script(&["free-disk", &v]).map_err(e)?;
    // A member whose Raft core stopped on the full disk fences, waits for room and restarts
    // itself (2 s, then backoff). sled may damage its file when a flush hits ENOSPC: the
    // member then refuses to start with an error naming the store, and is replaced with a
    // fresh disk (the documented recovery), as for a corrupted store.
    sleep_ms(3000);
    let restarted = if !daemon_alive(bed, &v) {
        let out = bed.tb.script(&["start-host", &v]).map_err(e)?;
        if out.code == 0 {
            " (it had stopped; restarted)".to_string()
        } else {
            let log =
                std::fs::read_to_string(bed.host_dir(&v).join("shoald.log")).unwrap_or_default();
            let why = log
                .lines()
                .rev()
                .find(|l| l.contains("raft store"))
                .ok_or_else(|| {
                    format!("{v} did not start after the disk was freed: {}", out.stderr)
                })?
                .to_string();
            replace(bed, &v)?;
            format!(" (its store was damaged by the full disk and refused at start: {why}; replaced with a fresh disk)")
        }
    } else {
        String::new()
    };
    let _ = raft;
    Ok(format!(
        "filled voter {v}'s disk for a while, then freed it{restarted}"
    ))
}

fn crash_in_create(
    bed: &Bed,
    hosts: &[String],
    rng: &mut Rng,
    round: u64,
) -> Result<String, String> {
    let h = rng.pick(hosts).clone();
    let name = format!("k{round}");
    bed.script(&["stop-host", &h]).map_err(e)?;
    bed.script(&[
        "start-host",
        &h,
        "--env",
        "FAILPOINTS=agent-after-create=return",
    ])
    .map_err(e)?;
    bed.wait_all_online(Duration::from_secs(30)).map_err(e)?;
    let out = bed.cli(
        &[
            "launch",
            "busybox",
            &name,
            "--target",
            &h,
            "--no-wait",
            "-c",
            "limits.memory=32MiB",
        ],
        Duration::from_secs(30),
    );
    if out.as_ref().is_none_or(|o| o.code != 0) {
        let _ = bed.script(&["start-host", &h]);
        return Err(format!("launch {name} on {h}: {out:?}"));
    }
    wait_daemon_dead(bed, &h, Duration::from_secs(30))?;
    bed.script(&["start-host", &h]).map_err(e)?;
    wait_running(bed, &name, Some(&h), Duration::from_secs(30))?;
    delete(bed, std::slice::from_ref(&name));
    Ok(format!(
        "{h}'s shoald died between create and start of {name}; after restart it runs"
    ))
}

fn crash_in_move(
    bed: &Bed,
    hosts: &[String],
    leader: &str,
    rng: &mut Rng,
    round: u64,
    after_commit: bool,
) -> Result<String, String> {
    let src = rng.pick(hosts).clone();
    let others: Vec<String> = hosts.iter().filter(|h| **h != src).cloned().collect();
    let dst = rng.pick(&others).clone();
    let name = format!("m{round}");
    bed.launch(&name, &["--target", &src, "-c", "cluster.evacuate=migrate"])
        .map_err(e)?;
    // 1. The target dies with the layer imported, before the commit.
    bed.script(&["stop-host", &dst]).map_err(e)?;
    bed.script(&[
        "start-host",
        &dst,
        "--env",
        "FAILPOINTS=mover-after-pull=return",
    ])
    .map_err(e)?;
    bed.wait_all_online(Duration::from_secs(30)).map_err(e)?;
    // Orchestrated by a third member, which outlives the target.
    let third: Vec<String> = others.iter().filter(|h| **h != dst).cloned().collect();
    let orch1 = rng.pick(&third).clone();
    let out = bed.cli_on(
        &orch1,
        &["move", &name, "--target", &dst],
        Duration::from_secs(90),
    );
    wait_daemon_dead(bed, &dst, Duration::from_secs(30))?;
    if out.as_ref().is_some_and(|o| o.code == 0) {
        return Err(format!(
            "move of {name} succeeded although {dst} died mid-move: {out:?}"
        ));
    }
    bed.script(&["start-host", &dst]).map_err(e)?;
    wait_running(bed, &name, Some(&src), Duration::from_secs(30))
        .map_err(|err| format!("after {dst} died mid-move: {err}"))?;
    // Its partial copy is removed, and the move can be retried once the target is Online
    // again (a move to an offline host is refused, clearly, and that is not the point here).
    bed.wait_all_online(Duration::from_secs(30)).map_err(e)?;
    let out = bed
        .cli(&["move", &name, "--target", &dst], Duration::from_secs(90))
        .ok_or("retried move timed out")?;
    if out.code != 0 {
        return Err(format!(
            "retried move of {name} to {dst} failed: {}",
            out.stderr
        ));
    }
    wait_running(bed, &name, Some(&dst), Duration::from_secs(30))?;
    if !after_commit {
        delete(bed, std::slice::from_ref(&name));
        return Ok(format!(
            "move {src}->{dst} (orchestrated by {orch1}) with the target dying before the \
             commit: stayed running on {src}; the retried move worked"
        ));
    }
    // 2. The orchestrating member (not the leader, so the commit survives) dies right
    //    after the commit point: the instance must still end up running on the target.
    let orch: Vec<String> = hosts.iter().filter(|h| **h != leader).cloned().collect();
    let o = rng.pick(&orch).clone();
    let back = src.clone();
    bed.script(&["stop-host", &o]).map_err(e)?;
    bed.script(&[
        "start-host",
        &o,
        "--env",
        "FAILPOINTS=orchestrate-after-relocate=return",
    ])
    .map_err(e)?;
    bed.wait_all_online(Duration::from_secs(30)).map_err(e)?;
    let _ = bed.cli_on(
        &o,
        &["move", &name, "--target", &back],
        Duration::from_secs(90),
    );
    wait_daemon_dead(bed, &o, Duration::from_secs(30))?;
    bed.script(&["start-host", &o]).map_err(e)?;
    let at = wait_running(bed, &name, None, Duration::from_secs(45))
        .map_err(|err| format!("after the orchestrator {o} died past the commit point: {err}"))?;
    delete(bed, std::slice::from_ref(&name));
    Ok(format!(
        "move {src}->{dst} with the target dying before the commit: stayed on {src}, retry worked; \
         orchestrator {o} dying after the commit of a move to {back}: runs on {at}"
    ))
}

fn corrupt_store(bed: &Bed, voters: &[String], rng: &mut Rng) -> Result<String, String> {
    let v = rng.pick(voters).clone();
    bed.script(&["stop-host", &v]).map_err(e)?;
    let db = bed.host_dir(&v).join("raft/db");
    let mut data = std::fs::read(&db).map_err(|err| format!("{}: {err}", db.display()))?;
    // Damage 64 bytes in every 16 KiB past the first 4 KiB: live records are hit, not
    // only free space.
    let len = data.len();
    let at = 4096;
    let mut off = at;
    while off + 64 <= len {
        for b in &mut data[off..off + 64] {
            *b ^= 0xa5;
        }
        off += 16 << 10;
    }
    std::fs::write(&db, &data).map_err(|err| err.to_string())?;
    let out = bed.tb.script(&["start-host", &v]).map_err(e)?;
    let log = std::fs::read_to_string(bed.host_dir(&v).join("shoald.log")).unwrap_or_default();
    let tail: String = log.lines().rev().take(5).collect::<Vec<_>>().join("\n");
    if out.code == 0 {
        // The store reads back and decodes every record at open (log, metadata, snapshot,
        // state): starting means the damage hit only space sled no longer uses (its file
        // keeps old segments). Then the member must agree with the others, which the
        // round's I3 check verifies; corrupted live data is refused (the branch below).
        return Ok(format!(
            "{v}: the damage ({len} bytes, 64 bytes every 16 KiB from {at}) hit no live record: every record read back intact at open, and it must agree with the others (I3)"
        ));
    }
    if !(tail.contains("raft") || tail.contains("store")) {
        return Err(format!(
            "{v} refused its corrupted store without a clear error: {tail}"
        ));
    }
    // Recovery: the member is replaced by a fresh one with the same name.
    replace(bed, &v)?;
    Ok(format!(
        "{v} refused its corrupted store ({}); replaced with a fresh disk",
        tail.lines().next().unwrap_or("").trim()
    ))
}

fn replace(bed: &Bed, v: &str) -> Result<(), String> {
    bed.script(&["wipe-host", v]).map_err(e)?;
    let out = bed
        .cli(
            &["cluster", "remove", v, "--force"],
            Duration::from_secs(30),
        )
        .ok_or("cluster remove timed out")?;
    if out.code != 0 {
        return Err(format!("cluster remove {v} --force: {}", out.stderr));
    }
    bed.script(&["join-host", v]).map_err(e)?;
    Ok(())
}

fn membership_change(bed: &Bed, voters: &[String], rng: &mut Rng) -> Result<String, String> {
    // A voter is down while a new host joins and then leaves.
    let v = rng.pick(voters).clone();
    let all = bed.hosts();
    let new = (b'a'..=b'z')
        .map(|c| (c as char).to_string())
        .find(|h| !all.contains(h))
        .ok_or("no host name left")?;
    bed.script(&["stop-host", &v]).map_err(e)?;
    let joined = bed.script(&["join-host", &new]).map_err(e);
    let mut r = joined.map(|_| ());
    if r.is_ok() {
        r = (|| {
            let t = Instant::now();
            while !bed
                .members()
                .iter()
                .any(|m| m["name"] == new.as_str() && m["status"] == "Online")
            {
                if t.elapsed() > Duration::from_secs(30) {
                    return Err(format!("{new} not online within 30 s while {v} is down"));
                }
                sleep_ms(300);
            }
            Ok(())
        })();
    }
    bed.script(&["start-host", &v]).map_err(e)?;
    r?;
    // And leaves again while the leader is paused for a moment.
    let out = bed
        .cli(
            &["cluster", "remove", &new, "--force"],
            Duration::from_secs(30),
        )
        .ok_or("cluster remove timed out")?;
    if out.code != 0 {
        return Err(format!("cluster remove {new}: {}", out.stderr));
    }
    bed.script(&["wipe-host", &new]).map_err(e)?;
    Ok(format!(
        "{new} joined while voter {v} was down, then was removed"
    ))
}

fn replace_wiped(bed: &Bed, others: &[String], rng: &mut Rng) -> Result<String, String> {
    let v = rng.pick(others).clone();
    replace(bed, &v)?;
    Ok(format!(
        "{v} replaced by a member with a wiped disk under the same name"
    ))
}
