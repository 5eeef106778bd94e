//! The public API's requests as the daemon receives them: prost decoding, then the checks
//! the services make at the edge (`shoal_node::daemon::check_*`) and, for what passes,
//! the next real steps (placement, `apply`) on a small cluster state.

use std::str::FromStr;

use prost::Message;
use shoal_node::daemon::{
    check_copy, check_create, check_exec_start, check_import_header, check_move, check_name,
};
use shoal_proto::api as pb;
use shoal_raft::model::{GroupPolicy, PlacementGroup, Strategy};
use shoal_raft::scheduler::{place_with, InFlight, PlacementRequest, Target};
use shoal_raft::Command;

use super::command::{apply_checked, seeded_state};

/// Decodes `bytes` as `M` and checks that re-encoding is lossless.
fn decode<M: Message + Default + PartialEq>(bytes: &[u8]) -> Option<M> {
    let m = M::decode(bytes).ok()?;
    let again = M::decode(&m.encode_to_vec()[..]).expect("a re-encoded message decodes");
    assert!(again == m, "re-encoding changed the message");
    Some(m)
}

/// Target `api_request`: the first byte picks the request type, the rest is the message.
pub fn api_request(data: &[u8]) {
    let Some((&which, bytes)) = data.split_first() else {
        return;
    };
    match which % 12 {
        0 => create(bytes),
        1 => {
            if let Some(r) = decode::<pb::MoveInstanceRequest>(bytes) {
                let _ = Target::parse(&r.target);
                let _ = check_move(&r);
            }
        }
        2 => {
            if let Some(r) = decode::<pb::CopyInstanceRequest>(bytes) {
                if let Ok((a, b)) = check_copy(&r) {
                    assert_eq!((a.as_str(), b.as_str()), (&*r.name, &*r.new_name));
                }
            }
        }
        3 => {
            if let Some(r) = decode::<pb::ExecInput>(bytes) {
                exec(r);
            }
        }
        4 => {
            if let Some(r) = decode::<pb::ImportImageChunk>(bytes) {
                import_header(r);
            }
        }
        5 => {
            if let Some(r) = decode::<pb::StopInstanceRequest>(bytes) {
                if let Ok(n) = check_name(&r.name) {
                    assert_eq!(n.as_str(), r.name);
                }
            }
        }
        6 => {
            if let Some(r) = decode::<pb::DeleteInstanceRequest>(bytes) {
                let _ = check_name(&r.name);
            }
        }
        7 => {
            if let Some(r) = decode::<pb::PlacementGroup>(bytes) {
                placement_group(r);
            }
        }
        8 => {
            if let Some(r) = decode::<pb::SetSchedulerStrategyRequest>(bytes) {
                let _ = Strategy::from_str(&r.strategy);
            }
        }
        9 => {
            if let Some(r) = decode::<pb::CreateTokenRequest>(bytes) {
                let _ = shoal_raft::InstanceName::new(&r.name);
            }
        }
        10 => {
            let _ = decode::<pb::SetAliasRequest>(bytes);
            let _ = decode::<pb::WaitOperationRequest>(bytes);
        }
        _ => {
            let _ = decode::<pb::EnrollRequest>(bytes);
            let _ = decode::<pb::RemoveMemberRequest>(bytes);
        }
    }
}

/// `create`: the edge checks, then (as the service does) image lookup, placement and the
/// command. A host the scheduler chose on a state must be accepted by `apply` on it.
fn create(bytes: &[u8]) {
    let Some(r) = decode::<pb::CreateInstanceRequest>(bytes) else {
        return;
    };
    let Ok((name, config)) = check_create(&r) else {
        return;
    };
    assert_eq!(name.as_str(), r.name);
    let mut state = seeded_state();
    let Some(arch) = state
        .resolve_image(&r.image)
        .map(|i| i.architecture.clone())
    else {
        return;
    };
    let req = PlacementRequest::new(&r.name, config.clone(), arch, Target::parse(&r.target));
    let Ok(plan) = place_with(&state, &|_| true, &req, &InFlight::new()) else {
        return;
    };
    let taken = state.instances.contains_key(&name);
    let cmd = Command::CreateInstance {
        name: r.name.clone(),
        image: r.image.clone(),
        config,
        start: r.start,
        location: plan.host.clone(),
        now_ms: 1000,
    };
    apply_checked(&mut state, 100, &cmd);
    if !taken {
        assert!(
            state.instances.contains_key(&name),
            "apply refused the scheduler's plan {plan:?} for {r:?}"
        );
    }
}

/// `exec`: what the edge accepts must be runnable (no NUL byte in what becomes a C
/// string, environment names without '=').
fn exec(first: pb::ExecInput) {
    let Ok((start, name)) = check_exec_start(Some(first)) else {
        return;
    };
    assert_eq!(name.as_str(), start.instance);
    assert!(!start.command.is_empty());
    for arg in &start.command {
        assert!(!arg.contains('\0'), "accepted a NUL in argument {arg:?}");
    }
    for (k, v) in &start.env {
        assert!(
            !k.is_empty() && !k.contains(['=', '\0']) && !v.contains('\0'),
            "accepted the environment variable {k:?}={v:?}"
        );
    }
    assert!(
        !start.cwd.contains('\0'),
        "accepted the cwd {:?}",
        start.cwd
    );
}

/// `import`: the header, then the image record its aliases go into.
fn import_header(first: pb::ImportImageChunk) {
    let Ok(header) = check_import_header(Some(first)) else {
        return;
    };
    let mut state = seeded_state();
    let mut image = state.images.values().next().cloned().expect("seeded image");
    image.fingerprint = "cd".repeat(32);
    let cmd = Command::AddImage {
        image,
        aliases: header.aliases,
        node: "a".into(),
    };
    apply_checked(&mut state, 100, &cmd);
}

/// `create placement group`: the policy word, then the command.
fn placement_group(r: pb::PlacementGroup) {
    let policy = if r.policy.is_empty() {
        GroupPolicy::Spread
    } else {
        match GroupPolicy::from_str(&r.policy) {
            Ok(p) => p,
            Err(_) => return,
        }
    };
    let cmd = Command::CreatePlacementGroup {
        group: PlacementGroup {
            name: r.name,
            policy,
            strict: r.strict,
        },
    };
    apply_checked(&mut seeded_state(), 100, &cmd);
}
