//! Exec: runs a command in a running container and bridges its stdio to the gRPC stream.
//!
//! The runtime hands back plain descriptors (pipes, or a pty master with a terminal) and a
//! control socket that becomes readable when the exit status arrives; all of them are
//! driven here with `AsyncFd`, so no thread blocks for a command's lifetime. Output is sent
//! until both streams end (or, once the exit status is known, for at most a second more, so
//! a background child holding stdout open does not hang the call); the exit code comes last.

use shoal_proto::api as pb;
use shoal_raft::{InstanceConfig, InstanceName, ObservedState};
use std::io;
use std::os::fd::OwnedFd;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::pipe;
use tokio::sync::mpsc;
use tokio_stream::{Stream, StreamExt};
use tonic::{Status, Streaming};

use super::auth::{act_for, Caller};
use super::ctx::Ctx;
use crate::runtime::{ExecControl, ExecRequest, ExecSession, RuntimeError};

/// The server side of the exec stream.
pub type ExecOutputStream = Pin<Box<dyn Stream<Item = Result<pb::ExecOutput, Status>> + Send>>;

/// Runs execs for the instances service.
pub struct ExecHandler {
    pub(crate) ctx: Arc<Ctx>,
}

fn nonblocking(fd: &OwnedFd) -> io::Result<()> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let flags = OFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFL)?);
    fcntl(fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    Ok(())
}

/// The reading side of a pipe or a pty master, driven by the tokio reactor.
fn reader(fd: OwnedFd) -> io::Result<pipe::Receiver> {
    nonblocking(&fd)?;
    pipe::Receiver::from_owned_fd_unchecked(fd)
}

/// The writing side of a pipe or a pty master, driven by the tokio reactor.
fn writer(fd: OwnedFd) -> io::Result<pipe::Sender> {
    nonblocking(&fd)?;
    pipe::Sender::from_owned_fd_unchecked(fd)
}

fn runtime_status(name: &str, e: RuntimeError) -> Status {
    let msg = e.to_string();
    if msg.contains("ENOENT") || msg.contains("EACCES") {
        return Status::invalid_argument(format!(
            "cannot run that in {name}: {msg} (check the command and --cwd exist inside the instance)"
        ));
    }
    if msg.contains("not running") || msg.contains("stopped") {
        Status::failed_precondition(format!(
            "instance {name} is not running: start it with `shoal start {name}`"
        ))
    } else {
        tracing::warn!(instance = name, error = %msg, "exec failed");
        Status::internal(format!("exec in {name} failed: {msg}"))
    }
}

/// Reads `fd` until EOF (or EIO, which is how a pty says its last writer is gone), sending
/// every chunk through `tx` wrapped by `wrap`.
async fn pump(
    fd: OwnedFd,
    tx: mpsc::Sender<Result<pb::ExecOutput, Status>>,
    wrap: fn(Vec<u8>) -> pb::exec_output::Output,
) {
    let Ok(mut io) = reader(fd) else { return };
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match io.read(&mut buf).await {
            Ok(0) => return,
            Ok(n) => {
                let msg = pb::ExecOutput {
                    output: Some(wrap(buf[..n].to_vec())),
                };
                if tx.send(Ok(msg)).await.is_err() {
                    return;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return,
        }
    }
}

/// Waits for the exit status on the control socket (one blocking-pool thread per exec).
async fn exit_code(control: ExecControl) -> Result<i32, RuntimeError> {
    match tokio::task::spawn_blocking(move || control.wait()).await {
        Ok(r) => r,
        Err(e) => Err(RuntimeError::Protocol {
            name: "-".into(),
            op: "exec",
            got: format!("wait task failed: {e}"),
        }),
    }
}

/// What an exec checks of its first message before it reads the cluster state: it must be
/// `start`, with a command and a valid instance name. Pure (the fuzz targets call it too).
pub fn check_exec_start(
    first: Option<pb::ExecInput>,
) -> Result<(pb::ExecStart, InstanceName), Status> {
    let start = match first {
        Some(pb::ExecInput {
            input: Some(pb::exec_input::Input::Start(s)),
        }) => s,
        _ => {
            return Err(Status::invalid_argument(
                "the first message of an exec must be `start`",
            ))
        }
    };
    if start.command.is_empty() {
        return Err(Status::invalid_argument("a command to run is required"));
    }
    let name =
        InstanceName::new(&start.instance).map_err(|e| Status::invalid_argument(e.to_string()))?;
    // What becomes a C string in the container must hold no NUL (the monitor would refuse
    // it with a bare EINVAL), and a name with '=' would set another variable.
    if let Some(arg) = start.command.iter().find(|a| a.contains('\0')) {
        return Err(Status::invalid_argument(format!(
            "command argument {arg:?} contains a NUL byte, which no program can receive"
        )));
    }
    for (k, v) in &start.env {
        if k.is_empty() || k.contains(['=', '\0']) || v.contains('\0') {
            return Err(Status::invalid_argument(format!(
                "environment variable {k:?}={v:?} is not valid: a name is not empty and has no '=', and neither holds a NUL byte"
            )));
        }
    }
    if start.cwd.contains('\0') {
        return Err(Status::invalid_argument(format!(
            "working directory {:?} contains a NUL byte",
            start.cwd
        )));
    }
    Ok((start, name))
}

impl ExecHandler {
    /// Relays the exec to the member that runs the instance, on behalf of `caller`.
    async fn forward(
        &self,
        location: &str,
        caller: &Caller,
        start: pb::ExecStart,
        mut input: Streaming<pb::ExecInput>,
    ) -> Result<ExecOutputStream, Status> {
        let addr = self
            .ctx
            .state
            .read(|s| s.members.get(location).map(|m| m.address.clone()))
            .ok_or_else(|| {
                Status::unavailable(format!("host {location} of this instance is not a member"))
            })?;
        let channel = self
            .ctx
            .state
            .node()
            .peers
            .channel(&addr)
            .map_err(|e| Status::unavailable(format!("connecting to {location}: {e}")))?;
        let (tx, rx) = mpsc::channel::<pb::ExecInput>(16);
        tx.send(pb::ExecInput {
            input: Some(pb::exec_input::Input::Start(start)),
        })
        .await
        .map_err(|_| Status::internal("exec relay closed"))?;
        tokio::spawn(async move {
            while let Some(Ok(msg)) = input.next().await {
                if tx.send(msg).await.is_err() {
                    return;
                }
            }
        });
        let mut req = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(rx));
        act_for(&mut req, caller);
        let mut client = pb::instances_client::InstancesClient::new(channel);
        let out = client.exec(req).await.map_err(|s| {
            if s.code() == tonic::Code::Unavailable {
                Status::unavailable(format!("host {location} is unreachable: {}", s.message()))
            } else {
                s
            }
        })?;
        Ok(Box::pin(out.into_inner()))
    }

    /// Starts the exec described by the stream's first message and returns the output.
    pub async fn exec(
        &self,
        caller: &Caller,
        mut input: Streaming<pb::ExecInput>,
    ) -> Result<ExecOutputStream, Status> {
        use pb::exec_input::Input;
        let (start, name) = match input.next().await {
            Some(Err(e)) => return Err(e),
            first => check_exec_start(first.and_then(Result::ok))?,
        };
        let lookup = || {
            self.ctx.state.read(|s| {
                s.instances
                    .get(&name)
                    .map(|i| (i.location.clone(), i.status.state, i.config.clone()))
            })
        };
        let mut found = lookup();
        if !matches!(&found, Some((_, ObservedState::Running, _))) {
            // This member's view may lag (an agent's always does a little): catch up with
            // the leader before refusing.
            if self.ctx.state.node().read_barrier().await.is_ok() {
                found = lookup();
            }
        }
        let Some((location, observed, config)) = found else {
            return Err(Status::not_found(format!("instance '{name}' not found")));
        };
        if location != self.ctx.node {
            return self.forward(&location, caller, start, input).await;
        }
        if observed == ObservedState::Frozen {
            return Err(Status::failed_precondition(format!(
                "instance {name} is frozen: unfreeze it with `shoal unfreeze {name}`"
            )));
        }
        if observed != ObservedState::Running {
            let word = format!("{observed:?}").to_lowercase();
            return Err(Status::failed_precondition(format!(
                "instance {name} is {word}, not running: start it with `shoal start {name}`"
            )));
        }
        let mut env = InstanceConfig::parse(&config)
            .map(|c| c.environment)
            .unwrap_or_default();
        let mut extra: Vec<(String, String)> = start.env.into_iter().collect();
        extra.sort();
        env.extend(extra);
        if start.tty && !env.iter().any(|(k, _)| k == "TERM") {
            // A terminal needs a type; the client normally sends its own.
            env.push(("TERM".into(), "xterm-256color".into()));
        }
        let req = ExecRequest {
            argv: start.command,
            env,
            cwd: (!start.cwd.is_empty()).then_some(start.cwd),
            uid: start.uid,
            gid: start.gid,
            tty: start.tty.then(|| {
                let rows = if start.rows == 0 {
                    24
                } else {
                    start.rows.min(u16::MAX as u32) as u16
                };
                let cols = if start.cols == 0 {
                    80
                } else {
                    start.cols.min(u16::MAX as u32) as u16
                };
                (rows, cols)
            }),
        };
        let rt = self.ctx.runtime.clone();
        let n = name.to_string();
        let session: ExecSession = tokio::task::spawn_blocking(move || rt.exec(&n, &req))
            .await
            .map_err(|e| Status::internal(format!("exec task: {e}")))?
            .map_err(|e| runtime_status(name.as_str(), e))?;
        let ExecSession {
            stdin,
            stdout,
            stderr,
            control,
            tty,
            ..
        } = session;
        let is_tty = tty.is_some();
        let (tx, rx) = mpsc::channel(32);

        // Client to command: stdin, close, resize.
        tokio::spawn(async move {
            let mut writer = writer(stdin).ok();
            while let Some(msg) = input.next().await {
                match msg.map(|m| m.input) {
                    Ok(Some(Input::Stdin(bytes))) => {
                        if let Some(w) = writer.as_mut() {
                            if w.write_all(&bytes).await.is_err() {
                                writer = None;
                            }
                        }
                    }
                    Ok(Some(Input::CloseStdin(_))) => {
                        if is_tty {
                            // A terminal has no end of file: send the EOF character.
                            if let Some(w) = writer.as_mut() {
                                let _ = w.write_all(b"\x04").await;
                            }
                        } else {
                            writer = None;
                        }
                    }
                    Ok(Some(Input::Resize(sz))) => {
                        if let Some(t) = &tty {
                            let _ = t.resize(
                                sz.rows.min(u16::MAX as u32) as u16,
                                sz.cols.min(u16::MAX as u32) as u16,
                            );
                        }
                    }
                    Ok(Some(Input::Start(_))) | Ok(None) => {}
                    Err(_) => break,
                }
            }
        });

        // Command to client: output, then the exit code.
        tokio::spawn(async move {
            let out = tokio::spawn(pump(stdout, tx.clone(), pb::exec_output::Output::Stdout));
            let err =
                stderr.map(|e| tokio::spawn(pump(e, tx.clone(), pb::exec_output::Output::Stderr)));
            let code = exit_code(control).await;
            let drain = async {
                let _ = out.await;
                if let Some(e) = err {
                    let _ = e.await;
                }
            };
            let _ = tokio::time::timeout(Duration::from_secs(1), drain).await;
            let msg = match code {
                Ok(c) => Ok(pb::ExecOutput {
                    output: Some(pb::exec_output::Output::ExitCode(c)),
                }),
                Err(e) => Err(Status::internal(format!("lost the exit status: {e}"))),
            };
            let _ = tx.send(msg).await;
        });
        Ok(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx)))
    }
}
