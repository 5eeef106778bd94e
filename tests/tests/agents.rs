//! End-to-end: a cluster larger than its Raft group. Hosts beyond 3 voters and 2 stand-bys
//! are agents: no replica, they follow their part of the state through a watch stream and
//! run instances like any host. Needs root; skips with a message otherwise.

use shoal_tests::{is_root, Testbed};

fn has_role(m: &serde_json::Value, role: &str) -> bool {
    m["roles"].as_array().unwrap().iter().any(|r| r == role)
}

#[test]
fn six_hosts_three_voters_two_standbys_one_agent() {
    if !is_root() {
        eprintln!("skipping: end-to-end tests need root");
        return;
    }
    let tb = Testbed::up(6).expect("test bed up");
    let members = tb
        .shoal(&["cluster", "list", "--format", "json"])
        .ok()
        .json();
    let ms = members.as_array().unwrap();
    assert_eq!(ms.len(), 6, "{members}");
    assert!(ms.iter().all(|m| m["status"] == "Online"), "{members}");
    assert_eq!(
        ms.iter().filter(|m| has_role(m, "voter")).count(),
        3,
        "{members}"
    );
    assert_eq!(
        ms.iter().filter(|m| has_role(m, "standby")).count(),
        2,
        "{members}"
    );
    let agent = ms.iter().find(|m| has_role(m, "agent")).expect("an agent");
    assert_eq!(agent["name"], "f");
    let show = tb
        .shoal(&["cluster", "show", "--format", "json"])
        .ok()
        .json();
    let in_raft: Vec<&str> = show["members"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] != "agent")
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert!(
        !in_raft.contains(&"f"),
        "the agent is not in the Raft group: {show}"
    );

    // The agent runs instances: placed, started, exec'd into, stopped, through the cluster.
    tb.shoal(&["launch", "busybox", "onf", "--target", "f"])
        .ok();
    let list = tb.shoal(&["list", "--format", "json"]).ok().json();
    assert_eq!(list[0]["location"], "f", "{list}");
    assert_eq!(list[0]["status"], "Running", "{list}");
    assert_eq!(
        tb.shoal(&["exec", "onf", "--", "hostname"]).ok().stdout,
        "onf\n"
    );
    tb.shoal(&["stop", "onf"]).ok();
    tb.shoal(&["delete", "onf"]).ok();

    // Members leave: one holding an instance is refused without --force; the agent and a
    // stand-by leave gracefully.
    tb.shoal(&["launch", "busybox", "ond", "--target", "d"])
        .ok();
    let out = tb.shoal(&["cluster", "remove", "d"]);
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("holds instances"), "{}", out.stderr);
    tb.shoal(&["cluster", "remove", "f"]).ok();
    tb.shoal(&["cluster", "remove", "e"]).ok();
    let members = tb
        .shoal(&["cluster", "list", "--format", "json"])
        .ok()
        .json();
    let names: Vec<&str> = members
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["a", "b", "c", "d"], "{members}");
    tb.down();
}
