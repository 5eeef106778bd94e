//! The `Cluster` service: members and their state.

use shoal_proto::api as pb;
use std::sync::Arc;
use tonic::{Request, Response, Status};

use super::auth::require;
use super::ctx::Ctx;
use super::pki::Role;

/// The cluster service.
pub struct ClusterService {
    pub(crate) ctx: Arc<Ctx>,
}

#[tonic::async_trait]
impl pb::cluster_server::Cluster for ClusterService {
    async fn list_members(
        &self,
        req: Request<pb::ListMembersRequest>,
    ) -> Result<Response<pb::ListMembersResponse>, Status> {
        require(&req, Role::Viewer, "list members")?;
        let me = self.ctx.node.clone();
        let members = self.ctx.state.read(|s| {
            s.members
                .values()
                .map(|m| pb::Member {
                    name: m.name.clone(),
                    address: m.address.clone(),
                    roles: if m.name == me {
                        vec!["leader".into(), "voter".into()]
                    } else {
                        vec!["voter".into()]
                    },
                    status: if m.name == me { "Online" } else { "Unknown" }.into(),
                    failure_domain: m.failure_domain.clone(),
                    message: String::new(),
                    architecture: m.architecture.clone(),
                })
                .collect()
        });
        Ok(Response::new(pb::ListMembersResponse { members }))
    }
}
