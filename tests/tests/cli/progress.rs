//! Plugins' progress reports as run events: `step_progress` in `GET /v1/runs/{id}`
//! and the event stream, rate-limited by the host, the last report always kept.

use medic_tests::{Medic, Server, plan};
use serde_json::{Value, json};

#[test]
fn progress_reports_become_rate_limited_step_progress_events_ending_with_the_last() {
    let medic = Medic::new();
    let token = medic.create_token("test-admin", "admin");
    let server = Server::start(&medic, Some(&token), &[]);
    let text = std::fs::read_to_string(plan("progress.yaml")).expect("test plan");
    // 40 reports over about two seconds.
    let body = json!({ "plan": text, "params": {"steps": 40, "interval_ms": 50} });
    let (status, _, created) = server.post("/v1/runs", &[], &body);
    assert_eq!(status, 201, "{created}");
    let run = created["id"].as_str().unwrap().to_owned();
    let view = server.wait_status(&run, "succeeded");

    let progress: Vec<&Value> = view["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| e["kind"] == "step_progress")
        .collect();
    let attempt = &view["attempts"][0];
    let ms = |v: &Value| v.as_i64().unwrap_or(0);
    let took = ms(&attempt["finished_at"]) - ms(&attempt["started_at"]);
    // About two a second, plus the first and the last: never one per report.
    let most = 2 + (took / 500) as usize + 1;
    assert!(
        (2..=most).contains(&progress.len()),
        "{} progress events for a {took} ms attempt (at most {most}): {}",
        progress.len(),
        server.describe(&run)
    );
    let last = progress.last().unwrap();
    assert_eq!(
        (
            &last["step"],
            &last["data"]["step"],
            &last["data"]["attempt"]
        ),
        (&json!("work"), &json!("work"), &json!(1)),
        "{last}"
    );
    assert_eq!(
        (
            &last["data"]["done"],
            &last["data"]["total"],
            &last["data"]["message"]
        ),
        (&json!(40), &json!(40), &json!("step 40 of 40")),
        "the last report is kept: {last}"
    );
    // Before the attempt's end in the log, so a watcher sees it while the step runs.
    let kinds: Vec<&str> = view["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap_or(""))
        .collect();
    let last_progress = kinds.iter().rposition(|k| *k == "step_progress").unwrap();
    let succeeded = kinds
        .iter()
        .position(|k| *k == "attempt_succeeded")
        .unwrap();
    assert!(last_progress < succeeded, "{kinds:?}");

    // The same events on the event stream.
    let streamed = server
        .events(&run, None)
        .into_iter()
        .filter(|(_, kind, _)| kind == "step_progress")
        .count();
    assert_eq!(streamed, progress.len());
}
