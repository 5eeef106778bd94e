//! Remote commands: `shoal remote add|list|remove|switch`.
//!
//! A remote is a cluster this client knows, with the certificate it presents
//! there. `add` enrols with a token (see `enroll.rs`) and writes the
//! credentials beside the configuration file, in `<config dir>/<remote>/`;
//! the others only edit the file.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Subcommand;

use crate::config::{self, Config};
use crate::config_edit::{Document, RemoteEntry};
use crate::enroll::{enroll, write_credentials, CredentialPaths, SERVER_NAME};
use crate::output::{print, render_list, Format};
use crate::token::{now_ms, Token};
use crate::view::remote::{self, RemoteView};

#[derive(Subcommand, Debug)]
pub(crate) enum RemoteCommand {
    /// Enrol with a cluster using a token from `shoal cluster trust add`
    Add {
        /// Local name for the cluster
        name: String,
        /// host:port of any member
        address: String,
        /// The token ("-" reads it from stdin)
        #[arg(long)]
        token: String,
    },
    /// List the configured remotes
    #[command(alias = "ls")]
    List {
        /// Output format
        #[arg(short = 'f', long, value_enum, default_value_t)]
        format: Format,
    },
    /// Forget a remote and the credentials `remote add` wrote for it
    #[command(alias = "rm")]
    Remove {
        /// Remote name
        name: String,
    },
    /// Make a remote the default
    Switch {
        /// Remote name
        name: String,
    },
}

/// Runs a remote subcommand against the configuration file at `path`.
pub(crate) async fn run(path: &Path, cmd: RemoteCommand) -> Result<()> {
    match cmd {
        RemoteCommand::Add {
            name,
            address,
            token,
        } => add(path, &name, &address, &token).await,
        RemoteCommand::List { format } => {
            let views: Vec<RemoteView> = remote::views(&load_or_empty(path)?);
            print(&render_list(format, &views, remote::table)?)
        }
        RemoteCommand::Remove { name } => remove(path, &name),
        RemoteCommand::Switch { name } => {
            let mut doc = Document::load(path)?;
            require(&doc, &name)?;
            doc.set_default(Some(&name));
            doc.save()
        }
    }
}

async fn add(path: &Path, name: &str, address: &str, token_arg: &str) -> Result<()> {
    check_remote_name(name)?;
    let address = address.trim();
    if address.is_empty() {
        bail!("the address is empty: give host:port of a member");
    }
    let token = Token::decode(&read_token(token_arg)?)?;
    token.check_expiry(now_ms())?;
    let ca = token.verified_ca()?;

    // Check the file before the single-use token is spent.
    let mut doc = Document::load(path)?;
    let base = std::path::absolute(doc.dir())
        .with_context(|| format!("cannot resolve {}", doc.dir().display()))?;
    config::parse(&doc.render()?, &base)
        .with_context(|| format!("invalid configuration {}", path.display()))?;

    let candidates = dedup([address.to_string()].iter().chain(&token.addresses));
    let creds = enroll(name, &token, ca, &candidates).await?;
    let paths = write_credentials(&base.join(name), &creds)?;
    let entry = RemoteEntry {
        addresses: dedup(
            [address.to_string()]
                .iter()
                .chain(&token.addresses)
                .chain(&creds.addresses),
        ),
        ca: paths.ca,
        cert: paths.cert,
        key: paths.key,
        server_name: SERVER_NAME.to_string(),
    };
    doc.set_remote(name, &entry)?;
    if doc.default_remote().is_none() {
        doc.set_default(Some(name));
    }
    doc.save()?;
    if std::io::stderr().is_terminal() {
        let role = if creds.role.is_empty() {
            "unknown"
        } else {
            &creds.role
        };
        eprintln!(
            "remote {name:?} added: enrolled as {:?} with role {role} (via {})",
            token.name, creds.address
        );
    }
    Ok(())
}

/// The token text: the argument, or stdin for "-".
fn read_token(arg: &str) -> Result<String> {
    if arg != "-" {
        return Ok(arg.to_string());
    }
    let mut s = String::new();
    std::io::stdin()
        .read_to_string(&mut s)
        .context("cannot read the token from stdin")?;
    Ok(s)
}

/// Non-empty, unique, in first-seen order.
fn dedup<'a>(list: impl Iterator<Item = &'a String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for a in list.map(|a| a.trim()).filter(|a| !a.is_empty()) {
        if !out.iter().any(|o| o == a) {
            out.push(a.to_string());
        }
    }
    out
}

/// A remote name doubles as a directory name, so it is kept plain.
pub(crate) fn check_remote_name(name: &str) -> Result<()> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if name.is_empty()
        || name.len() > 63
        || !name.chars().all(ok_char)
        || name.starts_with(['.', '-'])
    {
        bail!("invalid remote name {name:?}: use up to 63 letters, digits, '-', '_' or '.', not starting with '.' or '-'");
    }
    Ok(())
}

fn load_or_empty(path: &Path) -> Result<Config> {
    if !path.exists() {
        return Ok(Config {
            default_remote: None,
            remotes: BTreeMap::new(),
        });
    }
    config::load(path)
}

fn require(doc: &Document, name: &str) -> Result<()> {
    let names = doc.remote_names();
    if !names.iter().any(|n| n == name) {
        let known = if names.is_empty() {
            "none".to_string()
        } else {
            names.join(", ")
        };
        bail!("no remote named {name:?} (known: {known})");
    }
    Ok(())
}

fn remove(path: &Path, name: &str) -> Result<()> {
    let mut doc = Document::load(path)?;
    require(&doc, name)?;
    let resolved = config::load(path)?.remotes.remove(name);
    doc.remove_remote(name)?;
    if doc.default_remote() == Some(name) {
        doc.set_default(None);
    }
    doc.save()?;
    // Delete the credentials only where `remote add` put them.
    let base = std::path::absolute(doc.dir()).unwrap_or_else(|_| doc.dir());
    let ours = CredentialPaths::under(&base.join(name));
    if let Some(r) = resolved {
        let theirs = CredentialPaths {
            ca: absolute(&r.ca),
            cert: absolute(&r.cert),
            key: absolute(&r.key),
        };
        if theirs == ours {
            for f in [&ours.key, &ours.cert, &ours.ca] {
                let _ = std::fs::remove_file(f);
            }
            let _ = std::fs::remove_dir(base.join(name));
        }
    }
    Ok(())
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_names() {
        for ok in ["lab", "prod-1", "a.b_c"] {
            check_remote_name(ok).unwrap();
        }
        for bad in ["", "..", ".hidden", "-x", "a/b", "a b", &"x".repeat(64)] {
            assert!(check_remote_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn dedup_keeps_first_seen_order() {
        let v: Vec<String> = ["b:1", " a:1", "", "b:1", "c:1", "a:1"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(dedup(v.iter()), ["b:1", "a:1", "c:1"]);
    }

    const CONFIG: &str = "default_remote = \"lab\"\n\
        [remotes.lab]\naddresses = [\"h:1\"]\nca = \"lab/ca.crt\"\ncert = \"lab/client.crt\"\nkey = \"lab/client.key\"\nserver_name = \"shoal\"\n\
        [remotes.other]\naddresses = [\"g:1\"]\nca = \"/o/ca\"\ncert = \"/o/c\"\nkey = \"/o/k\"\nserver_name = \"shoal\"\n";

    #[tokio::test]
    async fn switch_and_remove() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, CONFIG).unwrap();
        let lab = dir.path().join("lab");
        std::fs::create_dir(&lab).unwrap();
        for f in ["ca.crt", "client.crt", "client.key"] {
            std::fs::write(lab.join(f), "x").unwrap();
        }
        let err = run(
            &path,
            RemoteCommand::Switch {
                name: "nope".into(),
            },
        )
        .await
        .unwrap_err()
        .to_string();
        assert_eq!(err, "no remote named \"nope\" (known: lab, other)");
        run(
            &path,
            RemoteCommand::Switch {
                name: "other".into(),
            },
        )
        .await
        .unwrap();
        assert_eq!(
            config::load(&path).unwrap().default_remote.as_deref(),
            Some("other")
        );
        run(&path, RemoteCommand::Switch { name: "lab".into() })
            .await
            .unwrap();
        run(&path, RemoteCommand::Remove { name: "lab".into() })
            .await
            .unwrap();
        let c = config::load(&path).unwrap();
        assert_eq!(c.default_remote, None);
        assert_eq!(c.remotes.keys().collect::<Vec<_>>(), ["other"]);
        assert!(
            !lab.exists(),
            "credentials of the removed remote are deleted"
        );
        // Credentials that `remote add` did not write are left alone.
        run(
            &path,
            RemoteCommand::Remove {
                name: "other".into(),
            },
        )
        .await
        .unwrap();
        assert!(config::load(&path).unwrap().remotes.is_empty());
    }

    #[tokio::test]
    async fn add_refuses_bad_tokens_before_connecting() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        let ca = crate::token::tests::ca_pem();
        let add = |token: String| RemoteCommand::Add {
            name: "lab".into(),
            address: "127.0.0.1:1".into(),
            token,
        };
        let expired = crate::token::tests::encode(&crate::token::tests::client_token(&ca, 1_000));
        let err = run(&path, add(expired)).await.unwrap_err().to_string();
        assert!(err.contains("expired at 1970-01-01T00:00:01Z"), "{err}");
        let mut forged = crate::token::tests::client_token(&ca, i64::MAX);
        forged["ca_pem"] = serde_json::json!(crate::token::tests::ca_pem());
        let err = run(&path, add(crate::token::tests::encode(&forged)))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("refusing to trust it"), "{err}");
        let err = run(&path, add("garbage".into()))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("the token is damaged"), "{err}");
        assert!(!path.exists(), "nothing is written for a refused token");
    }
}
