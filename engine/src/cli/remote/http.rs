//! The HTTP side of `medic --server`: one blocking `ureq` agent, the bearer token on
//! every request, JSON in and out, and RFC 9457 problems turned into errors that say
//! what to do.

use std::fmt;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use super::sse;
use crate::cli::exit;

/// Longer than the server's SSE keep-alive (15 s), so a silent dead connection is
/// noticed and reconnected, and a live stream waiting for an approval is not.
const READ_TIMEOUT: Duration = Duration::from_secs(45);

pub(super) struct Client {
    base: String,
    token: Option<String>,
    agent: ureq::Agent,
}

/// Why a request did not get a 2xx answer.
#[derive(Debug, thiserror::Error)]
pub(super) enum Error {
    /// Nothing was sent: the server is not there.
    #[error("{what}: cannot reach medic at {url}: {cause}; is `medic serve` running?")]
    Unreachable {
        what: String,
        url: String,
        cause: ureq::Error,
    },
    /// The TLS handshake failed: the server's certificate is not trusted (or the
    /// server does not speak TLS). Sending again will not help.
    #[error(
        "{what}: the TLS handshake with medic at {url} failed: {cause}; if the server's \
         certificate is self-signed or from a private CA, pass --ca-cert PEM (or set MEDIC_CA_CERT)"
    )]
    Tls {
        what: String,
        url: String,
        cause: ureq::Error,
    },
    /// The connection broke (or timed out) during the exchange.
    #[error("{what}: the connection to medic at {url} failed: {cause}")]
    Transport {
        what: String,
        url: String,
        cause: ureq::Error,
    },
    /// The server answered with an error status.
    #[error("{0}")]
    Problem(Box<Problem>),
    /// A 2xx whose body is not the JSON the API documents.
    #[error(
        "{what}: medic at {url} answered {status} with a body that is not the API's JSON: {detail}"
    )]
    Protocol {
        what: String,
        url: String,
        status: u16,
        detail: String,
    },
    #[error("--server {0}: expected an http:// or https:// URL such as http://127.0.0.1:7777")]
    BadUrl(String),
    /// The `--ca-cert` file cannot be used.
    #[error("--ca-cert {path}: {detail}")]
    BadCa { path: String, detail: String },
}

impl Error {
    /// 4xx is a refusal of what was asked (like invalid input locally); anything else
    /// means medic could not answer.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Problem(p) if (400..500).contains(&p.status) => exit::INVALID,
            Error::BadUrl(_) | Error::BadCa { .. } => exit::INVALID,
            _ => exit::FAILED,
        }
    }

    /// Worth sending again: the request may not have arrived, or the server was
    /// briefly unable to answer.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Unreachable { .. } | Error::Transport { .. } => true,
            Error::Problem(p) => matches!(p.status, 502..=504),
            Error::Protocol { .. } | Error::BadUrl(_) | Error::BadCa { .. } | Error::Tls { .. } => {
                false
            }
        }
    }

    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Problem(p) => Some(p.status),
            _ => None,
        }
    }
}

/// An RFC 9457 problem (or any error answer), with what the client was doing.
#[derive(Debug)]
pub(super) struct Problem {
    what: String,
    url: String,
    status: u16,
    title: String,
    detail: String,
    /// `path (line:col): message` of each validation error.
    errors: Vec<String>,
    /// The role the server said is needed (403), if it said.
    required_role: Option<String>,
    token_sent: bool,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: medic at {} answered {} {}",
            self.what, self.url, self.status, self.title
        )?;
        if !self.detail.is_empty() {
            write!(f, ": {}", self.detail)?;
        }
        for e in &self.errors {
            write!(f, "\n  {e}")?;
        }
        let create = "an admin creates one with `medic token create --name NAME --role ROLE`";
        match (self.status, self.token_sent) {
            (401, false) => write!(
                f,
                "\n  this server needs a token: pass --token TOKEN or set MEDIC_TOKEN ({create})"
            )?,
            (401, true) => write!(
                f,
                "\n  the token was not accepted (unknown or revoked): check --token / MEDIC_TOKEN ({create})"
            )?,
            (403, _) => match &self.required_role {
                Some(role) => write!(
                    f,
                    "\n  this needs a token with role `{role}` or higher: ask an admin (`medic token create --name NAME --role {role}`) and pass it with --token or MEDIC_TOKEN"
                )?,
                None => write!(
                    f,
                    "\n  the token's role does not allow this (viewer < operator < approver < admin): use a token with a higher role (--token or MEDIC_TOKEN)"
                )?,
            },
            _ => {}
        }
        Ok(())
    }
}

/// A 2xx answer.
pub(super) struct Reply {
    pub status: u16,
    pub body: Value,
}

/// A run's event stream, read one event at a time.
pub(super) struct EventStream {
    reader: BufReader<ureq::BodyReader<'static>>,
    parser: sse::Parser,
    line: String,
}

impl EventStream {
    /// The next event; `Ok(None)` when the server ended the stream.
    pub fn next_event(&mut self) -> std::io::Result<Option<sse::Event>> {
        loop {
            self.line.clear();
            if self.reader.read_line(&mut self.line)? == 0 {
                return Ok(None);
            }
            if let Some(ev) = self.parser.line(&self.line) {
                return Ok(Some(ev));
            }
        }
    }
}

impl Client {
    /// A client of the server at `server` (`http://` or `https://`). For HTTPS the
    /// server's certificate must chain to the PEM certificates in `ca` if given (a
    /// private CA or a self-signed certificate), else to the Web PKI roots.
    pub fn new(server: &str, token: Option<String>, ca: Option<&Path>) -> Result<Client, Error> {
        let base = server.trim_end_matches('/');
        let scheme_len = if base.starts_with("https://") {
            "https://".len()
        } else if base.starts_with("http://") {
            "http://".len()
        } else {
            return Err(Error::BadUrl(server.to_owned()));
        };
        if base.len() <= scheme_len {
            return Err(Error::BadUrl(server.to_owned()));
        }
        let mut config = ureq::Agent::config_builder()
            // Error statuses carry problem+json this client prints.
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(10)))
            .timeout_per_read(Some(READ_TIMEOUT))
            .user_agent(format!("medic/{}", env!("CARGO_PKG_VERSION")));
        if let Some(ca) = ca {
            config = config.tls_config(
                ureq::tls::TlsConfig::builder()
                    .root_certs(ureq::tls::RootCerts::new_with_certs(&read_ca(ca)?))
                    .build(),
            );
        }
        let agent = config.build().into();
        Ok(Client {
            base: base.to_owned(),
            token: token.filter(|t| !t.is_empty()),
            agent,
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn auth<B>(&self, req: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        match &self.token {
            Some(t) => req.header("authorization", format!("Bearer {t}")),
            None => req,
        }
    }

    pub fn get(&self, what: &str, path: &str) -> Result<Value, Error> {
        let req = self.auth(self.agent.get(self.url(path)));
        self.answer(what, req.call()).map(|r| r.body)
    }

    /// POSTs `body` as JSON; `key` goes as the `Idempotency-Key` header.
    pub fn post(
        &self,
        what: &str,
        path: &str,
        body: &Value,
        key: Option<&str>,
    ) -> Result<Reply, Error> {
        let mut req = self.auth(self.agent.post(self.url(path)));
        if let Some(k) = key {
            req = req.header("idempotency-key", k);
        }
        self.answer(what, req.send_json(body))
    }

    /// POSTs `body` as `content_type` with the extra `headers`.
    pub fn post_bytes(
        &self,
        what: &str,
        path: &str,
        content_type: &str,
        headers: &[(&str, String)],
        body: &[u8],
    ) -> Result<Reply, Error> {
        let mut req = self
            .auth(self.agent.post(self.url(path)))
            .header("content-type", content_type);
        for (name, value) in headers {
            req = req.header(*name, value);
        }
        self.answer(what, req.send(body))
    }

    /// PATCHes `body` as JSON.
    pub fn patch(&self, what: &str, path: &str, body: &Value) -> Result<Reply, Error> {
        let req = self.auth(self.agent.patch(self.url(path)));
        self.answer(what, req.send_json(body))
    }

    pub fn delete(&self, what: &str, path: &str) -> Result<Reply, Error> {
        let req = self.auth(self.agent.delete(self.url(path)));
        self.answer(what, req.call())
    }

    /// Opens `GET /v1/runs/{run}/events` after event `after` (`Last-Event-ID`).
    pub fn events(&self, run: &str, after: i64) -> Result<EventStream, Error> {
        let what = format!("following run {run}");
        let mut req = self
            .auth(
                self.agent
                    .get(self.url(&format!("/v1/runs/{}/events", segment(run)))),
            )
            .header("accept", "text/event-stream");
        if after > 0 {
            req = req.header("last-event-id", after.to_string());
        }
        let resp = req.call().map_err(|e| self.transport(&what, e))?;
        if !resp.status().is_success() {
            return Err(self.problem(&what, resp));
        }
        Ok(EventStream {
            reader: BufReader::new(resp.into_body().into_reader()),
            parser: sse::Parser::default(),
            line: String::new(),
        })
    }

    fn answer(
        &self,
        what: &str,
        r: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<Reply, Error> {
        let mut resp = r.map_err(|e| self.transport(what, e))?;
        let status = resp.status().as_u16();
        if !resp.status().is_success() {
            return Err(self.problem(what, resp));
        }
        let text = resp
            .body_mut()
            .read_to_string()
            .map_err(|e| self.transport(what, e))?;
        let body = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).map_err(|e| Error::Protocol {
                what: what.to_owned(),
                url: self.base.clone(),
                status,
                detail: e.to_string(),
            })?
        };
        Ok(Reply { status, body })
    }

    fn transport(&self, what: &str, cause: ureq::Error) -> Error {
        let (what, url) = (what.to_owned(), self.base.clone());
        let refused = match &cause {
            ureq::Error::ConnectionFailed | ureq::Error::HostNotFound => true,
            ureq::Error::Io(e) => matches!(
                e.kind(),
                std::io::ErrorKind::ConnectionRefused
                    | std::io::ErrorKind::AddrNotAvailable
                    | std::io::ErrorKind::HostUnreachable
                    | std::io::ErrorKind::NetworkUnreachable
            ),
            ureq::Error::Timeout(t) => matches!(t, ureq::Timeout::Connect | ureq::Timeout::Resolve),
            _ => false,
        };
        let tls = match &cause {
            ureq::Error::Rustls(_) | ureq::Error::Tls(_) => true,
            // rustls reports a failed handshake through the stream as an io::Error
            // wrapping its own error (whose type this crate does not name).
            ureq::Error::Io(e) => {
                self.base.starts_with("https://")
                    && (e.kind() == std::io::ErrorKind::InvalidData || {
                        let text = e.to_string();
                        text.contains("certificate") || text.contains("handshake")
                    })
            }
            _ => false,
        };
        if refused {
            Error::Unreachable { what, url, cause }
        } else if tls {
            Error::Tls { what, url, cause }
        } else {
            Error::Transport { what, url, cause }
        }
    }

    fn problem(&self, what: &str, mut resp: ureq::http::Response<ureq::Body>) -> Error {
        let status = resp.status();
        let text = resp.body_mut().read_to_string().unwrap_or_default();
        let json: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let str_of = |k: &str| json.get(k).and_then(Value::as_str).map(str::to_owned);
        let errors = json
            .get("errors")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(error_item)
            .collect();
        Error::Problem(Box::new(Problem {
            what: what.to_owned(),
            url: self.base.clone(),
            status: status.as_u16(),
            title: str_of("title")
                .or_else(|| status.canonical_reason().map(str::to_owned))
                .unwrap_or_default(),
            // Not JSON (a proxy's error page, say): its text is the best detail there is.
            detail: str_of("detail").unwrap_or_else(|| {
                if json.is_null() {
                    text.trim().chars().take(500).collect()
                } else {
                    String::new()
                }
            }),
            errors,
            required_role: str_of("required_role"),
            token_sent: self.token.is_some(),
        }))
    }
}

/// `path (line:col): message`, leaving out what the server did not give.
fn error_item(e: &Value) -> String {
    let path = e.get("path").and_then(Value::as_str).unwrap_or("");
    let message = e
        .get("message")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| e.to_string());
    let at = match (
        e.get("line").and_then(Value::as_u64),
        e.get("column").and_then(Value::as_u64),
    ) {
        (Some(l), Some(c)) => format!(" ({l}:{c})"),
        (Some(l), None) => format!(" (line {l})"),
        _ => String::new(),
    };
    match (path.is_empty(), at.is_empty()) {
        (true, true) => message,
        _ => format!("{path}{at}: {message}"),
    }
}

/// A path segment: ids and names go into URLs percent-encoded, so a `/` or `?` in
/// user input cannot reach another route.
pub(super) fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The certificates of a PEM file, for `--ca-cert`.
fn read_ca(path: &Path) -> Result<Vec<ureq::tls::Certificate<'static>>, Error> {
    let bad = |detail: String| Error::BadCa {
        path: path.display().to_string(),
        detail,
    };
    let pem = std::fs::read(path).map_err(|e| bad(format!("cannot read it: {e}")))?;
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        if let ureq::tls::PemItem::Certificate(cert) =
            item.map_err(|e| bad(format!("not PEM: {e}")))?
        {
            certs.push(cert);
        }
    }
    if certs.is_empty() {
        return Err(bad(
            "no CERTIFICATE in it: give the PEM certificate (or CA) the server's --tls-cert chains to"
                .into(),
        ));
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn validation_errors_read_path_position_message() {
        assert_eq!(
            error_item(
                &json!({"path": "steps[0].uses", "line": 5, "column": 19, "message": "unknown"})
            ),
            "steps[0].uses (5:19): unknown"
        );
        assert_eq!(
            error_item(
                &json!({"path": "params.target", "line": null, "column": null, "message": "expected a string"})
            ),
            "params.target: expected a string"
        );
    }

    #[test]
    fn segments_are_percent_encoded() {
        assert_eq!(segment("r01a-b_c.d~e"), "r01a-b_c.d~e");
        assert_eq!(segment("a/b?c d"), "a%2Fb%3Fc%20d");
    }

    #[test]
    fn a_403_names_the_role_the_server_asked_for() {
        let p = Problem {
            what: "approving".into(),
            url: "http://m".into(),
            status: 403,
            title: "Forbidden".into(),
            detail: "role operator is too low".into(),
            errors: vec![],
            required_role: Some("approver".into()),
            token_sent: true,
        };
        let text = p.to_string();
        assert!(
            text.starts_with(
                "approving: medic at http://m answered 403 Forbidden: role operator is too low\n"
            ),
            "{text}"
        );
        assert!(text.contains("role `approver` or higher"), "{text}");
    }
}
