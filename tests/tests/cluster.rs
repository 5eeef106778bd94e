//! End-to-end: four simulated hosts forming one cluster over Raft and mutual TLS.
//! Needs root; skips with a message otherwise.

use serde_json::Value;
use shoal_tests::{is_root, Testbed};
use std::time::{Duration, Instant};

fn members(tb: &Testbed) -> Vec<Value> {
    tb.shoal(&["cluster", "list", "--format", "json"])
        .ok()
        .json()
        .as_array()
        .expect("array")
        .clone()
}

fn has_role(m: &Value, role: &str) -> bool {
    m["roles"].as_array().unwrap().iter().any(|r| r == role)
}

fn leader(tb: &Testbed) -> Option<String> {
    let out = tb.shoal(&["cluster", "show", "--format", "json"]);
    if out.code != 0 {
        return None;
    }
    let l = out.json()["leader"].as_str()?.to_string();
    (!l.is_empty()).then_some(l)
}

fn wait_for(what: &str, limit: Duration, mut f: impl FnMut() -> bool) -> Duration {
    let t0 = Instant::now();
    while t0.elapsed() < limit {
        if f() {
            return t0.elapsed();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{what} did not happen within {limit:?}");
}

#[test]
fn four_hosts_failover_membership_and_security() {
    if !is_root() {
        eprintln!("skipping: end-to-end tests need root");
        return;
    }
    let tb = Testbed::up(4).expect("test bed up");

    // a to d Online, one leader, two more voters, one stand-by.
    let ms = members(&tb);
    assert_eq!(ms.len(), 4, "{ms:?}");
    assert!(ms.iter().all(|m| m["status"] == "Online"), "{ms:?}");
    assert_eq!(
        ms.iter().filter(|m| has_role(m, "leader")).count(),
        1,
        "{ms:?}"
    );
    assert_eq!(
        ms.iter().filter(|m| has_role(m, "voter")).count(),
        3,
        "{ms:?}"
    );
    assert_eq!(
        ms.iter().filter(|m| has_role(m, "standby")).count(),
        1,
        "{ms:?}"
    );

    // --target places on that host; the image is fetched from a peer on demand; exec is
    // relayed to the instance's host from whichever member the CLI reached.
    tb.shoal(&["launch", "busybox", "t1", "--target", "d"]).ok();
    let list = tb.shoal(&["list", "--format", "json"]).ok().json();
    assert_eq!(list[0]["location"], "d", "{list}");
    assert_eq!(list[0]["status"], "Running", "{list}");
    let out = tb.shoal(&["exec", "t1", "--", "hostname"]).ok();
    assert_eq!(out.stdout.trim(), "t1");
    let images = tb.shoal(&["image", "list", "--format", "json"]).ok().json();
    assert!(
        images[0]["locations"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l == "d"),
        "{images}"
    );
    tb.shoal(&["delete", "--force", "t1"]).ok();

    // Acknowledged writes, then the leader dies.
    for i in 0..10 {
        tb.shoal(&["image", "alias", "set", &format!("w{i}"), "busybox"])
            .ok();
    }
    let old = leader(&tb).expect("a leader");
    tb.script(&["stop-host", &old]).unwrap().ok();
    let took = wait_for("a new leader", Duration::from_secs(10), || {
        leader(&tb).is_some_and(|l| l != old)
    });
    eprintln!("new leader after {took:?}");
    assert!(took < Duration::from_secs(3), "fail-over took {took:?}");
    let images = tb.shoal(&["image", "list", "--format", "json"]).ok().json();
    let aliases = images[0]["aliases"].as_array().unwrap().clone();
    for i in 0..10 {
        assert!(
            aliases.iter().any(|a| a == &format!("w{i}")),
            "acknowledged write w{i} lost: {aliases:?}"
        );
    }
    tb.shoal(&["image", "alias", "set", "after", "busybox"])
        .ok();

    // The old leader comes back Online.
    tb.script(&["start-host", &old]).unwrap().ok();
    wait_for(
        "the old leader back online",
        Duration::from_secs(15),
        || {
            members(&tb)
                .iter()
                .any(|m| m["name"] == old.as_str() && m["status"] == "Online")
        },
    );

    // A voter cut off is replaced by the stand-by.
    let ms = members(&tb);
    let victim = ms
        .iter()
        .find(|m| has_role(m, "voter") && !has_role(m, "leader"))
        .map(|m| m["name"].as_str().unwrap().to_string())
        .unwrap();
    let standby = ms
        .iter()
        .find(|m| has_role(m, "standby"))
        .map(|m| m["name"].as_str().unwrap().to_string())
        .unwrap();
    tb.script(&["isolate", &victim]).unwrap().ok();
    wait_for("the stand-by promoted", Duration::from_secs(40), || {
        members(&tb)
            .iter()
            .any(|m| m["name"] == standby.as_str() && has_role(m, "voter"))
    });
    tb.script(&["heal", &victim]).unwrap().ok();

    security(&tb);
    tb.down();
}

/// Certificates and tokens: what must be refused is refused, with a clear error.
fn security(tb: &Testbed) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = std::fs::read_to_string(tb.config()).unwrap();
    let alt = |name: &str, cert: &str, key: &str| {
        let path = dir.path().join(name);
        let mut text = String::new();
        for line in cfg.lines() {
            if line.starts_with("cert =") {
                text.push_str(&format!("cert = \"{cert}\"\n"));
            } else if line.starts_with("key =") {
                text.push_str(&format!("key = \"{key}\"\n"));
            } else {
                text.push_str(line);
                text.push('\n');
            }
        }
        std::fs::write(&path, text).unwrap();
        path
    };
    let run = |config: &std::path::Path, args: &[&str]| {
        let out = tb
            .shoal_cmd(args)
            .env("SHOAL_CONFIG", config)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };

    // A member certificate used as a client certificate.
    let b = tb.host_dir("b").join("tls");
    let member_cfg = alt(
        "member.toml",
        b.join("server.crt").to_str().unwrap(),
        b.join("server.key").to_str().unwrap(),
    );
    let (code, err) = run(&member_cfg, &["list"]);
    assert_ne!(code, 0);
    assert!(err.contains("permission denied"), "{err}");

    // A client certificate from another CA.
    let other = tempfile::tempdir().unwrap();
    let files = shoal_node::cluster::pki::ensure(other.path(), "x", &[]).unwrap();
    let foreign_cfg = alt(
        "foreign.toml",
        files.admin_cert.to_str().unwrap(),
        files.admin_key.to_str().unwrap(),
    );
    let (code, err) = run(&foreign_cfg, &["list"]);
    assert_ne!(code, 0, "a foreign certificate must be refused");
    assert!(!err.is_empty());

    // No client certificate at all.
    no_certificate(tb);

    // A viewer may read, not write.
    let token = tb
        .shoal(&["cluster", "trust", "add", "viewer1", "--role", "viewer"])
        .ok()
        .stdout;
    let token = token.trim();
    let viewer_cfg = dir.path().join("viewer.toml");
    let addr = first_address(&cfg);
    let (code, err) = run(
        &viewer_cfg,
        &["remote", "add", "local", &addr, "--token", token],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(run(&viewer_cfg, &["list"]).0, 0);
    let (code, err) = run(&viewer_cfg, &["launch", "busybox", "nope"]);
    assert_ne!(code, 0);
    assert!(err.contains("permission denied"), "{err}");
    // The token is single-use.
    let again = dir.path().join("again.toml");
    let (code, err) = run(&again, &["remote", "add", "local", &addr, "--token", token]);
    assert_ne!(code, 0);
    assert!(err.contains("refused"), "{err}");
    // A forged token (right shape, wrong secret) and an expired one.
    let forged = forge(token);
    let (code, err) = run(
        &again,
        &["remote", "add", "local", &addr, "--token", &forged],
    );
    assert_ne!(code, 0);
    assert!(err.contains("refused"), "{err}");
    let short = tb
        .shoal(&["cluster", "trust", "add", "late", "--ttl", "1s"])
        .ok()
        .stdout;
    std::thread::sleep(Duration::from_millis(1500));
    let (code, err) = run(
        &again,
        &["remote", "add", "local", &addr, "--token", short.trim()],
    );
    assert_ne!(code, 0);
    assert!(err.contains("expired"), "{err}");
}

fn first_address(cfg: &str) -> String {
    let line = cfg.lines().find(|l| l.starts_with("addresses")).unwrap();
    line.split('"').nth(1).unwrap().to_string()
}

/// Replaces the secret in a token with another one of the same shape.
fn forge(token: &str) -> String {
    use base64::Engine;
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut v: Value = serde_json::from_slice(&engine.decode(token).unwrap()).unwrap();
    v["secret"] = Value::String("ab".repeat(32));
    engine.encode(serde_json::to_vec(&v).unwrap())
}

fn no_certificate(tb: &Testbed) {
    let cfg = std::fs::read_to_string(tb.config()).unwrap();
    let ca_path = cfg
        .lines()
        .find(|l| l.starts_with("ca ="))
        .and_then(|l| l.split('"').nth(1))
        .unwrap()
        .to_string();
    let addr = first_address(&cfg);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let ca = std::fs::read(ca_path).unwrap();
        let tls = tonic::transport::ClientTlsConfig::new()
            .ca_certificate(tonic::transport::Certificate::from_pem(ca))
            .domain_name("shoal");
        let ch = tonic::transport::Endpoint::from_shared(format!("https://{addr}"))
            .unwrap()
            .tls_config(tls)
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut c = shoal_proto::api::instances_client::InstancesClient::new(ch);
        let err = c
            .list(shoal_proto::api::ListInstancesRequest {})
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unauthenticated, "{err:?}");
    });
}

#[test]
fn without_a_majority_writes_fail_clearly_and_reads_say_they_may_be_stale() {
    if !is_root() {
        eprintln!("skipping: end-to-end tests need root");
        return;
    }
    let tb = Testbed::up(3).expect("test bed up");
    tb.shoal(&["image", "alias", "set", "before", "busybox"])
        .ok();
    let out = tb.shoal(&["list"]);
    assert_eq!(out.code, 0);
    assert!(!out.stderr.contains("stale"), "{out:?}");
    // Two of three voters die: no majority.
    tb.script(&["stop-host", "b"]).unwrap().ok();
    tb.script(&["stop-host", "c"]).unwrap().ok();
    let t0 = Instant::now();
    let out = tb.shoal(&["image", "alias", "set", "during", "busybox"]);
    assert_ne!(out.code, 0, "a write without a majority must fail");
    assert!(t0.elapsed() < Duration::from_secs(30), "it must not hang");
    assert!(
        out.stderr.contains("majority") || out.stderr.contains("no leader"),
        "{}",
        out.stderr
    );
    let out = tb.shoal(&["image", "list", "--format", "json"]);
    assert_eq!(out.code, 0, "reads still answer: {out:?}");
    assert!(out.stderr.contains("may be stale"), "{}", out.stderr);
    // The majority returns: writes work again and nothing acknowledged was lost.
    tb.script(&["start-host", "b"]).unwrap().ok();
    tb.script(&["start-host", "c"]).unwrap().ok();
    wait_for("writes to work again", Duration::from_secs(30), || {
        tb.shoal(&["image", "alias", "set", "after", "busybox"])
            .code
            == 0
    });
    let images = tb.shoal(&["image", "list", "--format", "json"]).ok().json();
    let aliases = images[0]["aliases"].as_array().unwrap().clone();
    assert!(aliases.iter().any(|a| a == "before"), "{aliases:?}");
    tb.down();
}
