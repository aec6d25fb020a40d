//! Users: list (`/api/users`, Connectware's `/api/listUsers`), create,
//! read, update, delete, password change.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use serde::Deserialize;
use std::collections::HashMap;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::dto::*;
use super::error::ApiError;
use super::extract::{ApiJson, ApiPath, ApiQuery, Caller};
use super::{AppState, blocking};
use crate::identity::services::{
    AdminError, CreateUser, IdentityServices, UpdateUser, check_provider,
};
use crate::identity::{Role, User};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_users, create_user))
        .routes(routes!(list_users_paged))
        .routes(routes!(me))
        .routes(routes!(get_user, update_user, delete_user))
        .routes(routes!(change_password))
}

/// Role objects by id, for one directory version.
#[derive(Default)]
pub struct RoleCache(parking_lot::Mutex<(u64, HashMap<String, Option<RoleDto>>)>);

impl RoleCache {
    fn get(&self, services: &IdentityServices, id: &str) -> Option<RoleDto> {
        let version = services.directory.version();
        let mut cache = self.0.lock();
        if cache.0 != version {
            *cache = (version, HashMap::new());
        }
        cache
            .1
            .entry(id.to_owned())
            .or_insert_with(|| services.directory.role_by_id(id).as_ref().map(role_dto))
            .clone()
    }
}

/// Builds user objects; role objects come from the cache.
pub(super) struct Views<'a> {
    services: &'a IdentityServices,
    roles: Option<&'a RoleCache>,
}

/// A role as the API shows it (also the command line's `--json` offline).
pub fn role_dto(role: &Role) -> RoleDto {
    RoleDto {
        id: role.id.clone(),
        name: role.name.clone(),
        is_shared: false,
        permissions: role.permissions.iter().map(PermissionDto::from).collect(),
    }
}

impl<'a> Views<'a> {
    pub(super) fn new(services: &'a IdentityServices) -> Views<'a> {
        Views {
            services,
            roles: None,
        }
    }

    pub(super) fn cached(services: &'a IdentityServices, roles: &'a RoleCache) -> Views<'a> {
        Views {
            services,
            roles: Some(roles),
        }
    }

    pub(super) fn user(&mut self, user: &User) -> UserDto {
        let account = self.services.mfa.account(&user.id);
        let roles = user
            .roles
            .iter()
            .filter_map(|id| match self.roles {
                Some(cache) => cache.get(self.services, id),
                None => self
                    .services
                    .directory
                    .role_by_id(id)
                    .as_ref()
                    .map(role_dto),
            })
            .collect();
        UserDto {
            id: user.id.clone(),
            username: user.username.clone(),
            auto_generated: account.auto_generated,
            mqtt_publish_prefix: user.mqtt_publish_prefix.clone(),
            identity_provider: "local".into(),
            grant_types: user.grant_types.iter().map(GrantTypeDto::from).collect(),
            tokens: self
                .services
                .tokens
                .tokens_of(&user.id)
                .into_iter()
                .map(|t| TokenDto {
                    fingerprint: t.fingerprint,
                    label: t.label,
                    created_at: t.created_at,
                    expires_at: t.expires_at,
                })
                .collect(),
            certificates: user
                .certificates
                .iter()
                .map(|c| CertificateDto {
                    fingerprint: c.fingerprint.clone(),
                    created_at: c.created_at,
                    expires_at: c.expires_at,
                })
                .collect(),
            roles,
            permissions: user.permissions.iter().map(PermissionDto::from).collect(),
            mfa_is_enrolled: account.mfa_enrolled(),
            enforce_mfa_enrollment: account.enforce_mfa_enrollment,
            enabled: user.enabled,
            created_at: user.created_at,
            updated_at: user.updated_at,
        }
    }
}

/// A user as the API shows it (also the command line's `--json` offline).
pub fn user_view(services: &IdentityServices, user: &User) -> UserDto {
    Views::new(services).user(user)
}

pub(super) fn find_user(services: &IdentityServices, id: &str) -> Result<User, ApiError> {
    services.directory.user_by_id(id).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("user `{id}` not found"),
        )
    })
}

/// `(offset, rows, page)` from a page query: pages start at 1.
pub(super) fn page_of(
    page_number: Option<u32>,
    rows_per_page: Option<u32>,
    max_rows: u32,
) -> Result<(usize, u32, u32), ApiError> {
    let page = page_number.unwrap_or(1);
    let rows = rows_per_page.unwrap_or(100);
    if page == 0 || rows == 0 || rows > max_rows {
        return Err(ApiError::invalid(format!(
            "pageNumber starts at 1; rowsPerPage is 1 to {max_rows}"
        )));
    }
    Ok((
        (page as usize - 1).saturating_mul(rows as usize),
        rows,
        page,
    ))
}

fn users_page(
    state: &AppState,
    query: &UserQuery,
    max_rows: u32,
) -> Result<(Vec<UserDto>, Pagination), ApiError> {
    let (offset, rows, page) = page_of(query.page_number, query.rows_per_page, max_rows)?;
    let services = &state.services;
    let search = query.search.as_deref().filter(|s| !s.is_empty());
    let (total, users) = match (&query.username_eq, search) {
        (Some(name), _) => {
            let found: Vec<User> = services.directory.user(name).into_iter().collect();
            (found.len(), found.into_iter().skip(offset).collect())
        }
        (None, Some(part)) => services
            .directory
            .users_matching(part, offset, rows as usize),
        (None, None) => services.directory.users_page(offset, rows as usize),
    };
    let mut views = Views::cached(services, &state.roles);
    let users = users.iter().map(|u| views.user(u)).collect();
    Ok((users, Pagination::new(page, rows, total)))
}

/// List users (a plain array, as Connectware's `GET /api/users`; the total
/// is in `X-Total-Count`). Pages of `rowsPerPage` (default 100, at most 1000).
#[utoipa::path(get, path = "/api/users", tag = "users", params(UserQuery),
    responses((status = 200, description = "Users in username order", body = Vec<UserDto>,
        headers(("X-Total-Count" = u64, description = "Users matching, all pages")))))]
async fn list_users(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<UserQuery>,
) -> Result<(HeaderMap, Json<Vec<UserDto>>), ApiError> {
    let (users, pagination) = users_page(&state, &query, 1000)?;
    let mut headers = HeaderMap::new();
    headers.insert("x-total-count", HeaderValue::from(pagination.total_rows));
    Ok((headers, Json(users)))
}

/// List users a page at a time, as Connectware's `listUsers` (at most 100 rows).
#[utoipa::path(get, path = "/api/listUsers", tag = "users", params(UserQuery),
    responses((status = 200, body = UserList)))]
async fn list_users_paged(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<UserQuery>,
) -> Result<Json<UserList>, ApiError> {
    let (users, pagination) = users_page(&state, &query, 100)?;
    Ok(Json(UserList { users, pagination }))
}

/// Connectware's create-user body. `identityProvider` must be `local`;
/// `certificates` are issued by the built-in CA, not uploaded (must be empty).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateUserBody {
    #[schema(min_length = 3, max_length = 128)]
    pub username: String,
    /// Optional: a certificate-only user needs none.
    pub password: Option<String>,
    #[serde(default)]
    pub auto_generated: bool,
    pub mqtt_publish_prefix: Option<String>,
    pub identity_provider: Option<String>,
    pub grant_types: Option<Vec<GrantTypeDto>>,
    #[schema(value_type = Option<Vec<Object>>)]
    pub certificates: Option<Vec<serde_json::Value>>,
    pub initial_permissions: Option<Vec<PermissionInput>>,
    /// Role ids.
    pub roles: Option<Vec<String>>,
    #[serde(rename = "enforceMFAEnrollment", default)]
    pub enforce_mfa_enrollment: bool,
}

/// Create a user.
#[utoipa::path(post, path = "/api/users", tag = "users", request_body = CreateUserBody,
    responses((status = 201, description = "Created", body = UserDto)))]
async fn create_user(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<CreateUserBody>,
) -> Result<(StatusCode, Json<UserDto>), ApiError> {
    let new = CreateUser {
        username: body.username,
        password: body.password,
        auto_generated: body.auto_generated,
        mqtt_publish_prefix: body.mqtt_publish_prefix,
        grant_types: body
            .grant_types
            .unwrap_or_default()
            .into_iter()
            .map(GrantTypeDto::into_domain)
            .collect(),
        permissions: permissions_in(body.initial_permissions.unwrap_or_default()),
        role_ids: body.roles.unwrap_or_default(),
        enforce_mfa_enrollment: body.enforce_mfa_enrollment,
        identity_provider: body.identity_provider,
        certificates: body.certificates.map_or(0, |c| c.len()),
        ..CreateUser::default()
    };
    let actor = caller.actor();
    let view = blocking(&state, move |s| {
        let user = s.create_user(&actor, new)?;
        Ok(user_view(s, &user))
    })
    .await?;
    Ok((StatusCode::CREATED, Json(view)))
}

/// The caller's own user object.
#[utoipa::path(get, path = "/api/users/me", tag = "users", responses((status = 200, body = UserDto)))]
async fn me(State(state): State<AppState>, caller: Caller) -> Json<UserDto> {
    Json(user_view(&state.services, &caller.user))
}

/// One user (`me` for the caller).
#[utoipa::path(get, path = "/api/users/{id}", tag = "users",
    params(("id" = String, Path, description = "User id, or `me`")),
    responses((status = 200, body = UserDto)))]
async fn get_user(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<UserDto>, ApiError> {
    let user = find_user(&state.services, caller.resolve(&id))?;
    Ok(Json(user_view(&state.services, &user)))
}

fn double_option<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// A partial update: absent fields stay as they are.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateUserBody {
    /// Must equal the user's name when given (renaming is not supported).
    pub username: Option<String>,
    pub identity_provider: Option<String>,
    pub auto_generated: Option<bool>,
    /// `null` or `""` removes it.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub mqtt_publish_prefix: Option<Option<String>>,
    /// Role ids (replaces the list).
    pub roles: Option<Vec<String>>,
    /// The user's own permissions (replaces the list).
    pub permissions: Option<Vec<PermissionInput>>,
    pub grant_types: Option<Vec<GrantTypeDto>>,
    pub enabled: Option<bool>,
    #[serde(rename = "enforceMFAEnrollment")]
    pub enforce_mfa_enrollment: Option<bool>,
    /// `true` turns the user's MFA off.
    #[serde(rename = "disableMFA", default)]
    pub disable_mfa: bool,
}

/// Update a user (roles, permissions, prefix, grant types, enabled, MFA flags).
#[utoipa::path(put, path = "/api/users/{id}", tag = "users", request_body = UpdateUserBody,
    params(("id" = String, Path, description = "User id")),
    responses((status = 200, body = UserDto)))]
async fn update_user(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<UpdateUserBody>,
) -> Result<Json<UserDto>, ApiError> {
    let id = caller.resolve(&id).to_owned();
    let user = find_user(&state.services, &id)?;
    check_provider(body.identity_provider.as_deref())?;
    if body.username.as_ref().is_some_and(|n| *n != user.username) {
        return Err(ApiError::invalid(
            "username: renaming users is not supported",
        ));
    }
    let auto = body.auto_generated;
    let update = UpdateUser {
        mqtt_publish_prefix: body.mqtt_publish_prefix,
        role_ids: body.roles,
        permissions: body.permissions.map(permissions_in),
        grant_types: body
            .grant_types
            .map(|g| g.into_iter().map(GrantTypeDto::into_domain).collect()),
        enabled: body.enabled,
        enforce_mfa_enrollment: body.enforce_mfa_enrollment,
        disable_mfa: body.disable_mfa,
    };
    let actor = caller.actor();
    let view = blocking(&state, move |s| {
        let mut user = s.update_user(&actor, &id, update)?;
        if auto.is_some() {
            s.mfa.set_flags(&id, None, auto)?;
            user = s
                .directory
                .user_by_id(&id)
                .ok_or_else(|| AdminError::Conflict("user deleted meanwhile".into()))?;
        }
        Ok(user_view(s, &user))
    })
    .await?;
    Ok(Json(view))
}

/// Delete a user: their tokens are revoked, their MQTT sessions closed (0x98).
#[utoipa::path(delete, path = "/api/users/{id}", tag = "users",
    params(("id" = String, Path, description = "User id")),
    responses((status = 204, description = "Deleted")))]
async fn delete_user(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let id = caller.resolve(&id).to_owned();
    let actor = caller.actor();
    blocking(&state, move |s| s.delete_user(&actor, &id)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Gatehouse extension (Connectware's route is not public).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PasswordBody {
    /// Required when changing one's own password.
    pub old_password: Option<String>,
    pub new_password: String,
}

/// Change a password: a user their own (with `oldPassword`), an
/// administrator anyone's. Gatehouse extension.
#[utoipa::path(put, path = "/api/users/{id}/password", tag = "users", request_body = PasswordBody,
    params(("id" = String, Path, description = "User id, or `me`")),
    responses((status = 204, description = "Changed")))]
async fn change_password(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<PasswordBody>,
) -> Result<StatusCode, ApiError> {
    let id = caller.resolve(&id).to_owned();
    if body.old_password.is_some() {
        // A stolen token must not become a way to guess the password.
        state
            .services
            .per_user
            .take(&format!("password:{id}"))
            .map_err(ApiError::rate_limited)?;
    }
    let actor = caller.actor();
    blocking(&state, move |s| {
        s.change_password(
            &actor,
            &id,
            body.old_password.as_deref(),
            &body.new_password,
        )
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}
