//! Runs: submit (idempotently, an inline plan or a registered one), list, show,
//! steer, resume, and stream their event logs.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::Stream;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use utoipa::{IntoParams, ToSchema};

use super::auth::{AuditRun, AuthMode, Caller};
use super::plans::{bind, check, check_text};
use super::{ApiError, AppState, Problem, Shared};
use crate::executor::{self, CommandKind, Submission};
use crate::plan::StepKind;
use crate::run::{Ms, RunStatus};
use crate::store::RunFilter;

/// A run to submit: an inline `plan`, or a registered plan by `plan_name` (and
/// `plan_version`, default its latest), with the run's params.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct SubmitBody {
    /// An inline plan document: YAML or JSON text, or a JSON object. Not with `plan_name`.
    #[schema(value_type = Option<Object>)]
    plan: Option<Value>,
    /// A registered plan's name. Not with `plan`.
    plan_name: Option<String>,
    /// Which version of `plan_name` to run; its latest if omitted.
    #[schema(minimum = 1)]
    plan_version: Option<u32>,
    /// The run's params, checked against the plan's `params`.
    #[serde(default)]
    params: Map<String, Value>,
}

#[derive(Deserialize)]
pub(super) struct SubmitQuery {
    dry_run: Option<bool>,
}

/// The run a submission created, or found by its `Idempotency-Key`.
#[derive(Serialize, ToSchema)]
pub(super) struct Submitted {
    pub id: String,
    /// false when the `Idempotency-Key` named a run submitted before.
    pub created: bool,
}

/// Submits a run of an inline plan or of a registered plan version. With an
/// `Idempotency-Key`, submitting again gives back the same run instead of a second one.
/// The run records the token that submitted it (`submitted_by`).
#[utoipa::path(post, path = "/v1/runs", tag = "runs",
    request_body = SubmitBody,
    params(("Idempotency-Key" = Option<String>, Header, nullable = false, min_length = 1, max_length = 255,
        pattern = "^[!-~]([ -~]*[!-~])?$",
        description = "1 to 255 visible ASCII characters; the same key returns the same run"),
        ("dry_run" = Option<bool>, Query, description = "change nothing: resolve params and templates, ask each mutating action's plugin what it would do (read-only checks), run read-only actions, answer 200 `{dry_run, plan, hash, params, locks, ok, steps: [{order, id, kind, uses, effect, params, would, checked, checks, output, error}]}`; no run is stored")),
    responses(
        (status = 201, description = "the run was created and is running", body = Submitted,
            headers(("location" = String, description = "the run's URL"))),
        (status = 200, description = "the `Idempotency-Key` named an existing run; or, with `dry_run=true`, the dry run's report (nothing stored)", body = Submitted),
        (status = 400, description = "bad body or `Idempotency-Key`, or not exactly one of `plan` and `plan_name`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "no registered plan of that name or version", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "refused by the safety rails, nothing was created: the plan's circuit breaker is open, a lock is held by another run (`on_lock_busy: refuse`), or a blast-radius limit is reached (`refuse`) or can never be met", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "the body is not `application/json`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "the plan or params are invalid; nothing was run", body = Problem, content_type = "application/problem+json"),
    ))]
pub(super) async fn submit(
    State(s): Shared,
    caller: Caller,
    headers: HeaderMap,
    query: Result<Query<SubmitQuery>, QueryRejection>,
    body: Result<Json<SubmitBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let Json(body) = body?;
    let key = match headers.get("idempotency-key") {
        Some(v) => Some(
            v.to_str()
                .ok()
                .filter(|k| !k.is_empty() && k.len() <= 255)
                .ok_or_else(|| {
                    ApiError::bad_request(
                        "Idempotency-Key must be 1 to 255 visible ASCII characters",
                    )
                })?,
        ),
        None => None,
    };
    let (plan, version, params) = match (&body.plan, &body.plan_name, body.plan_version) {
        (Some(_), Some(_), _) => {
            return Err(ApiError::bad_request(
                "give either `plan` (an inline plan) or `plan_name` (a registered plan), not both",
            ));
        }
        (Some(_), None, Some(_)) => {
            return Err(ApiError::bad_request(
                "`plan_version` picks a version of a registered plan: it goes with `plan_name`, not `plan`",
            ));
        }
        (None, None, _) => {
            return Err(ApiError::bad_request(
                "give `plan` (an inline plan document) or `plan_name` (a registered plan, \
                 with `plan_version` or its latest version)",
            ));
        }
        (Some(inline), None, None) => {
            let (plan, params) = check(&s, inline, &body.params).await?;
            (plan, None, params)
        }
        (None, Some(name), version) => {
            let stored = s.exec.store().plan_version(name, version).await?;
            // Checked again: the plugins installed now are the ones the run will call.
            let plan = check_text(
                &s,
                &format!("{name} version {}", stored.version),
                &stored.source,
                stored.format,
                &format!(
                    "plan `{name}` version {} does not validate against the installed plugins; nothing was run",
                    stored.version
                ),
            )
            .await?;
            let params = bind(&plan, &body.params)?;
            (plan, Some(stored.version), params)
        }
    };
    if query.dry_run == Some(true) {
        let report = s.exec.dry_run(&plan, params).await?;
        return Ok((StatusCode::OK, Json(report)).into_response());
    }
    let (run, created) = s
        .exec
        .submit(
            &plan,
            params,
            Submission {
                plan_version: version,
                idempotency_key: key,
                submitted_by: Some(&caller.name),
            },
        )
        .await?;
    if created {
        s.drive(run.clone());
    }
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let location = format!("/v1/runs/{run}");
    Ok((
        status,
        [("location", location)],
        axum::Extension(AuditRun(run.clone())),
        Json(Submitted { id: run, created }),
    )
        .into_response())
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct ListQuery {
    /// Only runs in this state.
    #[param(schema_with = run_status_schema)]
    status: Option<String>,
    /// Only runs of the plan with this name (`metadata.name`), inline or registered.
    plan: Option<String>,
    /// Only runs created at or after this time (RFC 3339, e.g. `2026-05-01T12:00:00Z`).
    since: Option<String>,
    /// Only runs created before this time (RFC 3339).
    until: Option<String>,
    /// At most this many runs, newest first (default 50, at most 1000).
    #[param(minimum = 0)]
    limit: Option<usize>,
}

/// A run's status, one of [`RunStatus::ALL`].
fn run_status_schema() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(RunStatus::ALL.iter().map(|s| s.as_str())))
        .build()
}

/// Runs, newest first.
#[derive(Serialize, ToSchema)]
pub(super) struct RunList {
    #[schema(value_type = Vec<Object>)]
    runs: Vec<Value>,
}

/// Lists runs, newest first; every filter given must hold.
#[utoipa::path(get, path = "/v1/runs", tag = "runs",
    params(ListQuery),
    responses(
        (status = 200, description = "the runs", body = RunList),
        (status = 400, description = "a filter is not valid", body = Problem, content_type = "application/problem+json"),
    ))]
pub(super) async fn list(
    State(s): Shared,
    q: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let status = q
        .status
        .as_deref()
        .map(RunStatus::parse_input)
        .transpose()
        .map_err(ApiError::bad_request)?;
    let filter = RunFilter {
        status,
        plan: q.plan,
        since: q.since.as_deref().map(|v| time("since", v)).transpose()?,
        until: q.until.as_deref().map(|v| time("until", v)).transpose()?,
        limit: q.limit.unwrap_or(50).min(1000),
    };
    let runs = s.exec.store().list_runs(&filter).await?;
    Ok(Json(json!({ "runs": runs })))
}

/// A query parameter's RFC 3339 time, in Unix ms.
fn time(field: &str, v: &str) -> Result<Ms, ApiError> {
    rfc3339_ms(v).ok_or_else(|| {
        ApiError::bad_request(format!(
            "`{field}` must be an RFC 3339 time such as 2026-05-01T12:00:00Z or \
             2026-05-01T14:00:00+02:00 (in a URL, write `+` as %2B); got `{v}`"
        ))
    })
}

/// Parses an RFC 3339 time (`Z` or a numeric offset) to Unix ms.
fn rfc3339_ms(v: &str) -> Option<Ms> {
    // humantime reads UTC (`Z`) times only; a numeric offset is applied here.
    let (base, offset_s) = match v.strip_suffix(['Z', 'z']) {
        Some(base) => (base, 0),
        None => {
            let cut = v.len().checked_sub(6)?;
            let (base, offset) = (v.get(..cut)?, v.get(cut..)?.as_bytes());
            let sign = match offset[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let digits = |a: u8, b: u8| {
                (a.is_ascii_digit() && b.is_ascii_digit())
                    .then(|| i64::from((a - b'0') * 10 + (b - b'0')))
            };
            let (h, m) = (digits(offset[1], offset[2])?, digits(offset[4], offset[5])?);
            if offset[3] != b':' || h > 23 || m > 59 {
                return None;
            }
            (base, sign * (h * 3600 + m * 60))
        }
    };
    if base.len() < 19 || !matches!(base.as_bytes()[10], b'T' | b't' | b' ') {
        return None;
    }
    let t = humantime::parse_rfc3339(&format!("{}T{}Z", &base[..10], &base[11..])).ok()?;
    let ms = t.duration_since(std::time::UNIX_EPOCH).ok()?.as_millis();
    Some(i64::try_from(ms).ok()? - offset_s * 1000)
}

/// The run a resume took over.
#[derive(Serialize, ToSchema)]
pub(super) struct Resumed {
    id: String,
    /// The run's status when it was taken over (`held`: it waits for a retry or skip
    /// of its held step).
    #[schema(value_type = String)]
    status: RunStatus,
}

/// Takes over a run whose medic process died and drives it in this process, as a
/// restart of `medic serve` would. Attempts that were in flight are observed through
/// their plugin first, never re-run blindly.
#[utoipa::path(post, path = "/v1/runs/{id}/resume", tag = "runs",
    params(("id" = String, Path, description = "the run's id")),
    responses(
        (status = 202, description = "this process now drives the run", body = Resumed),
        (status = 404, description = "no such run", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "the run has ended, or a live medic process owns it", body = Problem, content_type = "application/problem+json"),
    ))]
pub(super) async fn resume(
    State(s): Shared,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Resumed>), ApiError> {
    let run = s.exec.store().load_run(&id).await?;
    let status = run.summary.status;
    if status.is_terminal() {
        return Err(ApiError::conflict(format!(
            "run {id} has ended ({}); there is nothing to resume",
            status.as_str()
        )));
    }
    s.exec.claim(&id).await?;
    s.drive(id.clone());
    Ok((StatusCode::ACCEPTED, Json(Resumed { id, status })))
}

/// A run with its params, step states, attempts (with outputs and timings), events,
/// and `plan`: the plan document it runs (canonical JSON), whose steps' `needs` are
/// the run's graph.
#[utoipa::path(get, path = "/v1/runs/{id}", tag = "runs",
    params(("id" = String, Path, description = "the run's id")),
    responses(
        (status = 200, description = "the run", body = Object),
        (status = 404, description = "no such run", body = Problem, content_type = "application/problem+json"),
    ))]
pub(super) async fn show(
    State(s): Shared,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(s.exec.store().detail(&id).await?))
}

/// Why: kept with the command in the run's log.
#[derive(Deserialize, Default, ToSchema)]
pub(super) struct CommandBody {
    comment: Option<String>,
    /// Who acts; only with `medic serve --no-auth`. Otherwise the token's name is
    /// recorded and this is ignored.
    by: Option<String>,
}

impl CommandBody {
    /// An empty body (or `null`) is no comment; anything else must be the JSON object.
    fn parse(body: &[u8]) -> Result<CommandBody, ApiError> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(CommandBody::default());
        }
        serde_json::from_slice::<Option<CommandBody>>(body)
            .map(Option::unwrap_or_default)
            .map_err(|e| {
                ApiError::bad_request(format!(
                    "the body must be empty or a JSON object like {{\"comment\": \"...\"}}: {e}"
                ))
            })
    }
}

/// Cancels a run: nothing new starts, completed steps are undone.
#[utoipa::path(post, path = "/v1/runs/{id}/cancel", tag = "runs",
    params(("id" = String, Path, description = "the run's id")),
    request_body(content = Option<CommandBody>, description = "optional comment"),
    responses(
        (status = 202, description = "the command is in the run's inbox"),
        (status = 400, description = "bad body", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such run", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "the run has ended", body = Problem, content_type = "application/problem+json"),
    ))]
pub(super) async fn cancel(
    State(s): Shared,
    caller: Caller,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<StatusCode, ApiError> {
    let body = CommandBody::parse(&body)?;
    command(&s, &caller, &id, None, CommandKind::Cancel, body).await
}

/// Approves a waiting approval step. The token that submitted the run may not,
/// unless the step says `allow_self_approval: true`.
#[utoipa::path(post, path = "/v1/runs/{id}/steps/{step}/approve", tag = "runs",
    params(
        ("id" = String, Path, description = "the run's id"),
        ("step" = String, Path, description = "the approval step's id"),
    ),
    request_body(content = Option<CommandBody>, description = "optional comment"),
    responses(
        (status = 202, description = "the command is in the run's inbox"),
        (status = 400, description = "bad body", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "the token's role is below approver, or it submitted the run", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such run or step", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "the step is not waiting for approval", body = Problem, content_type = "application/problem+json"),
    ))]
pub(super) async fn approve(
    State(s): Shared,
    caller: Caller,
    Path((id, step)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Result<StatusCode, ApiError> {
    decide(&s, &caller, &id, &step, CommandKind::Approve, &body).await
}

/// Rejects a waiting approval step. The token that submitted the run may not,
/// unless the step says `allow_self_approval: true`.
#[utoipa::path(post, path = "/v1/runs/{id}/steps/{step}/reject", tag = "runs",
    params(
        ("id" = String, Path, description = "the run's id"),
        ("step" = String, Path, description = "the approval step's id"),
    ),
    request_body(content = Option<CommandBody>, description = "optional comment"),
    responses(
        (status = 202, description = "the command is in the run's inbox"),
        (status = 400, description = "bad body", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "the token's role is below approver, or it submitted the run", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such run or step", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "the step is not waiting for approval", body = Problem, content_type = "application/problem+json"),
    ))]
pub(super) async fn reject(
    State(s): Shared,
    caller: Caller,
    Path((id, step)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Result<StatusCode, ApiError> {
    decide(&s, &caller, &id, &step, CommandKind::Reject, &body).await
}

/// Runs a held step again, as a new attempt.
#[utoipa::path(post, path = "/v1/runs/{id}/steps/{step}/retry", tag = "runs",
    params(
        ("id" = String, Path, description = "the run's id"),
        ("step" = String, Path, description = "the held step's id"),
    ),
    request_body(content = Option<CommandBody>, description = "optional comment"),
    responses(
        (status = 202, description = "the command is in the run's inbox"),
        (status = 400, description = "bad body", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such run or step", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "the step is not held", body = Problem, content_type = "application/problem+json"),
    ))]
pub(super) async fn retry(
    State(s): Shared,
    caller: Caller,
    Path((id, step)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Result<StatusCode, ApiError> {
    let body = CommandBody::parse(&body)?;
    command(&s, &caller, &id, Some(&step), CommandKind::Retry, body).await
}

/// Goes on without a held step: it is recorded skipped and its undo never runs (for a
/// held undo: leaves it undone). When the step's effect did land, use `done`.
#[utoipa::path(post, path = "/v1/runs/{id}/steps/{step}/skip", tag = "runs",
    params(
        ("id" = String, Path, description = "the run's id"),
        ("step" = String, Path, description = "the held step's id"),
    ),
    request_body(content = Option<CommandBody>, description = "optional comment"),
    responses(
        (status = 202, description = "the command is in the run's inbox"),
        (status = 400, description = "bad body", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such run or step", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "the step is not held", body = Problem, content_type = "application/problem+json"),
    ))]
pub(super) async fn skip(
    State(s): Shared,
    caller: Caller,
    Path((id, step)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Result<StatusCode, ApiError> {
    let body = CommandBody::parse(&body)?;
    command(&s, &caller, &id, Some(&step), CommandKind::Skip, body).await
}

/// Records a held step as done without running it again (an operator found its
/// effect on the target), so a later rollback undoes it; for a held undo, records
/// the undo done.
#[utoipa::path(post, path = "/v1/runs/{id}/steps/{step}/done", tag = "runs",
    params(
        ("id" = String, Path, description = "the run's id"),
        ("step" = String, Path, description = "the held step's id"),
    ),
    request_body(content = Option<CommandBody>, description = "optional comment"),
    responses(
        (status = 202, description = "the command is in the run's inbox"),
        (status = 400, description = "bad body", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such run or step", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "the step is not held", body = Problem, content_type = "application/problem+json"),
    ))]
pub(super) async fn done(
    State(s): Shared,
    caller: Caller,
    Path((id, step)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Result<StatusCode, ApiError> {
    let body = CommandBody::parse(&body)?;
    command(&s, &caller, &id, Some(&step), CommandKind::Done, body).await
}

/// Approve or reject, after the four-eyes check: with tokens, the run's submitter
/// may not answer its own approval step unless the plan allows it. Checked here,
/// before the command reaches the run's inbox.
async fn decide(
    s: &Arc<AppState>,
    caller: &Caller,
    run: &str,
    step: &str,
    kind: CommandKind,
    body: &[u8],
) -> Result<StatusCode, ApiError> {
    let body = CommandBody::parse(body)?;
    if s.auth == AuthMode::Tokens {
        let stored = s.exec.store().load_run(run).await?;
        if stored.summary.submitted_by.as_deref() == Some(caller.name.as_str()) {
            let plan = s.exec.stored_plan(&stored)?;
            let own = plan.steps.iter().find(|st| st.id == step);
            if let Some(StepKind::Approval(a)) = own.map(|st| &st.kind)
                && !a.allow_self_approval
            {
                return Err(ApiError::forbidden(format!(
                    "token `{}` submitted run {run}, so it may not {} its approval step `{step}`: \
                     another token with role approver must (a plan can allow it with \
                     `approval: {{ allow_self_approval: true }}`)",
                    caller.name,
                    kind.as_str()
                )));
            }
        }
    }
    command(s, caller, run, Some(step), kind, body).await
}

/// Leaves the command in the run's inbox, and makes sure a driver of this process
/// will apply it (a held run has none until an operator acts).
async fn command(
    s: &Arc<AppState>,
    caller: &Caller,
    run: &str,
    step: Option<&str>,
    kind: CommandKind,
    body: CommandBody,
) -> Result<StatusCode, ApiError> {
    // With tokens, the log says which token acted, whatever the body claims.
    let by = match (s.auth, body.by) {
        (AuthMode::Off, Some(by)) => by,
        _ => caller.name.clone(),
    };
    executor::post_command(
        s.exec.store(),
        run,
        step,
        kind,
        &by,
        body.comment.as_deref(),
        s.exec.now(),
    )
    .await?;
    match s.exec.claim(run).await {
        // Our driver, if it runs, reads the inbox now; if none runs, one starts.
        Ok(()) => {
            s.exec.ring(run);
            s.drive(run.to_owned());
        }
        // Another live medic drives it and will pick the command up from the inbox.
        Err(executor::Error::Owned { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    Ok(StatusCode::ACCEPTED)
}

/// The run's event log as server-sent events: everything after `Last-Event-ID` (or
/// from the start), then new events as they are committed, until the run ends or is
/// held. Each event's `id` is its sequence number and `event` its kind.
#[utoipa::path(get, path = "/v1/runs/{id}/events", tag = "runs",
    params(
        ("id" = String, Path, description = "the run's id"),
        ("Last-Event-ID" = Option<i64>, Header, nullable = false, description = "resume after this event"),
    ),
    responses(
        (status = 200, description = "the event stream", body = String, content_type = "text/event-stream"),
        (status = 400, description = "bad `Last-Event-ID`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such run", body = Problem, content_type = "application/problem+json"),
    ))]
pub(super) async fn events(
    State(s): Shared,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let after = match headers.get("last-event-id") {
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse::<i64>().ok())
            .ok_or_else(|| {
                ApiError::bad_request("Last-Event-ID must be an event's sequence number")
            })?,
        None => 0,
    };
    // Unknown runs are a 404 before the stream starts.
    s.exec.store().load_run(&id).await?;
    let progress = s.exec.subscribe();
    let stream = futures_util::stream::unfold(
        (
            s.clone(),
            id,
            after,
            progress,
            Vec::<SseEvent>::new(),
            false,
        ),
        |(s, id, mut after, mut progress, mut queue, mut done)| async move {
            loop {
                if let Some(ev) = queue.pop() {
                    return Some((Ok(ev), (s, id, after, progress, queue, done)));
                }
                if done {
                    return None;
                }
                // Read committed rows from the store: the broadcast only says when to look.
                // The status is read before the events: a run that had stopped by then
                // has all its events in the read that follows, so none is cut off.
                let run = s.exec.store().load_run(&id).await.ok()?;
                let stopped =
                    run.summary.status.is_terminal() || run.summary.status == RunStatus::Held;
                let rows = s.exec.store().events(&id, after).await.ok()?;
                if rows.is_empty() {
                    if stopped {
                        done = true;
                        continue;
                    }
                    // Wait for this run's next commit, or look again within a second.
                    let _ = tokio::time::timeout(Duration::from_secs(1), async {
                        while let Ok(p) = progress.recv().await {
                            if p.run_id == id {
                                break;
                            }
                        }
                    })
                    .await;
                    continue;
                }
                after = rows.last().map(|r| r.seq).unwrap_or(after);
                for row in rows.into_iter().rev() {
                    let data = json!({ "seq": row.seq, "at": row.at, "kind": row.kind, "step": row.step, "data": row.data });
                    queue.push(
                        SseEvent::default()
                            .id(row.seq.to_string())
                            .event(row.kind)
                            .data(data.to_string()),
                    );
                }
            }
        },
    );
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

#[cfg(test)]
mod tests {
    use super::rfc3339_ms;

    #[test]
    fn rfc3339_times_with_z_or_an_offset_are_read_and_anything_else_is_not() {
        let noon = 1_777_636_800_000; // 2026-05-01T12:00:00Z
        assert_eq!(rfc3339_ms("2026-05-01T12:00:00Z"), Some(noon));
        assert_eq!(rfc3339_ms("2026-05-01t12:00:00z"), Some(noon));
        assert_eq!(rfc3339_ms("2026-05-01T12:00:00.250Z"), Some(noon + 250));
        assert_eq!(rfc3339_ms("2026-05-01T14:00:00+02:00"), Some(noon));
        assert_eq!(rfc3339_ms("2026-05-01T07:30:00-04:30"), Some(noon));
        assert_eq!(rfc3339_ms("2026-05-01 12:00:00Z"), Some(noon));
        for bad in [
            "",
            "yesterday",
            "2026-05-01",
            "2026-05-01T12:00:00",
            "2026-05-01T12:00:00+2:00",
            "2026-05-01T12:00:00+02:60",
            "2026-05-01T12:00:00 02:00",
            "2026-13-01T12:00:00Z",
            "1777636800000",
            "2026-05-01T12:00:00+0é:00",
        ] {
            assert_eq!(rfc3339_ms(bad), None, "{bad:?}");
        }
    }
}
