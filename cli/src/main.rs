//! `shoal`, the command-line client of a Shoal cluster.
//!
//! Parses the command line, loads the configuration, connects to one member
//! over mutual TLS and runs the command. Exit codes: 0 on success, 1 on any
//! error (printed as `Error: <message>` on stderr), and for `exec` the
//! command's own exit code.

mod commands;
mod config;
mod config_edit;
mod connect;
mod duration;
mod enroll;
mod error;
mod keyvalue;
mod output;
mod terminal;
mod token;
mod view;
mod wait;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};

use commands::cluster::ClusterCommand;
use commands::exec::ExecArgs;
use commands::image::ImageCommand;
use commands::instance::{
    self, CreateArgs, DeleteArgs, InfoArgs, ListArgs, NamesArgs, StopArgs, Verb,
};
use commands::remote::RemoteCommand;
use connect::Connection;

#[derive(Parser, Debug)]
#[command(
    name = "shoal",
    version,
    about = "Manage system containers on a Shoal cluster"
)]
struct Cli {
    /// Remote (cluster) to talk to, from the configuration file
    #[arg(long, global = true, value_name = "NAME")]
    remote: Option<String>,
    /// Configuration file (default: $SHOAL_CONFIG, else ~/.config/shoal/config.toml)
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Manage images
    #[command(subcommand)]
    Image(ImageCommand),
    /// Create and start an instance
    Launch(CreateArgs),
    /// Create an instance without starting it
    Init(CreateArgs),
    /// List instances
    #[command(alias = "ls")]
    List(ListArgs),
    /// Show one instance
    Info(InfoArgs),
    /// Start instances
    Start(NamesArgs),
    /// Stop instances
    Stop(StopArgs),
    /// Manage placement groups
    #[command(subcommand)]
    Placement(commands::placement::PlacementCommand),
    /// Move an instance to another host with its data
    Move(commands::moves::MoveArgs),
    /// Copy an instance under a new name
    Copy(commands::moves::CopyArgs),
    /// Restart instances
    Restart(StopArgs),
    /// Freeze every process of instances
    #[command(alias = "pause")]
    Freeze(NamesArgs),
    /// Thaw frozen instances
    #[command(alias = "resume")]
    Unfreeze(NamesArgs),
    /// Delete instances and their data
    #[command(alias = "rm")]
    Delete(DeleteArgs),
    /// Run a command in an instance
    Exec(ExecArgs),
    /// Manage the cluster: members, join and client tokens
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// Manage the clusters this client knows
    #[command(subcommand)]
    Remote(RemoteCommand),
    /// Print the client version
    Version,
}

fn main() {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            // --help and --version print to stdout and succeed; usage
            // errors exit 1 like every other error.
            let code = if e.use_stderr() { 1 } else { 0 };
            let _ = e.print();
            std::process::exit(code);
        }
    };
    connect::install_crypto_provider();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("Error: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    let code = match rt.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("Error: {e:#}");
            1
        }
    };
    // A blocked stdin read (exec) must not hold up the exit.
    rt.shutdown_background();
    std::process::exit(code);
}

/// Runs one command; the value is the exit code.
async fn run(cli: Cli) -> Result<i32> {
    let cmd = match cli.command {
        Command::Version => {
            output::print(&format!("Client version: {}\n", env!("CARGO_PKG_VERSION")))?;
            return Ok(0);
        }
        Command::Remote(cmd) => {
            let path = config::config_path(cli.config.as_deref())?;
            commands::remote::run(&path, cmd).await?;
            return Ok(0);
        }
        cmd => cmd,
    };
    let path = config::config_path(cli.config.as_deref())?;
    let conn = open(&path, cli.remote.as_deref()).await?;
    let c = &conn;
    match cmd {
        Command::Version | Command::Remote(_) => {}
        Command::Image(cmd) => commands::image::run(c, cmd).await?,
        Command::Launch(a) => instance::create(c, a, true).await?,
        Command::Init(a) => instance::create(c, a, false).await?,
        Command::List(a) => instance::list(c, a).await?,
        Command::Info(a) => instance::info(c, a).await?,
        Command::Start(a) => instance::apply(c, Verb::Start, a.names, a.no_wait).await?,
        Command::Stop(a) => instance::apply(c, stop(&a, false), a.names, a.no_wait).await?,
        Command::Restart(a) => instance::apply(c, stop(&a, true), a.names, a.no_wait).await?,
        Command::Freeze(a) => instance::apply(c, Verb::Freeze, a.names, a.no_wait).await?,
        Command::Unfreeze(a) => instance::apply(c, Verb::Unfreeze, a.names, a.no_wait).await?,
        Command::Delete(a) => {
            instance::apply(c, Verb::Delete { force: a.force }, a.names, a.no_wait).await?
        }
        Command::Exec(a) => return commands::exec::run(c, a).await,
        Command::Move(a) => commands::moves::run_move(c, a).await?,
        Command::Placement(cmd) => commands::placement::run(c, cmd).await?,
        Command::Copy(a) => commands::moves::run_copy(c, a).await?,
        Command::Cluster(cmd) => commands::cluster::run(c, &path, cmd).await?,
    }
    Ok(0)
}

fn stop(a: &StopArgs, restart: bool) -> Verb {
    let (force, timeout) = (a.force, a.timeout.unwrap_or(0));
    if restart {
        Verb::Restart { force, timeout }
    } else {
        Verb::Stop { force, timeout }
    }
}

/// Loads the configuration at `path`, picks the remote and connects.
async fn open(path: &std::path::Path, remote: Option<&str>) -> Result<Connection> {
    let cfg = config::load(path)?;
    let remote = cfg.select(remote)?;
    connect::connect(&remote).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("shoal").chain(args.iter().copied()))
    }

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn launch_collects_config_pairs() {
        let cli = parse(&[
            "launch",
            "busybox",
            "c1",
            "-c",
            "limits.memory=64MiB",
            "-c",
            "user.a=b",
            "--target",
            "n2",
        ])
        .unwrap();
        let Command::Launch(a) = cli.command else {
            panic!("not launch")
        };
        assert_eq!(a.config.len(), 2);
        assert_eq!(a.config[0], ("limits.memory".into(), "64MiB".into()));
        assert_eq!(a.target.as_deref(), Some("n2"));
        assert!(!a.no_wait);
    }

    #[test]
    fn bad_config_pair_is_a_clear_error() {
        let err = parse(&["launch", "busybox", "c1", "-c", "foo"])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("\"foo\" is not a pair: expected KEY=VALUE"),
            "{err}"
        );
    }

    #[test]
    fn exec_takes_the_command_after_dashes() {
        let cli = parse(&[
            "exec", "c1", "--env", "A=1", "--user", "1000", "--", "sh", "-c", "exit 7",
        ])
        .unwrap();
        let Command::Exec(a) = cli.command else {
            panic!("not exec")
        };
        assert_eq!(a.command, ["sh", "-c", "exit 7"]);
        assert_eq!(a.env, [("A".to_string(), "1".to_string())]);
        assert_eq!(a.user, 1000);
        let cli = parse(&["exec", "c1", "-T", "ls", "-la"]).unwrap();
        let Command::Exec(a) = cli.command else {
            panic!("not exec")
        };
        assert!(a.no_tty);
        assert_eq!(a.command, ["ls", "-la"]);
        assert!(parse(&["exec", "c1", "-t", "-T", "--", "ls"]).is_err());
        assert!(parse(&["exec", "c1"]).is_err());
    }

    #[test]
    fn global_flags_go_anywhere() {
        let cli = parse(&[
            "list", "--remote", "prod", "--format", "json", "--config", "/c.toml",
        ])
        .unwrap();
        assert_eq!(cli.remote.as_deref(), Some("prod"));
        assert_eq!(cli.config, Some(PathBuf::from("/c.toml")));
        let Command::List(a) = cli.command else {
            panic!("not list")
        };
        assert_eq!(a.format, output::Format::Json);
    }

    #[test]
    fn stop_flags() {
        let cli = parse(&["stop", "--force", "--timeout", "5", "c1", "c2"]).unwrap();
        let Command::Stop(a) = cli.command else {
            panic!("not stop")
        };
        assert_eq!(a.names, ["c1", "c2"]);
        assert_eq!(
            stop(&a, false),
            Verb::Stop {
                force: true,
                timeout: 5
            }
        );
        assert_eq!(
            stop(&a, true),
            Verb::Restart {
                force: true,
                timeout: 5
            }
        );
    }

    #[test]
    fn image_commands_parse() {
        let cli = parse(&[
            "image",
            "import",
            "/t.tar.gz",
            "--alias",
            "a",
            "--alias",
            "b",
        ])
        .unwrap();
        let Command::Image(ImageCommand::Import { aliases, .. }) = cli.command else {
            panic!("not import")
        };
        assert_eq!(aliases, ["a", "b"]);
        assert!(parse(&["image", "alias", "set", "a", "0123"]).is_ok());
        assert!(parse(&["image", "alias", "delete", "a"]).is_ok());
        assert!(parse(&["image", "list", "--format", "csv"]).is_ok());
        assert!(parse(&["image", "info", "a", "--format", "yaml"]).is_ok());
        assert!(parse(&["image", "list", "--format", "xml"]).is_err());
        assert!(parse(&["cluster", "list", "-f", "json"]).is_ok());
    }

    #[test]
    fn cluster_and_remote_commands_parse() {
        use commands::cluster::{ClusterCommand as C, Role, TrustCommand};
        let cli = parse(&["cluster", "add", "b", "--ttl", "30m"]).unwrap();
        let Command::Cluster(C::Add(a)) = cli.command else {
            panic!("not cluster add")
        };
        assert_eq!((a.name.as_str(), a.ttl), ("b", Some(1800)));
        let cli = parse(&["cluster", "trust", "add", "ci", "--role", "operator"]).unwrap();
        let Command::Cluster(C::Trust(TrustCommand::Add { token, role })) = cli.command else {
            panic!("not trust add")
        };
        assert_eq!(
            (token.name.as_str(), token.ttl, role),
            ("ci", None, Role::Operator)
        );
        let cli = parse(&["cluster", "trust", "add", "ci"]).unwrap();
        let Command::Cluster(C::Trust(TrustCommand::Add { role, .. })) = cli.command else {
            panic!("not trust add")
        };
        assert_eq!(role, Role::Viewer);
        assert!(parse(&["cluster", "trust", "add", "ci", "--role", "root"]).is_err());
        let err = parse(&["cluster", "add", "b", "--ttl", "90"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("has no unit"), "{err}");
        let cli = parse(&["cluster", "remove", "b", "--force"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Cluster(C::Remove { force: true, .. })
        ));
        assert!(parse(&["cluster", "show", "-f", "yaml"]).is_ok());
        assert!(parse(&["cluster", "show", "-f", "csv"]).is_err());
        let cli = parse(&["remote", "add", "lab", "10.0.0.1:8443", "--token", "T"]).unwrap();
        let Command::Remote(RemoteCommand::Add {
            name,
            address,
            token,
        }) = cli.command
        else {
            panic!("not remote add")
        };
        assert_eq!(
            (name.as_str(), address.as_str(), token.as_str()),
            ("lab", "10.0.0.1:8443", "T")
        );
        assert!(parse(&["remote", "add", "lab", "10.0.0.1:8443"]).is_err());
        assert!(parse(&["remote", "list", "-f", "json"]).is_ok());
        assert!(parse(&["remote", "switch", "lab"]).is_ok());
        assert!(parse(&["remote", "remove", "lab"]).is_ok());
    }
}
