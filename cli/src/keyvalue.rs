//! `KEY=VALUE` arguments (`-c limits.memory=64MiB`, `--env TERM=xterm`).

use std::collections::HashMap;

/// Parses one `KEY=VALUE` pair; the value may be empty and may contain `=`.
/// Used as a clap value parser, so the message is what the user sees.
pub(crate) fn parse_pair(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() && k.trim() == k => Ok((k.to_string(), v.to_string())),
        Some((k, _)) if k.trim().is_empty() => {
            Err(format!("{s:?} has an empty key: expected KEY=VALUE"))
        }
        Some((k, _)) => Err(format!(
            "key {k:?} has surrounding spaces: expected KEY=VALUE"
        )),
        None => Err(format!("{s:?} is not a pair: expected KEY=VALUE")),
    }
}

/// Collects pairs into a map; a key given twice keeps its last value.
pub(crate) fn to_map(pairs: Vec<(String, String)>) -> HashMap<String, String> {
    pairs.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_pairs() {
        assert_eq!(
            parse_pair("limits.memory=64MiB").unwrap(),
            ("limits.memory".into(), "64MiB".into())
        );
        assert_eq!(
            parse_pair("user.x=").unwrap(),
            ("user.x".into(), String::new())
        );
        assert_eq!(
            parse_pair("environment.A=b=c").unwrap(),
            ("environment.A".into(), "b=c".into())
        );
    }

    #[test]
    fn bad_pairs_say_why() {
        assert_eq!(
            parse_pair("foo").unwrap_err(),
            "\"foo\" is not a pair: expected KEY=VALUE"
        );
        assert!(parse_pair("=x").unwrap_err().contains("empty key"));
        assert!(parse_pair(" a=x")
            .unwrap_err()
            .contains("surrounding spaces"));
    }

    #[test]
    fn last_value_wins() {
        let m = to_map(vec![("a".into(), "1".into()), ("a".into(), "2".into())]);
        assert_eq!(m["a"], "2");
    }
}
