//! Domain to wire conversions (the wire types stop at the gRPC edge).

use shoal_proto::api as pb;
use shoal_raft::{ClusterState, DesiredState, Image, Instance, ObservedState};

/// The wire form of an observed state.
pub fn observed(s: ObservedState) -> pb::InstanceState {
    match s {
        ObservedState::Pending => pb::InstanceState::Pending,
        ObservedState::Stopped => pb::InstanceState::Stopped,
        ObservedState::Running => pb::InstanceState::Running,
        ObservedState::Frozen => pb::InstanceState::Frozen,
        ObservedState::Error => pb::InstanceState::Error,
        ObservedState::Unknown => pb::InstanceState::Unknown,
    }
}

/// The wire form of a desired state.
pub fn desired(s: DesiredState) -> pb::InstanceState {
    match s {
        DesiredState::Stopped => pb::InstanceState::Stopped,
        DesiredState::Running => pb::InstanceState::Running,
        DesiredState::Frozen => pb::InstanceState::Frozen,
        DesiredState::Deleted => pb::InstanceState::Deleted,
    }
}

/// The wire form of an instance.
pub fn instance(i: &Instance) -> pb::Instance {
    let s = &i.status;
    pb::Instance {
        name: i.name.to_string(),
        image_fingerprint: i.image_fingerprint.clone(),
        image: i.image.clone(),
        config: i.config.clone().into_iter().collect(),
        desired: desired(i.desired) as i32,
        status: Some(pb::InstanceStatus {
            state: observed(s.state) as i32,
            observed_revision: s.observed_revision,
            message: s.message.clone(),
            init_pid: s.init_pid.unwrap_or(0),
            usage: s.usage.map(|u| pb::ResourceUsage {
                memory_bytes: u.memory_bytes,
                cpu_nanos: u.cpu_nanos,
                processes: u.processes,
            }),
            updated_at_ms: s.updated_at_ms,
        }),
        location: i.location.clone(),
        created_at_ms: i.created_at_ms,
        version: i.version,
        desired_revision: i.desired_revision,
        moving: i.moving.as_ref().map(|m| m.describe()).unwrap_or_default(),
    }
}

/// The wire form of an image, with its aliases.
pub fn image(state: &ClusterState, img: &Image) -> pb::Image {
    pb::Image {
        fingerprint: img.fingerprint.clone(),
        aliases: state.aliases_of(&img.fingerprint),
        os: img.os.clone(),
        release: img.release.clone(),
        architecture: img.architecture.clone(),
        description: img.description.clone(),
        stop_signal: img.stop_signal.clone(),
        size: img.size,
        created_at_ms: img.created_at_ms,
        locations: img.locations.iter().cloned().collect(),
    }
}
