//! Plan documents: validate without storing, and the registry of numbered versions
//! per plan name.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::{ApiError, AppState, Problem, Shared};
use crate::plan::{self, Format};
use crate::plugin;
use crate::run::Ms;
use crate::store::{self, PlanVersion, RegisterPlan};

/// A plan sent inline, with the params of a run.
#[derive(Deserialize, ToSchema)]
pub(super) struct PlanBody {
    /// The plan document: YAML or JSON text, or a JSON object.
    #[schema(value_type = Object)]
    pub plan: Value,
    /// The run's params, checked against the plan's `params`.
    #[serde(default)]
    pub params: Map<String, Value>,
}

/// A plan that passed validation.
#[derive(Serialize, ToSchema)]
pub(super) struct Valid {
    pub valid: bool,
    pub name: String,
    /// sha256 of the canonical plan: its identity in the store.
    pub hash: String,
    pub steps: usize,
}

/// The plan document as text, and the format it is written in (text that parses as
/// JSON is JSON, any other text YAML). An object becomes pretty JSON, so diagnostics
/// point at real lines and the registry keeps something readable.
fn plan_text(plan: &Value) -> Result<(String, Format), ApiError> {
    match plan {
        Value::String(text) => {
            let format = if serde_json::from_str::<Value>(text).is_ok() {
                Format::Json
            } else {
                Format::Yaml
            };
            Ok((text.clone(), format))
        }
        Value::Object(_) => Ok((
            serde_json::to_string_pretty(plan).expect("a JSON value serializes"),
            Format::Json,
        )),
        _ => Err(ApiError::bad_request(
            "`plan` must be the plan document: a YAML/JSON string or a JSON object",
        )),
    }
}

/// Parses and checks plan text against the installed plugins.
pub(super) async fn check_text(
    s: &AppState,
    file: &str,
    text: &str,
    format: Format,
    what: &str,
) -> Result<plan::Plan, ApiError> {
    plugin::check_plan(s.exec.invoker(), file, text, format)
        .await
        .map_err(|d| ApiError::invalid(what, &d))
}

/// Binds a run's params to a checked plan.
pub(super) fn bind(plan: &plan::Plan, params: &Map<String, Value>) -> Result<Value, ApiError> {
    plan::bind_params(plan, params)
        .map_err(|d| ApiError::invalid("the params do not fit the plan; nothing was run", &d))
}

/// Parses and checks an inline plan against the installed plugins, then binds params.
pub(super) async fn check(
    s: &AppState,
    plan: &Value,
    params: &Map<String, Value>,
) -> Result<(plan::Plan, Value), ApiError> {
    let (text, format) = plan_text(plan)?;
    let plan = check_text(
        s,
        "plan",
        &text,
        format,
        "the plan is not valid; nothing was run",
    )
    .await?;
    let params = bind(&plan, params)?;
    Ok((plan, params))
}

/// Checks a plan (and params) as a submission would, without storing or running it.
#[utoipa::path(post, path = "/v1/plans/validate", tag = "plans",
    request_body = PlanBody,
    responses(
        (status = 200, description = "the plan and params are valid", body = Valid),
        (status = 400, description = "the body is not JSON of the expected shape", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "the body is not `application/json`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "the plan or params are invalid; `errors` has each field path", body = Problem, content_type = "application/problem+json"),
    ))]
pub(super) async fn validate(
    State(s): Shared,
    body: Result<Json<PlanBody>, JsonRejection>,
) -> Result<Json<Valid>, ApiError> {
    let Json(body) = body?;
    let (plan, _) = check(&s, &body.plan, &body.params).await?;
    Ok(Json(Valid {
        valid: true,
        name: plan.name,
        hash: plan.hash,
        steps: plan.steps.len(),
    }))
}

/// A plan to register under its `metadata.name`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RegisterBody {
    /// The plan document: YAML or JSON text (kept as written), or a JSON object.
    #[schema(value_type = Object)]
    plan: Value,
}

/// The version a registration resolved to.
#[derive(Serialize, ToSchema)]
pub(super) struct RegisteredPlan {
    name: String,
    version: u32,
    /// sha256 of the canonical plan.
    hash: String,
    /// false when the text was identical to the latest version's (which is returned).
    created: bool,
    /// When the version was registered (Unix ms).
    created_at: Ms,
}

/// `validate` is a route of its own (`POST /v1/plans/validate`), so a plan of that
/// name could never be read back.
const RESERVED_NAMES: [&str; 1] = ["validate"];

/// Registers a plan as the next version of its name (`metadata.name`), after checking
/// it against the installed plugins as a submission would. The text is kept exactly
/// as sent. Registering text identical to the latest version's returns that version.
#[utoipa::path(post, path = "/v1/plans", tag = "plans",
    request_body = RegisterBody,
    responses(
        (status = 201, description = "a new version was registered", body = RegisteredPlan,
            headers(("location" = String, description = "the version's URL"))),
        (status = 200, description = "identical to the latest version, which is returned", body = RegisteredPlan),
        (status = 400, description = "the body is not JSON of the expected shape", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "the body is not `application/json`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "a schedule the plan declares in its metadata has the name of another schedule", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "the plan is invalid; `errors` has each field path", body = Problem, content_type = "application/problem+json"),
    ))]
pub(super) async fn register(
    State(s): Shared,
    body: Result<Json<RegisterBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(body) = body?;
    let (text, format) = plan_text(&body.plan)?;
    let plan = check_text(
        &s,
        "plan",
        &text,
        format,
        "the plan is not valid; nothing was registered",
    )
    .await?;
    if RESERVED_NAMES.contains(&plan.name.as_str()) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid plan or params",
            format!(
                "`{}` is reserved (it is a route under /v1/plans); choose another metadata.name",
                plan.name
            ),
        ));
    }
    let registered = s
        .exec
        .store()
        .register_plan(RegisterPlan {
            name: &plan.name,
            hash: &plan.hash,
            canonical: &plan.canonical,
            source: &text,
            format,
            at: s.exec.now(),
            schedules: plan
                .schedules
                .iter()
                .map(|spec| {
                    let json = serde_json::to_value(spec).expect("a spec serializes");
                    (spec.name.clone(), json)
                })
                .collect(),
        })
        .await
        .map_err(|e| match e {
            store::Error::ScheduleNameTaken { .. } => ApiError::conflict(e.to_string()),
            e => e.into(),
        })?;
    let status = if registered.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let location = format!("/v1/plans/{}/versions/{}", plan.name, registered.version);
    Ok((
        status,
        [("location", location)],
        Json(RegisteredPlan {
            name: plan.name,
            version: registered.version,
            hash: plan.hash,
            created: registered.created,
            created_at: registered.created_at,
        }),
    )
        .into_response())
}

/// One registered plan name.
#[derive(Serialize, ToSchema)]
pub(super) struct PlanItem {
    name: String,
    /// Its latest version.
    latest: u32,
    /// How many versions it has (numbered 1 to `latest`).
    versions: u32,
    /// When its latest version was registered (Unix ms).
    updated_at: Ms,
}

/// Registered plans, by name.
#[derive(Serialize, ToSchema)]
pub(super) struct PlanList {
    plans: Vec<PlanItem>,
}

/// Lists the registered plans, by name.
#[utoipa::path(get, path = "/v1/plans", tag = "plans",
    responses((status = 200, description = "the registered plans", body = PlanList)))]
pub(super) async fn list(State(s): Shared) -> Result<Json<PlanList>, ApiError> {
    let plans = s
        .exec
        .store()
        .plans()
        .await?
        .into_iter()
        .map(|p| PlanItem {
            name: p.name,
            latest: p.latest,
            versions: p.versions,
            updated_at: p.updated_at,
        })
        .collect();
    Ok(Json(PlanList { plans }))
}

/// One version of a plan, without its text.
#[derive(Serialize, ToSchema)]
pub(super) struct VersionItem {
    version: u32,
    hash: String,
    /// When it was registered (Unix ms).
    created_at: Ms,
}

/// A registered plan and its versions.
#[derive(Serialize, ToSchema)]
pub(super) struct PlanVersions {
    name: String,
    /// Oldest first.
    versions: Vec<VersionItem>,
}

/// A registered plan's versions, oldest first.
#[utoipa::path(get, path = "/v1/plans/{name}", tag = "plans",
    params(("name" = String, Path, description = "the plan's name (`metadata.name`)")),
    responses(
        (status = 200, description = "the plan's versions", body = PlanVersions),
        (status = 404, description = "no plan of that name is registered", body = Problem, content_type = "application/problem+json"),
    ))]
pub(super) async fn show(
    State(s): Shared,
    Path(name): Path<String>,
) -> Result<Json<PlanVersions>, ApiError> {
    let versions = s
        .exec
        .store()
        .plan_versions(&name)
        .await?
        .into_iter()
        .map(|v| VersionItem {
            version: v.version,
            hash: v.hash,
            created_at: v.created_at,
        })
        .collect();
    Ok(Json(PlanVersions { name, versions }))
}

/// One version of a plan with its text as registered.
#[derive(Serialize, ToSchema)]
pub(super) struct PlanSource {
    name: String,
    version: u32,
    hash: String,
    /// `yaml` or `json`: what `source` is written in.
    format: &'static str,
    /// The plan document exactly as registered.
    source: String,
    /// When it was registered (Unix ms).
    created_at: Ms,
}

/// `N` or `latest`, as in `/v1/plans/{name}/versions/{version}`.
pub(super) fn parse_version(v: &str) -> Result<Option<u32>, ApiError> {
    if v == "latest" {
        return Ok(None);
    }
    v.parse::<u32>()
        .ok()
        .filter(|n| *n >= 1)
        .map(Some)
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "version `{v}` is neither a version number (1, 2, ...) nor `latest`"
            ))
        })
}

/// A version of a plan (a number, or `latest`) with its text exactly as registered.
#[utoipa::path(get, path = "/v1/plans/{name}/versions/{version}", tag = "plans",
    params(
        ("name" = String, Path, description = "the plan's name (`metadata.name`)"),
        ("version" = String, Path, description = "a version number (1, 2, ...) or `latest`"),
    ),
    responses(
        (status = 200, description = "the version and its text", body = PlanSource),
        (status = 400, description = "`version` is neither a number nor `latest`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such plan or version", body = Problem, content_type = "application/problem+json"),
    ))]
pub(super) async fn version(
    State(s): Shared,
    Path((name, version)): Path<(String, String)>,
) -> Result<Json<PlanSource>, ApiError> {
    let v = s
        .exec
        .store()
        .plan_version(&name, parse_version(&version)?)
        .await?;
    Ok(Json(source(v)))
}

fn source(v: PlanVersion) -> PlanSource {
    PlanSource {
        name: v.name,
        version: v.version,
        hash: v.hash,
        format: match v.format {
            Format::Yaml => "yaml",
            Format::Json => "json",
        },
        source: v.source,
        created_at: v.created_at,
    }
}
