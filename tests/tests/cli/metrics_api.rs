//! `GET /metrics` after real runs, parsed as the Prometheus text format: the series
//! and counts must match what the runs did (calls per action and outcome, steps,
//! runs by status, requests by route), not merely mention the metric names.

use std::time::Duration;

use medic_tests::{CounterTarget, Medic, Scrape, Server, plan, poll_until};
use serde_json::json;

use crate::api::counters_body;

fn scrape(server: &Server) -> Scrape {
    let (status, ctype, body) = server.get("/metrics");
    assert_eq!(status, 200, "{body}");
    assert_eq!(ctype, "text/plain; version=0.0.4; charset=utf-8");
    let text = body.as_str().expect("metrics are text");
    Scrape::parse(text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

#[test]
fn metrics_count_the_runs_steps_plugin_calls_and_requests_that_happened() {
    let medic = Medic::new();
    let target = CounterTarget::start();
    let server = Server::admin(&medic);
    let before = scrape(&server);
    assert_eq!(
        before.value("medic_runs", &[("status", "succeeded")]),
        Some(0.0)
    );
    assert!(
        before
            .series("medic_plugin_call_duration_seconds_count")
            .is_empty()
    );

    // counters.yaml: noop, sleep, then three counter-adds, the second failing once
    // (b_succeeds_at = 2) and retried.
    let (status, _, created) = server.post("/v1/runs", &[], &counters_body(&target, &[]));
    assert_eq!(status, 201, "{created}");
    let run = created["id"].as_str().unwrap().to_owned();
    server.wait_status(&run, "succeeded");
    let (status, _, _) = server.get("/no/such/route");
    assert_eq!(status, 404);

    let m = scrape(&server);
    for (kind, name) in [
        ("gauge", "medic_runs"),
        ("histogram", "medic_step_duration_seconds"),
        ("histogram", "medic_plugin_call_duration_seconds"),
        ("gauge", "medic_queue_depth"),
        ("counter", "medic_http_requests_total"),
    ] {
        assert_eq!(m.types.get(name).map(String::as_str), Some(kind), "{name}");
        assert!(
            m.help.get(name).is_some_and(|h| !h.is_empty()),
            "{name} has help"
        );
    }
    assert_eq!(m.value("medic_runs", &[("status", "succeeded")]), Some(1.0));
    for status in [
        "waiting",
        "running",
        "rolling_back",
        "held",
        "failed",
        "rolled_back",
        "cancelled",
    ] {
        assert_eq!(
            m.value("medic_runs", &[("status", status)]),
            Some(0.0),
            "{status}"
        );
    }

    let calls = |action: &str, outcome: &str| {
        m.histogram(
            "medic_plugin_call_duration_seconds",
            &[
                ("plugin", "probe"),
                ("action", action),
                ("call", "invoke"),
                ("outcome", outcome),
            ],
        )
        .map(|h| h.count)
    };
    assert_eq!(calls("noop", "ok"), Some(1.0));
    assert_eq!(calls("sleep", "ok"), Some(1.0));
    assert_eq!(calls("counter-add", "ok"), Some(3.0));
    assert_eq!(
        calls("counter-add", "error"),
        Some(1.0),
        "bump-b's first attempt"
    );
    assert_eq!(
        m.series("medic_plugin_call_duration_seconds_count").len(),
        4,
        "no other series: {:?}",
        m.series("medic_plugin_call_duration_seconds_count")
    );

    let steps = m
        .histogram(
            "medic_step_duration_seconds",
            &[("kind", "action"), ("status", "succeeded")],
        )
        .expect("step durations");
    assert_eq!(steps.count, 5.0, "five steps succeeded");
    assert_eq!(m.value("medic_queue_depth", &[]), Some(0.0));
    assert_eq!(
        m.value(
            "medic_http_requests_total",
            &[("route", "/v1/runs"), ("status", "201")]
        ),
        Some(1.0)
    );
    assert!(
        m.value(
            "medic_http_requests_total",
            &[("route", "/v1/runs/{id}"), ("status", "200")]
        )
        .is_some_and(|n| n >= 1.0),
        "run views are counted under their route template, not per run id"
    );
    assert_eq!(
        m.value(
            "medic_http_requests_total",
            &[("route", "unmatched"), ("status", "404")]
        ),
        Some(1.0)
    );
}

#[test]
fn queue_depth_counts_ready_steps_waiting_for_a_concurrency_slot() {
    let medic = Medic::new();
    let server = Server::admin(&medic);
    let text = std::fs::read_to_string(plan("queue.yaml")).expect("test plan");
    let (status, _, created) = server.post("/v1/runs", &[], &json!({ "plan": text }));
    assert_eq!(status, 201, "{created}");
    let run = created["id"].as_str().unwrap().to_owned();

    // concurrency 1: while the first sleep runs, the other two wait for the slot.
    poll_until(
        Duration::from_secs(30),
        "medic_queue_depth 2 while the first step runs",
        || (scrape(&server).value("medic_queue_depth", &[]) == Some(2.0)).then_some(()),
        || format!("{}", server.get(&format!("/v1/runs/{run}")).2),
    );
    server.wait_status(&run, "succeeded");
    let m = scrape(&server);
    assert_eq!(m.value("medic_queue_depth", &[]), Some(0.0));
    let steps = m
        .histogram(
            "medic_step_duration_seconds",
            &[("kind", "action"), ("status", "succeeded")],
        )
        .expect("step durations");
    // Each step slept 1.5 s from its own start; waiting in the queue is not counted.
    assert_eq!(steps.count, 3.0);
    assert!(steps.sum >= 4.5 && steps.sum < 9.0, "{steps:?}");
    let within = |le: f64| {
        steps
            .buckets
            .iter()
            .find(|b| b.0 == le)
            .map(|b| b.1)
            .unwrap_or_else(|| panic!("no le={le} bucket: {steps:?}"))
    };
    assert_eq!((within(1.0), within(5.0)), (0.0, 3.0), "{steps:?}");
}
