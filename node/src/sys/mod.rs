//! The only module of the crate with `unsafe`: thin, checked wrappers around the raw
//! syscalls the container runtime needs and that neither std nor nix wrap safely (clone3
//! with a pidfd, the new mount API, pidfds, close_range, capabilities, a few ioctls,
//! signal dispositions).
//!
//! Everything above this module is safe Rust. The filesystem steps of container setup go
//! through the [`Sys`] trait so that their order and arguments can be tested with the
//! recording fake in `fake`. The process-creating calls ([`clone3`], [`fork`]) need a
//! [`SingleThreaded`] proof, checked against `/proc/self/stat`: after a fork only the
//! calling thread survives, and a lock held by another thread would stay locked in the
//! child forever. The per-container monitor that calls them is single-threaded by
//! construction (`shoald monitor` is dispatched before any thread starts).

mod caps;
mod fd;
mod mount;
mod ops;
mod process;

#[cfg(test)]
pub(crate) mod fake;

pub(crate) use caps::{
    ambient_clear_all, bounding_drop, bounding_has, capget, capset, last_cap, CapSets,
};
pub(crate) use fd::{
    close_range, loopback_up, open_pty_at, own_new_fd, set_controlling_tty, set_winsize,
};
pub(crate) use mount::{
    mount_setattr_fd, open_tree, MountAttr, OPEN_TREE_CLOEXEC, OPEN_TREE_CLONE,
};
pub(crate) use ops::{FileKind, RealSys, Sys};
pub(crate) use process::{
    clone3, exit_now, fork, pidfd_send_signal, reset_signals, Forked, SingleThreaded,
};
