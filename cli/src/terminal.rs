//! The local terminal during `shoal exec --tty`: raw mode and window size.
//!
//! Raw mode is held by a guard that restores the saved settings when
//! dropped, so every way out of `exec` (exit code, error, panic unwinding,
//! SIGTERM handled in the exec loop) leaves the terminal as it was.
//!
//! The window size is read with `stty size` on the terminal: the TIOCGWINSZ
//! ioctl has no safe wrapper in nix, and `unsafe` is kept out of this crate.

use std::io::IsTerminal;
use std::os::fd::{AsFd, OwnedFd};
use std::process::{Command, Stdio};

use anyhow::{Context, Result};
use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg, Termios};

/// Keeps stdin in raw mode while alive.
pub(crate) struct RawMode {
    saved: Termios,
}

impl RawMode {
    /// Puts stdin in raw mode, if it is a terminal; `None` otherwise.
    pub(crate) fn enable() -> Result<Option<RawMode>> {
        let stdin = std::io::stdin();
        if !stdin.is_terminal() {
            return Ok(None);
        }
        let saved = tcgetattr(&stdin).context("cannot read the terminal settings of stdin")?;
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        tcsetattr(&stdin, SetArg::TCSANOW, &raw).context("cannot put the terminal in raw mode")?;
        Ok(Some(RawMode { saved }))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        // Nothing sensible to do on failure while unwinding.
        let _ = tcsetattr(std::io::stdin(), SetArg::TCSAFLUSH, &self.saved);
    }
}

/// Rows and columns of our terminal: stdin's, else stdout's, else the
/// controlling terminal's.
pub(crate) fn window_size() -> Option<(u32, u32)> {
    let tty: OwnedFd = if std::io::stdin().is_terminal() {
        std::io::stdin().as_fd().try_clone_to_owned().ok()?
    } else if std::io::stdout().is_terminal() {
        std::io::stdout().as_fd().try_clone_to_owned().ok()?
    } else {
        std::fs::File::open("/dev/tty").ok()?.into()
    };
    let out = Command::new("stty")
        .arg("size")
        .stdin(Stdio::from(tty))
        .stderr(Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    parse_stty_size(&String::from_utf8_lossy(&out.stdout))
}

/// Parses `stty size` output ("rows cols"); a zero size counts as unknown.
pub(crate) fn parse_stty_size(s: &str) -> Option<(u32, u32)> {
    let mut it = s.split_whitespace();
    let rows = it.next()?.parse().ok()?;
    let cols = it.next()?.parse().ok()?;
    if it.next().is_some() || rows == 0 || cols == 0 {
        return None;
    }
    Some((rows, cols))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stty_size_parses() {
        assert_eq!(parse_stty_size("24 80\n"), Some((24, 80)));
        assert_eq!(parse_stty_size("0 0\n"), None);
        assert_eq!(parse_stty_size("24\n"), None);
        assert_eq!(parse_stty_size("a b"), None);
        assert_eq!(parse_stty_size("1 2 3"), None);
    }

    #[test]
    fn raw_mode_is_a_no_op_without_a_terminal() {
        // Under `cargo test` stdin is usually not a terminal; when it is, the
        // guard must restore it on drop.
        let guard = RawMode::enable().unwrap();
        drop(guard);
    }
}
