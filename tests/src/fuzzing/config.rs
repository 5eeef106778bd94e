//! Configuration text from users and images: instance config keys and values,
//! `metadata.yaml`, join tokens, `shoald` flags and signal names.

use std::collections::BTreeMap;

use shoal_node::cluster::token::JoinToken;
use shoal_node::image::{parse_signal, ImageMetadata};
use shoal_raft::InstanceConfig;

/// Target `config`: the first byte picks the parser, the rest is its text.
pub fn config(data: &[u8]) {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    match which % 5 {
        0 => instance_config(&text),
        1 => image_metadata(&text),
        2 => join_token(&text),
        3 => daemon_args(&text),
        _ => {
            let _ = parse_signal(&text);
        }
    }
}

/// `key=value` lines, as `shoal launch -c` and `shoal config set` send them.
fn instance_config(text: &str) {
    let map: BTreeMap<String, String> = text
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    for v in map.values() {
        let _ = shoal_raft::model::parse_bytes(v);
    }
    match InstanceConfig::parse(&map) {
        Ok(c) => {
            if let Some(m) = c.memory_bytes {
                assert!(m >= 4 << 20, "limits.memory below 4MiB accepted: {map:?}");
            }
            if let Some(m) = c.cpu_millicores {
                assert!((10..=4_096_000).contains(&m), "limits.cpu {m}: {map:?}");
            }
            if let Some(p) = c.processes {
                assert!(p >= 1, "limits.processes 0 accepted: {map:?}");
            }
            assert!(["auto", "stop", "migrate", "stay"].contains(&c.evacuate.as_str()));
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
}

fn image_metadata(text: &str) {
    match ImageMetadata::from_yaml(text) {
        Ok(m) => {
            assert!(!m.architecture.trim().is_empty());
            m.stop_signal_number()
                .expect("an accepted stop_signal has a number");
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
}

fn join_token(text: &str) {
    if let Ok(t) = JoinToken::decode(text) {
        assert_eq!(
            JoinToken::decode(&t.encode()).expect("a token decodes from its own encoding"),
            t
        );
    }
}

/// Flags as `shoald` receives them (whitespace-separated).
fn daemon_args(text: &str) {
    use clap::Parser;
    let argv = std::iter::once("shoald").chain(text.split_whitespace());
    let _ = shoal_node::daemon::DaemonArgs::try_parse_from(argv);
}
