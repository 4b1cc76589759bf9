//! A real `medic serve` on a free port of 127.0.0.1, and plain HTTP to check its
//! state from outside (independently of the `medic --server` client under test).

use std::time::Duration;

use serde_json::Value;

use crate::medic::Medic;
use crate::process::Running;
use crate::wait::poll_until;

pub struct Server {
    pub running: Running,
    url: String,
    http: ureq::Agent,
}

impl Server {
    /// Starts `medic serve` on the test's data dir and waits for its address.
    // When `medic serve` requires tokens by default (issue 4, auth), tests that are
    // not about auth start it with `--no-auth` here.
    pub fn start(medic: &Medic) -> Server {
        Server::start_at(medic, "127.0.0.1:0")
    }

    /// Like `start`, on `listen` (`HOST:PORT`): a restart where clients expect it.
    pub fn start_at(medic: &Medic, listen: &str) -> Server {
        let mut running = medic.spawn(["serve", "--listen", listen]);
        let url = running.wait_for_line(
            Duration::from_secs(30),
            "the `medic serving on` line",
            |l| {
                l.strip_prefix("medic serving on ")
                    .and_then(|rest| rest.split_whitespace().next())
                    .map(str::to_owned)
            },
        );
        let http = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        Server { running, url, http }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// GET `path`: (status, JSON body or the text as a JSON string).
    pub fn get(&self, path: &str) -> (u16, Value) {
        let mut resp = self
            .http
            .get(format!("{}{path}", self.url))
            .call()
            .unwrap_or_else(|e| panic!("GET {path} from medic serve: {e}"));
        let status = resp.status().as_u16();
        let text = resp.body_mut().read_to_string().expect("response body");
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// The run's view (`GET /v1/runs/{run}`).
    pub fn run(&self, run: &str) -> Value {
        let (status, view) = self.get(&format!("/v1/runs/{run}"));
        assert_eq!(status, 200, "GET /v1/runs/{run}: {view}");
        view
    }

    /// Every run the server has, newest first.
    pub fn runs(&self) -> Vec<Value> {
        let (status, list) = self.get("/v1/runs?limit=1000");
        assert_eq!(status, 200, "GET /v1/runs: {list}");
        list["runs"].as_array().cloned().unwrap_or_default()
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
            || check(&self.get(&format!("/v1/runs/{run}")).1),
            || self.describe(run),
        )
    }

    pub fn wait_status(&self, run: &str, status: &str) -> Value {
        self.wait_run(run, status, |v| {
            (v["run"]["status"] == status).then(|| v.clone())
        })
    }

    /// Waits until step `step` of `run` has status `status`.
    pub fn wait_step(&self, run: &str, step: &str, status: &str) -> Value {
        self.wait_run(run, &format!("step {step} {status}"), |v| {
            v["steps"]
                .as_array()?
                .iter()
                .any(|s| s["id"] == step && s["status"] == status)
                .then(|| v.clone())
        })
    }

    /// The run as the server has it and what the server printed: for failure messages.
    pub fn describe(&self, run: &str) -> String {
        format!(
            "--- run {run} at the server ---\n{}\n{}",
            self.get(&format!("/v1/runs/{run}")).1,
            self.running.describe()
        )
    }
}
