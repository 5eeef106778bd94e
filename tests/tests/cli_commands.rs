//! End-to-end: the `shoal` CLI's commands, output formats and error messages against a real
//! `shoald` on one simulated host (what `single_host.rs` and `cluster.rs` leave out), plus the
//! connection failures a client can hit before it reaches any daemon.
//! The test-bed test needs root and skips with a message otherwise.

use serde_json::{json, Value};
use shoal_tests::testbed::bin_dir;
use shoal_tests::{is_root, Testbed};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn info(tb: &Testbed, name: &str) -> Value {
    tb.shoal(&["info", name, "--format", "json"]).ok().json()
}

fn status(tb: &Testbed, name: &str) -> String {
    info(tb, name)["status"].as_str().unwrap().to_string()
}

fn wait_status(tb: &Testbed, name: &str, want: &str, limit: Duration) {
    let t0 = Instant::now();
    loop {
        let now = status(tb, name);
        if now == want {
            return;
        }
        assert!(
            t0.elapsed() < limit,
            "{name} still {now}, not {want}, after {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Runs `cmd` with `input` on its stdin (written from a thread, so big inputs cannot
/// deadlock against a full stdout pipe).
fn with_stdin(mut cmd: Command, input: &[u8]) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning shoal");
    let mut stdin = child.stdin.take().unwrap();
    let data = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&data);
    });
    let out = child.wait_with_output().expect("waiting for shoal");
    writer.join().unwrap();
    out
}

fn tmp(prefix: &str) -> tempfile::TempDir {
    tempfile::Builder::new().prefix(prefix).tempdir().unwrap()
}

/// `shoal ARGS` must fail with `needle` in its error.
fn refused(tb: &Testbed, args: &[&str], needle: &str) {
    let out = tb.shoal(args);
    assert_ne!(out.code, 0, "{args:?} must fail: {out:?}");
    assert!(out.stderr.contains(needle), "{args:?}: {}", out.stderr);
}

#[test]
fn commands_formats_images_and_exec_on_a_real_daemon() {
    if !is_root() {
        eprintln!("skipping: end-to-end tests need root");
        return;
    }
    let tb = Testbed::up(1).expect("test bed up");
    let out = tb
        .shoal(&["launch", "busybox", "clic1", "-c", "limits.memory=64MiB"])
        .ok();
    assert_eq!(out.stdout, "", "launch prints nothing on success");
    views(&tb);
    lifecycle(&tb);
    no_wait(&tb);
    exec(&tb);
    images(&tb);
    tls_failures(&tb);
    tb.down();
}

/// `info` and `list` in every format.
fn views(tb: &Testbed) {
    let v = info(tb, "clic1");
    assert_eq!(v["name"], "clic1");
    assert_eq!(v["status"], "Running");
    assert_eq!(v["desired"], "Running");
    assert_eq!(v["location"], "a");
    assert_eq!(v["image"], "busybox");
    assert_eq!(v["image_fingerprint"].as_str().unwrap().len(), 64, "{v}");
    assert_eq!(v["config"]["limits.memory"], "64MiB");
    assert!(v["init_pid"].as_i64().unwrap() > 1, "{v}");
    assert!(v["usage"]["processes"].as_u64().unwrap() >= 1, "{v}");
    assert!(v["created_at"].as_str().unwrap().ends_with('Z'), "{v}");
    let pid = v["init_pid"].as_i64().unwrap();

    let text = tb.shoal(&["info", "clic1"]).ok().stdout;
    assert!(
        text.starts_with(
            "Name: clic1\nStatus: Running\nDesired: Running\nLocation: a\nImage: busybox ("
        ),
        "{text}"
    );
    assert!(text.contains(&format!("\nPID: {pid}\n")), "{text}");
    assert!(text.contains("Config:\n  limits.memory: 64MiB\n"), "{text}");
    assert!(text.contains("Resources:\n  Processes: "), "{text}");

    let yaml = tb.shoal(&["info", "clic1", "--format", "yaml"]).ok().stdout;
    assert!(yaml.starts_with("name: clic1\nstatus: Running\n"), "{yaml}");
    assert!(yaml.contains("\n  limits.memory: 64MiB\n"), "{yaml}");
    assert!(yaml.contains(&format!("\ninit_pid: {pid}\n")), "{yaml}");

    let yaml = tb.shoal(&["list", "--format", "yaml"]).ok().stdout;
    assert!(
        yaml.starts_with("- name: clic1\n  status: Running\n"),
        "{yaml}"
    );
    let csv = tb.shoal(&["list", "--format", "csv"]).ok().stdout;
    let fields: Vec<&str> = csv.trim_end().split(',').collect();
    assert_eq!(fields.len(), 6, "{csv}");
    assert_eq!(&fields[..4], ["clic1", "Running", "a", "busybox"], "{csv}");
    assert!(fields[4].ends_with("iB"), "memory column: {csv}");
    assert!(
        fields[5].parse::<u32>().unwrap() >= 1,
        "processes column: {csv}"
    );
    for args in [&["list"][..], &["list", "--format", "table"]] {
        let table = tb.shoal(args).ok().stdout;
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 5, "{table}");
        assert!(lines[0].starts_with("+-------+"), "{table}");
        assert!(
            lines[1].starts_with("| NAME  | STATUS  | LOCATION | IMAGE   | MEMORY"),
            "{table}"
        );
        assert!(
            lines[3].starts_with("| clic1 | Running | a        | busybox | "),
            "{table}"
        );
    }
    let csv = tb
        .shoal(&["cluster", "list", "--format", "csv"])
        .ok()
        .stdout;
    assert!(csv.starts_with("a,198.18."), "{csv}");
    assert!(csv.contains(":8443,\"leader,voter\",Online,"), "{csv}");
}

/// `init` + `start`, `freeze`/`unfreeze`, and `delete` of a stopped instance without --force.
fn lifecycle(tb: &Testbed) {
    tb.shoal(&["init", "busybox", "clii1"]).ok();
    let v = info(tb, "clii1");
    assert_eq!(
        (v["status"].as_str(), v["init_pid"].as_i64()),
        (Some("Stopped"), Some(0))
    );
    assert_eq!(v["usage"], Value::Null, "{v}");
    let text = tb.shoal(&["info", "clii1"]).ok().stdout;
    assert!(
        !text.contains("PID:") && !text.contains("Resources:"),
        "{text}"
    );
    tb.shoal(&["start", "clii1"]).ok();
    assert_eq!(status(tb, "clii1"), "Running");

    tb.shoal(&["freeze", "clii1"]).ok();
    assert_eq!(status(tb, "clii1"), "Frozen");
    refused(tb, &["exec", "clii1", "--", "true"], "frozen");
    tb.shoal(&["unfreeze", "clii1"]).ok();
    assert_eq!(status(tb, "clii1"), "Running");
    let out = tb.shoal(&["exec", "clii1", "--", "echo", "thawed"]).ok();
    assert_eq!(out.stdout, "thawed\n");

    tb.shoal(&["stop", "clii1"]).ok();
    assert_eq!(status(tb, "clii1"), "Stopped");
    let dir = tb.host_dir("a").join("containers/clii1");
    assert!(dir.exists(), "{} missing", dir.display());
    tb.shoal(&["delete", "clii1"]).ok();
    refused(tb, &["info", "clii1"], "not found");
    assert!(!dir.exists(), "{} left behind", dir.display());
}

/// `--no-wait` returns once the change is committed, before its outcome. The instance's
/// shutdown is made slow (a ::shutdown: action that sleeps), so the outcome is known to lag.
fn no_wait(tb: &Testbed) {
    tb.shoal(&["launch", "busybox", "clislow"]).ok();
    let slow = "echo ::shutdown:/bin/sleep 30 >> /etc/inittab && kill -HUP 1";
    tb.shoal(&["exec", "clislow", "--", "sh", "-c", slow]).ok();
    std::thread::sleep(Duration::from_millis(200));
    let t0 = Instant::now();
    tb.shoal(&["stop", "--no-wait", "--timeout", "2", "clislow"])
        .ok();
    let v = info(tb, "clislow");
    assert!(t0.elapsed() < Duration::from_secs(1), "{:?}", t0.elapsed());
    assert_eq!(
        (v["desired"].as_str(), v["status"].as_str()),
        (Some("Stopped"), Some("Running")),
        "--no-wait must return before init is down: {v}"
    );
    // Killed once the 2 s timeout passes.
    wait_status(tb, "clislow", "Stopped", Duration::from_secs(15));
    tb.shoal(&["start", "--no-wait", "clislow"]).ok();
    assert_eq!(info(tb, "clislow")["desired"], "Running");
    wait_status(tb, "clislow", "Running", Duration::from_secs(15));
    tb.shoal(&["delete", "--force", "clislow"]).ok();
}

/// Streams, exit codes and the options of `exec`.
fn exec(tb: &Testbed) {
    let out = with_stdin(tb.shoal_cmd(&["exec", "clic1", "--", "cat"]), b"hello\n");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(out.stdout, b"hello\n");
    // A few hundred KB of every byte value, in and out unchanged.
    let mut x: u32 = 12345;
    let big: Vec<u8> = (0..300_000)
        .map(|_| {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            (x >> 16) as u8
        })
        .collect();
    let out = with_stdin(tb.shoal_cmd(&["exec", "clic1", "--", "cat"]), &big);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        out.stdout == big,
        "{} bytes back of {}",
        out.stdout.len(),
        big.len()
    );
    let out = with_stdin(tb.shoal_cmd(&["exec", "clic1", "--", "wc", "-c"]), &big);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "300000");

    let out = tb.shoal(&["exec", "clic1", "--", "sh", "-c", "kill -9 $$"]);
    assert_eq!(out.code, 137, "killed by SIGKILL is 128 + 9: {out:?}");
    for (opts, want) in [
        (
            &[
                "--env",
                "K=V",
                "--env",
                "A=b=c",
                "--",
                "sh",
                "-c",
                "echo $K $A",
            ][..],
            "V b=c\n",
        ),
        (&["--cwd", "/tmp", "--", "pwd"], "/tmp\n"),
        (&["--user", "1000", "--", "id", "-u"], "1000\n"),
        (
            &["--user", "1000", "--group", "1000", "--", "id", "-g"],
            "1000\n",
        ),
        // Without a terminal on either end there is no tty inside.
        (&["--", "sh", "-c", "[ -t 0 ] || echo no-tty"], "no-tty\n"),
    ] {
        let args: Vec<&str> = ["exec", "clic1"].iter().chain(opts).copied().collect();
        assert_eq!(tb.shoal(&args).ok().stdout, want, "{opts:?}");
    }
    refused(
        tb,
        &["exec", "nope", "--", "true"],
        "instance 'nope' not found",
    );
    refused(tb, &["exec", "clic1", "--", "nosuchcmd"], "nosuchcmd");
    refused(
        tb,
        &["exec", "clic1", "--cwd", "/nonexistent", "--", "pwd"],
        "/nonexistent",
    );
}

fn images_json(tb: &Testbed) -> Vec<Value> {
    let v = tb.shoal(&["image", "list", "--format", "json"]).ok().json();
    v.as_array().expect("array").clone()
}

fn sha256(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    String::from_utf8(out.stdout).unwrap()[..64].to_string()
}

/// Import, list, info, aliases and delete of a second image.
fn images(tb: &Testbed) {
    let dir = tmp("shoal-cli-img-");
    let file = dir.path().join("busybox2.tar.gz");
    let built = Command::new(shoal_tests::testbed::workspace().join("deploy/build-busybox-image"))
        .arg(&file)
        .env("SOURCE_DATE_EPOCH", "1000000000")
        .output()
        .unwrap();
    assert!(built.status.success(), "{built:?}");
    let fp = sha256(&file);
    let size = std::fs::metadata(&file).unwrap().len();
    let before = images_json(tb);
    assert_eq!(before.len(), 1, "{before:?}");
    assert_ne!(
        before[0]["fingerprint"],
        fp.as_str(),
        "the new image must differ"
    );

    let path = file.to_str().unwrap();
    let out = tb.shoal(&[
        "image", "import", path, "--alias", "bb2", "--alias", "other",
    ]);
    let out = out.ok();
    assert_eq!(
        out.stdout,
        format!("Image imported with fingerprint: {fp}\n")
    );
    let list = images_json(tb);
    assert_eq!(list.len(), 2, "{list:?}");
    let img = list
        .iter()
        .find(|i| i["fingerprint"] == fp.as_str())
        .expect("new image listed");
    assert_eq!(img["aliases"], json!(["bb2", "other"]));
    assert_eq!(img["size"], size);
    assert_eq!(img["architecture"], "x86_64");
    assert_eq!(img["os"], "busybox");
    assert_eq!(img["stop_signal"], "SIGUSR2");
    assert_eq!(img["locations"], json!(["a"]));
    assert!(!img["release"].as_str().unwrap().is_empty(), "{img}");
    assert!(
        img["description"].as_str().unwrap().contains("busybox"),
        "{img}"
    );
    assert!(img["created_at"].is_string(), "{img}");
    assert!(tb.host_dir("a").join("images").join(&fp).is_dir());

    let text = tb.shoal(&["image", "info", "bb2"]).ok().stdout;
    assert!(
        text.starts_with(&format!("Fingerprint: {fp}\nSize: ")),
        "{text}"
    );
    assert!(text.contains("Architecture: x86_64\n"), "{text}");
    assert!(text.contains("  stop_signal: SIGUSR2\n"), "{text}");
    assert!(
        text.contains("Aliases:\n  - bb2\n  - other\nLocations:\n  - a\n"),
        "{text}"
    );

    // Aliases: set by short fingerprint, remove, move to another image and back.
    tb.shoal(&["image", "alias", "set", "small", &fp[..12]])
        .ok();
    tb.shoal(&["image", "alias", "delete", "bb2"]).ok();
    let v = tb
        .shoal(&["image", "info", "small", "--format", "json"])
        .ok()
        .json();
    assert_eq!(
        (v["fingerprint"].as_str(), &v["aliases"]),
        (Some(fp.as_str()), &json!(["other", "small"]))
    );
    refused(tb, &["image", "info", "bb2"], "not found");
    tb.shoal(&["image", "alias", "set", "small", "busybox"])
        .ok();
    let v = tb
        .shoal(&["image", "info", "busybox", "--format", "json"])
        .ok()
        .json();
    assert_eq!(v["aliases"], json!(["busybox", "small"]));
    tb.shoal(&["image", "alias", "set", "small", "other"]).ok();
    refused(
        tb,
        &["image", "alias", "delete", "nope"],
        "alias 'nope' not found",
    );
    refused(
        tb,
        &["image", "alias", "set", "x", "nope"],
        "image 'nope' not found",
    );

    // Refused while an instance uses it, naming the instance; works afterwards.
    tb.shoal(&["launch", "small", "cliu1"]).ok();
    assert_eq!(info(tb, "cliu1")["image_fingerprint"], fp.as_str());
    refused(
        tb,
        &["image", "delete", "small"],
        "used by instances: cliu1",
    );
    assert_eq!(images_json(tb).len(), 2);
    tb.shoal(&["delete", "--force", "cliu1"]).ok();
    tb.shoal(&["image", "delete", "small"]).ok();
    let list = images_json(tb);
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["aliases"], json!(["busybox"]));
    assert!(
        !tb.host_dir("a").join("images").join(&fp).exists(),
        "unpacked copy left behind"
    );
    refused(tb, &["image", "delete", "small"], "not found");

    // Not a tarball at all, and no file: clear errors, nothing imported.
    let junk = dir.path().join("junk.tar");
    std::fs::write(&junk, "this is not an image\n".repeat(100)).unwrap();
    refused(
        tb,
        &["image", "import", junk.to_str().unwrap(), "--alias", "junk"],
        "tarball",
    );
    refused(
        tb,
        &["image", "import", "/nonexistent/x.tar"],
        "cannot open /nonexistent/x.tar",
    );
    assert_eq!(images_json(tb), list, "the image list changed");
    refused(tb, &["image", "info", "junk"], "not found");
}

/// The handshake fails either way round with another cluster's PKI, and says which side.
fn tls_failures(tb: &Testbed) {
    let dir = tmp("shoal-cli-tls-");
    let other = shoal_node::cluster::pki::ensure(&dir.path().join("pki"), "x", &[]).unwrap();
    let ours = tb.host_dir("a").join("tls");
    let cases = [
        // The client does not trust the server.
        (
            [
                other.ca_cert.clone(),
                ours.join("admin.crt"),
                ours.join("admin.key"),
            ],
            "check ca, cert, key and server_name",
        ),
        // The server does not trust the client.
        (
            [
                ours.join("ca.crt"),
                other.admin_cert.clone(),
                other.admin_key.clone(),
            ],
            "refused the client certificate",
        ),
    ];
    let cfg = std::fs::read_to_string(tb.config()).unwrap();
    for ([ca, cert, key], needle) in cases {
        // The test bed's config with ca, cert and key replaced.
        let mut text = String::new();
        for line in cfg.lines() {
            let line = match line.split(" =").next() {
                Some("ca") => format!("ca = {ca:?}"),
                Some("cert") => format!("cert = {cert:?}"),
                Some("key") => format!("key = {key:?}"),
                _ => line.to_string(),
            };
            text.push_str(&line);
            text.push('\n');
        }
        let path = dir.path().join("alt.toml");
        std::fs::write(&path, text).unwrap();
        let out = tb
            .shoal_cmd(&["list"])
            .env("SHOAL_CONFIG", &path)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains(needle), "{err}");
    }
}

#[test]
fn connection_failures_name_the_address_and_the_fix() {
    let dir = tmp("shoal-cli-conn-");
    let shoal = |config: &Path, args: &[&str]| {
        let out = Command::new(bin_dir().join("shoal"))
            .args(args)
            .env("SHOAL_CONFIG", config)
            .stdin(Stdio::null())
            .output()
            .expect("running shoal (build it first: cargo build --workspace --bins)");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let missing = dir.path().join("absent.toml");
    let (code, _, err) = shoal(&missing, &["list"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.starts_with(&format!("Error: no configuration at {}", missing.display())),
        "{err}"
    );
    assert!(
        err.contains("deploy/local-cluster up") && err.contains("SHOAL_CONFIG"),
        "{err}"
    );
    // Needs no server.
    let (code, out, _) = shoal(&missing, &["version"]);
    assert_eq!(
        (code, out),
        (
            Some(0),
            format!("Client version: {}\n", env!("CARGO_PKG_VERSION"))
        )
    );

    let pki = shoal_node::cluster::pki::ensure(&dir.path().join("pki"), "x", &[]).unwrap();
    let dead = dir.path().join("dead.toml");
    let text = format!(
        "default_remote = \"local\"\n[remotes.local]\naddresses = [\"127.0.0.1:1\"]\n\
         ca = {:?}\ncert = {:?}\nkey = {:?}\nserver_name = \"shoal\"\n",
        pki.ca_cert, pki.admin_cert, pki.admin_key
    );
    std::fs::write(&dead, text).unwrap();
    let t0 = Instant::now();
    let (code, _, err) = shoal(&dead, &["list"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("cannot reach any member of remote \"local\": tried 127.0.0.1:1 ("),
        "{err}"
    );
    assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
    let (code, _, err) = shoal(&dead, &["--remote", "prod", "list"]);
    assert_eq!(
        (code, err.as_str()),
        (Some(1), "Error: no remote named \"prod\" (known: local)\n")
    );
}
