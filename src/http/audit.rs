//! The audit log, newest first (`/api/audit`, readable with `read` on it;
//! the admin role has it).

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::dto::{PageQuery, Pagination};
use super::error::ApiError;
use super::extract::ApiQuery;
use super::users::page_of;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(audit))
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntryDto {
    pub seq: u64,
    /// Unix milliseconds.
    pub at: u64,
    /// User name of whoever made the change.
    pub actor: String,
    pub actor_id: Option<String>,
    pub address: Option<String>,
    /// e.g. `user.create`, `role.permission.add`, `token.revoke`.
    pub action: String,
    pub target: String,
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditList {
    pub entries: Vec<AuditEntryDto>,
    pub pagination: Pagination,
}

/// Administrative changes: who, what, when, from where (Gatehouse extension).
#[utoipa::path(get, path = "/api/audit", tag = "audit", params(PageQuery),
    responses((status = 200, body = AuditList)))]
async fn audit(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> Result<Json<AuditList>, ApiError> {
    let (offset, rows, page) = page_of(query.page_number, query.rows_per_page, 1000)?;
    let (total, entries) = state.services.audit.page(offset, rows as usize);
    Ok(Json(AuditList {
        entries: entries
            .into_iter()
            .map(|e| AuditEntryDto {
                seq: e.seq,
                at: e.at,
                actor: e.actor,
                actor_id: e.actor_id,
                address: e.address,
                action: e.action,
                target: e.target,
                // Always an object, as documented.
                detail: if e.detail.is_object() {
                    e.detail
                } else {
                    serde_json::json!({})
                },
            })
            .collect(),
        pagination: Pagination::new(page, rows, total),
    }))
}
