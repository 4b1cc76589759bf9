//! `api` is the REST API of `medic serve` (axum) and the only module that knows HTTP
//! status codes. Errors are RFC 9457 `application/problem+json`; a run's event log
//! streams as server-sent events, resumable with `Last-Event-ID`.
//!
//! Every route is registered through [`utoipa_axum`]'s `routes!` with a
//! `#[utoipa::path]` on its handler, so the OpenAPI document served at
//! `/openapi.json` is generated from the same table the router is built from. The
//! same table says which role each route needs (`auth::open` / `auth::needs`).
//! `/metrics` serves Prometheus metrics; every answered request is counted there by
//! its route template. The web UI (`ui`) is served under `/ui/` through the router's
//! fallback, outside the API's table and document.

mod audit;
mod auth;
mod error;
mod ops;
mod plans;
mod plugins;
mod runs;
mod safety;
pub mod scheduler;
mod schedules;
pub mod tls;
mod ui;

use std::collections::HashSet;
use std::sync::{Arc, Mutex, OnceLock};

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::executor::{self, Executor};
use crate::plugin::Host;
use auth::BearerScheme;

pub use auth::{ANONYMOUS, AuthMode, Caller, Role, check_token_name, hash_token, new_token};
pub use error::{ApiError, Problem};
pub use ops::build_report;
pub use plugins::{SIGNATURE_HEADER, plugin_json, plugin_list_json};

/// What every handler shares.
pub struct AppState {
    exec: Executor<Host>,
    /// Runs a driver task of this process is working on, so a command that needs a
    /// driver (a retry of a held run) starts one only if none is running.
    driving: Mutex<HashSet<String>>,
    auth: AuthMode,
    last_used: auth::LastUsed,
    /// medic.toml: alert rules (`ops.rs`).
    operator: Arc<crate::plugin::OperatorConfig>,
}

type Shared = State<Arc<AppState>>;

impl AppState {
    pub fn new(exec: Executor<Host>, auth: AuthMode) -> Arc<AppState> {
        AppState::with_operator(exec, auth, Arc::default())
    }

    /// Like `new`, with the operator's medic.toml (its alert rules).
    pub fn with_operator(
        exec: Executor<Host>,
        auth: AuthMode,
        operator: Arc<crate::plugin::OperatorConfig>,
    ) -> Arc<AppState> {
        Arc::new(AppState {
            exec,
            driving: Mutex::new(HashSet::new()),
            auth,
            last_used: auth::LastUsed::default(),
            operator,
        })
    }

    /// The background tasks of the operations loop: the notification outbox's
    /// sender and the escalation check (every `tick`), both on the executor's clock.
    pub fn spawn_ops(self: &Arc<Self>, tick: std::time::Duration) {
        tokio::spawn(crate::ops::deliver::run(
            self.exec.clone(),
            Arc::new(self.operator.notify.clone()),
        ));
        tokio::spawn(crate::ops::escalate::run(self.exec.clone(), tick));
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
            // A database that cannot be written just now (full disk, another process's
            // lock) stops the driver at a commit that did not happen; drive the run
            // again from what is stored once it can be written, as a restart would.
            let mut wait = std::time::Duration::from_millis(250);
            loop {
                match state.exec.drive(&run).await {
                    Ok(_) => break,
                    Err(executor::Error::Store(e)) if e.unavailable().is_some() => {
                        tracing::error!(
                            run_id = %run,
                            error = %e,
                            retry_in_ms = wait.as_millis() as u64,
                            "driving the run paused: {}",
                            e.unavailable().unwrap_or_default()
                        );
                        tokio::time::sleep(wait).await;
                        wait = (wait * 2).min(std::time::Duration::from_secs(10));
                    }
                    Err(e) => {
                        tracing::error!(run_id = %run, error = %e, "driving the run stopped; it stays resumable");
                        break;
                    }
                }
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

#[derive(OpenApi)]
#[openapi(
    modifiers(&BearerScheme),
    info(
        title = "medic",
        description = "Durable, declarative recovery plans for distributed data systems. \
            Errors are RFC 9457 problem details (`application/problem+json`).",
        license(name = "Apache-2.0", identifier = "Apache-2.0")
    ),
    tags(
        (name = "runs", description = "Submit, watch and steer runs of plans"),
        (name = "plans", description = "Plan documents: validate and register versions"),
        (name = "schedules", description = "Preventive maintenance: plans run on a cron schedule"),
        (name = "plugins", description = "Installed plugins: list, inspect, install"),
        (name = "safety", description = "Safety rails: target locks, circuit breakers, break-glass"),
        (name = "hooks", description = "Alerts in: webhooks that start plans by the alert rules of medic.toml"),
        (name = "service", description = "Health, readiness, metrics and this document"),
    )
)]
struct ApiDoc;

/// Every route of the API with its OpenAPI description and the role it needs, from
/// one table. One route per entry, so each can need its own role.
fn routes() -> OpenApiRouter<Arc<AppState>> {
    use Role::*;
    use auth::{needs, open};
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(open(routes!(health)))
        .routes(open(routes!(ready)))
        .routes(open(routes!(openapi_json)))
        .routes(needs(Viewer, routes!(metrics)))
        .routes(needs(Viewer, routes!(auth::whoami)))
        .routes(needs(Operator, routes!(plans::validate)))
        .routes(needs(Operator, routes!(plans::register)))
        .routes(needs(Viewer, routes!(plans::list)))
        .routes(needs(Viewer, routes!(plans::show)))
        .routes(needs(Viewer, routes!(plans::version)))
        .routes(needs(Operator, routes!(runs::submit)))
        .routes(needs(Viewer, routes!(runs::list)))
        .routes(needs(Viewer, routes!(runs::show)))
        .routes(needs(Viewer, routes!(runs::events)))
        .routes(needs(Operator, routes!(runs::cancel)))
        .routes(needs(Operator, routes!(runs::resume)))
        .routes(needs(Approver, routes!(runs::approve)))
        .routes(needs(Approver, routes!(runs::reject)))
        .routes(needs(Operator, routes!(runs::retry)))
        .routes(needs(Operator, routes!(runs::skip)))
        .routes(needs(Operator, routes!(runs::done)))
        .routes(needs(Viewer, routes!(ops::run_report)))
        .routes(needs(Operator, routes!(ops::alertmanager)))
        .routes(needs(Operator, routes!(ops::generic)))
        .routes(needs(Operator, routes!(schedules::create)))
        .routes(needs(Viewer, routes!(schedules::list)))
        .routes(needs(Viewer, routes!(schedules::show)))
        .routes(needs(Operator, routes!(schedules::update)))
        .routes(needs(Operator, routes!(schedules::remove)))
        .routes(needs(Viewer, routes!(plugins::list)))
        .routes(needs(Viewer, routes!(plugins::inspect)))
        .routes(needs(Admin, routes!(plugins::install)))
        .routes(needs(Admin, routes!(audit::list)))
        .routes(needs(Viewer, routes!(safety::locks)))
        .routes(needs(Admin, routes!(safety::release)))
        .routes(needs(Viewer, routes!(safety::breakers)))
        .routes(needs(Admin, routes!(safety::reset)))
}

/// The OpenAPI 3.1 document of every route [`router`] serves.
pub fn openapi() -> utoipa::openapi::OpenApi {
    routes().split_for_parts().1
}

/// The largest request body accepted (a 413 problem names it).
pub(crate) const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// The router of `medic serve`: every route of [`routes`], the web UI under `/ui/`
/// and a problem+json 404 for any other path. Every request, the 404s included,
/// passes `auth::identify` first (which also audits mutating calls).
pub fn router(state: Arc<AppState>) -> Router {
    let (router, _) = routes().split_for_parts();
    router
        .fallback(ui::fallback)
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::identify,
        ))
        // Outermost, so refusals by auth are counted too.
        .layer(middleware::from_fn_with_state(state.clone(), count_request))
        .with_state(state)
}

/// Counts every answered request by its route template (never the raw path, whose
/// ids would make a series per run).
async fn count_request(State(s): Shared, req: Request, next: Next) -> Response {
    let route = match req.extensions().get::<MatchedPath>() {
        Some(p) => p.as_str(),
        None if ui::serves(req.uri().path()) => ui::PREFIX,
        None => "unmatched",
    }
    .to_owned();
    let resp = next.run(req).await;
    s.exec
        .metrics()
        .http_request(&route, resp.status().as_u16());
    resp
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "service",
    responses((status = 200, description = "medic is up", body = String, content_type = "text/plain")))]
async fn health() -> &'static str {
    "ok"
}

/// Readiness: the database answers.
#[utoipa::path(get, path = "/readyz", tag = "service",
    responses(
        (status = 200, description = "ready to take runs", body = String, content_type = "text/plain"),
        (status = 500, description = "the database does not answer", body = Problem, content_type = "application/problem+json"),
    ))]
async fn ready(State(s): Shared) -> Result<&'static str, ApiError> {
    s.exec
        .store()
        .list_runs(&crate::store::RunFilter {
            limit: 1,
            ..Default::default()
        })
        .await?;
    Ok("ready")
}

/// Prometheus metrics (text exposition format 0.0.4): `medic_runs{status}` (from the
/// database), `medic_step_duration_seconds`, `medic_plugin_call_duration_seconds`,
/// `medic_queue_depth`, `medic_http_requests_total`, `medic_schedule_due_times_total`,
/// `medic_schedule_fire_lag_seconds`, `medic_alerts_total`,
/// `medic_notification_deliveries_total` and `medic_escalations_total`; each `# HELP` line says
/// exactly what is counted.
#[utoipa::path(get, path = "/metrics", tag = "service",
    responses(
        (status = 200, description = "the metrics", body = String, content_type = "text/plain; version=0.0.4"),
        (status = 500, description = "the database does not answer", body = Problem, content_type = "application/problem+json"),
    ))]
async fn metrics(State(s): Shared) -> Result<Response, ApiError> {
    let runs = s.exec.store().count_runs().await?;
    let text = s.exec.metrics().render(&runs);
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            crate::metrics::CONTENT_TYPE,
        )],
        text,
    )
        .into_response())
}

/// This document: OpenAPI 3.1, generated from the handlers.
#[utoipa::path(get, path = "/openapi.json", tag = "service",
    responses((status = 200, description = "the OpenAPI 3.1 document", body = Object)))]
async fn openapi_json() -> Json<serde_json::Value> {
    static DOC: OnceLock<serde_json::Value> = OnceLock::new();
    Json(
        DOC.get_or_init(|| serde_json::to_value(openapi()).unwrap_or_default())
            .clone(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every route says in the table who may call it: a route added without
    /// `auth::open` or `auth::needs` would have no `security` and fail here.
    #[test]
    fn every_operation_declares_its_security() {
        let doc = serde_json::to_value(openapi()).unwrap();
        let mut open = Vec::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                let security = op["security"]
                    .as_array()
                    .unwrap_or_else(|| panic!("{method} {path} declares no security"));
                match security.as_slice() {
                    [] => open.push(path.as_str()),
                    [req] => {
                        let roles = req["bearer"].as_array().unwrap();
                        assert_eq!(roles.len(), 1, "{method} {path}");
                        Role::parse(roles[0].as_str().unwrap()).unwrap();
                        assert!(op["responses"]["401"].is_object(), "{method} {path}");
                        assert!(op["responses"]["403"].is_object(), "{method} {path}");
                    }
                    _ => panic!("{method} {path}: one requirement expected"),
                }
            }
        }
        open.sort();
        assert_eq!(open, ["/healthz", "/openapi.json", "/readyz"]);
        assert_eq!(
            doc["components"]["securitySchemes"]["bearer"]["scheme"],
            "bearer"
        );
    }
}
