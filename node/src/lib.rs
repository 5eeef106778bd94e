//! The Shoal node agent.
pub mod image;
pub mod daemon;
pub mod cgroups;
