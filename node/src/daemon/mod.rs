//! The `shoald` daemon: configuration, TLS, gRPC services and the host's agent loop.
//!
//! ```text
//!  shoal CLI ──mTLS gRPC──► services (instances, images, operations, cluster)
//!                               │ validate, commit Command
//!                               ▼
//!                        state (durable log + model) ──revision──► agent ──► runtime
//!                                                                   ▲          │
//!                                                                   └─report───┘
//! ```

mod agent;
mod args;
mod auth;
mod cluster;
mod convert;
mod ctx;
mod error;
mod exec;
mod fencing;
mod follow;
mod healer;
mod image_fetch;
mod images;
mod instances;
mod layer_stream;
mod membership;
mod move_recovery;
mod mover;
mod operations;
mod ops;
mod orchestrate;
mod purge;
mod server;
mod state;
mod watch_hub;

pub use args::DaemonArgs;
pub use error::ApiError;
pub use exec::check_exec_start;
pub use images::check_import_header;
pub use instances::{check_copy, check_create, check_move, check_name};

/// Entry point of `shoald` (everything but `shoald monitor`). Returns the exit code.
pub fn main(args: Vec<String>) -> i32 {
    use clap::Parser;
    if args.get(1).map(String::as_str) == Some("purge") {
        let a = match purge::PurgeArgs::try_parse_from(&args[1..]) {
            Ok(a) => a,
            Err(e) => {
                let _ = e.print();
                return 2;
            }
        };
        return match purge::run(&a) {
            Ok(n) => {
                eprintln!("shoald purge: removed {n} containers of {}", a.name);
                0
            }
            Err(e) => {
                eprintln!("shoald purge: {e:#}");
                1
            }
        };
    }
    let args = match DaemonArgs::try_parse_from(args) {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    args::init_tracing(&args);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("shoald: cannot start the async runtime: {e}");
            return 1;
        }
    };
    match rt.block_on(server::run(args)) {
        Ok(()) => 0,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "shoald failed");
            eprintln!("shoald: {e:#}");
            1
        }
    }
}
