//! Following an operation to its end.
//!
//! Life-cycle calls return an `Operation` once the change is committed; the
//! outcome arrives later. Unless `--no-wait`, commands stream
//! `Operations.Wait`, echo progress to stderr when it is a terminal, and fail
//! with the operation's message if it fails.

use std::io::IsTerminal;

use anyhow::{bail, Result};
use futures::StreamExt;
use shoal_proto::api::{GetOperationRequest, Operation, OperationStatus, WaitOperationRequest};

use crate::connect::Connection;
use crate::error::status_error;

/// Where an operation stands, from the client's point of view.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    Running,
    Succeeded,
    Failed(String),
}

/// Classifies an operation; a failure carries the message to print.
pub(crate) fn outcome(op: &Operation) -> Outcome {
    match OperationStatus::try_from(op.status) {
        Ok(OperationStatus::Success) => Outcome::Succeeded,
        Ok(OperationStatus::Failure) => Outcome::Failed(if op.message.trim().is_empty() {
            if op.description.is_empty() {
                format!("operation {} failed", op.id)
            } else {
                format!("{} failed", op.description)
            }
        } else {
            op.message.trim().to_string()
        }),
        Ok(OperationStatus::Running) | Ok(OperationStatus::Unspecified) | Err(_) => {
            Outcome::Running
        }
    }
}

/// Waits for `op` to finish (seconds: 0 lets the server choose, 300).
pub(crate) async fn wait(conn: &Connection, op: Operation, timeout_seconds: u32) -> Result<()> {
    wait_final(conn, op, timeout_seconds).await.map(|_| ())
}

/// Waits for `op` to finish and returns its final message.
pub(crate) async fn wait_final(
    conn: &Connection,
    op: Operation,
    timeout_seconds: u32,
) -> Result<String> {
    let progress = std::io::stderr().is_terminal();
    let mut last = String::new();
    let mut current = op;
    let mut client = conn.operations();
    if outcome(&current) == Outcome::Running {
        let mut stream = client
            .wait(WaitOperationRequest {
                id: current.id.clone(),
                timeout_seconds,
            })
            .await
            .map_err(|s| status_error(s, conn))?
            .into_inner();
        while let Some(update) = stream.next().await {
            let update = update.map_err(|s| status_error(s, conn))?;
            if progress && update.status == OperationStatus::Running as i32 {
                let m = update.message.trim();
                if !m.is_empty() && m != last {
                    eprintln!("{m}");
                    last = m.to_string();
                }
            }
            current = update;
            if outcome(&current) != Outcome::Running {
                break;
            }
        }
        if outcome(&current) == Outcome::Running {
            // The stream ended early; ask once more.
            current = client
                .get(GetOperationRequest {
                    id: current.id.clone(),
                })
                .await
                .map_err(|s| status_error(s, conn))?
                .into_inner();
        }
    }
    match outcome(&current) {
        Outcome::Succeeded => Ok(current.message.clone()),
        Outcome::Failed(m) => bail!("{m}"),
        Outcome::Running => bail!(
            "operation {} ({}) has not finished: check later with `shoal list`",
            current.id,
            current.description
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(status: OperationStatus, message: &str) -> Operation {
        Operation {
            id: "op-1".into(),
            description: "start instance c1".into(),
            status: status as i32,
            message: message.into(),
            instance: "c1".into(),
            created_at_ms: 1,
            updated_at_ms: 2,
        }
    }

    #[test]
    fn outcomes() {
        assert_eq!(
            outcome(&op(OperationStatus::Running, "x")),
            Outcome::Running
        );
        assert_eq!(
            outcome(&op(OperationStatus::Unspecified, "")),
            Outcome::Running
        );
        assert_eq!(
            outcome(&op(OperationStatus::Success, "done")),
            Outcome::Succeeded
        );
        assert_eq!(
            outcome(&op(
                OperationStatus::Failure,
                "image busybox not found on node-1"
            )),
            Outcome::Failed("image busybox not found on node-1".into())
        );
        assert_eq!(
            outcome(&op(OperationStatus::Failure, " ")),
            Outcome::Failed("start instance c1 failed".into())
        );
    }
}
