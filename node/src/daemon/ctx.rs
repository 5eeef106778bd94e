//! What every service and the agent loop share.

use std::path::PathBuf;
use std::sync::Arc;

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
}
