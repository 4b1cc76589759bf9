//! Schedules in the real `medic serve`: a due time that passes while the server is
//! SIGKILLed is fired once at restart (`missed: run-once`) or not at all (`skip`),
//! and a due time fired just before a SIGKILL is never fired again. Checked from
//! outside: the runs the API lists and the effects the counter target logged.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use medic_tests::{CounterTarget, Medic, Scrape, Server, plan, poll_until};
use serde_json::{Value, json};

const NAME: &str = "nightly";

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// A six-field cron (seconds first, UTC) naming one instant a day: `secs` seconds from
/// now, on a whole second. Returns the expression and the instant (epoch ms).
fn cron_in(secs: i64) -> (String, i64) {
    let due = (now_ms() / 1000 + secs) * 1000;
    let t = due / 1000;
    let (s, m, h) = (t % 60, (t / 60) % 60, (t / 3600) % 24);
    (format!("{s} {m} {h} * * *"), due)
}

fn sleep_until(ms: i64) {
    let wait = ms - now_ms();
    if wait > 0 {
        std::thread::sleep(Duration::from_millis(wait as u64));
    }
}

/// Registers tests/plans/counters.yaml as `test-counters` version 1.
fn register_counters(server: &Server) {
    let text = std::fs::read_to_string(plan("counters.yaml")).expect("test plan");
    let (status, _, body) = server.post("/v1/plans", &[], &json!({ "plan": text }));
    assert_eq!(status, 201, "{body}");
}

/// Lets the scheduler make several passes (it wakes at least once a second), for
/// checks that a due time is not fired again: an absence can only be seen over time.
fn several_scheduler_passes() {
    std::thread::sleep(Duration::from_secs(3));
}

/// Registers the counters plan and creates the schedule; returns its due time.
fn schedule(server: &Server, target: &CounterTarget, missed: &str, secs: i64) -> i64 {
    register_counters(server);
    let (cron, due) = cron_in(secs);
    let (status, _, body) = server.post(
        "/v1/schedules",
        &[],
        &json!({
            "name": NAME,
            "plan": "test-counters@1",
            "params": { "target": target.address() },
            "cron": cron,
            "missed": missed,
        }),
    );
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["next"][0]["due_at"], json!(due), "{body}");
    due
}

fn scheduled_runs(server: &Server) -> Vec<Value> {
    server
        .runs()
        .into_iter()
        .filter(|r| r["submitted_by"] == json!(format!("schedule:{NAME}")))
        .collect()
}

fn history(server: &Server) -> Vec<Value> {
    let (status, body) = server.get_json(&format!("/v1/schedules/{NAME}"));
    assert_eq!(status, 200, "{body}");
    body["history"].as_array().cloned().unwrap_or_default()
}

/// Kills the server before the due time, restarts it after: what the restart did.
fn across_a_due_time(missed: &str) -> (Medic, CounterTarget, Server, String) {
    let medic = Medic::new();
    let target = CounterTarget::start();
    let token = medic.create_token("test-admin", "admin");
    let server = Server::start(&medic, Some(&token), &[]);
    let due = schedule(&server, &target, missed, 4);
    server.running.kill();
    sleep_until(due + 1_500);
    let server = Server::start(&medic, Some(&token), &[]);
    let handled = poll_until(
        Duration::from_secs(15),
        "the restarted server handles the missed due time",
        || {
            history(&server)
                .into_iter()
                .find(|h| h["due_at"] == json!(due))
        },
        || "no history row for the due time".into(),
    );
    let outcome = handled["outcome"].as_str().unwrap_or_default().to_owned();
    (medic, target, server, outcome)
}

#[test]
fn a_due_time_missed_while_killed_fires_once_at_restart_under_run_once() {
    let (_medic, target, server, outcome) = across_a_due_time("run-once");
    assert_eq!(outcome, "fired");
    let runs = scheduled_runs(&server);
    assert_eq!(runs.len(), 1, "{runs:?}");
    let id = runs[0]["id"].as_str().unwrap().to_owned();
    server.wait_status(&id, "succeeded");
    // A later tick must not fire it again.
    several_scheduler_passes();
    assert_eq!(scheduled_runs(&server).len(), 1);
    assert_eq!(target.value("a"), 10, "bump-a applied exactly once");
}

#[test]
fn a_due_time_missed_while_killed_does_not_fire_under_skip() {
    let (_medic, target, server, outcome) = across_a_due_time("skip");
    assert_eq!(outcome, "missed");
    several_scheduler_passes();
    assert!(scheduled_runs(&server).is_empty());
    assert_eq!(target.value("a"), 0);
}

#[test]
fn a_due_time_fired_before_a_kill_is_not_fired_again() {
    let medic = Medic::new();
    let target = CounterTarget::start();
    let token = medic.create_token("test-admin", "admin");
    let server = Server::start(&medic, Some(&token), &[]);
    schedule(&server, &target, "run-once", 3);
    let run = poll_until(
        Duration::from_secs(15),
        "the schedule fires",
        || scheduled_runs(&server).first().cloned(),
        || "no run created by the schedule".into(),
    );
    server.running.kill();
    let server = Server::start(&medic, Some(&token), &[]);
    // The run is taken over (it may be held: a step in flight at the kill is not
    // re-run blindly); what matters here is that the due time made one run only.
    several_scheduler_passes();
    let runs = scheduled_runs(&server);
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0]["id"], run["id"]);
    let fired: Vec<Value> = history(&server)
        .into_iter()
        .filter(|h| h["outcome"] == "fired")
        .collect();
    assert_eq!(fired.len(), 1, "{fired:?}");
    assert!(target.value("a") <= 10, "bump-a applied at most once");
}

#[test]
fn schedules_are_managed_over_rest() {
    let medic = Medic::new();
    let target = CounterTarget::start();
    let server = Server::admin(&medic);
    let (status, _, bad) = server.post(
        "/v1/schedules",
        &[],
        &json!({ "name": "x", "plan": "test-counters@1", "cron": "0 3 * * *", "timezone": "Mars/Olympus" }),
    );
    assert_eq!(status, 422, "{bad}");
    assert!(
        bad["detail"].as_str().unwrap().contains("`timezone`"),
        "{bad}"
    );
    schedule(&server, &target, "skip", 3600);
    let (status, _, dup) = server.post(
        "/v1/schedules",
        &[],
        &json!({ "name": NAME, "plan": "test-counters@1", "cron": "0 3 * * *" }),
    );
    assert_eq!(status, 409, "{dup}");
    let (status, list) = server.get_json("/v1/schedules");
    assert_eq!(status, 200);
    assert_eq!(list["schedules"].as_array().unwrap().len(), 1, "{list}");
    let paused = server.call(
        "PATCH",
        &format!("/v1/schedules/{NAME}"),
        Some(&json!({"enabled": false})),
    );
    assert_eq!(paused.status, 200, "{:?}", paused.body);
    assert_eq!(paused.body["enabled"], json!(false));
    assert_eq!(paused.body["next"], json!([]));
    let gone = server.call("DELETE", &format!("/v1/schedules/{NAME}"), None);
    assert_eq!(gone.status, 204, "{:?}", gone.body);
    assert_eq!(server.get_json(&format!("/v1/schedules/{NAME}")).0, 404);
}

#[test]
fn the_cli_adds_lists_pauses_resumes_and_removes_schedules() {
    let medic = Medic::new();
    let server = Server::admin(&medic);
    register_counters(&server);

    let bad = medic.run([
        "schedule",
        "add",
        "--name",
        NAME,
        "--plan",
        "test-counters@1",
        "--cron",
        "0 3 * * 1",
    ]);
    bad.expect_code(2, || "a numeric day of week is refused".into());
    assert!(
        bad.stderr.contains("schedule field `cron`"),
        "{}",
        bad.stderr
    );
    let missing = medic.run([
        "schedule",
        "add",
        "--name",
        NAME,
        "--plan",
        "nope@1",
        "--cron",
        "0 3 * * *",
    ]);
    missing.expect_code(2, || "an unregistered plan is refused".into());
    assert!(
        missing.stderr.contains("schedule field `plan`"),
        "{}",
        missing.stderr
    );

    let added = medic.run([
        "schedule",
        "add",
        "--name",
        NAME,
        "--plan",
        "test-counters@1",
        "--cron",
        "30 2 * * MON-FRI",
        "--timezone",
        "Europe/Berlin",
        "--param",
        "target=127.0.0.1:1",
        "--jitter",
        "5m",
        "--window",
        "01:00-05:00",
        "--missed",
        "run-once",
        "--overlap",
        "queue",
    ]);
    added.expect_code(0, || "add".into());
    assert!(added.stdout.contains("next due"), "{}", added.stdout);
    // The server sees what the CLI wrote to the same database.
    let (status, shown) = server.get_json(&format!("/v1/schedules/{NAME}"));
    assert_eq!(status, 200, "{shown}");
    assert_eq!(shown["spec"]["overlap"], "queue");
    assert_eq!(shown["next"].as_array().unwrap().len(), 5, "{shown}");

    let list = medic.run(["schedule", "list"]);
    assert!(
        list.stdout.contains(NAME) && list.stdout.contains("enabled"),
        "{}",
        list.stdout
    );
    medic
        .run(["schedule", "pause", NAME])
        .expect_code(0, || "pause".into());
    assert!(medic.run(["schedule", "list"]).stdout.contains("paused"));
    medic
        .run(["schedule", "resume", NAME])
        .expect_code(0, || "resume".into());
    medic
        .run(["schedule", "rm", NAME])
        .expect_code(0, || "rm".into());
    let gone = medic.run(["schedule", "rm", NAME]);
    assert_ne!(gone.code, 0);
    assert!(gone.stderr.contains("no schedule named"), "{}", gone.stderr);
}

#[test]
fn the_cli_manages_schedules_over_server_too() {
    let medic = Medic::new();
    let server = Server::open(&medic);
    register_counters(&server);
    let base = server.base.clone();

    let bad = medic.remote(
        &base,
        [
            "schedule",
            "add",
            "--name",
            NAME,
            "--plan",
            "test-counters@1",
            "--cron",
            "0 3 * * *",
            "--window",
            "25:00-01:00",
        ],
    );
    bad.expect_code(2, || "the server's 422 is an invalid-input exit".into());
    assert!(
        bad.stderr.contains("schedule field `window`"),
        "{}",
        bad.stderr
    );

    let added = medic.remote(
        &base,
        [
            "schedule",
            "add",
            "--name",
            NAME,
            "--plan",
            "test-counters@1",
            "--cron",
            "0 3 * * *",
            "--param",
            "target=127.0.0.1:1",
        ],
    );
    added.expect_code(0, || "add".into());
    assert!(added.stdout.contains("next due"), "{}", added.stdout);
    let list = medic.remote(&base, ["schedule", "list"]);
    assert!(
        list.stdout.contains(NAME) && list.stdout.contains("enabled"),
        "{}",
        list.stdout
    );
    medic
        .remote(&base, ["schedule", "pause", NAME])
        .expect_code(0, || "pause".into());
    assert!(
        medic
            .remote(&base, ["schedule", "list"])
            .stdout
            .contains("paused")
    );
    medic
        .remote(&base, ["schedule", "resume", NAME])
        .expect_code(0, || "resume".into());
    medic
        .remote(&base, ["schedule", "rm", NAME])
        .expect_code(0, || "rm".into());
    let gone = medic.remote(&base, ["schedule", "rm", NAME]);
    assert_ne!(gone.code, 0);
    assert!(gone.stderr.contains("no schedule named"), "{}", gone.stderr);
}

/// A plan that declares its own schedule: registering it creates the schedule, which
/// fires runs of that version; the schedule cannot be deleted on its own, and a new
/// version without it removes it.
#[test]
fn a_schedule_declared_in_a_plans_metadata_follows_its_registered_versions() {
    let medic = Medic::new();
    let server = Server::admin(&medic);
    let (cron, due) = cron_in(3);
    let text = |schedules: &str| {
        format!(
            "apiVersion: medic/v1\nkind: MaintenancePlan\nmetadata:\n  name: sweep\n{schedules}\
             plugins: {{ probe: {{ use: probe@0.1 }} }}\nsteps:\n  - id: a\n    uses: probe/noop\n"
        )
    };
    let v1 = text(&format!(
        "  schedules:\n    - {{ name: sweep-often, cron: \"{cron}\", missed: run-once }}\n"
    ));
    let (status, _, body) = server.post("/v1/plans", &[], &json!({ "plan": v1 }));
    assert_eq!(status, 201, "{body}");

    let (status, shown) = server.get_json("/v1/schedules/sweep-often");
    assert_eq!(status, 200, "{shown}");
    assert_eq!(shown["declared_by"], json!("sweep"), "{shown}");
    assert_eq!(shown["spec"]["plan"], json!("sweep@1"), "{shown}");
    assert_eq!(shown["next"][0]["due_at"], json!(due), "{shown}");

    let fired = poll_until(
        Duration::from_secs(15),
        "the declared schedule fires a run of the registered version",
        || {
            server
                .runs()
                .into_iter()
                .find(|r| r["submitted_by"] == json!("schedule:sweep-often"))
        },
        || "no run submitted by schedule:sweep-often".into(),
    );
    let run = server.run(fired["id"].as_str().unwrap());
    assert_eq!(run["run"]["plan_name"], json!("sweep"), "{run}");
    assert_eq!(run["run"]["plan_version"], json!(1), "{run}");

    // The fire is counted, with its lag from the fire instant to the run's commit.
    let (status, _, metrics) = server.get("/metrics");
    assert_eq!(status, 200);
    let metrics = metrics.as_str().expect("metrics are text");
    let scrape = Scrape::parse(metrics).unwrap_or_else(|e| panic!("{e}\n{metrics}"));
    assert_eq!(
        scrape.value("medic_schedule_due_times_total", &[("outcome", "fired")]),
        Some(1.0),
        "{metrics}"
    );
    let lag = scrape
        .histogram("medic_schedule_fire_lag_seconds", &[])
        .unwrap_or_else(|| panic!("no fire lag histogram\n{metrics}"));
    assert_eq!(lag.count, 1.0, "{metrics}");
    assert!(
        lag.sum < 5.0,
        "a fire within seconds of its instant: {}",
        lag.sum
    );

    let refused = server.call("DELETE", "/v1/schedules/sweep-often", None);
    assert_eq!(refused.status, 409, "{:?}", refused.body);
    assert!(
        refused.body["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("declared by plan `sweep`"),
        "{:?}",
        refused.body
    );

    let (status, _, body) = server.post("/v1/plans", &[], &json!({ "plan": text("") }));
    assert_eq!(status, 201, "{body}");
    assert_eq!(server.get_json("/v1/schedules/sweep-often").0, 404);
}
