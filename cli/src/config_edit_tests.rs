//! Tests of configuration edits: other remotes survive, addresses are learned.

use super::*;
use std::os::unix::fs::PermissionsExt;

const TWO_REMOTES: &str = r#"
default_remote = "local"

[remotes.local]
addresses = ["198.18.0.2:8443", "198.18.0.3:8443"]
ca = "local/ca.crt"
cert = "local/client.crt"
key = "local/client.key"
server_name = "shoal"

[remotes.prod]
addresses = ["10.0.0.1:8443"]
ca = "/p/ca.crt"
cert = "/p/c.crt"
key = "/p/c.key"
server_name = "shoal.example"
"#;

fn entry(dir: &Path) -> RemoteEntry {
    RemoteEntry {
        addresses: vec!["127.0.0.1:9443".into(), "127.0.0.2:9443".into()],
        ca: dir.join("lab/ca.crt"),
        cert: dir.join("lab/client.crt"),
        key: dir.join("lab/client.key"),
        server_name: "shoal".into(),
    }
}

#[test]
fn adding_a_remote_keeps_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, TWO_REMOTES).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let mut doc = Document::load(&path).unwrap();
    doc.set_remote("lab", &entry(dir.path())).unwrap();
    doc.save().unwrap();

    let c = config::load(&path).unwrap();
    assert_eq!(c.default_remote.as_deref(), Some("local"));
    assert_eq!(
        c.remotes.keys().collect::<Vec<_>>(),
        ["lab", "local", "prod"]
    );
    // Relative paths stay relative in the file and resolve as before.
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("ca = \"local/ca.crt\""), "{text}");
    assert_eq!(c.remotes["local"].ca, dir.path().join("local/ca.crt"));
    assert_eq!(c.remotes["prod"].server_name, "shoal.example");
    assert_eq!(c.remotes["lab"].addresses[0], "127.0.0.1:9443");
    assert_eq!(c.remotes["lab"].key, dir.path().join("lab/client.key"));
    // The file keeps its mode; no temporary file is left behind.
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);

    // Replacing a remote of the same name, removing one, switching.
    let mut doc = Document::load(&path).unwrap();
    let mut e = entry(dir.path());
    e.addresses = vec!["127.0.0.9:1".into()];
    doc.set_remote("prod", &e).unwrap();
    assert!(doc.remove_remote("local").unwrap());
    assert!(!doc.remove_remote("nope").unwrap());
    doc.set_default(Some("lab"));
    doc.save().unwrap();
    let c = config::load(&path).unwrap();
    assert_eq!(c.remotes["prod"].addresses, ["127.0.0.9:1"]);
    assert_eq!(c.default_remote.as_deref(), Some("lab"));
    assert_eq!(c.remotes.len(), 2);
}

#[test]
fn first_remote_creates_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub/config.toml");
    let mut doc = Document::load(&path).unwrap();
    assert_eq!(doc.default_remote(), None);
    assert!(doc.remote_names().is_empty());
    doc.set_remote("lab", &entry(dir.path())).unwrap();
    doc.set_default(Some("lab"));
    doc.save().unwrap();
    let c = config::load(&path).unwrap();
    assert_eq!(c.select(None).unwrap().name, "lab");
}

#[test]
fn an_edit_that_breaks_the_file_is_not_written() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, TWO_REMOTES).unwrap();
    let mut doc = Document::load(&path).unwrap();
    assert!(doc.remove_remote("local").unwrap());
    // default_remote still names "local": invalid, so nothing is written.
    let err = format!("{:#}", doc.save().unwrap_err());
    assert!(err.contains("refusing to write"), "{err}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), TWO_REMOTES);
    std::fs::write(&path, "default_remote = [").unwrap();
    assert!(Document::load(&path).is_err());
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|a| a.to_string()).collect()
}

#[test]
fn merge_puts_the_answering_member_first_and_adds_new_ones() {
    let current = s(&["a:1", "b:1"]);
    assert_eq!(
        merge_addresses(&current, "b:1", &s(&["a:1", "b:1", "c:1", "d:1"])),
        Some(s(&["b:1", "a:1", "c:1", "d:1"]))
    );
    // Same set: nothing to write, even if the order differs.
    assert_eq!(merge_addresses(&current, "b:1", &s(&["b:1", "a:1"])), None);
    assert_eq!(merge_addresses(&current, "a:1", &s(&[])), None);
    // Configured addresses that are not member addresses (a DNS name) are kept.
    assert_eq!(
        merge_addresses(
            &s(&["lb.example:8443"]),
            "lb.example:8443",
            &s(&["10.0.0.1:8443"])
        ),
        Some(s(&["lb.example:8443", "10.0.0.1:8443"]))
    );
    // Empty and unspecified addresses are not learned; duplicates collapse.
    assert_eq!(
        merge_addresses(
            &current,
            "a:1",
            &s(&["", "0.0.0.0:8443", "[::]:8443", "a:1", "c:1", "c:1"])
        ),
        Some(s(&["a:1", "b:1", "c:1"]))
    );
}

#[test]
fn learning_rewrites_only_when_the_set_changes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, TWO_REMOTES).unwrap();
    let members = s(&["198.18.0.2:8443", "198.18.0.3:8443"]);
    assert!(!learn_addresses(&path, "local", "198.18.0.3:8443", &members).unwrap());
    assert_eq!(std::fs::read_to_string(&path).unwrap(), TWO_REMOTES);

    let members = s(&["198.18.0.2:8443", "198.18.0.3:8443", "198.18.0.4:8443"]);
    assert!(learn_addresses(&path, "local", "198.18.0.3:8443", &members).unwrap());
    let c = config::load(&path).unwrap();
    assert_eq!(
        c.remotes["local"].addresses,
        ["198.18.0.3:8443", "198.18.0.2:8443", "198.18.0.4:8443"]
    );
    assert_eq!(c.remotes["prod"].addresses, ["10.0.0.1:8443"]);
    assert_eq!(c.remotes["local"].ca, dir.path().join("local/ca.crt"));
    // A remote that is not in the file is left alone.
    assert!(!learn_addresses(&path, "gone", "x:1", &members).unwrap());
}
