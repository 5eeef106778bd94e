//! The scheduler: which host an instance goes to. Pure code over a `ClusterState` snapshot,
//! so the leader can plan without locks and every replica can re-check a plan at apply.
//!
//! ```text
//!  place(state, online, request)                       apply(CreateInstance{location})
//!    │ every member: online? in @group?                   │ check_host(location)  (same filter,
//!    │   check_host: evacuated, architecture, labels,     │   liveness excepted: it is not in
//!    │   placement group (strict), free cpu/memory/procs  │   the replicated state)
//!    │ score the rest: placement group (permissive),      │ refused → ModelError::PlanRejected
//!    │   spread or bin-pack, fewer instances, name        ▼
//!    ▼                                                  load index updated for the instance
//!  Placement{host}  or  NoFit (a reason per host)
//! ```
//!
//! What a host has free comes from the [`LoadIndex`]: per host, the sum of the limits of the
//! instances placed there that are not being deleted (an instance without a limit counts the
//! defaults of [`crate::model::SchedulerConfig`]: 0.1 core, 64 MiB, 100 processes). The index
//! is derived data, cached inside the `ClusterState` (not replicated, not persisted): built in
//! one pass on first use, then `apply` updates only the instances a command touched (the same
//! `touched` keys the store writes). So `place` is O(hosts), not O(instances).
//!
//! A capacity dimension a host reports as 0 is unknown, and not checked.
//!
//! A leader that plans several placements before their commands are applied records each plan
//! in an [`InFlight`] and plans with [`place_with`], so concurrent plans see each other; the
//! re-check at apply keeps them correct either way.

mod error;
mod filter;
mod load;
mod place;
mod request;

pub use error::NoFit;
pub use filter::{Refusal, Resource, Shortage};
pub use load::{Demand, HostLoad, InFlight, LoadCache, LoadIndex};
pub use place::{place, place_with};
pub use request::{Placement, PlacementRequest, Target, UnknownWord};

pub(crate) use error::names;
pub(crate) use filter::{check_host, Want};
pub(crate) use load::LoadRefresh;
pub(crate) use place::resolve_group;

#[cfg(test)]
mod bench_tests;
#[cfg(test)]
mod place_tests;
#[cfg(test)]
pub(crate) mod testkit;
