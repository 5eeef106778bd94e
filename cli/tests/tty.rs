//! `shoal exec` on a pseudo-terminal: the tty is chosen by default, the
//! window size is sent, the exit code passes through and the terminal
//! settings are restored afterwards.

mod common;

use std::io::Read;
use std::os::fd::OwnedFd;
use std::process::{Command, Stdio};

use common::Harness;
use nix::pty::{openpty, Winsize};
use nix::sys::termios::{tcgetattr, LocalFlags};

/// Runs `shoal ARGS` with stdin, stdout and stderr on a fresh pty; returns
/// the exit code, what the pty showed, and whether the settings came back.
fn run_on_pty(h: &Harness, args: &[&str]) -> (i32, String, bool) {
    let ws = Winsize {
        ws_row: 33,
        ws_col: 101,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    let pty = openpty(&ws, None).unwrap();
    let before = tcgetattr(&pty.slave).unwrap();
    assert!(before.local_flags.contains(LocalFlags::ICANON));
    let fd = |f: &OwnedFd| Stdio::from(f.try_clone().unwrap());
    let status = Command::new(env!("CARGO_BIN_EXE_shoal"))
        .args(args)
        .env("SHOAL_CONFIG", &h.config)
        .stdin(fd(&pty.slave))
        .stdout(fd(&pty.slave))
        .stderr(fd(&pty.slave))
        .status()
        .unwrap();
    let after = tcgetattr(&pty.slave).unwrap();
    let restored = after.local_flags == before.local_flags
        && after.input_flags == before.input_flags
        && after.output_flags == before.output_flags;
    drop(pty.slave);
    let mut master = std::fs::File::from(pty.master);
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    // Reads end with EIO once the slave side is closed and drained.
    while let Ok(n) = master.read(&mut buf) {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    (
        status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out).into_owned(),
        restored,
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn exec_on_a_terminal_uses_a_tty_and_restores_it() {
    let h = Harness::start().await;
    assert_eq!(h.shoal(&["launch", "busybox", "c1"], b"").await.code, 0);
    let h = std::sync::Arc::new(h);

    let h2 = h.clone();
    let (code, out, restored) =
        tokio::task::spawn_blocking(move || run_on_pty(&h2, &["exec", "c1", "--", "tty"]))
            .await
            .unwrap();
    assert_eq!(code, 0, "{out}");
    // Raw mode turns output processing off: no "\r" added before "\n".
    assert!(out.contains("tty=true rows=33 cols=101\n"), "{out:?}");
    assert!(!out.contains("\r\n"), "{out:?}");
    assert!(restored, "terminal settings not restored");

    let h2 = h.clone();
    let (code, _, restored) =
        tokio::task::spawn_blocking(move || run_on_pty(&h2, &["exec", "c1", "--", "exit", "5"]))
            .await
            .unwrap();
    assert_eq!(code, 5);
    assert!(restored);

    let h2 = h.clone();
    let (code, out, restored) =
        tokio::task::spawn_blocking(move || run_on_pty(&h2, &["exec", "-T", "c1", "--", "tty"]))
            .await
            .unwrap();
    assert_eq!(code, 0);
    assert!(out.contains("tty=false rows=0 cols=0\r\n"), "{out:?}");
    assert!(restored);

    let h2 = h.clone();
    let (code, out, restored) =
        tokio::task::spawn_blocking(move || run_on_pty(&h2, &["exec", "nope", "--", "tty"]))
            .await
            .unwrap();
    assert_eq!(code, 1);
    assert!(out.contains("Error: instance nope not found"), "{out:?}");
    assert!(restored);
}

#[tokio::test(flavor = "multi_thread")]
async fn window_changes_are_forwarded() {
    let h = Harness::start().await;
    assert_eq!(h.shoal(&["launch", "busybox", "c1"], b"").await.code, 0);
    let ws = Winsize {
        ws_row: 33,
        ws_col: 101,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    let pty = openpty(&ws, None).unwrap();
    let fd = |f: &OwnedFd| Stdio::from(f.try_clone().unwrap());
    let mut child = Command::new(env!("CARGO_BIN_EXE_shoal"))
        .args(["exec", "c1", "--", "winch"])
        .env("SHOAL_CONFIG", &h.config)
        .stdin(fd(&pty.slave))
        .stdout(fd(&pty.slave))
        .stderr(fd(&pty.slave))
        .spawn()
        .unwrap();
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    // The child has no controlling terminal, so resize and signal by hand;
    // signal again until it exits, in case the first came before the handler.
    let ok = Command::new("stty")
        .args(["rows", "40", "cols", "120"])
        .stdin(fd(&pty.slave))
        .status()
        .unwrap();
    assert!(ok.success());
    let mut status = None;
    for _ in 0..100 {
        if let Some(s) = child.try_wait().unwrap() {
            status = Some(s);
            break;
        }
        if !h.state.lock().unwrap().execs.is_empty() {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGWINCH);
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let Some(status) = status else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("shoal exec did not end after SIGWINCH");
    };
    assert_eq!(status.code(), Some(0));
    drop(pty.slave);
    let mut out = String::new();
    let _ = std::fs::File::from(pty.master).read_to_string(&mut out);
    assert!(out.contains("resize 40 120"), "{out:?}");
}
