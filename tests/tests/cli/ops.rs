//! The operations loop through the real `medic serve` (issue 13): an Alertmanager
//! payload (the shape its documentation gives) starts the mapped plan once, a
//! duplicate and a replay after a SIGKILL start nothing, a resolved alert cancels or
//! annotates as its rule says; notifications reach the test's webhook receivers,
//! retried after a 500; escalation fires at its threshold on an injected clock; and
//! `medic doc` / `medic report` print what they should (snapshots, normalized).

use std::path::{Path, PathBuf};
use std::time::Duration;

use medic_tests::{Medic, Scrape, Server, Stub, plan, poll_until};
use serde_json::{Value, json};

/// medic.toml: channel `hook` (Slack format) at `hook`, channel `lead` (a DingTalk
/// markdown template) at `lead`, and two alert rules for tests/plans/alerted.yaml.
fn config(medic: &Medic, hook: &Stub, lead: &Stub) -> PathBuf {
    medic.write(
        "medic.toml",
        &format!(
            r#"
[notify]
retry_initial = "300ms"
retry_max = "2s"

[notify.channels.hook]
url = "{hook}/slack"
format = "slack"

[notify.channels.lead]
url = "{lead}/dingtalk"
format = "template"
template = '{{"msgtype": "markdown", "markdown": {{"title": "medic {{{{ event }}}}", "text": {{{{ ("**" ~ severity ~ "** " ~ message) | tojson }}}}}}}}'

[[alerts.rules]]
name = "db-down"
match = {{ alertname = "MySQLDown" }}
plan = "alerted"
params = {{ instance = "${{{{ labels.instance }}}}" }}
on_resolved = "cancel"

[[alerts.rules]]
name = "db-lag"
match = {{ alertname = "MySQLReplicationLag" }}
plan = "alerted@1"
params = {{ instance = "${{{{ labels.instance }}}}" }}
on_resolved = "annotate"

[[alerts.rules]]
name = "disk-full"
match = {{ alertname = "DiskFull", team = "db" }}
plan = "not-registered"
"#,
            hook = hook.url(),
            lead = lead.url(),
        ),
    )
}

/// `medic serve --config` with an operator token (the role hooks need), the plan
/// registered (by an admin token).
fn serve(medic: &Medic, config: &Path, extra: &[&str]) -> Server {
    let admin = medic.create_token("admin", "admin");
    let operator = medic.create_token("alertmanager", "operator");
    let mut args = vec!["--config", config.to_str().unwrap()];
    args.extend_from_slice(extra);
    let server = Server::start(medic, Some(&operator), &args);
    let text = std::fs::read_to_string(plan("alerted.yaml")).unwrap();
    let (status, _, body) =
        server
            .client(Some(&admin))
            .post("/v1/plans", &[], &json!({ "plan": text }));
    assert!(status == 201 || status == 200, "{status} {body}");
    server
}

/// A webhook payload as Alertmanager documents it (version 4), one alert.
fn alertmanager(
    status: &str,
    name: &str,
    instance: &str,
    fingerprint: &str,
    starts: &str,
) -> Value {
    json!({
        "version": "4",
        "groupKey": format!("{{}}:{{alertname=\"{name}\"}}"),
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "medic",
        "groupLabels": { "alertname": name },
        "commonLabels": { "alertname": name, "severity": "critical" },
        "commonAnnotations": { "summary": format!("{instance} is down") },
        "externalURL": "http://alertmanager.example:9093",
        "alerts": [{
            "status": status,
            "labels": { "alertname": name, "instance": instance, "severity": "critical" },
            "annotations": { "summary": format!("{instance} is down") },
            "startsAt": starts,
            "endsAt": if status == "resolved" { "2026-11-23T10:20:00Z" } else { "0001-01-01T00:00:00Z" },
            "generatorURL": "http://prometheus.example:9090/graph?g0.expr=mysql_up+%3D%3D+0",
            "fingerprint": fingerprint,
        }],
    })
}

/// `name{label="value"}` in the server's /metrics (0 if absent).
fn metric(server: &Server, name: &str, label: (&str, &str)) -> f64 {
    let (status, _, body) = server.get("/metrics");
    assert_eq!(status, 200, "{body}");
    let scrape = Scrape::parse(body.as_str().expect("text")).expect("a Prometheus scrape");
    scrape.value(name, &[label]).unwrap_or(0.0)
}

fn hook(server: &Server, path: &str, payload: &Value) -> Value {
    let (status, _, body) = server.post(path, &[], payload);
    assert_eq!(
        status,
        200,
        "POST {path}: {body}\n{}",
        server.running.describe()
    );
    body
}

/// The outcome and run of the only alert of a hook's answer.
fn one(body: &Value) -> (String, String) {
    let a = &body["alerts"][0];
    (
        a["outcome"].as_str().unwrap_or("").to_owned(),
        a["runs"][0].as_str().unwrap_or("").to_owned(),
    )
}

/// The runs the server has that `rule` started.
fn runs_of(server: &Server, rule: &str) -> Vec<Value> {
    server
        .runs()
        .into_iter()
        .filter(|r| r["submitted_by"] == json!(format!("alert:{rule}")))
        .collect()
}

#[test]
fn an_alertmanager_alert_starts_its_plan_once_and_its_resolution_is_handled() {
    let medic = Medic::new();
    let (h, l) = (
        Stub::start(200, "text/plain", "ok"),
        Stub::start(200, "text/plain", "ok"),
    );
    let cfg = config(&medic, &h, &l);
    let server = serve(&medic, &cfg, &[]);
    let path = "/v1/hooks/alertmanager";
    let firing = alertmanager(
        "firing",
        "MySQLDown",
        "db-1:3306",
        "c4c1e2b7d2a1f0e9",
        "2026-11-23T10:00:00Z",
    );

    let (outcome, run) = one(&hook(&server, path, &firing));
    assert_eq!(outcome, "started");
    let view = server.wait_step(&run, "gate", "approval");
    assert_eq!(view["params"], json!({ "instance": "db-1:3306" }), "{view}");
    assert_eq!(view["run"]["submitted_by"], "alert:db-down");
    assert_eq!(view["run"]["plan_version"], 1);

    // Alertmanager sends the same firing again at every repeat_interval.
    assert_eq!(
        one(&hook(&server, path, &firing)),
        ("duplicate".to_owned(), run.clone())
    );
    // A new firing of the fingerprint while its run is going starts nothing either.
    let refired = alertmanager(
        "firing",
        "MySQLDown",
        "db-1:3306",
        "c4c1e2b7d2a1f0e9",
        "2026-11-23T10:05:00Z",
    );
    assert_eq!(
        one(&hook(&server, path, &refired)),
        ("duplicate".to_owned(), run.clone())
    );
    // No rule, no run.
    let other = alertmanager(
        "firing",
        "DiskFull",
        "db-1:3306",
        "0000000000000001",
        "2026-11-23T10:00:00Z",
    );
    assert_eq!(one(&hook(&server, path, &other)).0, "unmatched");
    assert_eq!(runs_of(&server, "db-down").len(), 1);

    // A rule whose plan is not registered: this alert's error, not a failed webhook
    // (Alertmanager would send it again forever).
    let mut full = alertmanager(
        "firing",
        "DiskFull",
        "db-1:3306",
        "0000000000000002",
        "2026-11-23T10:00:00Z",
    );
    full["alerts"][0]["labels"]["team"] = json!("db");
    let b = hook(&server, path, &full);
    assert_eq!(b["alerts"][0]["outcome"], "error", "{b}");
    let detail = b["alerts"][0]["detail"].as_str().unwrap_or("");
    assert!(
        detail.contains("alert rule `disk-full`") && detail.contains("not-registered"),
        "{b}"
    );

    // The fingerprint was committed with the run: a replay after a SIGKILL of the
    // server is still a duplicate.
    server.running.kill();
    let server = Server::start(
        &medic,
        Some(&medic.create_token("alertmanager-2", "operator")),
        &["--config", cfg.to_str().unwrap()],
    );
    assert_eq!(
        one(&hook(&server, path, &firing)),
        ("duplicate".to_owned(), run.clone())
    );
    assert_eq!(runs_of(&server, "db-down").len(), 1);

    // db-down's rule cancels its run when the alert resolves.
    let resolved = alertmanager(
        "resolved",
        "MySQLDown",
        "db-1:3306",
        "c4c1e2b7d2a1f0e9",
        "2026-11-23T10:00:00Z",
    );
    let b = hook(&server, path, &resolved);
    assert_eq!(one(&b), ("cancelled".to_owned(), run.clone()), "{b}");
    let view = server.wait_status(&run, "cancelled");
    assert!(
        view["events"].to_string().contains("alert:db-down"),
        "the cancel names the alert rule: {view}"
    );

    // db-lag's rule only annotates: the run goes on, the report says it resolved.
    let lag = alertmanager(
        "firing",
        "MySQLReplicationLag",
        "db-2:3306",
        "aa00aa00aa00aa00",
        "2026-11-23T11:00:00Z",
    );
    let (o, lag_run) = one(&hook(&server, path, &lag));
    assert_eq!(o, "started");
    server.wait_step(&lag_run, "gate", "approval");
    let lag_resolved = alertmanager(
        "resolved",
        "MySQLReplicationLag",
        "db-2:3306",
        "aa00aa00aa00aa00",
        "2026-11-23T11:00:00Z",
    );
    assert_eq!(
        one(&hook(&server, path, &lag_resolved)),
        ("annotated".to_owned(), lag_run.clone())
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(server.run(&lag_run)["run"]["status"], "running");
    let (status, report) = server.get_json(&format!("/v1/runs/{lag_run}/report"));
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["triggered_by"], "alert db-lag");
    assert_eq!(report["alerts"][0]["resolution"], "annotate", "{report}");
    assert_eq!(report["alerts"][0]["fingerprint"], "aa00aa00aa00aa00");

    // The generic webhook: the same rules, a fingerprint from the labels.
    let generic = json!({
        "status": "firing",
        "labels": { "alertname": "MySQLDown", "instance": "db-3:3306" },
        "starts_at": "2026-11-23T12:00:00Z",
    });
    let (o, g_run) = one(&hook(&server, "/v1/hooks/alert", &generic));
    assert_eq!(o, "started");
    assert_eq!(
        one(&hook(&server, "/v1/hooks/alert", &generic)),
        ("duplicate".to_owned(), g_run)
    );
    // This process (since the restart) counted: the replay and the generic repeat
    // (duplicate), db-lag's and the generic alert's runs (started), one cancel and
    // one annotation.
    assert_eq!(
        metric(&server, "medic_alerts_total", ("outcome", "started")),
        2.0
    );
    assert_eq!(
        metric(&server, "medic_alerts_total", ("outcome", "duplicate")),
        2.0
    );
    assert_eq!(
        metric(&server, "medic_alerts_total", ("outcome", "cancelled")),
        1.0
    );
    assert_eq!(
        metric(&server, "medic_alerts_total", ("outcome", "annotated")),
        1.0
    );

    // A viewer may not post alerts; a payload that is not one is a 422 naming the field.
    let viewer = server.client(Some(&medic.create_token("watcher", "viewer")));
    assert_eq!(viewer.post(path, &[], &firing).0, 403);
    let (status, _, body) = server.post(path, &[], &json!({ "alerts": [{ "status": "burning" }] }));
    assert_eq!(status, 422, "{body}");
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("alerts[0].status"),
        "{body}"
    );
}

#[test]
fn notifications_reach_the_webhook_and_a_500_is_retried() {
    let medic = Medic::new();
    let hook_stub = Stub::scripted(&[500], 200, "text/plain", "ok");
    let lead = Stub::start(200, "text/plain", "ok");
    let cfg = config(&medic, &hook_stub, &lead);
    let server = serve(&medic, &cfg, &[]);
    let generic = json!({
        "status": "firing",
        "labels": { "alertname": "MySQLDown", "instance": "db-9:3306" },
    });
    let (o, run) = one(&hook(&server, "/v1/hooks/alert", &generic));
    assert_eq!(o, "started");
    server.wait_step(&run, "gate", "approval");

    let started = format!("medic: run {run} of plan `alerted` started");
    let texts = || -> Vec<String> {
        hook_stub
            .json_bodies()
            .iter()
            .map(|b| b["text"].as_str().unwrap_or("").to_owned())
            .collect()
    };
    poll_until(
        Duration::from_secs(20),
        "the `started` notification delivered after its 500",
        || (texts().iter().filter(|t| **t == started).count() == 2).then_some(()),
        || format!("{:#?}\n{}", hook_stub.requests(), server.describe(&run)),
    );
    assert_eq!(
        metric(
            &server,
            "medic_notification_deliveries_total",
            ("outcome", "retry")
        ),
        1.0
    );
    let all = texts();
    assert!(
        all.iter()
            .any(|t| t.contains("step `diagnose`") && t.contains("succeeded")),
        "the step-level notification: {all:#?}"
    );
    assert!(
        all.iter()
            .any(|t| t.contains("waits for approval of step `gate`")
                && t.contains("Restart db-9:3306?")),
        "the approval notification: {all:#?}"
    );
    assert!(
        hook_stub.requests()[0].starts_with("POST /slack HTTP/1.1"),
        "{:?}",
        hook_stub.requests()[0]
    );
    // The outbox says the same: `started` took two attempts, the others one.
    let (_, report) = server.get_json(&format!("/v1/runs/{run}/report"));
    let notes = report["notifications"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let first = notes
        .iter()
        .find(|n| n["event"] == "started")
        .expect("started queued");
    assert_eq!(first["attempts"], 2, "{report:#}");
    assert!(!first["delivered_at"].is_null(), "{report:#}");
    assert_eq!(
        first["last_error"].as_str().map(|e| e.contains("500")),
        Some(true),
        "{report:#}"
    );
    assert!(
        lead.requests().is_empty(),
        "the lead hears only of escalations"
    );

    // Cancelling the run notifies that it ended.
    let (status, _, body) = server.post(&format!("/v1/runs/{run}/cancel"), &[], &json!({}));
    assert!(status < 300, "{status} {body}");
    poll_until(
        Duration::from_secs(20),
        "the `failed` notification of the cancelled run",
        || {
            texts()
                .iter()
                .any(|t| t.contains("was cancelled"))
                .then_some(())
        },
        || format!("{:#?}", texts()),
    );
}

#[test]
fn escalation_fires_at_the_threshold_on_an_injected_clock() {
    let medic = Medic::new();
    let (hook_stub, lead) = (
        Stub::start(200, "text/plain", "ok"),
        Stub::start(200, "text/plain", "ok"),
    );
    let cfg = config(&medic, &hook_stub, &lead);
    let clock = medic.write("clock-offset", "0");
    let server = serve(&medic, &cfg, &["--clock-file", clock.to_str().unwrap()]);
    let firing = alertmanager(
        "firing",
        "MySQLDown",
        "db-1:3306",
        "e5ca1a7e00000001",
        "2026-11-23T10:00:00Z",
    );
    let (o, run) = one(&hook(&server, "/v1/hooks/alertmanager", &firing));
    assert_eq!(o, "started");
    server.wait_step(&run, "gate", "approval");
    let escalations =
        || server.get_json(&format!("/v1/runs/{run}/report")).1["escalations"].clone();

    // 29 minutes in: below the 30m threshold, nothing (the loop checks every second).
    std::fs::write(&clock, (29 * 60 * 1000).to_string()).unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(escalations(), json!([]));
    assert!(lead.requests().is_empty());

    // Past 30 minutes: escalated to sev2 once, the tier's channel notified.
    std::fs::write(&clock, (30 * 60 * 1000 + 1000).to_string()).unwrap();
    poll_until(
        Duration::from_secs(15),
        "the escalation to sev2 delivered to the lead",
        || (!lead.requests().is_empty()).then_some(()),
        || server.describe(&run),
    );
    std::thread::sleep(Duration::from_millis(2500));
    let got = lead.json_bodies();
    assert_eq!(got.len(), 1, "once per tier: {got:#?}");
    assert_eq!(got[0]["msgtype"], "markdown", "{got:#?}");
    assert_eq!(got[0]["markdown"]["title"], "medic escalated");
    let text = got[0]["markdown"]["text"].as_str().unwrap();
    assert!(
        text.starts_with("**sev2** ") && text.contains(&run) && text.contains("threshold 30m"),
        "{text}"
    );
    let e = escalations();
    assert_eq!(e.as_array().map(Vec::len), Some(1), "{e}");
    assert_eq!(
        metric(&server, "medic_escalations_total", ("severity", "sev2")),
        1.0
    );
    // The run is marked escalated in its own view too.
    let marked = &server.run(&run)["escalations"];
    assert_eq!(marked[0]["severity"], "sev2", "{marked}");
    assert_eq!(e[0]["severity"], "sev2");
    assert!(e[0]["offset_ms"].as_i64().unwrap() >= 30 * 60 * 1000, "{e}");
    assert!(
        hook_stub.json_bodies().iter().any(|b| b["text"]
            .as_str()
            .is_some_and(|t| t.contains("escalated to sev2"))),
        "the plan's own channel hears of the escalation too"
    );

    // The postmortem of the escalated run, normalized, as `medic report` prints it
    // locally and over --server.
    let local = medic.run(["report", &run]);
    local.expect_code(0, || local.to_string());
    let viewer = medic.create_token("reader", "viewer");
    let remote = medic.remote(server.url(), ["--token", &viewer, "report", &run]);
    remote.expect_code(0, || remote.to_string());
    assert_eq!(local.stdout, remote.stdout);
    insta::assert_snapshot!(
        "report_escalated_alert_run",
        normalize(&local.stdout, &[&run])
    );

    // The lead, who was paged, hears how the run ended.
    let (status, _, body) = server.post(&format!("/v1/runs/{run}/cancel"), &[], &json!({}));
    assert!(status < 300, "{status} {body}");
    let ended = poll_until(
        Duration::from_secs(20),
        "the lead told that the escalated run ended",
        || lead.json_bodies().get(1).cloned(),
        || server.describe(&run),
    );
    assert_eq!(
        ended["markdown"]["title"], "medic escalation_ended",
        "{ended}"
    );
    let text = ended["markdown"]["text"].as_str().unwrap_or("");
    assert!(
        text.contains("(escalated to sev2) ended cancelled"),
        "{text}"
    );
}

#[test]
fn doc_and_report_of_the_demo_plan() {
    let medic = Medic::new();
    let demo = medic_tests::repo_root().join("plans/examples/demo.yaml");
    let doc = medic.run([std::ffi::OsStr::new("doc"), demo.as_os_str()]);
    doc.expect_code(0, || doc.to_string());
    assert!(
        doc.stdout
            .starts_with("# Recovery plan: `demo-safe-restart`"),
        "{doc}"
    );
    assert!(doc.stdout.contains("```mermaid\nflowchart TD\n"), "{doc}");
    assert!(doc.stdout.contains("    s3 --> s4\n"), "{doc}");
    let bad = medic.write("bad.yaml", "apiVersion: medic/v1\nkind: RecoveryPlan\n");
    let out = medic.run([std::ffi::OsStr::new("doc"), bad.as_os_str()]);
    out.expect_code(2, || out.to_string());
    assert!(out.stderr.contains("metadata"), "{out}");

    let mut running = medic.spawn([
        std::ffi::OsStr::new("run"),
        demo.as_os_str(),
        std::ffi::OsStr::new("-p"),
        std::ffi::OsStr::new("settle_ms=0"),
    ]);
    let run = running.run_id();
    medic.wait_for_run(
        &run,
        Duration::from_secs(30),
        "step `approve-restart` waiting",
        |v| (v.step_status("approve-restart") == Some("approval")).then_some(()),
        || running.describe(),
    );
    // The approver's name is $USER: fixed, so the snapshot holds on any machine.
    let mut approve = medic.command([
        "approve",
        &run,
        "approve-restart",
        "--comment",
        "drained, go",
    ]);
    approve.env("USER", "oncall-alice");
    medic
        .spawn_command(approve)
        .wait(Duration::from_secs(30))
        .expect_code(0, || running.describe());
    running
        .wait(Duration::from_secs(60))
        .expect_code(0, || medic.show(&run).json.to_string());
    let report = medic.run(["report", &run]);
    report.expect_code(0, || report.to_string());
    insta::assert_snapshot!("report_demo_run", normalize(&report.stdout, &[&run]));
    let json = medic.run(["report", &run, "--json"]);
    let v: Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(v["status"], "succeeded");
    assert_eq!(v["approvals"][0]["comment"], "drained, go");
    assert_eq!(v["triggered_by"], "medic run (local)");
    assert_eq!(v["steps"].as_array().map(Vec::len), Some(6));
}

/// Times, durations and ids vary from run to run; the rest must not.
fn normalize(text: &str, runs: &[&str]) -> String {
    let mut t = text.to_owned();
    for (i, r) in runs.iter().enumerate() {
        t = t.replace(r, &format!("RUN{i}"));
    }
    let stamps = regex::Regex::new(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z").unwrap();
    let t = stamps.replace_all(&t, "TIME");
    let offsets = regex::Regex::new(r"\+\d+\.\d{3}s").unwrap();
    let t = offsets.replace_all(&t, "+S");
    let secs = regex::Regex::new(r"\b\d+\.\d{3}s\b").unwrap();
    let t = secs.replace_all(&t, "S");
    let after = regex::Regex::new(r"unresolved after [0-9hms ]+:").unwrap();
    after.replace_all(&t, "unresolved after D:").into_owned()
}

/// The outbox is a table: a run of `medic run` (which sends nothing) leaves its
/// notifications queued, and the next `medic serve` on that data dir delivers them.
#[test]
fn notifications_queued_by_one_process_are_delivered_by_the_next() {
    let medic = Medic::new();
    let (hook_stub, lead) = (
        Stub::start(200, "text/plain", "ok"),
        Stub::start(200, "text/plain", "ok"),
    );
    let cfg = config(&medic, &hook_stub, &lead);
    let plan_file = medic.write(
        "quick.yaml",
        "apiVersion: medic/v1\nkind: RecoveryPlan\nmetadata: { name: quick }\n\
         plugins: { probe: { use: probe@0.1 } }\n\
         notify: { channels: [hook, nowhere], events: [started, succeeded] }\n\
         steps:\n  - { id: only, uses: probe/noop }\n",
    );
    let out = medic.run([
        std::ffi::OsStr::new("--config"),
        cfg.as_os_str(),
        std::ffi::OsStr::new("run"),
        plan_file.as_os_str(),
    ]);
    out.expect_code(0, || out.to_string());
    let run = out
        .stdout
        .split_whitespace()
        .nth(1)
        .expect("`run ID started` first")
        .to_owned();
    assert!(hook_stub.requests().is_empty(), "medic run sends nothing");

    let server = serve(&medic, &cfg, &[]);
    let want = [
        format!("medic: run {run} of plan `quick` started"),
        format!("medic: run {run} of plan `quick` succeeded"),
    ];
    poll_until(
        Duration::from_secs(20),
        "both queued notifications delivered by medic serve",
        || {
            let got: Vec<String> = hook_stub
                .json_bodies()
                .iter()
                .map(|b| b["text"].as_str().unwrap_or("").to_owned())
                .collect();
            (got == want).then_some(())
        },
        || format!("{:#?}\n{}", hook_stub.requests(), server.running.describe()),
    );
    // A channel medic.toml does not have is given up at once, with the reason.
    let nowhere = poll_until(
        Duration::from_secs(20),
        "both notifications to `nowhere` given up",
        || {
            let (_, report) = server.get_json(&format!("/v1/runs/{run}/report"));
            let n: Vec<Value> = report["notifications"]
                .as_array()?
                .iter()
                .filter(|n| n["channel"] == "nowhere" && !n["gave_up_at"].is_null())
                .cloned()
                .collect();
            (n.len() == 2).then_some(n)
        },
        || server.running.describe(),
    );
    for n in &nowhere {
        assert_eq!(n["attempts"], 1, "{n:#}");
        assert!(
            n["last_error"]
                .as_str()
                .unwrap()
                .contains("no channel `nowhere` in medic.toml"),
            "{n:#}"
        );
    }
}
