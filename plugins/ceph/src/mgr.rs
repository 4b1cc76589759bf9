//! Requests to the Ceph manager's REST API, served by the mgr `dashboard` module
//! (`/api/...`, JSON, versioned by the `Accept` header), through medic's `wasi:http`.
//!
//! Why the dashboard and not the `restful` module: `restful` serves HTTPS only, with
//! a certificate the operator generates, and medic checks HTTPS origins against
//! Mozilla's roots; the dashboard serves plain HTTP too (`mgr/dashboard/ssl false`),
//! for an origin on loopback or behind the operator's TLS proxy.
//!
//! Logging in: `POST /api/auth` with the user and the password from a granted secret
//! gives a bearer token for the call's requests. Without a password secret, no token
//! is sent: the operator's `[[http.credentials]]` may attach `Authorization` instead.

use std::time::Duration;

use medic_sdk::{Failure, Value, json};

/// The API version every request asks for: Ceph 16's dashboard refuses a request
/// without one (415).
pub const ACCEPT: &str = "application/vnd.ceph.api.v1.0+json";

/// How long one request may wait to connect or for data.
const QUICK: Duration = Duration::from_secs(30);

/// The manager's REST API, logged in.
pub struct Mgr {
    /// `scheme://host:port`, no trailing slash.
    pub url: String,
    token: Option<String>,
}

/// Checks `url` is an origin (`http(s)://HOST:PORT`, no path): what plans grant.
pub fn origin(url: &str) -> Result<String, Failure> {
    let url = url.trim_end_matches('/').to_string();
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"));
    match rest {
        Some(rest) if !rest.is_empty() && !rest.contains('/') => Ok(url),
        _ => Err(Failure::permanent(format!(
            "api `{url}` is not the dashboard's URL: expected http://HOST:PORT or \
             https://HOST:PORT (no path), the mgr's `ceph mgr services` `dashboard` entry"
        ))),
    }
}

impl Mgr {
    /// Logs in as `user` with the password in the granted secret `password_secret`;
    /// without a secret, sends no token (the host may attach one).
    pub fn connect(url: &str, user: &str, password_secret: Option<&str>) -> Result<Mgr, Failure> {
        let mut mgr = Mgr {
            url: origin(url)?,
            token: None,
        };
        let Some(secret) = password_secret else {
            return Ok(mgr);
        };
        let password = medic_sdk::secret(secret)?;
        let password = password.trim_end_matches(['\r', '\n']);
        let (status, body) = mgr.send(
            "POST",
            "/api/auth",
            Some(&json!({"username": user, "password": password})),
        )?;
        if status == 400 || status == 401 {
            return Err(Failure::permanent(format!(
                "the Ceph dashboard at {} refused the login of user `{user}` with the password \
                 in secret `{secret}` (HTTP {status}: {}); check the secret's contents and the \
                 account (`ceph dashboard ac-user-show {user}`)",
                mgr.url,
                detail(&body)
            )));
        }
        let answer = mgr.answer("/api/auth", status, &body)?;
        let token = answer["token"].as_str().ok_or_else(|| {
            Failure::permanent(format!(
                "the Ceph dashboard at {}/api/auth answered without a token: {answer}",
                mgr.url
            ))
        })?;
        mgr.token = Some(format!("Bearer {token}"));
        Ok(mgr)
    }

    /// `GET {url}{path}`: the JSON answer.
    pub fn get(&self, path: &str) -> Result<Value, Failure> {
        let (status, body) = self.send("GET", path, None)?;
        self.answer(path, status, &body)
    }

    /// `PUT {url}{path}` with a JSON body: the JSON answer (`null` for an empty one).
    pub fn put(&self, path: &str, body: &Value) -> Result<Value, Failure> {
        let (status, answer) = self.send("PUT", path, Some(body))?;
        self.answer(path, status, &answer)
    }

    /// What an answer means: 2xx and JSON, or a failure naming the endpoint.
    pub fn answer(&self, path: &str, status: u16, body: &[u8]) -> Result<Value, Failure> {
        if (200..300).contains(&status) {
            if body.iter().all(u8::is_ascii_whitespace) {
                return Ok(Value::Null);
            }
            return serde_json::from_slice(body).map_err(|e| {
                Failure::permanent(format!(
                    "the Ceph dashboard at {}{path} answered {status} with a body that is not \
                     JSON ({e}); is this the mgr dashboard's URL?",
                    self.url
                ))
            });
        }
        let advice = match status {
            401 => {
                "; the request carried no valid token: give the action `password_secret` (a \
                 granted secret with the dashboard user's password) or attach `Authorization` \
                 for this origin in medic.toml ([[http.credentials]])"
            }
            403 => {
                "; the dashboard user's role lacks this permission (give it `cluster-manager` or `administrator`)"
            }
            404 => "; is this the mgr dashboard's URL (`ceph mgr services`)?",
            _ => "",
        };
        let message = format!(
            "the Ceph dashboard at {}{path} answered HTTP {status}: {}{advice}",
            self.url,
            detail(body)
        );
        // 5xx: the mgr may be failing over or busy; another attempt may find it settled.
        Err(if status >= 500 {
            Failure::retryable(message)
        } else {
            Failure::permanent(message)
        })
    }

    /// Sends a request and reads the whole answer: status and body.
    #[cfg(target_arch = "wasm32")]
    pub fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Vec<u8>), Failure> {
        use medic_sdk::http::Request;
        let mut request = Request::new(method, &format!("{}{path}", self.url))
            .header("accept", ACCEPT)
            .timeout(QUICK);
        if let Some(token) = &self.token {
            request = request.header("authorization", token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().map_err(|e| {
            // The host's message names the method and URL already.
            let message = if e.retryable {
                format!(
                    "Ceph mgr: {}; is the mgr running with the dashboard module enabled \
                     (`ceph mgr services` lists its URL)?",
                    e.message
                )
            } else {
                format!("Ceph mgr: {}", e.message)
            };
            if e.retryable {
                Failure::retryable(message)
            } else {
                Failure::permanent(message)
            }
        })?;
        Ok((response.status, response.body))
    }

    #[cfg(not(target_arch = "wasm32"))]
    pub fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Vec<u8>), Failure> {
        let _ = (body, QUICK, &self.token);
        Err(Failure::permanent(format!(
            "{method} {}{path}: HTTP needs the medic host (a wasm32 build)",
            self.url
        )))
    }
}

/// The dashboard's error text: the `detail` of its JSON error body, else the body.
pub fn detail(body: &[u8]) -> String {
    if let Ok(v) = serde_json::from_slice::<Value>(body)
        && let Some(d) = v["detail"].as_str()
    {
        return d.to_string();
    }
    String::from_utf8_lossy(body).chars().take(300).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_have_no_path() {
        assert_eq!(
            origin("http://127.0.0.1:8080/").unwrap(),
            "http://127.0.0.1:8080"
        );
        assert!(origin("http://127.0.0.1:8080/api").is_err());
        assert!(origin("127.0.0.1:8080").is_err());
    }

    #[test]
    fn error_detail_is_read_from_the_json_body() {
        assert_eq!(
            detail(
                br#"{"detail": "[errno -22] unrecognized flag 'x'", "code": "SendCommandError"}"#
            ),
            "[errno -22] unrecognized flag 'x'"
        );
        assert_eq!(detail(b"plain"), "plain");
    }
}
