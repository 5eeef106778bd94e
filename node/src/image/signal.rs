//! Signal names as images write them (`stop_signal: SIGUSR2`), turned into numbers the
//! runtime can send to a container's init.
//!
//! Real-time signals are counted from 34, glibc's `SIGRTMIN`, whatever libc the daemon is
//! built against: the number must mean what the container's init (systemd counts on glibc)
//! means by `SIGRTMIN+3`, and musl's `SIGRTMIN` is 35.

use super::error::ImageError;

/// glibc's `SIGRTMIN` (the kernel's 32 and 33 are reserved by NPTL).
const RTMIN: i32 = 34;
/// The kernel's `SIGRTMAX` on Linux.
const RTMAX: i32 = 64;

const NAMES: &[(&str, i32)] = &[
    ("HUP", libc::SIGHUP),
    ("INT", libc::SIGINT),
    ("QUIT", libc::SIGQUIT),
    ("ILL", libc::SIGILL),
    ("TRAP", libc::SIGTRAP),
    ("ABRT", libc::SIGABRT),
    ("IOT", libc::SIGIOT),
    ("BUS", libc::SIGBUS),
    ("FPE", libc::SIGFPE),
    ("KILL", libc::SIGKILL),
    ("USR1", libc::SIGUSR1),
    ("SEGV", libc::SIGSEGV),
    ("USR2", libc::SIGUSR2),
    ("PIPE", libc::SIGPIPE),
    ("ALRM", libc::SIGALRM),
    ("TERM", libc::SIGTERM),
    ("STKFLT", libc::SIGSTKFLT),
    ("CHLD", libc::SIGCHLD),
    ("CLD", libc::SIGCHLD),
    ("CONT", libc::SIGCONT),
    ("STOP", libc::SIGSTOP),
    ("TSTP", libc::SIGTSTP),
    ("TTIN", libc::SIGTTIN),
    ("TTOU", libc::SIGTTOU),
    ("URG", libc::SIGURG),
    ("XCPU", libc::SIGXCPU),
    ("XFSZ", libc::SIGXFSZ),
    ("VTALRM", libc::SIGVTALRM),
    ("PROF", libc::SIGPROF),
    ("WINCH", libc::SIGWINCH),
    ("IO", libc::SIGIO),
    ("POLL", libc::SIGPOLL),
    ("PWR", libc::SIGPWR),
    ("SYS", libc::SIGSYS),
];

/// Parse a signal: `SIGUSR2`, `USR2` (any case), `SIGRTMIN+3`, `RTMAX-1`, `RTMIN` or a
/// number from 1 to 64.
pub fn parse_signal(name: &str) -> Result<i32, ImageError> {
    let invalid = || ImageError::InvalidSignal {
        name: name.to_string(),
    };
    let trimmed = name.trim();
    if !trimmed.is_empty() && trimmed.bytes().all(|b| b.is_ascii_digit()) {
        return match trimmed.parse::<i32>() {
            Ok(n) if (1..=RTMAX).contains(&n) => Ok(n),
            _ => Err(invalid()),
        };
    }
    let upper = trimmed.to_ascii_uppercase();
    let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
    if let Some(&(_, n)) = NAMES.iter().find(|(n, _)| *n == bare) {
        return Ok(n);
    }
    let (base, rest) = if let Some(rest) = bare.strip_prefix("RTMIN") {
        (RTMIN, rest)
    } else if let Some(rest) = bare.strip_prefix("RTMAX") {
        (RTMAX, rest)
    } else {
        return Err(invalid());
    };
    let number = match rest.as_bytes().first() {
        None => base,
        Some(b'+') | Some(b'-') => {
            let digits = &rest[1..];
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(invalid());
            }
            let offset: i32 = digits.parse().map_err(|_| invalid())?;
            if rest.starts_with('+') {
                base + offset
            } else {
                base - offset
            }
        }
        Some(_) => return Err(invalid()),
    };
    if (RTMIN..=RTMAX).contains(&number) {
        Ok(number)
    } else {
        Err(invalid())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_parse_signal_names_and_numbers() {
        assert_eq!(parse_signal("SIGUSR2").unwrap(), libc::SIGUSR2);
        assert_eq!(parse_signal("USR2").unwrap(), libc::SIGUSR2);
        assert_eq!(parse_signal("sigterm").unwrap(), libc::SIGTERM);
        assert_eq!(parse_signal("SIGPWR").unwrap(), libc::SIGPWR);
        assert_eq!(parse_signal("15").unwrap(), 15);
        assert_eq!(parse_signal("64").unwrap(), 64);
        assert_eq!(parse_signal("SIGRTMIN+3").unwrap(), 37);
        assert_eq!(parse_signal("RTMIN").unwrap(), 34);
        assert_eq!(parse_signal("SIGRTMAX-1").unwrap(), 63);
        assert_eq!(parse_signal("SIGRTMAX").unwrap(), 64);
    }

    #[test]
    fn image_parse_signal_refuses_nonsense() {
        for bad in [
            "", "0", "65", "-1", "SIG", "SIGFOO", "RTMIN+31", "RTMAX+1", "RTMIN-1", "RTMIN+",
            "RTMIN+-3", "RTMIN3", "1.5",
        ] {
            let err = parse_signal(bad).unwrap_err();
            assert!(
                matches!(err, ImageError::InvalidSignal { ref name } if name == bad),
                "{bad:?} gave {err}"
            );
        }
    }
}
