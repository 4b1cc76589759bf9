//! Preventive maintenance schedules over REST: create, list, show (with the next fire
//! times and the history of handled due times), pause/resume, remove. The scheduler
//! loop (`scheduler.rs`) fires them.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::{ApiError, Problem, Shared};
use crate::run::Ms;
use crate::schedule::{self, Spec};
use crate::store::{self, FireRow, ScheduleRow};

/// How many upcoming due times a schedule shows, and how much of its history.
const NEXT: usize = 5;
const HISTORY: usize = 50;

/// A schedule as stored, with when it fires next.
#[derive(Serialize, ToSchema)]
pub(super) struct ScheduleView {
    name: String,
    /// The schedule as created: `plan`, `params`, `cron`, `timezone`, `enabled`,
    /// `jitter`, `window`, `outside_window`, `missed`, `overlap`.
    #[schema(value_type = Object)]
    spec: Value,
    enabled: bool,
    created_at: Ms,
    updated_at: Ms,
    /// The upcoming due times (empty while paused).
    next: Vec<NextFire>,
    /// The run of the latest fire.
    last_run: Option<String>,
    /// The plan whose `metadata.schedules` declares it (absent for one created over
    /// the API): registering a new version of that plan updates or removes it, and
    /// it cannot be deleted on its own.
    #[serde(skip_serializing_if = "Option::is_none")]
    declared_by: Option<String>,
}

/// An upcoming due time.
#[derive(Serialize, ToSchema)]
pub(super) struct NextFire {
    /// The due time, epoch milliseconds.
    due_at: Ms,
    /// When it fires (the due time plus its jitter, or its window's opening); absent
    /// when it will be skipped as outside the window.
    fire_at: Option<Ms>,
}

/// A schedule with the history of its handled due times, newest first.
#[derive(Serialize, ToSchema)]
pub(super) struct ScheduleDetail {
    #[serde(flatten)]
    schedule: ScheduleView,
    #[schema(value_type = Vec<Object>)]
    history: Vec<FireRow>,
}

#[derive(Serialize, ToSchema)]
pub(super) struct ScheduleList {
    schedules: Vec<ScheduleView>,
}

/// What `PATCH` changes.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct PatchBody {
    /// false pauses the schedule; true resumes it (due times that passed while it was
    /// paused do not fire).
    enabled: bool,
}

fn invalid(e: schedule::Error) -> ApiError {
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "Invalid schedule",
        e.to_string(),
    )
}

fn not_found_or(e: store::Error) -> ApiError {
    match e {
        store::Error::ScheduleNotFound(_) => ApiError::not_found(e.to_string()),
        store::Error::ScheduleExists(_) | store::Error::ScheduleDeclared { .. } => {
            ApiError::conflict(e.to_string())
        }
        e => e.into(),
    }
}

fn view(row: ScheduleRow) -> ScheduleView {
    let next = match serde_json::from_value::<Spec>(row.spec.clone())
        .ok()
        .and_then(|s| s.validate().ok())
    {
        Some(s) if row.enabled => schedule::next_due_times(&s, row.after, NEXT)
            .into_iter()
            .map(|(due_at, fire_at)| NextFire { due_at, fire_at })
            .collect(),
        _ => vec![],
    };
    ScheduleView {
        name: row.name,
        spec: row.spec,
        enabled: row.enabled,
        created_at: row.created_at,
        updated_at: row.updated_at,
        next,
        last_run: row.last_run,
        declared_by: row.declared_by,
    }
}

/// Creates a schedule of a registered plan. Due times from now on fire.
#[utoipa::path(post, path = "/v1/schedules", tag = "schedules",
    request_body(content = Object, description = "`name`, `plan` (NAME@VERSION or NAME for its latest), `cron` (5 fields; day-of-week by name), \
        and optionally `params`, `timezone` (IANA, default UTC), `enabled` (true), `jitter` (e.g. `30s`, at most 1h), \
        `window` (`HH:MM-HH:MM` local), `outside_window` (`wait` | `skip`), `missed` (`skip` | `run-once`), `overlap` (`skip` | `queue` | `allow`)"),
    responses(
        (status = 201, description = "the schedule was created", body = ScheduleView,
            headers(("location" = String, description = "the schedule's URL"))),
        (status = 400, description = "the body is not JSON of the expected shape", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "a schedule of that name exists", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "the body is not `application/json`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "a field is not valid (named in `detail`), or the plan is not registered", body = Problem, content_type = "application/problem+json"),
    ))]
pub(super) async fn create(
    State(s): Shared,
    body: Result<Json<Value>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(body) = body?;
    let spec: Spec = serde_json::from_value(body)
        .map_err(|e| ApiError::bad_request(format!("the schedule body: {e}")))?;
    let sched = spec.validate().map_err(invalid)?;
    s.exec
        .store()
        .plan_version(&sched.plan.name, sched.plan.version)
        .await
        .map_err(|e| match e {
            store::Error::PlanNotFound(m) => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Invalid schedule",
                format!("schedule field `plan`: {m}; register it first (POST /v1/plans)"),
            ),
            e => e.into(),
        })?;
    let now = s.exec.now();
    let spec_json = serde_json::to_value(&spec).expect("a spec serializes");
    s.exec
        .store()
        .create_schedule(&spec.name, &spec_json, spec.enabled, now, now)
        .await
        .map_err(not_found_or)?;
    let row = s.exec.store().schedule(&spec.name).await?;
    let location = format!("/v1/schedules/{}", spec.name);
    Ok((
        StatusCode::CREATED,
        [("location", location)],
        Json(view(row)),
    )
        .into_response())
}

/// Lists every schedule, by name, with its next due times.
#[utoipa::path(get, path = "/v1/schedules", tag = "schedules",
    responses((status = 200, description = "the schedules", body = ScheduleList)))]
pub(super) async fn list(State(s): Shared) -> Result<Json<ScheduleList>, ApiError> {
    let schedules = s
        .exec
        .store()
        .schedules()
        .await?
        .into_iter()
        .map(view)
        .collect();
    Ok(Json(ScheduleList { schedules }))
}

/// One schedule: its next due times and the history of handled ones.
#[utoipa::path(get, path = "/v1/schedules/{name}", tag = "schedules",
    params(("name" = String, Path, description = "the schedule's name")),
    responses(
        (status = 200, description = "the schedule", body = ScheduleDetail),
        (status = 404, description = "no schedule of that name", body = Problem, content_type = "application/problem+json"),
    ))]
pub(super) async fn show(
    State(s): Shared,
    Path(name): Path<String>,
) -> Result<Json<ScheduleDetail>, ApiError> {
    let row = s.exec.store().schedule(&name).await.map_err(not_found_or)?;
    let history = s.exec.store().schedule_history(row.id, HISTORY).await?;
    Ok(Json(ScheduleDetail {
        schedule: view(row),
        history,
    }))
}

/// Pauses (`enabled: false`) or resumes (`enabled: true`) a schedule.
#[utoipa::path(patch, path = "/v1/schedules/{name}", tag = "schedules",
    params(("name" = String, Path, description = "the schedule's name")),
    request_body = PatchBody,
    responses(
        (status = 200, description = "the schedule as updated", body = ScheduleView),
        (status = 400, description = "the body is not JSON of the expected shape", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "no schedule of that name", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "the body is not `application/json`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "the body is JSON but not `{\"enabled\": BOOL}`", body = Problem, content_type = "application/problem+json"),
    ))]
pub(super) async fn update(
    State(s): Shared,
    Path(name): Path<String>,
    body: Result<Json<PatchBody>, JsonRejection>,
) -> Result<Json<ScheduleView>, ApiError> {
    let Json(body) = body?;
    let now = s.exec.now();
    s.exec
        .store()
        .set_schedule_enabled(&name, body.enabled, now)
        .await
        .map_err(not_found_or)?;
    Ok(Json(view(s.exec.store().schedule(&name).await?)))
}

/// Removes a schedule and its history; the runs it created stay.
#[utoipa::path(delete, path = "/v1/schedules/{name}", tag = "schedules",
    params(("name" = String, Path, description = "the schedule's name")),
    responses(
        (status = 204, description = "the schedule was removed"),
        (status = 404, description = "no schedule of that name", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "the schedule is declared by a plan's metadata: remove it there", body = Problem, content_type = "application/problem+json"),
    ))]
pub(super) async fn remove(
    State(s): Shared,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    s.exec
        .store()
        .delete_schedule(&name)
        .await
        .map_err(not_found_or)?;
    Ok(StatusCode::NO_CONTENT)
}
