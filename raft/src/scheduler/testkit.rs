//! A small cluster for scheduler tests: members, images and placements through `apply`.

use std::collections::{BTreeMap, BTreeSet};

use super::{place, NoFit, Placement, PlacementRequest, Target};
use crate::model::{
    apply, Capacity, ClusterState, Command, CommandResult, Image, Member, ModelError,
};

pub(crate) const GIB: u64 = 1 << 30;
pub(crate) const MIB: u64 = 1 << 20;

/// A member with `cores` CPUs, `mem` bytes and 10,000 process slots, in domain `fd`.
pub(crate) fn member(name: &str, fd: &str, cores: u64, mem: u64) -> Member {
    Member {
        id: 0,
        name: name.into(),
        address: format!("{name}:8443"),
        architecture: "x86_64".into(),
        failure_domain: fd.into(),
        joined_at_ms: 1,
        capacity: Capacity {
            cpu_millicores: cores * 1000,
            memory_bytes: mem,
            processes: 10_000,
        },
        labels: BTreeMap::new(),
        groups: BTreeSet::new(),
        evacuated: false,
    }
}

pub(crate) fn config(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn image(fp: &str, arch: &str) -> Image {
    Image {
        fingerprint: fp.into(),
        size: 1,
        architecture: arch.into(),
        os: "busybox".into(),
        release: "1".into(),
        description: String::new(),
        stop_signal: "SIGUSR2".into(),
        created_at_ms: 1,
        locations: BTreeSet::new(),
    }
}

/// A cluster state with images `busybox` (x86_64) and `armbox` (aarch64) and the given
/// members, and the names of members that are offline.
pub(crate) struct Cluster {
    pub(crate) state: ClusterState,
    pub(crate) index: u64,
    pub(crate) offline: BTreeSet<String>,
}

impl Cluster {
    pub(crate) fn new(members: Vec<Member>) -> Self {
        let mut c = Cluster {
            state: ClusterState::default(),
            index: 0,
            offline: BTreeSet::new(),
        };
        for (fp, arch, alias) in [
            ("ab".repeat(32), "x86_64", "busybox"),
            ("cd".repeat(32), "aarch64", "armbox"),
        ] {
            c.apply(Command::AddImage {
                image: image(&fp, arch),
                aliases: vec![alias.into()],
                node: String::new(),
            })
            .unwrap();
        }
        for m in members {
            c.apply(Command::RegisterMember { member: m }).unwrap();
        }
        c
    }

    pub(crate) fn apply(&mut self, cmd: Command) -> Result<CommandResult, ModelError> {
        self.index += 1;
        apply(&mut self.state, self.index, &cmd)
    }

    pub(crate) fn request(name: &str, cfg: &[(&str, &str)], target: &str) -> PlacementRequest {
        PlacementRequest::new(name, config(cfg), "x86_64", Target::parse(target))
    }

    pub(crate) fn place(&self, req: &PlacementRequest) -> Result<Placement, NoFit> {
        let online = |h: &str| !self.offline.contains(h);
        place(&self.state, &online, req)
    }

    pub(crate) fn create(name: &str, cfg: &[(&str, &str)], host: &str) -> Command {
        Command::CreateInstance {
            name: name.into(),
            image: "busybox".into(),
            config: config(cfg),
            start: true,
            location: host.into(),
            now_ms: 1,
        }
    }

    /// Places and creates `name`; returns its host.
    pub(crate) fn launch(
        &mut self,
        name: &str,
        cfg: &[(&str, &str)],
        target: &str,
    ) -> Result<String, NoFit> {
        let p = self.place(&Self::request(name, cfg, target))?;
        self.apply(Self::create(name, cfg, &p.host)).unwrap();
        Ok(p.host)
    }

    pub(crate) fn member_mut(&mut self, name: &str) -> &mut Member {
        self.state.members.get_mut(name).unwrap()
    }
}
