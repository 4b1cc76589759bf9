//! Plugins: what is installed, one plugin's manifest, and installing a component.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::{ApiError, Problem, Shared};
use crate::plan::EffectClass;
use crate::plugin::{InstallOutcome, Manifest};

/// Largest component `POST /v1/plugins` takes.
const MAX_COMPONENT: usize = 64 << 20;

/// An installed plugin, as listed.
#[derive(Serialize, ToSchema)]
pub(super) struct PluginItem {
    name: String,
    /// Absent when the file does not load (`error` says why).
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<String>,
    /// Action names.
    actions: Vec<String>,
    /// The component file calls use.
    path: String,
    /// sha256 of the component file.
    #[serde(skip_serializing_if = "Option::is_none")]
    sha256: Option<String>,
    /// Why the file does not load, if it does not.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub(super) struct PluginList {
    plugins: Vec<PluginItem>,
}

/// Lists the plugins in the plugin dirs, by name (for a name in several dirs, the
/// file calls use). A file that does not load is listed with its `error`.
#[utoipa::path(get, path = "/v1/plugins", tag = "plugins",
    responses((status = 200, description = "the installed plugins", body = PluginList)))]
pub(super) async fn list(State(s): Shared) -> Json<PluginList> {
    let plugins = s
        .exec
        .invoker()
        .installed()
        .await
        .into_iter()
        .map(|p| {
            let path = p.path.display().to_string();
            match p.manifest {
                Ok(m) => PluginItem {
                    name: p.name,
                    version: Some(m.version.clone()),
                    description: Some(m.description.clone()),
                    actions: m.actions.iter().map(|a| a.name.clone()).collect(),
                    path,
                    sha256: Some(m.sha256.clone()),
                    error: None,
                },
                Err(error) => PluginItem {
                    name: p.name,
                    version: None,
                    description: None,
                    actions: Vec::new(),
                    path,
                    sha256: None,
                    error: Some(error),
                },
            }
        })
        .collect();
    Json(PluginList { plugins })
}

/// One action of a plugin.
#[derive(Serialize, ToSchema)]
pub(super) struct ActionDoc {
    name: String,
    description: String,
    /// `read_only`, `idempotent` or `mutating`: whether medic may repeat it after a crash.
    effect: &'static str,
    /// JSON Schema of the action's `with`.
    #[schema(value_type = Object)]
    params_schema: Value,
    /// JSON Schema of its output.
    #[schema(value_type = Object)]
    output_schema: Value,
    /// The action that undoes it, if any.
    inverse: Option<String>,
}

/// A plugin's manifest.
#[derive(Serialize, ToSchema)]
pub(super) struct PluginDoc {
    name: String,
    version: String,
    description: String,
    /// sha256 of the component file.
    sha256: String,
    actions: Vec<ActionDoc>,
}

fn effect(e: EffectClass) -> &'static str {
    match e {
        EffectClass::ReadOnly => "read_only",
        EffectClass::Idempotent => "idempotent",
        EffectClass::Mutating => "mutating",
    }
}

fn doc(m: &Manifest) -> PluginDoc {
    PluginDoc {
        name: m.name.clone(),
        version: m.version.clone(),
        description: m.description.clone(),
        sha256: m.sha256.clone(),
        actions: m
            .actions
            .iter()
            .map(|a| ActionDoc {
                name: a.name.clone(),
                description: a.description.clone(),
                effect: effect(a.effect),
                params_schema: a.params_schema.clone(),
                output_schema: a.output_schema.clone(),
                inverse: a.inverse.clone(),
            })
            .collect(),
    }
}

/// A plugin's manifest: version, and each action with its description, effect class,
/// params schema and inverse.
#[utoipa::path(get, path = "/v1/plugins/{name}", tag = "plugins",
    params(("name" = String, Path, description = "the plugin's name")),
    responses(
        (status = 200, description = "the plugin's manifest", body = PluginDoc),
        (status = 404, description = "no such plugin in the plugin dirs", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "the plugin's file does not load", body = Problem, content_type = "application/problem+json"),
    ))]
pub(super) async fn inspect(
    State(s): Shared,
    Path(name): Path<String>,
) -> Result<Json<PluginDoc>, ApiError> {
    let m = s.exec.invoker().inspect(&name).await?;
    Ok(Json(doc(&m)))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct InstallQuery {
    /// Install even if it replaces a newer version (a downgrade) or another build of
    /// the same version.
    #[serde(default)]
    force: bool,
}

/// What an install did.
#[derive(Serialize, ToSchema)]
pub(super) struct Installed {
    name: String,
    version: String,
    sha256: String,
    /// Where the component was written (or already was).
    path: String,
    /// `installed` (new), `upgraded`, `replaced` (forced) or `unchanged` (identical).
    outcome: &'static str,
    /// The version installed before, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    previous: Option<String>,
}

/// Installs a plugin component (`application/wasm`). It is loaded and its manifest
/// read before anything is written; it is stored as `NAME.wasm` (NAME from its
/// manifest) in the first plugin dir, written to a temporary file and renamed, and
/// used by calls from then on without a restart. The same component again changes
/// nothing; a newer version replaces the installed one; an older version, or another
/// build of the same version, needs `force=true`.
#[utoipa::path(post, path = "/v1/plugins", tag = "plugins",
    params(InstallQuery),
    request_body(content = Vec<u8>, content_type = "application/wasm",
        description = "the plugin's WebAssembly component (wasm32-wasip2)"),
    responses(
        (status = 201, description = "installed: new, upgraded or (forced) replaced", body = Installed,
            headers(("location" = String, description = "the plugin's URL"))),
        (status = 200, description = "the identical component was already installed", body = Installed),
        (status = 400, description = "bad query", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "a newer version, or another build of this version, is installed", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "the component is larger than 64 MiB", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "the body is not `application/wasm`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "not a medic plugin component", body = Problem, content_type = "application/problem+json"),
    ))]
pub(super) async fn install(
    State(s): Shared,
    headers: HeaderMap,
    query: Result<Query<InstallQuery>, axum::extract::rejection::QueryRejection>,
    body: Body,
) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let ctype = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase());
    if !matches!(
        ctype.as_deref(),
        Some("application/wasm" | "application/octet-stream")
    ) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Unsupported media type",
            "send the plugin component as the body with `Content-Type: application/wasm`",
        ));
    }
    let bytes = axum::body::to_bytes(body, MAX_COMPONENT)
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "Component too large",
                format!(
                    "reading the component (at most {} MiB): {e}",
                    MAX_COMPONENT >> 20
                ),
            )
        })?;
    let done = s.exec.invoker().install(bytes.to_vec(), q.force).await?;
    let status = match done.outcome {
        InstallOutcome::Unchanged => StatusCode::OK,
        _ => StatusCode::CREATED,
    };
    let m = &done.manifest;
    Ok((
        status,
        [("location", format!("/v1/plugins/{}", m.name))],
        Json(Installed {
            name: m.name.clone(),
            version: m.version.clone(),
            sha256: m.sha256.clone(),
            path: done.path.display().to_string(),
            outcome: done.outcome.as_str(),
            previous: done.previous,
        }),
    )
        .into_response())
}
