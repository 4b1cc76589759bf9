//! The consul plugin through the real `medic` binary, against a Consul agent's HTTP API.
//!
//! No Consul agent is installable on this machine, so by default the target is the
//! contract fixture `medic_tests::ConsulFixture` (tests/src/consul_fixture.rs), built
//! from Consul's published HTTP API documentation; the request and response shape of
//! every endpoint is cited there, and again below where a test relies on one:
//! - https://developer.hashicorp.com/consul/api-docs/agent#enable-maintenance-mode
//! - https://developer.hashicorp.com/consul/api-docs/agent/service#enable-maintenance-mode
//! - https://developer.hashicorp.com/consul/api-docs/agent/check#list-checks
//! - https://developer.hashicorp.com/consul/api-docs/agent#read-configuration
//! - https://developer.hashicorp.com/consul/api-docs/agent/service#register-service
//! - https://developer.hashicorp.com/consul/api-docs/agent/service#deregister-service
//! - https://developer.hashicorp.com/consul/api-docs/agent/service#get-service-configuration
//! - https://developer.hashicorp.com/consul/api-docs/health#list-checks-for-node
//! - https://developer.hashicorp.com/consul/api-docs/health#list-service-instances-for-service
//! - https://developer.hashicorp.com/consul/api-docs/kv#read-key and #create-update-key
//! - https://developer.hashicorp.com/consul/api-docs/snapshot#generate-snapshot and
//!   #restore-snapshot
//! - https://developer.hashicorp.com/consul/api-docs/status#get-raft-leader and
//!   #list-raft-peers
//! - https://developer.hashicorp.com/consul/api-docs/api-structure#authentication
//!   (X-Consul-Token; 403 for a missing or unknown token)
//!
//! With `CONSUL_HTTP_ADDR` set (and `CONSUL_HTTP_TOKEN` if its ACLs need one), the
//! same tests run against that real agent instead: `consul_target()` is the one place
//! that decides. Tests of what only the fixture can be made to do (demand a token we
//! choose, record the headers it received) say so and always use the fixture.

use std::time::Duration;

use medic_tests::{ConsulFixture, Finished, Medic, RunView, consul_call};
use serde_json::{Value, json};

use crate::exit;

/// The agent under test: a real one at `CONSUL_HTTP_ADDR`, else the contract fixture.
enum Target {
    Fixture(ConsulFixture),
    Real { url: String, token: Option<String> },
}

fn consul_target() -> Target {
    match std::env::var("CONSUL_HTTP_ADDR") {
        Ok(addr) if !addr.trim().is_empty() => {
            let url = if addr.starts_with("http://") || addr.starts_with("https://") {
                addr.trim_end_matches('/').to_string()
            } else {
                format!("http://{addr}")
            };
            let token = std::env::var("CONSUL_HTTP_TOKEN")
                .ok()
                .filter(|t| !t.is_empty());
            Target::Real { url, token }
        }
        _ => Target::Fixture(ConsulFixture::start()),
    }
}

impl Target {
    fn url(&self) -> String {
        match self {
            Target::Fixture(f) => f.url().to_string(),
            Target::Real { url, .. } => url.clone(),
        }
    }

    fn token(&self) -> Option<&str> {
        match self {
            Target::Fixture(_) => None,
            Target::Real { token, .. } => token.as_deref(),
        }
    }

    /// A request to the agent from the test itself (to set up and to check state).
    fn api(&self, method: &str, path: &str, body: &[u8]) -> (u16, Vec<u8>) {
        consul_call(&self.url(), method, path, self.token(), body)
    }

    fn json(&self, path: &str) -> Value {
        let (status, body) = self.api("GET", path, b"");
        assert_eq!(
            status,
            200,
            "GET {path}: {}",
            String::from_utf8_lossy(&body)
        );
        serde_json::from_slice(&body).expect("JSON from the agent")
    }

    /// The agent's node name (GET /v1/agent/self: Config.NodeName).
    fn node(&self) -> String {
        self.json("/v1/agent/self")["Config"]["NodeName"]
            .as_str()
            .expect("Config.NodeName")
            .to_string()
    }

    /// Whether the agent carries the check `id` (GET /v1/agent/checks: CheckID -> check).
    fn has_check(&self, id: &str) -> bool {
        self.json("/v1/agent/checks").get(id).is_some()
    }

    fn registered(&self, service_id: &str) -> bool {
        self.api("GET", &format!("/v1/agent/service/{service_id}"), b"")
            .0
            == 200
    }

    /// Registers a test service instance directly (PUT /v1/agent/service/register).
    fn register(&self, id: &str, name: &str) {
        let body = json!({ "ID": id, "Name": name, "Port": 8080, "Tags": ["medic-test"] });
        let (status, text) = self.api(
            "PUT",
            "/v1/agent/service/register",
            body.to_string().as_bytes(),
        );
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&text));
    }

    fn deregister(&self, id: &str) {
        self.api("PUT", &format!("/v1/agent/service/deregister/{id}"), b"");
    }

    fn kv_put(&self, key: &str, value: &str) {
        let (status, _) = self.api("PUT", &format!("/v1/kv/{key}"), value.as_bytes());
        assert_eq!(status, 200);
    }

    /// The key's ModifyIndex, or None when absent (GET /v1/kv/:key).
    fn kv_index(&self, key: &str) -> Option<u64> {
        let (status, body) = self.api("GET", &format!("/v1/kv/{key}"), b"");
        (status == 200).then(|| {
            let v: Value = serde_json::from_slice(&body).unwrap();
            v[0]["ModifyIndex"].as_u64().unwrap()
        })
    }

    /// Leaves the agent as the test found it (matters for a real agent).
    fn cleanup(&self, services: &[&str], keys: &[&str]) {
        self.api("PUT", "/v1/agent/maintenance?enable=false", b"");
        for s in services {
            self.deregister(s);
        }
        for k in keys {
            self.api("DELETE", &format!("/v1/kv/{k}"), b"");
        }
    }
}

/// A medic whose medic.toml attaches the real agent's token (if any) on the host side.
fn medic_for(target: &Target) -> Medic {
    let medic = Medic::new();
    if let Some(token) = target.token() {
        write_credentials(&medic, &target.url(), token);
    }
    medic
}

/// medic.toml: a secrets dir with `consul-token`, attached as X-Consul-Token to `origin`.
fn write_credentials(medic: &Medic, origin: &str, token: &str) {
    let secrets = medic.data_dir().join("secrets");
    std::fs::create_dir_all(&secrets).unwrap();
    std::fs::write(secrets.join("consul-token"), format!("{token}\n")).unwrap();
    std::fs::write(
        medic.data_dir().join("medic.toml"),
        format!(
            "secrets_dir = \"secrets\"\n\n[[http.credentials]]\norigin = \"{origin}\"\n\
             header = \"X-Consul-Token\"\nsecret = \"consul-token\"\n"
        ),
    )
    .unwrap();
}

/// A plan of `steps` (JSON objects, run one after the other), the consul plugin
/// granted `origin` (and `secrets`).
fn plan(origin: &str, secrets: &[&str], steps: Value) -> String {
    let mut previous: Option<String> = None;
    let steps: Vec<Value> = steps
        .as_array()
        .unwrap()
        .iter()
        .cloned()
        .map(|mut s| {
            if let Some(before) = previous.replace(s["id"].as_str().unwrap().to_string()) {
                s["needs"] = json!([before]);
            }
            s
        })
        .collect();
    json!({
        "apiVersion": "medic/v1",
        "kind": "RecoveryPlan",
        "metadata": { "name": "consul-test" },
        "plugins": { "consul": { "use": "consul@0.1",
                                  "grants": { "http": [origin], "secrets": secrets } } },
        "steps": steps,
    })
    .to_string()
}

/// One step `uses: consul/ACTION` with `with`, its address set to `address`.
fn step(id: &str, action: &str, address: &str, mut with: Value) -> Value {
    with["address"] = json!(address);
    json!({ "id": id, "uses": format!("consul/{action}"), "with": with })
}

/// Runs `plan` with `medic run`; the run's id, what medic printed and the run.
fn run(medic: &Medic, name: &str, plan: &str) -> (Finished, RunView) {
    let path = medic.write(name, plan);
    let out = medic.run(["run".as_ref(), path.as_os_str()]);
    let id = out
        .stdout
        .lines()
        .chain(out.stderr.lines())
        .find_map(|l| {
            let mut w = l.split_whitespace();
            match (w.next(), w.next(), w.next()) {
                (Some("run"), Some(id), Some(s)) if s.starts_with("started") => {
                    Some(id.to_string())
                }
                _ => None,
            }
        })
        .unwrap_or_else(|| panic!("no `run ID started` line\n{out}"));
    let view = medic.show(&id);
    (out, view)
}

fn output<'a>(view: &'a RunView, step: &str) -> &'a Value {
    &view.step(step).output
}

fn error_text(view: &RunView, step: &str) -> String {
    view.step(step).error.to_string()
}

#[test]
fn consul_each_action_against_the_agent() {
    let target = consul_target();
    let url = target.url();
    let node = target.node();
    let medic = medic_for(&target);
    target.register("medic-db-1", "medic-db");
    target.cleanup(&["medic-web-1"], &["medic/test/key"]);

    let steps = json!([
        step("leader", "leader", &url, json!({ "require": true })),
        step("peers", "peers", &url, json!({})),
        step(
            "node-on",
            "node-maintenance-on",
            &url,
            json!({ "reason": "medic test" })
        ),
        step(
            "node-health",
            "node-health",
            &url,
            json!({ "node": node, "require": "maintenance" })
        ),
        step("node-off", "node-maintenance-off", &url, json!({})),
        step(
            "svc-on",
            "service-maintenance-on",
            &url,
            json!({ "service_id": "medic-db-1" })
        ),
        step(
            "svc-drained",
            "service-health",
            &url,
            json!({ "service": "medic-db", "node": node, "require": "drained" })
        ),
        step(
            "svc-off",
            "service-maintenance-off",
            &url,
            json!({ "service_id": "medic-db-1" })
        ),
        step(
            "svc-passing",
            "service-health",
            &url,
            json!({ "service": "medic-db", "require": "passing" })
        ),
        step(
            "register",
            "register-service",
            &url,
            json!({ "service_id": "medic-web-1", "name": "medic-web", "port": 9090,
                     "tags": ["blue"], "meta": { "owner": "medic" } })
        ),
        step(
            "deregister",
            "deregister-service",
            &url,
            json!({ "service_id": "medic-db-1" })
        ),
        step(
            "deregister-again",
            "deregister-service",
            &url,
            json!({ "service_id": "medic-db-1" })
        ),
        step(
            "kv-absent",
            "kv-get",
            &url,
            json!({ "key": "medic/test/key" })
        ),
        step(
            "kv-create",
            "kv-put",
            &url,
            json!({ "key": "medic/test/key", "value": "v1", "cas": 0 })
        ),
        step("kv-get", "kv-get", &url, json!({ "key": "medic/test/key" })),
        step(
            "kv-cas",
            "kv-put",
            &url,
            json!({ "key": "medic/test/key", "value": "v2",
                     "cas": "${{ steps['kv-get'].output.modify_index }}" })
        ),
        step(
            "snapshot",
            "snapshot-save",
            &url,
            json!({ "artifact": "before.snap" })
        ),
        step(
            "kv-after",
            "kv-put",
            &url,
            json!({ "key": "medic/test/key", "value": "v3" })
        ),
        step(
            "restore",
            "snapshot-restore",
            &url,
            json!({ "artifact": "before.snap" })
        ),
        step(
            "kv-restored",
            "kv-get",
            &url,
            json!({ "key": "medic/test/key" })
        ),
    ]);
    let (out, view) = run(&medic, "actions.yaml", &plan(&url, &[], steps));
    let ctx = || format!("{out}\n{}", view.pretty());
    out.expect_code(exit::SUCCEEDED, ctx);

    assert_eq!(output(&view, "leader")["has_leader"], true, "{}", ctx());
    assert!(
        output(&view, "peers")["count"].as_u64().unwrap() >= 1,
        "{}",
        ctx()
    );
    assert_eq!(output(&view, "node-on")["maintenance"], true);
    assert_eq!(
        output(&view, "node-health")["maintenance"],
        true,
        "{}",
        ctx()
    );
    assert_eq!(
        output(&view, "node-health")["status"],
        "critical",
        "{}",
        ctx()
    );
    assert!(
        !target.has_check("_node_maintenance"),
        "maintenance is off again"
    );
    assert_eq!(output(&view, "svc-drained")["passing"], 0, "{}", ctx());
    assert_eq!(output(&view, "svc-passing")["passing"], 1, "{}", ctx());
    assert!(!target.has_check("_service_maintenance:medic-db-1"));
    assert!(
        target.registered("medic-web-1"),
        "register-service registered it"
    );
    assert!(
        !target.registered("medic-db-1"),
        "deregister-service removed it"
    );
    assert_eq!(output(&view, "deregister")["existed"], true);
    assert_eq!(
        output(&view, "deregister-again")["existed"],
        false,
        "deregistering an unknown ID is already done\n{}",
        ctx()
    );
    assert_eq!(output(&view, "kv-absent")["exists"], false);
    assert_eq!(output(&view, "kv-get")["value"], "v1");
    assert_eq!(output(&view, "kv-cas")["value"], "v2", "{}", ctx());
    assert!(output(&view, "snapshot")["bytes"].as_u64().unwrap() > 0);
    let artifact = medic
        .data_dir()
        .join("artifacts")
        .join(&view.id)
        .join("before.snap");
    assert!(
        artifact.is_file(),
        "the snapshot is a run artifact at {}",
        artifact.display()
    );
    assert_eq!(
        output(&view, "kv-restored")["value"],
        "v2",
        "restoring the snapshot brings back the value it held\n{}",
        ctx()
    );

    // What went over the wire matches the documented requests.
    if let Target::Fixture(f) = &target {
        let requests = f.requests();
        let find = |method: &str, path: &str| {
            requests
                .iter()
                .find(|r| r.method == method && r.path == path && !r.query.contains("enable=false"))
                .unwrap_or_else(|| panic!("no {method} {path} in {requests:#?}"))
        };
        let on = find("PUT", "/v1/agent/maintenance");
        assert!(on.query.contains("enable=true") && on.query.contains("reason=medic%20test"));
        let reg = find("PUT", "/v1/agent/service/register");
        let body: Value = serde_json::from_slice(&reg.body).unwrap();
        assert_eq!(
            body,
            json!({ "ID": "medic-web-1", "Name": "medic-web", "Port": 9090, "Tags": ["blue"],
                    "Meta": { "owner": "medic" } })
        );
        assert!(requests.iter().any(|r| r.method == "PUT"
            && r.path == "/v1/kv/medic/test/key"
            && r.query == "cas=0"
            && r.body == b"v1"));
        assert!(
            requests
                .iter()
                .all(|r| r.header("x-consul-token").is_none()),
            "no token configured, none sent"
        );
    }
    target.cleanup(&["medic-web-1", "medic-db-1"], &["medic/test/key"]);
}

/// The node-isolate plan's params for `target`, with the service `medic-app` on it.
fn isolate_args(target: &Target, plan: &std::path::Path) -> Vec<String> {
    vec![
        "run".into(),
        plan.display().to_string(),
        "--param".into(),
        format!("address={}", target.url()),
        "--param".into(),
        format!("node={}", target.node()),
        "--param".into(),
        "service=medic-app".into(),
        "--param".into(),
        "reason=kernel patch".into(),
    ]
}

fn node_isolate_plan() -> std::path::PathBuf {
    medic_tests::repo_root().join("plans/consul/node-isolate.yaml")
}

/// Runs node-isolate up to its approval; returns the running medic and the run id.
fn isolate_to_the_gate(medic: &Medic, target: &Target) -> (medic_tests::Running, String) {
    target.cleanup(&[], &[]);
    target.register("medic-app-1", "medic-app");
    let mut running = medic.spawn(isolate_args(target, &node_isolate_plan()));
    let run = running.run_id();
    medic.wait_for_run(
        &run,
        Duration::from_secs(60),
        "step `work` waiting for approval",
        |v| (v.step_status("work") == Some("approval")).then_some(()),
        || running.describe(),
    );
    assert!(
        target.has_check("_node_maintenance"),
        "at the gate the node is in maintenance"
    );
    (running, run)
}

#[test]
fn consul_node_isolate_plan_end_to_end_with_approval() {
    let target = consul_target();
    let medic = medic_for(&target);
    let (running, run) = isolate_to_the_gate(&medic, &target);
    let view = medic.show(&run);
    assert_eq!(
        view.step("drained").output["passing"],
        0,
        "{}",
        view.pretty()
    );
    assert_eq!(view.step("node-in-maintenance").output["maintenance"], true);

    medic
        .run(["approve", &run, "work", "--comment", "patched"])
        .expect_code(0, || running.describe());
    let out = running.wait(Duration::from_secs(60));
    let ctx = || format!("{out}\n{}", medic.describe_run(&run));
    out.expect_code(exit::SUCCEEDED, ctx);
    let view = medic.show(&run);
    assert_eq!(view.step("verify").output["status"], "passing", "{}", ctx());
    assert_eq!(view.step("serving").output["passing"], 1, "{}", ctx());
    assert!(!target.has_check("_node_maintenance"), "maintenance is off");
    if let Target::Fixture(f) = &target {
        let toggles: Vec<String> = f
            .requests()
            .iter()
            .filter(|r| r.path == "/v1/agent/maintenance")
            .map(|r| r.query.clone())
            .collect();
        assert_eq!(
            toggles,
            vec!["enable=true&reason=kernel%20patch", "enable=false"],
            "one maintenance on, one off"
        );
    }
    target.cleanup(&["medic-app-1"], &[]);
}

#[test]
fn consul_node_isolate_rejected_rolls_back_turning_maintenance_off() {
    let target = consul_target();
    let medic = medic_for(&target);
    let (running, run) = isolate_to_the_gate(&medic, &target);

    medic
        .run([
            "approve",
            &run,
            "work",
            "--reject",
            "--comment",
            "not today",
        ])
        .expect_code(0, || running.describe());
    let out = running.wait(Duration::from_secs(60));
    let ctx = || format!("{out}\n{}", medic.describe_run(&run));
    out.expect_code(exit::ROLLED_BACK, ctx);
    let view = medic.show(&run);
    assert!(
        !view.attempts_of("maintenance-on", true).is_empty(),
        "the undo of maintenance-on ran\n{}",
        ctx()
    );
    assert!(
        view.find_step("maintenance-off")
            .is_none_or(|s| s.status != "succeeded"),
        "the forward maintenance-off never ran: the undo did it\n{}",
        ctx()
    );
    assert!(
        !target.has_check("_node_maintenance"),
        "the rollback took the node out of maintenance\n{}",
        ctx()
    );
    target.cleanup(&["medic-app-1"], &[]);
}

/// Fixture only: it demands a token we choose and records the headers it received.
#[test]
fn consul_token_is_attached_by_the_host_and_never_seen_by_the_plugin() {
    let fixture = ConsulFixture::start_with_token(Some("s3cr3t-consul-token"));
    let url = fixture.url().to_string();
    let medic = Medic::new();
    write_credentials(&medic, &url, "s3cr3t-consul-token");
    let steps = json!([
        step("leader", "leader", &url, json!({})),
        step("kv", "kv-put", &url, json!({ "key": "k", "value": "v" })),
    ]);
    // The plan grants no secret: the plugin could not read the token if it tried.
    let (out, view) = run(&medic, "token.yaml", &plan(&url, &[], steps));
    let ctx = || format!("{out}\n{}", view.pretty());
    out.expect_code(exit::SUCCEEDED, ctx);
    let requests = fixture.requests();
    assert!(!requests.is_empty());
    for r in &requests {
        assert_eq!(
            r.header("x-consul-token"),
            Some("s3cr3t-consul-token"),
            "{r:?}"
        );
    }
    let shown = medic.run(["runs", "show", &view.id, "--json"]);
    assert!(
        !shown.stdout.contains("s3cr3t") && !out.stdout.contains("s3cr3t"),
        "the token appears nowhere in the run\n{shown}"
    );

    // The token_secret param, for setups without [[http.credentials]].
    let other = Medic::new();
    let secrets = other.data_dir().join("secrets");
    std::fs::create_dir_all(&secrets).unwrap();
    std::fs::write(secrets.join("consul-acl"), "s3cr3t-consul-token\n").unwrap();
    std::fs::write(
        other.data_dir().join("medic.toml"),
        "secrets_dir = \"secrets\"\n",
    )
    .unwrap();
    let steps = json!([step(
        "leader",
        "leader",
        &url,
        json!({ "token_secret": "consul-acl" })
    )]);
    let (out, _) = run(&other, "param.yaml", &plan(&url, &["consul-acl"], steps));
    out.expect_code(exit::SUCCEEDED, || out.to_string());
}

/// Fixture only: 403 for a missing token.
#[test]
fn consul_forbidden_is_a_clear_permanent_error() {
    let fixture = ConsulFixture::start_with_token(Some("needed"));
    let url = fixture.url().to_string();
    let medic = Medic::new();
    let mut s = step("on", "node-maintenance-on", &url, json!({}));
    s["retry"] = json!({ "attempts": 3, "initial": "1s" });
    let steps = json!([s]);
    let (out, view) = run(&medic, "forbidden.yaml", &plan(&url, &[], steps));
    out.expect_code(exit::FAILED, || out.to_string());
    let error = error_text(&view, "on");
    assert!(error.contains("403"), "{error}");
    assert!(
        error.contains("[[http.credentials]]") && error.contains("X-Consul-Token"),
        "the error says how to grant the token: {error}"
    );
    assert_eq!(
        view.attempts_of("on", false).len(),
        1,
        "a 403 is not retried\n{}",
        view.pretty()
    );
}

#[test]
fn consul_cas_conflict_is_reported_with_the_current_index() {
    let target = consul_target();
    let url = target.url();
    let medic = medic_for(&target);
    target.kv_put("medic/test/cas", "mine");
    let index = target.kv_index("medic/test/cas").unwrap();
    target.kv_put("medic/test/cas", "theirs"); // someone else writes in between
    let now = target.kv_index("medic/test/cas").unwrap();
    let steps = json!([step(
        "put",
        "kv-put",
        &url,
        json!({ "key": "medic/test/cas", "value": "late", "cas": index })
    )]);
    let (out, view) = run(&medic, "cas.yaml", &plan(&url, &[], steps));
    out.expect_code(exit::FAILED, || out.to_string());
    let error = error_text(&view, "put");
    assert!(
        error.contains("check-and-set conflict")
            && error.contains(&format!("expected ModifyIndex {index}"))
            && error.contains(&format!("now {now}")),
        "{error}"
    );
    let (_, body) = target.api("GET", "/v1/kv/medic/test/cas?raw", b"");
    assert_eq!(body, b"theirs", "the conflicting write changed nothing");
    target.cleanup(&[], &["medic/test/cas"]);
}

#[test]
fn consul_unreachable_agent_is_retryable() {
    // A port nobody listens on: bind, note it, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let medic = Medic::new();
    let mut s = step("leader", "leader", &url, json!({}));
    s["retry"] = json!({ "attempts": 2, "backoff": "fixed", "initial": "100ms", "max": "100ms" });
    let (out, view) = run(&medic, "down.yaml", &plan(&url, &[], json!([s])));
    out.expect_code(exit::FAILED, || out.to_string());
    assert_eq!(
        view.attempts_of("leader", false).len(),
        2,
        "a refused connection is retried\n{}",
        view.pretty()
    );
    let error = error_text(&view, "leader");
    assert!(error.contains(&url.replace("http://", "")), "{error}");
}

#[test]
fn consul_ungranted_origin_is_refused_by_the_host() {
    let target = consul_target();
    let medic = medic_for(&target);
    let granted = "http://127.0.0.1:1";
    let steps = json!([step("leader", "leader", &target.url(), json!({}))]);
    let (out, view) = run(&medic, "ungranted.yaml", &plan(granted, &[], steps));
    out.expect_code(exit::FAILED, || out.to_string());
    let error = error_text(&view, "leader");
    assert!(
        error.contains("not granted") && error.contains("grants"),
        "{error}"
    );
    if let Target::Fixture(f) = &target {
        assert!(f.requests().is_empty(), "nothing reached the agent");
    }
}

#[test]
fn consul_unknown_service_maintenance_is_a_clear_error() {
    let target = consul_target();
    let url = target.url();
    let medic = medic_for(&target);
    let steps = json!([step(
        "on",
        "service-maintenance-on",
        &url,
        json!({ "service_id": "no-such-service" })
    )]);
    let (out, view) = run(&medic, "unknown.yaml", &plan(&url, &[], steps));
    out.expect_code(exit::FAILED, || out.to_string());
    let error = error_text(&view, "on");
    assert!(
        error.contains("does not know this service") && error.contains("no-such-service"),
        "{error}"
    );
}

/// Fixture only (it holds the answer back): medic is killed after a `kv-put` landed
/// but before it heard so; `medic resume` asks the plugin's `observe`, which finds the
/// value, records the step done and never writes again.
#[test]
fn consul_kv_put_killed_after_it_landed_resume_observes_it_done() {
    let fixture = ConsulFixture::start();
    let url = fixture.url().to_string();
    fixture.hold("PUT", "/v1/kv/", Duration::from_secs(60));
    let medic = Medic::new();
    let steps = json!([step(
        "put",
        "kv-put",
        &url,
        json!({ "key": "medic/test/landed", "value": "once" })
    )]);
    let path = medic.write("landed.yaml", &plan(&url, &[], steps));
    let mut running = medic.spawn(["run".as_ref(), path.as_os_str()]);
    let run = running.run_id();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while consul_call(&url, "GET", "/v1/kv/medic/test/landed?raw", None, b"").1 != b"once" {
        assert!(
            std::time::Instant::now() < deadline,
            "the write never landed\n{}",
            running.describe()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let killed = running.kill();
    assert_eq!(killed.code, 128 + 9, "{killed}");
    assert_eq!(medic.show(&run).step("put").status, "running");

    let out = medic.run(["resume", &run]);
    let ctx = || format!("{out}\n{}", medic.describe_run(&run));
    out.expect_code(exit::SUCCEEDED, ctx);
    let view = medic.show(&run);
    assert_eq!(view.step("put").output["value"], "once", "{}", ctx());
    assert_eq!(view.attempts_of("put", false).len(), 1, "{}", ctx());
    let puts = fixture
        .requests()
        .iter()
        .filter(|r| r.method == "PUT" && r.path == "/v1/kv/medic/test/landed")
        .count();
    assert_eq!(
        puts,
        1,
        "observe found the value: no second write\n{}",
        ctx()
    );
}
