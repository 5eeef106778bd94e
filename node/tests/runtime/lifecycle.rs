//! Start, stop, freeze, persistence, adoption, deletion and errors.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant};

use shoal_node::runtime::{ContainerStatus, RuntimeError};

use crate::cgroup_dirs_named;
use crate::common::*;

#[test]
fn writes_survive_restart_and_the_image_stays_untouched() {
    if !root_or_skip("writes_survive_restart_and_the_image_stays_untouched") {
        return;
    }
    let mut env = TestEnv::new("rw");
    let cfg = env.create("rw", false);
    let image = cfg.image_rootfs.clone();
    let before = fs::read_to_string(image.join("etc/hostname")).unwrap();
    let rt = env.rt();
    rt.start("rw").unwrap();
    sh(rt, "rw", "echo persisted > /root/file && rm /etc/hostname && mkdir -p /var/lib/x && echo y > /var/lib/x/y");
    sh(rt, "rw", "echo appended >> /etc/passwd");
    rt.stop("rw", Duration::from_secs(10), true).unwrap();
    rt.start("rw").unwrap();
    assert_eq!(sh(rt, "rw", "cat /root/file").trim(), "persisted");
    assert_eq!(sh(rt, "rw", "cat /var/lib/x/y").trim(), "y");
    assert_ne!(
        exec(rt, "rw", &["test", "-e", "/etc/hostname"]).code,
        0,
        "whiteout kept"
    );
    assert!(sh(rt, "rw", "tail -n1 /etc/passwd").contains("appended"));
    // Files created inside are owned by the mapped root on the host; the image by 0.
    let upper = env.container_dir("rw").join("upper");
    let base = fs::metadata(&upper).unwrap().uid();
    assert_eq!(fs::metadata(upper.join("root/file")).unwrap().uid(), base);
    assert!(!image.join("root/file").exists());
    assert_eq!(
        fs::read_to_string(image.join("etc/hostname")).unwrap(),
        before
    );
    assert!(!fs::read_to_string(image.join("etc/passwd"))
        .unwrap()
        .contains("appended"));
    assert_eq!(fs::metadata(image.join("etc/passwd")).unwrap().uid(), 0);
}

#[test]
fn freeze_unfreeze_and_clean_stop() {
    if !root_or_skip("freeze_unfreeze_and_clean_stop") {
        return;
    }
    let mut env = TestEnv::new("frz");
    env.create("frz", false);
    let rt = env.rt();
    rt.start("frz").unwrap();
    rt.freeze("frz").unwrap();
    assert_eq!(rt.state("frz").unwrap().status, ContainerStatus::Frozen);
    let err = rt.exec("frz", &req(&["true"])).unwrap_err();
    assert!(err.to_string().contains("frozen"), "{err}");
    rt.unfreeze("frz").unwrap();
    assert_eq!(rt.state("frz").unwrap().status, ContainerStatus::Running);
    assert_eq!(sh(rt, "frz", "echo ok").trim(), "ok");

    // Clean stop right after a start: the stop signal must be re-sent until init has
    // installed its handlers; busybox powers off (killed by SIGINT) after ~2 s.
    rt.stop("frz", Duration::ZERO, true).unwrap();
    rt.start("frz").unwrap();
    let t = Instant::now();
    rt.stop("frz", Duration::from_secs(20), false).unwrap();
    let took = t.elapsed();
    let st = rt.state("frz").unwrap();
    assert_eq!(st.status, ContainerStatus::Stopped);
    assert_eq!(
        st.exit_code,
        Some(128 + libc::SIGINT),
        "busybox poweroff, not SIGKILL"
    );
    assert!(took < Duration::from_secs(10), "clean stop took {took:?}");

    // A frozen container can still be stopped (it is thawed first).
    rt.start("frz").unwrap();
    rt.freeze("frz").unwrap();
    rt.stop("frz", Duration::from_secs(5), true).unwrap();
    assert_eq!(rt.state("frz").unwrap().exit_code, Some(137));
}

#[test]
fn lifecycle_timing_and_delete_leaves_nothing() {
    if !root_or_skip("lifecycle_timing_and_delete_leaves_nothing") {
        return;
    }
    let mut env = TestEnv::new("life");
    let _ = image();
    let mut rounds = Vec::new();
    for i in 0..5 {
        let name = format!("life{i}");
        let cfg = env.container_config(&name, false);
        env.names.push(name.clone());
        let rt = env.rt();
        let t0 = Instant::now();
        rt.create(&cfg).unwrap();
        let t1 = Instant::now();
        rt.start(&name).unwrap();
        let t2 = Instant::now();
        rt.stop(&name, Duration::ZERO, true).unwrap();
        let t3 = Instant::now();
        rt.delete(&name).unwrap();
        let t4 = Instant::now();
        rounds.push([t1 - t0, t2 - t1, t3 - t2, t4 - t3, t4 - t0]);
        assert!(!env.container_dir(&name).exists());
        assert!(cgroup_dirs_named(&env.group, &name).is_empty());
        let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(!mountinfo.contains(&env.container_dir(&name).display().to_string()));
        let idmap = fs::read_to_string(env.dir.path().join("containers/idmap.json")).unwrap();
        assert!(!idmap.contains(&format!("\"{name}\"")), "{idmap}");
        assert!(!env.dir.path().join(format!("run/{name}.sock")).exists());
        assert!(rt.list().unwrap().is_empty());
    }
    for r in &rounds {
        eprintln!(
            "create {:?} start {:?} stop {:?} delete {:?} total {:?}",
            r[0], r[1], r[2], r[3], r[4]
        );
    }
    assert_host_dev_null_untouched();
}

#[test]
fn a_new_runtime_adopts_running_containers() {
    if !root_or_skip("a_new_runtime_adopts_running_containers") {
        return;
    }
    let mut env = TestEnv::new("adopt");
    env.create("adopt", false);
    env.rt().start("adopt").unwrap();
    let pid = env.rt().state("adopt").unwrap().init_pid;
    env.reopen();
    let st = env.rt().state("adopt").unwrap();
    assert_eq!(st.status, ContainerStatus::Running);
    assert_eq!(st.init_pid, pid);
    assert!(st.usage.is_some_and(|u| u.pids >= 1));
    assert_eq!(env.rt().list().unwrap(), ["adopt"]);
    assert_eq!(sh(env.rt(), "adopt", "echo adopted").trim(), "adopted");
    env.rt()
        .stop("adopt", Duration::from_secs(5), true)
        .unwrap();
    assert_eq!(
        env.rt().state("adopt").unwrap().status,
        ContainerStatus::Stopped
    );
}

const SPAWN_ENV: &str = "SHOAL_RT_TEST_SPAWN_DIR";

/// Runs only as a child process of `the_monitor_outlives_the_process_that_started_it`.
#[test]
#[ignore = "helper process for the_monitor_outlives_the_process_that_started_it"]
fn spawn_helper_process() {
    let Ok(dir) = std::env::var(SPAWN_ENV) else {
        return;
    };
    let group = std::env::var("SHOAL_RT_TEST_SPAWN_GROUP").unwrap();
    let rt =
        shoal_node::runtime::Runtime::new(TestEnv::config_for(std::path::Path::new(&dir), &group))
            .unwrap();
    rt.start("orphan").unwrap();
    println!("started by {}", std::process::id());
}

#[test]
fn the_monitor_outlives_the_process_that_started_it() {
    if !root_or_skip("the_monitor_outlives_the_process_that_started_it") {
        return;
    }
    let mut env = TestEnv::new("orphan");
    env.create("orphan", false);
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "lifecycle::spawn_helper_process",
            "--ignored",
            "--nocapture",
        ])
        .env(SPAWN_ENV, env.dir.path())
        .env("SHOAL_RT_TEST_SPAWN_GROUP", &env.group)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let spawner: i32 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("started by "))
        .unwrap_or_else(|| {
            panic!(
                "helper did not run: {stdout} {}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
        .trim()
        .parse()
        .unwrap();
    // The spawner has exited; the container and its monitor have not.
    let st = env.rt().state("orphan").unwrap();
    assert_eq!(st.status, ContainerStatus::Running);
    let init = st.init_pid.unwrap();
    let stat = fs::read_to_string(format!("/proc/{init}/stat")).unwrap();
    let monitor: i32 = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let mstat = fs::read_to_string(format!("/proc/{monitor}/stat")).unwrap();
    let fields: Vec<&str> = mstat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    let (ppid, sid): (i32, i32) = (fields[1].parse().unwrap(), fields[3].parse().unwrap());
    assert_ne!(ppid, spawner);
    assert_ne!(
        ppid,
        std::process::id() as i32,
        "the monitor is not our child either"
    );
    assert_eq!(sid, monitor, "the monitor leads its own session");
    let status = fs::read_to_string(format!("/proc/{monitor}/status")).unwrap();
    assert!(status.contains("Threads:\t1"), "monitor is single-threaded");
    assert_eq!(sh(env.rt(), "orphan", "echo alive").trim(), "alive");
}

#[test]
fn errors_name_the_problem() {
    if !root_or_skip("errors_name_the_problem") {
        return;
    }
    let mut env = TestEnv::new("err");
    let cfg = env.create("err", false);
    let rt = env.rt();
    // create is idempotent for the same config, refuses a different one.
    rt.create(&cfg).unwrap();
    let mut other = cfg.clone();
    other.privileged = true;
    assert!(matches!(
        rt.create(&other),
        Err(RuntimeError::AlreadyExists { .. })
    ));
    let mut bad = cfg.clone();
    bad.name = "bad/name".into();
    assert!(matches!(
        rt.create(&bad),
        Err(RuntimeError::InvalidName { .. })
    ));
    assert!(matches!(
        rt.start("nope"),
        Err(RuntimeError::NotFound { .. })
    ));
    assert!(matches!(
        rt.freeze("err"),
        Err(RuntimeError::NotRunning { .. })
    ));
    assert_eq!(rt.state("err").unwrap().status, ContainerStatus::Stopped);
    rt.stop("err", Duration::ZERO, false).unwrap();

    rt.start("err").unwrap();
    assert!(matches!(
        rt.start("err"),
        Err(RuntimeError::AlreadyRunning { .. })
    ));
    assert!(matches!(
        rt.delete("err"),
        Err(RuntimeError::StillRunning { .. })
    ));
    rt.stop("err", Duration::ZERO, true).unwrap();
    rt.delete("err").unwrap();
    rt.delete("err").unwrap();

    // An image without /sbin/init fails at the exec step, and leaves nothing running.
    let broken = env.dir.path().join("broken-image");
    for d in ["bin", "dev", "proc", "sys"] {
        fs::create_dir_all(broken.join(d)).unwrap();
    }
    let mut bcfg = env.container_config("broken", false);
    bcfg.image_rootfs = broken;
    env.names.push("broken".into());
    let rt = env.rt();
    rt.create(&bcfg).unwrap();
    let err = rt.start("broken").unwrap_err();
    match &err {
        RuntimeError::Setup { step, errno, .. } => {
            assert_eq!(step, "exec /sbin/init");
            assert_eq!(*errno, nix::errno::Errno::ENOENT);
        }
        other => panic!("unexpected {other}"),
    }
    assert!(err.to_string().contains("broken"), "{err}");
    assert_eq!(rt.state("broken").unwrap().status, ContainerStatus::Stopped);
    assert!(cgroup_dirs_named(&env.group, "broken").is_empty());
}
