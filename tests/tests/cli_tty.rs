//! End-to-end: `shoal exec` on a real pseudo-terminal against a real `shoald`. The command
//! inside gets a terminal of our size and type, window changes are forwarded, the exit code
//! passes through and our terminal's settings come back afterwards.
//! Needs root; skips with a message otherwise.

use nix::pty::{openpty, OpenptyResult, Winsize};
use nix::sys::signal::{kill, Signal};
use nix::sys::termios::{tcgetattr, LocalFlags, Termios};
use nix::unistd::Pid;
use shoal_tests::{is_root, Testbed};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const ROWS: u16 = 33;
const COLS: u16 = 101;

/// `shoal ARGS` running with stdin, stdout and stderr on a fresh pty of ROWS x COLS; a
/// thread collects what the pty shows.
struct OnPty {
    child: Child,
    slave: Option<OwnedFd>,
    master: File,
    seen: Arc<Mutex<Vec<u8>>>,
    reader: Option<std::thread::JoinHandle<()>>,
    before: Termios,
}

impl OnPty {
    fn spawn(tb: &Testbed, args: &[&str]) -> Self {
        let ws = Winsize {
            ws_row: ROWS,
            ws_col: COLS,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        let OpenptyResult { master, slave } = openpty(&ws, None).expect("openpty");
        let before = tcgetattr(&slave).unwrap();
        assert!(before
            .local_flags
            .contains(LocalFlags::ICANON | LocalFlags::ECHO));
        let fd = |f: &OwnedFd| Stdio::from(f.try_clone().unwrap());
        let child = tb
            .shoal_cmd(args)
            .env("TERM", "xterm-shoaltest")
            .stdin(fd(&slave))
            .stdout(fd(&slave))
            .stderr(fd(&slave))
            .spawn()
            .expect("spawning shoal");
        let master = File::from(master);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (mut r, s) = (master.try_clone().unwrap(), seen.clone());
        // Reads end with EIO once every slave descriptor is closed.
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = r.read(&mut buf) {
                s.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Self {
            child,
            slave: Some(slave),
            master,
            seen,
            reader: Some(reader),
            before,
        }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.seen.lock().unwrap()).into_owned()
    }

    /// Waits until the pty has shown `needle`.
    fn wait_for(&self, needle: &str, limit: Duration) -> bool {
        let t0 = Instant::now();
        while t0.elapsed() < limit {
            if self.text().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Waits for the CLI to exit; returns its code, everything shown, and whether the
    /// terminal settings are as before.
    fn finish(mut self) -> (i32, String, bool) {
        let t0 = Instant::now();
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            if t0.elapsed() > Duration::from_secs(20) {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("shoal exec did not end; the pty showed {:?}", self.text());
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let slave = self.slave.take().unwrap();
        let after = tcgetattr(&slave).unwrap();
        let b = &self.before;
        let restored = after.local_flags == b.local_flags
            && after.input_flags == b.input_flags
            && after.output_flags == b.output_flags
            && after.control_flags == b.control_flags;
        drop(slave);
        self.reader.take().unwrap().join().unwrap();
        (status.code().unwrap_or(-1), self.text(), restored)
    }
}

#[test]
fn exec_on_a_terminal() {
    if !is_root() {
        eprintln!("skipping: end-to-end tests need root");
        return;
    }
    let tb = Testbed::up(1).expect("test bed up");
    tb.shoal(&["launch", "busybox", "clitty1"]).ok();

    // A terminal on both ends means a tty inside, of our size and type; our terminal is
    // raw meanwhile (no "\r" added locally; the inside's own terminal adds it) and restored.
    let script = "stty size; [ -t 0 ] && [ -t 1 ] && echo both-tty; \
                  readlink /proc/self/fd/0; echo TERM=$TERM; exit 5";
    let (code, out, restored) =
        OnPty::spawn(&tb, &["exec", "clitty1", "--", "sh", "-c", script]).finish();
    assert_eq!(code, 5, "{out:?}");
    assert!(out.contains(&format!("{ROWS} {COLS}\r\n")), "{out:?}");
    assert!(out.contains("both-tty\r\n"), "{out:?}");
    assert!(out.contains("\r\n/dev/pts/"), "{out:?}");
    assert!(out.contains("TERM=xterm-shoaltest\r\n"), "{out:?}");
    assert!(
        !out.contains("\r\r\n"),
        "local output processing must be off: {out:?}"
    );
    assert!(restored, "terminal settings not restored");

    // -T: no tty inside although ours is one; our settings are left alone.
    let (code, out, restored) = OnPty::spawn(
        &tb,
        &[
            "exec",
            "-T",
            "clitty1",
            "--",
            "sh",
            "-c",
            "[ -t 0 ] || echo no-tty",
        ],
    )
    .finish();
    assert_eq!(code, 0, "{out:?}");
    assert!(out.contains("no-tty"), "{out:?}");
    assert!(restored);

    // An error before the command starts still restores the terminal.
    let (code, out, restored) = OnPty::spawn(&tb, &["exec", "nope", "--", "true"]).finish();
    assert_eq!(code, 1);
    assert!(out.contains("instance 'nope' not found"), "{out:?}");
    assert!(restored);

    window_change(&tb);

    // The terminal is the container's own: `tty` (ttyname) finds it under the container's
    // /dev/pts. Checked last so a failure here leaves the checks above meaningful.
    let (code, out, _) = OnPty::spawn(&tb, &["exec", "clitty1", "--", "tty"]).finish();
    assert!(
        code == 0 && out.starts_with("/dev/pts/"),
        "`tty` inside: code {code}, {out:?} (is the exec pty opened in the host's devpts \
         instead of the container's /dev/pts?)"
    );
    tb.down();
}

/// A resize of our terminal reaches the command. The CLI has no controlling terminal here,
/// so the test resizes the pty and sends SIGWINCH itself; each line typed makes the inside
/// print its size again, until it shows the new one.
fn window_change(tb: &Testbed) {
    let script = "stty size; while read l; do [ \"$l\" = q ] && exit 0; stty size; done";
    let mut p = OnPty::spawn(tb, &["exec", "clitty1", "--", "sh", "-c", script]);
    assert!(
        p.wait_for(&format!("{ROWS} {COLS}\r\n"), Duration::from_secs(10)),
        "{:?}",
        p.text()
    );
    let ok = Command::new("stty")
        .args(["rows", "40", "cols", "120"])
        .stdin(Stdio::from(p.slave.as_ref().unwrap().try_clone().unwrap()))
        .status()
        .unwrap();
    assert!(ok.success());
    let pid = Pid::from_raw(p.child.id() as i32);
    let mut seen = false;
    for _ in 0..20 {
        kill(pid, Signal::SIGWINCH).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        p.master.write_all(b"x\r").unwrap();
        if p.wait_for("40 120\r\n", Duration::from_millis(500)) {
            seen = true;
            break;
        }
    }
    p.master.write_all(b"q\r").unwrap();
    let (code, out, restored) = p.finish();
    assert!(seen, "the new size never arrived: {out:?}");
    assert_eq!(code, 0, "{out:?}");
    assert!(restored);
}
