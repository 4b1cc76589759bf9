//! The web UI `medic serve` embeds: served under `/ui/` beside the API without
//! shadowing it, the API calls it relies on (`/v1/whoami`, a run's `plan`), and its
//! end-to-end test in headless Chromium (ui/e2e/run.mjs, playwright-core): a run
//! followed live through an approval to success, and a failure shown with its error.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use medic_tests::{CounterTarget, Medic, Server, plan, repo_root};

use crate::api::counters_body;
use serde_json::{Value, json};

/// The UI's built assets, which `make build` writes and the binary embeds.
fn assert_ui_built() {
    let index = repo_root().join("ui/dist/index.html");
    assert!(
        index.is_file(),
        "{} is missing: the web UI was not built into this medic binary. Run `make build` \
         (npm ci && npm run build in ui/, then cargo build), not a bare cargo build",
        index.display()
    );
}

/// Registers the test plan `file` (tests/plans) with the server's admin client.
fn register(server: &Server, file: &str) {
    let text = std::fs::read_to_string(plan(file)).expect("read a test plan");
    let reply = server.call("POST", "/v1/plans", Some(&json!({ "plan": text })));
    assert_eq!(reply.status, 201, "registering {file}: {}", reply.body);
}

#[test]
fn the_web_ui_is_served_under_ui_without_shadowing_the_api() {
    assert_ui_built();
    let medic = Medic::new();
    let server = Server::admin(&medic);
    let anonymous = server.client(None);

    // The assets are public: the app itself asks for a token.
    let index = anonymous.call("GET", "/ui/", None);
    assert_eq!(index.status, 200, "{:?}", index);
    assert_eq!(index.content_type, "text/html; charset=utf-8");
    let html = index.body.as_str().expect("index.html is text").to_owned();
    assert!(html.contains("<div id=\"app\">"), "{html}");

    // Every asset index.html names is served with its type.
    let assets: Vec<&str> = html
        .split('"')
        .filter(|s| s.starts_with("/ui/assets/"))
        .collect();
    assert!(
        assets.iter().any(|a| a.ends_with(".js")) && assets.iter().any(|a| a.ends_with(".css")),
        "index.html should load a script and a stylesheet: {html}"
    );
    for asset in &assets {
        let reply = anonymous.call("GET", asset, None);
        assert_eq!(reply.status, 200, "{asset}");
        let want = if asset.ends_with(".js") {
            "text/javascript; charset=utf-8"
        } else {
            "text/css; charset=utf-8"
        };
        assert_eq!(reply.content_type, want, "{asset}");
    }

    // The app's own paths get the app (it routes in the browser); a missing asset does not.
    let deep = anonymous.call("GET", "/ui/runs/some-run", None);
    assert_eq!(
        (deep.status, deep.body.as_str()),
        (200, Some(html.as_str()))
    );
    let missing = anonymous.call("GET", "/ui/assets/no-such-file.js", None);
    assert_eq!(missing.status, 404, "{:?}", missing);
    assert_eq!(missing.content_type, "application/problem+json");

    // `/` leads to the app without following the redirect.
    let http: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .build()
        .into();
    let root = http
        .get(format!("{}/", server.url()))
        .call()
        .expect("GET /");
    assert_eq!(root.status().as_u16(), 307);
    assert_eq!(root.headers()["location"], "/ui/");

    // The API is as it was: its data still needs a token, unknown paths get its 404,
    // and the UI is not part of its document.
    assert_eq!(anonymous.call("GET", "/v1/runs", None).status, 401);
    assert_eq!(anonymous.call("GET", "/healthz", None).status, 200);
    let nothing = anonymous.call("GET", "/v1/no-such-thing", None);
    assert_eq!(
        (nothing.status, nothing.body["title"].as_str()),
        (404, Some("No such route"))
    );
    assert_eq!(anonymous.call("POST", "/ui/", None).status, 404);
    // Metrics count the UI as one route, not a series per path.
    let (status, metrics) = server.get_json("/metrics");
    assert_eq!(status, 200);
    let metrics = metrics.as_str().expect("metrics text");
    assert!(
        metrics.contains(r#"medic_http_requests_total{route="/ui/",status="200"}"#)
            && !metrics.contains(r#"route="/ui/runs/some-run""#),
        "{metrics}"
    );
    let (_, doc) = server.get_json("/openapi.json");
    let paths = doc["paths"].as_object().expect("paths");
    assert!(
        paths.keys().all(|p| !p.starts_with("/ui")),
        "the UI is not an API route: {:?}",
        paths.keys()
    );
}

#[test]
fn whoami_names_the_caller_and_a_run_carries_its_plan_graph() {
    let medic = Medic::new();
    let viewer = medic.create_token("val", "viewer");
    let approver = medic.create_token("bob", "approver");
    let server = Server::admin(&medic);

    let who = |token: Option<&str>| {
        let reply = server.client(token).call("GET", "/v1/whoami", None);
        (reply.status, reply.body)
    };
    assert_eq!(
        who(Some(&viewer)),
        (
            200,
            json!({"name": "val", "role": "viewer", "roles": ["viewer"]})
        )
    );
    assert_eq!(
        who(Some(&approver)),
        (
            200,
            json!({"name": "bob", "role": "approver", "roles": ["viewer", "operator", "approver"]})
        )
    );
    let (status, body) = who(None);
    assert_eq!(status, 401, "{body}");
    let (status, body) = who(Some("medic_unknown"));
    assert_eq!(status, 401, "{body}");

    // The run's detail has its plan, whose `needs` are the graph the UI draws.
    register(&server, "ui-restart.yaml");
    let reply = server.call(
        "POST",
        "/v1/runs",
        Some(&json!({"plan_name": "ui-safe-restart", "params": {"settle_ms": 0}})),
    );
    assert_eq!(reply.status, 201, "{}", reply.body);
    let run = reply.body["id"].as_str().expect("run id").to_owned();
    let view = server.run(&run);
    let graph: Vec<(String, Vec<String>)> = view["plan"]["steps"]
        .as_array()
        .unwrap_or_else(|| panic!("the run's detail should carry its plan: {view}"))
        .iter()
        .map(|s| {
            let needs = s["needs"].as_array().map_or(Vec::new(), |n| {
                n.iter().map(|x| x.as_str().unwrap().to_owned()).collect()
            });
            (s["id"].as_str().unwrap().to_owned(), needs)
        })
        .collect();
    let want: Vec<(String, Vec<String>)> = [
        ("diagnose", vec![]),
        ("snapshot-metadata", vec!["diagnose"]),
        ("drain-traffic", vec!["diagnose"]),
        (
            "approve-restart",
            vec!["snapshot-metadata", "drain-traffic"],
        ),
        ("restart", vec!["approve-restart"]),
        ("verify", vec!["restart"]),
    ]
    .into_iter()
    .map(|(id, needs)| {
        (
            id.to_owned(),
            needs.into_iter().map(str::to_owned).collect(),
        )
    })
    .collect();
    assert_eq!(graph, want, "{view}");
    assert_eq!(view["plan"]["metadata"]["name"], "ui-safe-restart");
}

/// `tests/scripts/chromium.sh`: installs Debian's chromium if missing; its path.
fn chromium() -> String {
    let script = repo_root().join("tests/scripts/chromium.sh");
    let out = Command::new("bash")
        .arg(&script)
        .output()
        .expect("run tests/scripts/chromium.sh");
    assert!(
        out.status.success(),
        "{} could not provide Chromium:\n{}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// The screenshots go to docs/screenshots with `MEDIC_UPDATE_SCREENSHOTS=1`, else
/// to the test's scratch dir (so taking them is tested either way).
fn screenshot_dir(medic: &Medic) -> PathBuf {
    if std::env::var_os("MEDIC_UPDATE_SCREENSHOTS").is_some_and(|v| v == "1") {
        repo_root().join("docs/screenshots")
    } else {
        medic.dir().join("screenshots")
    }
}

/// ui/e2e/run.mjs in headless Chromium against a real `medic serve`: alice (operator)
/// starts a run from its plan page and watches its graph live while bob (approver)
/// approves it in another tab; a failed run shows its error without a click; Retry
/// and Skip of held steps (held by a SIGKILL of the server mid-attempt), Reject and
/// Cancel steer runs; schedules, plugins and the audit log show what the server has.
/// Then the server's own records and the counter targets are checked against what
/// the browser did.
#[test]
fn the_web_ui_follows_a_run_live_through_its_approval_and_shows_a_failure() {
    assert_ui_built();
    let ui = repo_root().join("ui");
    assert!(
        ui.join("node_modules/playwright-core").is_dir(),
        "ui/node_modules/playwright-core is missing: run `make build` (it runs npm ci in ui/)"
    );
    let browser = chromium();
    let medic = Medic::new();
    let operator = medic.create_token("alice", "operator");
    let approver = medic.create_token("bob", "approver");
    let admin = medic.create_token("root", "admin");

    // Held runs for the Retry and Skip buttons: the server is SIGKILLed while bump-a's
    // mutating attempts are in flight (before their effect), so the server started
    // next holds both runs. Each run has its own counter target.
    let targets = [CounterTarget::start(), CounterTarget::start()];
    let first = Server::start(&medic, Some(&admin), &[]);
    let held: Vec<String> = targets
        .iter()
        .map(|target| {
            let body = counters_body(target, &[("a_before_ms", json!(2500))]);
            let reply = first.call("POST", "/v1/runs", Some(&body));
            assert_eq!(reply.status, 201, "{}", reply.body);
            reply.body["id"].as_str().expect("run id").to_owned()
        })
        .collect();
    for run in &held {
        first.wait_step(run, "bump-a", "running");
    }
    let Server { running, .. } = first;
    running.kill();
    let server = Server::start(&medic, Some(&admin), &[]);
    for (run, target) in held.iter().zip(&targets) {
        server.wait_status(run, "held");
        assert!(target.applied().is_empty(), "{}", target.describe());
    }

    register(&server, "ui-restart.yaml");
    register(&server, "ui-failing.yaml");
    let schedule =
        json!({"name": "nightly-restart-drill", "plan": "ui-safe-restart", "cron": "0 3 * * *"});
    let reply = server.call("POST", "/v1/schedules", Some(&schedule));
    assert_eq!(reply.status, 201, "creating a schedule: {}", reply.body);
    let shots = screenshot_dir(&medic);

    let started = Instant::now();
    let out = Command::new("node")
        .arg(ui.join("e2e/run.mjs"))
        .current_dir(&ui)
        .env("MEDIC_URL", server.url())
        .env("MEDIC_OPERATOR_TOKEN", &operator)
        .env("MEDIC_APPROVER_TOKEN", &approver)
        .env("MEDIC_ADMIN_TOKEN", &admin)
        .env("MEDIC_SCHEDULE", "nightly-restart-drill")
        .env("MEDIC_RETRY_RUN", &held[0])
        .env("MEDIC_SKIP_RUN", &held[1])
        .env("MEDIC_CHROMIUM", &browser)
        .env("MEDIC_SCREENSHOTS", &shots)
        .output()
        .expect("run `node ui/e2e/run.mjs` (Node 20+ must be on PATH)");
    let took = started.elapsed();
    let report = format!(
        "--- ui/e2e/run.mjs stdout ---\n{}\n--- stderr ---\n{}\n--- medic serve ---\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        server.running.describe()
    );
    assert!(out.status.success(), "the end-to-end test failed\n{report}");
    println!("ui/e2e/run.mjs passed in {took:?}\n{report}");
    assert!(took < Duration::from_secs(120), "{took:?}\n{report}");

    for name in [
        "run-running.png",
        "run-waiting-approval.png",
        "run-failed.png",
    ] {
        let png = std::fs::read(shots.join(name))
            .unwrap_or_else(|e| panic!("screenshot {name}: {e}\n{report}"));
        assert!(png.starts_with(b"\x89PNG"), "{name} is not a PNG");
    }

    // What the browser did is what the server recorded: bob approved alice's run.
    let runs = server.runs();
    let approved = runs
        .iter()
        .find(|r| r["plan_name"] == "ui-safe-restart" && r["status"] == "succeeded")
        .expect("the e2e run of ui-safe-restart");
    assert_eq!(approved["status"], "succeeded", "{approved}");
    assert_eq!(approved["submitted_by"], "alice");
    let view = server.run(approved["id"].as_str().unwrap());
    let decided: Vec<&Value> = view["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "approval_decided")
        .collect();
    assert_eq!(decided.len(), 1, "{view}");
    assert_eq!(decided[0]["data"]["by"], "bob");
    assert_eq!(decided[0]["data"]["approved"], true);
    let failed = runs
        .iter()
        .find(|r| r["plan_name"] == "ui-replica-failover")
        .expect("the e2e run of ui-replica-failover");
    assert_eq!(failed["status"], "failed", "{failed}");
    // Alice's Retry ran bump-a again (applied once), her Skip left it unapplied; both
    // runs went on to succeed.
    for (run, target, resolution, a) in [
        (&held[0], &targets[0], "retry", 10),
        (&held[1], &targets[1], "skip", 0),
    ] {
        let view = server.wait_status(run, "succeeded");
        let resolved: Vec<&Value> = view["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["kind"] == "step_resolved")
            .collect();
        assert_eq!(resolved.len(), 1, "{view}");
        assert_eq!(resolved[0]["data"]["by"], "alice", "{view}");
        assert!(
            resolved[0]["data"]["resolution"]
                .as_str()
                .is_some_and(|r| r.contains(resolution)),
            "{view}"
        );
        assert_eq!(target.value("a"), a, "{}", target.describe());
        target.assert_each_key_applied_once();
    }
    let mut ended: Vec<&str> = runs
        .iter()
        .filter(|r| r["plan_name"] == "ui-safe-restart")
        .map(|r| r["status"].as_str().unwrap())
        .collect();
    ended.sort();
    assert_eq!(ended, ["cancelled", "failed", "succeeded"], "{runs:?}");
}
