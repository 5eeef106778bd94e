//! `shoal exec NAME -- CMD...`: run a command in an instance.
//!
//! ```text
//!  stdin thread ──stdin/close_stdin──┐
//!  SIGWINCH task ──resize────────────┤ mpsc ──> Instances.Exec ──> stdout / stderr
//!  first message: start ─────────────┘                         └─> exit code
//! ```
//!
//! The exit code of the command becomes ours. A tty is used when stdin and
//! stdout are both terminals (as `lxc exec`), or when forced with `-t`; the
//! local terminal is then raw until the command ends.

use std::io::{IsTerminal, Read, Write};

use anyhow::{bail, Result};
use clap::Args;
use futures::StreamExt;
use shoal_proto::api::exec_input::Input;
use shoal_proto::api::exec_output::Output;
use shoal_proto::api::{ExecInput, ExecStart, TerminalSize};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::connect::Connection;
use crate::error::status_error;
use crate::keyvalue::{parse_pair, to_map};
use crate::terminal::{window_size, RawMode};

/// Terminal size assumed when it cannot be read.
const DEFAULT_SIZE: (u32, u32) = (24, 80);

#[derive(Args, Debug)]
pub(crate) struct ExecArgs {
    /// Instance name
    pub(crate) name: String,
    /// Allocate a terminal even if stdin or stdout is not one
    #[arg(short = 't', long = "tty", conflicts_with = "no_tty")]
    pub(crate) tty: bool,
    /// Do not allocate a terminal
    #[arg(short = 'T', long = "no-tty")]
    pub(crate) no_tty: bool,
    /// Environment variable for the command (repeatable)
    #[arg(long = "env", value_name = "KEY=VALUE", value_parser = parse_pair)]
    pub(crate) env: Vec<(String, String)>,
    /// Working directory inside the instance
    #[arg(long, value_name = "DIR")]
    pub(crate) cwd: Option<String>,
    /// User id to run as inside the instance
    #[arg(long, value_name = "UID", default_value_t = 0)]
    pub(crate) user: u32,
    /// Group id to run as inside the instance
    #[arg(long, value_name = "GID", default_value_t = 0)]
    pub(crate) group: u32,
    /// Command and its arguments (after `--`)
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "COMMAND"
    )]
    pub(crate) command: Vec<String>,
}

/// Whether to use a tty: the flags, else whether both ends are terminals.
pub(crate) fn want_tty(force: bool, refuse: bool, stdin_tty: bool, stdout_tty: bool) -> bool {
    if force {
        true
    } else if refuse {
        false
    } else {
        stdin_tty && stdout_tty
    }
}

/// Runs the command and returns its exit code.
pub(crate) async fn run(conn: &Connection, args: ExecArgs) -> Result<i32> {
    let tty = want_tty(
        args.tty,
        args.no_tty,
        std::io::stdin().is_terminal(),
        std::io::stdout().is_terminal(),
    );
    let (rows, cols) = if tty {
        window_size().unwrap_or(DEFAULT_SIZE)
    } else {
        (0, 0)
    };
    let mut env = to_map(args.env);
    if tty {
        // Like `lxc exec`: the command's terminal is of our terminal's type.
        if let Ok(term) = std::env::var("TERM") {
            env.entry("TERM".to_string()).or_insert(term);
        }
    }
    let start = ExecStart {
        instance: args.name,
        command: args.command,
        env,
        cwd: args.cwd.unwrap_or_default(),
        uid: args.user,
        gid: args.group,
        tty,
        rows,
        cols,
    };
    // `tx` lives until we return, so the request stream stays open until the
    // command has exited even after stdin closes.
    let (tx, rx) = mpsc::channel::<ExecInput>(16);
    tx.send(input(Input::Start(start))).await?;

    let mut output = conn
        .instances()
        .exec(ReceiverStream::new(rx))
        .await
        .map_err(|s| status_error(s, conn))?
        .into_inner();

    let _raw = if tty { RawMode::enable()? } else { None };
    spawn_stdin_reader(tx.clone());
    if tty {
        spawn_resizer(tx.clone())?;
    }
    let mut term = signal(SignalKind::terminate())?;
    let mut hup = signal(SignalKind::hangup())?;
    // Plain blocking writes: the multi-threaded runtime has other workers
    // for the stream while a slow reader holds this one.
    let mut stdout = std::io::stdout();
    let mut stderr = std::io::stderr();
    loop {
        tokio::select! {
            msg = output.next() => match msg {
                None => bail!("the exec stream ended without an exit code"),
                Some(Err(s)) => return Err(status_error(s, conn)),
                Some(Ok(m)) => match m.output {
                    Some(Output::Stdout(b)) => write_all(&mut stdout, &b)?,
                    Some(Output::Stderr(b)) => write_all(&mut stderr, &b)?,
                    Some(Output::ExitCode(code)) => return Ok(code),
                    None => {}
                },
            },
            // Leave through the normal path so the terminal is restored.
            _ = term.recv() => return Ok(128 + libc::SIGTERM),
            _ = hup.recv() => return Ok(128 + libc::SIGHUP),
        }
    }
}

fn input(i: Input) -> ExecInput {
    ExecInput { input: Some(i) }
}

fn write_all<W: Write>(w: &mut W, b: &[u8]) -> Result<()> {
    match w.write_all(b).and_then(|_| w.flush()) {
        // The reader went away (`| head`): drop the rest, keep the exit code.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => Ok(r?),
    }
}

/// Forwards our stdin from a plain thread (blocking reads must not hold a
/// runtime thread, and the process may exit while a read is pending).
fn spawn_stdin_reader(tx: mpsc::Sender<ExecInput>) {
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin();
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match stdin.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if tx
                        .blocking_send(input(Input::Stdin(buf[..n].to_vec())))
                        .is_err()
                    {
                        return;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        let _ = tx.blocking_send(input(Input::CloseStdin(true)));
    });
}

/// Sends the new terminal size on every SIGWINCH.
fn spawn_resizer(tx: mpsc::Sender<ExecInput>) -> Result<()> {
    let mut winch = signal(SignalKind::window_change())?;
    tokio::spawn(async move {
        while winch.recv().await.is_some() {
            let Some((rows, cols)) = tokio::task::spawn_blocking(window_size)
                .await
                .ok()
                .flatten()
            else {
                continue;
            };
            if tx
                .send(input(Input::Resize(TerminalSize { rows, cols })))
                .await
                .is_err()
            {
                return;
            }
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tty_follows_flags_then_terminals() {
        assert!(want_tty(true, false, false, false));
        assert!(!want_tty(false, true, true, true));
        assert!(want_tty(false, false, true, true));
        assert!(!want_tty(false, false, true, false));
        assert!(!want_tty(false, false, false, true));
    }
}
