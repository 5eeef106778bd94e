//! File-descriptor level calls: close_range and the few ioctls the runtime needs
//! (controlling terminal, window size, bringing `lo` up).

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use nix::errno::Errno;
use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType};

/// `close_range(first, last, flags)`; with `libc::CLOSE_RANGE_CLOEXEC` the fds are only
/// marked close-on-exec.
pub(crate) fn close_range(first: u32, last: u32, flags: u32) -> Result<(), Errno> {
    // SAFETY: integer arguments only. Closing fds that Rust objects still own would be a
    // use-after-close hazard, so callers only use this right before exec or exit.
    let ret = unsafe { libc::syscall(libc::SYS_close_range, first, last, flags) };
    if ret < 0 {
        return Err(Errno::last());
    }
    Ok(())
}

/// `ioctl(fd, TIOCSCTTY, 0)`: makes the terminal `fd` the controlling terminal of the
/// calling session leader.
pub(crate) fn set_controlling_tty(fd: BorrowedFd<'_>) -> Result<(), Errno> {
    // SAFETY: TIOCSCTTY takes an integer argument; `fd` is a valid borrowed fd.
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSCTTY, 0) };
    if ret < 0 {
        return Err(Errno::last());
    }
    Ok(())
}

/// `ioctl(fd, TIOCSWINSZ, {rows, cols})` on a pty master or slave.
pub(crate) fn set_winsize(fd: BorrowedFd<'_>, rows: u16, cols: u16) -> Result<(), Errno> {
    let size = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a `struct winsize`, which `size` is, valid during the call.
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, std::ptr::addr_of!(size)) };
    if ret < 0 {
        return Err(Errno::last());
    }
    Ok(())
}

/// Opens a pseudo-terminal pair on the devpts instance whose `ptmx` node is at `ptmx`
/// (a container's own, reached through `/proc/<init>/root/dev/pts/ptmx`), so that the
/// terminal belongs to the container. Returns (master, slave), both close-on-exec.
pub(crate) fn open_pty_at(ptmx: &std::path::Path) -> Result<(OwnedFd, OwnedFd), Errno> {
    use nix::fcntl::{open, OFlag};
    use nix::sys::stat::Mode;
    let master = open(
        ptmx,
        OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    let unlock: libc::c_int = 0;
    // SAFETY: TIOCSPTLCK reads one int (0 = unlock) from the pointer, valid during the call.
    let ret = unsafe {
        libc::ioctl(
            master.as_raw_fd(),
            libc::TIOCSPTLCK,
            std::ptr::addr_of!(unlock),
        )
    };
    if ret < 0 {
        return Err(Errno::last());
    }
    // SAFETY: TIOCGPTPEER takes open flags by value and returns a new fd that we own.
    let slave = unsafe {
        libc::ioctl(
            master.as_raw_fd(),
            libc::TIOCGPTPEER,
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
    };
    if slave < 0 {
        return Err(Errno::last());
    }
    // SAFETY: the kernel just returned `slave` as a new descriptor owned by nobody else.
    let slave = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(slave) };
    Ok((master, slave))
}

/// Sets IFF_UP on `lo` in the calling process's network namespace.
pub(crate) fn loopback_up() -> Result<(), Errno> {
    let sock = socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    let mut name = [0 as libc::c_char; libc::IFNAMSIZ];
    for (dst, src) in name.iter_mut().zip(b"lo") {
        *dst = *src as libc::c_char;
    }
    let mut req = libc::ifreq {
        ifr_name: name,
        ifr_ifru: libc::__c_anonymous_ifr_ifru { ifru_flags: 0 },
    };
    let fd = sock.as_fd().as_raw_fd();
    // SAFETY: SIOCGIFFLAGS reads the name from and writes the flags into `req`, a valid
    // `struct ifreq` for the duration of the call.
    let ret = unsafe { libc::ioctl(fd, libc::SIOCGIFFLAGS, std::ptr::addr_of_mut!(req)) };
    if ret < 0 {
        return Err(Errno::last());
    }
    // SAFETY: SIOCGIFFLAGS succeeded, so the kernel initialised the `ifru_flags` member.
    let flags = unsafe { req.ifr_ifru.ifru_flags };
    req.ifr_ifru.ifru_flags = flags | libc::IFF_UP as libc::c_short;
    // SAFETY: as above; SIOCSIFFLAGS only reads `req`.
    let ret = unsafe { libc::ioctl(fd, libc::SIOCSIFFLAGS, std::ptr::addr_of_mut!(req)) };
    if ret < 0 {
        return Err(Errno::last());
    }
    Ok(())
}

/// Takes ownership of a descriptor the kernel has just installed in our table and that
/// nothing else owns (received with SCM_RIGHTS, returned by accept4).
pub(crate) fn own_new_fd(raw: std::os::fd::RawFd) -> std::os::fd::OwnedFd {
    use std::os::fd::FromRawFd;
    // SAFETY: callers pass only fds freshly returned by the kernel to this process, which
    // no other object owns yet, so the OwnedFd becomes their single owner.
    unsafe { std::os::fd::OwnedFd::from_raw_fd(raw) }
}
