//! The replicated cluster state: members, images, aliases and instances.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

use super::names::InstanceName;

/// Everything the cluster agrees on. Node-local facts (pids, mounts) stay out of it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterState {
    /// Index of the last applied log entry (commands, and blank and membership entries).
    pub revision: u64,
    pub members: BTreeMap<String, Member>,
    pub images: BTreeMap<String, Image>,
    /// Alias to image fingerprint.
    pub aliases: BTreeMap<String, String>,
    pub instances: BTreeMap<InstanceName, Instance>,
    /// The cluster CA (certificate and key, PEM), set at bootstrap, so that whichever
    /// voter leads can issue certificates.
    #[serde(default)]
    pub ca: Option<CaRecord>,
    /// Outstanding join and enrolment tokens, by the name they were issued for.
    #[serde(default)]
    pub tokens: BTreeMap<String, Token>,
    /// Enrolled client identities, by name.
    #[serde(default)]
    pub identities: BTreeMap<String, Identity>,
    /// Scheduler options (`Command::SetSchedulerConfig`).
    #[serde(default)]
    pub scheduler: SchedulerConfig,
    /// Placement groups, by name (`placement.group=NAME` joins one).
    #[serde(default)]
    pub placement_groups: BTreeMap<String, PlacementGroup>,
    /// Per-host load derived from `instances`: not replicated, built on first use and kept
    /// up to date by `apply` (see `crate::scheduler`). Always compares equal.
    #[serde(skip)]
    pub load: crate::scheduler::LoadCache,
}

/// How the scheduler chooses among the hosts that fit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    /// The least loaded host (the default).
    #[default]
    Spread,
    /// The most loaded host that still fits.
    BinPack,
}

/// Cluster-wide scheduler options.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SchedulerConfig {
    pub strategy: Strategy,
    /// What an instance without `limits.cpu` counts as, thousandths of a core.
    pub default_cpu_millicores: u64,
    /// What an instance without `limits.memory` counts as, bytes.
    pub default_memory_bytes: u64,
    /// What an instance without `limits.processes` counts as.
    pub default_processes: u64,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            strategy: Strategy::Spread,
            default_cpu_millicores: 100,
            default_memory_bytes: 64 << 20,
            default_processes: 100,
        }
    }
}

/// How a placement group places its instances relative to each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GroupPolicy {
    /// On different hosts, and preferably different failure domains.
    Spread,
    /// On the same host as the group's other instances.
    Compact,
}

/// A placement group: instances with `placement.group=NAME` follow its policy, as a filter
/// when `strict`, as a preference otherwise.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlacementGroup {
    pub name: String,
    pub policy: GroupPolicy,
    pub strict: bool,
}

/// The cluster CA.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaRecord {
    pub cert_pem: String,
    pub key_pem: String,
}

/// What a token admits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TokenKind {
    /// A host joining as a member.
    Member,
    /// A client enrolling with this role (`admin`, `operator`, `viewer`).
    Client { role: String },
}

/// A single-use, expiring token. Only the hash of its secret is kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Token {
    pub name: String,
    pub kind: TokenKind,
    /// sha256 of the secret, hex.
    pub secret_hash: String,
    pub created_at_ms: i64,
    pub expires_at_ms: i64,
}

/// An enrolled client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub name: String,
    pub role: String,
    /// sha256 of its certificate (DER), hex.
    pub fingerprint: String,
    pub created_at_ms: i64,
    /// When its current certificate was revoked (`Command::RevokeIdentity`); `None` while
    /// it is trusted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at_ms: Option<i64>,
    /// Fingerprints of every certificate issued to this name that was revoked, the current
    /// one included once revoked. A name enrolled again keeps the list, so an old
    /// certificate stays refused.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub revoked: BTreeSet<String>,
}

impl Identity {
    /// Whether its current certificate is trusted (not revoked).
    pub fn trusted(&self) -> bool {
        self.revoked_at_ms.is_none() && !self.revoked.contains(&self.fingerprint)
    }

    /// Whether the certificate with `fingerprint` (sha256 of the DER, hex) was revoked.
    pub fn is_revoked(&self, fingerprint: &str) -> bool {
        self.revoked.contains(&fingerprint.to_ascii_lowercase())
    }
}

/// What a host offers to instances.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capacity {
    /// CPU, thousandths of a core.
    pub cpu_millicores: u64,
    pub memory_bytes: u64,
    /// Process slots.
    pub processes: u64,
}

/// A host of the cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// Raft node id, allocated when the member joins (the bootstrap member is 1).
    #[serde(default)]
    pub id: u64,
    pub name: String,
    /// host:port of its API.
    pub address: String,
    pub architecture: String,
    pub failure_domain: String,
    pub joined_at_ms: i64,
    /// What it offers (reported by the host at start).
    #[serde(default)]
    pub capacity: Capacity,
    /// Free-form labels for placement constraints.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Cluster groups it belongs to (`--target @GROUP`).
    #[serde(default)]
    pub groups: BTreeSet<String>,
    /// Evacuated: no new placements, its instances moved or stopped.
    #[serde(default)]
    pub evacuated: bool,
}

/// An image known to the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Image {
    /// sha256 of the tarball, lowercase hex.
    pub fingerprint: String,
    pub size: u64,
    pub architecture: String,
    pub os: String,
    pub release: String,
    pub description: String,
    /// Signal name sent to init for a clean stop.
    pub stop_signal: String,
    pub created_at_ms: i64,
    /// Hosts that hold an unpacked copy.
    pub locations: BTreeSet<String>,
}

/// What the cluster wants an instance to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DesiredState {
    Stopped,
    Running,
    Frozen,
    Deleted,
}

/// What its host last saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ObservedState {
    /// Not yet acted upon, or in progress.
    Pending,
    Stopped,
    Running,
    Frozen,
    /// The last attempt failed; see the message.
    Error,
    /// The host cannot be reached.
    Unknown,
}

/// Resource use from the instance's cgroups.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub memory_bytes: u64,
    pub cpu_nanos: u64,
    pub processes: u64,
}

/// The status an instance's host reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceStatus {
    pub state: ObservedState,
    /// The `desired_revision` this status answers.
    pub observed_revision: u64,
    pub message: String,
    pub init_pid: Option<i64>,
    pub usage: Option<Usage>,
    pub updated_at_ms: i64,
}

impl InstanceStatus {
    /// The status of an instance nobody has acted on yet.
    pub fn pending(now_ms: i64) -> Self {
        Self {
            state: ObservedState::Pending,
            observed_revision: 0,
            message: String::new(),
            init_pid: None,
            usage: None,
            updated_at_ms: now_ms,
        }
    }
}

/// A system container, as the cluster sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instance {
    pub name: InstanceName,
    /// The alias or fingerprint the user named.
    pub image: String,
    pub image_fingerprint: String,
    pub config: BTreeMap<String, String>,
    pub desired: DesiredState,
    /// Bumped by every change of what is desired.
    pub desired_revision: u64,
    /// A restart is wanted if this is above the observed revision.
    pub restart_revision: u64,
    /// Stop with SIGKILL at once (for the current desired change).
    pub stop_force: bool,
    /// Seconds to wait for a clean stop before SIGKILL.
    pub stop_timeout_s: u32,
    /// Host it is placed on.
    pub location: String,
    /// Bumped whenever the placement changes; reports from older placements are refused.
    pub placement_generation: u64,
    pub status: InstanceStatus,
    pub created_at_ms: i64,
    /// Bumped whenever the record changes.
    pub version: u64,
    /// The host it was evacuated from, to return to on restore.
    #[serde(default)]
    pub origin: Option<String>,
    /// The move in progress, if any: the journal that lets another member finish or roll
    /// back a move whose coordinator died (see `Command::BeginMove`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub moving: Option<MoveRecord>,
}

/// How far a move has come. Before `Committed` the instance is whole on its source (a
/// move that ends there is rolled back); from `Committed` on it is placed on its target
/// (a move that ends there is finished).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum MovePhase {
    /// Journaled; the instance may be stopping and its layer travelling to the target.
    Preparing,
    /// The target holds a complete copy of the stopped instance's layer.
    Copied,
    /// The new placement is committed; the target starts it, the source drops its copy.
    Committed,
}

/// The journal of a move in progress, kept on the instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MoveRecord {
    /// The move's session id: every later step names it (compare-and-set).
    pub session: String,
    /// Where the instance was placed when the move began.
    pub source: String,
    pub target: String,
    /// `cold` or `precopy`.
    pub mode: String,
    pub phase: MovePhase,
    /// The member orchestrating it.
    pub coordinator: String,
    /// What was desired when the move began: restored on the target at the commit, or on
    /// the source when the move is rolled back.
    pub desired_before: DesiredState,
    /// Remember the source as the host to return to on `restore` (evacuation).
    #[serde(default)]
    pub remember_origin: bool,
    pub started_at_ms: i64,
    pub updated_at_ms: i64,
}

impl MoveRecord {
    /// One line for people: "moving from a to d (copied, coordinated by b)".
    pub fn describe(&self) -> String {
        format!(
            "moving from {} to {} ({}, {} move coordinated by {})",
            self.source,
            self.target,
            format!("{:?}", self.phase).to_lowercase(),
            self.mode,
            self.coordinator
        )
    }
}

impl Instance {
    /// Whether the host has caught up with what is desired.
    pub fn converged(&self) -> bool {
        self.status.observed_revision >= self.desired_revision
            && matches!(
                (self.desired, self.status.state),
                (DesiredState::Running, ObservedState::Running)
                    | (DesiredState::Stopped, ObservedState::Stopped)
                    | (DesiredState::Frozen, ObservedState::Frozen)
            )
    }
}

impl ClusterState {
    /// Resolves an alias, a full fingerprint or a unique fingerprint prefix (12+ hex digits).
    pub fn resolve_image(&self, name: &str) -> Option<&Image> {
        if let Some(fp) = self.aliases.get(name) {
            return self.images.get(fp);
        }
        if let Some(img) = self.images.get(name) {
            return Some(img);
        }
        if name.len() >= 12 && name.chars().all(|c| c.is_ascii_hexdigit()) {
            let mut it = self
                .images
                .range(name.to_string()..)
                .take_while(|(k, _)| k.starts_with(name));
            if let (Some((_, img)), None) = (it.next(), it.next()) {
                return Some(img);
            }
        }
        None
    }

    /// Aliases that point at `fingerprint`, sorted.
    pub fn aliases_of(&self, fingerprint: &str) -> Vec<String> {
        self.aliases
            .iter()
            .filter(|(_, fp)| fp.as_str() == fingerprint)
            .map(|(a, _)| a.clone())
            .collect()
    }

    /// The enrolled identity named `name` if it revoked the certificate with `fingerprint`
    /// (sha256 of the DER, hex): every call made with that certificate is refused.
    pub fn revocation(&self, name: &str, fingerprint: &str) -> Option<&Identity> {
        self.identities
            .get(name)
            .filter(|i| i.is_revoked(fingerprint))
    }

    /// Instances placed on `node`.
    pub fn instances_on<'a>(&'a self, node: &'a str) -> impl Iterator<Item = &'a Instance> + 'a {
        self.instances.values().filter(move |i| i.location == node)
    }
}
