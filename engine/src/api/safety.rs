//! Safety rails over REST (issue 12): the locks held and awaited, the plans'
//! circuit breakers, and the admin's break-glass calls (force-release a lock, reset
//! a breaker), each with a mandatory reason that goes into the audit log.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::{AuditReason, Caller};
use super::{ApiError, Problem, Shared};
use crate::store::{BreakerRow, LockRow};

/// A lock held or awaited by an unfinished run.
#[derive(Serialize, ToSchema)]
pub(super) struct LockView {
    name: String,
    run_id: String,
    plan_name: String,
    /// `shared` or `exclusive`.
    mode: String,
    /// `held` or `waiting`.
    state: String,
    /// When it was granted (epoch ms); null while waiting.
    granted_at: Option<i64>,
}

impl From<LockRow> for LockView {
    fn from(r: LockRow) -> LockView {
        LockView {
            name: r.name,
            run_id: r.run_id,
            plan_name: r.plan_name,
            mode: r.mode,
            state: r.state,
            granted_at: r.granted_at,
        }
    }
}

/// A plan's circuit breaker.
#[derive(Serialize, ToSchema)]
pub(super) struct BreakerView {
    plan: String,
    /// Failed (or rolled back) runs within `window_ms` that open it.
    failures: u32,
    window_ms: i64,
    /// `open` (new runs refused) or `closed`.
    state: String,
    opened_at: Option<i64>,
    /// Failed runs counted when it opened.
    failed_runs: Option<u32>,
    reset_at: Option<i64>,
    /// The token (or `local:USER`) that last reset it.
    reset_by: Option<String>,
    reset_reason: Option<String>,
}

impl From<BreakerRow> for BreakerView {
    fn from(r: BreakerRow) -> BreakerView {
        BreakerView {
            plan: r.plan,
            failures: r.failures,
            window_ms: r.window_ms,
            state: r.state,
            opened_at: r.opened_at,
            failed_runs: r.failed_runs,
            reset_at: r.reset_at,
            reset_by: r.reset_by,
            reset_reason: r.reset_reason,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub(super) struct LockList {
    /// By name; holders before waiters, each oldest first.
    locks: Vec<LockView>,
}

#[derive(Serialize, ToSchema)]
pub(super) struct BreakerList {
    breakers: Vec<BreakerView>,
}

/// A break-glass call's body.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ReleaseBody {
    /// The lock's name as resolved, e.g. `mysql/orders`.
    name: String,
    /// Why (mandatory, recorded in the audit log).
    reason: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ResetBody {
    /// Why (mandatory, recorded in the audit log).
    reason: String,
}

#[derive(Serialize, ToSchema)]
pub(super) struct Released {
    name: String,
    /// The runs that held it; they go on without it.
    released_from: Vec<String>,
}

fn reason(r: &str) -> Result<String, ApiError> {
    let r = r.trim();
    if r.is_empty() {
        return Err(ApiError::bad_request(
            "`reason` must say why (it is recorded in the audit log): a break-glass call \
             without one is refused",
        ));
    }
    Ok(r.to_owned())
}

/// Every lock held or awaited by an unfinished run.
#[utoipa::path(get, path = "/v1/locks", tag = "safety",
    responses((status = 200, description = "the locks", body = LockList)))]
pub(super) async fn locks(State(s): Shared) -> Result<Json<LockList>, ApiError> {
    Ok(Json(LockList {
        locks: s
            .exec
            .store()
            .locks(None)
            .await?
            .into_iter()
            .map(LockView::from)
            .collect(),
    }))
}

/// Break-glass: drops every grant of a lock, so a waiting run can have it; its
/// holders keep running without it. Admin only; the reason is audited.
#[utoipa::path(post, path = "/v1/locks/release", tag = "safety",
    request_body = ReleaseBody,
    responses(
        (status = 200, description = "released", body = Released),
        (status = 400, description = "bad body or no reason", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "nobody holds the lock", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "the body is not `application/json`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "the body is not a release request", body = Problem, content_type = "application/problem+json"),
    ))]
pub(super) async fn release(
    State(s): Shared,
    caller: Caller,
    body: Result<Json<ReleaseBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(body) = body?;
    let why = reason(&body.reason)?;
    let holders = s.exec.store().force_release(&body.name).await?;
    if holders.is_empty() {
        return Err(ApiError::not_found(format!(
            "nobody holds lock `{}`; GET /v1/locks lists the locks held",
            body.name
        )));
    }
    tracing::warn!(lock = %body.name, by = %caller.name, reason = %why, runs = ?holders, "lock force-released (break-glass)");
    // A waiting run polls for its locks; it gets this one within its poll interval.
    Ok((
        axum::Extension(AuditReason(why)),
        Json(Released {
            name: body.name,
            released_from: holders,
        }),
    )
        .into_response())
}

/// The circuit breaker of every plan that declares one.
#[utoipa::path(get, path = "/v1/breakers", tag = "safety",
    responses((status = 200, description = "the breakers", body = BreakerList)))]
pub(super) async fn breakers(State(s): Shared) -> Result<Json<BreakerList>, ApiError> {
    Ok(Json(BreakerList {
        breakers: s
            .exec
            .store()
            .breakers()
            .await?
            .into_iter()
            .map(BreakerView::from)
            .collect(),
    }))
}

/// Resets (closes) a plan's circuit breaker: new runs may start, and only failures
/// from now on count. Admin only; the reason is audited.
#[utoipa::path(post, path = "/v1/breakers/{plan}/reset", tag = "safety",
    params(("plan" = String, Path, description = "the plan's name")),
    request_body = ResetBody,
    responses(
        (status = 200, description = "the breaker, closed", body = BreakerView),
        (status = 400, description = "bad body or no reason", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "the plan has no breaker", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "the body is not `application/json`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "the body is not a reset request", body = Problem, content_type = "application/problem+json"),
    ))]
pub(super) async fn reset(
    State(s): Shared,
    caller: Caller,
    Path(plan): Path<String>,
    body: Result<Json<ResetBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(body) = body?;
    let why = reason(&body.reason)?;
    let row = s
        .exec
        .store()
        .reset_breaker(&plan, &caller.name, &why, s.exec.now())
        .await?;
    tracing::warn!(plan = %plan, by = %caller.name, reason = %why, "circuit breaker reset (break-glass)");
    Ok((
        axum::Extension(AuditReason(why)),
        Json(BreakerView::from(row)),
    )
        .into_response())
}
