//! The `Operations` service: look up and wait on long-running calls.

use shoal_proto::api as pb;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use super::auth::require;
use super::ctx::Ctx;
use crate::cluster::pki::Role;

/// The operations service.
pub struct OperationsService {
    pub(crate) ctx: Arc<Ctx>,
}

/// A boxed server stream.
pub type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

type OpStream = BoxStream<pb::Operation>;

fn done(op: &pb::Operation) -> bool {
    op.status != pb::OperationStatus::Running as i32
}

#[tonic::async_trait]
impl pb::operations_server::Operations for OperationsService {
    async fn get(
        &self,
        req: Request<pb::GetOperationRequest>,
    ) -> Result<Response<pb::Operation>, Status> {
        require(&req, Role::Viewer, "read operations")?;
        let id = &req.get_ref().id;
        let rx = self
            .ctx
            .ops
            .watch(id)
            .ok_or_else(|| Status::not_found(format!("operation '{id}' not found")))?;
        let op = rx.borrow().clone();
        Ok(Response::new(op))
    }

    type WaitStream = OpStream;

    async fn wait(
        &self,
        req: Request<pb::WaitOperationRequest>,
    ) -> Result<Response<Self::WaitStream>, Status> {
        require(&req, Role::Viewer, "wait on operations")?;
        let r = req.into_inner();
        let mut rx = self
            .ctx
            .ops
            .watch(&r.id)
            .ok_or_else(|| Status::not_found(format!("operation '{}' not found", r.id)))?;
        let secs = if r.timeout_seconds == 0 {
            300
        } else {
            r.timeout_seconds
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs as u64);
        let stream = async_stream(move |tx| async move {
            loop {
                let op = rx.borrow_and_update().clone();
                let finished = done(&op);
                if tx.send(Ok(op)).await.is_err() || finished {
                    return;
                }
                match tokio::time::timeout_at(deadline, rx.changed()).await {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => return,
                    Err(_) => {
                        let _ = tx
                            .send(Err(Status::deadline_exceeded(format!(
                                "operation still running after {secs}s; check it later with its id {}",
                                r.id
                            ))))
                            .await;
                        return;
                    }
                }
            }
        });
        Ok(Response::new(stream))
    }
}

/// A stream fed by a task through a channel.
pub fn async_stream<T, F, Fut>(f: F) -> Pin<Box<dyn Stream<Item = T> + Send>>
where
    T: Send + 'static,
    F: FnOnce(tokio::sync::mpsc::Sender<T>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(f(tx));
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
}
