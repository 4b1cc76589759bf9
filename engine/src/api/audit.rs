//! The audit log: every mutating call and every approval, with who made it and the
//! status it got (written by `auth::identify`).

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{ApiError, Problem, Shared};
use crate::store::AuditRow;

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct AuditQuery {
    /// At most this many entries, newest first (default 100, at most 10000).
    #[param(minimum = 0)]
    limit: Option<usize>,
}

/// One call as the audit log has it.
#[derive(Serialize, ToSchema)]
pub(super) struct AuditEntryView {
    pub id: i64,
    /// When the call arrived, in milliseconds since the Unix epoch.
    pub at: i64,
    /// The token's name (`anonymous` with `--no-auth`); null when the call had no
    /// valid token.
    pub token: Option<String>,
    /// The token's role at the time.
    pub role: Option<String>,
    pub method: String,
    pub path: String,
    /// The run the call was about, if any (for a submission, the run it created).
    pub run_id: Option<String>,
    pub step_id: Option<String>,
    /// The HTTP status the call got; 401 and 403 are refusals.
    pub status: u16,
    /// The reason an admin gave for a break-glass call (lock release, breaker
    /// reset); absent for other calls.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl From<AuditRow> for AuditEntryView {
    fn from(r: AuditRow) -> AuditEntryView {
        AuditEntryView {
            id: r.id,
            at: r.at,
            token: r.token,
            role: r.role,
            method: r.method,
            path: r.path,
            run_id: r.run_id,
            step_id: r.step_id,
            status: r.status,
            reason: r.reason,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub(super) struct AuditList {
    /// Newest first.
    entries: Vec<AuditEntryView>,
}

/// The audit log, newest first: every mutating call (refused ones too) and every
/// approval or rejection.
#[utoipa::path(get, path = "/v1/audit", tag = "service",
    params(AuditQuery),
    responses(
        (status = 200, description = "the entries, newest first", body = AuditList),
        (status = 400, description = "bad `limit`", body = Problem, content_type = "application/problem+json"),
    ))]
pub(super) async fn list(
    State(s): Shared,
    q: Result<Query<AuditQuery>, QueryRejection>,
) -> Result<Json<AuditList>, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let rows = s
        .exec
        .store()
        .audit(q.limit.unwrap_or(100).min(10_000))
        .await?;
    Ok(Json(AuditList {
        entries: rows.into_iter().map(AuditEntryView::from).collect(),
    }))
}
