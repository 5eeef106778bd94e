//! What an agent sees of the cluster state, and how it is kept current.
//!
//! An agent holds no replica. It follows the part of the state it needs (members, images,
//! aliases, scheduler options, placement groups, the instances placed on it, and the client
//! identities that have revoked certificates, which it must refuse too; never the CA key,
//! tokens or other identities) from a member that holds one: a whole view first, then
//! only the records that changed (`ViewDelta`), computed from the keys each applied batch
//! touched. With a thousand agents, a placement then costs one small message to one agent
//! instead of a re-serialised view to every agent.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

use super::keys::StateKey;
use super::names::InstanceName;
use super::state::{
    ClusterState, Identity, Image, Instance, Member, PlacementGroup, SchedulerConfig,
};

/// The identity `name` if it has revoked certificates (what an agent needs of identities).
fn revocations_of(state: &ClusterState, name: &str) -> Option<Identity> {
    state
        .identities
        .get(name)
        .filter(|i| !i.revoked.is_empty())
        .cloned()
}

/// The part of `state` the agent `name` needs.
pub fn view_for(state: &ClusterState, name: &str) -> ClusterState {
    ClusterState {
        revision: state.revision,
        members: state.members.clone(),
        images: state.images.clone(),
        aliases: state.aliases.clone(),
        instances: state
            .instances
            .iter()
            .filter(|(_, i)| i.location == name)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        scheduler: state.scheduler.clone(),
        placement_groups: state.placement_groups.clone(),
        identities: state
            .identities
            .keys()
            .filter_map(|n| Some((n.clone(), revocations_of(state, n)?)))
            .collect(),
        ..Default::default()
    }
}

/// The records of an agent's view that changed: `Some` is the new value, `None` a removal.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ViewDelta {
    pub revision: u64,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub members: BTreeMap<String, Option<Member>>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub images: BTreeMap<String, Option<Image>>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub aliases: BTreeMap<String, Option<String>>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub instances: BTreeMap<InstanceName, Option<Instance>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduler: Option<SchedulerConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement_groups: Option<BTreeMap<String, PlacementGroup>>,
    /// Client identities with revoked certificates.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub identities: BTreeMap<String, Option<Identity>>,
}

impl ViewDelta {
    /// Whether no record changed (only the revision may have moved).
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
            && self.images.is_empty()
            && self.aliases.is_empty()
            && self.instances.is_empty()
            && self.identities.is_empty()
            && self.scheduler.is_none()
            && self.placement_groups.is_none()
    }

    /// The delta for agent `name` after the records `keys` changed, read from the current
    /// `state`. `held` is the set of instances the agent was last told about; it is kept
    /// up to date (an instance that moved away is removed from the agent's view).
    pub fn for_agent(
        state: &ClusterState,
        revision: u64,
        keys: &BTreeSet<StateKey>,
        name: &str,
        held: &mut BTreeSet<InstanceName>,
    ) -> Self {
        let mut d = ViewDelta {
            revision,
            ..Default::default()
        };
        for key in keys {
            match key {
                StateKey::Member(m) => {
                    d.members.insert(m.clone(), state.members.get(m).cloned());
                }
                StateKey::Image(f) => {
                    d.images.insert(f.clone(), state.images.get(f).cloned());
                }
                StateKey::Alias(a) => {
                    d.aliases.insert(a.clone(), state.aliases.get(a).cloned());
                }
                StateKey::Instance(n) => {
                    let Ok(n) = InstanceName::new(n) else {
                        continue;
                    };
                    match state.instances.get(&n).filter(|i| i.location == name) {
                        Some(i) => {
                            held.insert(n.clone());
                            d.instances.insert(n, Some(i.clone()));
                        }
                        None => {
                            if held.remove(&n) {
                                d.instances.insert(n, None);
                            }
                        }
                    }
                }
                StateKey::Scheduler => d.scheduler = Some(state.scheduler.clone()),
                StateKey::PlacementGroups => {
                    d.placement_groups = Some(state.placement_groups.clone())
                }
                // Revocations only accumulate (no command forgets one): an identity
                // without any was never in the agent's view and is not sent.
                StateKey::Identity(n) => {
                    if let Some(i) = revocations_of(state, n) {
                        d.identities.insert(n.clone(), Some(i));
                    }
                }
                StateKey::Ca | StateKey::Token(_) => {}
            }
        }
        d
    }

    /// Applies the delta to an agent's view.
    pub fn apply_to(self, view: &mut ClusterState) {
        fn merge<K: Ord, V>(into: &mut BTreeMap<K, V>, from: BTreeMap<K, Option<V>>) {
            for (k, v) in from {
                match v {
                    Some(v) => into.insert(k, v),
                    None => into.remove(&k),
                };
            }
        }
        view.revision = view.revision.max(self.revision);
        merge(&mut view.members, self.members);
        merge(&mut view.images, self.images);
        merge(&mut view.aliases, self.aliases);
        merge(&mut view.instances, self.instances);
        merge(&mut view.identities, self.identities);
        if let Some(s) = self.scheduler {
            view.scheduler = s;
        }
        if let Some(g) = self.placement_groups {
            view.placement_groups = g;
        }
        // The load index is derived from the instances: rebuild it on next use.
        view.load = Default::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{apply, touched, CaRecord, Command, DesiredState, InstanceStatus};

    fn instance(name: &str, location: &str) -> Instance {
        Instance {
            name: InstanceName::new(name).unwrap(),
            image: "busybox".into(),
            image_fingerprint: "ab".repeat(32),
            config: Default::default(),
            desired: DesiredState::Running,
            desired_revision: 1,
            restart_revision: 0,
            stop_force: false,
            stop_timeout_s: 0,
            location: location.into(),
            placement_generation: 1,
            status: InstanceStatus::pending(0),
            created_at_ms: 0,
            version: 1,
            origin: None,
            moving: None,
        }
    }

    fn state() -> ClusterState {
        let mut s = ClusterState {
            revision: 42,
            ca: Some(CaRecord {
                cert_pem: "cert".into(),
                key_pem: "KEY".into(),
            }),
            ..Default::default()
        };
        for (n, loc) in [("x", "f"), ("y", "a")] {
            let i = instance(n, loc);
            s.instances.insert(i.name.clone(), i);
        }
        s
    }

    #[test]
    fn an_agent_sees_its_instances_and_no_secrets() {
        let v = view_for(&state(), "f");
        assert_eq!(v.revision, 42);
        assert!(v.ca.is_none() && v.tokens.is_empty() && v.identities.is_empty());
        let names: Vec<String> = v.instances.keys().map(|k| k.to_string()).collect();
        assert_eq!(names, ["x"]);
        assert!(!serde_json::to_string(&v).unwrap().contains("KEY"));
    }

    /// Following deltas gives the same view as taking a whole view again, through
    /// placements, moves away and back, and deletions.
    #[test]
    fn deltas_keep_a_view_equal_to_a_fresh_one() {
        let mut leader = state();
        let mut agent = view_for(&leader, "f");
        let mut held: BTreeSet<InstanceName> = agent.instances.keys().cloned().collect();
        let changes = |leader: &mut ClusterState, f: &dyn Fn(&mut ClusterState)| {
            let before = leader.clone();
            f(leader);
            leader.revision += 1;
            // Every record that differs, as the store's touched keys would name them.
            let mut keys = BTreeSet::new();
            for n in before.instances.keys().chain(leader.instances.keys()) {
                if before.instances.get(n) != leader.instances.get(n) {
                    keys.insert(StateKey::Instance(n.to_string()));
                }
            }
            keys
        };
        type Step = Box<dyn Fn(&mut ClusterState)>;
        let steps: Vec<Step> = vec![
            Box::new(|s| {
                let i = instance("z", "f");
                s.instances.insert(i.name.clone(), i);
            }),
            Box::new(|s| {
                s.instances
                    .get_mut(&InstanceName::new("x").unwrap())
                    .unwrap()
                    .location = "b".into()
            }),
            Box::new(|s| {
                s.instances
                    .get_mut(&InstanceName::new("y").unwrap())
                    .unwrap()
                    .location = "f".into()
            }),
            Box::new(|s| {
                s.instances.remove(&InstanceName::new("z").unwrap());
            }),
            Box::new(|s| {
                s.instances
                    .get_mut(&InstanceName::new("x").unwrap())
                    .unwrap()
                    .location = "f".into()
            }),
        ];
        for step in &steps {
            let keys = changes(&mut leader, step.as_ref());
            let d = ViewDelta::for_agent(&leader, leader.revision, &keys, "f", &mut held);
            let wire: ViewDelta = serde_json::from_slice(&serde_json::to_vec(&d).unwrap()).unwrap();
            wire.apply_to(&mut agent);
            assert_eq!(agent, view_for(&leader, "f"));
        }
    }

    /// Keys from the model's own `touched`: a member joining reaches every agent.
    #[test]
    fn a_registered_member_reaches_the_agent() {
        let mut s = state();
        let mut agent = view_for(&s, "f");
        let member = Member {
            name: "g".into(),
            address: "198.18.0.9:8443".into(),
            ..Default::default()
        };
        let cmd = Command::RegisterMember { member };
        let keys: BTreeSet<StateKey> = touched(&s, &cmd).into_iter().collect();
        let _ = apply(&mut s, 43, &cmd);
        let d = ViewDelta::for_agent(&s, 43, &keys, "f", &mut BTreeSet::new());
        assert!(!d.is_empty());
        d.apply_to(&mut agent);
        assert!(agent.members.contains_key("g"));
        assert_eq!(agent.revision, 43);
    }
}
