//! What every service and the agent loop share.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::Mutex;

use super::ops::Operations;
use super::state::StateHandle;
use crate::image::ImageStore;
use crate::runtime::Runtime;

/// The daemon's shared context.
pub struct Ctx {
    /// This member's name.
    pub node: String,
    pub state: StateHandle,
    pub ops: Operations,
    pub images: Arc<ImageStore>,
    pub runtime: Arc<Runtime>,
    /// Where uploads are spooled.
    pub spool_dir: PathBuf,
    /// Instances this host stopped because its lease expired.
    pub fenced: Mutex<HashSet<String>>,
    /// Containers being imported for a move (not stale, though not placed here yet).
    pub importing: Mutex<HashSet<String>>,
    /// Placements planned here and not yet applied.
    pub placing: Mutex<shoal_raft::scheduler::InFlight>,
    /// Layer manifests of move sessions this host exports, for precopy deltas.
    pub export_sessions: Mutex<HashMap<String, crate::transfer::Manifest>>,
    /// The agents' watch streams this member serves.
    pub watchers: super::watch_hub::WatchHub,
}
