//! Command-line flags of `shoald` and logging set-up.

use clap::{Parser, ValueEnum};
use std::path::PathBuf;

/// Log output format.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// `shoald`: the Shoal node agent.
#[derive(Debug, Clone, Parser)]
#[command(name = "shoald", version, about = "The Shoal node agent")]
pub struct DaemonArgs {
    /// This host's member name (letters, digits, hyphens).
    #[arg(long, env = "SHOALD_NAME")]
    pub name: String,
    /// Directory for all of this host's state (certificates, cluster state, images,
    /// containers).
    #[arg(long, env = "SHOALD_DATA_DIR", default_value = "/var/lib/shoal")]
    pub data_dir: PathBuf,
    /// Address the API listens on.
    #[arg(long, env = "SHOALD_LISTEN", default_value = "0.0.0.0:8443")]
    pub listen: String,
    /// Address other members and clients use to reach this one (default: --listen).
    #[arg(long, env = "SHOALD_ADVERTISE")]
    pub advertise: Option<String>,
    /// Join an existing cluster with a token from `shoal cluster add NAME` (first start only;
    /// ignored once this member has joined).
    #[arg(long, env = "SHOALD_JOIN")]
    pub join: Option<String>,
    /// Failure domain of this host (rack, room...).
    #[arg(long, default_value = "default")]
    pub failure_domain: String,
    /// A label for placement constraints, KEY=VALUE (repeatable).
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
    pub labels: Vec<(String, String)>,
    /// A cluster group this host belongs to, for `--target @GROUP` (repeatable).
    #[arg(long = "group", value_name = "GROUP")]
    pub groups: Vec<String>,
    /// Log format.
    #[arg(long, value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Log filter (tracing env-filter syntax), e.g. `info,shoal_node=debug`.
    #[arg(long, env = "SHOALD_LOG", default_value = "info")]
    pub log: String,
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("'{s}' is not KEY=VALUE")),
    }
}

/// Installs the tracing subscriber.
pub fn init_tracing(args: &DaemonArgs) {
    let filter = tracing_subscriber::EnvFilter::try_new(&args.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match args.log_format {
        LogFormat::Text => b.with_ansi(false).init(),
        LogFormat::Json => b.json().init(),
    }
}
