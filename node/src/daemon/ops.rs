//! Long-running operations: a mutating call returns as soon as its change is committed, with
//! an operation that a client can wait on (`Operations.Wait`) to learn the outcome.
//!
//! An instance operation completes when the instance's host reports the desired state for
//! the revision the call committed, fails when the host reports an error for it, and gives
//! up after a deadline.

use shoal_proto::api as pb;
use shoal_raft::{ClusterState, DesiredState, InstanceName, ObservedState};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{watch, Notify};

use super::state::StateHandle;

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// How long finished operations stay queryable.
const KEEP_DONE: Duration = Duration::from_secs(600);
/// How long an instance operation may take before it is reported as failed.
const OPERATION_DEADLINE: Duration = Duration::from_secs(600);

/// The registry of this member's operations.
#[derive(Clone, Default)]
pub struct Operations {
    ops: Arc<Mutex<HashMap<String, watch::Sender<pb::Operation>>>>,
    next: Arc<AtomicU64>,
    waiters: Arc<Mutex<Waiters>>,
}

/// Operations waiting for an instance to change, by instance name. One dispatcher task
/// reads which records each applied batch touched and wakes only the operations on those
/// instances: ten thousand launches in flight must not each re-check the state on every
/// write.
#[derive(Default)]
struct Waiters {
    by_name: HashMap<String, Vec<(u64, Arc<Notify>)>>,
    next: u64,
    dispatching: bool,
}

/// A registration in [`Waiters`]; unregisters itself when dropped.
struct Waiting {
    waiters: Arc<Mutex<Waiters>>,
    name: String,
    id: u64,
    notify: Arc<Notify>,
}

impl Drop for Waiting {
    fn drop(&mut self) {
        let mut w = self.waiters.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(list) = w.by_name.get_mut(&self.name) {
            list.retain(|(id, _)| *id != self.id);
            if list.is_empty() {
                w.by_name.remove(&self.name);
            }
        }
    }
}

impl Operations {
    /// Registers interest in changes to instance `name` (starting the dispatcher on first
    /// use).
    fn wait_for_changes(&self, state: &StateHandle, name: &str) -> Waiting {
        let notify = Arc::new(Notify::new());
        let mut w = self.waiters.lock().unwrap_or_else(|p| p.into_inner());
        w.next += 1;
        let id = w.next;
        w.by_name
            .entry(name.to_string())
            .or_default()
            .push((id, notify.clone()));
        if !w.dispatching {
            w.dispatching = true;
            tokio::spawn(dispatch(self.waiters.clone(), state.clone()));
        }
        Waiting {
            waiters: self.waiters.clone(),
            name: name.to_string(),
            id,
            notify,
        }
    }
}

/// Wakes the waiters of every instance a batch touched (all of them when the change log
/// cannot tell, e.g. after a snapshot or on an agent).
async fn dispatch(waiters: Arc<Mutex<Waiters>>, state: StateHandle) {
    let shared = state.node().shared.clone();
    let mut rx = shared.subscribe();
    let mut seen = shared.revision();
    while rx.changed().await.is_ok() {
        let changes = shared.changes_since(seen);
        let w = waiters.lock().unwrap_or_else(|p| p.into_inner());
        match changes {
            Some((upto, keys)) => {
                seen = upto;
                for key in keys {
                    if let shoal_raft::model::StateKey::Instance(n) = key {
                        for (_, notify) in w.by_name.get(&n).into_iter().flatten() {
                            notify.notify_one();
                        }
                    }
                }
            }
            None => {
                seen = shared.revision();
                for (_, notify) in w.by_name.values().flatten() {
                    notify.notify_one();
                }
            }
        }
    }
}

/// Handle to update one operation.
pub struct OpHandle {
    tx: watch::Sender<pb::Operation>,
    ops: Operations,
}

impl OpHandle {
    /// The operation as it is now.
    pub fn snapshot(&self) -> pb::Operation {
        self.tx.borrow().clone()
    }

    /// Records a progress line.
    pub fn progress(&self, message: &str) {
        self.tx.send_modify(|o| {
            if o.message != message {
                o.message = message.to_string();
                o.updated_at_ms = now_ms();
            }
        });
    }

    fn finish(self, status: pb::OperationStatus, message: &str) {
        self.tx.send_modify(|o| {
            o.status = status as i32;
            o.message = message.to_string();
            o.updated_at_ms = now_ms();
        });
        let id = self.tx.borrow().id.clone();
        let ops = self.ops.clone();
        tokio::spawn(async move {
            tokio::time::sleep(KEEP_DONE).await;
            ops.ops
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&id);
        });
    }

    /// Marks the operation successful.
    pub fn succeed(self, message: &str) {
        self.finish(pb::OperationStatus::Success, message)
    }

    /// Marks the operation failed.
    pub fn fail(self, message: &str) {
        self.finish(pb::OperationStatus::Failure, message)
    }
}

impl Operations {
    /// Registers a new running operation.
    pub fn start(&self, description: String, instance: &str) -> OpHandle {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let id = format!("{:x}-{n}", now_ms());
        let op = pb::Operation {
            id: id.clone(),
            description,
            status: pb::OperationStatus::Running as i32,
            message: String::new(),
            instance: instance.to_string(),
            created_at_ms: now_ms(),
            updated_at_ms: now_ms(),
        };
        let (tx, _) = watch::channel(op);
        self.ops
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, tx.clone());
        OpHandle {
            tx,
            ops: self.clone(),
        }
    }

    /// A receiver for operation `id`.
    pub fn watch(&self, id: &str) -> Option<watch::Receiver<pb::Operation>> {
        self.ops
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .map(|tx| tx.subscribe())
    }
}

/// What an instance operation waits for.
#[derive(Debug, Clone, Copy)]
pub enum Goal {
    /// The instance reports this state for revision `revision` or later.
    State(ObservedState),
    /// The instance is gone.
    Gone,
}

/// Outcome of checking an instance against a goal.
pub(crate) enum Check {
    Done(String),
    Failed(String),
    Waiting(String),
}

pub(crate) fn check(state: &ClusterState, name: &InstanceName, revision: u64, goal: Goal) -> Check {
    let Some(inst) = state.instances.get(name) else {
        return match goal {
            Goal::Gone => Check::Done(format!("{name} deleted")),
            Goal::State(_) => Check::Failed(format!("instance {name} was deleted")),
        };
    };
    if inst.desired_revision > revision && inst.desired == DesiredState::Deleted {
        if let Goal::State(_) = goal {
            return Check::Failed(format!("instance {name} is being deleted"));
        }
    }
    let s = &inst.status;
    let caught_up = s.observed_revision >= revision;
    match goal {
        Goal::State(want) if caught_up && s.state == want => {
            Check::Done(format!("{name} is {}", format!("{want:?}").to_lowercase()))
        }
        _ if caught_up && s.state == ObservedState::Error => Check::Failed(s.message.clone()),
        _ => Check::Waiting(if s.message.is_empty() {
            format!("waiting for {} ({:?})", inst.location, s.state).to_lowercase()
        } else {
            s.message.clone()
        }),
    }
}

/// Completes `op` when instance `name` reaches `goal` for `revision`.
pub fn track_instance(
    state: StateHandle,
    op: OpHandle,
    name: InstanceName,
    revision: u64,
    goal: Goal,
) {
    tokio::spawn(async move {
        let waiting = op.ops.wait_for_changes(&state, name.as_str());
        let deadline = tokio::time::Instant::now() + OPERATION_DEADLINE;
        loop {
            match state.read(|s| check(s, &name, revision, goal)) {
                Check::Done(m) => return op.succeed(&m),
                Check::Failed(m) => return op.fail(&m),
                Check::Waiting(m) => op.progress(&m),
            }
            if tokio::time::timeout_at(deadline, waiting.notify.notified())
                .await
                .is_err()
            {
                return op.fail(&format!(
                    "timed out after {}s waiting for {name}",
                    OPERATION_DEADLINE.as_secs()
                ));
            }
        }
    });
}
