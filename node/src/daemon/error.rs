//! One mapping from the daemon's errors to gRPC status codes.

use shoal_raft::ModelError;
use thiserror::Error;
use tonic::{Code, Status};

use crate::image::ImageError;

/// Everything an API call can fail with.
#[derive(Debug, Error)]
pub enum ApiError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    PermissionDenied(String),
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

fn model_code(e: &ModelError) -> Code {
    match e {
        ModelError::InvalidName { .. }
        | ModelError::Config(_)
        | ModelError::InvalidAlias { .. }
        | ModelError::InvalidPlacementGroup { .. }
        | ModelError::InvalidSchedulerConfig(_) => Code::InvalidArgument,
        ModelError::UnknownPlacementGroup { .. } => Code::NotFound,
        ModelError::PlacementGroupExists(_) => Code::AlreadyExists,
        ModelError::PlacementGroupInUse { .. } => Code::FailedPrecondition,
        ModelError::PlanRejected { .. } => Code::Aborted,
        ModelError::InstanceExists(_)
        | ModelError::ImageExists(_)
        | ModelError::MemberExists(_)
        | ModelError::IdentityExists(_)
        | ModelError::AlreadyBootstrapped => Code::AlreadyExists,
        ModelError::TokenRefused(_) => Code::PermissionDenied,
        ModelError::InstanceNotFound(_)
        | ModelError::ImageNotFound(_)
        | ModelError::MemberNotFound(_)
        | ModelError::IdentityNotFound(_) => Code::NotFound,
        ModelError::IdentityRevoked(_) => Code::FailedPrecondition,
        ModelError::ImageInUse { .. } | ModelError::WrongState { .. } => Code::FailedPrecondition,
        ModelError::MoveInProgress { .. } => Code::FailedPrecondition,
        ModelError::NoSuchMove { .. } => Code::Aborted,
        ModelError::VersionConflict { .. } | ModelError::StalePlacement { .. } => Code::Aborted,
    }
}

fn image_code(e: &ImageError) -> Code {
    match e {
        ImageError::CreateDir { .. }
        | ImageError::ReadDir { .. }
        | ImageError::Remove { .. }
        | ImageError::Rename { .. }
        | ImageError::Open { .. }
        | ImageError::WriteTemp { .. }
        | ImageError::Sync { .. }
        | ImageError::Unpack { .. }
        | ImageError::ReadMetadataFile { .. } => Code::Internal,
        _ => Code::InvalidArgument,
    }
}

impl From<ApiError> for Status {
    fn from(e: ApiError) -> Status {
        let code = match &e {
            ApiError::Model(m) => model_code(m),
            ApiError::Image(ie) => image_code(ie),
            ApiError::InvalidArgument(_) => Code::InvalidArgument,
            ApiError::NotFound(_) => Code::NotFound,
            ApiError::FailedPrecondition(_) => Code::FailedPrecondition,
            ApiError::PermissionDenied(_) => Code::PermissionDenied,
            ApiError::Unauthenticated(_) => Code::Unauthenticated,
            ApiError::Unavailable(_) => Code::Unavailable,
            ApiError::Internal(_) => Code::Internal,
        };
        if code == Code::Internal {
            tracing::error!(error = %e, "internal error");
        }
        Status::new(code, e.to_string())
    }
}
