//! `api` is the REST API of `medic serve` (axum) and the only module that knows HTTP
//! status codes. Errors are RFC 9457 `application/problem+json`; a run's event log
//! streams as server-sent events, resumable with `Last-Event-ID`.

mod error;

use std::collections::HashSet;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::Stream;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::executor::{self, CommandKind, Executor};
use crate::plan::{self, Format};
use crate::plugin::{self, Invoker};
use crate::run::RunStatus;

pub use error::ApiError;

/// What every handler shares.
pub struct AppState<I: Invoker> {
    exec: Executor<I>,
    /// Runs a driver task of this process is working on, so a command that needs a
    /// driver (a retry of a held run) starts one only if none is running.
    driving: Mutex<HashSet<String>>,
}

impl<I: Invoker> AppState<I> {
    pub fn new(exec: Executor<I>) -> Arc<AppState<I>> {
        Arc::new(AppState {
            exec,
            driving: Mutex::new(HashSet::new()),
        })
    }

    /// Drives `run` in the background unless a driver of this process already is.
    pub fn drive(self: &Arc<Self>, run: String) {
        if !self
            .driving
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(run.clone())
        {
            return;
        }
        let state = self.clone();
        tokio::spawn(async move {
            if let Err(e) = state.exec.drive(&run).await {
                tracing::error!(run_id = %run, error = %e, "driving the run stopped; it stays resumable");
            }
            state
                .driving
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&run);
        });
    }

    /// Takes over every unfinished run whose medic process is gone, and drives it.
    pub async fn resume_orphans(self: &Arc<Self>) -> Result<usize, executor::Error> {
        let mut n = 0;
        for run in self.exec.store().unfinished_runs().await? {
            match self.exec.claim(&run.id).await {
                Ok(()) => {
                    self.drive(run.id);
                    n += 1;
                }
                Err(executor::Error::Owned { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(n)
    }
}

/// Every route of the API.
pub fn router<I: Invoker>(state: Arc<AppState<I>>) -> Router {
    Router::new()
        .route("/healthz", get(health))
        .route("/readyz", get(ready::<I>))
        .route("/v1/plans/validate", post(validate::<I>))
        .route("/v1/runs", post(submit::<I>).get(list::<I>))
        .route("/v1/runs/{id}", get(show::<I>))
        .route("/v1/runs/{id}/events", get(events::<I>))
        .route("/v1/runs/{id}/cancel", post(cancel::<I>))
        .route(
            "/v1/runs/{id}/steps/{step}/{action}",
            post(step_command::<I>),
        )
        .with_state(state)
}

async fn health() -> &'static str {
    "ok"
}

async fn ready<I: Invoker>(State(s): State<Arc<AppState<I>>>) -> Result<&'static str, ApiError> {
    s.exec.store().list_runs(None, 1).await?;
    Ok("ready")
}

/// A plan sent inline: the document as YAML/JSON text, or as a JSON object.
#[derive(Deserialize)]
struct PlanBody {
    plan: Value,
    #[serde(default)]
    params: serde_json::Map<String, Value>,
}

async fn check<I: Invoker>(
    s: &AppState<I>,
    body: &PlanBody,
) -> Result<(plan::Plan, Value), ApiError> {
    let (text, format) = match &body.plan {
        // YAML is a superset of JSON, so a text plan in either format parses as YAML.
        Value::String(text) => (text.clone(), Format::Yaml),
        Value::Object(_) => (body.plan.to_string(), Format::Json),
        _ => {
            return Err(ApiError::bad_request(
                "`plan` must be the plan document: a YAML/JSON string or a JSON object",
            ));
        }
    };
    let plan = plugin::check_plan(s.exec.invoker(), "plan", &text, format)
        .await
        .map_err(|d| ApiError::invalid("the plan is not valid; nothing was run", &d))?;
    let params = plan::bind_params(&plan, &body.params)
        .map_err(|d| ApiError::invalid("the params do not fit the plan; nothing was run", &d))?;
    Ok((plan, params))
}

async fn validate<I: Invoker>(
    State(s): State<Arc<AppState<I>>>,
    body: Result<Json<PlanBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Json(body) = body?;
    let (plan, _) = check(&s, &body).await?;
    Ok(Json(
        json!({ "valid": true, "name": plan.name, "hash": plan.hash, "steps": plan.steps.len() }),
    ))
}

async fn submit<I: Invoker>(
    State(s): State<Arc<AppState<I>>>,
    headers: HeaderMap,
    body: Result<Json<PlanBody>, axum::extract::rejection::JsonRejection>,
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
    let (plan, params) = check(&s, &body).await?;
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
        Json(json!({ "id": run, "created": created })),
    )
        .into_response())
}

#[derive(Deserialize)]
struct ListQuery {
    status: Option<String>,
    limit: Option<usize>,
}

async fn list<I: Invoker>(
    State(s): State<Arc<AppState<I>>>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
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

async fn show<I: Invoker>(
    State(s): State<Arc<AppState<I>>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(s.exec.store().detail(&id).await?))
}

#[derive(Deserialize, Default)]
struct CommandBody {
    comment: Option<String>,
    by: Option<String>,
}

async fn cancel<I: Invoker>(
    State(s): State<Arc<AppState<I>>>,
    Path(id): Path<String>,
    body: Option<Json<CommandBody>>,
) -> Result<StatusCode, ApiError> {
    command(
        &s,
        &id,
        None,
        CommandKind::Cancel,
        body.map(|b| b.0).unwrap_or_default(),
    )
    .await
}

async fn step_command<I: Invoker>(
    State(s): State<Arc<AppState<I>>>,
    Path((id, step, action)): Path<(String, String, String)>,
    body: Option<Json<CommandBody>>,
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
    command(
        &s,
        &id,
        Some(&step),
        kind,
        body.map(|b| b.0).unwrap_or_default(),
    )
    .await
}

/// Leaves the command in the run's inbox, and makes sure a driver of this process
/// will apply it (a held run has none until an operator acts).
async fn command<I: Invoker>(
    s: &Arc<AppState<I>>,
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
/// from the start), then new events as they are committed, until the run ends.
async fn events<I: Invoker>(
    State(s): State<Arc<AppState<I>>>,
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
