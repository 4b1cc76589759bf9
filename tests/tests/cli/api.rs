//! `medic serve`: the REST API over real HTTP against the real binary, the probe
//! plugin and the counter target. Runs are checked from outside: over the API, in the
//! target's log, and after a SIGKILL of the server.

use std::time::Duration;

use medic_tests::{CounterTarget, Medic, Server, plan, poll_until};
use serde_json::{Value, json};

/// `medic serve` with a fresh admin token (the default: tokens required); auth
/// itself is tested in `auth.rs`.
fn start(medic: &Medic) -> (Server, String) {
    let token = medic.create_token("test-admin", "admin");
    (Server::start(medic, Some(&token), &[]), token)
}

pub(crate) fn counters_body(target: &CounterTarget, params: &[(&str, Value)]) -> Value {
    let text = std::fs::read_to_string(plan("counters.yaml")).expect("test plan");
    let mut p = json!({ "target": target.address() });
    for (k, v) in params {
        p[*k] = v.clone();
    }
    json!({ "plan": text, "params": p })
}

#[test]
fn a_submitted_run_completes_once_even_when_submitted_twice_with_one_key() {
    let medic = Medic::new();
    let target = CounterTarget::start();
    let (server, _) = start(&medic);
    let body = counters_body(&target, &[]);
    let key = [("Idempotency-Key", "deploy-42")];
    let (status, _, first) = server.post("/v1/runs", &key, &body);
    assert_eq!(status, 201, "{first}");
    let run = first["id"].as_str().expect("run id").to_owned();
    let (status, _, again) = server.post("/v1/runs", &key, &body);
    assert_eq!(
        (status, again["id"].as_str()),
        (200, Some(run.as_str())),
        "same key, same run"
    );

    let view = server.wait_status(&run, "succeeded");
    assert_eq!(view["steps"].as_array().map(Vec::len), Some(5));
    let (_, _, list) = server.get("/v1/runs?status=succeeded");
    assert_eq!(
        list["runs"].as_array().map(Vec::len),
        Some(1),
        "one run, not two: {list}"
    );
    assert_eq!(
        (target.value("a"), target.value("b"), target.value("c")),
        (10, 1, 100)
    );
    target.assert_each_key_applied_once();
}

#[test]
fn the_event_stream_replays_in_order_and_resumes_after_last_event_id() {
    let medic = Medic::new();
    let target = CounterTarget::start();
    let (server, _) = start(&medic);
    let (status, _, created) = server.post("/v1/runs", &[], &counters_body(&target, &[]));
    assert_eq!(status, 201, "{created}");
    let run = created["id"].as_str().unwrap().to_owned();
    server.wait_status(&run, "succeeded");

    let all = server.events(&run, None);
    let ids: Vec<i64> = all
        .iter()
        .map(|(id, _, _)| id.parse().expect("numeric id"))
        .collect();
    assert_eq!(
        ids,
        (1..=ids.len() as i64).collect::<Vec<_>>(),
        "gap-free, in order"
    );
    assert_eq!(all.last().map(|e| e.1.as_str()), Some("run_status"));
    assert_eq!(all.last().unwrap().2["data"]["status"], "succeeded");

    let resumed = server.events(&run, Some("5"));
    assert_eq!(resumed.first().map(|e| e.0.as_str()), Some("6"));
    assert_eq!(resumed.len(), all.len() - 5);
}

#[test]
fn bad_input_gets_a_specific_problem_and_nothing_is_stored() {
    let medic = Medic::new();
    let (server, _) = start(&medic);
    let (status, ctype, body) = server.post_raw("/v1/runs", "{bad");
    assert_eq!(
        (status, ctype.as_str()),
        (400, "application/problem+json"),
        "{body}"
    );

    let invalid = json!({ "plan": "apiVersion: medic/v1\nkind: RecoveryPlan\nmetadata: {name: x}\nsteps:\n  - {id: a, uses: nope/x, needs: [b]}\n" });
    let (status, ctype, body) = server.post("/v1/runs", &[], &invalid);
    assert_eq!(
        (status, ctype.as_str()),
        (422, "application/problem+json"),
        "{body}"
    );
    assert_eq!(
        body["errors"],
        json!([
            {"path": "steps[0].uses", "line": 5, "column": 19,
             "message": "plugin alias `nope` is not declared; add it under `plugins:` (e.g. `nope: { use: NAME@VERSION }`)"},
            {"path": "steps[0].needs[0]", "line": 5, "column": 35, "message": "unknown step `b`; expected one of: a"}
        ])
    );
    let target = CounterTarget::start();
    let (status, _, body) = server.post(
        "/v1/runs",
        &[],
        &json!({ "plan": counters_body(&target, &[])["plan"], "params": {"target": 5} }),
    );
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["errors"][0]["path"], "params.target", "{body}");
    assert_eq!(
        body["errors"][0]["message"], "expected a string, found number 5",
        "{body}"
    );

    let (status, _, body) = server.get("/v1/runs/r-nope");
    assert_eq!(status, 404, "{body}");
    let (_, _, list) = server.get("/v1/runs");
    assert_eq!(list["runs"], json!([]), "nothing was stored");
    assert_eq!(target.applied().len(), 0);
}

#[test]
fn commands_are_checked_against_the_run_and_a_held_step_is_retried_over_http() {
    let medic = Medic::new();
    let target = CounterTarget::start();
    let (server, token) = start(&medic);
    // bump-a sleeps 3 s before its effect: long enough to SIGKILL the server there.
    let (_, _, created) = server.post(
        "/v1/runs",
        &[],
        &counters_body(&target, &[("a_before_ms", json!(3000))]),
    );
    let run = created["id"].as_str().unwrap().to_owned();
    poll_until(
        Duration::from_secs(30),
        "bump-a running",
        || {
            let (_, _, v) = server.get(&format!("/v1/runs/{run}"));
            v["steps"]
                .as_array()?
                .iter()
                .any(|s| s["id"] == "bump-a" && s["status"] == "running")
                .then_some(())
        },
        || server.running.describe(),
    );
    let (status, _, body) = server.post(
        &format!("/v1/runs/{run}/steps/finish/approve"),
        &[],
        &json!({}),
    );
    assert_eq!(status, 409, "finish is not waiting for approval: {body}");
    let (status, _, body) = server.post(
        &format!("/v1/runs/{run}/steps/ghost/retry"),
        &[],
        &json!({}),
    );
    assert_eq!(status, 404, "{body}");
    let Server { running, .. } = server;
    let killed = running.kill();
    assert_eq!(killed.code, 128 + 9, "{killed}");

    // A new server takes the orphaned run over at start-up: bump-a's mutating attempt
    // was in flight and its effect is not there, so the step is held, not re-run.
    let server = Server::start(&medic, Some(&token), &[]);
    let view = server.wait_status(&run, "held");
    assert!(
        view["run"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("bump-a")),
        "{view}"
    );
    assert_eq!(target.applied().len(), 0, "nothing applied blindly");
    let (status, _, body) = server.post(
        &format!("/v1/runs/{run}/steps/bump-a/retry"),
        &[],
        &json!({"by": "ops"}),
    );
    assert_eq!(status, 202, "{body}");
    server.wait_status(&run, "succeeded");
    assert_eq!(
        (target.value("a"), target.value("b"), target.value("c")),
        (10, 1, 100)
    );
    target.assert_each_key_applied_once();
}
