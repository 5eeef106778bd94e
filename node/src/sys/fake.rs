//! A recording [`Sys`] for unit tests: every call is logged as one line of text, and the
//! file kinds it reports come from a table the test fills in.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::MsFlags;

use super::ops::{FileKind, Sys};

/// Records calls; `kinds` answers `kind()` (missing paths are `None`).
#[derive(Default)]
pub(crate) struct RecordingSys {
    pub(crate) calls: RefCell<Vec<String>>,
    pub(crate) kinds: RefCell<BTreeMap<PathBuf, FileKind>>,
    /// A call whose line starts with this prefix fails with EPERM.
    pub(crate) fail_on: Option<String>,
}

impl RecordingSys {
    pub(crate) fn with_paths(paths: &[(&str, FileKind)]) -> Self {
        let fake = Self::default();
        for (p, k) in paths {
            fake.kinds.borrow_mut().insert(PathBuf::from(p), *k);
        }
        fake
    }

    fn record(&self, line: String) -> Result<(), Errno> {
        let fail = self.fail_on.as_ref().is_some_and(|p| line.starts_with(p));
        self.calls.borrow_mut().push(line);
        if fail {
            return Err(Errno::EPERM);
        }
        Ok(())
    }

    pub(crate) fn lines(&self) -> Vec<String> {
        self.calls.borrow().clone()
    }
}

impl Sys for RecordingSys {
    fn mount(
        &self,
        src: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> Result<(), Errno> {
        let src = src.map_or("-".into(), |p| p.display().to_string());
        let names: Vec<&str> = flags.iter_names().map(|(n, _)| n).collect();
        let flags = if names.is_empty() {
            "(empty)".to_string()
        } else {
            names.join(" | ")
        };
        self.record(format!(
            "mount {src} {} {} {flags} {}",
            target.display(),
            fstype.unwrap_or("-"),
            data.unwrap_or("-")
        ))
    }

    fn set_mount_attr(
        &self,
        target: &Path,
        set: u64,
        clr: u64,
        recursive: bool,
    ) -> Result<(), Errno> {
        self.record(format!(
            "setattr {} set={set:#x} clr={clr:#x} recursive={recursive}",
            target.display()
        ))
    }

    fn attach_mount(&self, fd: BorrowedFd<'_>, target: &Path) -> Result<(), Errno> {
        self.record(format!("attach fd{} {}", fd.as_raw_fd(), target.display()))
    }

    fn mkdir(&self, path: &Path, mode: u32) -> Result<(), Errno> {
        self.kinds
            .borrow_mut()
            .insert(path.to_path_buf(), FileKind::Dir);
        self.record(format!("mkdir {} {mode:o}", path.display()))
    }

    fn create_file(&self, path: &Path, mode: u32) -> Result<(), Errno> {
        self.kinds
            .borrow_mut()
            .insert(path.to_path_buf(), FileKind::File);
        self.record(format!("create {} {mode:o}", path.display()))
    }

    fn symlink(&self, target: &Path, link: &Path) -> Result<(), Errno> {
        self.kinds
            .borrow_mut()
            .insert(link.to_path_buf(), FileKind::Symlink);
        self.record(format!(
            "symlink {} -> {}",
            link.display(),
            target.display()
        ))
    }

    fn kind(&self, path: &Path) -> Option<FileKind> {
        self.kinds.borrow().get(path).copied()
    }

    fn chdir(&self, path: &Path) -> Result<(), Errno> {
        self.record(format!("chdir {}", path.display()))
    }

    fn pivot_root(&self, new_root: &Path, put_old: &Path) -> Result<(), Errno> {
        self.record(format!(
            "pivot_root {} {}",
            new_root.display(),
            put_old.display()
        ))
    }

    fn umount_detach(&self, path: &Path) -> Result<(), Errno> {
        self.record(format!("umount {}", path.display()))
    }

    fn sethostname(&self, name: &str) -> Result<(), Errno> {
        self.record(format!("sethostname {name}"))
    }
}
