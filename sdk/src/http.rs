//! A small blocking HTTP client over `wasi:http/outgoing-handler` (wasm32 only).
//!
//! medic sends a plugin's request only to an origin (`scheme://host:port`) the plan
//! grants the step (`grants: { http: [...] }`), connects itself to an address it
//! checked, and adds the operator's credentials for that origin: a plugin never sees
//! them and must not try to set them. Redirects are returned, not followed.
//!
//! ```ignore
//! use medic_sdk::http::Request;
//!
//! let response = Request::get("http://127.0.0.1:2379/health").send()?;
//! if response.status != 200 { /* ... */ }
//! let health: serde_json::Value = response.json()?;
//! ```
#![cfg(target_arch = "wasm32")]

use std::time::Duration;

use wasip2::http::outgoing_handler;
use wasip2::http::types::{
    ErrorCode, Fields, IncomingBody, Method, OutgoingBody, OutgoingRequest, RequestOptions, Scheme,
};
use wasip2::io::streams::StreamError;

use crate::Failure;

/// One request: method, URL (`http://` or `https://`), headers, body.
#[derive(Debug, Clone)]
pub struct Request {
    method: String,
    url: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    timeout: Option<Duration>,
}

/// The answer: status, headers (names in lower case, as sent), the whole body.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Why a request got no response. `retryable` says whether trying again may help
/// (a refused connection, a timeout) or not (an origin the plan does not grant).
#[derive(Debug, Clone)]
pub struct Error {
    pub message: String,
    pub retryable: bool,
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

impl From<Error> for Failure {
    fn from(e: Error) -> Failure {
        if e.retryable {
            Failure::retryable(e.message)
        } else {
            Failure::permanent(e.message)
        }
    }
}

impl Request {
    pub fn new(method: &str, url: &str) -> Request {
        Request {
            method: method.to_string(),
            url: url.to_string(),
            headers: Vec::new(),
            body: Vec::new(),
            timeout: None,
        }
    }

    pub fn get(url: &str) -> Request {
        Request::new("GET", url)
    }

    pub fn post(url: &str) -> Request {
        Request::new("POST", url)
    }

    pub fn put(url: &str) -> Request {
        Request::new("PUT", url)
    }

    pub fn delete(url: &str) -> Request {
        Request::new("DELETE", url)
    }

    /// Adds a header (another one of the same name is added, not replaced).
    pub fn header(mut self, name: &str, value: &str) -> Request {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Request {
        self.body = body.into();
        self
    }

    /// A JSON body, with `content-type: application/json`.
    pub fn json(self, value: &serde_json::Value) -> Request {
        self.header("content-type", "application/json")
            .body(value.to_string())
    }

    /// Bounds connecting, the wait for the response and each wait between body
    /// chunks (medic bounds them by the call's timeout as well).
    pub fn timeout(mut self, timeout: Duration) -> Request {
        self.timeout = Some(timeout);
        self
    }

    /// Sends the request and reads the whole response.
    pub fn send(self) -> Result<Response, Error> {
        let mut streaming = self.open()?;
        let body = streaming.read_to_end()?;
        Ok(Response {
            status: streaming.status,
            headers: std::mem::take(&mut streaming.headers),
            body,
        })
    }

    /// Sends the request and returns once the response's status and headers are in;
    /// its body is read with [`Streaming::chunk`], never held whole.
    pub fn open(self) -> Result<Streaming, Error> {
        let url = Url::parse(&self.url)?;
        let what = format!("{} {}", self.method, self.url);
        let failed = |message: String, retryable: bool| Error {
            message: format!("{what}: {message}"),
            retryable,
        };

        let mut entries: Vec<(String, Vec<u8>)> = self
            .headers
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.as_bytes().to_vec()))
            .collect();
        // A known length rather than chunked encoding, which some servers refuse.
        if !self.body.is_empty() && !entries.iter().any(|(k, _)| k == "content-length") {
            entries.push((
                "content-length".into(),
                self.body.len().to_string().into_bytes(),
            ));
        }
        let headers = Fields::from_list(&entries)
            .map_err(|e| failed(format!("its headers are not allowed: {e:?}"), false))?;
        let request = OutgoingRequest::new(headers);
        let refused = |what: &str| failed(format!("invalid {what}"), false);
        request
            .set_method(&method(&self.method))
            .map_err(|_| refused("method"))?;
        request
            .set_scheme(Some(&url.scheme))
            .map_err(|_| refused("scheme"))?;
        request
            .set_authority(Some(&url.authority))
            .map_err(|_| refused("authority"))?;
        request
            .set_path_with_query(Some(&url.path))
            .map_err(|_| refused("path"))?;
        let options = self.timeout.map(|t| {
            let options = RequestOptions::new();
            let ns = Some(t.as_nanos().min(u64::MAX as u128) as u64);
            // A host that does not support one of them keeps its own bound.
            let _ = options.set_connect_timeout(ns);
            let _ = options.set_first_byte_timeout(ns);
            let _ = options.set_between_bytes_timeout(ns);
            options
        });
        let body = request
            .body()
            .map_err(|_| failed("the request body was already taken".into(), false))?;

        let pending = outgoing_handler::handle(request, options)
            .map_err(|code| describe(&what, &url.origin, &code))?;
        if let Err(e) = write_body(body, &self.body) {
            // A request the host refused (an origin the plan does not grant) closes the
            // body stream: the response's error says why, the closed stream does not.
            pending.subscribe().block();
            if let Some(Ok(Err(code))) = pending.get() {
                return Err(describe(&what, &url.origin, &code));
            }
            return Err(failed(e, true));
        }

        let response = loop {
            match pending.get() {
                Some(Ok(Ok(response))) => break response,
                Some(Ok(Err(code))) => return Err(describe(&what, &url.origin, &code)),
                Some(Err(())) => {
                    return Err(failed("the response was already taken".into(), false));
                }
                None => pending.subscribe().block(),
            }
        };
        let status = response.status();
        let headers = response
            .headers()
            .entries()
            .into_iter()
            .map(|(k, v)| (k, String::from_utf8_lossy(&v).into_owned()))
            .collect();
        let incoming = response
            .consume()
            .map_err(|_| failed("the response body was already taken".into(), false))?;
        let stream = incoming
            .stream()
            .map_err(|_| failed("the response body stream was already taken".into(), false))?;
        Ok(Streaming {
            status,
            headers,
            what,
            stream: Some(stream),
            _incoming: incoming,
        })
    }
}

/// A response whose body is read chunk by chunk as it arrives ([`Request::open`]):
/// for bodies larger than a plugin's memory (a database snapshot), written on to an
/// artifact as they come.
pub struct Streaming {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    what: String,
    // Dropped before the body it is a child of (fields drop in order).
    stream: Option<wasip2::io::streams::InputStream>,
    _incoming: IncomingBody,
}

impl Streaming {
    /// The next piece of the body (at most 64 KiB), `None` at its end.
    pub fn chunk(&mut self) -> Result<Option<Vec<u8>>, Error> {
        let Some(stream) = &self.stream else {
            return Ok(None);
        };
        match stream.blocking_read(64 << 10) {
            Ok(chunk) => Ok(Some(chunk)),
            Err(StreamError::Closed) => {
                self.stream = None;
                Ok(None)
            }
            Err(e) => Err(Error {
                message: format!(
                    "{}: reading the response body: {}",
                    self.what,
                    stream_error(e)
                ),
                retryable: true,
            }),
        }
    }

    /// The rest of the body.
    pub fn read_to_end(&mut self) -> Result<Vec<u8>, Error> {
        let mut body = Vec::new();
        while let Some(chunk) = self.chunk()? {
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

impl Response {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, Error> {
        serde_json::from_slice(&self.body).map_err(|e| Error {
            message: format!(
                "the response body (status {}) is not the JSON expected: {e}",
                self.status
            ),
            retryable: false,
        })
    }
}

fn method(name: &str) -> Method {
    match name.to_ascii_uppercase().as_str() {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        "POST" => Method::Post,
        "PUT" => Method::Put,
        "DELETE" => Method::Delete,
        "CONNECT" => Method::Connect,
        "OPTIONS" => Method::Options,
        "TRACE" => Method::Trace,
        "PATCH" => Method::Patch,
        _ => Method::Other(name.to_string()),
    }
}

/// What the request needs of its URL, and its origin as a plan grants it.
struct Url {
    scheme: Scheme,
    authority: String,
    path: String,
    /// `scheme://host:port`, the port always written out.
    origin: String,
}

impl Url {
    fn parse(url: &str) -> Result<Url, Error> {
        let bad = |why: &str| Error {
            message: format!(
                "`{url}` is not a URL medic can send ({why}): expected http://host[:port]/path \
                 or https://..."
            ),
            retryable: false,
        };
        let (scheme, rest) = url.split_once("://").ok_or_else(|| bad("no scheme"))?;
        let (scheme, default_port) = match scheme.to_ascii_lowercase().as_str() {
            "http" => (Scheme::Http, 80),
            "https" => (Scheme::Https, 443),
            _ => return Err(bad("the scheme is not http or https")),
        };
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(end);
        let path = path.split('#').next().unwrap_or_default();
        let path = match path {
            "" => "/".to_string(),
            p if p.starts_with('?') => format!("/{p}"),
            p => p.to_string(),
        };
        if authority.is_empty() || authority.contains('@') {
            return Err(bad("no host, or a user in it"));
        }
        let has_port = match authority.rfind(']') {
            Some(close) => authority[close..].contains(':'),
            None => authority.contains(':'),
        };
        let name = if matches!(scheme, Scheme::Http) {
            "http"
        } else {
            "https"
        };
        let origin = if has_port {
            format!("{name}://{}", authority.to_ascii_lowercase())
        } else {
            format!("{name}://{}:{default_port}", authority.to_ascii_lowercase())
        };
        Ok(Url {
            scheme,
            authority: authority.to_string(),
            path,
            origin,
        })
    }
}

/// Writes `data` in chunks the stream accepts, then finishes the body.
fn write_body(body: OutgoingBody, data: &[u8]) -> Result<(), String> {
    {
        let stream = body
            .write()
            .map_err(|_| "the request body stream was already taken".to_string())?;
        // `blocking-write-and-flush` takes at most 4096 bytes a call.
        for chunk in data.chunks(4096) {
            stream
                .blocking_write_and_flush(chunk)
                .map_err(|e| format!("sending the request body: {}", stream_error(e)))?;
        }
    }
    OutgoingBody::finish(body, None).map_err(|code| format!("finishing the request body: {code:?}"))
}

fn stream_error(e: StreamError) -> String {
    match e {
        StreamError::Closed => "the stream was closed".to_string(),
        StreamError::LastOperationFailed(e) => e.to_debug_string(),
    }
}

/// The error medic (or the network) gave, worded for the step's log: a refused
/// origin is named with how to grant it.
fn describe(what: &str, origin: &str, code: &ErrorCode) -> Error {
    let (message, retryable) = match code {
        ErrorCode::HttpRequestDenied => (
            format!(
                "medic refused the request: origin `{origin}` is not granted to this plugin; \
                 add `{origin}` to the step's `grants: {{ http: [...] }}`"
            ),
            false,
        ),
        ErrorCode::DestinationIpProhibited => (
            format!(
                "medic refused the request: origin `{origin}` now resolves to an address it did \
                 not resolve to when the call began (medic's log names both); retry once its \
                 DNS is settled"
            ),
            true,
        ),
        ErrorCode::InternalError(Some(message)) => (message.clone(), false),
        ErrorCode::DnsTimeout
        | ErrorCode::DnsError(_)
        | ErrorCode::DestinationNotFound
        | ErrorCode::DestinationUnavailable
        | ErrorCode::DestinationIpUnroutable
        | ErrorCode::ConnectionRefused
        | ErrorCode::ConnectionTerminated
        | ErrorCode::ConnectionTimeout
        | ErrorCode::ConnectionReadTimeout
        | ErrorCode::ConnectionWriteTimeout
        | ErrorCode::ConnectionLimitReached
        | ErrorCode::HttpResponseIncomplete
        | ErrorCode::HttpResponseTimeout => (format!("{origin}: {code:?}"), true),
        other => (format!("{origin}: {other:?}"), false),
    };
    Error {
        message: format!("{what}: {message}"),
        retryable,
    }
}
