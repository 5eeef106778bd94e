//! The filter: whether one host can take an instance, and if not, why. `place` runs it on
//! every candidate and `apply` runs it again on the chosen host, so a plan made on an older
//! state is refused by the very rule that made it.

use std::fmt;

use super::load::{Demand, HostLoad, LoadIndex, View};
use crate::model::{GroupPolicy, Member, PlacementGroup};

/// What an instance needs from a host, parsed once per placement.
#[derive(Debug, Clone)]
pub(crate) struct Want<'a> {
    pub(crate) demand: Demand,
    /// The image's architecture; empty accepts any.
    pub(crate) architecture: &'a str,
    /// `placement.labels`.
    pub(crate) labels: &'a [(String, String)],
    /// `placement.group`, resolved.
    pub(crate) group: Option<&'a PlacementGroup>,
}

/// A resource a host may lack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    Cpu,
    Memory,
    Processes,
}

/// One resource a host has too little of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shortage {
    pub resource: Resource,
    pub need: u64,
    pub free: u64,
}

/// Why a host cannot take an instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Its lease expired (only `place` knows; liveness is not in the replicated state).
    Offline,
    /// Not a member of the `--target @GROUP` cluster group.
    NotInGroup { group: String },
    /// Evacuated: no new placements.
    Evacuated,
    /// Its architecture is not the image's.
    Architecture { host: String, image: String },
    /// It lacks a label `placement.labels` asks for, or has another value.
    Label {
        key: String,
        wanted: String,
        found: Option<String>,
    },
    /// It already runs instances of a strict spread placement group.
    SpreadConflict { group: String, instances: u32 },
    /// The strict compact placement group runs on other hosts.
    CompactElsewhere { group: String },
    /// Too little free CPU, memory or process slots.
    Short(Vec<Shortage>),
}

/// Canonical architecture names: the kernel's and Debian's spellings meet.
fn canonical_arch(arch: &str) -> &str {
    match arch {
        "amd64" | "x86-64" | "x64" => "x86_64",
        "arm64" | "armv8" => "aarch64",
        "i386" | "i486" | "i586" | "x86" => "i686",
        "armhf" | "armel" | "arm" | "armv7" => "armv7l",
        "ppc64el" => "ppc64le",
        other => other,
    }
}

/// Whether a host of architecture `host` runs images built for `image`.
pub(crate) fn arch_matches(host: &str, image: &str) -> bool {
    host == image
        || host.is_empty()
        || image.is_empty()
        || canonical_arch(host) == canonical_arch(image)
}

/// Free room for `need` within `capacity` (0: unknown, unchecked) given `used`.
fn shortage(resource: Resource, capacity: u64, used: u64, need: u64) -> Option<Shortage> {
    let free = capacity.saturating_sub(used);
    (capacity > 0 && need > free).then_some(Shortage {
        resource,
        need,
        free,
    })
}

/// Whether `member` can take an instance wanting `want`, liveness and target aside.
pub(crate) fn check_host(load: &LoadIndex, member: &Member, want: &Want) -> Result<(), Refusal> {
    let view = View::new(load, None);
    check_loaded(&view, view.host(&member.name), member, want)
}

/// `check_host` with the host's load already looked up.
pub(crate) fn check_loaded(
    load: &View,
    host: HostLoad,
    member: &Member,
    want: &Want,
) -> Result<(), Refusal> {
    if member.evacuated {
        return Err(Refusal::Evacuated);
    }
    if !arch_matches(&member.architecture, want.architecture) {
        return Err(Refusal::Architecture {
            host: member.architecture.clone(),
            image: want.architecture.to_string(),
        });
    }
    for (key, wanted) in want.labels {
        let found = member.labels.get(key);
        if found != Some(wanted) {
            return Err(Refusal::Label {
                key: key.clone(),
                wanted: wanted.clone(),
                found: found.cloned(),
            });
        }
    }
    if let Some(group) = want.group.filter(|g| g.strict) {
        let here = load.group_on(&group.name, &member.name);
        match group.policy {
            GroupPolicy::Spread if here > 0 => {
                return Err(Refusal::SpreadConflict {
                    group: group.name.clone(),
                    instances: here,
                })
            }
            GroupPolicy::Compact if here == 0 && load.group_hosts(&group.name).next().is_some() => {
                return Err(Refusal::CompactElsewhere {
                    group: group.name.clone(),
                })
            }
            _ => {}
        }
    }
    let (used, cap, need) = (&host.reserved, &member.capacity, &want.demand);
    let fits = |cap: u64, used: u64, need: u64| cap == 0 || need <= cap.saturating_sub(used);
    if fits(cap.cpu_millicores, used.cpu_millicores, need.cpu_millicores)
        && fits(cap.memory_bytes, used.memory_bytes, need.memory_bytes)
        && fits(cap.processes, used.processes, need.processes)
    {
        return Ok(());
    }
    let short = [
        shortage(
            Resource::Cpu,
            cap.cpu_millicores,
            used.cpu_millicores,
            need.cpu_millicores,
        ),
        shortage(
            Resource::Memory,
            cap.memory_bytes,
            used.memory_bytes,
            need.memory_bytes,
        ),
        shortage(
            Resource::Processes,
            cap.processes,
            used.processes,
            need.processes,
        ),
    ];
    Err(Refusal::Short(short.into_iter().flatten().collect()))
}

/// Bytes as people read them: `512MiB`, `1.5GiB`, `900KiB`.
pub(crate) fn bytes(n: u64) -> String {
    const UNITS: [(u64, &str); 4] = [
        (1 << 40, "TiB"),
        (1 << 30, "GiB"),
        (1 << 20, "MiB"),
        (1 << 10, "KiB"),
    ];
    for (size, unit) in UNITS {
        if n >= size {
            return if n.is_multiple_of(size) {
                format!("{}{unit}", n / size)
            } else {
                format!("{:.1}{unit}", n as f64 / size as f64)
            };
        }
    }
    format!("{n}B")
}

/// Thousandths of a core as cores: `0.5`, `2`, `0.125`.
pub(crate) fn cores(millicores: u64) -> String {
    let (whole, frac) = (millicores / 1000, millicores % 1000);
    if frac == 0 {
        whole.to_string()
    } else {
        format!("{whole}.{frac:03}")
            .trim_end_matches('0')
            .to_string()
    }
}

impl fmt::Display for Demand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} CPU, {} memory, {} process slots",
            cores(self.cpu_millicores),
            bytes(self.memory_bytes),
            self.processes
        )
    }
}

impl fmt::Display for Shortage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.resource {
            Resource::Cpu => write!(
                f,
                "needs {} CPU, {} free",
                cores(self.need),
                cores(self.free)
            ),
            Resource::Memory => write!(
                f,
                "needs {} memory, {} free",
                bytes(self.need),
                bytes(self.free)
            ),
            Resource::Processes => {
                write!(f, "needs {} process slots, {} free", self.need, self.free)
            }
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Offline => f.write_str("offline"),
            Refusal::NotInGroup { group } => write!(f, "not in group @{group}"),
            Refusal::Evacuated => f.write_str("evacuated"),
            Refusal::Architecture { host, image } => {
                write!(f, "architecture {host}, the image needs {image}")
            }
            Refusal::Label {
                key,
                wanted,
                found: None,
            } => write!(f, "no label {key} (wanted {key}={wanted})"),
            Refusal::Label {
                key,
                wanted,
                found: Some(v),
            } => write!(f, "label {key}={v} (wanted {key}={wanted})"),
            Refusal::SpreadConflict { group, instances } => write!(
                f,
                "already runs {instances} instance{} of placement group '{group}' (strict spread)",
                if *instances == 1 { "" } else { "s" }
            ),
            Refusal::CompactElsewhere { group } => write!(
                f,
                "placement group '{group}' (strict compact) runs on other hosts"
            ),
            Refusal::Short(list) => {
                for (i, s) in list.iter().enumerate() {
                    if i > 0 {
                        f.write_str("; ")?;
                    }
                    write!(f, "{s}")?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_for_people() {
        assert_eq!(bytes(512 << 20), "512MiB");
        assert_eq!(bytes(3 << 29), "1.5GiB");
        assert_eq!(bytes(100), "100B");
        assert_eq!(cores(500), "0.5");
        assert_eq!(cores(2000), "2");
        assert_eq!(cores(125), "0.125");
        assert!(arch_matches("x86_64", "amd64"));
        assert!(arch_matches("aarch64", "arm64"));
        assert!(!arch_matches("aarch64", "x86_64"));
        assert!(arch_matches("", "x86_64"));
        let s = Refusal::Short(vec![
            Shortage {
                resource: Resource::Memory,
                need: 512 << 20,
                free: 128 << 20,
            },
            Shortage {
                resource: Resource::Cpu,
                need: 500,
                free: 200,
            },
        ]);
        assert_eq!(
            s.to_string(),
            "needs 512MiB memory, 128MiB free; needs 0.5 CPU, 0.2 free"
        );
    }
}
