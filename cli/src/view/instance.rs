//! How an instance prints: `shoal list` and `shoal info`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;
use shoal_proto::api::{Instance, InstanceState, ResourceUsage};

use crate::output::{human_bytes, human_cpu, rfc3339_ms, Table};

/// One instance, as `--format json|yaml` prints it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub(crate) struct InstanceView {
    pub(crate) name: String,
    /// Observed state: Running, Stopped, Frozen, Pending, Error or Unknown.
    pub(crate) status: String,
    /// Desired state: Running, Stopped, Frozen or Deleted.
    pub(crate) desired: String,
    pub(crate) location: String,
    /// The alias or fingerprint named at creation.
    pub(crate) image: String,
    pub(crate) image_fingerprint: String,
    pub(crate) config: BTreeMap<String, String>,
    /// RFC 3339, UTC.
    pub(crate) created_at: Option<String>,
    /// Detail from the host, set on errors.
    pub(crate) message: String,
    /// Host pid of the container's init, 0 when not running.
    pub(crate) init_pid: i64,
    pub(crate) usage: Option<UsageView>,
    /// When the host last reported, RFC 3339, UTC.
    pub(crate) updated_at: Option<String>,
    /// The move in progress, empty when none.
    pub(crate) moving: String,
}

/// Resource use from the instance's cgroups.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub(crate) struct UsageView {
    pub(crate) memory_bytes: u64,
    pub(crate) cpu_nanos: u64,
    pub(crate) processes: u64,
}

impl From<ResourceUsage> for UsageView {
    fn from(u: ResourceUsage) -> Self {
        UsageView {
            memory_bytes: u.memory_bytes,
            cpu_nanos: u.cpu_nanos,
            processes: u.processes,
        }
    }
}

/// The name a state prints as; unknown numbers print as "Unknown".
pub(crate) fn state_name(state: i32) -> &'static str {
    match InstanceState::try_from(state) {
        Ok(InstanceState::Stopped) => "Stopped",
        Ok(InstanceState::Running) => "Running",
        Ok(InstanceState::Frozen) => "Frozen",
        Ok(InstanceState::Pending) => "Pending",
        Ok(InstanceState::Error) => "Error",
        Ok(InstanceState::Deleted) => "Deleted",
        Ok(InstanceState::Unknown) | Ok(InstanceState::Unspecified) | Err(_) => "Unknown",
    }
}

impl From<Instance> for InstanceView {
    fn from(i: Instance) -> Self {
        let status = i.status.unwrap_or_default();
        InstanceView {
            name: i.name,
            status: state_name(status.state).to_string(),
            desired: state_name(i.desired).to_string(),
            location: i.location,
            image: i.image,
            image_fingerprint: i.image_fingerprint,
            config: i.config.into_iter().collect(),
            created_at: rfc3339_ms(i.created_at_ms),
            message: status.message,
            init_pid: status.init_pid,
            usage: status.usage.map(UsageView::from),
            updated_at: rfc3339_ms(status.updated_at_ms),
            moving: i.moving,
        }
    }
}

/// Rows for `shoal list`.
pub(crate) fn table(items: &[InstanceView]) -> Table {
    Table {
        headers: vec!["NAME", "STATUS", "LOCATION", "IMAGE", "MEMORY", "PROCESSES"],
        rows: items
            .iter()
            .map(|i| {
                let usage = i.usage.filter(|_| i.init_pid > 0);
                vec![
                    i.name.clone(),
                    if i.moving.is_empty() {
                        i.status.clone()
                    } else {
                        format!("{} (moving)", i.status)
                    },
                    i.location.clone(),
                    i.image.clone(),
                    usage
                        .map(|u| human_bytes(u.memory_bytes))
                        .unwrap_or_default(),
                    usage.map(|u| u.processes.to_string()).unwrap_or_default(),
                ]
            })
            .collect(),
    }
}

/// The text of `shoal info`.
pub(crate) fn text(i: &InstanceView) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "Name: {}", i.name);
    let _ = writeln!(s, "Status: {}", i.status);
    let _ = writeln!(s, "Desired: {}", i.desired);
    let _ = writeln!(s, "Location: {}", dash(&i.location));
    let fp: String = i.image_fingerprint.chars().take(12).collect();
    if fp.is_empty() || i.image.starts_with(&fp) {
        let _ = writeln!(s, "Image: {}", dash(&i.image));
    } else {
        let _ = writeln!(s, "Image: {} ({fp})", i.image);
    }
    let _ = writeln!(s, "Created: {}", i.created_at.as_deref().unwrap_or("-"));
    if i.init_pid > 0 {
        let _ = writeln!(s, "PID: {}", i.init_pid);
    }
    if !i.message.is_empty() {
        let _ = writeln!(s, "Message: {}", i.message);
    }
    if !i.moving.is_empty() {
        let _ = writeln!(s, "Move: {}", i.moving);
    }
    if !i.config.is_empty() {
        let _ = writeln!(s, "Config:");
        for (k, v) in &i.config {
            let _ = writeln!(s, "  {k}: {v}");
        }
    }
    if let Some(u) = i.usage.filter(|_| i.init_pid > 0) {
        let _ = writeln!(s, "Resources:");
        let _ = writeln!(s, "  Processes: {}", u.processes);
        let _ = writeln!(s, "  CPU usage: {}", human_cpu(u.cpu_nanos));
        let _ = writeln!(s, "  Memory usage: {}", human_bytes(u.memory_bytes));
    }
    s
}

fn dash(s: &str) -> &str {
    if s.is_empty() {
        "-"
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::{render_list, Format};
    use shoal_proto::api::InstanceStatus;

    fn sample() -> Instance {
        Instance {
            name: "c1".into(),
            image_fingerprint: "0123456789abcdef".repeat(4),
            image: "alpine".into(),
            config: [("limits.memory".to_string(), "64MiB".to_string())].into(),
            desired: InstanceState::Running as i32,
            status: Some(InstanceStatus {
                state: InstanceState::Running as i32,
                observed_revision: 3,
                message: String::new(),
                init_pid: 4242,
                usage: Some(ResourceUsage {
                    memory_bytes: 12 << 20,
                    cpu_nanos: 1_500_000_000,
                    processes: 3,
                }),
                updated_at_ms: 1_000,
            }),
            location: "node-1".into(),
            created_at_ms: 1_709_210_096_789,
            version: 7,
            desired_revision: 3,
            moving: String::new(),
        }
    }

    #[test]
    fn maps_states() {
        assert_eq!(state_name(InstanceState::Frozen as i32), "Frozen");
        assert_eq!(state_name(0), "Unknown");
        assert_eq!(state_name(99), "Unknown");
        let mut i = sample();
        i.status = None;
        assert_eq!(InstanceView::from(i).status, "Unknown");
    }

    #[test]
    fn json_has_the_stable_fields() {
        let v = InstanceView::from(sample());
        let j = serde_json::to_value(&v).unwrap();
        assert_eq!(j["name"], "c1");
        assert_eq!(j["status"], "Running");
        assert_eq!(j["desired"], "Running");
        assert_eq!(j["location"], "node-1");
        assert_eq!(j["image"], "alpine");
        assert_eq!(j["config"]["limits.memory"], "64MiB");
        assert_eq!(j["created_at"], "2024-02-29T12:34:56Z");
        assert_eq!(j["message"], "");
        assert_eq!(j["init_pid"], 4242);
        assert_eq!(j["usage"]["processes"], 3);
        assert_eq!(j["usage"]["memory_bytes"], 12 << 20);
    }

    #[test]
    fn table_and_text() {
        let v = vec![InstanceView::from(sample())];
        let out = render_list(Format::Csv, &v, table).unwrap();
        assert_eq!(out, "c1,Running,node-1,alpine,12.00MiB,3\n");
        let t = text(&v[0]);
        assert!(t.contains("Image: alpine (0123456789ab)\n"), "{t}");
        assert!(t.contains("Config:\n  limits.memory: 64MiB\n"), "{t}");
        assert!(t.contains("  CPU usage: 1.500s\n"), "{t}");
        assert!(t.contains("PID: 4242\n"), "{t}");
        assert!(!t.contains("Move:"), "{t}");
    }

    #[test]
    fn a_move_in_progress_shows() {
        let mut i = sample();
        i.moving = "moving from a to d (copied, cold move coordinated by b)".into();
        let v = vec![InstanceView::from(i)];
        let out = render_list(Format::Csv, &v, table).unwrap();
        assert_eq!(out, "c1,Running (moving),node-1,alpine,12.00MiB,3\n");
        assert!(text(&v[0]).contains("Move: moving from a to d (copied"));
        let j = serde_json::to_value(&v[0]).unwrap();
        assert_eq!(
            j["moving"],
            "moving from a to d (copied, cold move coordinated by b)"
        );
    }
}
