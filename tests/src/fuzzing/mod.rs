//! The bodies of Shoal's fuzz targets, shared by the cargo-fuzz crate (`tests/fuzz`, run
//! on nightly with libFuzzer) and the stable replay of every committed input
//! (`tests/tests/fuzz_corpus.rs`), so a crash found once stays fixed.
//!
//! Each body feeds its bytes to real project code and panics only when that code breaks a
//! promise: a panic inside the code under test, or an invariant the body checks (a
//! refused image leaves nothing behind, a refused command changes nothing, ...).
//!
//! | target             | code under test                                                 |
//! |--------------------|-----------------------------------------------------------------|
//! | `api_request`      | prost decoding of the public API's requests and the daemon's checks at the edge, then placement and `apply` |
//! | `image_tarball`    | `ImageStore::import` of the bytes as a tarball (plain, or gzip if they are) |
//! | `image_tarball_gz` | the same, the bytes gzip-compressed first (so the tar layer inside is fuzzed) |
//! | `config`           | instance config keys, `metadata.yaml`, join tokens, `shoald` flags, signal names |
//! | `layer_stream`     | `transfer::import` of a hostile layer stream (resealed so its checksum holds) |
//! | `raft_command`     | Raft `Command` JSON and `apply` on a small cluster state        |

mod api;
mod command;
mod config;
mod image;
mod layer;
mod scratch;
pub mod seeds;

pub use api::api_request;
pub use command::{raft_command, seeded_state};
pub use config::config;
pub use image::{image_tarball, image_tarball_gz};
pub use layer::layer_stream;

/// A fuzz target's body.
pub type Target = fn(&[u8]);

/// Every target, by the name of its cargo-fuzz binary and corpus directory.
pub const TARGETS: &[(&str, Target)] = &[
    ("api_request", api_request),
    ("image_tarball", image_tarball),
    ("image_tarball_gz", image_tarball_gz),
    ("config", config),
    ("layer_stream", layer_stream),
    ("raft_command", raft_command),
];

/// The body of the target called `name`.
pub fn target(name: &str) -> Option<Target> {
    TARGETS.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
}
