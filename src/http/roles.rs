//! Roles and their permissions, Connectware's routes. Adding a permission
//! a role already has answers 409 "permission already declared";
//! `copyFrom` creates a role with another's permissions.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::dto::*;
use super::error::ApiError;
use super::extract::{ApiJson, ApiPath, ApiQuery, Caller};
use super::users::role_dto;
use super::{AppState, blocking};
use crate::identity::Role;
use crate::identity::services::IdentityServices;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_roles, create_role))
        .routes(routes!(get_role, update_role, delete_role))
        .routes(routes!(list_permissions, add_permission))
        .routes(routes!(remove_permission))
}

fn find_role(services: &IdentityServices, id: &str) -> Result<Role, ApiError> {
    services.directory.role_by_id(id).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("role `{id}` not found"),
        )
    })
}

fn unshared(is_shared: Option<bool>) -> Result<(), ApiError> {
    if is_shared == Some(true) {
        return Err(ApiError::invalid(
            "isShared: shared roles are not supported",
        ));
    }
    Ok(())
}

/// Every role (filter `name[eq]`).
#[utoipa::path(get, path = "/api/roles", tag = "roles", params(RoleQuery),
    responses((status = 200, body = Vec<RoleDto>)))]
async fn list_roles(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<RoleQuery>,
) -> Json<Vec<RoleDto>> {
    let directory = &state.services.directory;
    let roles = match &query.name_eq {
        Some(name) => directory.role(name).into_iter().collect(),
        None => directory.roles(),
    };
    Json(roles.iter().map(role_dto).collect())
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateRoleBody {
    #[schema(min_length = 1, max_length = 128)]
    pub name: String,
    pub permissions: Option<Vec<PermissionInput>>,
    /// Role id whose permissions the new role starts with.
    pub copy_from: Option<String>,
    /// Accepted for Connectware compatibility; roles are never shared.
    pub is_shared: Option<bool>,
}

/// Create a role.
#[utoipa::path(post, path = "/api/roles", tag = "roles", request_body = CreateRoleBody,
    responses((status = 201, description = "Created", body = RoleDto)))]
async fn create_role(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<CreateRoleBody>,
) -> Result<(StatusCode, Json<RoleDto>), ApiError> {
    unshared(body.is_shared)?;
    let actor = caller.actor();
    let permissions = permissions_in(body.permissions.unwrap_or_default());
    let role = blocking(&state, move |s| {
        s.create_role(&actor, &body.name, permissions, body.copy_from.as_deref())
    })
    .await?;
    Ok((StatusCode::CREATED, Json(role_dto(&role))))
}

/// One role.
#[utoipa::path(get, path = "/api/roles/{id}", tag = "roles",
    params(("id" = String, Path, description = "Role id")),
    responses((status = 200, body = RoleDto)))]
async fn get_role(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<RoleDto>, ApiError> {
    Ok(Json(role_dto(&find_role(&state.services, &id)?)))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateRoleBody {
    /// Ignored (the path names the role).
    pub id: Option<String>,
    #[schema(min_length = 1, max_length = 128)]
    pub name: Option<String>,
    /// Replaces the role's permissions.
    pub permissions: Option<Vec<PermissionInput>>,
    pub is_shared: Option<bool>,
}

/// Rename a role or replace its permissions; connected clients get the
/// change at once.
#[utoipa::path(put, path = "/api/roles/{id}", tag = "roles", request_body = UpdateRoleBody,
    params(("id" = String, Path, description = "Role id")),
    responses((status = 200, body = RoleDto)))]
async fn update_role(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<UpdateRoleBody>,
) -> Result<Json<RoleDto>, ApiError> {
    unshared(body.is_shared)?;
    if body.id.as_ref().is_some_and(|given| *given != id) {
        return Err(ApiError::invalid("id: differs from the role in the path"));
    }
    let actor = caller.actor();
    let permissions = body.permissions.map(permissions_in);
    let role = blocking(&state, move |s| {
        s.update_role(&actor, &id, body.name.as_deref(), permissions)
    })
    .await?;
    Ok(Json(role_dto(&role)))
}

/// Delete a role (and remove it from every user).
#[utoipa::path(delete, path = "/api/roles/{id}", tag = "roles",
    params(("id" = String, Path, description = "Role id")),
    responses((status = 204, description = "Deleted")))]
async fn delete_role(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let actor = caller.actor();
    blocking(&state, move |s| s.delete_role(&actor, &id)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A role's permissions.
#[utoipa::path(get, path = "/api/roles/{id}/permissions", tag = "roles",
    params(("id" = String, Path, description = "Role id")),
    responses((status = 200, body = Vec<PermissionDto>)))]
async fn list_permissions(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Vec<PermissionDto>>, ApiError> {
    let role = find_role(&state.services, &id)?;
    Ok(Json(
        role.permissions.iter().map(PermissionDto::from).collect(),
    ))
}

/// Add a permission to a role (409 when already declared).
#[utoipa::path(post, path = "/api/roles/{id}/permissions", tag = "roles", request_body = PermissionInput,
    params(("id" = String, Path, description = "Role id")),
    responses((status = 201, description = "Added", body = PermissionDto)))]
async fn add_permission(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<PermissionInput>,
) -> Result<(StatusCode, Json<PermissionDto>), ApiError> {
    let actor = caller.actor();
    let permission = body.into_domain();
    let dto = PermissionDto::from(&permission);
    blocking(&state, move |s| {
        s.add_role_permission(&actor, &id, permission)
    })
    .await?;
    Ok((StatusCode::CREATED, Json(dto)))
}

/// Remove a permission from a role.
#[utoipa::path(delete, path = "/api/roles/{id}/permissions/{permissionId}", tag = "roles",
    params(("id" = String, Path, description = "Role id"),
        ("permissionId" = String, Path, description = "Permission id")),
    responses((status = 204, description = "Removed")))]
async fn remove_permission(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((id, permission_id)): ApiPath<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let actor = caller.actor();
    blocking(&state, move |s| {
        s.remove_role_permission(&actor, &id, &permission_id)
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}
