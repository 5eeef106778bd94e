//! End-to-end: moving instances with their data (cold and precopy), copying, and
//! evacuating and restoring a host. Needs root; skips with a message otherwise.

use serde_json::Value;
use shoal_tests::{is_root, Testbed};

fn instance(tb: &Testbed, name: &str) -> Value {
    let list = tb.shoal(&["list", "--format", "json"]).ok().json();
    list.as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("{name} missing: {list}"))
}

#[test]
fn move_copy_evacuate_and_restore() {
    if !is_root() {
        eprintln!("skipping: end-to-end tests need root");
        return;
    }
    let tb = Testbed::up(4).expect("test bed up");
    tb.shoal(&["launch", "busybox", "c1", "--target", "c"]).ok();
    tb.shoal(&[
        "exec", "c1", "--", "sh", "-c",
        "echo precious > /root/data && dd if=/dev/urandom of=/root/blob bs=1M count=4 2>/dev/null && rm /etc/hostname",
    ])
    .ok();
    let sum = tb
        .shoal(&["exec", "c1", "--", "md5sum", "/root/blob"])
        .ok()
        .stdout;

    // Cold move: the file written inside survives; the source copy is removed.
    let out = tb.shoal(&["move", "c1", "--target", "d"]).ok();
    assert!(out.stdout.contains("downtime"), "{out:?}");
    let c1 = instance(&tb, "c1");
    assert_eq!(
        (c1["location"].as_str(), c1["status"].as_str()),
        (Some("d"), Some("Running"))
    );
    assert_eq!(
        tb.shoal(&["exec", "c1", "--", "cat", "/root/data"])
            .ok()
            .stdout,
        "precious\n"
    );
    assert_eq!(
        tb.shoal(&["exec", "c1", "--", "md5sum", "/root/blob"])
            .ok()
            .stdout,
        sum
    );
    assert_ne!(
        tb.shoal(&["exec", "c1", "--", "ls", "/etc/hostname"]).code,
        0,
        "whiteout kept"
    );
    let source = tb.host_dir("c").join("containers").join("c1");
    for _ in 0..50 {
        if !source.exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(!source.exists(), "source copy left behind");

    // Precopy, while it runs.
    let out = tb
        .shoal(&["move", "c1", "--target", "b", "--mode", "precopy"])
        .ok();
    assert!(out.stdout.contains("precopy"), "{out:?}");
    assert_eq!(instance(&tb, "c1")["location"], "b");
    assert_eq!(
        tb.shoal(&["exec", "c1", "--", "md5sum", "/root/blob"])
            .ok()
            .stdout,
        sum
    );
    // Straight back and forth: the old copy on the host it just left must not get in the way.
    tb.shoal(&["move", "c1", "--target", "d"]).ok();
    tb.shoal(&["move", "c1", "--target", "b"]).ok();
    assert_eq!(
        tb.shoal(&["exec", "c1", "--", "md5sum", "/root/blob"])
            .ok()
            .stdout,
        sum
    );

    // Bad moves: clear errors, nothing changed.
    for (args, needle) in [
        (
            vec!["move", "c1", "--target", "a", "--mode", "live"],
            "CRIU",
        ),
        (vec!["move", "c1", "--target", "zz"], "unknown target host"),
        (vec!["move", "c1", "--target", "b"], "already on b"),
        (
            vec!["move", "c1", "--mode", "teleport"],
            "unknown move mode",
        ),
    ] {
        let out = tb.shoal(&args);
        assert_ne!(out.code, 0, "{args:?}");
        assert!(out.stderr.contains(needle), "{args:?}: {}", out.stderr);
    }
    assert_eq!(instance(&tb, "c1")["location"], "b");

    // Copy: a stopped copy with the same data.
    tb.shoal(&["copy", "c1", "c1copy", "--target", "a"]).ok();
    let copy = instance(&tb, "c1copy");
    assert_eq!(
        (copy["location"].as_str(), copy["status"].as_str()),
        (Some("a"), Some("Stopped"))
    );
    tb.shoal(&["start", "c1copy"]).ok();
    assert_eq!(
        tb.shoal(&["exec", "c1copy", "--", "cat", "/root/data"])
            .ok()
            .stdout,
        "precious\n"
    );

    // Evacuate b: nothing left there, everything Running; restore brings it back.
    tb.shoal(&["launch", "busybox", "c2", "--target", "b"]).ok();
    let out = tb.shoal(&["cluster", "evacuate", "b"]).ok();
    assert!(out.stdout.contains("evacuated b"), "{out:?}");
    let list = tb.shoal(&["list", "--format", "json"]).ok().json();
    for i in list.as_array().unwrap() {
        assert_ne!(i["location"], "b", "{i}");
        assert_eq!(i["status"], "Running", "{i}");
    }
    let members = tb
        .shoal(&["cluster", "list", "--format", "json"])
        .ok()
        .json();
    let b = members
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "b")
        .unwrap();
    assert_eq!(b["status"], "Evacuated");
    let out = tb.shoal(&["launch", "busybox", "nob", "--target", "b"]);
    assert_ne!(out.code, 0, "no new placements on an evacuated host");
    tb.shoal(&["cluster", "restore", "b"]).ok();
    for name in ["c1", "c2"] {
        let i = instance(&tb, name);
        assert_eq!(
            (i["location"].as_str(), i["status"].as_str()),
            (Some("b"), Some("Running")),
            "{i}"
        );
    }
    assert_eq!(
        tb.shoal(&["exec", "c1", "--", "cat", "/root/data"])
            .ok()
            .stdout,
        "precious\n"
    );
    tb.down();
}
