//! The seed corpora committed under `tests/fuzz/seeds/<target>/`: small valid inputs the
//! fuzzers start from (a busybox-like image of a few KB, well-formed requests, a layer
//! stream, commands). Regenerate with
//! `cargo test -p shoal-tests --test fuzz_corpus -- --ignored write_seeds` (as root: the
//! layer stream's files are owned by container ids).

use std::collections::HashMap;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;

use prost::Message;
use shoal_proto::api as pb;
use shoal_raft::model::{GroupPolicy, PlacementGroup, SchedulerConfig};
use shoal_raft::{Command, DesiredState, InstanceStatus, ObservedState};

use super::command::seed_commands;

/// Host uid of the container root in the layer stream seed (as in the `layer_stream`
/// target).
const LAYER_BASE: u32 = 1_000_000;

/// Every seed: (target, file name, bytes).
pub fn all() -> io::Result<Vec<(&'static str, String, Vec<u8>)>> {
    let mut out = Vec::new();
    for (name, bytes) in api_requests() {
        out.push(("api_request", name, bytes));
    }
    let tar = busybox_tarball()?;
    out.push(("image_tarball", "busybox.tar".into(), tar.clone()));
    out.push(("image_tarball", "busybox.tar.gz".into(), gzip(&tar)?));
    out.push(("image_tarball_gz", "busybox.tar".into(), tar));
    for (name, bytes) in configs() {
        out.push(("config", name, bytes));
    }
    if let Some(stream) = layer_stream()? {
        let mut sealed = vec![0u8];
        sealed.extend_from_slice(&stream);
        out.push(("layer_stream", "sample.resealed".into(), sealed));
        let mut raw = vec![1u8];
        raw.extend_from_slice(&stream);
        out.push(("layer_stream", "sample.raw".into(), raw));
    }
    out.push(("raft_command", "commands.jsonl".into(), commands()));
    Ok(out)
}

/// Writes every seed to `dir/<target>/<name>`.
pub fn write_all(dir: &Path) -> io::Result<usize> {
    let seeds = all()?;
    for (target, name, bytes) in &seeds {
        fs::create_dir_all(dir.join(target))?;
        fs::write(dir.join(target).join(name), bytes)?;
    }
    Ok(seeds.len())
}

fn tagged(tag: u8, m: &impl Message) -> Vec<u8> {
    let mut v = vec![tag];
    v.extend_from_slice(&m.encode_to_vec());
    v
}

fn api_requests() -> Vec<(String, Vec<u8>)> {
    let s = |x: &str| x.to_string();
    vec![
        (
            s("create"),
            tagged(
                0,
                &pb::CreateInstanceRequest {
                    name: s("web"),
                    image: s("busybox"),
                    config: HashMap::from([
                        (s("limits.memory"), s("64MiB")),
                        (s("limits.cpu"), s("0.5")),
                        (s("placement.labels"), s("zone=eu")),
                    ]),
                    start: true,
                    target: String::new(),
                },
            ),
        ),
        (
            s("move"),
            tagged(
                1,
                &pb::MoveInstanceRequest {
                    name: s("c1"),
                    target: s("b"),
                    mode: s("precopy"),
                },
            ),
        ),
        (
            s("copy"),
            tagged(
                2,
                &pb::CopyInstanceRequest {
                    name: s("c1"),
                    new_name: s("c2"),
                    target: s("@web"),
                },
            ),
        ),
        (
            s("exec"),
            tagged(
                3,
                &pb::ExecInput {
                    input: Some(pb::exec_input::Input::Start(pb::ExecStart {
                        instance: s("c1"),
                        command: vec![s("sh"), s("-c"), s("echo hi")],
                        env: HashMap::from([(s("GREETING"), s("hello"))]),
                        cwd: s("/root"),
                        uid: 0,
                        gid: 0,
                        tty: true,
                        rows: 24,
                        cols: 80,
                    })),
                },
            ),
        ),
        (
            s("import"),
            tagged(
                4,
                &pb::ImportImageChunk {
                    chunk: Some(pb::import_image_chunk::Chunk::Header(
                        pb::ImportImageHeader {
                            aliases: vec![s("alpine"), s("edge")],
                            size: 4096,
                        },
                    )),
                },
            ),
        ),
        (
            s("stop"),
            tagged(
                5,
                &pb::StopInstanceRequest {
                    name: s("c1"),
                    force: true,
                    timeout_seconds: 30,
                },
            ),
        ),
        (
            s("delete"),
            tagged(
                6,
                &pb::DeleteInstanceRequest {
                    name: s("c1"),
                    force: false,
                },
            ),
        ),
        (
            s("placement-group"),
            tagged(
                7,
                &pb::PlacementGroup {
                    name: s("web"),
                    policy: s("spread"),
                    strict: true,
                },
            ),
        ),
        (
            s("strategy"),
            tagged(
                8,
                &pb::SetSchedulerStrategyRequest {
                    strategy: s("binpack"),
                },
            ),
        ),
        (
            s("token"),
            tagged(
                9,
                &pb::CreateTokenRequest {
                    name: s("d"),
                    kind: s("client"),
                    role: s("viewer"),
                    ttl_seconds: 600,
                },
            ),
        ),
        (
            s("alias"),
            tagged(
                10,
                &pb::SetAliasRequest {
                    alias: s("stable"),
                    image: s("busybox"),
                },
            ),
        ),
    ]
}

fn configs() -> Vec<(String, Vec<u8>)> {
    let with = |tag: u8, text: &str| {
        let mut v = vec![tag];
        v.extend_from_slice(text.as_bytes());
        v
    };
    let token = shoal_node::cluster::token::JoinToken {
        v: 1,
        name: "b".into(),
        secret: "ab".repeat(32),
        fingerprint: "cd".repeat(32),
        addresses: vec!["198.18.1.2:8443".into()],
        expires_at_ms: 1_700_000_000_000,
        ca_pem: None,
    };
    vec![
        (
            "instance-config".into(),
            with(
                0,
                "limits.memory=64MiB\nlimits.cpu=0.5\nlimits.processes=200\n\
                 security.privileged=false\nboot.autostart=true\ncluster.evacuate=migrate\n\
                 placement.group=web\nplacement.labels=zone=eu,disk=ssd\n\
                 environment.FOO=bar\nuser.note=hello\n",
            ),
        ),
        ("metadata".into(), with(1, METADATA)),
        ("token".into(), with(2, &token.encode())),
        (
            "shoald-args".into(),
            with(
                3,
                "--name a --data-dir /var/lib/shoal --listen 0.0.0.0:8443 --label zone=eu \
                 --group web --log-format json",
            ),
        ),
        ("signal".into(), with(4, "SIGRTMIN+3")),
    ]
}

const METADATA: &str = "architecture: x86_64\ncreation_date: 1700000000\nproperties:\n  \
os: busybox\n  release: \"1.36\"\n  description: busybox test image\nstop_signal: SIGUSR2\n\
templates: {}\n";

/// An LXD-style image of a few KB shaped like `deploy/build-busybox-image`'s: a fake
/// busybox binary, its links, `/etc` and the usual empty directories.
pub fn busybox_tarball() -> io::Result<Vec<u8>> {
    use tar::{EntryType, Header};
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |kind: EntryType, path: &str, mode: u32, link: Option<&str>, data: &[u8]| {
        let mut h = Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        h.set_size(data.len() as u64);
        if let Some(l) = link {
            h.set_link_name(l)?;
        }
        b.append_data(&mut h, path, data)
    };
    add(
        EntryType::Regular,
        "metadata.yaml",
        0o644,
        None,
        METADATA.as_bytes(),
    )?;
    for (dir, mode) in [
        ("rootfs/", 0o755),
        ("rootfs/bin/", 0o755),
        ("rootfs/sbin/", 0o755),
        ("rootfs/etc/", 0o755),
        ("rootfs/etc/init.d/", 0o755),
        ("rootfs/dev/", 0o755),
        ("rootfs/proc/", 0o555),
        ("rootfs/sys/", 0o555),
        ("rootfs/root/", 0o700),
        ("rootfs/tmp/", 0o1777),
        ("rootfs/var/", 0o755),
        ("rootfs/var/log/", 0o755),
    ] {
        add(EntryType::Directory, dir, mode, None, b"")?;
    }
    let mut elf = b"\x7fELF\x02\x01\x01\0".to_vec();
    elf.resize(512, 0);
    add(EntryType::Regular, "rootfs/bin/busybox", 0o755, None, &elf)?;
    add(
        EntryType::Symlink,
        "rootfs/bin/sh",
        0o777,
        Some("busybox"),
        b"",
    )?;
    add(
        EntryType::Symlink,
        "rootfs/sbin/init",
        0o777,
        Some("../bin/busybox"),
        b"",
    )?;
    add(
        EntryType::Link,
        "rootfs/bin/ls",
        0o755,
        Some("rootfs/bin/busybox"),
        b"",
    )?;
    add(
        EntryType::Regular,
        "rootfs/bin/su",
        0o4755,
        None,
        b"#!/bin/sh\n",
    )?;
    add(
        EntryType::Regular,
        "rootfs/etc/passwd",
        0o644,
        None,
        b"root:x:0:0:root:/root:/bin/sh\n",
    )?;
    add(
        EntryType::Regular,
        "rootfs/etc/group",
        0o644,
        None,
        b"root:x:0:\n",
    )?;
    add(
        EntryType::Regular,
        "rootfs/etc/inittab",
        0o644,
        None,
        b"::sysinit:/etc/init.d/rcS\n::askfirst:-/bin/sh\n",
    )?;
    add(
        EntryType::Regular,
        "rootfs/etc/init.d/rcS",
        0o755,
        None,
        b"#!/bin/sh\nmount -t proc proc /proc\n",
    )?;
    add(EntryType::Fifo, "rootfs/dev/initctl", 0o600, None, b"")?;
    b.into_inner()
}

fn gzip(bytes: &[u8]) -> io::Result<Vec<u8>> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(bytes)?;
    gz.finish()
}

/// A layer stream of a small upper directory (a file, a directory, a symlink, a hard
/// link, a whiteout-free delta base), exported as a move would. Needs root to give the
/// files container owners; `None` otherwise.
fn layer_stream() -> io::Result<Option<Vec<u8>>> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(None);
    }
    let dir = super::scratch::tempdir();
    let upper = dir.path().join("upper");
    fs::create_dir(&upper)?;
    fs::create_dir(upper.join("etc"))?;
    fs::write(upper.join("etc/motd"), b"hello\n")?;
    fs::set_permissions(upper.join("etc/motd"), fs::Permissions::from_mode(0o640))?;
    fs::hard_link(upper.join("etc/motd"), upper.join("etc/motd.bak"))?;
    symlink("motd", upper.join("etc/issue"))?;
    fs::create_dir(upper.join("root"))?;
    fs::write(upper.join("root/.profile"), b"export PS1='# '\n")?;
    for p in ["", "etc", "etc/motd", "etc/issue", "root", "root/.profile"] {
        let uid = if p.starts_with("root") { 0 } else { 1000 };
        nix::unistd::fchownat(
            nix::fcntl::AT_FDCWD,
            &upper.join(p),
            Some(nix::unistd::Uid::from_raw(LAYER_BASE + uid)),
            Some(nix::unistd::Gid::from_raw(LAYER_BASE + uid)),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(io::Error::from)?;
    }
    let mut out = Vec::new();
    shoal_node::transfer::export(
        &upper,
        shoal_node::transfer::IdRange::unprivileged(LAYER_BASE),
        None,
        &mut out,
    )
    .map_err(io::Error::other)?;
    Ok(Some(out))
}

fn commands() -> Vec<u8> {
    let mut cmds = seed_commands();
    cmds.extend([
        Command::SetDesired {
            name: "c1".into(),
            desired: DesiredState::Stopped,
            force: false,
            timeout_s: 30,
            restart: false,
            expected_version: Some(1),
        },
        Command::ReportStatus {
            name: "c1".into(),
            node: "a".into(),
            placement_generation: 1,
            status: InstanceStatus {
                state: ObservedState::Running,
                observed_revision: 1,
                message: String::new(),
                init_pid: Some(42),
                usage: None,
                updated_at_ms: 20,
            },
            if_version: None,
        },
        Command::Relocate {
            name: "c1".into(),
            from: "a".into(),
            to: "b".into(),
            expected_generation: 1,
            remember_origin: true,
            reason: "move".into(),
            now_ms: 30,
        },
        Command::SetEvacuated {
            name: "a".into(),
            evacuated: true,
        },
        Command::CreatePlacementGroup {
            group: PlacementGroup {
                name: "web".into(),
                policy: GroupPolicy::Spread,
                strict: false,
            },
        },
        Command::SetSchedulerConfig {
            config: SchedulerConfig::default(),
        },
        Command::SetAlias {
            alias: "stable".into(),
            fingerprint: "ab".repeat(32),
        },
        Command::MarkUnreachable {
            name: "c1".into(),
            node: "b".into(),
            placement_generation: 2,
            message: "host b is offline".into(),
            now_ms: 40,
        },
        Command::SetOrigin {
            name: "c1".into(),
            origin: None,
        },
        Command::ForgetInstance {
            name: "c1".into(),
            node: "b".into(),
            placement_generation: 2,
        },
        Command::DeleteAlias {
            alias: "stable".into(),
        },
        Command::RemoveMember { name: "b".into() },
    ]);
    let mut out = Vec::new();
    for c in cmds {
        out.extend(serde_json::to_vec(&c).expect("commands serialize"));
        out.push(b'\n');
    }
    out
}
