//! Runs the `shoal` binary against a fake member over mutual TLS: every
//! command, its output formats, exit codes and error messages.

mod common;

use common::{shoal_with_config, write_config, Harness};
use serde_json::Value;

fn json(out: &common::Output) -> Value {
    assert_eq!(out.code, 0, "stderr: {}", out.stderr);
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", out.stdout))
}

#[tokio::test(flavor = "multi_thread")]
async fn launch_list_info_and_lifecycle() {
    let h = Harness::start().await;
    let out = h
        .shoal(
            &[
                "launch",
                "busybox",
                "c1",
                "-c",
                "limits.memory=64MiB",
                "--target",
                "node-2",
            ],
            b"",
        )
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.stdout, "");
    let out = h.shoal(&["init", "busybox", "c2"], b"").await;
    assert_eq!(out.code, 0, "{out:?}");

    let v = json(&h.shoal(&["list", "--format", "json"], b"").await);
    assert_eq!(v[0]["name"], "c1");
    assert_eq!(v[0]["status"], "Running");
    assert_eq!(v[0]["location"], "node-2");
    assert_eq!(v[0]["config"]["limits.memory"], "64MiB");
    assert_eq!(v[0]["init_pid"], 4242);
    assert_eq!(v[1]["name"], "c2");
    assert_eq!(v[1]["status"], "Stopped");
    assert_eq!(v[1]["usage"], Value::Null);

    let out = h.shoal(&["list"], b"").await;
    assert!(
        out.stdout
            .contains("| c1   | Running | node-2   | busybox | 8.00MiB | 2         |"),
        "{}",
        out.stdout
    );
    let out = h.shoal(&["list", "-f", "csv"], b"").await;
    assert_eq!(
        out.stdout,
        "c1,Running,node-2,busybox,8.00MiB,2\nc2,Stopped,node-1,busybox,,\n"
    );
    let out = h.shoal(&["list", "-f", "yaml"], b"").await;
    assert!(out.stdout.starts_with("- name: c1\n"), "{}", out.stdout);

    for (args, want) in [
        (vec!["stop", "c1"], "Stopped"),
        (vec!["start", "c1"], "Running"),
        (vec!["freeze", "c1"], "Frozen"),
        (vec!["unfreeze", "c1"], "Running"),
        (vec!["restart", "--force", "c1"], "Running"),
    ] {
        let out = h.shoal(&args, b"").await;
        assert_eq!(out.code, 0, "{args:?}: {out:?}");
        let v = json(&h.shoal(&["info", "c1", "--format", "json"], b"").await);
        assert_eq!(v["status"], want, "{args:?}");
    }
    let out = h.shoal(&["info", "c1"], b"").await;
    assert!(
        out.stdout.starts_with("Name: c1\nStatus: Running\n"),
        "{}",
        out.stdout
    );

    let out = h.shoal(&["delete", "c1"], b"").await;
    assert_eq!(out.code, 1);
    assert_eq!(
        out.stderr,
        "Error: instance c1 is running: stop it or use --force\n"
    );
    let out = h.shoal(&["delete", "--force", "c1", "c2"], b"").await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(h.state.lock().unwrap().instances.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn errors_are_readable() {
    let h = Harness::start().await;
    let out = h.shoal(&["info", "nope"], b"").await;
    assert_eq!(
        (out.code, out.stderr.as_str()),
        (1, "Error: instance nope not found\n")
    );
    let out = h.shoal(&["launch", "missing", "c0"], b"").await;
    assert_eq!(
        (out.code, out.stderr.as_str()),
        (1, "Error: image \"missing\" not found\n")
    );
    let out = h.shoal(&["launch", "busybox", "c1"], b"").await;
    assert_eq!(out.code, 0);
    let out = h.shoal(&["launch", "busybox", "c1"], b"").await;
    assert_eq!(out.stderr, "Error: instance c1 already exists\n");
    let out = h
        .shoal(&["launch", "busybox", "c3", "-c", "foo"], b"")
        .await;
    assert_eq!(out.code, 1);
    assert!(
        out.stderr
            .contains("\"foo\" is not a pair: expected KEY=VALUE"),
        "{}",
        out.stderr
    );
    let out = h.shoal(&["stop", "stuck"], b"").await;
    assert_eq!(
        (out.code, out.stderr.as_str()),
        (1, "Error: init did not stop\n")
    );
    // --no-wait returns once the change is committed.
    let out = h.shoal(&["stop", "--no-wait", "stuck"], b"").await;
    assert_eq!(out.code, 0, "{out:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn exec_passes_streams_and_exit_codes() {
    let h = Harness::start().await;
    assert_eq!(h.shoal(&["launch", "busybox", "c1"], b"").await.code, 0);
    let out = h.shoal(&["exec", "c1", "--", "exit", "7"], b"").await;
    assert_eq!(out.code, 7, "{out:?}");
    let out = h
        .shoal(&["exec", "c1", "--", "echo", "hello", "world"], b"")
        .await;
    assert_eq!((out.code, out.stdout.as_str()), (0, "hello world\n"));
    let out = h.shoal(&["exec", "c1", "--", "err"], b"").await;
    assert_eq!((out.code, out.stderr.as_str()), (3, "oops\n"));
    let big: Vec<u8> = (0..200_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let out = h.shoal(&["exec", "c1", "--", "cat"], &big).await;
    assert_eq!(out.code, 0);
    assert_eq!(out.stdout.as_bytes(), big.as_slice());
    // Pipes are not terminals: no tty unless forced.
    let out = h.shoal(&["exec", "c1", "--", "tty"], b"").await;
    assert_eq!(out.stdout, "tty=false rows=0 cols=0\n");
    let out = h
        .shoal(
            &[
                "exec", "-t", "c1", "--env", "A=1", "--cwd", "/tmp", "--user", "5", "--", "tty",
            ],
            b"",
        )
        .await;
    assert!(out.stdout.starts_with("tty=true rows="), "{out:?}");
    let start = h.state.lock().unwrap().execs.last().cloned().unwrap();
    assert_eq!(
        (start.cwd.as_str(), start.uid, start.env["A"].as_str()),
        ("/tmp", 5, "1")
    );
    let out = h.shoal(&["exec", "nope", "--", "true"], b"").await;
    assert_eq!(
        (out.code, out.stderr.as_str()),
        (1, "Error: instance nope not found\n")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn image_commands() {
    let h = Harness::start().await;
    let file = h.dir.path().join("img.tar");
    let data = vec![7u8; (5 << 20) / 2];
    std::fs::write(&file, &data).unwrap();
    let out = h
        .shoal(
            &[
                "image",
                "import",
                file.to_str().unwrap(),
                "--alias",
                "bb",
                "--alias",
                "busybox",
            ],
            b"",
        )
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    let fp = format!("{:064x}", data.len());
    assert_eq!(
        out.stdout,
        format!("Image imported with fingerprint: {fp}\n")
    );
    let (aliases, size, total, largest) = h.state.lock().unwrap().imports[0].clone();
    assert_eq!(
        (aliases, size, total, largest),
        (
            vec!["bb".into(), "busybox".into()],
            data.len() as u64,
            data.len(),
            1 << 20
        )
    );

    let v = json(&h.shoal(&["image", "list", "--format", "json"], b"").await);
    assert_eq!(v[0]["fingerprint"], fp.as_str());
    assert_eq!(v[0]["aliases"], serde_json::json!(["bb", "busybox"]));
    assert_eq!(
        h.shoal(&["image", "alias", "set", "small", &fp[..12]], b"")
            .await
            .code,
        0
    );
    assert_eq!(
        h.shoal(&["image", "alias", "delete", "bb"], b"").await.code,
        0
    );
    let v = json(
        &h.shoal(&["image", "info", "small", "-f", "json"], b"")
            .await,
    );
    assert_eq!(v["aliases"], serde_json::json!(["busybox", "small"]));
    let out = h.shoal(&["image", "info", "small"], b"").await;
    assert!(
        out.stdout.starts_with(&format!("Fingerprint: {fp}\n")),
        "{}",
        out.stdout
    );
    assert_eq!(h.shoal(&["image", "delete", "small"], b"").await.code, 0);
    let out = h.shoal(&["image", "delete", "small"], b"").await;
    assert_eq!(out.stderr, "Error: image small not found\n");
    let out = h
        .shoal(&["image", "import", "/nonexistent/x.tar"], b"")
        .await;
    assert_eq!(out.code, 1);
    assert!(
        out.stderr
            .starts_with("Error: cannot open /nonexistent/x.tar: "),
        "{}",
        out.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn cluster_list_and_version() {
    let h = Harness::start().await;
    let v = json(&h.shoal(&["cluster", "list", "--format", "json"], b"").await);
    assert_eq!(v[0]["name"], "node-1");
    assert_eq!(v[0]["roles"], serde_json::json!(["leader", "voter"]));
    let out = h.shoal(&["cluster", "list", "-f", "csv"], b"").await;
    assert_eq!(
        out.stdout.lines().next(),
        Some("node-1,198.18.0.1:8443,\"leader,voter\",Online,default,x86_64,")
    );
    let out = h.shoal(&["version"], b"").await;
    assert_eq!(
        out.stdout,
        format!("Client version: {}\n", env!("CARGO_PKG_VERSION"))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn connection_failures_name_the_fix() {
    let h = Harness::start().await;
    let missing = h.dir.path().join("absent.toml");
    let out = shoal_with_config(&missing, &["list"], b"").await;
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.starts_with("Error: no configuration at "),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("deploy/local-cluster up"),
        "{}",
        out.stderr
    );

    let dead = h.dir.path().join("dead.toml");
    write_config(&dead, h.dir.path(), &["127.0.0.1:1"]);
    let out = shoal_with_config(&dead, &["list"], b"").await;
    assert_eq!(out.code, 1);
    assert!(
        out.stderr
            .contains("cannot reach any member of remote \"local\": tried 127.0.0.1:1 ("),
        "{}",
        out.stderr
    );

    // A client certificate from another CA is refused by the handshake.
    let other = tempfile::tempdir().unwrap();
    common::pki::Pki::generate().write(other.path());
    let foreign = h.dir.path().join("foreign.toml");
    write_config(&foreign, other.path(), &[&h.addr.to_string()]);
    let out = shoal_with_config(&foreign, &["list"], b"").await;
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("check ca, cert, key and server_name"),
        "{}",
        out.stderr
    );

    // The server refuses a client certificate from another CA.
    std::fs::copy(h.dir.path().join("ca.crt"), other.path().join("ca.crt")).unwrap();
    let out = shoal_with_config(&foreign, &["list"], b"").await;
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.starts_with(&format!(
            "Error: connection to {} (remote \"local\") failed: ",
            h.addr
        )),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("refused the client certificate"),
        "{}",
        out.stderr
    );

    let out = h.shoal(&["--remote", "prod", "list"], b"").await;
    assert_eq!(
        out.stderr,
        "Error: no remote named \"prod\" (known: local)\n"
    );
}
