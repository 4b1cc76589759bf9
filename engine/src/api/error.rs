//! `ApiError`: every failure of the API as RFC 9457 problem details. Bad input is a
//! 4xx and not logged as an error; internal errors are logged once, here.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Value, json};
use utoipa::ToSchema;

use crate::executor;
use crate::plan::Diagnostics;
use crate::plugin;
use crate::store;

/// RFC 9457 problem details: the body of every error response (documentation only;
/// [`ApiError`] writes it).
#[derive(Serialize, ToSchema)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    /// What went wrong and what to do.
    pub detail: String,
    /// Validation errors, each with its field path and position in the plan.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<FieldError>>,
    /// On a 403 for a role too low: the lowest role that may do this.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub required_role: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct FieldError {
    /// JSON pointer of the field, e.g. `/steps/2/with/ms`.
    pub path: String,
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub message: String,
}

#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    title: &'static str,
    detail: String,
    /// Validation errors with their field paths and positions.
    errors: Option<Vec<Value>>,
    /// A 403's `required_role` extension member (RFC 9457 §3.2).
    required_role: Option<String>,
}

impl ApiError {
    /// The detail and each validation error's message, for an answer that reports
    /// the error inside a 200 (an alert webhook's per-alert outcome).
    pub fn describe(&self) -> String {
        let mut out = self.detail.clone();
        for e in self.errors.iter().flatten() {
            if let Some(m) = e.get("message").and_then(Value::as_str) {
                out.push_str("; ");
                out.push_str(m);
            }
        }
        out
    }

    pub fn new(status: StatusCode, title: &'static str, detail: impl Into<String>) -> ApiError {
        ApiError {
            status,
            title,
            detail: detail.into(),
            errors: None,
            required_role: None,
        }
    }

    pub fn bad_request(detail: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            title: "Bad request",
            detail: detail.into(),
            errors: None,
            required_role: None,
        }
    }

    pub fn not_found(detail: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::NOT_FOUND,
            title: "Not found",
            detail: detail.into(),
            errors: None,
            required_role: None,
        }
    }

    /// The router has no such path (as opposed to no such run or step).
    pub fn no_route(path: &str) -> ApiError {
        ApiError {
            status: StatusCode::NOT_FOUND,
            title: "No such route",
            detail: format!("medic has no route {path}: see /openapi.json for the API"),
            errors: None,
            required_role: None,
        }
    }

    /// 401: no token, or one that is unknown or revoked. Carries the
    /// `WWW-Authenticate: Bearer` challenge.
    pub fn unauthorized(detail: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::UNAUTHORIZED,
            title: "Unauthorized",
            detail: detail.into(),
            errors: None,
            required_role: None,
        }
    }

    /// 403: the token is known but may not do this.
    pub fn forbidden(detail: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::FORBIDDEN,
            title: "Forbidden",
            detail: detail.into(),
            errors: None,
            required_role: None,
        }
    }

    /// Names the role a refused call needs, for clients to say what to ask for.
    pub fn needing_role(mut self, role: impl Into<String>) -> ApiError {
        self.required_role = Some(role.into());
        self
    }

    /// 409: the request does not fit the state of what it names.
    pub fn conflict(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, "Not applicable now", detail)
    }

    /// 422 with every diagnostic, each with its field path and line/column.
    pub fn invalid(detail: &str, diagnostics: &Diagnostics) -> ApiError {
        let errors = diagnostics
            .iter()
            .map(|d| json!({ "path": d.path, "line": d.line, "column": d.column, "message": d.message }))
            .collect();
        ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            title: "Invalid plan or params",
            detail: detail.into(),
            errors: Some(errors),
            required_role: None,
        }
    }

    fn internal(detail: String) -> ApiError {
        tracing::error!(error = %detail, "internal error serving a request");
        ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            title: "Internal error",
            detail,
            errors: None,
            required_role: None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({
            "type": "about:blank",
            "title": self.title,
            "status": self.status.as_u16(),
            "detail": self.detail,
        });
        if let Some(errors) = self.errors {
            body["errors"] = Value::Array(errors);
        }
        if let Some(role) = self.required_role {
            body["required_role"] = Value::String(role);
        }
        let mut resp = (self.status, Json(body)).into_response();
        resp.headers_mut().insert(
            axum::http::header::CONTENT_TYPE,
            axum::http::HeaderValue::from_static("application/problem+json"),
        );
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer realm=\"medic\""),
            );
        }
        resp
    }
}

impl From<JsonRejection> for ApiError {
    fn from(e: JsonRejection) -> ApiError {
        let detail = if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            format!(
                "the request body is larger than the {} MiB medic accepts; nothing was stored. \
                 Plans and params are text (a 10,000-step plan is about 1 MiB): pass large data \
                 by reference (a path, a URL, an artifact name) instead",
                super::MAX_BODY_BYTES / (1024 * 1024)
            )
        } else {
            e.body_text()
        };
        ApiError {
            status: e.status(),
            title: "Bad request body",
            detail,
            errors: None,
            required_role: None,
        }
    }
}

impl From<store::Error> for ApiError {
    fn from(e: store::Error) -> ApiError {
        match e {
            store::Error::RunNotFound(_)
            | store::Error::PlanNotFound(_)
            | store::Error::BreakerNotFound(_) => ApiError::not_found(e.to_string()),
            store::Error::Busy { .. } | store::Error::BreakerOpen { .. } => {
                ApiError::conflict(e.to_string())
            }
            ref e if e.unavailable().is_some() => {
                let hint = e.unavailable().unwrap_or_default();
                tracing::error!(error = %e, "the database cannot be written");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Database unavailable",
                    format!(
                        "medic cannot write its database: {hint}; nothing of this request was \
                         stored, so it is safe to send again once that is fixed ({e})"
                    ),
                )
            }
            e => ApiError::internal(e.to_string()),
        }
    }
}

impl From<executor::Error> for ApiError {
    fn from(e: executor::Error) -> ApiError {
        match e {
            executor::Error::Store(e) => e.into(),
            executor::Error::UnknownStep { .. } => ApiError::not_found(e.to_string()),
            executor::Error::NotApplicable(_) | executor::Error::Owned { .. } => {
                ApiError::conflict(e.to_string())
            }
            executor::Error::Locks(_) => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Invalid params",
                e.to_string(),
            ),
            e => ApiError::internal(e.to_string()),
        }
    }
}

impl From<plugin::Error> for ApiError {
    fn from(e: plugin::Error) -> ApiError {
        match e {
            plugin::Error::NotFound { .. } => ApiError::not_found(e.to_string()),
            plugin::Error::NotInstallable { .. } => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Not a medic plugin",
                e.to_string(),
            ),
            plugin::Error::NotNewer { .. } => ApiError::conflict(e.to_string()),
            // A file in a plugin dir that does not compile, link or describe itself:
            // the operator's install to fix, not a fault of medic's.
            plugin::Error::Load { .. } => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Plugin does not load",
                e.to_string(),
            ),
            plugin::Error::Untrusted { .. } => ApiError::new(
                StatusCode::FORBIDDEN,
                "Plugin signature not accepted",
                e.to_string(),
            ),
            e => ApiError::internal(e.to_string()),
        }
    }
}
