//! End-to-end: placement across four hosts, and healing with fencing when a host dies.
//! Needs root; skips with a message otherwise.

use serde_json::Value;
use shoal_tests::{is_root, Testbed};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

fn instances(tb: &Testbed) -> Vec<Value> {
    tb.shoal(&["list", "--format", "json"])
        .ok()
        .json()
        .as_array()
        .expect("array")
        .clone()
}

fn find<'a>(list: &'a [Value], name: &str) -> &'a Value {
    list.iter()
        .find(|i| i["name"] == name)
        .unwrap_or_else(|| panic!("{name} missing"))
}

fn alive(pid: i64) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap_or_default()
            .contains("State:\tZ")
}

#[test]
fn placement_spreads_and_a_dead_host_is_healed_without_running_twice() {
    if !is_root() {
        eprintln!("skipping: end-to-end tests need root");
        return;
    }
    let tb = Testbed::up(4).expect("test bed up");

    // Eight launches without a target land on at least three hosts.
    for i in 0..8 {
        tb.shoal(&[
            "launch",
            "busybox",
            &format!("w{i}"),
            "-c",
            "cluster.evacuate=auto",
        ])
        .ok();
    }
    let list = instances(&tb);
    let hosts: BTreeSet<&str> = list
        .iter()
        .map(|i| i["location"].as_str().unwrap())
        .collect();
    assert!(hosts.len() >= 3, "spread over {hosts:?}");
    assert!(list.iter().all(|i| i["status"] == "Running"), "{list:?}");
    // --target lands where asked; a host that cannot fit says why, host by host.
    tb.shoal(&[
        "launch",
        "busybox",
        "pinned",
        "--target",
        "c",
        "-c",
        "cluster.evacuate=stay",
    ])
    .ok();
    assert_eq!(find(&instances(&tb), "pinned")["location"], "c");
    let out = tb.shoal(&["launch", "busybox", "huge", "-c", "limits.memory=100TiB"]);
    assert_ne!(out.code, 0);
    for h in ["a:", "b:", "c:", "d:"] {
        assert!(out.stderr.contains(h), "reason per host: {}", out.stderr);
    }

    // Kill the daemon of a host with instances (not the one holding `pinned`).
    let victim = list
        .iter()
        .map(|i| i["location"].as_str().unwrap().to_string())
        .find(|h| h != "c")
        .unwrap();
    let on_victim: Vec<(String, i64)> = list
        .iter()
        .filter(|i| i["location"] == victim.as_str())
        .map(|i| {
            (
                i["name"].as_str().unwrap().to_string(),
                i["init_pid"].as_i64().unwrap(),
            )
        })
        .collect();
    assert!(!on_victim.is_empty());
    tb.script(&["stop-host", &victim]).unwrap().ok();
    let t0 = Instant::now();
    loop {
        // Never on two hosts at once, checked on the hosts: an old init is dead before
        // the instance runs anywhere else.
        let list = instances(&tb);
        let mut done = true;
        for (name, old_pid) in &on_victim {
            let i = find(&list, name);
            let moved = i["location"] != victim.as_str() && i["status"] == "Running";
            if moved {
                assert!(
                    !alive(*old_pid),
                    "{name} runs on two hosts: old init {old_pid} alive"
                );
            }
            done &= moved;
        }
        if done {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(15),
            "not healed within 15 s: {list:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!("healed after {:?}", t0.elapsed());

    // The host comes back: its stale copies are removed, nothing runs twice.
    tb.script(&["start-host", &victim]).unwrap().ok();
    let dir = tb.host_dir(&victim).join("containers");
    let t1 = Instant::now();
    loop {
        let left: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| on_victim.iter().any(|(v, _)| v == n))
            .collect();
        if left.is_empty() {
            break;
        }
        assert!(
            t1.elapsed() < Duration::from_secs(20),
            "stale copies left: {left:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let list = instances(&tb);
    assert!(list.iter().all(|i| i["status"] == "Running"), "{list:?}");

    // The host is back in the leader's view before placing across all four again.
    let t2 = Instant::now();
    loop {
        let members = tb
            .shoal(&["cluster", "list", "--format", "json"])
            .ok()
            .json();
        if members
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["status"] == "Online")
        {
            break;
        }
        assert!(t2.elapsed() < Duration::from_secs(20), "{members}");
        std::thread::sleep(Duration::from_millis(200));
    }

    // A strict spread placement group: one member per host, and a fifth has nowhere to go.
    tb.shoal(&[
        "placement",
        "create",
        "web",
        "--policy",
        "spread",
        "--strict",
    ])
    .ok();
    let groups = tb
        .shoal(&["placement", "list", "--format", "json"])
        .ok()
        .json();
    assert_eq!(groups[0]["name"], "web", "{groups}");
    for i in 0..4 {
        tb.shoal(&[
            "launch",
            "busybox",
            &format!("g{i}"),
            "-c",
            "placement.group=web",
        ])
        .ok();
    }
    let list = instances(&tb);
    let hosts: BTreeSet<&str> = list
        .iter()
        .filter(|i| i["name"].as_str().unwrap().starts_with('g'))
        .map(|i| i["location"].as_str().unwrap())
        .collect();
    assert_eq!(hosts.len(), 4, "one per host: {list:?}");
    let out = tb.shoal(&["launch", "busybox", "g4", "-c", "placement.group=web"]);
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("placement group"), "{}", out.stderr);
    let out = tb.shoal(&["placement", "delete", "web"]);
    assert_ne!(out.code, 0, "a group in use cannot be deleted");
    tb.shoal(&["cluster", "set-strategy", "binpack"]).ok();
    tb.down();
}
