//! Errors of the model: each names what was refused and why.

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// A configuration key or value that is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, Error, Serialize, Deserialize)]
pub enum ConfigError {
    #[error("unknown configuration key '{key}' (known keys: {known})")]
    UnknownKey { key: String, known: String },
    #[error("invalid value '{value}' for '{key}': {expected}")]
    InvalidValue {
        key: String,
        value: String,
        expected: String,
    },
}

/// A command that cannot be applied. Applying a refused command changes nothing.
#[derive(Debug, Clone, PartialEq, Eq, Error, Serialize, Deserialize)]
pub enum ModelError {
    #[error("invalid instance name '{name}': {reason}")]
    InvalidName { name: String, reason: String },
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("instance '{0}' already exists")]
    InstanceExists(String),
    #[error("instance '{0}' not found")]
    InstanceNotFound(String),
    #[error("image '{0}' not found")]
    ImageNotFound(String),
    #[error("image '{0}' already exists")]
    ImageExists(String),
    #[error("image '{image}' is used by instances: {instances}")]
    ImageInUse { image: String, instances: String },
    #[error("member '{0}' not found")]
    MemberNotFound(String),
    #[error("stale write to '{what}': expected version {expected}, found {found}")]
    VersionConflict {
        what: String,
        expected: u64,
        found: u64,
    },
    #[error("stale report for instance '{instance}' from '{node}': placement generation {reported} is older than {current}")]
    StalePlacement {
        instance: String,
        node: String,
        reported: u64,
        current: u64,
    },
    #[error("instance '{name}' is {state}: {hint}")]
    WrongState {
        name: String,
        state: String,
        hint: String,
    },
    #[error("token refused: {0}")]
    TokenRefused(String),
    #[error(
        "no client named '{0}' is trusted or has a pending token (see `shoal cluster trust list`)"
    )]
    IdentityNotFound(String),
    #[error("client '{0}' is already revoked")]
    IdentityRevoked(String),
    #[error(
        "client '{0}' is already trusted: revoke it first with `shoal cluster trust remove {0}`"
    )]
    IdentityExists(String),
    #[error("member '{0}' already exists")]
    MemberExists(String),
    #[error("the cluster is already bootstrapped")]
    AlreadyBootstrapped,
    #[error("invalid alias '{alias}': {reason}")]
    InvalidAlias { alias: String, reason: String },
    #[error("placing '{instance}' on '{host}' was refused: {reason} (the cluster changed since the placement was planned; retry)")]
    PlanRejected {
        instance: String,
        host: String,
        reason: String,
    },
    #[error("unknown placement group '{name}' (placement groups: {known})")]
    UnknownPlacementGroup { name: String, known: String },
    #[error("placement group '{0}' already exists")]
    PlacementGroupExists(String),
    #[error("placement group '{name}' is used by instances: {instances}")]
    PlacementGroupInUse { name: String, instances: String },
    #[error("invalid placement group name '{name}': {reason}")]
    InvalidPlacementGroup { name: String, reason: String },
    #[error("instance '{name}' is {what}: wait for it to end; if its coordinator died, the cluster finishes or rolls it back by itself within seconds (as soon as the coordinator restarts, or once it has been silent for 6 s)")]
    MoveInProgress { name: String, what: String },
    #[error("move session '{session}' of instance '{name}' is over ({now}): nothing was changed")]
    NoSuchMove {
        name: String,
        session: String,
        now: String,
    },
    #[error("invalid scheduler option: {0}")]
    InvalidSchedulerConfig(String),
}
