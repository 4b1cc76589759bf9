//! `medic run` end to end: parallel branches, retries with backoff, outputs and
//! progress lines, the exit code, and what `runs show`/`runs list` report afterwards.

use medic_tests::{CounterTarget, Medic, plan};
use serde_json::json;

use crate::{assert_succeeded_attempts_applied_once, context, effects, exit, run_args};

#[test]
fn a_plan_with_a_parallel_branch_and_retries_succeeds() {
    let medic = Medic::new();
    let target = CounterTarget::start();
    let args = run_args(
        &plan("counters.yaml"),
        &target,
        &[("b_succeeds_at", "3"), ("check_ms", "100")],
    );
    let out = medic.run(&args);
    let first = out.stdout.lines().next().unwrap_or_default().to_string();
    let run = first
        .strip_prefix("run ")
        .and_then(|rest| rest.split_whitespace().next())
        .filter(|_| {
            let word = first.split_whitespace().nth(2).unwrap_or_default();
            word.trim_end_matches(':') == "started"
        })
        .unwrap_or_else(|| panic!("first stdout line should be `run <RUN_ID> started ...`\n{out}"))
        .to_string();
    let ctx = || context(&medic, &run, &target, &out.to_string());
    out.expect_code(exit::SUCCEEDED, ctx);
    // One progress line per step transition: at least one line beyond the first
    // names each step.
    for step in ["start", "slow-check", "bump-a", "bump-b", "finish"] {
        assert!(
            out.stdout.lines().skip(1).any(|l| l.contains(step)),
            "no progress line names `{step}`\n{}",
            ctx()
        );
    }

    let view = medic.show(&run);
    assert_eq!(view.id, run);
    assert_eq!(view.status, "succeeded", "{}", ctx());
    for step in ["start", "slow-check", "bump-a", "bump-b", "finish"] {
        assert_eq!(view.step(step).status, "succeeded", "{step}\n{}", ctx());
        assert_eq!(view.step(step).undo_attempt, 0, "{step} was not undone");
    }
    // bump-b failed twice (retryable) and succeeded on its third and last attempt.
    let b = view.attempts_of("bump-b", false);
    assert_eq!(
        b.iter()
            .map(|a| (a.attempt, a.status.as_str()))
            .collect::<Vec<_>>(),
        [(1, "failed"), (2, "failed"), (3, "succeeded")],
        "{}",
        ctx()
    );
    assert_eq!(view.step("bump-b").attempt, 3);
    let keys: std::collections::HashSet<&str> = b.iter().map(|a| a.key.as_str()).collect();
    assert_eq!(keys.len(), 3, "each attempt has its own idempotency key");
    assert_eq!(
        view.step("bump-b").output,
        json!({"counter": "b", "value": 1})
    );
    assert_eq!(
        view.step("finish").output,
        json!({"counter": "c", "value": 100})
    );
    assert_eq!(view.step("slow-check").output, json!({"slept_ms": 100}));

    // The target saw each effect once, and nothing of the failed attempts.
    assert_eq!(
        effects(&target),
        [("a".into(), 10), ("b".into(), 1), ("c".into(), 100)],
        "{}",
        ctx()
    );
    target.assert_each_key_applied_once();
    assert_succeeded_attempts_applied_once(&view, &target, &["bump-a", "bump-b", "finish"]);

    let kinds = view.event_kinds();
    assert!(
        kinds.iter().filter(|k| *k == "attempt_failed").count() == 2,
        "two failed attempts in the event log: {kinds:?}"
    );

    // `runs list --json` knows the run and its outcome.
    let list = medic.run(["runs", "list", "--json"]);
    list.expect_code(0, String::new);
    let listed: serde_json::Value = serde_json::from_str(&list.stdout)
        .unwrap_or_else(|e| panic!("`runs list --json` is not JSON ({e})\n{list}"));
    let runs = listed
        .as_array()
        .or_else(|| listed.get("runs").and_then(|r| r.as_array()))
        .unwrap_or_else(|| panic!("`runs list --json` should list runs\n{list}"));
    assert!(
        runs.iter()
            .any(|r| r["id"] == json!(run) && r["status"] == json!("succeeded")),
        "run {run} listed as succeeded\n{list}"
    );
}

#[test]
fn bad_params_are_invalid_input() {
    let medic = Medic::new();
    let target = CounterTarget::start();
    let out = medic.run(run_args(
        &plan("counters.yaml"),
        &target,
        &[("b_succeeds_at", "three")],
    ));
    out.expect_code(exit::INVALID, String::new);
    assert!(
        out.stderr.contains("b_succeeds_at"),
        "the error names the param\n{out}"
    );
    assert!(target.applied().is_empty(), "nothing ran");
}

/// Under the default policy (`abort`) a failed step starts nothing new, lets the
/// step in flight finish, and the run fails with exit 1; nothing is undone.
#[test]
fn a_failed_step_aborts_the_run() {
    let medic = Medic::new();
    let target = CounterTarget::start();
    let path = medic.write(
        "abort.yaml",
        r#"apiVersion: medic/v1
kind: RecoveryPlan
metadata: { name: test-abort }
params:
  target: { type: string }
plugins:
  probe: { use: probe@0.1, grants: { connect: ["${{ params.target }}"] } }
steps:
  - id: bump
    uses: probe/counter-add
    with: { address: "${{ params.target }}", counter: kept, amount: 1 }
    undo: { uses: probe/counter-sub, with: { address: "${{ params.target }}", counter: kept, amount: 1 } }
  - id: broken
    needs: [bump]
    uses: probe/counter-add
    with: { address: "${{ params.target }}", counter: never, amount: 1, fail: true }
  - id: in-flight
    needs: [bump]
    uses: probe/sleep
    with: { ms: 300 }
  - id: later
    needs: [broken]
    uses: probe/noop
"#,
    );
    let out = medic.run(run_args(&path, &target, &[]));
    let run = out
        .stdout
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_string();
    let ctx = || context(&medic, &run, &target, &out.to_string());
    out.expect_code(exit::FAILED, ctx);
    let view = medic.show(&run);
    assert_eq!(view.status, "failed", "{}", ctx());
    assert_eq!(view.step("broken").status, "failed", "{}", ctx());
    let error = view.step("broken").error.to_string();
    assert!(
        error.contains("fail: true"),
        "the plugin's message is kept: {error}"
    );
    assert_eq!(view.step("in-flight").status, "succeeded", "{}", ctx());
    assert_eq!(view.step("later").status, "not_run", "{}", ctx());
    assert_eq!(
        view.step("bump").status,
        "succeeded",
        "abort undoes nothing"
    );
    assert_eq!(effects(&target), [("kept".into(), 1)], "{}", ctx());
}

#[test]
fn a_step_past_the_plugin_cpu_budget_fails_with_the_budget_named() {
    let medic = Medic::new();
    let plan = medic.write(
        "spin.yaml",
        "apiVersion: medic/v1\nkind: RecoveryPlan\nmetadata: { name: spin }\n\
         plugins: { probe: { use: probe@0.1 } }\n\
         steps: [{ id: busy, uses: probe/spin, with: { ms: 20000 } }]\n",
    );
    let started = std::time::Instant::now();
    let out = medic.run([
        "--plugin-cpu-budget",
        "250ms",
        "run",
        plan.to_str().unwrap(),
    ]);
    out.expect_code(exit::FAILED, || out.to_string());
    assert!(
        out.stdout.contains("CPU time") && out.stdout.contains("250ms"),
        "the step's error names the limit and the budget\n{out}"
    );
    // Stopped by the budget, long before the spin's 20 s.
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "{out}"
    );
}

/// Reported by two plugin authors: on wasm32-wasip2, std's `connect_timeout` said Ok
/// to a refused port (the refusal only showed at the first read as "not connected"),
/// so `probe/tcp-check` with `timeout_ms` passed against a closed port. Connections
/// now go through `medic_sdk::tcp::established`, with and without a deadline.
#[test]
fn a_tcp_check_of_a_closed_port_fails_with_and_without_a_deadline() {
    let medic = Medic::new();
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    for with in [
        format!("{{ address: \"{closed}\", timeout_ms: 500 }}"),
        format!("{{ address: \"{closed}\" }}"),
    ] {
        let plan = medic.write(
            "check.yaml",
            &format!(
                "apiVersion: medic/v1\nkind: RecoveryPlan\nmetadata: {{ name: check }}\n\
                 plugins: {{ probe: {{ use: probe@0.1, grants: {{ connect: [\"{closed}\"] }} }} }}\n\
                 steps: [{{ id: check, uses: probe/tcp-check, with: {with} }}]\n"
            ),
        );
        let out = medic.run(["run", plan.to_str().unwrap()]);
        out.expect_code(exit::FAILED, || format!("{with}\n{out}"));
        assert!(
            out.stdout
                .contains(&format!("connecting to {closed} failed")),
            "{with}\n{out}"
        );
    }
}
