//! Instance configuration keys: which exist, what their values mean, and their validation.
//!
//! The map of strings is what users write (`-c limits.memory=64MiB`) and what the state keeps;
//! `InstanceConfig` is the typed view that the host runtime consumes.

use std::collections::BTreeMap;

use super::error::ConfigError;

/// Keys accepted as they are (prefix keys end with a dot).
pub const KNOWN_KEYS: &[&str] = &[
    "limits.memory",
    "limits.cpu",
    "limits.processes",
    "security.privileged",
    "boot.autostart",
    "cluster.evacuate",
    "placement.group",
    "placement.labels",
    "environment.",
    "user.",
];

/// Typed view of an instance's configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InstanceConfig {
    /// `limits.memory`, bytes.
    pub memory_bytes: Option<u64>,
    /// `limits.cpu`, thousandths of a core (a CFS quota).
    pub cpu_millicores: Option<u64>,
    /// `limits.processes`.
    pub processes: Option<u64>,
    /// `security.privileged`.
    pub privileged: bool,
    /// `boot.autostart`: start with its host even if it was not running (default: restore the
    /// last desired state).
    pub autostart: Option<bool>,
    /// `cluster.evacuate`: auto, stop, migrate or stay.
    pub evacuate: String,
    /// `environment.NAME=value` pairs, for init and exec.
    pub environment: Vec<(String, String)>,
    /// `placement.group`: the placement group the instance belongs to.
    pub placement_group: Option<String>,
    /// `placement.labels=k=v,k2=v2`: labels a host must carry, with these values, to run it.
    pub placement_labels: Vec<(String, String)>,
}

fn invalid(key: &str, value: &str, expected: &str) -> ConfigError {
    ConfigError::InvalidValue {
        key: key.to_string(),
        value: value.to_string(),
        expected: expected.to_string(),
    }
}

/// Parses a size such as `64MiB`, `1GB`, `512k` or `1048576` into bytes.
pub fn parse_bytes(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    if num.is_empty() {
        return None;
    }
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "k" | "K" | "KB" | "kB" => 1000,
        "M" | "MB" => 1000u64.pow(2),
        "G" | "GB" => 1000u64.pow(3),
        "T" | "TB" => 1000u64.pow(4),
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "TiB" => 1 << 40,
        _ => return None,
    };
    if num.contains('.') {
        let v: f64 = num.parse().ok()?;
        let b = v * mult as f64;
        (b.is_finite() && b >= 0.0 && b < u64::MAX as f64).then_some(b as u64)
    } else {
        num.parse::<u64>().ok()?.checked_mul(mult)
    }
}

/// Why `name` cannot name a placement group, if it cannot.
pub(crate) fn group_name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() || name.len() > 63 {
        return Some("a name has 1 to 63 characters");
    }
    if !name.as_bytes()[0].is_ascii_alphabetic() {
        return Some("a name starts with a letter");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Some("a name uses letters, digits, '-', '_' and '.'");
    }
    None
}

/// Parses `placement.labels`: `k=v` pairs separated by commas, each key once.
fn parse_labels(key: &str, v: &str) -> Result<Vec<(String, String)>, ConfigError> {
    let expected = "expected labels as key=value pairs separated by commas, each key once";
    let mut out: Vec<(String, String)> = Vec::new();
    for pair in v.split(',') {
        let (k, val) = pair
            .split_once('=')
            .ok_or_else(|| invalid(key, v, expected))?;
        let (k, val) = (k.trim(), val.trim());
        let bad = |s: &str| s.chars().any(|c| c.is_whitespace() || c == '=');
        if k.is_empty() || bad(k) || bad(val) || out.iter().any(|(o, _)| o == k) {
            return Err(invalid(key, v, expected));
        }
        out.push((k.to_string(), val.to_string()));
    }
    Ok(out)
}

fn parse_bool(key: &str, v: &str) -> Result<bool, ConfigError> {
    match v {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(invalid(key, v, "expected true or false")),
    }
}

fn parse_millicores(key: &str, v: &str) -> Result<u64, ConfigError> {
    let expected = "expected a number of CPU cores such as 1, 2 or 0.5";
    let f: f64 = v.trim().parse().map_err(|_| invalid(key, v, expected))?;
    if !f.is_finite() || f <= 0.0 || f > 4096.0 {
        return Err(invalid(key, v, expected));
    }
    let m = (f * 1000.0).round() as u64;
    if m < 10 {
        return Err(invalid(key, v, "at least 0.01 of a core"));
    }
    Ok(m)
}

impl InstanceConfig {
    /// Validates every key and value of `map` and returns the typed view.
    pub fn parse(map: &BTreeMap<String, String>) -> Result<Self, ConfigError> {
        let mut c = InstanceConfig {
            evacuate: "auto".to_string(),
            ..Default::default()
        };
        for (k, v) in map {
            match k.as_str() {
                "limits.memory" => {
                    let b = parse_bytes(v).ok_or_else(|| {
                        invalid(k, v, "expected a size such as 64MiB, 1GiB or 500MB")
                    })?;
                    if b < (4 << 20) {
                        return Err(invalid(k, v, "at least 4MiB"));
                    }
                    c.memory_bytes = Some(b);
                }
                "limits.cpu" => c.cpu_millicores = Some(parse_millicores(k, v)?),
                "limits.processes" => {
                    let n: u64 =
                        v.parse().ok().filter(|n| *n >= 1).ok_or_else(|| {
                            invalid(k, v, "expected a whole number of at least 1")
                        })?;
                    c.processes = Some(n);
                }
                "security.privileged" => c.privileged = parse_bool(k, v)?,
                "boot.autostart" => c.autostart = Some(parse_bool(k, v)?),
                "cluster.evacuate" => match v.as_str() {
                    "auto" | "stop" | "migrate" | "stay" => c.evacuate = v.clone(),
                    _ => return Err(invalid(k, v, "expected auto, stop, migrate or stay")),
                },
                "placement.group" => {
                    if let Some(why) = group_name_problem(v) {
                        return Err(invalid(k, v, why));
                    }
                    c.placement_group = Some(v.clone());
                }
                "placement.labels" => c.placement_labels = parse_labels(k, v)?,
                _ if k.starts_with("environment.") => {
                    let name = &k["environment.".len()..];
                    let ok = !name.is_empty()
                        && !name.as_bytes()[0].is_ascii_digit()
                        && name
                            .chars()
                            .all(|ch| ch.is_ascii_alphanumeric() || ch == '_');
                    if !ok {
                        return Err(invalid(
                            k,
                            v,
                            "environment variable names use letters, digits and '_'",
                        ));
                    }
                    c.environment.push((name.to_string(), v.clone()));
                }
                _ if k.starts_with("user.") && k.len() > "user.".len() => {}
                _ => {
                    return Err(ConfigError::UnknownKey {
                        key: k.clone(),
                        known: KNOWN_KEYS
                            .iter()
                            .map(|k| {
                                if k.ends_with('.') {
                                    format!("{k}*")
                                } else {
                                    k.to_string()
                                }
                            })
                            .collect::<Vec<_>>()
                            .join(", "),
                    })
                }
            }
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn parses_sizes() {
        assert_eq!(parse_bytes("64MiB"), Some(64 << 20));
        assert_eq!(parse_bytes("1GB"), Some(1_000_000_000));
        assert_eq!(parse_bytes("1048576"), Some(1 << 20));
        assert_eq!(parse_bytes("1.5GiB"), Some(3 << 29));
        assert_eq!(parse_bytes("lots"), None);
        assert_eq!(parse_bytes("12XB"), None);
        assert_eq!(parse_bytes(""), None);
    }

    #[test]
    fn typed_view_of_valid_config() {
        let c = InstanceConfig::parse(&map(&[
            ("limits.memory", "64MiB"),
            ("limits.cpu", "0.5"),
            ("limits.processes", "100"),
            ("security.privileged", "false"),
            ("environment.FOO", "bar"),
            ("user.note", "anything"),
        ]))
        .unwrap();
        assert_eq!(c.memory_bytes, Some(64 << 20));
        assert_eq!(c.cpu_millicores, Some(500));
        assert_eq!(c.processes, Some(100));
        assert!(!c.privileged);
        assert_eq!(c.evacuate, "auto");
        assert_eq!(c.environment, vec![("FOO".into(), "bar".into())]);
    }

    #[test]
    fn bad_values_name_key_and_fix() {
        let e = InstanceConfig::parse(&map(&[("limits.memory", "lots")])).unwrap_err();
        let s = e.to_string();
        assert!(
            s.contains("limits.memory") && s.contains("lots") && s.contains("64MiB"),
            "{s}"
        );
        for (k, v) in [
            ("limits.cpu", "-1"),
            ("limits.cpu", "many"),
            ("limits.processes", "0"),
            ("security.privileged", "maybe"),
            ("cluster.evacuate", "sometimes"),
            ("environment.1X", "y"),
            ("limits.memory", "1MiB"),
            ("placement.group", ""),
            ("placement.group", "9web"),
            ("placement.group", "a b"),
            ("placement.labels", "zone"),
            ("placement.labels", "=eu"),
            ("placement.labels", "zone=eu,zone=us"),
            ("placement.labels", "zone=eu,"),
        ] {
            assert!(InstanceConfig::parse(&map(&[(k, v)])).is_err(), "{k}={v}");
        }
    }

    #[test]
    fn placement_keys() {
        let c = InstanceConfig::parse(&map(&[
            ("placement.group", "web"),
            ("placement.labels", "zone=eu, disk=ssd"),
        ]))
        .unwrap();
        assert_eq!(c.placement_group.as_deref(), Some("web"));
        assert_eq!(
            c.placement_labels,
            vec![("zone".into(), "eu".into()), ("disk".into(), "ssd".into())]
        );
        let e = InstanceConfig::parse(&map(&[("placement.labels", "zone")]))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("placement.labels") && e.contains("key=value"),
            "{e}"
        );
    }

    #[test]
    fn unknown_key_lists_known_ones() {
        let e = InstanceConfig::parse(&map(&[("limits.memroy", "1GiB")])).unwrap_err();
        let s = e.to_string();
        assert!(
            s.contains("limits.memroy") && s.contains("limits.memory"),
            "{s}"
        );
    }
}
