//! A container's own layer (its overlay upper dir) and id range, for moving it between
//! hosts (`crate::transfer` streams it).

use std::path::PathBuf;

use super::api::Runtime;
use super::config::{read_json, validate_name, ContainerPaths, StoredConfig, UPPER};
use super::error::RuntimeError;

/// Where a container's own layer lives and which host ids own it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    /// The overlay upper directory.
    pub upper: PathBuf,
    /// Host id of container root (0 for privileged containers).
    pub root_id: u32,
    /// Whether the container is privileged (host ids are container ids).
    pub privileged: bool,
}

impl Runtime {
    /// The layer of container `name`.
    pub fn layer(&self, name: &str) -> Result<Layer, RuntimeError> {
        validate_name(name)?;
        let paths = ContainerPaths::new(&self.config().containers_dir, name);
        let cfg_path = paths.config();
        if !cfg_path.exists() {
            return Err(RuntimeError::NotFound { name: name.into() });
        }
        let cfg: StoredConfig = read_json(name, "reading config", &cfg_path)?;
        Ok(Layer {
            upper: paths.dir.join(UPPER),
            root_id: cfg.root_id(),
            privileged: cfg.privileged,
        })
    }
}
