//! The agents' watch streams served by this member, and one dispatcher that tells each
//! stream which records of its view changed.
//!
//! Each applied batch is read once: the records it touched (from the state machine's change
//! log) go to the streams they concern: an instance to the agent it is placed on (and the
//! one it left); members, images, aliases, scheduler options, placement groups and client
//! identities (revocations) to all.
//! A stream that nothing concerns is not woken. So a placement costs work for one agent,
//! not for every agent this member serves.

use shoal_raft::consensus::SharedState;
use shoal_raft::model::StateKey;
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use tokio::sync::Notify;

/// What a stream is owed.
#[derive(Debug, Default)]
pub struct Owed {
    /// Records changed since the stream last took them.
    pub keys: BTreeSet<StateKey>,
    /// The revision up to which `keys` is complete.
    pub upto: u64,
    /// The change log could not say what changed: send the whole view.
    pub whole: bool,
}

struct Stream {
    agent: String,
    owed: Owed,
    notify: Arc<Notify>,
}

#[derive(Default)]
struct Inner {
    streams: HashMap<u64, Stream>,
    next: u64,
    /// Where each instance was placed when last seen (so the agent it left is told).
    locations: HashMap<String, String>,
    /// Revision up to which batches were dispatched.
    seen: u64,
    dispatching: bool,
}

/// The registry of watch streams of one member.
#[derive(Default)]
pub struct WatchHub {
    inner: Arc<Mutex<Inner>>,
}

/// A registered stream; unregisters itself when dropped.
pub struct Registration {
    inner: Arc<Mutex<Inner>>,
    id: u64,
    pub notify: Arc<Notify>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        lock(&self.inner).streams.remove(&self.id);
    }
}

fn lock(m: &Mutex<Inner>) -> std::sync::MutexGuard<'_, Inner> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Registration {
    /// Takes what the stream is owed (and resets it).
    pub fn take(&self) -> Owed {
        let mut inner = lock(&self.inner);
        let seen = inner.seen;
        match inner.streams.get_mut(&self.id) {
            Some(s) => {
                let mut owed = std::mem::take(&mut s.owed);
                owed.upto = owed.upto.max(seen);
                owed
            }
            None => Owed::default(),
        }
    }

    /// The revision up to which changes were dispatched.
    pub fn dispatched(&self) -> u64 {
        lock(&self.inner).seen
    }
}

impl WatchHub {
    /// Registers a stream for agent `agent` whose view is current as of `revision` (the
    /// dispatcher is started on first use).
    pub fn register(&self, shared: &SharedState, agent: &str) -> Registration {
        let notify = Arc::new(Notify::new());
        let mut inner = lock(&self.inner);
        inner.next += 1;
        let id = inner.next;
        inner.streams.insert(
            id,
            Stream {
                agent: agent.to_string(),
                owed: Owed::default(),
                notify: notify.clone(),
            },
        );
        if !inner.dispatching {
            inner.dispatching = true;
            inner.seen = shared.revision();
            inner.locations = locations(shared);
            tokio::spawn(dispatch(self.inner.clone(), shared.clone()));
        }
        Registration {
            inner: self.inner.clone(),
            id,
            notify,
        }
    }
}

fn locations(shared: &SharedState) -> HashMap<String, String> {
    shared.read(|s| {
        s.instances
            .iter()
            .map(|(n, i)| (n.to_string(), i.location.clone()))
            .collect()
    })
}

async fn dispatch(inner: Arc<Mutex<Inner>>, shared: SharedState) {
    let mut rx = shared.subscribe();
    while rx.changed().await.is_ok() {
        let seen = lock(&inner).seen;
        match shared.changes_since(seen) {
            None => {
                let now = locations(&shared);
                let mut inner = lock(&inner);
                inner.locations = now;
                inner.seen = shared.revision();
                for s in inner.streams.values_mut() {
                    s.owed.whole = true;
                    s.notify.notify_one();
                }
            }
            Some((upto, keys)) => {
                // Where the touched instances are now.
                let now: Vec<(String, Option<String>)> = shared.read(|s| {
                    keys.iter()
                        .filter_map(|k| match k {
                            StateKey::Instance(n) => Some(n.clone()),
                            _ => None,
                        })
                        .map(|n| {
                            let loc = shoal_raft::InstanceName::new(&n)
                                .ok()
                                .and_then(|name| s.instances.get(&name))
                                .map(|i| i.location.clone());
                            (n, loc)
                        })
                        .collect()
                });
                let mut guard = lock(&inner);
                let inner = &mut *guard;
                inner.seen = upto;
                // Agents each instance concerns: where it is and where it was.
                let mut for_agent: HashMap<String, Vec<StateKey>> = HashMap::new();
                for (n, loc) in now {
                    let old = match &loc {
                        Some(l) => inner.locations.insert(n.clone(), l.clone()),
                        None => inner.locations.remove(&n),
                    };
                    for agent in [loc, old].into_iter().flatten() {
                        for_agent
                            .entry(agent)
                            .or_default()
                            .push(StateKey::Instance(n.clone()));
                    }
                }
                let global: Vec<&StateKey> = keys
                    .iter()
                    .filter(|k| {
                        matches!(
                            k,
                            StateKey::Member(_)
                                | StateKey::Image(_)
                                | StateKey::Alias(_)
                                | StateKey::Scheduler
                                | StateKey::PlacementGroups
                                // Revocations reach agents too.
                                | StateKey::Identity(_)
                        )
                    })
                    .collect();
                for s in inner.streams.values_mut() {
                    let mine = for_agent.get(&s.agent);
                    if global.is_empty() && mine.is_none() {
                        continue;
                    }
                    s.owed.keys.extend(global.iter().map(|k| (*k).clone()));
                    s.owed.keys.extend(mine.into_iter().flatten().cloned());
                    s.owed.upto = upto;
                    s.notify.notify_one();
                }
            }
        }
    }
}
