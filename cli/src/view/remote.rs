//! How a configured remote prints: `shoal remote list`.

use std::path::Path;

use serde::Serialize;

use crate::config::{Config, Remote};
use crate::output::Table;

/// One remote, as `--format json|yaml` prints it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub(crate) struct RemoteView {
    pub(crate) name: String,
    /// Member addresses, tried in order.
    pub(crate) addresses: Vec<String>,
    /// Whether commands use it when `--remote` is not given.
    pub(crate) default: bool,
    pub(crate) server_name: String,
    pub(crate) ca: String,
    pub(crate) cert: String,
    pub(crate) key: String,
}

impl RemoteView {
    fn new(name: &str, r: &Remote, default: bool) -> RemoteView {
        let p = |p: &Path| p.display().to_string();
        RemoteView {
            name: name.to_string(),
            addresses: r.addresses.clone(),
            default,
            server_name: r.server_name.clone(),
            ca: p(&r.ca),
            cert: p(&r.cert),
            key: p(&r.key),
        }
    }
}

/// Every remote of `config`, by name. With no `default_remote`, a lone remote
/// is the default, as `shoal` picks it.
pub(crate) fn views(config: &Config) -> Vec<RemoteView> {
    let lone = config.remotes.len() == 1;
    config
        .remotes
        .iter()
        .map(|(name, r)| {
            let default = match &config.default_remote {
                Some(d) => d == name,
                None => lone,
            };
            RemoteView::new(name, r, default)
        })
        .collect()
}

/// Rows for `shoal remote list`.
pub(crate) fn table(items: &[RemoteView]) -> Table {
    Table {
        headers: vec!["NAME", "ADDRESSES", "DEFAULT"],
        rows: items
            .iter()
            .map(|r| {
                vec![
                    r.name.clone(),
                    r.addresses.join(","),
                    if r.default { "YES" } else { "NO" }.to_string(),
                ]
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::{render_list, Format};

    #[test]
    fn default_is_marked() {
        let text = "default_remote = \"b\"\n\
            [remotes.a]\naddresses = [\"h:1\", \"h:2\"]\nca = \"a/ca.crt\"\ncert = \"c\"\nkey = \"k\"\nserver_name = \"shoal\"\n\
            [remotes.b]\naddresses = [\"g:1\"]\nca = \"/ca\"\ncert = \"/c\"\nkey = \"/k\"\nserver_name = \"shoal\"\n";
        let c = crate::config::parse(text, Path::new("/etc/shoal")).unwrap();
        let v = views(&c);
        let csv = render_list(Format::Csv, &v, table).unwrap();
        assert_eq!(csv, "a,\"h:1,h:2\",NO\nb,g:1,YES\n");
        assert_eq!(v[0].ca, "/etc/shoal/a/ca.crt");
        let one = crate::config::parse(
            "[remotes.a]\naddresses = [\"h:1\"]\nca = \"a\"\ncert = \"c\"\nkey = \"k\"\nserver_name = \"s\"\n",
            Path::new("/"),
        )
        .unwrap();
        assert!(views(&one)[0].default);
    }
}
