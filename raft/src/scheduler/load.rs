//! The load index: per host, what its instances reserve; per placement group, where its
//! instances are. Derived from `ClusterState::instances`, cached in the state and kept in
//! step by `apply`, so a placement reads it in O(1) per host instead of scanning instances.
//!
//! Every replica builds and maintains its own copy; it always equals a fresh `build` of the
//! state (a test checks this), so the plan re-check at apply stays deterministic.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::OnceLock;

use super::request::Placement;
use crate::model::{
    touched, ClusterState, Command, DesiredState, Instance, InstanceConfig, InstanceName,
    SchedulerConfig, StateKey,
};

/// What an instance reserves on its host.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Demand {
    pub cpu_millicores: u64,
    pub memory_bytes: u64,
    pub processes: u64,
}

impl Demand {
    /// The instance's limits, or the scheduler's defaults for those it does not set.
    pub fn of(config: &InstanceConfig, defaults: &SchedulerConfig) -> Self {
        Self {
            cpu_millicores: config
                .cpu_millicores
                .unwrap_or(defaults.default_cpu_millicores),
            memory_bytes: config.memory_bytes.unwrap_or(defaults.default_memory_bytes),
            processes: config.processes.unwrap_or(defaults.default_processes),
        }
    }

    fn add(&mut self, other: &Demand) {
        self.cpu_millicores = self.cpu_millicores.saturating_add(other.cpu_millicores);
        self.memory_bytes = self.memory_bytes.saturating_add(other.memory_bytes);
        self.processes = self.processes.saturating_add(other.processes);
    }

    fn sub(&mut self, other: &Demand) {
        self.cpu_millicores = self.cpu_millicores.saturating_sub(other.cpu_millicores);
        self.memory_bytes = self.memory_bytes.saturating_sub(other.memory_bytes);
        self.processes = self.processes.saturating_sub(other.processes);
    }
}

/// What the instances placed on a host reserve.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HostLoad {
    /// Sum of their demands.
    pub reserved: Demand,
    /// How many there are (not counting those being deleted).
    pub instances: u32,
}

/// One instance's share of the index.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    host: String,
    demand: Demand,
    group: Option<String>,
}

/// A fast, non-cryptographic hash (the Fx hash of rustc) for the index's maps: `place` looks
/// up every host once per placement, and SipHash would dominate. Keys are member and instance
/// names that operators choose, so flooding is not a concern.
#[derive(Debug, Clone, Copy, Default)]
struct FxHasher(u64);

impl FxHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.add(u64::from_le_bytes([
                c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7],
            ]));
        }
        let mut last = [0u8; 8];
        let rest = chunks.remainder();
        last[..rest.len()].copy_from_slice(rest);
        self.add(u64::from_le_bytes(last) ^ (rest.len() as u64) << 56);
    }

    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

type FxMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

/// Per-host load and per-placement-group hosts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadIndex {
    hosts: FxMap<String, HostLoad>,
    /// Placement group to host to how many of its instances are there.
    groups: FxMap<String, BTreeMap<String, u32>>,
    entries: FxMap<InstanceName, Entry>,
}

/// An instance's share, or none if it is being deleted.
fn entry_of(inst: &Instance, defaults: &SchedulerConfig) -> Option<Entry> {
    if inst.desired == DesiredState::Deleted {
        return None;
    }
    // The config was validated when the instance was created.
    let config = InstanceConfig::parse(&inst.config).unwrap_or_default();
    Some(Entry {
        host: inst.location.clone(),
        demand: Demand::of(&config, defaults),
        group: config.placement_group,
    })
}

impl LoadIndex {
    /// Builds the index of `state` in one pass over its instances.
    pub fn build(state: &ClusterState) -> Self {
        let mut index = Self::default();
        for inst in state.instances.values() {
            if let Some(entry) = entry_of(inst, &state.scheduler) {
                index.insert(inst.name.clone(), entry);
            }
        }
        index
    }

    /// What the instances on `host` reserve.
    pub fn host(&self, host: &str) -> HostLoad {
        self.hosts.get(host).copied().unwrap_or_default()
    }

    /// How many instances of placement group `group` are on `host`.
    pub fn group_on(&self, group: &str, host: &str) -> u32 {
        self.groups
            .get(group)
            .and_then(|hosts| hosts.get(host))
            .copied()
            .unwrap_or(0)
    }

    /// The hosts that run instances of `group`, with how many each.
    pub fn group_hosts(&self, group: &str) -> impl Iterator<Item = (&str, u32)> + '_ {
        self.groups
            .get(group)
            .into_iter()
            .flat_map(|hosts| hosts.iter().map(|(h, n)| (h.as_str(), *n)))
    }

    fn insert(&mut self, name: InstanceName, entry: Entry) {
        let host = self.hosts.entry(entry.host.clone()).or_default();
        host.reserved.add(&entry.demand);
        host.instances += 1;
        if let Some(group) = &entry.group {
            *self
                .groups
                .entry(group.clone())
                .or_default()
                .entry(entry.host.clone())
                .or_default() += 1;
        }
        self.entries.insert(name, entry);
    }

    fn remove(&mut self, name: &InstanceName) {
        let Some(entry) = self.entries.remove(name) else {
            return;
        };
        if let Some(host) = self.hosts.get_mut(&entry.host) {
            host.reserved.sub(&entry.demand);
            host.instances -= 1;
            if host.instances == 0 {
                self.hosts.remove(&entry.host);
            }
        }
        if let Some(group) = &entry.group {
            if let Some(hosts) = self.groups.get_mut(group) {
                if let Some(n) = hosts.get_mut(&entry.host) {
                    *n -= 1;
                    if *n == 0 {
                        hosts.remove(&entry.host);
                    }
                }
                if hosts.is_empty() {
                    self.groups.remove(group);
                }
            }
        }
    }

    /// Brings the instance `name` up to date with `state`.
    fn refresh(
        &mut self,
        name: &str,
        state_instances: &BTreeMap<InstanceName, Instance>,
        defaults: &SchedulerConfig,
    ) {
        let Ok(key) = InstanceName::new(name) else {
            return;
        };
        let entry = state_instances
            .get(&key)
            .and_then(|inst| entry_of(inst, defaults));
        if self.entries.get(&key) == entry.as_ref() {
            return;
        }
        self.remove(&key);
        if let Some(entry) = entry {
            self.insert(key, entry);
        }
    }
}

/// Placements planned but not applied yet. A leader that plans several placements before
/// their commands are applied (to fill Raft batches) records each plan here and releases it
/// once the command is applied or refused; `place_with` counts both, so concurrent plans see
/// each other instead of all choosing the same least-loaded host. (Between the apply and the
/// release a plan counts twice, which is only conservative.)
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InFlight(LoadIndex);

impl InFlight {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records the plan to place `instance` as `placement` says.
    pub fn reserve(&mut self, instance: &str, placement: &Placement) {
        let Ok(key) = InstanceName::new(instance) else {
            return;
        };
        self.0.remove(&key);
        self.0.insert(
            key,
            Entry {
                host: placement.host.clone(),
                demand: placement.demand,
                group: placement.group.clone(),
            },
        );
    }

    /// Forgets the plan for `instance` (its command was applied or refused).
    pub fn release(&mut self, instance: &str) {
        if let Ok(key) = InstanceName::new(instance) {
            self.0.remove(&key);
        }
    }

    /// How many plans are in flight.
    pub fn len(&self) -> usize {
        self.0.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.entries.is_empty()
    }
}

/// The load a placement sees: what is applied, plus the plans in flight if any.
#[derive(Debug, Clone, Copy)]
pub(crate) struct View<'a> {
    applied: &'a LoadIndex,
    in_flight: Option<&'a LoadIndex>,
}

impl<'a> View<'a> {
    pub(crate) fn new(applied: &'a LoadIndex, in_flight: Option<&'a InFlight>) -> Self {
        Self {
            applied,
            in_flight: in_flight.filter(|f| !f.is_empty()).map(|f| &f.0),
        }
    }

    pub(crate) fn host(&self, host: &str) -> HostLoad {
        let mut load = self.applied.host(host);
        if let Some(more) = self.in_flight.map(|f| f.host(host)) {
            load.reserved.add(&more.reserved);
            load.instances += more.instances;
        }
        load
    }

    pub(crate) fn group_on(&self, group: &str, host: &str) -> u32 {
        self.applied.group_on(group, host) + self.in_flight.map_or(0, |f| f.group_on(group, host))
    }

    /// Hosts running instances of `group`, with how many (a host may appear twice).
    pub(crate) fn group_hosts(&self, group: &'a str) -> impl Iterator<Item = (&'a str, u32)> + 'a {
        let more = self
            .in_flight
            .into_iter()
            .flat_map(move |f| f.group_hosts(group));
        self.applied.group_hosts(group).chain(more)
    }
}

/// The cache of the load index inside `ClusterState`. Derived data: it always compares equal,
/// is not serialized, and a clone carries what is built.
#[derive(Clone, Default)]
pub struct LoadCache(OnceLock<LoadIndex>);

impl PartialEq for LoadCache {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for LoadCache {}

impl fmt::Debug for LoadCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.get() {
            Some(index) => write!(f, "LoadCache({} instances)", index.entries.len()),
            None => f.write_str("LoadCache(not built)"),
        }
    }
}

impl ClusterState {
    /// The load index, built on first use.
    pub fn load_index(&self) -> &LoadIndex {
        self.load.0.get_or_init(|| LoadIndex::build(self))
    }
}

/// Keeps a built index in step across one `apply`: the records a command touches are named
/// before it runs (as the store does), and those instances are refreshed after. The index may
/// also be built during the command (the placement re-check reads it), from the state before
/// the change, so the keys are always taken.
pub(crate) struct LoadRefresh(Vec<StateKey>);

impl LoadRefresh {
    pub(crate) fn before(state: &ClusterState, cmd: &Command) -> Self {
        Self(touched(state, cmd))
    }

    pub(crate) fn after(self, state: &mut ClusterState) {
        let keys = self.0;
        if keys.contains(&StateKey::Scheduler) {
            // The defaults an instance without limits counts as may have changed.
            state.load = LoadCache::default();
            return;
        }
        let ClusterState {
            load,
            instances,
            scheduler,
            ..
        } = state;
        let Some(index) = load.0.get_mut() else {
            return;
        };
        for key in &keys {
            if let StateKey::Instance(name) = key {
                index.refresh(name, instances, scheduler);
            }
        }
    }
}
