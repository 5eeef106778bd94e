//! End-to-end security checks. `containers_are_confined`: what a container can see and
//! do, checked from inside through the CLI (and, for the monitor binary, from the host).
//! `client_certificates_*`: which client certificates and tokens the cluster refuses, on
//! every member. Needs root; skips with a message otherwise.

use serde_json::Value;
use shoal_tests::{is_root, Testbed};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn inside(tb: &Testbed, name: &str, script: &str) -> (i32, String) {
    let out = tb.shoal(&["exec", name, "--", "sh", "-c", script]);
    (out.code, format!("{}{}", out.stdout, out.stderr))
}

#[test]
fn containers_are_confined() {
    if !is_root() {
        eprintln!("skipping: end-to-end tests need root");
        return;
    }
    let tb = Testbed::up(1).expect("test bed up");
    tb.shoal(&[
        "launch",
        "busybox",
        "s1",
        "-c",
        "limits.memory=32MiB",
        "-c",
        "limits.processes=40",
    ])
    .ok();

    // Only its own processes.
    let (_, ps) = inside(&tb, "s1", "ps -o pid,comm");
    let pids: Vec<&str> = ps.lines().skip(1).collect();
    assert!(pids.len() <= 4, "only the container's processes: {ps}");
    assert!(pids[0].trim().starts_with("1 "), "{ps}");
    // No host mount visible: the host's data directory does not appear.
    let data = tb.host_dir("a");
    let (_, mounts) = inside(&tb, "s1", "cat /proc/self/mountinfo");
    assert!(!mounts.contains(data.to_str().unwrap()), "{mounts}");
    assert!(!mounts.contains("/work"), "{mounts}");
    // Root is unprivileged on the host.
    let (_, map) = inside(&tb, "s1", "cat /proc/self/uid_map");
    let base: u64 = map.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!(base >= 100_000, "{map}");
    // Masked and read-only kernel paths.
    for path in ["/proc/kcore", "/proc/keys", "/proc/timer_list"] {
        let (_, n) = inside(
            &tb,
            "s1",
            &format!("cat {path} 2>/dev/null | head -c 1 | wc -c"),
        );
        assert_eq!(n.trim(), "0", "{path} must be masked");
    }
    let (code, _) = inside(&tb, "s1", "echo 1 > /proc/sys/vm/drop_caches");
    assert_ne!(code, 0, "/proc/sys must be read-only");
    let (code, _) = inside(&tb, "s1", "echo b > /proc/sysrq-trigger");
    assert_ne!(code, 0);
    // No inherited descriptors: 0, 1, 2 and the one `ls` opens.
    let (_, fds) = inside(&tb, "s1", "ls /proc/self/fd");
    let fds: Vec<&str> = fds.split_whitespace().collect();
    assert!(fds.len() <= 4, "{fds:?}");
    // A fork bomb hits limits.processes: the shell cannot fork past it; the container lives on.
    let (code, out) = inside(
        &tb,
        "s1",
        "for i in $(seq 60); do sleep 2 & done; echo all started",
    );
    assert_ne!(code, 0, "{out}");
    assert!(
        out.contains("can't fork") && !out.contains("all started"),
        "{out}"
    );
    std::thread::sleep(std::time::Duration::from_secs(3));
    // Memory stays within limits.memory: the hog is killed, the container lives on.
    let (code, _) = inside(&tb, "s1", "head -c 200m /dev/zero | tail > /dev/null");
    assert_ne!(code, 0, "a 200 MB allocation must not succeed under 32 MiB");
    let list = tb.shoal(&["list", "--format", "json"]).ok().json();
    assert_eq!(list[0]["status"], "Running", "{list}");
    // The host's /dev/null was never touched.
    let null = std::fs::metadata("/dev/null").unwrap();
    assert_eq!((null.uid(), null.permissions().mode() & 0o777), (0, 0o666));

    blocked_syscalls_fail_with_eperm(&tb, "s1");
    the_monitor_binary_cannot_be_written(&tb, "s1");
    tb.down();
}

/// The seccomp deny list holds inside: busybox applets whose syscalls are denied fail with
/// EPERM, and a small static probe shows syscalls a user namespace would otherwise allow
/// (keyctl, perf_event_open) refused with EPERM while an allowed one still works.
fn blocked_syscalls_fail_with_eperm(tb: &Testbed, name: &str) {
    // The filter is installed (mode 2) with no_new_privs, in init and in exec'd commands.
    let (_, status) = inside(
        tb,
        name,
        "grep -E '^(Seccomp|NoNewPrivs):' /proc/self/status /proc/1/status",
    );
    for file in ["/proc/self/status", "/proc/1/status"] {
        assert!(status.contains(&format!("{file}:Seccomp:\t2")), "{status}");
        assert!(
            status.contains(&format!("{file}:NoNewPrivs:\t1")),
            "{status}"
        );
    }
    // syslog (dmesg), swapon, delete_module (rmmod), init_module (insmod).
    for (applet, script) in [
        ("dmesg", "dmesg"),
        (
            "swapon",
            "dd if=/dev/zero of=/tmp/swap bs=1k count=64 2>/dev/null && mkswap /tmp/swap >/dev/null && swapon /tmp/swap",
        ),
        ("rmmod", "rmmod shoal_nothing"),
        ("insmod", "head -c 4096 /dev/zero > /tmp/x.ko && insmod /tmp/x.ko"),
    ] {
        let (code, out) = inside(tb, name, script);
        eprintln!("{applet} inside: exit {code}: {}", out.trim());
        assert_ne!(code, 0, "{applet} must fail: {out}");
        assert!(out.contains("Operation not permitted"), "{applet}: {out}");
    }
    // The probe: errno of each syscall, by name.
    let dir = tempfile::tempdir().unwrap();
    let c = dir.path().join("probe.c");
    std::fs::write(
        &c,
        r#"#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/syscall.h>
static void show(const char *name, long r) {
    printf("%s: %s\n", name, r == -1 ? strerror(errno) : "ok");
}
int main(void) {
    show("keyctl", syscall(SYS_keyctl, 0, -3, 0));
    show("perf_event_open", syscall(SYS_perf_event_open, 0, 0, -1, -1, 0));
    show("bpf", syscall(SYS_bpf, 0, 0, 0));
    show("umount2-force", syscall(SYS_umount2, "/nonexistent", 1));
    show("umount2", syscall(SYS_umount2, "/nonexistent", 0));
    show("getppid", syscall(SYS_getppid));
    return 0;
}
"#,
    )
    .unwrap();
    let bin = dir.path().join("probe");
    let built = std::process::Command::new("gcc")
        .args(["-static", "-O1", "-o"])
        .arg(&bin)
        .arg(&c)
        .status()
        .is_ok_and(|s| s.success());
    if !built {
        eprintln!("no static gcc: skipping the seccomp probe (the applets above still ran)");
        return;
    }
    let out = tb
        .shoal_cmd(&[
            "exec",
            name,
            "--",
            "sh",
            "-c",
            "cat > /tmp/probe && chmod +x /tmp/probe && /tmp/probe",
        ])
        .stdin(std::fs::File::open(&bin).unwrap())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    eprintln!(
        "seccomp probe inside:\n{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for denied in ["keyctl", "perf_event_open", "bpf", "umount2-force"] {
        assert!(
            text.contains(&format!("{denied}: Operation not permitted")),
            "{denied}: {text}"
        );
    }
    assert!(
        text.contains("umount2: No such file or directory"),
        "{text}"
    );
    assert!(text.contains("getppid: ok"), "{text}");
}

/// The pid of the monitor of container `name` on the host whose data directory is `data`
/// (`shoald monitor <containers dir> <run dir> <cgroup group> <name>`).
fn monitor_pid(data: &Path, name: &str) -> Option<u32> {
    let containers = data.join("containers");
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmd) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmd
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if args.get(1).map(String::as_str) == Some("monitor")
            && args.get(2).map(PathBuf::from) == Some(containers.clone())
            && args.get(5).map(String::as_str) == Some(name)
        {
            return Some(pid);
        }
    }
    None
}

/// The monitor is exec'd through a read-only mount of shoald: from the host, its
/// /proc/PID/exe cannot be opened for writing; from inside, no shoald process is visible.
fn the_monitor_binary_cannot_be_written(tb: &Testbed, name: &str) {
    let pid = monitor_pid(&tb.host_dir("a"), name).expect("the container's monitor runs");
    let exe = format!("/proc/{pid}/exe");
    let target = std::fs::read_link(&exe).unwrap();
    let err = std::fs::OpenOptions::new()
        .write(true)
        .open(&exe)
        .expect_err("the monitor binary must not open for writing");
    eprintln!(
        "monitor {pid} exe -> {}: open for writing: {err}",
        target.display()
    );
    assert!(
        matches!(err.raw_os_error(), Some(libc::EROFS) | Some(libc::ETXTBSY)),
        "{err}"
    );
    // ETXTBSY lasts only while it runs: the binary itself sits on a read-only mount, so a
    // descriptor kept from /proc/PID/exe (the CVE-2019-5736 route) cannot write it later.
    let file = std::fs::File::open(&exe).unwrap();
    let vfs = nix::sys::statvfs::fstatvfs(&file).unwrap();
    assert!(
        vfs.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY),
        "the monitor's binary must be on a read-only mount: {:?}",
        vfs.flags()
    );
    let again = std::fs::OpenOptions::new()
        .write(true)
        .open(format!(
            "/proc/self/fd/{}",
            std::os::fd::AsRawFd::as_raw_fd(&file)
        ))
        .expect_err("reopening the kept descriptor for writing must fail");
    eprintln!("reopened for writing through a kept descriptor: {again}");
    // Inside, every visible process is the container's own; none runs shoald.
    let (_, exes) = inside(
        tb,
        name,
        "for p in /proc/[0-9]*; do readlink $p/exe; cat $p/cmdline | tr '\\0' ' '; echo; done 2>/dev/null",
    );
    assert!(
        !exes.contains("shoald") && !exes.contains("monitor"),
        "{exes}"
    );
    assert!(exes.contains("busybox"), "{exes}");
}

/// A CLI configuration of its own: one remote, pinned to `address`, with these files.
fn pinned_config(path: &Path, address: &str, ca: &Path, cert: &Path, key: &Path) -> PathBuf {
    std::fs::write(
        path,
        format!(
            "default_remote = \"local\"\n\n[remotes.local]\naddresses = [\"{address}\"]\nca = \"{}\"\ncert = \"{}\"\nkey = \"{}\"\nserver_name = \"shoal\"\n",
            ca.display(),
            cert.display(),
            key.display()
        ),
    )
    .unwrap();
    path.to_path_buf()
}

/// Runs `shoal ARGS` with the configuration `config`: (exit code, stdout, stderr).
fn run_with(tb: &Testbed, config: &Path, args: &[&str]) -> (i32, String, String) {
    let out = tb
        .shoal_cmd(args)
        .env("SHOAL_CONFIG", config)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A client token for `name` with `role`, from the admin.
fn client_token(tb: &Testbed, name: &str, role: &str) -> String {
    tb.shoal(&["cluster", "trust", "add", name, "--role", role])
        .ok()
        .stdout
        .trim()
        .to_string()
}

/// Enrols with `token` into a configuration of its own under `dir` (credentials beside
/// it, in `dir/local/`).
fn enrol(tb: &Testbed, dir: &Path, address: &str, token: &str) -> (i32, String, PathBuf) {
    std::fs::create_dir_all(dir).unwrap();
    let config = dir.join("cli.toml");
    let (code, _, err) = run_with(
        tb,
        &config,
        &["remote", "add", "local", address, "--token", token],
    );
    (code, err, config)
}

fn sha256_of_pem(path: &Path) -> String {
    let pem = std::fs::read_to_string(path).unwrap();
    let der = x509_der(&pem);
    shoal_node::cluster::token::sha256_hex(&der)
}

fn x509_der(pem: &str) -> Vec<u8> {
    use base64::Engine;
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap()
}

/// Calls `Instances.List` directly with a client identity, bypassing the CLI's own checks.
fn raw_list(address: &str, ca: &Path, cert: &str, key: &str) -> Result<(), String> {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let tls = tonic::transport::ClientTlsConfig::new()
            .ca_certificate(tonic::transport::Certificate::from_pem(
                std::fs::read(ca).unwrap(),
            ))
            .identity(tonic::transport::Identity::from_pem(cert, key))
            .domain_name("shoal");
        let ch = tonic::transport::Endpoint::from_shared(format!("https://{address}"))
            .unwrap()
            .tls_config(tls)
            .unwrap()
            .connect()
            .await
            .map_err(|e| format!("connect: {e:?}"))?;
        let mut c = shoal_proto::api::instances_client::InstancesClient::new(ch);
        c.list(shoal_proto::api::ListInstancesRequest {})
            .await
            .map(|_| ())
            .map_err(|s| {
                // A refusal in the handshake shows in the status's sources.
                let mut text = format!("{:?}: {}", s.code(), s.message());
                let mut cur = std::error::Error::source(&s);
                while let Some(e) = cur {
                    text.push_str(&format!(": {e}"));
                    cur = e.source();
                }
                text
            })
    })
}

/// A client certificate signed by the cluster CA (host a's copy) with the given validity.
fn hand_made_client(
    tb: &Testbed,
    name: &str,
    not_before: (i32, u8, u8),
    not_after: (i32, u8, u8),
) -> (String, String) {
    let tls = tb.host_dir("a").join("tls");
    let ca_key =
        rcgen::KeyPair::from_pem(&std::fs::read_to_string(tls.join("ca.key")).unwrap()).unwrap();
    let issuer = rcgen::Issuer::from_ca_cert_pem(
        &std::fs::read_to_string(tls.join("ca.crt")).unwrap(),
        ca_key,
    )
    .unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::default();
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::CommonName, name);
    dn.push(rcgen::DnType::OrganizationName, "shoal");
    dn.push(rcgen::DnType::OrganizationalUnitName, "admin");
    params.distinguished_name = dn;
    params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    params.not_before = rcgen::date_time_ymd(not_before.0, not_before.1, not_before.2);
    params.not_after = rcgen::date_time_ymd(not_after.0, not_after.1, not_after.2);
    let cert = params.signed_by(&key, &issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> Option<Duration> {
    let t0 = Instant::now();
    while t0.elapsed() < limit {
        if f() {
            return Some(t0.elapsed());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

#[test]
fn client_certificates_expired_revoked_and_tokens_used_once() {
    if !is_root() {
        eprintln!("skipping: end-to-end tests need root");
        return;
    }
    let tb = Testbed::up(2).expect("test bed up");
    let dir = tempfile::tempdir().unwrap();
    let members = tb
        .shoal(&["cluster", "list", "--format", "json"])
        .ok()
        .json();
    let addresses: Vec<(String, String)> = members
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["name"].as_str().unwrap().to_string(),
                m["address"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(addresses.len(), 2, "{members}");
    let first = addresses[0].1.clone();
    let ca = tb.host_dir("a").join("tls").join("ca.crt");

    expired_certificates_are_refused(&tb, dir.path(), &addresses, &ca);
    revoked_certificates_are_refused_everywhere(&tb, dir.path(), &addresses);
    one_token_enrols_one_client(&tb, dir.path(), &first);
    tb.down();
}

/// A certificate past its notAfter, signed by the cluster CA: every member refuses it in
/// the TLS handshake, and the CLI says it expired and what to do.
fn expired_certificates_are_refused(
    tb: &Testbed,
    dir: &Path,
    addresses: &[(String, String)],
    ca: &Path,
) {
    let (cert, key) = hand_made_client(tb, "old", (2020, 1, 1), (2021, 1, 1));
    // The same, made the same way but valid today: accepted (so the refusal is the date's).
    let (good_cert, good_key) = hand_made_client(tb, "fresh", (2020, 1, 1), (2090, 1, 1));
    let mut alerts = 0;
    for (member, address) in addresses {
        raw_list(address, ca, &good_cert, &good_key)
            .unwrap_or_else(|e| panic!("a valid certificate is accepted by {member}: {e}"));
        // TLS 1.3: the member's alert (CertificateExpired) races the client's first
        // request, which may see the connection closed instead. Either way: refused.
        for _ in 0..5 {
            let err = raw_list(address, ca, &cert, &key)
                .expect_err("an expired certificate must be refused");
            eprintln!("expired certificate at {member}: {err}");
            assert!(err.contains("transport error"), "refused in TLS: {err}");
            alerts += usize::from(err.contains("CertificateExpired"));
        }
    }
    assert!(
        alerts > 0,
        "no member said CertificateExpired in 10 attempts"
    );
    let (cert_path, key_path) = (dir.join("old.crt"), dir.join("old.key"));
    std::fs::write(&cert_path, &cert).unwrap();
    std::fs::write(&key_path, &key).unwrap();
    let config = pinned_config(
        &dir.join("old.toml"),
        &addresses[0].1,
        ca,
        &cert_path,
        &key_path,
    );
    let (code, _, err) = run_with(tb, &config, &["list"]);
    assert_ne!(code, 0);
    assert!(
        err.contains("expired on 2021-01-01") && err.contains("shoal cluster trust add"),
        "{err}"
    );
}

/// An operator enrols and works; an admin revokes it; every member refuses it on every
/// call from then on, also after a restart, while a new certificate for the same name
/// works. Viewers and operators may not revoke, nor list.
fn revoked_certificates_are_refused_everywhere(
    tb: &Testbed,
    dir: &Path,
    addresses: &[(String, String)],
) {
    let first = &addresses[0].1;
    let token = client_token(tb, "alice", "operator");
    let (code, err, alice) = enrol(tb, &dir.join("alice"), first, &token);
    assert_eq!(code, 0, "{err}");
    let creds = dir.join("alice").join("local");
    let fingerprint = sha256_of_pem(&creds.join("client.crt"));
    let token = client_token(tb, "watcher", "viewer");
    let (code, err, watcher) = enrol(tb, &dir.join("watcher"), first, &token);
    assert_eq!(code, 0, "{err}");

    // One configuration per member, so each member is asked itself.
    let per_member: Vec<(String, PathBuf)> = addresses
        .iter()
        .map(|(name, address)| {
            let path = pinned_config(
                &dir.join(format!("alice-{name}.toml")),
                address,
                &creds.join("ca.crt"),
                &creds.join("client.crt"),
                &creds.join("client.key"),
            );
            (name.clone(), path)
        })
        .collect();
    let calls: [&[&str]; 4] = [
        &["list"],
        &["image", "list"],
        &["cluster", "list"],
        &["launch", "busybox", "alice1", "--target", "a"],
    ];
    for (member, config) in &per_member {
        let (code, _, err) = run_with(tb, config, calls[0]);
        assert_eq!(code, 0, "alice works at {member} before: {err}");
    }
    assert_eq!(run_with(tb, &alice, calls[3]).0, 0, "operators launch");

    // Only an admin lists and revokes.
    for (who, config) in [("viewer", &watcher), ("operator", &alice)] {
        for args in [
            &["cluster", "trust", "remove", "watcher"][..],
            &["cluster", "trust", "list"][..],
        ] {
            let (code, _, err) = run_with(tb, config, args);
            assert_ne!(code, 0, "{who} {args:?}");
            assert!(err.contains("permission denied"), "{who} {args:?}: {err}");
        }
    }
    let list = tb
        .shoal(&["cluster", "trust", "list", "--format", "json"])
        .ok()
        .json();
    let entry = |list: &Value, name: &str| {
        list.as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{name} listed: {list}"))
    };
    let a = entry(&list, "alice");
    assert_eq!(
        (a["status"].as_str(), a["role"].as_str()),
        (Some("trusted"), Some("operator"))
    );
    assert_eq!(a["fingerprint"], fingerprint.as_str());

    // Revoked: every member refuses every call, with the same clear error.
    let t0 = Instant::now();
    let out = tb.shoal(&["cluster", "trust", "remove", "alice"]).ok();
    assert!(out.stderr.contains(&fingerprint), "{}", out.stderr);
    let acked = t0.elapsed();
    for (member, config) in &per_member {
        let took = wait_until(Duration::from_secs(5), || {
            run_with(tb, config, calls[0]).0 != 0
        })
        .unwrap_or_else(|| panic!("{member} still accepts a revoked certificate after 5 s"));
        eprintln!(
            "revocation acknowledged after {acked:?}; refused by {member} within {took:?} more"
        );
        for args in calls {
            let (code, _, err) = run_with(tb, config, args);
            assert_ne!(code, 0, "{member} {args:?}");
            assert!(
                err.contains("client certificate 'alice'")
                    && err.contains(&fingerprint[..16])
                    && err.contains("was revoked")
                    && err.contains("shoal cluster trust add alice")
                    && !err.contains("role does not allow"),
                "{member} {args:?}: {err}"
            );
        }
    }
    let list = tb
        .shoal(&["cluster", "trust", "list", "--format", "json"])
        .ok()
        .json();
    let a = entry(&list, "alice");
    assert_eq!(a["status"], "revoked", "{list}");
    assert_ne!(a["revoked_at"], "", "{list}");
    let (code, _, err) = run_with(tb, &watcher, &["cluster", "show"]);
    assert_eq!(code, 0, "others are untouched: {err}");
    let again = tb.shoal(&["cluster", "trust", "remove", "alice"]);
    assert_ne!(again.code, 0);
    assert!(again.stderr.contains("already revoked"), "{}", again.stderr);

    // A new certificate for the same name works; the old one stays refused.
    let token = client_token(tb, "alice", "viewer");
    let (code, err, alice2) = enrol(tb, &dir.join("alice2"), first, &token);
    assert_eq!(code, 0, "{err}");
    assert_eq!(run_with(tb, &alice2, &["list"]).0, 0);
    let (code, _, err) = run_with(tb, &per_member[0].1, &["list"]);
    assert_ne!(code, 0);
    assert!(err.contains("was revoked"), "{err}");

    // The revocation is durable: a member restarted from its disk still refuses.
    let (member, config) = &per_member[per_member.len() - 1];
    tb.script(&["stop-host", member]).unwrap().ok();
    tb.script(&["start-host", member]).unwrap().ok();
    let took = wait_until(Duration::from_secs(20), || {
        let (code, _, err) = run_with(tb, config, &["list"]);
        code != 0 && err.contains("was revoked")
    });
    assert!(took.is_some(), "{member} refuses after a restart");

    // Revoking a client that has not enrolled yet cancels its token.
    let token = client_token(tb, "bob", "viewer");
    let out = tb.shoal(&["cluster", "trust", "remove", "bob"]).ok();
    assert!(out.stderr.contains("cancelled"), "{}", out.stderr);
    let (code, err, _) = enrol(tb, &dir.join("bob"), first, &token);
    assert_ne!(code, 0);
    assert!(err.contains("refused the token"), "{err}");
    let unknown = tb.shoal(&["cluster", "trust", "remove", "nobody"]);
    assert_ne!(unknown.code, 0);
    assert!(
        unknown.stderr.contains("no client named 'nobody'"),
        "{}",
        unknown.stderr
    );
    tb.shoal(&["delete", "--force", "alice1"]).ok();
}

/// Two clients enrol with one token at the same moment: exactly one gets a certificate,
/// the other a clear refusal. Several rounds, each with a fresh token.
fn one_token_enrols_one_client(tb: &Testbed, dir: &Path, address: &str) {
    for round in 0..3 {
        let token = client_token(tb, &format!("twin{round}"), "viewer");
        let barrier = std::sync::Barrier::new(2);
        let results: Vec<(i32, String)> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..2)
                .map(|i| {
                    let (barrier, token) = (&barrier, &token);
                    let sub = dir.join(format!("twin{round}-{i}"));
                    s.spawn(move || {
                        barrier.wait();
                        let (code, err, _) = enrol(tb, &sub, address, token);
                        (code, err)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let ok = results.iter().filter(|(c, _)| *c == 0).count();
        assert_eq!(ok, 1, "round {round}: exactly one enrols: {results:?}");
        let (_, err) = results.iter().find(|(c, _)| *c != 0).unwrap();
        eprintln!("round {round}: the second use of the token: {}", err.trim());
        assert!(
            err.contains("refused the token") && err.contains("used"),
            "{err}"
        );
    }
}
