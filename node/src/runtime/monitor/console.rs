//! init's console output, appended to `console.log` with a size cap: when the file would
//! grow past [`MAX_LOG`] it is renamed to `console.log.1` (replacing the previous one) and
//! a new file is started, so a chatty container keeps at most twice the cap on disk.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;

/// Size at which `console.log` is rotated.
pub(crate) const MAX_LOG: u64 = 1 << 20;

/// An append-only, size-capped log file.
pub(crate) struct ConsoleLog {
    path: PathBuf,
    file: Option<File>,
    size: u64,
    max: u64,
}

impl ConsoleLog {
    pub(crate) fn open(path: PathBuf, max: u64) -> Self {
        let mut log = Self {
            path,
            file: None,
            size: 0,
            max,
        };
        log.reopen();
        log
    }

    fn reopen(&mut self) {
        self.file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .ok();
        self.size = self
            .file
            .as_ref()
            .and_then(|f| f.metadata().ok())
            .map_or(0, |m| m.len());
    }

    fn rotate(&mut self) {
        let mut old = self.path.clone().into_os_string();
        old.push(".1");
        let _ = std::fs::rename(&self.path, &old);
        self.reopen();
    }

    /// Appends `data`; write errors are dropped (the console must never block init).
    pub(crate) fn append(&mut self, data: &[u8]) {
        if self.size > 0 && self.size + data.len() as u64 > self.max {
            self.rotate();
        }
        if let Some(f) = self.file.as_mut() {
            if f.write_all(data).is_ok() {
                self.size += data.len() as u64;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotates_at_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("console.log");
        let mut log = ConsoleLog::open(path.clone(), 10);
        log.append(b"12345");
        log.append(b"6789");
        assert_eq!(std::fs::read(&path).unwrap(), b"123456789");
        log.append(b"abc");
        assert_eq!(std::fs::read(&path).unwrap(), b"abc");
        assert_eq!(
            std::fs::read(dir.path().join("console.log.1")).unwrap(),
            b"123456789"
        );
        // Reopening continues the current file and its size.
        let mut log = ConsoleLog::open(path.clone(), 10);
        log.append(b"defghij");
        assert_eq!(std::fs::read(&path).unwrap(), b"abcdefghij");
        log.append(b"k");
        assert_eq!(std::fs::read(&path).unwrap(), b"k");
    }
}
