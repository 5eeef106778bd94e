//! The Shoal node agent.
pub mod cgroups;
pub mod cluster;
pub mod daemon;
pub mod hollow;
pub mod image;
pub mod runtime;
pub mod sys;
pub mod transfer;
