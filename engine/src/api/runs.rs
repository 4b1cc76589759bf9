//! Runs: submit (idempotently), list, show, steer, and stream their event logs.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::Stream;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};

use super::auth::{AuditRun, AuthMode, Caller};
use super::plans::{PlanBody, check};
use super::{ApiError, AppState, Problem, Shared};
use crate::executor::{self, CommandKind};
use crate::plan::StepKind;
use crate::run::RunStatus;

/// The run a submission created, or found by its `Idempotency-Key`.
#[derive(Serialize, ToSchema)]
pub(super) struct Submitted {
    pub id: String,
    /// false when the `Idempotency-Key` named a run submitted before.
    pub created: bool,
}

/// Submits a run of an inline plan. With an `Idempotency-Key`, submitting again gives
/// back the same run instead of a second one. The run records the token that
/// submitted it (`submitted_by`).
#[utoipa::path(post, path = "/v1/runs", tag = "runs",
    request_body = PlanBody,
    params(("Idempotency-Key" = Option<String>, Header, nullable = false, min_length = 1, max_length = 255,
        pattern = "^[!-~]([ -~]*[!-~])?$",
        description = "1 to 255 visible ASCII characters; the same key returns the same run")),
    responses(
        (status = 201, description = "the run was created and is running", body = Submitted,
            headers(("location" = String, description = "the run's URL"))),
        (status = 200, description = "the `Idempotency-Key` named an existing run", body = Submitted),
        (status = 400, description = "bad body or `Idempotency-Key`", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "the body is not `application/json`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "the plan or params are invalid; nothing was run", body = Problem, content_type = "application/problem+json"),
    ))]
pub(super) async fn submit(
    State(s): Shared,
    caller: Caller,
    headers: HeaderMap,
    body: Result<Json<PlanBody>, JsonRejection>,
) -> Result<Response, ApiError> {
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
    let (plan, params) = check(&s, &body.plan, &body.params).await?;
    let (run, created) = s
        .exec
        .submit(&plan, params, key, Some(&caller.name))
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

/// Lists runs, newest first.
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
    let runs = s
        .exec
        .store()
        .list_runs(status, q.limit.unwrap_or(50).min(1000))
        .await?;
    Ok(Json(json!({ "runs": runs })))
}

/// A run with its params, step states, attempts (with outputs and timings) and events.
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

/// Leaves a held step (or its undo) as it is and goes on.
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
            let plan = executor::stored_plan(&stored)?;
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
        Ok(()) => s.drive(run.to_owned()),
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
