//! Who is calling and what they may do: bearer tokens with ranked roles, the role
//! each route needs, and the audit log of every mutating call.
//!
//! The route table in `api/mod.rs` is the single source: each entry is wrapped in
//! [`open`] or [`needs`]`(role, ..)`, which both enforce the role (a route layer) and
//! write it into that route's OpenAPI `security`, so the document cannot drift from
//! what the server does. [`identify`] runs first on every request: it resolves the
//! token once, leaves the [`Identity`] for the route's check and handlers, and after
//! the response writes the audit entry of a mutating call, refusals included.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use axum::extract::rejection::RawPathParamsRejection;
use axum::extract::{FromRequestParts, RawPathParams, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use utoipa::openapi::path::{Operation, PathItem};
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref};
use utoipa_axum::router::UtoipaMethodRouter;

use super::{ApiError, AppState};
use crate::run::Ms;
use crate::store::{self, AuditEntry};

/// The name of the OpenAPI security scheme every guarded route refers to.
const SCHEME: &str = "bearer";

/// Token secrets start with this, so a leaked one is recognisable (secret scanners,
/// logs) and a pasted password is not mistaken for one.
const TOKEN_PREFIX: &str = "medic_";

/// The identity every request has with `medic serve --no-auth`.
pub const ANONYMOUS: &str = "anonymous";

/// What a token may do. Ranked: each role may do everything the ones below it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Every GET: runs, plans, plugins, events, metrics.
    Viewer,
    /// Submit and steer runs: validate, submit, cancel, retry, skip.
    Operator,
    /// An operator who may also approve or reject approval steps.
    Approver,
    /// Everything, including the audit log.
    Admin,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Viewer, Role::Operator, Role::Approver, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Approver => "approver",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Result<Role, String> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| {
                format!("unknown role `{s}`; expected one of: viewer, operator, approver, admin")
            })
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How `medic serve` knows its callers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// Every call but the open ones needs a live token with a high enough role.
    Tokens,
    /// `--no-auth` (loopback only): every request is [`ANONYMOUS`] with role admin.
    Off,
}

/// A new token: the secret, shown once to whoever created it, and the sha256 (hex)
/// that is all medic keeps. 32 random bytes from the OS, so the hash needs no salt:
/// there is nothing to guess.
pub fn new_token() -> Result<(String, String), String> {
    use rand::TryRngCore;
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng
        .try_fill_bytes(&mut bytes)
        .map_err(|e| format!("reading random bytes from the OS: {e}"))?;
    let secret = format!("{TOKEN_PREFIX}{}", hex(&bytes));
    let hash = hash_token(&secret);
    Ok((secret, hash))
}

/// The sha256 (hex) of a token's secret: how the store knows it.
pub fn hash_token(secret: &str) -> String {
    hex(&Sha256::digest(secret.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether `name` can name a token: it appears in audit entries and as a run's
/// `submitted_by`, so it is kept short and printable.
pub fn check_token_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._@-".contains(c));
    if !ok {
        return Err(format!(
            "token name `{name}`: use 1 to 64 letters, digits, `.`, `_`, `@` or `-`, starting with a letter or digit"
        ));
    }
    if name == ANONYMOUS {
        return Err(format!(
            "`{ANONYMOUS}` is the identity of `medic serve --no-auth`; pick another name"
        ));
    }
    Ok(())
}

/// Who made a request, as handlers see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The token's name ([`ANONYMOUS`] with `--no-auth`).
    pub name: String,
    pub role: Role,
}

/// What [`identify`] found on a request.
#[derive(Debug, Clone)]
pub(super) enum Identity {
    Caller(Caller),
    /// No `Authorization` header.
    Missing,
    /// A header that names no live token; why, for the 401.
    Rejected(&'static str),
}

/// Handlers take the caller like any extractor. Only guarded routes (see [`needs`])
/// may: their check has already turned anyone else away.
impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Caller, ApiError> {
        match parts.extensions.get::<Identity>() {
            Some(Identity::Caller(c)) => Ok(c.clone()),
            _ => Err(ApiError::unauthorized(NO_TOKEN)),
        }
    }
}

const NO_TOKEN: &str = "this call needs a token: send `Authorization: Bearer TOKEN` \
    (tokens are made on medic's host with `medic token create --name NAME --role ROLE`)";

/// The run a response is about when the path does not say (a submission's new run),
/// for its audit entry.
#[derive(Debug, Clone)]
pub(super) struct AuditRun(pub String);

/// The reason an admin gave for a break-glass call (force-releasing a lock,
/// resetting a breaker), for its audit entry.
#[derive(Debug, Clone)]
pub(super) struct AuditReason(pub String);

/// Remembers when each token's use was last written, so a busy client costs one
/// write a minute, not one per request.
#[derive(Default)]
pub(super) struct LastUsed(Mutex<HashMap<String, Ms>>);

const LAST_USED_EVERY_MS: Ms = 60_000;

impl LastUsed {
    fn due(&self, name: &str, now: Ms) -> bool {
        let mut seen = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match seen.get(name) {
            Some(&at) if now - at < LAST_USED_EVERY_MS => false,
            _ => {
                seen.insert(name.to_owned(), now);
                true
            }
        }
    }
}

impl AppState {
    async fn identity(&self, headers: &HeaderMap) -> Result<Identity, store::Error> {
        if self.auth == AuthMode::Off {
            return Ok(Identity::Caller(Caller {
                name: ANONYMOUS.into(),
                role: Role::Admin,
            }));
        }
        let Some(value) = headers.get(axum::http::header::AUTHORIZATION) else {
            return Ok(Identity::Missing);
        };
        let secret = value
            .to_str()
            .ok()
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, secret)| secret.trim());
        let Some(secret) = secret else {
            return Ok(Identity::Rejected(
                "the Authorization header must be `Bearer TOKEN`",
            ));
        };
        // Every request looks the token up, so `medic token revoke` in another
        // process takes effect at once.
        let Some(token) = self.exec.store().live_token(&hash_token(secret)).await? else {
            return Ok(Identity::Rejected(
                "the token is unknown or revoked; `medic token list` shows the live ones",
            ));
        };
        let role = Role::parse(&token.role).map_err(|detail| store::Error::Corrupt {
            what: "token role",
            detail,
        })?;
        let now = self.exec.now();
        // Awaited, so `medic token list` right after a call shows it; a minute apart
        // per token, so it costs a busy client almost nothing.
        if self.last_used.due(&token.name, now)
            && let Err(e) = self.exec.store().touch_token(&token.name, now).await
        {
            tracing::warn!(token = %token.name, error = %e, "noting a token's last use");
        }
        Ok(Identity::Caller(Caller {
            name: token.name,
            role,
        }))
    }
}

/// Middleware on every route: resolves the caller once and, for a mutating call
/// (anything but GET, HEAD and OPTIONS), records it in the audit log with the status
/// it got, refusals included. The entry is durable before the response leaves.
pub(super) async fn identify(
    State(s): State<Arc<AppState>>,
    path_params: Result<RawPathParams, RawPathParamsRejection>,
    mut req: Request,
    next: Next,
) -> Response {
    let at = s.exec.now();
    let identity = match s.identity(req.headers()).await {
        Ok(identity) => identity,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let audited = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    let (method, path) = (req.method().to_string(), req.uri().path().to_owned());
    req.extensions_mut().insert(identity.clone());
    let resp = next.run(req).await;
    if !audited {
        return resp;
    }
    let param = |name: &str| {
        path_params.as_ref().ok().and_then(|p| {
            p.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_owned())
        })
    };
    let run_id = resp
        .extensions()
        .get::<AuditRun>()
        .map(|r| r.0.clone())
        .or_else(|| param("id"));
    let (token, role) = match identity {
        Identity::Caller(c) => (Some(c.name), Some(c.role.as_str().to_owned())),
        Identity::Missing | Identity::Rejected(_) => (None, None),
    };
    let entry = AuditEntry {
        at,
        token,
        role,
        method,
        path,
        run_id,
        step_id: param("step"),
        status: resp.status().as_u16(),
        reason: resp.extensions().get::<AuditReason>().map(|r| r.0.clone()),
    };
    if let Err(e) = s.exec.store().record_audit(entry.clone()).await {
        // The call itself has happened; losing its audit entry is logged loudly.
        tracing::error!(?entry, error = %e, "recording an audit entry");
    }
    resp
}

/// Who the caller is, as `GET /v1/whoami` answers.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(super) struct WhoAmI {
    /// The token's name (`anonymous` with `medic serve --no-auth`).
    name: String,
    /// The token's role: viewer, operator, approver or admin.
    role: String,
    /// Every role this caller has, its own and the ones below it, so a client can
    /// offer only the commands it may give.
    roles: Vec<String>,
}

/// The caller's token name and role: what the web UI shows and which commands it
/// offers.
#[utoipa::path(get, path = "/v1/whoami", tag = "service",
    responses((status = 200, description = "the caller", body = WhoAmI)))]
pub(super) async fn whoami(caller: Caller) -> axum::Json<WhoAmI> {
    axum::Json(WhoAmI {
        name: caller.name,
        role: caller.role.as_str().to_owned(),
        roles: Role::ALL
            .into_iter()
            .filter(|r| *r <= caller.role)
            .map(|r| r.as_str().to_owned())
            .collect(),
    })
}

/// A route anyone may call, without a token.
pub(super) fn open<S>(route: UtoipaMethodRouter<S>) -> UtoipaMethodRouter<S> {
    let (schemas, mut paths, router) = route;
    for op in paths.paths.values_mut().flat_map(operations) {
        op.security = Some(Vec::new());
    }
    (schemas, paths, router)
}

/// A route that needs a live token whose role is `role` or higher: 401 without
/// one, 403 with a lower role. Declared here, it is both enforced and documented.
pub(super) fn needs<S>(role: Role, route: UtoipaMethodRouter<S>) -> UtoipaMethodRouter<S>
where
    S: Clone + Send + Sync + 'static,
{
    let (schemas, mut paths, router) = route;
    for op in paths.paths.values_mut().flat_map(operations) {
        op.security = Some(vec![SecurityRequirement::new(SCHEME, [role.as_str()])]);
        let problem = |description: String| {
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/problem+json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("Problem")))
                        .build(),
                )
                .build()
        };
        op.responses.responses.insert(
            "401".into(),
            problem("no token, or an unknown or revoked one".into()).into(),
        );
        op.responses
            .responses
            .entry("403".into())
            .or_insert_with(|| problem(format!("the token's role is below `{role}`")).into());
    }
    let router = router.route_layer(axum::middleware::from_fn(
        move |req: Request, next: Next| check(role, req, next),
    ));
    (schemas, paths, router)
}

async fn check(need: Role, req: Request, next: Next) -> Response {
    let refusal = match req.extensions().get::<Identity>() {
        Some(Identity::Caller(c)) if c.role >= need => return next.run(req).await,
        Some(Identity::Caller(c)) => ApiError::forbidden(format!(
            "{} {} needs role `{need}` or higher; token `{}` has role `{}`",
            req.method(),
            req.uri().path(),
            c.name,
            c.role
        ))
        .needing_role(need.to_string()),
        Some(Identity::Rejected(why)) => ApiError::unauthorized(*why),
        Some(Identity::Missing) | None => ApiError::unauthorized(NO_TOKEN),
    };
    // Read what is left of a small body first: answering before it arrived makes
    // hyper close the connection, which a client reusing it sees as a dropped call.
    let _ = axum::body::to_bytes(req.into_body(), REFUSED_BODY_DRAIN).await;
    refusal.into_response()
}

/// How much of a refused request's body is read so its connection can be reused.
const REFUSED_BODY_DRAIN: usize = 64 * 1024;

fn operations(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.options,
        &mut item.head,
        &mut item.patch,
        &mut item.trace,
    ]
    .into_iter()
    .filter_map(Option::as_mut)
}

/// Adds the bearer scheme to the OpenAPI document.
pub(super) struct BearerScheme;

impl utoipa::Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let mut http = Http::new(HttpAuthScheme::Bearer);
        http.description = Some(
            "A token from `medic token create --name NAME --role ROLE`, sent as \
             `Authorization: Bearer TOKEN`. Roles are ranked viewer < operator < approver \
             < admin; each operation's security lists the lowest role it needs."
                .into(),
        );
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme(SCHEME, SecurityScheme::Http(http));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_ranked_and_parse_back() {
        assert!(Role::Viewer < Role::Operator && Role::Operator < Role::Approver);
        assert!(Role::Approver < Role::Admin);
        for r in Role::ALL {
            assert_eq!(Role::parse(r.as_str()), Ok(r));
        }
        assert!(
            Role::parse("root")
                .unwrap_err()
                .contains("viewer, operator")
        );
    }

    #[test]
    fn a_new_token_is_random_and_only_its_hash_is_kept() {
        let (secret, hash) = new_token().unwrap();
        let (other, _) = new_token().unwrap();
        assert_ne!(secret, other);
        assert!(secret.starts_with(TOKEN_PREFIX) && secret.len() == TOKEN_PREFIX.len() + 64);
        assert_eq!(hash, hash_token(&secret));
        assert_eq!(hash.len(), 64);
        assert!(!hash.contains(&secret[TOKEN_PREFIX.len()..]));
    }

    #[test]
    fn token_names_are_short_and_printable() {
        assert!(check_token_name("alice@ops").is_ok());
        assert!(check_token_name("ci-bot_2.x").is_ok());
        for bad in ["", "-x", "a b", "ä", ANONYMOUS, &"x".repeat(65)] {
            assert!(check_token_name(bad).is_err(), "{bad}");
        }
    }
}
