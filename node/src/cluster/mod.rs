//! Membership of the cluster: certificates and roles (`pki`), join tokens (`token`), trust on
//! first contact checked by fingerprint (`trust`), joining (`join`), this member's Raft node
//! and how it commits commands (`node`), connections to peers (`peers`), and the leader's
//! management of voters and stand-bys (`roles`).

pub mod join;
pub mod node;
pub mod peers;
pub mod pki;
pub mod roles;
pub mod token;
pub mod trust;

pub use node::{ClusterNode, SubmitError};
pub use peers::Peers;
