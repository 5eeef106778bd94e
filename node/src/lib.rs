//! The Shoal node agent.
pub mod image;
pub mod daemon;
pub mod cgroups;
pub mod runtime;
pub mod sys;
