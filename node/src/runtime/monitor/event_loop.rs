//! The monitor's single-threaded poll loop, from init's exec to the monitor's exit.
//!
//! It waits on: the control socket (new connections, then their one request each), a
//! signalfd (SIGCHLD to reap init and exec helpers, SIGTERM/SIGINT/SIGHUP to stop the
//! container), the console pty master (copied into console.log), the error pipes of exec
//! helpers that have not exec'd yet, and the stop timer. Nothing here sleeps: a stop sends
//! the stop signal and re-sends it every [`RESEND`] (a pid-namespace init drops signals
//! that arrive before it has installed its handlers) until init exits or the deadline
//! passes, then SIGKILLs init, which takes the whole pid namespace with it.
//!
//! A container that fences also wakes the loop to read the host's lease file (at most
//! [`fence::LEASE_POLL`] apart, and at the recorded expiry); see fence.rs.

use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::Flock;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::Signal;
use nix::sys::signalfd::SignalFd;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use seccompiler::BpfProgram;

use super::super::config::{state_path, write_json, ContainerPaths, MonitorState, StoredConfig};
use super::super::protocol::{self, Reply, WireError};
use super::console::ConsoleLog;
use super::exec;
use super::launch::Launched;
use crate::sys;

/// Interval between repeated stop signals.
pub(crate) const RESEND: Duration = Duration::from_millis(100);
/// Stop timeout used when the monitor itself is asked to stop (SIGTERM).
const SIGTERM_STOP: Duration = Duration::from_secs(10);
/// How long exec helpers may linger after init is gone before their cgroup is killed.
const HELPER_GRACE: Duration = Duration::from_secs(2);

struct Stopping {
    signal: i32,
    deadline: Instant,
    next_resend: Instant,
    killed: bool,
    waiters: Vec<OwnedFd>,
}

struct ExecSession {
    conn: OwnedFd,
    helper: Pid,
    errpipe: Option<OwnedFd>,
    daemon_fds: Vec<OwnedFd>,
    /// The helper's exit code, once reaped.
    exit: Option<i32>,
    /// A setup error was already reported; no exit code follows.
    failed: bool,
}

/// The monitor of one running container.
pub(crate) struct Monitor {
    pub(crate) name: String,
    pub(crate) run_dir: std::path::PathBuf,
    pub(crate) cfg: StoredConfig,
    pub(crate) listener: OwnedFd,
    pub(crate) signals: SignalFd,
    pub(crate) launched: Launched,
    pub(crate) console: ConsoleLog,
    pub(crate) seccomp: BpfProgram,
    pub(crate) started_unix_ms: u64,
    single: sys::SingleThreaded,
    /// flock on monitor.lock, released before the rootfs pin (see `finish`).
    lock: Option<Flock<File>>,
    frozen: bool,
    exit_code: Option<i32>,
    exited_at: Option<Instant>,
    /// init was SIGKILLed because the host's lease expired.
    fenced: bool,
    lease: fence::LeaseWatch,
    stop: Option<Stopping>,
    conns: Vec<OwnedFd>,
    execs: Vec<ExecSession>,
}

#[derive(Clone, Copy)]
enum Source {
    Listener,
    Signals,
    Console,
    Conn(usize),
    ExecPipe(usize),
}

#[path = "requests.rs"]
mod requests;

#[path = "fence.rs"]
mod fence;

impl Monitor {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        name: String,
        paths: ContainerPaths,
        run_dir: std::path::PathBuf,
        cfg: StoredConfig,
        listener: OwnedFd,
        signals: SignalFd,
        launched: Launched,
        seccomp: BpfProgram,
        started_unix_ms: u64,
        single: sys::SingleThreaded,
        lock: Flock<File>,
    ) -> Self {
        let console = ConsoleLog::open(paths.console_log(), super::console::MAX_LOG);
        Self {
            name,
            run_dir,
            cfg,
            listener,
            signals,
            launched,
            console,
            seccomp,
            started_unix_ms,
            single,
            lock: Some(lock),
            frozen: false,
            exit_code: None,
            exited_at: None,
            fenced: false,
            lease: fence::LeaseWatch::new(),
            stop: None,
            conns: Vec::new(),
            execs: Vec::new(),
        }
    }

    /// Runs until init has exited and everything is cleaned up; returns the exit code
    /// of the monitor process.
    pub(crate) fn run(mut self) -> i32 {
        let _ = nix::fcntl::fcntl(
            &self.launched.console_master,
            nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
        );
        loop {
            if let Some(at) = self.exited_at {
                if self.execs.is_empty() {
                    break;
                }
                if at.elapsed() > HELPER_GRACE {
                    let _ = self.launched.cgroup.kill_all();
                }
            }
            self.watch_lease();
            let timeout = self.next_timeout();
            let ready = match self.wait(timeout) {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("monitor {}: poll failed: {e}", self.name);
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
            };
            // Handle from the highest index down so removals keep lower indices valid.
            for src in ready.into_iter().rev() {
                match src {
                    Source::ExecPipe(i) => self.exec_pipe_ready(i),
                    Source::Conn(i) => {
                        let conn = self.conns.swap_remove(i);
                        self.handle_conn(conn);
                    }
                    Source::Console => self.drain_console(),
                    Source::Signals => self.handle_signals(),
                    Source::Listener => self.accept_all(),
                }
            }
            self.tick();
        }
        self.finish();
        0
    }

    fn next_timeout(&self) -> PollTimeout {
        let mut next: Option<Instant> = None;
        if let Some(st) = &self.stop {
            if !st.killed {
                next = Some(st.next_resend.min(st.deadline));
            }
        }
        if self.exited_at.is_some() {
            next = Some(Instant::now() + Duration::from_millis(100));
        }
        if let Some(t) = self.lease_wakeup() {
            next = Some(next.map_or(t, |n| n.min(t)));
        }
        match next {
            None => PollTimeout::NONE,
            Some(t) => {
                let ms = t.saturating_duration_since(Instant::now()).as_millis();
                PollTimeout::from(u16::try_from(ms + 1).unwrap_or(u16::MAX))
            }
        }
    }

    fn wait(&self, timeout: PollTimeout) -> Result<Vec<Source>, Errno> {
        let mut fds = vec![
            PollFd::new(self.listener.as_fd(), PollFlags::POLLIN),
            PollFd::new(self.signals.as_fd(), PollFlags::POLLIN),
            PollFd::new(self.launched.console_master.as_fd(), PollFlags::POLLIN),
        ];
        let mut srcs = vec![Source::Listener, Source::Signals, Source::Console];
        for (i, c) in self.conns.iter().enumerate() {
            fds.push(PollFd::new(c.as_fd(), PollFlags::POLLIN));
            srcs.push(Source::Conn(i));
        }
        for (i, e) in self.execs.iter().enumerate() {
            if let Some(p) = &e.errpipe {
                fds.push(PollFd::new(p.as_fd(), PollFlags::POLLIN));
                srcs.push(Source::ExecPipe(i));
            }
        }
        match poll(&mut fds, timeout) {
            Err(Errno::EINTR) | Ok(0) => return Ok(Vec::new()),
            Err(e) => return Err(e),
            Ok(_) => {}
        }
        let ready = fds
            .iter()
            .zip(srcs)
            .filter(|(fd, _)| fd.revents().is_some_and(|r| !r.is_empty()))
            .map(|(_, s)| s)
            .collect::<Vec<_>>();
        // Sort so that, iterated in reverse, exec pipes come first, then conns, etc.
        let mut ready = ready;
        ready.sort_by_key(|s| match s {
            Source::Listener => (0, 0),
            Source::Signals => (1, 0),
            Source::Console => (2, 0),
            Source::Conn(i) => (3, *i),
            Source::ExecPipe(i) => (4, *i),
        });
        Ok(ready)
    }

    fn accept_all(&mut self) {
        while let Ok(Some(conn)) = protocol::accept_one(self.listener.as_fd()) {
            self.conns.push(conn);
        }
    }

    fn drain_console(&mut self) {
        let mut buf = [0u8; 16384];
        loop {
            match nix::unistd::read(&self.launched.console_master, &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => self.console.append(&buf[..n]),
            }
        }
    }

    fn handle_signals(&mut self) {
        let mut reap = false;
        while let Ok(Some(info)) = self.signals.read_signal() {
            match Signal::try_from(info.ssi_signo as i32) {
                Ok(Signal::SIGCHLD) => reap = true,
                Ok(Signal::SIGTERM | Signal::SIGINT | Signal::SIGHUP) => {
                    self.begin_stop(SIGTERM_STOP, false, None);
                }
                _ => {}
            }
        }
        if reap {
            self.reap();
        }
    }

    fn reap(&mut self) {
        loop {
            let status = match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(s) => s,
            };
            let Some(pid) = status.pid() else { continue };
            let Some(code) = exec::status_code(status) else {
                continue;
            };
            if pid == self.launched.pid {
                self.exit_code = Some(code);
                self.exited_at = Some(Instant::now());
                self.drain_console();
                continue;
            }
            if let Some(i) = self.execs.iter().position(|e| e.helper == pid) {
                if self.execs[i].errpipe.is_some() {
                    // Both writers are gone, so this read cannot block.
                    self.execs[i].exit = Some(code);
                    self.exec_pipe_ready(i);
                    continue;
                }
                let session = self.execs.swap_remove(i);
                if !session.failed {
                    Self::reply(&session.conn, &Reply::ExecExit { code }, &[]);
                }
            }
        }
    }

    fn begin_stop(&mut self, timeout: Duration, force: bool, waiter: Option<OwnedFd>) {
        if self.frozen {
            let _ = self.launched.cgroup.thaw();
            self.frozen = false;
        }
        let now = Instant::now();
        let st = self.stop.get_or_insert_with(|| Stopping {
            signal: self.cfg.stop_signal,
            deadline: now + timeout,
            next_resend: now,
            killed: false,
            waiters: Vec::new(),
        });
        st.deadline = st.deadline.min(now + timeout);
        st.waiters.extend(waiter);
        if force {
            st.deadline = now;
        }
        self.tick();
    }

    /// Sends the stop signal again or SIGKILL, as the stop timer says.
    fn tick(&mut self) {
        if self.exit_code.is_some() {
            return;
        }
        let Some(st) = self.stop.as_mut() else { return };
        if st.killed {
            return;
        }
        let now = Instant::now();
        let pidfd = self.launched.pidfd.as_fd();
        if now >= st.deadline {
            let _ = sys::pidfd_send_signal(pidfd, libc::SIGKILL);
            st.killed = true;
        } else if now >= st.next_resend {
            let _ = sys::pidfd_send_signal(pidfd, st.signal);
            st.next_resend = now + RESEND;
        }
    }

    /// init is gone: clean up, record the exit, answer waiters, remove the socket.
    fn finish(&mut self) {
        self.drain_console();
        let cg = &self.launched.cgroup;
        if cg.pids().map(|p| !p.is_empty()).unwrap_or(false) {
            let _ = cg.kill_all();
        }
        if let Err(e) = cg.remove() {
            eprintln!("monitor {}: removing cgroup: {e}", self.name);
        }
        let state = MonitorState {
            running: false,
            monitor_pid: std::process::id() as i32,
            init_pid: Some(self.launched.pid.as_raw()),
            exit_code: self.exit_code,
            started_unix_ms: self.started_unix_ms,
            fenced: self.fenced,
        };
        let state_file = state_path(&self.run_dir, &self.name);
        if let Err(e) = write_json(&self.name, "writing state", &state_file, &state) {
            eprintln!("monitor {}: {e}", self.name);
        }
        let _ = protocol::unlink_socket(&self.run_dir, &self.name);
        // Everything of this boot is gone but the pin: a new monitor may start now, so the
        // lock goes before the answers (a caller may start again as soon as it has one).
        self.lock = None;
        if let Some(st) = self.stop.take() {
            for w in &st.waiters {
                Self::reply(w, &Reply::Done, &[]);
            }
        }
        for c in &self.conns {
            let e = WireError::new("request", Errno::ESRCH, "container stopped");
            Self::reply(c, &Reply::Error(e), &[]);
        }
        // Dropping the pin unmounts the overlay, which syncs the upper filesystem; that is
        // why it comes last, after every answer.
        self.launched.rootfs_pin = None;
    }
}
