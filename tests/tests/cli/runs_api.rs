//! Runs over HTTP beyond submit: list filters (status, plan, creation time) and
//! resume, including taking over a run whose `medic run` process was SIGKILLed.

use std::time::{Duration, SystemTime};

use medic_tests::{CounterTarget, Medic, Server, plan};
use serde_json::{Value, json};

use crate::run_args;

const WAIT: Duration = Duration::from_secs(30);

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// `t` written with a +02:00 offset (and `+` escaped for a URL).
fn rfc3339_plus_two_hours(t: SystemTime) -> String {
    let shifted = rfc3339(t + Duration::from_secs(2 * 3600));
    format!("{}%2B02:00", shifted.strip_suffix('Z').expect("UTC"))
}

fn ids(server: &Server, query: &str) -> Vec<String> {
    let (status, _, body) = server.get(&format!("/v1/runs{query}"));
    assert_eq!(status, 200, "{query}: {body}");
    body["runs"]
        .as_array()
        .expect("runs")
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect()
}

fn submit(server: &Server, plan_file: &str, target: &CounterTarget) -> String {
    let text = std::fs::read_to_string(plan(plan_file)).expect("test plan");
    let (status, _, created) = server.post(
        "/v1/runs",
        &[],
        &json!({ "plan": text, "params": { "target": target.address() } }),
    );
    assert_eq!(status, 201, "{created}");
    created["id"].as_str().unwrap().to_owned()
}

fn pause() {
    // Creation times are in milliseconds; keep the marks clearly apart from them.
    std::thread::sleep(Duration::from_millis(25));
}

#[test]
fn runs_are_listed_by_status_plan_and_creation_time() {
    let medic = Medic::new();
    let target = CounterTarget::start();
    let server = Server::admin(&medic);
    let t0 = SystemTime::now();
    pause();
    let done = submit(&server, "counters.yaml", &target);
    server.wait_status(&done, "succeeded");
    pause();
    let t1 = SystemTime::now();
    pause();
    let waiting = submit(&server, "approval.yaml", &target);
    medic_tests::poll_until(
        WAIT,
        "the approval step waiting",
        || {
            let (_, _, v) = server.get(&format!("/v1/runs/{waiting}"));
            (v["steps"][1]["status"] == "approval").then_some(())
        },
        || server.running.describe(),
    );
    pause();
    let t2 = SystemTime::now();

    assert_eq!(
        ids(&server, ""),
        [waiting.as_str(), done.as_str()],
        "newest first"
    );
    assert_eq!(ids(&server, "?status=succeeded"), [done.as_str()]);
    assert_eq!(ids(&server, "?status=running"), [waiting.as_str()]);
    assert_eq!(ids(&server, "?plan=test-approval"), [waiting.as_str()]);
    assert_eq!(
        ids(&server, "?plan=test-counters&status=succeeded"),
        [done.as_str()]
    );
    assert!(ids(&server, "?plan=test-counters&status=running").is_empty());
    assert_eq!(
        ids(&server, &format!("?since={}", rfc3339(t1))),
        [waiting.as_str()]
    );
    assert_eq!(
        ids(&server, &format!("?until={}", rfc3339(t1))),
        [done.as_str()]
    );
    assert_eq!(
        ids(
            &server,
            &format!("?since={}&until={}", rfc3339(t0), rfc3339(t2))
        ),
        [waiting.as_str(), done.as_str()]
    );
    assert_eq!(
        ids(&server, &format!("?since={}", rfc3339_plus_two_hours(t1))),
        [waiting.as_str()],
        "a numeric offset names the same instant"
    );
    assert!(ids(&server, &format!("?since={}", rfc3339(t2))).is_empty());
    assert_eq!(ids(&server, "?limit=1"), [waiting.as_str()]);

    for (query, says) in [
        ("?since=yesterday", "`since` must be an RFC 3339 time"),
        ("?until=2026-05-01", "`until` must be an RFC 3339 time"),
        ("?status=sleeping", "expected one of"),
    ] {
        let (status, ctype, problem) = server.get(&format!("/v1/runs{query}"));
        assert_eq!(
            (status, ctype.as_str()),
            (400, "application/problem+json"),
            "{query}: {problem}"
        );
        assert!(
            problem["detail"].as_str().is_some_and(|d| d.contains(says)),
            "{query}: {problem}"
        );
    }
}

#[test]
fn resume_takes_over_a_run_whose_medic_was_killed_and_refuses_live_or_ended_runs() {
    let medic = Medic::new();
    let target = CounterTarget::start();
    let server = Server::admin(&medic);
    // Another medic process runs the plan; bump-a holds for 3 s after its effect.
    let mut cli = medic.spawn(run_args(
        &plan("counters.yaml"),
        &target,
        &[("a_after_ms", "3000")],
    ));
    let run = cli.run_id();
    let key = target.wait_for(
        WAIT,
        "bump-a's ADD on counter a",
        |applied| {
            applied
                .iter()
                .find(|a| a.counter == "a")
                .map(|a| a.key.clone())
        },
        || cli.describe(),
    );
    let resume = |run: &str| server.post(&format!("/v1/runs/{run}/resume"), &[], &Value::Null);

    let (status, _, problem) = resume(&run);
    assert_eq!(status, 409, "a live medic owns the run: {problem}");
    assert!(
        problem["detail"]
            .as_str()
            .is_some_and(|d| d.contains("owned by a running medic process")),
        "{problem}"
    );
    assert!(cli.is_alive(), "the owner keeps going\n{}", cli.describe());
    let killed = cli.kill();
    assert_eq!(killed.code, 128 + 9, "{killed}");

    let (status, _, resumed) = resume(&run);
    assert_eq!(status, 202, "{resumed}");
    assert_eq!(resumed["id"], json!(run));
    let view = server.wait_status(&run, "succeeded");
    assert_eq!(
        (target.value("a"), target.value("b"), target.value("c")),
        (10, 1, 100),
        "{view}"
    );
    target.assert_each_key_applied_once();
    assert!(
        target.requests().contains(&format!("HAS {key}")),
        "the in-flight attempt was observed, not re-run: {:?}",
        target.requests()
    );
    assert_eq!(
        view["attempts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["step"] == "bump-a")
            .count(),
        1,
        "{view}"
    );

    let (status, _, problem) = resume(&run);
    assert_eq!(status, 409, "{problem}");
    assert_eq!(
        problem["detail"],
        format!("run {run} has ended (succeeded); there is nothing to resume")
    );
    let (status, _, problem) = resume("r-nope");
    assert_eq!(status, 404, "{problem}");
}
