//! Requests to etcd's v3 JSON gateway (`POST /v3/...` with JSON bodies, on the client
//! port) through medic's `wasi:http`, and what its answers mean: gRPC status codes in
//! an error body become retryable or permanent failures that name the endpoint.

use std::time::Duration;

use medic_sdk::{Failure, Value};
use serde::Deserialize;

/// How long a quick request (status, lists, health) may wait to connect or for data:
/// a member that takes longer is as good as down for a recovery plan.
const QUICK: Duration = Duration::from_secs(30);

/// Where and how to reach one member: its client URL and the optional token.
pub struct Endpoint {
    /// `scheme://host:port`, no trailing slash.
    pub url: String,
    token: Option<String>,
}

impl Endpoint {
    /// `token_secret` names a granted secret holding an etcd auth token (sent as
    /// `Authorization`); without it, the operator may attach one by configuration.
    pub fn new(url: &str, token_secret: Option<&str>) -> Result<Endpoint, Failure> {
        let url = url.trim_end_matches('/').to_string();
        if !(url.starts_with("http://") || url.starts_with("https://"))
            || url
                .split("://")
                .nth(1)
                .is_some_and(|rest| rest.contains('/'))
        {
            return Err(Failure::permanent(format!(
                "endpoint `{url}` is not an etcd client URL: expected http://HOST:PORT or \
                 https://HOST:PORT (no path)"
            )));
        }
        let token = match token_secret {
            Some(name) => Some(medic_sdk::secret(name)?.trim().to_string()),
            None => None,
        };
        Ok(Endpoint { url, token })
    }

    /// `POST {url}{path}` with `body`; the answer's JSON, or a failure.
    pub fn post(&self, path: &str, body: &Value) -> Result<Value, Failure> {
        let response = self.send("POST", path, Some(body), Some(QUICK))?;
        self.answer(path, response.0, &response.1)
    }

    /// Like `post`, for a request that may take long (a defragment of a large
    /// backend): bounded by the step's timeout only.
    pub fn post_slow(&self, path: &str, body: &Value) -> Result<Value, Failure> {
        let response = self.send("POST", path, Some(body), None)?;
        self.answer(path, response.0, &response.1)
    }

    /// `GET {url}{path}`: the status and body, whatever the status.
    pub fn get(&self, path: &str) -> Result<(u16, Vec<u8>), Failure> {
        self.send("GET", path, None, Some(QUICK))
    }

    /// What a gateway answer means: 200 and JSON, or an error named by its gRPC code.
    pub fn answer(&self, path: &str, status: u16, body: &[u8]) -> Result<Value, Failure> {
        if status == 200 {
            return serde_json::from_slice(body).map_err(|e| {
                Failure::permanent(format!(
                    "etcd at {}{path} answered 200 with a body that is not JSON ({e}); is \
                     this an etcd 3.4+ client URL?",
                    self.url
                ))
            });
        }
        Err(self.error(path, status, body))
    }

    fn error(&self, path: &str, status: u16, body: &[u8]) -> Failure {
        #[derive(Deserialize)]
        struct GatewayError {
            #[serde(default)]
            message: String,
            #[serde(default)]
            error: String,
            #[serde(default)]
            code: i64,
        }
        let text = String::from_utf8_lossy(body);
        let Ok(e) = serde_json::from_slice::<GatewayError>(body) else {
            let advice = if status == 404 {
                "; is this an etcd 3.4+ client URL with the v3 gateway (not a peer URL)?"
            } else {
                ""
            };
            let message = format!(
                "etcd at {}{path} answered HTTP {status}: {}{advice}",
                self.url,
                text.chars().take(300).collect::<String>()
            );
            return if status >= 500 {
                Failure::retryable(message)
            } else {
                Failure::permanent(message)
            };
        };
        let message = if e.message.is_empty() {
            e.error
        } else {
            e.message
        };
        // gRPC codes: 4 deadline exceeded, 8 resource exhausted, 10 aborted,
        // 14 unavailable (no leader, stopping): another attempt may see a settled cluster.
        let retryable = matches!(e.code, 4 | 8 | 10 | 14) || status == 503;
        let advice = if e.code == 14 {
            "; the member has no leader or is stopping: check the cluster's quorum"
        } else if e.code == 7 || message.contains("permission denied") {
            "; the token's user lacks the permission (maintenance needs etcd's root role)"
        } else if e.code == 16 || message.starts_with("auth:") {
            "; etcd has auth enabled: give the action a valid token (`token_secret`, a granted \
             secret) or configure the origin's `Authorization` in medic.toml \
             ([[http.credentials]]); simple tokens expire after 5 minutes"
        } else {
            ""
        };
        let message = format!(
            "etcd at {}{path} refused (gRPC code {}): {message}{advice}",
            self.url, e.code
        );
        if retryable {
            Failure::retryable(message)
        } else {
            Failure::permanent(message)
        }
    }

    /// Sends a request and reads the whole answer: its status and body.
    pub fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        timeout: Option<Duration>,
    ) -> Result<(u16, Vec<u8>), Failure> {
        let mut answer = self.open(method, path, body, timeout)?;
        let mut all = Vec::new();
        while let Some(chunk) = answer.body.chunk()? {
            all.extend_from_slice(&chunk);
        }
        Ok((answer.status, all))
    }

    /// Sends a request; the answer's body is read chunk by chunk (a snapshot).
    /// `timeout` bounds connecting and each wait for data; `None`: the step's timeout.
    #[cfg(target_arch = "wasm32")]
    pub fn open(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        timeout: Option<Duration>,
    ) -> Result<Answer, Failure> {
        use medic_sdk::http::Request;
        let mut request = Request::new(method, &format!("{}{path}", self.url));
        if let Some(token) = &self.token {
            request = request.header("authorization", token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        if let Some(timeout) = timeout {
            request = request.timeout(timeout);
        }
        let streaming = request.open().map_err(|e| self.unreachable(e))?;
        Ok(Answer {
            status: streaming.status,
            body: Body {
                inner: streaming,
                url: self.url.clone(),
            },
        })
    }

    #[cfg(not(target_arch = "wasm32"))]
    pub fn open(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        timeout: Option<Duration>,
    ) -> Result<Answer, Failure> {
        let _ = (body, timeout, &self.token);
        Err(Failure::permanent(format!(
            "{method} {}{path}: HTTP needs the medic host (a wasm32 build)",
            self.url
        )))
    }

    #[cfg(target_arch = "wasm32")]
    fn unreachable(&self, e: medic_sdk::http::Error) -> Failure {
        let advice = if e.retryable {
            "; is etcd running and listening on that client URL?"
        } else {
            ""
        };
        let message = format!("etcd at {}: {}{advice}", self.url, e.message);
        if e.retryable {
            Failure::retryable(message)
        } else {
            Failure::permanent(message)
        }
    }
}

/// An answer whose body has not been read yet.
pub struct Answer {
    pub status: u16,
    pub body: Body,
}

/// A response body, read as it arrives.
pub struct Body {
    #[cfg(target_arch = "wasm32")]
    inner: medic_sdk::http::Streaming,
    #[cfg(target_arch = "wasm32")]
    url: String,
}

impl Body {
    /// The next piece of the body, `None` at its end; a broken stream is retryable.
    #[cfg(target_arch = "wasm32")]
    pub fn chunk(&mut self) -> Result<Option<Vec<u8>>, Failure> {
        self.inner.chunk().map_err(|e| {
            Failure::retryable(format!(
                "etcd at {}: {}; the member may have restarted mid-answer",
                self.url, e.message
            ))
        })
    }

    #[cfg(not(target_arch = "wasm32"))]
    pub fn chunk(&mut self) -> Result<Option<Vec<u8>>, Failure> {
        Ok(None)
    }
}

/// A uint64 the gateway writes as a JSON string (or, rarely, a number).
pub fn u64_field(v: &Value, key: &str) -> u64 {
    match v.get(key) {
        Some(Value::String(s)) => s.parse().unwrap_or(0),
        Some(Value::Number(n)) => n.as_u64().unwrap_or(0),
        _ => 0,
    }
}

/// A member id as etcdctl's tables print it: lower-case hex.
pub fn hex(id: u64) -> String {
    format!("{id:x}")
}

/// A member id as written in a plan: decimal, or hex as etcdctl prints it (`8e9e05c52164694d`,
/// optionally `0x`-prefixed).
pub fn parse_member_id(text: &str) -> Result<u64, Failure> {
    let t = text.trim();
    let parsed = if let Some(h) = t.strip_prefix("0x") {
        u64::from_str_radix(h, 16).ok()
    } else if t.chars().all(|c| c.is_ascii_digit()) {
        t.parse().ok()
    } else {
        u64::from_str_radix(t, 16).ok()
    };
    parsed.ok_or_else(|| {
        Failure::permanent(format!(
            "member id `{text}` is neither decimal nor hex; take it from `etcd/member-list` \
             (`id`) or `etcdctl member list`"
        ))
    })
}
