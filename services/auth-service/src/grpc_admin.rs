//! `mcpauth.v1.UserAdmin`: incident response for one user over gRPC (`crate::user_admin`), for
//! callers whose `grpc.callers` entry holds the `admin` permission.

use mcpauth_proto::v1::user_admin_server::UserAdmin;
use mcpauth_proto::v1::{
    RevokeUserRequest, RevokeUserResponse, SetUserDisabledRequest, SetUserDisabledResponse,
};
use tonic::{Request, Response, Status};

use crate::config::GrpcPermission;
use crate::grpc::Callers;
use crate::state::AppState;
use crate::user_admin::{self, Actor, AdminError, RevokeSummary, UserRef};

pub struct Admin {
    state: AppState,
    callers: Callers,
}

impl Admin {
    pub fn new(state: AppState) -> Self {
        let callers = Callers::from_config(&state);
        Self { state, callers }
    }
}

fn user_ref(r: Option<mcpauth_proto::v1::UserRef>) -> UserRef {
    let r = r.unwrap_or_default();
    let some = |s: String| (!s.is_empty()).then_some(s);
    UserRef {
        user_id: some(r.user_id),
        issuer: (!r.upstream_subject.is_empty()).then_some(r.upstream_issuer),
        subject: some(r.upstream_subject),
    }
}

fn status(e: AdminError) -> Status {
    match e {
        AdminError::NotFound => Status::not_found("no such user"),
        AdminError::InvalidArgument(m) => Status::invalid_argument(m),
        AdminError::Store(e) => {
            tracing::error!(error = %e, "user admin failed");
            Status::unavailable("temporarily unavailable; the call is idempotent, retry")
        }
        AdminError::Vault(e) => Status::unavailable(format!(
            "everything but the vault credentials was revoked; {e}"
        )),
    }
}

fn response(s: RevokeSummary) -> RevokeUserResponse {
    RevokeUserResponse {
        user_id: s.user_id.to_string(),
        grants_revoked: s.grants_revoked,
        consents_deleted: s.consents_deleted,
        sessions_deleted: s.sessions_deleted,
        vault_credentials_deleted: s.vault_credentials_deleted,
        tokens_revoked_before: s.tokens_revoked_before,
    }
}

#[tonic::async_trait]
impl UserAdmin for Admin {
    async fn revoke_user(
        &self,
        request: Request<RevokeUserRequest>,
    ) -> Result<Response<RevokeUserResponse>, Status> {
        let caller = self
            .callers
            .authorize(&request, GrpcPermission::Admin, "RevokeUser")
            .await?
            .name
            .clone();
        let req = request.into_inner();
        let actor = Actor {
            name: format!("grpc:{caller}"),
            reason: req.reason,
        };
        let user = user_admin::resolve(&self.state, &user_ref(req.user))
            .await
            .map_err(status)?;
        let summary = user_admin::revoke_user(&self.state, user, req.include_vault, &actor)
            .await
            .map_err(status)?;
        Ok(Response::new(response(summary)))
    }

    async fn set_user_disabled(
        &self,
        request: Request<SetUserDisabledRequest>,
    ) -> Result<Response<SetUserDisabledResponse>, Status> {
        let caller = self
            .callers
            .authorize(&request, GrpcPermission::Admin, "SetUserDisabled")
            .await?
            .name
            .clone();
        let req = request.into_inner();
        let actor = Actor {
            name: format!("grpc:{caller}"),
            reason: req.reason,
        };
        let user = user_admin::resolve(&self.state, &user_ref(req.user))
            .await
            .map_err(status)?;
        let revoked =
            user_admin::set_disabled(&self.state, user, req.disabled, req.include_vault, &actor)
                .await
                .map_err(status)?;
        Ok(Response::new(SetUserDisabledResponse {
            user_id: user.to_string(),
            disabled: req.disabled,
            revoked: revoked.map(response),
        }))
    }
}
