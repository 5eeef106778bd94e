//! Fault suite, quick tier (a first scenario): clients write and read cluster state while
//! the leader is killed and restarted; afterwards the recorded history must be
//! linearizable (no acknowledged write lost, no stale read served as current). Needs root.
//!
//! The register: an image alias `rK` pointing at one of two images. A write is
//! `shoal image alias set rK IMAGE`; a read is `shoal image list` (a linearizable read
//! through the leader's read index; reads the server marks "may be stale" are left out).

use shoal_tests::checker::{check, Call, Op, Outcome, Verdict};
use shoal_tests::{is_root, Testbed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn fingerprint_of(tb: &Testbed, alias: &str) -> String {
    let images = tb.shoal(&["image", "list", "--format", "json"]).ok().json();
    images
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["aliases"].as_array().unwrap().iter().any(|a| a == alias))
        .and_then(|i| i["fingerprint"].as_str().map(str::to_string))
        .unwrap_or_else(|| panic!("no image with alias {alias}: {images}"))
}

/// A fault injected in the middle of the workload: it gets the test bed and the leader's
/// name, breaks something, waits, and repairs it.
type Fault = fn(&Testbed, &str);

fn kill_and_restart(tb: &Testbed, leader: &str) {
    tb.script(&["stop-host", leader]).unwrap().ok();
    std::thread::sleep(Duration::from_secs(3));
    tb.script(&["start-host", leader]).unwrap().ok();
}

fn isolate_and_heal(tb: &Testbed, leader: &str) {
    tb.script(&["isolate", leader]).unwrap().ok();
    std::thread::sleep(Duration::from_secs(4));
    tb.script(&["heal", leader]).unwrap().ok();
}

#[test]
fn history_stays_linearizable_while_the_leader_dies() {
    scenario("killed and restarted", kill_and_restart);
}

#[test]
fn history_stays_linearizable_while_the_leader_is_cut_off() {
    scenario("isolated in a minority, then healed", isolate_and_heal);
}

fn scenario(what: &str, fault: Fault) {
    if !is_root() {
        eprintln!("skipping: end-to-end tests need root");
        return;
    }
    let tb = Arc::new(Testbed::up(3).expect("test bed up"));
    // A second image, so the register has two values.
    let dir = tempfile::tempdir().unwrap();
    let tar = dir.path().join("other.tar.gz");
    let st = std::process::Command::new(
        shoal_tests::testbed::workspace().join("deploy/build-busybox-image"),
    )
    .arg(&tar)
    .env("SOURCE_DATE_EPOCH", "1000000")
    .stdout(std::process::Stdio::null())
    .status()
    .unwrap();
    assert!(st.success());
    tb.shoal(&["image", "import", tar.to_str().unwrap(), "--alias", "other"])
        .ok();
    let values = [fingerprint_of(&tb, "busybox"), fingerprint_of(&tb, "other")];
    assert_ne!(values[0], values[1]);

    let t0 = Instant::now();
    let history: Arc<Mutex<Vec<Call>>> = Arc::default();
    let deadline = t0 + Duration::from_secs(9);
    let mut clients = Vec::new();
    for id in 0..2u64 {
        let (tb, history, values) = (tb.clone(), history.clone(), values.clone());
        clients.push(std::thread::spawn(move || {
            let mut seed = 0x9e37_79b9_7f4a_7c15u64 ^ (id + 1);
            let mut next = move || {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed
            };
            while Instant::now() < deadline {
                let key = format!("r{}", next() % 24);
                let start = t0.elapsed().as_micros() as u64;
                if next() % 2 == 0 {
                    let v = values[(next() % 2) as usize].clone();
                    let out = tb.shoal(&["image", "alias", "set", &key, &v]);
                    let end = t0.elapsed().as_micros() as u64;
                    let outcome = if out.code == 0 {
                        Outcome::Ok
                    } else if out.stderr.contains("invalid") || out.stderr.contains("not found") {
                        Outcome::Failed
                    } else {
                        Outcome::Unknown
                    };
                    history.lock().unwrap().push(Call {
                        key,
                        op: Op::Write(v),
                        start,
                        end,
                        outcome,
                    });
                } else {
                    let out = tb.shoal(&["image", "list", "--format", "json"]);
                    let end = t0.elapsed().as_micros() as u64;
                    if out.code != 0 || out.stderr.contains("may be stale") {
                        continue;
                    }
                    let images = out.json();
                    let seen = images.as_array().unwrap().iter().find_map(|i| {
                        i["aliases"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .any(|a| a == key.as_str())
                            .then(|| i["fingerprint"].as_str().unwrap().to_string())
                    });
                    history.lock().unwrap().push(Call {
                        key,
                        op: Op::Read(seen),
                        start,
                        end,
                        outcome: Outcome::Ok,
                    });
                }
            }
        }));
    }
    // The fault: the leader dies mid-run and comes back.
    std::thread::sleep(Duration::from_millis(2500));
    let leader = tb
        .shoal(&["cluster", "show", "--format", "json"])
        .ok()
        .json()["leader"]
        .as_str()
        .unwrap()
        .to_string();
    fault(&tb, &leader);
    for c in clients {
        c.join().unwrap();
    }
    let history = history.lock().unwrap().clone();
    let acked = history.iter().filter(|c| c.outcome == Outcome::Ok).count();
    eprintln!(
        "{} calls ({acked} acknowledged) while leader {leader} was {what}",
        history.len()
    );
    assert!(
        acked > 20,
        "too few calls to say anything: {}",
        history.len()
    );
    let verdict = check(&history);
    if verdict != Verdict::Linearizable {
        let key = match &verdict {
            Verdict::Violation { key } | Verdict::TooLarge { key, .. } => key.clone(),
            Verdict::Linearizable => unreachable!(),
        };
        let calls: Vec<&Call> = history.iter().filter(|c| c.key == key).collect();
        panic!("{verdict:?}: {calls:#?}");
    }
    // Every member catches up with the leader's log once the fault is repaired.
    let t1 = Instant::now();
    loop {
        let show = tb.shoal(&["cluster", "show", "--format", "json"]);
        if show.code == 0 {
            let v = show.json();
            let lagging = v["members"]
                .as_array()
                .unwrap()
                .iter()
                .any(|m| m["lag"].as_u64() != Some(0));
            if !lagging {
                break;
            }
        }
        assert!(
            t1.elapsed() < Duration::from_secs(20),
            "members did not converge: {}",
            show.stdout
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    match Arc::try_unwrap(tb) {
        Ok(tb) => tb.down(),
        Err(_) => panic!("clients still hold the test bed"),
    }
}
