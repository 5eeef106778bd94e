//! One module per command group; each owns its clap arguments.

pub(crate) mod cluster;
pub(crate) mod exec;
pub(crate) mod image;
pub(crate) mod instance;
pub(crate) mod moves;
pub(crate) mod placement;
pub(crate) mod remote;
