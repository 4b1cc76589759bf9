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

use super::plans::{PlanBody, check};
use super::{ApiError, AppState, Problem, Shared};
use crate::executor::{self, CommandKind};
use crate::run::RunStatus;

/// The run a submission created, or found by its `Idempotency-Key`.
#[derive(Serialize, ToSchema)]
pub(super) struct Submitted {
    pub id: String,
    /// false when the `Idempotency-Key` named a run submitted before.
    pub created: bool,
}

/// Submits a run of an inline plan. With an `Idempotency-Key`, submitting again gives
/// back the same run instead of a second one.
#[utoipa::path(post, path = "/v1/runs", tag = "runs",
    request_body = PlanBody,
    params(("Idempotency-Key" = Option<String>, Header,
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
    let (run, created) = s.exec.submit(&plan, params, key).await?;
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
        Json(Submitted { id: run, created }),
    )
        .into_response())
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct ListQuery {
    /// Only runs in this state (pending, running, held, succeeded, failed, ...).
    status: Option<String>,
    /// At most this many runs, newest first (default 50, at most 1000).
    #[param(minimum = 0)]
    limit: Option<usize>,
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
        .list_runs(&crate::store::RunFilter {
            status,
            limit: q.limit.unwrap_or(50).min(1000),
            ..Default::default()
        })
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

/// Who acts, and why: kept with the command in the run's log.
#[derive(Deserialize, Default, ToSchema)]
pub(super) struct CommandBody {
    comment: Option<String>,
    by: Option<String>,
}

impl CommandBody {
    /// An empty body is no comment; anything else must be the JSON object.
    fn parse(body: &[u8]) -> Result<CommandBody, ApiError> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(CommandBody::default());
        }
        serde_json::from_slice(body).map_err(|e| {
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
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<StatusCode, ApiError> {
    let body = CommandBody::parse(&body)?;
    command(&s, &id, None, CommandKind::Cancel, body).await
}

/// Approves or rejects a waiting approval step, or retries or skips a held step.
#[utoipa::path(post, path = "/v1/runs/{id}/steps/{step}/{action}", tag = "runs",
    params(
        ("id" = String, Path, description = "the run's id"),
        ("step" = String, Path, description = "the step's id"),
        ("action" = String, Path, description = "approve, reject, retry or skip"),
    ),
    request_body(content = Option<CommandBody>, description = "optional comment"),
    responses(
        (status = 202, description = "the command is in the run's inbox"),
        (status = 400, description = "bad body", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such run, step or action", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "the step is not waiting for this", body = Problem, content_type = "application/problem+json"),
    ))]
pub(super) async fn step_command(
    State(s): Shared,
    Path((id, step, action)): Path<(String, String, String)>,
    body: axum::body::Bytes,
) -> Result<StatusCode, ApiError> {
    let kind = match action.as_str() {
        "approve" => CommandKind::Approve,
        "reject" => CommandKind::Reject,
        "retry" => CommandKind::Retry,
        "skip" => CommandKind::Skip,
        other => {
            return Err(ApiError::not_found(format!(
                "no step action `{other}`: expected approve, reject, retry or skip"
            )));
        }
    };
    let body = CommandBody::parse(&body)?;
    command(&s, &id, Some(&step), kind, body).await
}

/// Leaves the command in the run's inbox, and makes sure a driver of this process
/// will apply it (a held run has none until an operator acts).
async fn command(
    s: &Arc<AppState>,
    run: &str,
    step: Option<&str>,
    kind: CommandKind,
    body: CommandBody,
) -> Result<StatusCode, ApiError> {
    let by = body.by.unwrap_or_else(|| "api".into());
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
        ("Last-Event-ID" = Option<i64>, Header, description = "resume after this event"),
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
                let rows = s.exec.store().events(&id, after).await.ok()?;
                if rows.is_empty() {
                    let run = s.exec.store().load_run(&id).await.ok()?;
                    if run.summary.status.is_terminal() || run.summary.status == RunStatus::Held {
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
