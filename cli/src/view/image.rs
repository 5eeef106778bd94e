//! How an image prints: `shoal image list` and `shoal image info`.

use std::fmt::Write as _;

use serde::Serialize;
use shoal_proto::api::Image;

use crate::output::{human_bytes, rfc3339_ms, Table};

/// One image, as `--format json|yaml` prints it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub(crate) struct ImageView {
    /// sha256 of the tarball, lowercase hex.
    pub(crate) fingerprint: String,
    pub(crate) aliases: Vec<String>,
    pub(crate) os: String,
    pub(crate) release: String,
    pub(crate) architecture: String,
    pub(crate) description: String,
    pub(crate) stop_signal: String,
    /// Tarball size in bytes.
    pub(crate) size: u64,
    /// RFC 3339, UTC.
    pub(crate) created_at: Option<String>,
    /// Hosts holding an unpacked copy.
    pub(crate) locations: Vec<String>,
}

impl From<Image> for ImageView {
    fn from(i: Image) -> Self {
        ImageView {
            fingerprint: i.fingerprint,
            aliases: i.aliases,
            os: i.os,
            release: i.release,
            architecture: i.architecture,
            description: i.description,
            stop_signal: i.stop_signal,
            size: i.size,
            created_at: rfc3339_ms(i.created_at_ms),
            locations: i.locations,
        }
    }
}

/// Rows for `shoal image list`; fingerprints cut to 12 digits, as `lxc`.
pub(crate) fn table(items: &[ImageView]) -> Table {
    Table {
        headers: vec![
            "ALIAS",
            "FINGERPRINT",
            "DESCRIPTION",
            "OS",
            "RELEASE",
            "ARCHITECTURE",
            "SIZE",
            "CREATED",
        ],
        rows: items
            .iter()
            .map(|i| {
                vec![
                    i.aliases.join(","),
                    i.fingerprint.chars().take(12).collect(),
                    i.description.clone(),
                    i.os.clone(),
                    i.release.clone(),
                    i.architecture.clone(),
                    human_bytes(i.size),
                    i.created_at.clone().unwrap_or_default(),
                ]
            })
            .collect(),
    }
}

/// The text of `shoal image info`.
pub(crate) fn text(i: &ImageView) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "Fingerprint: {}", i.fingerprint);
    let _ = writeln!(s, "Size: {}", human_bytes(i.size));
    let _ = writeln!(s, "Architecture: {}", i.architecture);
    let _ = writeln!(s, "Created: {}", i.created_at.as_deref().unwrap_or("-"));
    let _ = writeln!(s, "Properties:");
    for (k, v) in [
        ("os", &i.os),
        ("release", &i.release),
        ("description", &i.description),
        ("stop_signal", &i.stop_signal),
    ] {
        if !v.is_empty() {
            let _ = writeln!(s, "  {k}: {v}");
        }
    }
    let _ = writeln!(s, "Aliases:");
    for a in &i.aliases {
        let _ = writeln!(s, "  - {a}");
    }
    let _ = writeln!(s, "Locations:");
    for l in &i.locations {
        let _ = writeln!(s, "  - {l}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::{render_list, Format};

    fn sample() -> Image {
        Image {
            fingerprint: "ab".repeat(32),
            aliases: vec!["busybox".into(), "bb".into()],
            os: "busybox".into(),
            release: "1.36".into(),
            architecture: "x86_64".into(),
            description: "BusyBox, tiny".into(),
            stop_signal: "SIGUSR2".into(),
            size: 1 << 20,
            created_at_ms: 1_000,
            locations: vec!["node-1".into()],
        }
    }

    #[test]
    fn json_and_csv() {
        let v = vec![ImageView::from(sample())];
        let j = serde_json::to_value(&v).unwrap();
        assert_eq!(j[0]["fingerprint"], "ab".repeat(32));
        assert_eq!(j[0]["aliases"][1], "bb");
        assert_eq!(j[0]["size"], 1 << 20);
        assert_eq!(j[0]["created_at"], "1970-01-01T00:00:01Z");
        let csv = render_list(Format::Csv, &v, table).unwrap();
        assert_eq!(
            csv,
            "\"busybox,bb\",abababababab,\"BusyBox, tiny\",busybox,1.36,x86_64,1.00MiB,1970-01-01T00:00:01Z\n"
        );
    }

    #[test]
    fn text_lists_aliases() {
        let t = text(&ImageView::from(sample()));
        assert!(t.contains("Aliases:\n  - busybox\n  - bb\n"), "{t}");
        assert!(t.contains("  stop_signal: SIGUSR2\n"), "{t}");
    }
}
