//! Changing the configuration file: `shoal remote add|remove|switch` and the
//! addresses the CLI learns from `shoal cluster list`.
//!
//! Edits go through the raw TOML table, not [`Config`](crate::config::Config),
//! so every other remote keeps exactly the values written (relative paths stay
//! relative). The new text is checked with the same parser `shoal` reads with,
//! then written to a temporary file in the same directory and renamed over the
//! old one, so a crash never leaves half a file. Comments are not kept.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use toml::{Table, Value};

use crate::config;

/// One remote as `remote add` writes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RemoteEntry {
    pub(crate) addresses: Vec<String>,
    pub(crate) ca: PathBuf,
    pub(crate) cert: PathBuf,
    pub(crate) key: PathBuf,
    pub(crate) server_name: String,
}

/// The configuration file as a TOML table, ready to change and save.
#[derive(Clone, Debug)]
pub(crate) struct Document {
    path: PathBuf,
    table: Table,
}

impl Document {
    /// Reads `path`; a missing file is an empty configuration.
    pub(crate) fn load(path: &Path) -> Result<Document> {
        let table = match std::fs::read_to_string(path) {
            Ok(text) => text
                .parse::<Table>()
                .map_err(|e| anyhow::anyhow!("{}", e.message()))
                .with_context(|| format!("invalid configuration {}", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Table::new(),
            Err(e) => bail!("cannot read configuration {}: {e}", path.display()),
        };
        Ok(Document {
            path: path.to_path_buf(),
            table,
        })
    }

    /// The directory the file is in; relative paths in it start here.
    pub(crate) fn dir(&self) -> PathBuf {
        match self.path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        }
    }

    pub(crate) fn default_remote(&self) -> Option<&str> {
        self.table.get("default_remote").and_then(Value::as_str)
    }

    /// Sets or clears `default_remote`.
    pub(crate) fn set_default(&mut self, name: Option<&str>) {
        match name {
            Some(n) => {
                self.table
                    .insert("default_remote".into(), Value::String(n.into()));
            }
            None => {
                self.table.remove("default_remote");
            }
        }
    }

    /// Names of the remotes, sorted.
    pub(crate) fn remote_names(&self) -> Vec<String> {
        self.remotes()
            .map(|r| r.keys().cloned().collect())
            .unwrap_or_default()
    }

    fn remotes(&self) -> Option<&Table> {
        self.table.get("remotes").and_then(Value::as_table)
    }

    fn remotes_mut(&mut self) -> Result<&mut Table> {
        let v = self
            .table
            .entry("remotes")
            .or_insert_with(|| Value::Table(Table::new()));
        v.as_table_mut()
            .context("`remotes` in the configuration is not a table")
    }

    /// Adds `name`, replacing a remote of that name.
    pub(crate) fn set_remote(&mut self, name: &str, r: &RemoteEntry) -> Result<()> {
        let mut t = Table::new();
        t.insert("addresses".into(), strings(&r.addresses));
        for (k, p) in [("ca", &r.ca), ("cert", &r.cert), ("key", &r.key)] {
            let s = p
                .to_str()
                .with_context(|| format!("path {} is not UTF-8", p.display()))?;
            t.insert(k.into(), Value::String(s.into()));
        }
        t.insert("server_name".into(), Value::String(r.server_name.clone()));
        self.remotes_mut()?.insert(name.into(), Value::Table(t));
        Ok(())
    }

    /// Removes `name`; false if there was none.
    pub(crate) fn remove_remote(&mut self, name: &str) -> Result<bool> {
        Ok(self.remotes_mut()?.remove(name).is_some())
    }

    /// The addresses of `name` as written.
    pub(crate) fn addresses(&self, name: &str) -> Option<Vec<String>> {
        let list = self.remotes()?.get(name)?.get("addresses")?.as_array()?;
        Some(
            list.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect(),
        )
    }

    /// Replaces the addresses of an existing remote `name`.
    pub(crate) fn set_addresses(&mut self, name: &str, addresses: &[String]) -> Result<()> {
        let remote = self
            .remotes_mut()?
            .get_mut(name)
            .and_then(Value::as_table_mut)
            .with_context(|| format!("no remote named {name:?}"))?;
        remote.insert("addresses".into(), strings(addresses));
        Ok(())
    }

    /// The file's text as it would be saved.
    pub(crate) fn render(&self) -> Result<String> {
        toml::to_string(&self.table).context("cannot write the configuration as TOML")
    }

    /// Checks the new text as `shoal` will read it, then replaces the file.
    pub(crate) fn save(&self) -> Result<()> {
        let text = self.render()?;
        config::parse(&text, &self.dir()).context("refusing to write an invalid configuration")?;
        write_atomic(&self.path, text.as_bytes(), None)
            .with_context(|| format!("cannot write configuration {}", self.path.display()))
    }
}

fn strings(list: &[String]) -> Value {
    Value::Array(list.iter().map(|a| Value::String(a.clone())).collect())
}

/// Writes `data` to a temporary file beside `path`, then renames it over `path`.
/// `mode` sets the permissions; without it an existing file keeps its own and a
/// new one gets 0644.
pub(crate) fn write_atomic(path: &Path, data: &[u8], mode: Option<u32>) -> Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mode = mode.unwrap_or_else(|| {
        std::fs::metadata(path)
            .map(|m| m.permissions().mode() & 0o7777)
            .unwrap_or(0o644)
    });
    let file_name = path
        .file_name()
        .with_context(|| format!("{} names no file", path.display()))?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        file_name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| -> std::io::Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        // The umask may have narrowed the mode; a key must not end wider.
        f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        f.write_all(data)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.with_context(|| format!("cannot write {}", path.display()))
}

/// The addresses to keep after learning the members' `learned` addresses:
/// `answered` (the member that just answered) first, then the configured ones in
/// their order, then new ones. `None` when the set would not change, so the
/// file is left alone. Empty and unspecified (`0.0.0.0`, `[::]`) addresses are
/// not learned.
pub(crate) fn merge_addresses(
    current: &[String],
    answered: &str,
    learned: &[String],
) -> Option<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    let mut push = |a: &str| {
        let a = a.trim();
        if !a.is_empty() && !out.iter().any(|o| o == a) {
            out.push(a.to_string());
        }
    };
    if current.iter().any(|c| c.trim() == answered.trim()) {
        push(answered);
    }
    current.iter().for_each(|a| push(a));
    learned
        .iter()
        .filter(|a| !is_unspecified(a))
        .for_each(|a| push(a));
    let same = out.len() == current.len() && out.iter().all(|a| current.iter().any(|c| c == a));
    (!same).then_some(out)
}

fn is_unspecified(address: &str) -> bool {
    match address.trim().parse::<std::net::SocketAddr>() {
        Ok(sa) => sa.ip().is_unspecified() || sa.port() == 0,
        Err(_) => address.trim().is_empty(),
    }
}

/// Adds the members' addresses to remote `name` in the file at `path`, if that
/// changes its set of addresses. Returns whether the file was rewritten.
pub(crate) fn learn_addresses(
    path: &Path,
    name: &str,
    answered: &str,
    learned: &[String],
) -> Result<bool> {
    let mut doc = Document::load(path)?;
    let Some(current) = doc.addresses(name) else {
        return Ok(false);
    };
    let Some(merged) = merge_addresses(&current, answered, learned) else {
        return Ok(false);
    };
    doc.set_addresses(name, &merged)?;
    doc.save()?;
    Ok(true)
}

#[cfg(test)]
#[path = "config_edit_tests.rs"]
mod tests;
