//! `metadata.yaml` of an LXD-style unified image: what the image is and how to stop it.
//!
//! Parsed by hand from a YAML value rather than with a derived `Deserialize`, so that a bad
//! file is refused with the name of the field at fault (`properties.release: must be a
//! string`). Unknown keys (`templates`, `expiry_date`, extra properties) are ignored.
//!
//! Required: `architecture`. Optional: `creation_date` (default 0), `properties.os`,
//! `properties.release`, `properties.description` (default empty; numbers and booleans are
//! taken as text, so `release: 12` works) and `stop_signal` (default [`DEFAULT_STOP_SIGNAL`]).

use serde::{Deserialize, Serialize};
use serde_yaml::{Mapping, Value};

use super::error::ImageError;
use super::signal::parse_signal;

/// The stop signal of an image that names none: SIGPWR, LXC's default halt signal. busybox
/// init halts on it and sysvinit treats it as a power failure; systemd images should say
/// `stop_signal: SIGRTMIN+3`.
pub const DEFAULT_STOP_SIGNAL: &str = "SIGPWR";

/// What `metadata.yaml` says about an image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageMetadata {
    pub architecture: String,
    pub os: String,
    pub release: String,
    pub description: String,
    /// As written in the image (validated with [`parse_signal`]), e.g. `SIGUSR2`.
    pub stop_signal: String,
    /// Unix seconds.
    pub creation_date: i64,
}

impl ImageMetadata {
    /// Parse and validate the text of a `metadata.yaml`.
    pub fn from_yaml(text: &str) -> Result<Self, ImageError> {
        let doc: Value =
            serde_yaml::from_str(text).map_err(|source| ImageError::MetadataYaml { source })?;
        let top = match &doc {
            Value::Mapping(m) => m,
            _ => return Err(field("(document)", "must be a mapping")),
        };

        let architecture = match scalar(top, "architecture", "architecture")? {
            Some(a) if !a.trim().is_empty() => a,
            Some(_) => return Err(field("architecture", "must not be empty")),
            None => return Err(field("architecture", "missing")),
        };
        let creation_date = match top.get("creation_date") {
            None | Some(Value::Null) => 0,
            Some(Value::Number(n)) => n
                .as_i64()
                .ok_or_else(|| field("creation_date", "must be an integer (unix seconds)"))?,
            Some(_) => return Err(field("creation_date", "must be an integer (unix seconds)")),
        };
        let empty = Mapping::new();
        let properties = match top.get("properties") {
            None | Some(Value::Null) => &empty,
            Some(Value::Mapping(m)) => m,
            Some(_) => return Err(field("properties", "must be a mapping")),
        };
        let os = scalar(properties, "os", "properties.os")?.unwrap_or_default();
        let release = scalar(properties, "release", "properties.release")?.unwrap_or_default();
        let description =
            scalar(properties, "description", "properties.description")?.unwrap_or_default();
        let stop_signal = scalar(top, "stop_signal", "stop_signal")?
            .unwrap_or_else(|| DEFAULT_STOP_SIGNAL.to_string());
        if parse_signal(&stop_signal).is_err() {
            return Err(field(
                "stop_signal",
                &format!("unknown signal {stop_signal:?}"),
            ));
        }
        Ok(Self {
            architecture,
            os,
            release,
            description,
            stop_signal,
            creation_date,
        })
    }

    /// The stop signal as a number.
    pub fn stop_signal_number(&self) -> Result<i32, ImageError> {
        parse_signal(&self.stop_signal)
    }
}

fn field(name: &'static str, problem: &str) -> ImageError {
    ImageError::MetadataField {
        field: name,
        problem: problem.to_string(),
    }
}

/// A string-like field: strings as they are, numbers and booleans as text.
fn scalar(map: &Mapping, key: &str, name: &'static str) -> Result<Option<String>, ImageError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(Value::Bool(b)) => Ok(Some(b.to_string())),
        Some(_) => Err(field(name, "must be a string")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_metadata_parses_lxd_style() {
        let m = ImageMetadata::from_yaml(
            "architecture: x86_64\ncreation_date: 1700000000\nproperties:\n  os: busybox\n  \
             release: \"1.35.0\"\n  description: \"busybox 1.35.0\"\nstop_signal: SIGUSR2\n\
             templates: {}\n",
        )
        .unwrap();
        assert_eq!(m.architecture, "x86_64");
        assert_eq!(m.creation_date, 1_700_000_000);
        assert_eq!(m.os, "busybox");
        assert_eq!(m.release, "1.35.0");
        assert_eq!(m.description, "busybox 1.35.0");
        assert_eq!(m.stop_signal_number().unwrap(), libc::SIGUSR2);
    }

    #[test]
    fn image_metadata_defaults() {
        let m = ImageMetadata::from_yaml("architecture: aarch64\nproperties:\n  release: 12\n")
            .unwrap();
        assert_eq!(m.release, "12");
        assert_eq!(m.os, "");
        assert_eq!(m.creation_date, 0);
        assert_eq!(m.stop_signal, DEFAULT_STOP_SIGNAL);
    }

    #[test]
    fn image_metadata_names_the_bad_field() {
        let cases = [
            ("properties: {}\n", "architecture"),
            ("architecture: \"\"\n", "architecture"),
            ("architecture: [x]\n", "architecture"),
            (
                "architecture: x86_64\ncreation_date: soon\n",
                "creation_date",
            ),
            ("architecture: x86_64\nproperties: [1]\n", "properties"),
            (
                "architecture: x86_64\nproperties:\n  os: {a: 1}\n",
                "properties.os",
            ),
            (
                "architecture: x86_64\nstop_signal: SIGNOPE\n",
                "stop_signal",
            ),
            ("- just a list\n", "(document)"),
        ];
        for (text, want) in cases {
            match ImageMetadata::from_yaml(text) {
                Err(ImageError::MetadataField { field, .. }) => assert_eq!(field, want, "{text}"),
                other => panic!("{text:?}: expected a field error, got {other:?}"),
            }
        }
        assert!(matches!(
            ImageMetadata::from_yaml("architecture: [unclosed\n"),
            Err(ImageError::MetadataYaml { .. })
        ));
    }
}
