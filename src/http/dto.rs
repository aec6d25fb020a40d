//! The API's JSON shapes, after Connectware's (camelCase, `mfa_is_enrolled`
//! as its one snake_case field). Kept apart from the domain model: this is
//! the contract, documented in the OpenAPI description.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::identity::services::permission_id;
use crate::identity::{Context, Effect, GrantMethod, GrantType, Operation, Permission};

#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum OperationDto {
    Read,
    Write,
    ReadWrite,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum ContextDto {
    Mqtt,
    Http,
}

/// Gatehouse extension: a deny permission wins over any allow.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum EffectDto {
    Allow,
    Deny,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum GrantMethodDto {
    Password,
    Certificate,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PermissionDto {
    /// Derived from the permission's content (stable, needs no storage).
    pub id: String,
    pub resource: String,
    pub operation: OperationDto,
    pub context: ContextDto,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub effect: Option<EffectDto>,
}

impl From<&Permission> for PermissionDto {
    fn from(p: &Permission) -> PermissionDto {
        PermissionDto {
            id: permission_id(p),
            resource: p.resource.clone(),
            operation: match p.operation {
                Operation::Read => OperationDto::Read,
                Operation::Write => OperationDto::Write,
                Operation::ReadWrite => OperationDto::ReadWrite,
            },
            context: match p.context {
                Context::Mqtt => ContextDto::Mqtt,
                Context::Http => ContextDto::Http,
            },
            effect: (p.effect == Effect::Deny).then_some(EffectDto::Deny),
        }
    }
}

/// A permission in a request; an `id` (as read back from the API) is
/// accepted and ignored.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PermissionInput {
    #[serde(default)]
    pub id: Option<String>,
    /// Topic pattern with `+` and `#` (`%u`, `%c` allowed); http resources start with `/`.
    pub resource: String,
    pub operation: OperationDto,
    pub context: ContextDto,
    #[serde(default)]
    pub effect: Option<EffectDto>,
}

impl PermissionInput {
    pub fn into_domain(self) -> Permission {
        Permission {
            resource: self.resource,
            operation: match self.operation {
                OperationDto::Read => Operation::Read,
                OperationDto::Write => Operation::Write,
                OperationDto::ReadWrite => Operation::ReadWrite,
            },
            context: match self.context {
                ContextDto::Mqtt => Context::Mqtt,
                ContextDto::Http => Context::Http,
            },
            effect: match self.effect {
                Some(EffectDto::Deny) => Effect::Deny,
                _ => Effect::Allow,
            },
        }
    }
}

pub fn permissions_in(list: Vec<PermissionInput>) -> Vec<Permission> {
    list.into_iter().map(PermissionInput::into_domain).collect()
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GrantTypeDto {
    pub method: GrantMethodDto,
    #[serde(default)]
    pub is_required: bool,
}

impl From<&GrantType> for GrantTypeDto {
    fn from(g: &GrantType) -> GrantTypeDto {
        GrantTypeDto {
            method: match g.method {
                GrantMethod::Password => GrantMethodDto::Password,
                GrantMethod::Certificate => GrantMethodDto::Certificate,
            },
            is_required: g.is_required,
        }
    }
}

impl GrantTypeDto {
    pub fn into_domain(self) -> GrantType {
        GrantType {
            method: match self.method {
                GrantMethodDto::Password => GrantMethod::Password,
                GrantMethodDto::Certificate => GrantMethod::Certificate,
            },
            is_required: self.is_required,
        }
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenDto {
    /// SHA-256 of the token, hex.
    pub fingerprint: String,
    pub label: Option<String>,
    /// Unix milliseconds.
    pub created_at: u64,
    pub expires_at: u64,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CertificateDto {
    pub fingerprint: String,
    pub created_at: u64,
    pub expires_at: u64,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RoleDto {
    pub id: String,
    pub name: String,
    /// Always false (no shared roles in Gatehouse).
    pub is_shared: bool,
    pub permissions: Vec<PermissionDto>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserDto {
    pub id: String,
    pub username: String,
    pub auto_generated: bool,
    pub mqtt_publish_prefix: Option<String>,
    /// Always `local`.
    pub identity_provider: String,
    pub grant_types: Vec<GrantTypeDto>,
    pub tokens: Vec<TokenDto>,
    pub certificates: Vec<CertificateDto>,
    pub roles: Vec<RoleDto>,
    /// The user's own permissions (beyond their roles').
    pub permissions: Vec<PermissionDto>,
    #[serde(rename = "mfa_is_enrolled")]
    pub mfa_is_enrolled: bool,
    #[serde(rename = "enforceMFAEnrollment")]
    pub enforce_mfa_enrollment: bool,
    pub enabled: bool,
    pub created_at: u64,
    pub updated_at: u64,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Pagination {
    pub page_number: u32,
    pub rows_per_page: u32,
    pub total_rows: u64,
    pub total_pages: u64,
}

impl Pagination {
    pub fn new(page_number: u32, rows_per_page: u32, total: usize) -> Pagination {
        Pagination {
            page_number,
            rows_per_page,
            total_rows: total as u64,
            total_pages: (total as u64).div_ceil(u64::from(rows_per_page.max(1))),
        }
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct UserList {
    pub users: Vec<UserDto>,
    pub pagination: Pagination,
}

/// `pageNumber` from 1; `rowsPerPage` up to 100 (1000 on `/api/users`).
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    #[param(minimum = 1)]
    pub page_number: Option<u32>,
    #[param(minimum = 1)]
    pub rows_per_page: Option<u32>,
}

#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UserQuery {
    #[serde(rename = "pageNumber")]
    #[param(rename = "pageNumber", minimum = 1)]
    pub page_number: Option<u32>,
    #[serde(rename = "rowsPerPage")]
    #[param(rename = "rowsPerPage", minimum = 1)]
    pub rows_per_page: Option<u32>,
    /// Exact user name.
    #[serde(rename = "username[eq]")]
    #[param(rename = "username[eq]")]
    pub username_eq: Option<String>,
    /// Part of the user name, in any case (Gatehouse extension).
    pub search: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RoleQuery {
    /// Exact role name.
    #[serde(rename = "name[eq]")]
    #[param(rename = "name[eq]")]
    pub name_eq: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Health {
    /// `ok`.
    pub status: String,
    pub version: String,
}
