//! What a placement asks for and what it answers, and the words users write for them
//! (`--target HOST`, `--target @GROUP`, `spread`, `binpack`, `compact`).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use super::load::Demand;
use crate::model::{GroupPolicy, Strategy};

/// Where an instance may go.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Target {
    /// Any host (no `--target`).
    #[default]
    Any,
    /// This host (`--target HOST`).
    Host(String),
    /// A member of this cluster group (`--target @GROUP`).
    Group(String),
}

impl Target {
    /// Reads a `--target` value: empty is any host, `@NAME` a cluster group, else a host.
    pub fn parse(s: &str) -> Self {
        match s.trim() {
            "" => Target::Any,
            s => match s.strip_prefix('@') {
                Some(group) => Target::Group(group.to_string()),
                None => Target::Host(s.to_string()),
            },
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Any => f.write_str("any host"),
            Target::Host(h) => f.write_str(h),
            Target::Group(g) => write!(f, "@{g}"),
        }
    }
}

/// A request to place one instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlacementRequest {
    /// The instance's name (for messages).
    pub instance: String,
    /// Its configuration: limits, `placement.group`, `placement.labels`.
    pub config: BTreeMap<String, String>,
    /// The image's architecture; empty accepts any host.
    pub architecture: String,
    pub target: Target,
}

impl PlacementRequest {
    pub fn new(
        instance: impl Into<String>,
        config: BTreeMap<String, String>,
        architecture: impl Into<String>,
        target: Target,
    ) -> Self {
        Self {
            instance: instance.into(),
            config,
            architecture: architecture.into(),
            target,
        }
    }
}

/// Where the scheduler put an instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// The chosen host: the `location` of `Command::CreateInstance`.
    pub host: String,
    /// How many hosts could take it.
    pub candidates: usize,
    /// What it reserves there.
    pub demand: Demand,
    /// Its placement group.
    pub group: Option<String>,
}

/// A word that names no strategy or policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} '{value}' (expected {expected})")]
pub struct UnknownWord {
    what: &'static str,
    value: String,
    expected: &'static str,
}

impl FromStr for Strategy {
    type Err = UnknownWord;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "spread" => Ok(Strategy::Spread),
            "binpack" | "bin-pack" => Ok(Strategy::BinPack),
            _ => Err(UnknownWord {
                what: "scheduler strategy",
                value: s.to_string(),
                expected: "spread or binpack",
            }),
        }
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Strategy::Spread => "spread",
            Strategy::BinPack => "binpack",
        })
    }
}

impl FromStr for GroupPolicy {
    type Err = UnknownWord;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "spread" => Ok(GroupPolicy::Spread),
            "compact" => Ok(GroupPolicy::Compact),
            _ => Err(UnknownWord {
                what: "placement policy",
                value: s.to_string(),
                expected: "spread or compact",
            }),
        }
    }
}

impl fmt::Display for GroupPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            GroupPolicy::Spread => "spread",
            GroupPolicy::Compact => "compact",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_and_words() {
        assert_eq!(Target::parse(""), Target::Any);
        assert_eq!(Target::parse("c"), Target::Host("c".into()));
        assert_eq!(Target::parse("@gpu"), Target::Group("gpu".into()));
        assert_eq!(Target::parse("@gpu").to_string(), "@gpu");
        assert_eq!("binpack".parse::<Strategy>(), Ok(Strategy::BinPack));
        assert_eq!(Strategy::Spread.to_string(), "spread");
        assert_eq!("compact".parse::<GroupPolicy>(), Ok(GroupPolicy::Compact));
        let e = "tight".parse::<GroupPolicy>().unwrap_err().to_string();
        assert_eq!(
            e,
            "unknown placement policy 'tight' (expected spread or compact)"
        );
    }
}
