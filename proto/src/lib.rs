//! Wire types and gRPC services of Shoal.
//!
//! Generated code lives only here. `api` is the public API (`shoal.api.v1`);
//! conversions between wire and domain types live in the crates that own the
//! domain types.

/// The public API, `shoal.api.v1`.
pub mod api {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("shoal.api.v1");
}

/// The internal API between members, `shoal.internal.v1` (Raft).
pub mod internal {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("shoal.internal.v1");
}
