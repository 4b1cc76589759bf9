//! The operations loop over HTTP: alerts in (Prometheus Alertmanager's webhook and a
//! generic one, both mapped to plans by the `[[alerts.rules]]` of medic.toml) and a
//! run's postmortem report. A firing alert starts its rule's plan once per firing
//! (its fingerprint is recorded in the run's own transaction); a resolved one
//! cancels or annotates its run, as the rule says.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use super::plans::{bind, check_text};
use super::{ApiError, AppState, Problem, Shared};
use crate::executor::{self, AlertStart, CommandKind};
use crate::ops::alert::{self, Alert};
use crate::ops::report;
use crate::plugin::config::OnResolved;
use crate::store::AlertFired;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub(super) enum AlertStatus {
    Firing,
    Resolved,
}

/// Alertmanager's webhook payload (version 4), as its documentation gives it
/// (<https://prometheus.io/docs/alerting/latest/configuration/#webhook_config>).
/// Fields medic does not use are accepted and ignored; the ones here besides `alerts`
/// are read only so the OpenAPI document shows the payload's shape.
#[derive(Deserialize, ToSchema)]
#[allow(dead_code)]
pub(super) struct AlertmanagerPayload {
    version: Option<String>,
    #[serde(rename = "groupKey")]
    group_key: Option<String>,
    status: Option<AlertStatus>,
    receiver: Option<String>,
    alerts: Vec<AlertmanagerAlert>,
}

#[derive(Deserialize, ToSchema)]
pub(super) struct AlertmanagerAlert {
    status: AlertStatus,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    /// RFC 3339; with `fingerprint`, identifies one firing.
    #[serde(rename = "startsAt")]
    starts_at: String,
    fingerprint: Option<String>,
}

/// One alert from any source.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct GenericAlert {
    status: AlertStatus,
    /// Matched against the rules' `match`.
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    /// Identifies the alert; default: derived from `labels`.
    fingerprint: Option<String>,
    /// Identifies one firing of the alert (any text, e.g. an RFC 3339 time). Without
    /// it, an alert is deduplicated only while its run is going.
    starts_at: Option<String>,
}

/// What medic did with each alert of a webhook call.
#[derive(Serialize, ToSchema)]
pub(super) struct HookOutcome {
    alerts: Vec<AlertOutcome>,
}

#[derive(Serialize, ToSchema)]
pub(super) struct AlertOutcome {
    fingerprint: String,
    /// `started` (a run was created), `duplicate` (the alert has a run already),
    /// `unmatched` (no rule), `cancelled`, `annotated`, `ignored` (resolved alerts),
    /// `error` (the rule's plan or params do not work; see `detail`).
    outcome: &'static str,
    rule: Option<String>,
    /// The runs concerned.
    runs: Vec<String>,
    detail: Option<String>,
}

/// Prometheus Alertmanager's webhook receiver. Each firing alert whose labels match
/// a rule of medic.toml `[[alerts.rules]]` starts the rule's plan, once per firing
/// (fingerprint and `startsAt`) and not while an earlier run of the fingerprint is
/// going; a resolved one cancels or annotates its run (`on_resolved`). Configure
/// Alertmanager with `http_config.authorization.credentials` set to a token of role
/// operator or above.
#[utoipa::path(post, path = "/v1/hooks/alertmanager", tag = "hooks",
    request_body = AlertmanagerPayload,
    responses(
        (status = 200, description = "what was done with each alert", body = HookOutcome),
        (status = 400, description = "the body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "not an Alertmanager payload; the detail names the field", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "the body is not `application/json`", body = Problem, content_type = "application/problem+json"),
    ))]
pub(super) async fn alertmanager(
    State(s): Shared,
    body: Result<Json<AlertmanagerPayload>, JsonRejection>,
) -> Result<Json<HookOutcome>, ApiError> {
    let Json(body) = body?;
    let alerts = body
        .alerts
        .into_iter()
        .map(|a| Alert {
            firing: a.status == AlertStatus::Firing,
            fingerprint: a
                .fingerprint
                .filter(|f| !f.is_empty())
                .unwrap_or_else(|| alert::fingerprint(&a.labels)),
            labels: a.labels,
            annotations: a.annotations,
            starts_at: a.starts_at,
        })
        .collect();
    handle(&s, alerts).await
}

/// A generic alert webhook: one alert as JSON, handled as an Alertmanager alert is.
#[utoipa::path(post, path = "/v1/hooks/alert", tag = "hooks",
    request_body = GenericAlert,
    responses(
        (status = 200, description = "what was done with the alert", body = HookOutcome),
        (status = 400, description = "the body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "not an alert; the detail names the field", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "the body is not `application/json`", body = Problem, content_type = "application/problem+json"),
    ))]
pub(super) async fn generic(
    State(s): Shared,
    body: Result<Json<GenericAlert>, JsonRejection>,
) -> Result<Json<HookOutcome>, ApiError> {
    let Json(a) = body?;
    let fingerprint = a
        .fingerprint
        .filter(|f| !f.is_empty())
        .unwrap_or_else(|| alert::fingerprint(&a.labels));
    let starts_at = a
        .starts_at
        .unwrap_or_else(|| format!("received:{}", s.exec.now()));
    handle(
        &s,
        vec![Alert {
            firing: a.status == AlertStatus::Firing,
            fingerprint,
            labels: a.labels,
            annotations: a.annotations,
            starts_at,
        }],
    )
    .await
}

async fn handle(s: &Arc<AppState>, alerts: Vec<Alert>) -> Result<Json<HookOutcome>, ApiError> {
    let mut out = Vec::new();
    for a in alerts {
        let o = one(s, a).await?;
        s.exec
            .metrics()
            .ops_event(crate::metrics::ALERTS, "outcome", o.outcome);
        out.push(o);
    }
    Ok(Json(HookOutcome { alerts: out }))
}

/// Handles one alert. A store failure is the caller's 500 (so Alertmanager sends
/// again); a rule that cannot start its plan is this alert's `error`.
async fn one(s: &Arc<AppState>, a: Alert) -> Result<AlertOutcome, ApiError> {
    let outcome = |outcome, rule: Option<&str>, runs, detail| AlertOutcome {
        fingerprint: a.fingerprint.clone(),
        outcome,
        rule: rule.map(str::to_owned),
        runs,
        detail,
    };
    let Some(rule) = alert::rule(&s.operator.alerts.rules, &a) else {
        return Ok(outcome("unmatched", None, vec![], None));
    };
    let name = rule.name.as_str();
    let who = format!("alert:{name}");
    if !a.firing {
        let resolution = match rule.on_resolved {
            OnResolved::Ignore => return Ok(outcome("ignored", Some(name), vec![], None)),
            OnResolved::Annotate => "annotate",
            OnResolved::Cancel => "cancel",
        };
        let now = s.exec.now();
        let rows = s
            .exec
            .store()
            .resolve_alert(&a.fingerprint, resolution, now)
            .await?;
        let runs: Vec<String> = rows.iter().map(|r| r.run_id.clone()).collect();
        if rule.on_resolved == OnResolved::Annotate {
            return Ok(outcome("annotated", Some(name), runs, None));
        }
        let mut notes = Vec::new();
        for r in &rows {
            match executor::post_command(
                s.exec.store(),
                &r.run_id,
                None,
                CommandKind::Cancel,
                &who,
                Some("the alert resolved"),
                now,
            )
            .await
            {
                Ok(()) => s.exec.ring(&r.run_id),
                Err(executor::Error::NotApplicable(why)) => notes.push(why),
                Err(e) => return Err(e.into()),
            }
        }
        let detail = (!notes.is_empty()).then(|| notes.join("; "));
        return Ok(outcome("cancelled", Some(name), runs, detail));
    }
    let plan_ref = match crate::schedule::parse_plan_ref(&rule.plan) {
        Ok(r) => r,
        Err(e) => return Ok(outcome("error", Some(name), vec![], Some(e.to_string()))),
    };
    let stored = match s
        .exec
        .store()
        .plan_version(&plan_ref.name, plan_ref.version)
        .await
    {
        Ok(p) => p,
        Err(e @ crate::store::Error::PlanNotFound(_)) => {
            return Ok(outcome(
                "error",
                Some(name),
                vec![],
                Some(format!("alert rule `{name}`: {e}")),
            ));
        }
        Err(e) => return Err(e.into()),
    };
    let file = format!("{} version {}", plan_ref.name, stored.version);
    let checked = async {
        let plan = check_text(
            s,
            &file,
            &stored.source,
            stored.format,
            &format!("alert rule `{name}`: plan {file} does not validate; nothing was run"),
        )
        .await?;
        let given = alert::params(rule, &a).map_err(ApiError::bad_request)?;
        let params = bind(&plan, &given)?;
        Ok::<_, ApiError>((plan, params))
    }
    .await;
    let (plan, params) = match checked {
        Ok(v) => v,
        Err(e) => return Ok(outcome("error", Some(name), vec![], Some(e.describe()))),
    };
    let labels = json!(a.labels);
    let fired = s
        .exec
        .alert(
            &plan,
            params,
            AlertStart {
                fingerprint: &a.fingerprint,
                starts_at: &a.starts_at,
                rule: name,
                labels: &labels,
                plan_version: Some(stored.version),
                submitted_by: &who,
            },
        )
        .await?;
    Ok(match fired {
        AlertFired::Started(run) => {
            tracing::info!(rule = name, fingerprint = %a.fingerprint, run_id = %run, "alert started a run");
            s.drive(run.clone());
            outcome("started", Some(name), vec![run], None)
        }
        AlertFired::Duplicate(run) => outcome("duplicate", Some(name), vec![run], None),
    })
}

/// A run as a postmortem: trigger, approvals, steps with outputs, errors and
/// durations, escalations, notifications and the timeline. Markdown with
/// `Accept: text/markdown`, JSON otherwise.
#[utoipa::path(get, path = "/v1/runs/{id}/report", tag = "runs",
    params(("id" = String, Path, description = "the run's id")),
    responses(
        (status = 200, description = "the report", content(
            (report::Report = "application/json"),
            (String = "text/markdown"))),
        (status = 404, description = "no such run", body = Problem, content_type = "application/problem+json"),
    ))]
pub(super) async fn run_report(
    State(s): Shared,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let r = build_report(s.exec.store(), &id).await?;
    let markdown = headers
        .get(axum::http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/markdown"));
    Ok(if markdown {
        (
            [(
                axum::http::header::CONTENT_TYPE,
                "text/markdown; charset=utf-8",
            )],
            report::markdown(&r),
        )
            .into_response()
    } else {
        Json(r).into_response()
    })
}

/// The report of `run`, read from the store (also what `medic report` prints).
pub async fn build_report(
    store: &crate::store::Store,
    run: &str,
) -> Result<report::Report, crate::store::Error> {
    let detail = store.detail(run).await?;
    Ok(report::build(&report::Input {
        detail,
        alerts: store.alerts_of_run(run).await?,
        escalations: store.escalations(run).await?,
        notifications: store.notifications(run).await?,
    }))
}
