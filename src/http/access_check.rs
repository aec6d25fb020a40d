//! `GET /api/users/{id}/access` (Gatehouse extension): may this user read
//! or write this topic or path, and which of its permissions say so. The
//! decision is `identity::access_check`'s, the broker's own.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::dto::{ContextDto, PermissionDto};
use super::error::ApiError;
use super::extract::{ApiPath, ApiQuery, Caller};
use super::permissions::{PermissionSource, SourceKind};
use super::users::find_user;
use crate::identity::access_check::{AccessCheckError, AccessQuery, Checked, Source};
use crate::identity::{Context, Operation};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(check_access))
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum CheckedOperation {
    Read,
    Write,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct AccessParams {
    /// `mqtt` (a topic, or a filter for `read`) or `http` (an API path).
    #[param(value_type = ContextDto)]
    pub context: ContextDto,
    /// `read` (a subscription for a filter, a delivery for a topic) or
    /// `write` (a publish).
    #[param(inline)]
    pub operation: CheckedOperation,
    /// The topic, filter or path, e.g. `plant/line-1/temp`, `plant/#`,
    /// `/api/users`.
    pub resource: String,
    /// Resolves `%c` in the user's rules; without it they match nothing.
    pub client_id: Option<String>,
}

/// A matching permission and where it comes from.
#[derive(Debug, Serialize, ToSchema)]
pub struct MatchedPermission {
    #[serde(flatten)]
    pub permission: PermissionDto,
    pub source: PermissionSource,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccessAnswerDto {
    pub allowed: bool,
    /// `topic` (publish or delivery), `filter` (subscription) or `path`.
    pub checked: String,
    /// Prepended to every topic the user publishes: write permissions
    /// name the final, prefixed topic.
    pub mqtt_publish_prefix: Option<String>,
    /// Every permission matching the resource for the operation, allow
    /// and deny (a deny wins).
    pub matched: Vec<MatchedPermission>,
}

impl From<AccessCheckError> for ApiError {
    fn from(e: AccessCheckError) -> ApiError {
        ApiError::invalid(e.to_string())
    }
}

/// May the user read or write a topic or path? Decided by the broker's
/// own matcher, with the permissions that matched (Gatehouse extension).
#[utoipa::path(get, path = "/api/users/{id}/access", tag = "users", params(
        ("id" = String, Path, description = "User id, or `me`"), AccessParams),
    responses((status = 200, body = AccessAnswerDto)))]
async fn check_access(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiQuery(params): ApiQuery<AccessParams>,
) -> Result<Json<AccessAnswerDto>, ApiError> {
    let services = &state.services;
    let user = find_user(services, caller.resolve(&id))?;
    let answer = services.directory.check_access(
        &user,
        AccessQuery {
            context: match params.context {
                ContextDto::Mqtt => Context::Mqtt,
                ContextDto::Http => Context::Http,
            },
            operation: match params.operation {
                CheckedOperation::Read => Operation::Read,
                CheckedOperation::Write => Operation::Write,
            },
            resource: &params.resource,
            client_id: params.client_id.as_deref().filter(|c| !c.is_empty()),
        },
    )?;
    let matched = answer
        .matched
        .iter()
        .map(|g| MatchedPermission {
            permission: PermissionDto::from(&g.permission),
            source: match &g.source {
                Source::User => PermissionSource {
                    kind: SourceKind::User,
                    id: user.id.clone(),
                    name: user.username.clone(),
                },
                Source::Role { id, name } => PermissionSource {
                    kind: SourceKind::Role,
                    id: id.clone(),
                    name: name.clone(),
                },
            },
        })
        .collect();
    Ok(Json(AccessAnswerDto {
        allowed: answer.allowed,
        checked: match answer.checked {
            Checked::Topic => "topic",
            Checked::Filter => "filter",
            Checked::Path => "path",
        }
        .into(),
        mqtt_publish_prefix: user.mqtt_publish_prefix.clone(),
        matched,
    }))
}
