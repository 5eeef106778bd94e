//! End-to-end: one simulated host running a real `shoald`, driven through the `shoal` CLI.
//! Needs root (network namespaces, containers); skips with a message otherwise.

use shoal_tests::{is_root, Testbed};

fn bed() -> Option<Testbed> {
    if !is_root() {
        eprintln!("skipping: end-to-end tests need root");
        return None;
    }
    Some(Testbed::up(1).expect("test bed up"))
}

fn instance<'a>(list: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    list.as_array()
        .expect("list is an array")
        .iter()
        .find(|i| i["name"] == name)
        .unwrap_or_else(|| panic!("{name} not in {list}"))
}

fn init_pid(tb: &Testbed, name: &str) -> i64 {
    let list = tb.shoal(&["list", "--format", "json"]).ok().json();
    instance(&list, name)["init_pid"]
        .as_i64()
        .expect("init_pid is a number")
}

#[test]
fn launch_exec_limits_and_daemon_restart() {
    let Some(tb) = bed() else { return };
    tb.shoal(&["launch", "busybox", "c1", "-c", "limits.memory=64MiB"])
        .ok();

    let list = tb.shoal(&["list", "--format", "json"]).ok().json();
    let c1 = instance(&list, "c1");
    assert_eq!(c1["status"], "Running", "{c1}");
    assert_eq!(c1["location"], "a");
    assert_eq!(c1["image"], "busybox");
    assert_eq!(c1["config"]["limits.memory"], "64MiB");

    // PID 1 is busybox init.
    let out = tb
        .shoal(&["exec", "c1", "--", "cat", "/proc/1/cmdline"])
        .ok();
    assert!(
        out.stdout.starts_with("init") || out.stdout.contains("busybox"),
        "{out:?}"
    );
    // Root is unprivileged on the host.
    let out = tb
        .shoal(&["exec", "c1", "--", "cat", "/proc/self/uid_map"])
        .ok();
    let fields: Vec<&str> = out.stdout.split_whitespace().collect();
    assert_eq!(fields[0], "0", "{out:?}");
    assert_ne!(
        fields[1], "0",
        "container root must not be host root: {out:?}"
    );
    assert_eq!(fields[2], "65536", "{out:?}");
    // The memory limit is visible inside.
    let out = tb
        .shoal(&[
            "exec",
            "c1",
            "--",
            "sh",
            "-c",
            "cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max",
        ])
        .ok();
    assert_eq!(out.stdout.trim(), "67108864", "{out:?}");
    // Exit codes pass through; stdin, stdout and stderr are streamed.
    assert_eq!(
        tb.shoal(&["exec", "c1", "--", "sh", "-c", "exit 7"]).code,
        7
    );
    let out = tb.shoal(&["exec", "c1", "--", "sh", "-c", "echo out; echo err >&2"]);
    assert_eq!(
        (out.stdout.as_str(), out.stderr.as_str()),
        ("out\n", "err\n")
    );

    // The daemon dies; the container does not notice.
    let pid = init_pid(&tb, "c1");
    tb.script(&["stop-host", "a"]).unwrap().ok();
    assert!(
        std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "init {pid} must survive the daemon"
    );
    tb.script(&["start-host", "a"]).unwrap().ok();
    let list = tb.shoal(&["list", "--format", "json"]).ok().json();
    let c1 = instance(&list, "c1");
    assert_eq!(c1["status"], "Running", "{c1}");
    assert_eq!(init_pid(&tb, "c1"), pid, "adopted, not restarted");
    let out = tb.shoal(&["exec", "c1", "--", "sh", "-c", "exit 3"]);
    assert_eq!(out.code, 3, "exec works after adoption: {out:?}");
    tb.down();
}

#[test]
fn lifecycle_and_bad_input() {
    let Some(tb) = bed() else { return };
    tb.shoal(&["init", "busybox", "c2"]).ok();
    let list = tb.shoal(&["list", "--format", "json"]).ok().json();
    assert_eq!(instance(&list, "c2")["status"], "Stopped");

    // Exec in a stopped instance.
    let out = tb.shoal(&["exec", "c2", "--", "true"]);
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains("stopped") || out.stderr.contains("not running"),
        "{out:?}"
    );

    tb.shoal(&["start", "c2"]).ok();
    // A file written inside survives stop and start (the container's own layer).
    tb.shoal(&["exec", "c2", "--", "sh", "-c", "echo kept > /root/file"])
        .ok();
    tb.shoal(&["stop", "c2"]).ok();
    let list = tb.shoal(&["list", "--format", "json"]).ok().json();
    assert_eq!(instance(&list, "c2")["status"], "Stopped");
    tb.shoal(&["start", "c2"]).ok();
    let out = tb.shoal(&["exec", "c2", "--", "cat", "/root/file"]).ok();
    assert_eq!(out.stdout, "kept\n");
    let before = init_pid(&tb, "c2");
    tb.shoal(&["restart", "c2"]).ok();
    assert_ne!(init_pid(&tb, "c2"), before, "restart gives a new init");

    // Bad input: each is refused with a clear error and changes nothing.
    let cases: &[(&[&str], &str)] = &[
        (&["launch", "nosuchimage", "x1"], "not found"),
        (&["launch", "busybox", "1bad"], "start with a letter"),
        (&["launch", "busybox", "c2"], "already exists"),
        (
            &["launch", "busybox", "x2", "-c", "limits.memroy=1GiB"],
            "unknown configuration key",
        ),
        (
            &["launch", "busybox", "x3", "-c", "limits.memory=lots"],
            "lots",
        ),
        (&["delete", "c2"], "--force"),
    ];
    for (args, needle) in cases {
        let out = tb.shoal(args);
        assert_ne!(out.code, 0, "{args:?} must fail");
        assert!(out.stderr.contains(needle), "{args:?}: {}", out.stderr);
    }
    let list = tb.shoal(&["list", "--format", "json"]).ok().json();
    assert_eq!(
        list.as_array().unwrap().len(),
        1,
        "nothing was created: {list}"
    );

    // A corrupt image tarball.
    let bad = tb.host_dir("a").join("../../bad.tar.gz");
    std::fs::write(&bad, b"\x1f\x8b\x08\x00garbage").unwrap();
    let out = tb.shoal(&["image", "import", bad.to_str().unwrap(), "--alias", "bad"]);
    assert_ne!(out.code, 0);
    let images = tb.shoal(&["image", "list", "--format", "json"]).ok().json();
    assert_eq!(images.as_array().unwrap().len(), 1, "{images}");

    tb.shoal(&["delete", "--force", "c2"]).ok();
    let list = tb.shoal(&["list", "--format", "json"]).ok().json();
    assert!(list.as_array().unwrap().is_empty(), "{list}");
    tb.down();
}
