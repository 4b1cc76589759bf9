//! `medic serve` on a free port of 127.0.0.1, and HTTP clients of it that send a
//! token (or none), over plain HTTP or HTTPS trusting one test certificate.

use std::ops::Deref;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::{Medic, Running, poll_until};

/// A running `medic serve` and a client of it (the token it was started with).
pub struct Server {
    pub running: Running,
    pub base: String,
    client: Client,
}

/// One caller of the API: a base URL, an agent and the token sent, if any.
#[derive(Clone)]
pub struct Client {
    base: String,
    http: ureq::Agent,
    token: Option<String>,
}

/// A whole answer, for tests that check headers too.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub content_type: String,
    pub www_authenticate: Option<String>,
    pub location: Option<String>,
    /// The body as JSON, or as a JSON string if it is not JSON.
    pub body: Value,
}

impl Server {
    /// `medic serve --listen 127.0.0.1:0 ARGS...`; the client sends `token`.
    pub fn start(medic: &Medic, token: Option<&str>, args: &[&str]) -> Server {
        Server::start_with(medic, token, args, agent(None))
    }

    /// Like [`Server::start`] for a server with `--tls-cert`: the client trusts only
    /// the DER certificate `ca`.
    pub fn start_tls(medic: &Medic, token: Option<&str>, args: &[&str], ca: &[u8]) -> Server {
        Server::start_with(medic, token, args, agent(Some(ca)))
    }

    /// `medic serve --no-auth` on a free port: for tests about something else than
    /// auth (a `medic --server` client, the OpenAPI document).
    pub fn open(medic: &Medic) -> Server {
        Server::start(medic, None, &["--no-auth"])
    }

    /// Like [`Server::open`], on `listen` (`HOST:PORT`): a restart where clients
    /// expect it.
    pub fn open_at(medic: &Medic, listen: &str) -> Server {
        Server::start_on(medic, listen, None, &["--no-auth"], agent(None))
    }

    fn start_with(medic: &Medic, token: Option<&str>, args: &[&str], http: ureq::Agent) -> Server {
        Server::start_on(medic, "127.0.0.1:0", token, args, http)
    }

    /// `medic serve` as deployed (tokens required), its client holding a fresh admin
    /// token: for tests of what routes do rather than who may call them.
    pub fn admin(medic: &Medic) -> Server {
        let token = medic.create_token("test-admin", "admin");
        Server::start(medic, Some(&token), &[])
    }

    /// Like [`Server::admin`], with `plugin_dirs` as the only plugin dirs (installs go
    /// to the first) instead of the built plugins.
    pub fn admin_with_plugin_dirs(medic: &Medic, plugin_dirs: &[&Path]) -> Server {
        let token = medic.create_token("test-admin", "admin");
        let cmd = medic.command_with_plugin_dirs(plugin_dirs, ["serve", "--listen", "127.0.0.1:0"]);
        Server::started(medic.spawn_command(cmd), Some(&token), agent(None))
    }

    /// Like [`Server::open`] (`--no-auth`), with `plugin_dirs` as the only plugin dirs.
    pub fn open_with_plugin_dirs(medic: &Medic, plugin_dirs: &[&Path]) -> Server {
        let cmd = medic.command_with_plugin_dirs(
            plugin_dirs,
            ["serve", "--listen", "127.0.0.1:0", "--no-auth"],
        );
        Server::started(medic.spawn_command(cmd), None, agent(None))
    }

    fn start_on(
        medic: &Medic,
        listen: &str,
        token: Option<&str>,
        args: &[&str],
        http: ureq::Agent,
    ) -> Server {
        let mut all = vec!["serve", "--listen", listen];
        all.extend_from_slice(args);
        Server::started(medic.spawn(all), token, http)
    }

    fn started(mut running: Running, token: Option<&str>, http: ureq::Agent) -> Server {
        let base = running.wait_for_line(
            Duration::from_secs(30),
            "the `medic serving on` line",
            |l| {
                l.strip_prefix("medic serving on ")
                    .and_then(|rest| rest.split_whitespace().next())
                    .map(str::to_owned)
            },
        );
        let client = Client {
            base: base.clone(),
            http,
            token: token.map(str::to_owned),
        };
        Server {
            running,
            base,
            client,
        }
    }

    /// The token this server's client sends, if any.
    pub fn token(&self) -> Option<&str> {
        self.client.token.as_deref()
    }

    /// A client of this server that sends `token` (none: no Authorization header).
    pub fn client(&self, token: Option<&str>) -> Client {
        Client {
            token: token.map(str::to_owned),
            ..self.client.clone()
        }
    }

    /// `http://127.0.0.1:PORT` (or https).
    pub fn url(&self) -> &str {
        &self.base
    }

    /// GET `path`: (status, JSON body or the text as a JSON string).
    pub fn get_json(&self, path: &str) -> (u16, Value) {
        let reply = self.call("GET", path, None);
        (reply.status, reply.body)
    }

    /// The run's view (`GET /v1/runs/{run}`).
    pub fn run(&self, run: &str) -> Value {
        let (status, view) = self.get_json(&format!("/v1/runs/{run}"));
        assert_eq!(status, 200, "GET /v1/runs/{run}: {view}");
        view
    }

    /// Every run the server has, newest first.
    pub fn runs(&self) -> Vec<Value> {
        let (status, list) = self.get_json("/v1/runs?limit=1000");
        assert_eq!(status, 200, "GET /v1/runs: {list}");
        list["runs"].as_array().cloned().unwrap_or_default()
    }

    /// Polls the run until its status is `status`; returns its view.
    pub fn wait_status(&self, run: &str, status: &str) -> Value {
        self.wait_run(run, status, |v| {
            (v["run"]["status"] == status).then(|| v.clone())
        })
    }

    /// Waits until step `step` of `run` has status `status`; returns the run's view.
    pub fn wait_step(&self, run: &str, step: &str, status: &str) -> Value {
        self.wait_run(run, &format!("step {step} {status}"), |v| {
            v["steps"]
                .as_array()?
                .iter()
                .any(|s| s["id"] == step && s["status"] == status)
                .then(|| v.clone())
        })
    }

    /// Polls the run until `check` accepts its view.
    pub fn wait_run<T>(
        &self,
        run: &str,
        what: &str,
        mut check: impl FnMut(&Value) -> Option<T>,
    ) -> T {
        poll_until(
            Duration::from_secs(30),
            &format!("run {run}: {what}"),
            || check(&self.get_json(&format!("/v1/runs/{run}")).1),
            || self.describe(run),
        )
    }

    /// The run as the server has it and what the server printed: for failure messages.
    pub fn describe(&self, run: &str) -> String {
        format!(
            "--- run {run} at the server ---\n{}\n{}",
            self.get_json(&format!("/v1/runs/{run}")).1,
            self.running.describe()
        )
    }
}

impl Deref for Server {
    type Target = Client;

    fn deref(&self) -> &Client {
        &self.client
    }
}

impl Client {
    /// Any method, with a JSON body or none.
    pub fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Reply {
        let uri = format!("{}{path}", self.base);
        let mut req = ureq::http::Request::builder().method(method).uri(uri);
        if let Some(token) = &self.token {
            req = req.header("Authorization", format!("Bearer {token}"));
        }
        let result = match body {
            Some(body) => self.http.run(
                req.header("content-type", "application/json")
                    .body(body.to_string())
                    .expect("a request"),
            ),
            None => self.http.run(req.body(()).expect("a request")),
        };
        reply(result)
    }

    pub fn post(&self, path: &str, headers: &[(&str, &str)], body: &Value) -> (u16, String, Value) {
        let mut req = self.http.post(format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            req = req.header("Authorization", &format!("Bearer {token}"));
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        reply(req.send_json(body)).into()
    }

    /// POSTs `body` as is, with `content_type`.
    pub fn post_bytes(&self, path: &str, content_type: &str, body: &[u8]) -> (u16, String, Value) {
        let mut req = self
            .http
            .post(format!("{}{path}", self.base))
            .content_type(content_type);
        if let Some(token) = &self.token {
            req = req.header("Authorization", &format!("Bearer {token}"));
        }
        reply(req.send(body)).into()
    }

    /// Like `post_bytes`, with extra request headers.
    pub fn post_bytes_with(
        &self,
        path: &str,
        content_type: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> (u16, String, Value) {
        let mut req = self
            .http
            .post(format!("{}{path}", self.base))
            .content_type(content_type);
        if let Some(token) = &self.token {
            req = req.header("Authorization", &format!("Bearer {token}"));
        }
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        reply(req.send(body)).into()
    }

    /// POSTs JSON and returns the reply with its `Location` header.
    pub fn post_located(&self, path: &str, body: &Value) -> (u16, Value, Option<String>) {
        let reply = self.call("POST", path, Some(body));
        (reply.status, reply.body, reply.location)
    }

    pub fn post_raw(&self, path: &str, body: &str) -> (u16, String, Value) {
        let mut req = self
            .http
            .post(format!("{}{path}", self.base))
            .content_type("application/json");
        if let Some(token) = &self.token {
            req = req.header("Authorization", &format!("Bearer {token}"));
        }
        reply(req.send(body)).into()
    }

    pub fn get(&self, path: &str) -> (u16, String, Value) {
        self.call("GET", path, None).into()
    }

    /// The run's SSE stream, read to its end (the server ends it when the run ends).
    pub fn events(&self, run: &str, last_event_id: Option<&str>) -> Vec<(String, String, Value)> {
        let mut req = self.http.get(format!("{}/v1/runs/{run}/events", self.base));
        if let Some(token) = &self.token {
            req = req.header("Authorization", &format!("Bearer {token}"));
        }
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
}

impl From<Reply> for (u16, String, Value) {
    fn from(r: Reply) -> Self {
        (r.status, r.content_type, r.body)
    }
}

/// Status codes are what these tests check, so they are not errors to ureq. With
/// `ca`, HTTPS trusts that certificate alone.
fn agent(ca: Option<&[u8]>) -> ureq::Agent {
    let mut config = ureq::Agent::config_builder().http_status_as_error(false);
    if let Some(ca) = ca {
        let roots =
            ureq::tls::RootCerts::new_with_certs(
                &[ureq::tls::Certificate::from_der(ca).to_owned()],
            );
        config = config.tls_config(ureq::tls::TlsConfig::builder().root_certs(roots).build());
    }
    config.build().into()
}

fn reply(r: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Reply {
    let mut resp = r.expect("HTTP request to medic serve");
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let content_type = header("content-type").unwrap_or_default();
    let www_authenticate = header("www-authenticate");
    let location = header("location");
    let status = resp.status().as_u16();
    let text = resp.body_mut().read_to_string().expect("response body");
    Reply {
        status,
        content_type,
        www_authenticate,
        location,
        body: serde_json::from_str(&text).unwrap_or(Value::String(text)),
    }
}
