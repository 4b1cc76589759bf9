//! The Consul agent's HTTP API as the actions see it: a granted origin, the optional
//! ACL token from a secret, one request, and Consul's answers turned into failures
//! that say what to do (403: the token; 5xx and refused connections: retry).

use medic_sdk::Failure;
use serde::de::DeserializeOwned;

/// The ACL token header Consul reads. medic's `[[http.credentials]]` can attach it on
/// the host side (preferred: the plugin never sees the token); `token_secret` is for
/// setups without that.
pub const TOKEN_HEADER: &str = "X-Consul-Token";

/// One agent: its origin (`http://127.0.0.1:8500`) and the secret holding its token.
pub struct Agent {
    base: String,
    token_secret: Option<String>,
}

/// A response: status, `X-Consul-Index` (if sent) and the body.
pub struct Reply {
    pub status: u16,
    pub index: Option<u64>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json<T: DeserializeOwned>(&self, what: &str) -> Result<T, Failure> {
        serde_json::from_slice(&self.body).map_err(|e| {
            Failure::permanent(format!(
                "{what}: Consul's answer is not the JSON expected ({e}): {}",
                snippet(&self.body)
            ))
        })
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).trim().to_string()
    }
}

impl Agent {
    pub fn new(address: &str, token_secret: Option<&str>) -> Result<Agent, Failure> {
        let base = address.trim_end_matches('/');
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(Failure::permanent(format!(
                "address `{address}` is not an HTTP origin: expected http://host:port (e.g. \
                 http://127.0.0.1:8500), the origin the plan grants in `grants.http`"
            )));
        }
        Ok(Agent {
            base: base.to_string(),
            token_secret: token_secret.map(str::to_string),
        })
    }

    /// Sends `method path_and_query` with `body`; any status comes back except 403
    /// and 5xx, which are failures (permanent and retryable).
    pub fn call(&self, method: &str, path: &str, body: Option<Vec<u8>>) -> Result<Reply, Failure> {
        let url = format!("{}{path}", self.base);
        let what = format!("{method} {url}");
        let token = match &self.token_secret {
            Some(name) => Some(medic_sdk::secret(name)?),
            None => None,
        };
        let reply = transport::send(method, &url, token.as_deref(), body)?;
        match reply.status {
            403 => Err(Failure::permanent(format!(
                "{what}: Consul answered 403 ({}): the ACL token is missing or lacks the \
                 permission. Grant the token on the host: in medic.toml add [[http.credentials]] \
                 with origin = \"{}\", header = \"{TOKEN_HEADER}\" and secret = the secret \
                 holding the token (or pass the action's `token_secret`)",
                reply.text(),
                self.base
            ))),
            s if s >= 500 => Err(Failure::retryable(format!(
                "{what}: Consul answered {s} ({}); it may have no leader yet: try again",
                reply.text()
            ))),
            _ => Ok(reply),
        }
    }

    /// Like `call`, but anything but 200 is a permanent failure with Consul's words.
    pub fn ok(&self, method: &str, path: &str, body: Option<Vec<u8>>) -> Result<Reply, Failure> {
        let reply = self.call(method, path, body)?;
        if reply.status != 200 {
            return Err(unexpected(method, path, &reply));
        }
        Ok(reply)
    }
}

pub fn unexpected(method: &str, path: &str, reply: &Reply) -> Failure {
    Failure::permanent(format!(
        "{method} {path}: Consul answered {} ({})",
        reply.status,
        reply.text()
    ))
}

fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    text.chars().take(200).collect()
}

/// Percent-encodes a path segment or query value; `/` is kept when `keep_slash`
/// (KV keys are paths).
pub fn encode(text: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b'/' if keep_slash => out.push('/'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(target_arch = "wasm32")]
mod transport {
    use super::Reply;
    use medic_sdk::Failure;
    use medic_sdk::http::Request;
    use std::time::Duration;

    pub fn send(
        method: &str,
        url: &str,
        token: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> Result<Reply, Failure> {
        let mut request = Request::new(method, url).timeout(Duration::from_secs(30));
        if let Some(token) = token {
            request = request.header(super::TOKEN_HEADER, token);
        }
        if let Some(body) = body {
            request = request.body(body);
        }
        let response = request.send().map_err(|e| {
            let hint = if e.retryable {
                " (is the Consul agent up and listening there?)"
            } else {
                ""
            };
            let message = format!("{}{hint}", e.message);
            if e.retryable {
                Failure::retryable(message)
            } else {
                Failure::permanent(message)
            }
        })?;
        let index = response
            .header("x-consul-index")
            .and_then(|v| v.trim().parse().ok());
        Ok(Reply {
            status: response.status,
            index,
            body: response.body,
        })
    }
}

/// Native builds (unit tests) have no wasi:http.
#[cfg(not(target_arch = "wasm32"))]
mod transport {
    use super::Reply;
    use medic_sdk::Failure;

    pub fn send(
        method: &str,
        url: &str,
        _token: Option<&str>,
        _body: Option<Vec<u8>>,
    ) -> Result<Reply, Failure> {
        Err(Failure::permanent(format!(
            "{method} {url}: no wasi:http outside a wasm32 guest"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_segments_and_keeps_kv_slashes() {
        assert_eq!(encode("web 1/x", false), "web%201%2Fx");
        assert_eq!(encode("app/config/db", true), "app/config/db");
        assert_eq!(encode("a&b=c", false), "a%26b%3Dc");
    }

    #[test]
    fn address_must_be_an_origin() {
        assert!(Agent::new("127.0.0.1:8500", None).is_err());
        assert!(Agent::new("http://127.0.0.1:8500/", None).is_ok());
    }
}
