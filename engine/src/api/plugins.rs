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
use crate::plugin::{
    Inspected, InstallOptions, InstallOutcome, Installed as InstalledPlugin, Manifest, Signer,
};

/// The header that carries a plugin's minisign signature: the `.minisig` file,
/// base64-encoded (standard alphabet, padded), as the file has several lines.
pub const SIGNATURE_HEADER: &str = "medic-signature";

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
    /// `signed by KEYID`, `unsigned`, or why a stored signature does not verify.
    signature: String,
    /// The trusted key id that signed it, if its signature verifies now.
    #[serde(skip_serializing_if = "Option::is_none")]
    signed_by: Option<String>,
}

fn signed_by(s: &Signer) -> Option<String> {
    match s {
        Signer::Trusted { key_id } => Some(key_id.clone()),
        _ => None,
    }
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
    Json(plugin_list(s.exec.invoker().installed().await))
}

/// The body of `GET /v1/plugins` (the CLI prints the same shape locally).
fn plugin_list(installed: Vec<InstalledPlugin>) -> PluginList {
    let plugins = installed
        .into_iter()
        .map(|p| {
            let path = p.path.display().to_string();
            let signature = p.signer.to_string();
            let signed = signed_by(&p.signer);
            match p.manifest {
                Ok(m) => PluginItem {
                    name: p.name,
                    version: Some(m.version.clone()),
                    description: Some(m.description.clone()),
                    actions: m.actions.iter().map(|a| a.name.clone()).collect(),
                    path,
                    sha256: Some(m.sha256.clone()),
                    error: None,
                    signature,
                    signed_by: signed,
                },
                Err(error) => PluginItem {
                    name: p.name,
                    version: None,
                    description: None,
                    actions: Vec::new(),
                    path,
                    sha256: None,
                    error: Some(error),
                    signature,
                    signed_by: signed,
                },
            }
        })
        .collect();
    PluginList { plugins }
}

/// `GET /v1/plugins` as JSON, for `medic plugin list` without a server.
pub fn plugin_list_json(installed: Vec<InstalledPlugin>) -> Value {
    serde_json::to_value(plugin_list(installed)).unwrap_or(Value::Null)
}

/// `GET /v1/plugins/{name}` as JSON, for `medic plugin inspect` without a server.
pub fn plugin_json(inspected: &Inspected) -> Value {
    serde_json::to_value(doc(inspected)).unwrap_or(Value::Null)
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

/// What a plugin asks for: an interface it imports and the capability it stands for.
#[derive(Serialize, ToSchema)]
pub(super) struct CapabilityDoc {
    /// `TCP`, `UDP`, `DNS`, `HTTP`, `SQL`, `filesystem`, `environment`, ...
    capability: &'static str,
    /// The imported interface, e.g. `wasi:sockets/tcp@0.2.6`.
    interface: String,
}

/// A plugin's manifest, signer and capabilities.
#[derive(Serialize, ToSchema)]
pub(super) struct PluginDoc {
    name: String,
    version: String,
    description: String,
    /// sha256 of the component file.
    sha256: String,
    actions: Vec<ActionDoc>,
    /// The component file calls use.
    path: String,
    /// `signed by KEYID`, `unsigned`, or why a stored signature does not verify now.
    signature: String,
    /// The trusted key id that signed it, if its signature verifies now.
    #[serde(skip_serializing_if = "Option::is_none")]
    signed_by: Option<String>,
    /// What it imports beyond the plumbing every wasm32-wasip2 build has (streams,
    /// clocks, random, stdio); the host still grants only what plans allow.
    capabilities: Vec<CapabilityDoc>,
}

fn effect(e: EffectClass) -> &'static str {
    match e {
        EffectClass::ReadOnly => "read_only",
        EffectClass::Idempotent => "idempotent",
        EffectClass::Mutating => "mutating",
    }
}

fn doc(i: &Inspected) -> PluginDoc {
    let m: &Manifest = &i.manifest;
    PluginDoc {
        path: i.path.display().to_string(),
        signature: i.signer.to_string(),
        signed_by: signed_by(&i.signer),
        capabilities: i
            .capabilities
            .iter()
            .map(|c| CapabilityDoc {
                capability: c.kind,
                interface: c.interface.clone(),
            })
            .collect(),
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

/// A plugin's manifest (version, and each action with its description, effect class,
/// params and output schemas and inverse), who signed it, and the capabilities it
/// asks for (from the interfaces it imports).
#[utoipa::path(get, path = "/v1/plugins/{name}", tag = "plugins",
    params(("name" = String, Path, description = "the plugin's name")),
    responses(
        (status = 200, description = "the plugin's manifest", body = PluginDoc),
        (status = 404, description = "no such plugin in the plugin dirs", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "the plugin's file does not load (named, with why)", body = Problem, content_type = "application/problem+json"),
    ))]
pub(super) async fn inspect(
    State(s): Shared,
    Path(name): Path<String>,
) -> Result<Json<PluginDoc>, ApiError> {
    let i = s.exec.invoker().inspect(&name).await?;
    Ok(Json(doc(&i)))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct InstallQuery {
    /// Install even if it replaces a newer version (a downgrade) or another build of
    /// the same version.
    #[serde(default)]
    force: bool,
    /// Install a component that comes without a signature (no `Medic-Signature`
    /// header). Without it an unsigned component is refused (403).
    #[serde(default)]
    allow_unsigned: bool,
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
    /// The trusted key id whose signature was verified; absent for an allowed
    /// unsigned install.
    #[serde(skip_serializing_if = "Option::is_none")]
    signed_by: Option<String>,
}

/// Installs a plugin component (`application/wasm`). Its publisher's minisign
/// signature comes in the `Medic-Signature` header (the `.minisig` file, base64) and
/// must verify with one of the server's trusted keys (`--trusted-keys DIR`); a
/// component without one is refused unless `allow_unsigned=true`. It is loaded and
/// its manifest read before anything is written; it is stored as `NAME.wasm` (NAME from its
/// manifest) in the first plugin dir, written to a temporary file and renamed, and
/// used by calls from then on without a restart. The same component again changes
/// nothing; a newer version replaces the installed one; an older version, or another
/// build of the same version, needs `force=true`.
#[utoipa::path(post, path = "/v1/plugins", tag = "plugins",
    params(InstallQuery,
        ("medic-signature" = Option<String>, Header,
            description = "the plugin's minisign signature: the .minisig file, base64-encoded")),
    request_body(content = Vec<u8>, content_type = "application/wasm",
        description = "the plugin's WebAssembly component (wasm32-wasip2)"),
    responses(
        (status = 201, description = "installed: new, upgraded or (forced) replaced", body = Installed,
            headers(("location" = String, description = "the plugin's URL"))),
        (status = 200, description = "the identical component was already installed", body = Installed),
        (status = 400, description = "bad query, or a Medic-Signature header that is not base64 text", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "the signature does not verify with a trusted key, or the component is unsigned and allow_unsigned is not set", body = Problem, content_type = "application/problem+json"),
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
    let signature = match headers.get(SIGNATURE_HEADER) {
        None => None,
        Some(v) => Some(decode_signature(v.as_bytes()).map_err(ApiError::bad_request)?),
    };
    let opts = InstallOptions {
        force: q.force,
        signature,
        signature_label: "the signature in the Medic-Signature header".to_string(),
        allow_unsigned: q.allow_unsigned,
    };
    let done = s.exec.invoker().install(bytes.to_vec(), opts).await?;
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
            signed_by: done.signer,
        }),
    )
        .into_response())
}

/// The `.minisig` text from the base64 header value.
fn decode_signature(value: &[u8]) -> Result<String, String> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(value.trim_ascii())
        .map_err(|e| {
            format!(
                "the Medic-Signature header is not base64 ({e}); send the .minisig file \
                 base64-encoded, e.g. `base64 -w0 FILE.wasm.minisig`"
            )
        })?;
    String::from_utf8(bytes).map_err(|_| {
        "the Medic-Signature header does not decode to a .minisig text file".to_string()
    })
}
