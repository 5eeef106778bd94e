//! Commands: the only way the cluster state changes. Each carries its own time, so `apply`
//! stays deterministic.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use super::state::{
    CaRecord, DesiredState, Identity, Image, Instance, InstanceStatus, Member, PlacementGroup,
    SchedulerConfig, Token,
};

/// A change to the cluster state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Adds a member or updates its address.
    RegisterMember { member: Member },
    /// First command of a new cluster: its CA and its first member (id 1).
    Bootstrap { ca: CaRecord, member: Member },
    /// Records a join or enrolment token (only its hash).
    CreateToken { token: Token },
    /// Consumes a member token and adds the member with the next free id, atomically.
    Join {
        secret_hash: String,
        now_ms: i64,
        member: Member,
    },
    /// Consumes a client token and records the identity, atomically.
    Enroll {
        secret_hash: String,
        now_ms: i64,
        identity: Identity,
    },
    /// Revokes the client identity `name`: its current certificate is refused from now on
    /// (the identity is kept, marked revoked, so that the refusal is replicated), and a
    /// client token still outstanding for that name is cancelled.
    RevokeIdentity { name: String, now_ms: i64 },
    /// Removes a member from the cluster record.
    RemoveMember { name: String },
    /// Adds an image (or, if known, records another host holding it) and sets aliases.
    AddImage {
        image: Image,
        aliases: Vec<String>,
        node: String,
    },
    /// Deletes an image no instance uses, with its aliases.
    DeleteImage { fingerprint: String },
    /// Points an alias at an image.
    SetAlias { alias: String, fingerprint: String },
    /// Removes an alias.
    DeleteAlias { alias: String },
    /// Creates an instance placed on `location`. Refused (`ModelError::PlanRejected`) if that
    /// host no longer fits it: the compare-and-set of a plan made on an older state.
    CreateInstance {
        name: String,
        image: String,
        config: BTreeMap<String, String>,
        start: bool,
        location: String,
        now_ms: i64,
    },
    /// Changes what is desired of an instance.
    SetDesired {
        name: String,
        desired: DesiredState,
        /// Stop with SIGKILL at once.
        force: bool,
        timeout_s: u32,
        /// Restart (stop then start) even if already running.
        restart: bool,
        /// Compare-and-set on the instance version, if given.
        expected_version: Option<u64>,
    },
    /// A host reports what it observes of an instance placed on it.
    ReportStatus {
        name: String,
        node: String,
        placement_generation: u64,
        status: InstanceStatus,
        /// Apply only if the instance record is still at this version (a report based on
        /// a snapshot must not overwrite a newer one).
        #[serde(default)]
        if_version: Option<u64>,
    },
    /// A host confirms it removed an instance that was to be deleted.
    ForgetInstance {
        name: String,
        node: String,
        placement_generation: u64,
    },
    /// Places an instance on another host (healing, evacuation, move): a new placement
    /// generation, so reports from the old host are refused from now on.
    Relocate {
        name: String,
        from: String,
        to: String,
        expected_generation: u64,
        /// Remember `from` as the host to return to on `restore`.
        remember_origin: bool,
        /// Why, for the status message.
        reason: String,
        now_ms: i64,
    },
    /// Journals a move of `name` from `from` to `to` before anything is done to the
    /// instance (`Instance::moving`, phase Preparing). Refused while another move is in
    /// progress, if `from`/`expected_generation` is not the current placement, or if `to`
    /// cannot take it.
    BeginMove {
        name: String,
        from: String,
        to: String,
        /// `cold` or `precopy`.
        mode: String,
        session: String,
        coordinator: String,
        expected_generation: u64,
        remember_origin: bool,
        now_ms: i64,
    },
    /// Records that the target holds a complete copy of the stopped instance (phase
    /// Copied). Compare-and-set on the session.
    AdvanceMove {
        name: String,
        session: String,
        now_ms: i64,
    },
    /// The commit point of a move in phase Copied: places the instance on the target with a
    /// new placement generation and restores what was desired there (the target starts
    /// it; the source's copy is stale from now on). Phase Committed.
    CommitMove {
        name: String,
        session: String,
        expected_generation: u64,
        now_ms: i64,
    },
    /// Ends a move, whoever ends it (its coordinator, or recovery when the coordinator
    /// died): before the commit it is rolled back (what was desired is restored on the
    /// source), after it, it is finished. Either way the journal is cleared. The instance
    /// in the result says which: placed on the target means it moved.
    CloseMove {
        name: String,
        session: String,
        /// Why, for the status message of a roll-back.
        reason: String,
        now_ms: i64,
    },
    /// The leader marks an instance whose host is offline and that stays there.
    MarkUnreachable {
        name: String,
        node: String,
        placement_generation: u64,
        message: String,
        now_ms: i64,
    },
    /// Records (or clears) the host an instance was evacuated from without moving it (an
    /// instance stopped in place by an evacuation).
    SetOrigin {
        name: String,
        origin: Option<String>,
    },
    /// Marks a member evacuated (no new placements) or restores it.
    SetEvacuated { name: String, evacuated: bool },
    /// Sets the scheduler's options.
    SetSchedulerConfig { config: SchedulerConfig },
    /// Creates a placement group.
    CreatePlacementGroup { group: PlacementGroup },
    /// Deletes a placement group that no instance uses.
    DeletePlacementGroup { name: String },
    /// Several commands in one log entry: writes that arrive together at a member are
    /// committed as one Raft entry (group commit). Each is applied in turn, as if alone,
    /// and has its own result; one that fails changes nothing and does not undo the others.
    Batch { commands: Vec<Command> },
}

/// What applying a command produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommandResult {
    Done,
    /// A member joined with this Raft node id.
    Member(u64),
    Instance(Box<Instance>),
    Image(Box<Image>),
    /// The result of each command of a `Batch`, in order.
    Batch(Vec<Result<CommandResult, super::error::ModelError>>),
}
