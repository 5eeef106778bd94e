//! Instance names, validated once at the edge (LXD's rules).

use serde::{Deserialize, Serialize};
use std::fmt;

use super::error::ModelError;

/// A valid instance name: 1 to 63 ASCII letters, digits and hyphens, starting with a letter
/// and not ending with a hyphen (a DNS label, as LXD requires).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct InstanceName(String);

impl InstanceName {
    /// Validates `name`.
    pub fn new(name: &str) -> Result<Self, ModelError> {
        let bad = |why: &str| ModelError::InvalidName {
            name: name.to_string(),
            reason: why.to_string(),
        };
        if name.is_empty() {
            return Err(bad("a name is required"));
        }
        if name.len() > 63 {
            return Err(bad("it is longer than 63 characters"));
        }
        let first = name.as_bytes()[0];
        if !first.is_ascii_alphabetic() {
            return Err(bad("it must start with a letter"));
        }
        if name.ends_with('-') {
            return Err(bad("it must not end with a hyphen"));
        }
        if let Some(c) = name
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-'))
        {
            return Err(bad(&format!(
                "'{c}' is not allowed: use letters, digits and hyphens"
            )));
        }
        Ok(Self(name.to_string()))
    }

    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for InstanceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for InstanceName {
    type Error = ModelError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::new(&s)
    }
}

impl From<InstanceName> for String {
    fn from(n: InstanceName) -> String {
        n.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_dns_labels() {
        for n in ["c1", "web-01", "a", &"x".repeat(63)] {
            assert!(InstanceName::new(n).is_ok(), "{n}");
        }
    }

    #[test]
    fn refuses_bad_names_with_reason() {
        for (n, why) in [
            ("", "required"),
            ("1abc", "start with a letter"),
            ("-abc", "start with a letter"),
            ("abc-", "end with a hyphen"),
            ("a_b", "'_' is not allowed"),
            ("a.b", "'.' is not allowed"),
        ] {
            let e = InstanceName::new(n).unwrap_err().to_string();
            assert!(e.contains(why), "{n}: {e}");
        }
        assert!(InstanceName::new(&"x".repeat(64))
            .unwrap_err()
            .to_string()
            .contains("63"));
    }
}
