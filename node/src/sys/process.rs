//! Creating and signalling processes: clone3 with a pidfd, fork, pidfds, signal state.

use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use nix::errno::Errno;
use nix::unistd::Pid;

/// `CLONE_INTO_CGROUP` (linux/sched.h; a 64-bit flag, clone3 only).
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// Which side of a fork or clone we are on.
#[derive(Debug)]
pub(crate) enum Forked {
    /// The new process.
    Child,
    /// The caller; `pidfd` is set by [`clone3`] (always) and `None` after [`fork`].
    Parent { pid: Pid, pidfd: Option<OwnedFd> },
}

/// Number of threads of the calling process, from `/proc/self/stat` (field 20).
pub(crate) fn thread_count() -> Result<u64, Errno> {
    let stat = std::fs::read_to_string("/proc/self/stat").map_err(|e| io_errno(&e))?;
    // The command name (field 2) may hold spaces and parentheses: count from the last ')'.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).ok_or(Errno::EINVAL)?;
    rest.split_whitespace()
        .nth(17)
        .and_then(|s| s.parse().ok())
        .ok_or(Errno::EINVAL)
}

fn io_errno(err: &std::io::Error) -> Errno {
    Errno::from_raw(err.raw_os_error().unwrap_or(libc::EIO))
}

/// Proof that the process was single-threaded when it was made, required by [`fork`] and
/// [`clone3`]. It is neither `Send` nor `Sync`, and it stays valid in forked children
/// (a child of a single-threaded process has one thread). Whoever holds one must not
/// start threads; the monitor never does.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SingleThreaded(std::marker::PhantomData<*const ()>);

impl SingleThreaded {
    /// Fails with `EDEADLK` unless the process has exactly one thread right now. Reads
    /// `/proc/self/stat`, so call it before joining another pid namespace.
    pub(crate) fn check() -> Result<Self, Errno> {
        match thread_count()? {
            1 => Ok(Self(std::marker::PhantomData)),
            _ => Err(Errno::EDEADLK),
        }
    }
}

/// `clone3(flags | CLONE_PIDFD)` with `SIGCHLD` as exit signal and no new stack, i.e. a
/// fork that can also create namespaces and returns a pidfd for the child. With `cgroup`
/// (an fd of a cgroup v2 directory) the child starts in that cgroup (CLONE_INTO_CGROUP),
/// which needs no cgroup.procs write and so none of its global lock.
pub(crate) fn clone3(
    _single: SingleThreaded,
    flags: u64,
    cgroup: Option<BorrowedFd<'_>>,
) -> Result<Forked, Errno> {
    let mut pidfd: libc::c_int = -1;
    let into_cgroup = if cgroup.is_some() {
        CLONE_INTO_CGROUP
    } else {
        0
    };
    let mut args = libc::clone_args {
        flags: flags | libc::CLONE_PIDFD as u64 | into_cgroup,
        pidfd: std::ptr::addr_of_mut!(pidfd) as u64,
        child_tid: 0,
        parent_tid: 0,
        exit_signal: libc::SIGCHLD as u64,
        stack: 0,
        stack_size: 0,
        tls: 0,
        set_tid: 0,
        set_tid_size: 0,
        cgroup: cgroup.map_or(0, |fd| fd.as_raw_fd() as u64),
    };
    // SAFETY: without CLONE_VM and without a stack, clone3 behaves like fork: the child gets
    // a copy of the address space and returns here on its copy of this stack. The process
    // is single-threaded (`SingleThreaded` proves it), so no lock can be held by a thread
    // that does not exist in the child. `args`, `pidfd` and the cgroup fd are valid for the
    // duration of the call and the size passed matches the struct.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            std::ptr::addr_of_mut!(args),
            std::mem::size_of::<libc::clone_args>(),
        )
    };
    match ret {
        -1 => Err(Errno::last()),
        0 => Ok(Forked::Child),
        pid => {
            // SAFETY: with CLONE_PIDFD the kernel stored a new file descriptor in `pidfd`
            // that nothing else owns.
            let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
            Ok(Forked::Parent {
                pid: Pid::from_raw(pid as i32),
                pidfd: Some(pidfd),
            })
        }
    }
}

/// `fork()` of a single-threaded process.
pub(crate) fn fork(_single: SingleThreaded) -> Result<Forked, Errno> {
    // SAFETY: the process is single-threaded (`SingleThreaded` proves it), which is the precondition
    // nix documents: no other thread can hold a lock that the child would inherit.
    match unsafe { nix::unistd::fork() }? {
        nix::unistd::ForkResult::Child => Ok(Forked::Child),
        nix::unistd::ForkResult::Parent { child } => Ok(Forked::Parent {
            pid: child,
            pidfd: None,
        }),
    }
}

/// `pidfd_send_signal(pidfd, sig, NULL, 0)`: signals exactly the process the pidfd names,
/// never a recycled pid.
pub(crate) fn pidfd_send_signal(pidfd: BorrowedFd<'_>, sig: i32) -> Result<(), Errno> {
    // SAFETY: `pidfd` is a valid borrowed fd; a NULL siginfo is allowed by the syscall.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if ret < 0 {
        return Err(Errno::last());
    }
    Ok(())
}

/// Restores every signal disposition to its default and unblocks all signals, so that a
/// program we exec does not inherit ignored signals (Rust ignores SIGPIPE) or our mask.
pub(crate) fn reset_signals() -> Result<(), Errno> {
    for sig in 1..=libc::SIGRTMAX() {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: installing SIG_DFL involves no handler code; signal numbers the kernel
        // or libc reserve make this fail with EINVAL, which is ignored on purpose.
        unsafe {
            libc::signal(sig, libc::SIG_DFL);
        }
    }
    let empty = nix::sys::signal::SigSet::empty();
    nix::sys::signal::sigprocmask(
        nix::sys::signal::SigmaskHow::SIG_SETMASK,
        Some(&empty),
        None,
    )
}

/// `_exit(code)`: ends the process at once, without running atexit handlers or flushing
/// buffers copied from the parent. For the child side of a fork or clone.
pub(crate) fn exit_now(code: i32) -> ! {
    // SAFETY: _exit has no preconditions and never returns.
    unsafe { libc::_exit(code) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thread_count_sees_test_threads() {
        // The test harness runs this on a spawned thread, so there are at least two.
        assert!(thread_count().unwrap() >= 2);
    }

    #[test]
    fn no_proof_of_single_threadedness_in_a_test_harness() {
        assert!(matches!(SingleThreaded::check(), Err(Errno::EDEADLK)));
    }
}
