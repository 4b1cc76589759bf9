//! Plan documents: validate without storing.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::{ApiError, AppState, Problem, Shared};
use crate::plan::{self, Format};
use crate::plugin;

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

/// Parses and checks an inline plan against the installed plugins, then binds params.
pub(super) async fn check(
    s: &AppState,
    plan: &Value,
    params: &Map<String, Value>,
) -> Result<(plan::Plan, Value), ApiError> {
    let (text, format) = match plan {
        // YAML is a superset of JSON, so a text plan in either format parses as YAML.
        Value::String(text) => (text.clone(), Format::Yaml),
        Value::Object(_) => (plan.to_string(), Format::Json),
        _ => {
            return Err(ApiError::bad_request(
                "`plan` must be the plan document: a YAML/JSON string or a JSON object",
            ));
        }
    };
    let plan = plugin::check_plan(s.exec.invoker(), "plan", &text, format)
        .await
        .map_err(|d| ApiError::invalid("the plan is not valid; nothing was run", &d))?;
    let params = plan::bind_params(&plan, params)
        .map_err(|d| ApiError::invalid("the params do not fit the plan; nothing was run", &d))?;
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
    axum::extract::State(s): Shared,
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
