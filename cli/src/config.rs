//! Client configuration: which clusters ("remotes") `shoal` knows and the
//! credentials it presents to them.
//!
//! The file is TOML, found at `--config PATH`, else `$SHOAL_CONFIG`, else
//! `~/.config/shoal/config.toml`:
//!
//! ```toml
//! default_remote = "local"
//! [remotes.local]
//! addresses = ["198.18.0.2:8443", "198.18.0.3:8443"]
//! ca = "/abs/path/ca.crt"
//! cert = "/abs/path/client.crt"
//! key = "/abs/path/client.key"
//! server_name = "shoal"
//! ```
//!
//! Relative certificate paths are taken relative to the file's directory.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Deserialize;

/// Environment variable naming the configuration file.
pub(crate) const CONFIG_ENV: &str = "SHOAL_CONFIG";

/// What fixes a missing configuration, appended to the error.
const FIX_HINT: &str = "run `deploy/local-cluster up` or set SHOAL_CONFIG";

/// The whole configuration file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Config {
    /// Remote used when `--remote` is not given.
    #[serde(default)]
    pub(crate) default_remote: Option<String>,
    /// Known clusters by name.
    #[serde(default)]
    pub(crate) remotes: BTreeMap<String, Remote>,
}

/// One cluster and the credentials to reach it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Remote {
    /// API addresses (`host:port`) of members, tried in order.
    pub(crate) addresses: Vec<String>,
    /// PEM file of the cluster CA.
    pub(crate) ca: PathBuf,
    /// PEM file of the client certificate.
    pub(crate) cert: PathBuf,
    /// PEM file of the client private key.
    pub(crate) key: PathBuf,
    /// DNS name every member certificate carries.
    pub(crate) server_name: String,
}

/// A remote picked for this run, with its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SelectedRemote {
    pub(crate) name: String,
    pub(crate) remote: Remote,
}

/// Where the configuration file is: the flag, the environment, then the
/// default under `$HOME`.
pub(crate) fn config_path(flag: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = flag {
        return Ok(p.to_path_buf());
    }
    if let Some(p) = std::env::var_os(CONFIG_ENV).filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .with_context(|| {
            format!("HOME is not set, so there is no default configuration: set {CONFIG_ENV}")
        })?;
    Ok(PathBuf::from(home).join(".config/shoal/config.toml"))
}

/// Reads and checks the configuration at `path`.
pub(crate) fn load(path: &Path) -> Result<Config> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!("no configuration at {}: {FIX_HINT}", path.display())
        }
        Err(e) => bail!("cannot read configuration {}: {e}", path.display()),
    };
    let base = path.parent().unwrap_or(Path::new("."));
    parse(&text, base).with_context(|| format!("invalid configuration {}", path.display()))
}

/// Parses configuration text; relative certificate paths are joined to `base`.
pub(crate) fn parse(text: &str, base: &Path) -> Result<Config> {
    let mut config: Config =
        toml::from_str(text).map_err(|e| anyhow::anyhow!("{}", e.message()))?;
    for (name, remote) in &mut config.remotes {
        remote.check(name)?;
        for p in [&mut remote.ca, &mut remote.cert, &mut remote.key] {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
    }
    if let Some(d) = &config.default_remote {
        if !config.remotes.contains_key(d) {
            bail!(
                "default_remote {d:?} is not among the remotes ({})",
                known(&config)
            );
        }
    }
    Ok(config)
}

impl Remote {
    fn check(&self, name: &str) -> Result<()> {
        if self.addresses.is_empty() {
            bail!("remote {name:?} has no addresses");
        }
        if let Some(a) = self.addresses.iter().find(|a| a.trim().is_empty()) {
            bail!("remote {name:?} has an empty address {a:?}");
        }
        if self.server_name.trim().is_empty() {
            bail!("remote {name:?} has an empty server_name");
        }
        for (field, p) in [("ca", &self.ca), ("cert", &self.cert), ("key", &self.key)] {
            if p.as_os_str().is_empty() {
                bail!("remote {name:?} has an empty {field} path");
            }
        }
        Ok(())
    }
}

impl Config {
    /// Picks the remote named by `--remote`, else `default_remote`, else the
    /// only remote there is.
    pub(crate) fn select(&self, flag: Option<&str>) -> Result<SelectedRemote> {
        let name = match (flag, &self.default_remote) {
            (Some(n), _) => n.to_string(),
            (None, Some(d)) => d.clone(),
            (None, None) if self.remotes.len() == 1 => {
                self.remotes.keys().next().cloned().unwrap_or_default()
            }
            (None, None) if self.remotes.is_empty() => {
                bail!("the configuration has no remotes: {FIX_HINT}")
            }
            (None, None) => bail!(
                "several remotes and no default_remote: pass --remote NAME ({})",
                known(self)
            ),
        };
        match self.remotes.get(&name) {
            Some(r) => Ok(SelectedRemote {
                name,
                remote: r.clone(),
            }),
            None => bail!("no remote named {name:?} (known: {})", known(self)),
        }
    }
}

fn known(config: &Config) -> String {
    if config.remotes.is_empty() {
        "none".to_string()
    } else {
        config
            .remotes
            .keys()
            .cloned()
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"
default_remote = "local"
[remotes.local]
addresses = ["198.18.0.2:8443", "198.18.0.3:8443"]
ca = "/pki/ca.crt"
cert = "client.crt"
key = "keys/client.key"
server_name = "shoal"

[remotes.prod]
addresses = ["10.0.0.1:8443"]
ca = "/p/ca.crt"
cert = "/p/c.crt"
key = "/p/c.key"
server_name = "shoal.example"
"#;

    #[test]
    fn parses_sample_and_resolves_relative_paths() {
        let c = parse(SAMPLE, Path::new("/etc/shoal")).unwrap();
        assert_eq!(c.default_remote.as_deref(), Some("local"));
        let local = &c.remotes["local"];
        assert_eq!(local.addresses, ["198.18.0.2:8443", "198.18.0.3:8443"]);
        assert_eq!(local.ca, PathBuf::from("/pki/ca.crt"));
        assert_eq!(local.cert, PathBuf::from("/etc/shoal/client.crt"));
        assert_eq!(local.key, PathBuf::from("/etc/shoal/keys/client.key"));
        assert_eq!(local.server_name, "shoal");
    }

    #[test]
    fn selects_flag_then_default() {
        let c = parse(SAMPLE, Path::new("/")).unwrap();
        assert_eq!(c.select(None).unwrap().name, "local");
        assert_eq!(c.select(Some("prod")).unwrap().name, "prod");
        let err = c.select(Some("nope")).unwrap_err().to_string();
        assert!(err.contains("no remote named \"nope\""), "{err}");
        assert!(err.contains("local, prod"), "{err}");
    }

    #[test]
    fn single_remote_needs_no_default() {
        let text = SAMPLE.replace("default_remote = \"local\"", "");
        let text = text.split("[remotes.prod]").next().unwrap();
        let c = parse(text, Path::new("/")).unwrap();
        assert_eq!(c.select(None).unwrap().name, "local");
    }

    #[test]
    fn several_remotes_without_default_is_an_error() {
        let text = SAMPLE.replace("default_remote = \"local\"", "");
        let c = parse(&text, Path::new("/")).unwrap();
        let err = c.select(None).unwrap_err().to_string();
        assert!(err.contains("--remote"), "{err}");
    }

    #[test]
    fn rejects_bad_files() {
        let cases = [
            ("default_remote = \"x\"\n", "default_remote \"x\""),
            ("bogus = 1\n", "unknown field"),
            (
                "[remotes.a]\naddresses = []\nca=\"a\"\ncert=\"b\"\nkey=\"c\"\nserver_name=\"s\"\n",
                "no addresses",
            ),
            (
                "[remotes.a]\naddresses = [\"h:1\"]\nca=\"a\"\ncert=\"b\"\nserver_name=\"s\"\n",
                "missing field `key`",
            ),
            (
                "[remotes.a]\naddresses = [\"h:1\"]\nca=\"a\"\ncert=\"b\"\nkey=\"c\"\nserver_name=\"\"\n",
                "empty server_name",
            ),
            ("default_remote = [", ""),
        ];
        for (text, want) in cases {
            let err = format!("{:#}", parse(text, Path::new("/")).unwrap_err());
            assert!(err.contains(want), "{text:?}: {err}");
        }
    }

    #[test]
    fn empty_file_has_no_remotes() {
        let c = parse("", Path::new("/")).unwrap();
        let err = c.select(None).unwrap_err().to_string();
        assert!(err.contains("deploy/local-cluster up"), "{err}");
    }

    #[test]
    fn missing_file_names_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("absent.toml");
        let err = load(&p).unwrap_err().to_string();
        assert!(err.starts_with("no configuration at "), "{err}");
        assert!(err.contains("absent.toml"), "{err}");
        assert!(err.contains("set SHOAL_CONFIG"), "{err}");
    }

    #[test]
    fn load_reads_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("config.toml");
        std::fs::write(&p, SAMPLE).unwrap();
        let c = load(&p).unwrap();
        assert_eq!(c.remotes["local"].cert, dir.path().join("client.crt"));
        std::fs::write(&p, "remotes = 3").unwrap();
        let err = format!("{:#}", load(&p).unwrap_err());
        assert!(err.starts_with("invalid configuration "), "{err}");
    }

    #[test]
    fn flag_wins_over_environment() {
        let p = config_path(Some(Path::new("/x/y.toml"))).unwrap();
        assert_eq!(p, PathBuf::from("/x/y.toml"));
    }
}
