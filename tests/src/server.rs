//! `medic serve` on a free port of 127.0.0.1 and a plain HTTP client for it: every
//! answer comes back as (status, content type, body as JSON or, if it is not JSON,
//! as a JSON string), so tests assert on status codes instead of treating them as
//! errors.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::medic::Medic;
use crate::process::Running;
use crate::wait::poll_until;

/// A running `medic serve` and its base URL.
pub struct Server {
    pub running: Running,
    pub base: String,
    http: ureq::Agent,
}

/// One answer: status, `Content-Type`, and the body (JSON, or the text as a string).
pub type Reply = (u16, String, Value);

impl Server {
    /// `medic serve` with the test's data dir and the built plugins.
    pub fn start(medic: &Medic) -> Server {
        Server::wait_started(medic.spawn(["serve", "--listen", "127.0.0.1:0"]))
    }

    /// `medic serve` whose plugin dirs are `plugin_dirs` only (installs go to the
    /// first), instead of the built plugins.
    pub fn start_with_plugin_dirs(medic: &Medic, plugin_dirs: &[&Path]) -> Server {
        let cmd = medic.command_with_plugin_dirs(plugin_dirs, ["serve", "--listen", "127.0.0.1:0"]);
        Server::wait_started(medic.spawn_command(cmd))
    }

    fn wait_started(mut running: Running) -> Server {
        let base = running.wait_for_line(
            Duration::from_secs(30),
            "the `medic serving on` line",
            |l| {
                l.strip_prefix("medic serving on ")
                    .and_then(|rest| rest.split_whitespace().next())
                    .map(str::to_owned)
            },
        );
        // Status codes are what these tests check, so they are not errors to ureq.
        let http = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        Server {
            running,
            base,
            http,
        }
    }

    pub fn post(&self, path: &str, headers: &[(&str, &str)], body: &Value) -> Reply {
        let mut req = self.http.post(format!("{}{path}", self.base));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        reply(req.send_json(body))
    }

    /// POSTs `body` as is, with `content_type`.
    pub fn post_bytes(&self, path: &str, content_type: &str, body: &[u8]) -> Reply {
        reply(
            self.http
                .post(format!("{}{path}", self.base))
                .content_type(content_type)
                .send(body),
        )
    }

    pub fn post_raw(&self, path: &str, body: &str) -> Reply {
        self.post_bytes(path, "application/json", body.as_bytes())
    }

    pub fn get(&self, path: &str) -> Reply {
        reply(self.http.get(format!("{}{path}", self.base)).call())
    }

    /// POSTs JSON and returns the reply with its `Location` header.
    pub fn post_located(&self, path: &str, body: &Value) -> (u16, Value, Option<String>) {
        let mut resp = self
            .http
            .post(format!("{}{path}", self.base))
            .send_json(body)
            .expect("HTTP request to medic serve");
        let status = resp.status().as_u16();
        let location = resp
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let text = resp.body_mut().read_to_string().expect("response body");
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
            location,
        )
    }

    /// The run's SSE stream, read to its end (the server ends it when the run ends).
    pub fn events(&self, run: &str, last_event_id: Option<&str>) -> Vec<(String, String, Value)> {
        let mut req = self.http.get(format!("{}/v1/runs/{run}/events", self.base));
        if let Some(id) = last_event_id {
            req = req.header("Last-Event-ID", id);
        }
        let mut resp = req.call().expect("SSE request");
        assert_eq!(resp.status().as_u16(), 200);
        let text = resp.body_mut().read_to_string().expect("SSE body");
        text.split("\n\n")
            .filter(|block| block.contains("data:"))
            .map(|block| {
                let field = |name: &str| {
                    block
                        .lines()
                        .find_map(|l| l.strip_prefix(name))
                        .map(|v| v.trim().to_owned())
                        .unwrap_or_default()
                };
                let data = serde_json::from_str(&field("data:")).expect("event data is JSON");
                (field("id:"), field("event:"), data)
            })
            .collect()
    }

    /// Polls `GET /v1/runs/{run}` until the run is `status`; returns its view.
    pub fn wait_status(&self, run: &str, status: &str) -> Value {
        poll_until(
            Duration::from_secs(30),
            &format!("run {run} {status}"),
            || {
                let (_, _, view) = self.get(&format!("/v1/runs/{run}"));
                (view["run"]["status"] == status).then_some(view)
            },
            || {
                format!(
                    "{}\n{}",
                    self.get(&format!("/v1/runs/{run}")).2,
                    self.running.describe()
                )
            },
        )
    }
}

fn reply(r: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Reply {
    let mut resp = r.expect("HTTP request to medic serve");
    let status = resp.status().as_u16();
    let ctype = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let text = resp.body_mut().read_to_string().expect("response body");
    (
        status,
        ctype,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}
