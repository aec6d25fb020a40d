//! Permissions: every permission with where it comes from (read only),
//! and a user's own permissions and roles as sub-resources.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::dto::*;
use super::error::ApiError;
use super::extract::{ApiJson, ApiPath, ApiQuery, Caller};
use super::users::{find_user, page_of, user_view};
use super::{AppState, blocking};
use crate::identity::Holder;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(all_permissions))
        .routes(routes!(user_permissions, add_user_permission))
        .routes(routes!(remove_user_permission))
        .routes(routes!(add_user_role))
        .routes(routes!(remove_user_role))
}

#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum SourceKind {
    Role,
    User,
}

/// Where a permission is declared.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PermissionSource {
    #[serde(rename = "type")]
    pub kind: SourceKind,
    /// Role id or user id.
    pub id: String,
    /// Role name or user name.
    pub name: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SourcedPermission {
    #[serde(flatten)]
    pub permission: PermissionDto,
    pub source: PermissionSource,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PermissionList {
    pub permissions: Vec<SourcedPermission>,
    pub pagination: Pagination,
}

/// Every permission of every role and user, with its source (roles first).
#[utoipa::path(get, path = "/api/permissions", tag = "permissions", params(PageQuery),
    responses((status = 200, body = PermissionList)))]
async fn all_permissions(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> Result<Json<PermissionList>, ApiError> {
    let (offset, rows, page) = page_of(query.page_number, query.rows_per_page, 1000)?;
    let mut total = 0usize;
    let mut permissions = Vec::new();
    state.services.directory.for_each_holder(|holder| {
        let (kind, id, name, list) = match holder {
            Holder::Role(r) => (SourceKind::Role, &r.id, &r.name, &r.permissions),
            Holder::User(u) => (SourceKind::User, &u.id, &u.username, &u.permissions),
        };
        for p in list {
            if total >= offset && permissions.len() < rows as usize {
                permissions.push(SourcedPermission {
                    permission: PermissionDto::from(p),
                    source: PermissionSource {
                        kind,
                        id: id.clone(),
                        name: name.clone(),
                    },
                });
            }
            total += 1;
        }
    });
    Ok(Json(PermissionList {
        permissions,
        pagination: Pagination::new(page, rows, total),
    }))
}

/// A user's own permissions (beyond their roles').
#[utoipa::path(get, path = "/api/users/{id}/permissions", tag = "users",
    params(("id" = String, Path, description = "User id, or `me`")),
    responses((status = 200, body = Vec<PermissionDto>)))]
async fn user_permissions(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Vec<PermissionDto>>, ApiError> {
    let user = find_user(&state.services, caller.resolve(&id))?;
    Ok(Json(
        user.permissions.iter().map(PermissionDto::from).collect(),
    ))
}

/// Add a permission to a user (409 when already declared).
#[utoipa::path(post, path = "/api/users/{id}/permissions", tag = "users", request_body = PermissionInput,
    params(("id" = String, Path, description = "User id")),
    responses((status = 201, description = "Added", body = PermissionDto)))]
async fn add_user_permission(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<PermissionInput>,
) -> Result<(StatusCode, Json<PermissionDto>), ApiError> {
    let id = caller.resolve(&id).to_owned();
    let actor = caller.actor();
    let permission = body.into_domain();
    let dto = PermissionDto::from(&permission);
    blocking(&state, move |s| {
        s.add_user_permission(&actor, &id, permission)
    })
    .await?;
    Ok((StatusCode::CREATED, Json(dto)))
}

/// Remove one of a user's own permissions.
#[utoipa::path(delete, path = "/api/users/{id}/permissions/{permissionId}", tag = "users",
    params(("id" = String, Path, description = "User id"),
        ("permissionId" = String, Path, description = "Permission id")),
    responses((status = 204, description = "Removed")))]
async fn remove_user_permission(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((id, permission_id)): ApiPath<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let id = caller.resolve(&id).to_owned();
    let actor = caller.actor();
    blocking(&state, move |s| {
        s.remove_user_permission(&actor, &id, &permission_id)
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RoleRef {
    pub role_id: String,
}

/// Assign a role to a user.
#[utoipa::path(post, path = "/api/users/{id}/roles", tag = "users", request_body = RoleRef,
    params(("id" = String, Path, description = "User id")),
    responses((status = 200, body = UserDto)))]
async fn add_user_role(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<RoleRef>,
) -> Result<Json<UserDto>, ApiError> {
    let id = caller.resolve(&id).to_owned();
    let actor = caller.actor();
    let view = blocking(&state, move |s| {
        let user = s.set_user_role(&actor, &id, &body.role_id, true)?;
        Ok(user_view(s, &user))
    })
    .await?;
    Ok(Json(view))
}

/// Remove a role from a user.
#[utoipa::path(delete, path = "/api/users/{id}/roles/{roleId}", tag = "users",
    params(("id" = String, Path, description = "User id"),
        ("roleId" = String, Path, description = "Role id")),
    responses((status = 204, description = "Removed")))]
async fn remove_user_role(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((id, role_id)): ApiPath<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let id = caller.resolve(&id).to_owned();
    let actor = caller.actor();
    blocking(&state, move |s| {
        s.set_user_role(&actor, &id, &role_id, false)
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}
