//! The workload: several clients, each a thread driving the CLI, mixing
//! - register writes (`image alias set K FINGERPRINT`) and reads (`image list`, a
//!   linearizable read; answers marked "may be stale" are left out), recorded for I1;
//! - instance operations on small busybox instances of its own (launch, stop, start,
//!   delete), recorded with their outcome.
//!
//! Every call is recorded with its start, end and outcome; a call that timed out or
//! failed for a reason other than a refusal counts as maybe applied.

use super::bed::Bed;
use super::Rng;
use crate::checker::{Call, Op, Outcome};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// What the clients do.
#[derive(Debug, Clone)]
pub struct WorkloadConfig {
    pub clients: usize,
    /// Register keys are `{key_prefix}{0..keys}`.
    pub key_prefix: String,
    pub keys: u64,
    /// Percent of operations that are instance operations (0: registers only).
    pub instance_percent: u64,
    /// Instances per client (named `{key_prefix}c{client}-{k}`).
    pub instances_per_client: u64,
    pub seed: u64,
}

impl Default for WorkloadConfig {
    fn default() -> Self {
        Self {
            clients: 3,
            key_prefix: "r".into(),
            keys: 16,
            instance_percent: 15,
            instances_per_client: 2,
            seed: 1,
        }
    }
}

/// One instance operation as recorded.
#[derive(Debug, Clone)]
pub struct InstanceCall {
    pub client: usize,
    pub op: String,
    pub name: String,
    pub start: u64,
    pub end: u64,
    pub outcome: Outcome,
    pub error: String,
}

/// Everything the clients recorded.
#[derive(Debug, Default, Clone)]
pub struct History {
    pub registers: Vec<Call>,
    pub instances: Vec<InstanceCall>,
}

impl History {
    /// Acknowledged register writes.
    pub fn acked_writes(&self) -> usize {
        self.registers
            .iter()
            .filter(|c| c.outcome == Outcome::Ok && matches!(c.op, Op::Write(_)))
            .count()
    }

    /// Calls of any kind.
    pub fn calls(&self) -> usize {
        self.registers.len() + self.instances.len()
    }
}

/// Running clients.
pub struct Workload {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    history: Arc<Mutex<History>>,
}

/// What a client believes about one of its instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Belief {
    Absent,
    Running,
    Stopped,
    /// An operation on it did not say how it ended.
    Unknown,
}

fn refused(stderr: &str) -> bool {
    [
        "invalid",
        "not found",
        "already exists",
        "is stopped",
        "is running",
    ]
    .iter()
    .any(|w| stderr.contains(w))
}

impl Workload {
    /// Starts the clients.
    pub fn start(bed: &Arc<Bed>, cfg: WorkloadConfig) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let history = Arc::new(Mutex::new(History::default()));
        let threads = (0..cfg.clients)
            .map(|id| {
                let (bed, stop, history, cfg) =
                    (bed.clone(), stop.clone(), history.clone(), cfg.clone());
                std::thread::spawn(move || client(id, &bed, &stop, &history, &cfg))
            })
            .collect();
        Self {
            stop,
            threads,
            history,
        }
    }

    /// Stops the clients (each finishes its call in flight) and returns the history.
    pub fn finish(self) -> History {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads {
            let _ = t.join();
        }
        let h = self.history.lock().unwrap().clone();
        h
    }
}

fn client(id: usize, bed: &Bed, stop: &AtomicBool, history: &Mutex<History>, cfg: &WorkloadConfig) {
    let mut rng = Rng::new(cfg.seed.wrapping_mul(1000) + id as u64 + 1);
    let names: Vec<String> = (0..cfg.instances_per_client)
        .map(|k| format!("{}c{id}-{k}", cfg.key_prefix))
        .collect();
    let mut beliefs = vec![Belief::Absent; names.len()];
    while !stop.load(Ordering::SeqCst) {
        if !names.is_empty() && rng.below(100) < cfg.instance_percent {
            let k = rng.below(names.len() as u64) as usize;
            let call = instance_op(id, bed, &mut rng, &names[k], &mut beliefs[k]);
            history.lock().unwrap().instances.push(call);
            continue;
        }
        // Keys change every 8 s, so that no key gathers more calls than the checker's
        // exact search handles in a long round.
        let epoch = bed.t0.elapsed().as_secs() / 8;
        let key = format!("{}{epoch}-{}", cfg.key_prefix, rng.below(cfg.keys));
        let start = bed.now_us();
        if rng.below(2) == 0 {
            let v = rng.pick(&bed.values).clone();
            let out = bed.cli(
                &["image", "alias", "set", &key, &v],
                Duration::from_secs(20),
            );
            let end = bed.now_us();
            let outcome = match &out {
                Some(o) if o.code == 0 => Outcome::Ok,
                Some(o) if refused(&o.stderr) => Outcome::Failed,
                _ => Outcome::Unknown,
            };
            history.lock().unwrap().registers.push(Call {
                key,
                op: Op::Write(v),
                start,
                end,
                outcome,
            });
        } else {
            let out = bed.cli(
                &["image", "list", "--format", "json"],
                Duration::from_secs(20),
            );
            let end = bed.now_us();
            let Some(out) = out else { continue };
            if out.code != 0 || out.stderr.contains("may be stale") {
                continue;
            }
            let Ok(images) = serde_json::from_str::<serde_json::Value>(&out.stdout) else {
                continue;
            };
            let seen = images.as_array().into_iter().flatten().find_map(|i| {
                i["aliases"]
                    .as_array()
                    .is_some_and(|a| a.iter().any(|a| a == key.as_str()))
                    .then(|| i["fingerprint"].as_str().unwrap_or("").to_string())
            });
            history.lock().unwrap().registers.push(Call {
                key,
                op: Op::Read(seen),
                start,
                end,
                outcome: Outcome::Ok,
            });
        }
    }
}

fn instance_op(
    id: usize,
    bed: &Bed,
    rng: &mut Rng,
    name: &str,
    belief: &mut Belief,
) -> InstanceCall {
    let (op, args): (&str, Vec<&str>) = match *belief {
        Belief::Absent => (
            "launch",
            vec![
                "launch",
                "busybox",
                name,
                "-c",
                "limits.memory=32MiB",
                "-c",
                "limits.processes=50",
            ],
        ),
        Belief::Running if rng.below(2) == 0 => ("stop", vec!["stop", "--force", name]),
        Belief::Stopped if rng.below(2) == 0 => ("start", vec!["start", name]),
        _ => ("delete", vec!["delete", "--force", name]),
    };
    let start = bed.now_us();
    let out = bed.cli(&args, Duration::from_secs(60));
    let end = bed.now_us();
    let (outcome, error) = match &out {
        Some(o) if o.code == 0 => (Outcome::Ok, String::new()),
        Some(o) if refused(&o.stderr) => (Outcome::Failed, o.stderr.trim().to_string()),
        Some(o) => (Outcome::Unknown, o.stderr.trim().to_string()),
        None => (Outcome::Unknown, "timed out".into()),
    };
    *belief = match (op, outcome) {
        ("launch", Outcome::Ok) | ("start", Outcome::Ok) => Belief::Running,
        ("stop", Outcome::Ok) => Belief::Stopped,
        ("delete", Outcome::Ok) => Belief::Absent,
        ("delete", Outcome::Failed) if error.contains("not found") => Belief::Absent,
        ("launch", Outcome::Failed) if error.contains("already exists") => Belief::Unknown,
        _ => Belief::Unknown,
    };
    InstanceCall {
        client: id,
        op: op.into(),
        name: name.into(),
        start,
        end,
        outcome,
        error,
    }
}
