//! Approval steps: `medic run` waits (persisted) until another process records
//! `medic approve` or `medic approve --reject`, then carries on or fails.

use std::time::Duration;

use medic_tests::{CounterTarget, Medic, plan};

use crate::{context, exit, run_args};

/// Starts the approval plan and returns once its run waits at `approve`.
fn at_the_gate(medic: &Medic, target: &CounterTarget) -> (medic_tests::Running, String) {
    let mut running = medic.spawn(run_args(&plan("approval.yaml"), target, &[]));
    let run = running.run_id();
    medic.wait_for_run(
        &run,
        Duration::from_secs(30),
        "step `approve` waiting for approval",
        |view| (view.step_status("approve") == Some("approval")).then_some(()),
        || running.describe(),
    );
    assert!(
        running.is_alive(),
        "medic run keeps running while it waits\n{}",
        running.describe()
    );
    assert_eq!(target.value("bumped"), 1);
    assert_eq!(target.value("after"), 0, "nothing after the gate ran yet");
    (running, run)
}

#[test]
fn approve_from_another_process_lets_the_run_finish() {
    let medic = Medic::new();
    let target = CounterTarget::start();
    let (running, run) = at_the_gate(&medic, &target);

    medic
        .run(["approve", &run, "approve", "--comment", "looks fine"])
        .expect_code(0, || running.describe());
    let out = running.wait(Duration::from_secs(30));
    let ctx = || context(&medic, &run, &target, &out.to_string());
    out.expect_code(exit::SUCCEEDED, ctx);

    let view = medic.show(&run);
    assert_eq!(view.status, "succeeded", "{}", ctx());
    assert_eq!(view.step("approve").status, "succeeded", "{}", ctx());
    assert_eq!(view.step("after").status, "succeeded", "{}", ctx());
    assert_eq!(target.value("bumped"), 1);
    assert_eq!(target.value("after"), 1);
    target.assert_each_key_applied_once();
    assert!(
        view.json["events"]
            .as_array()
            .is_some_and(|events| events.iter().any(|e| {
                e["kind"] == "approval_decided" && e["data"].to_string().contains("looks fine")
            })),
        "the decision and its comment are in the event log\n{}",
        ctx()
    );
}

#[test]
fn reject_fails_the_step_and_rolls_back() {
    let medic = Medic::new();
    let target = CounterTarget::start();
    let (running, run) = at_the_gate(&medic, &target);

    medic
        .run([
            "approve",
            &run,
            "approve",
            "--reject",
            "--comment",
            "not today",
        ])
        .expect_code(0, || running.describe());
    let out = running.wait(Duration::from_secs(30));
    let ctx = || context(&medic, &run, &target, &out.to_string());
    out.expect_code(exit::ROLLED_BACK, ctx);

    let view = medic.show(&run);
    assert_eq!(view.status, "rolled_back", "{}", ctx());
    assert_eq!(view.step("approve").status, "failed", "{}", ctx());
    assert_eq!(view.step("bump").status, "undone", "{}", ctx());
    assert_eq!(view.step("after").status, "not_run", "{}", ctx());
    assert_eq!(target.value("bumped"), 0, "the bump was undone\n{}", ctx());
    assert_eq!(target.value("after"), 0);
    assert_eq!(
        crate::effects(&target),
        [("bumped".into(), 1), ("bumped".into(), -1)],
        "{}",
        ctx()
    );
    target.assert_each_key_applied_once();
}

/// Cancelling a waiting run rolls it back like a failure, and ends it `cancelled`.
#[test]
fn cancel_from_another_process_rolls_back() {
    let medic = Medic::new();
    let target = CounterTarget::start();
    let (running, run) = at_the_gate(&medic, &target);

    medic
        .run(["cancel", &run])
        .expect_code(0, || running.describe());
    let out = running.wait(Duration::from_secs(30));
    let ctx = || context(&medic, &run, &target, &out.to_string());
    out.expect_code(exit::CANCELLED, ctx);

    let view = medic.show(&run);
    assert_eq!(view.status, "cancelled", "{}", ctx());
    assert_eq!(view.step("bump").status, "undone", "{}", ctx());
    assert_eq!(view.step("after").status, "not_run", "{}", ctx());
    assert_eq!(target.value("bumped"), 0, "{}", ctx());
    target.assert_each_key_applied_once();
}

/// Ctrl-C while waiting: medic says how to carry on, and the run does carry on after
/// an approval recorded while no process owned it.
#[test]
fn interrupted_at_the_gate_then_approved_and_resumed() {
    let medic = Medic::new();
    let target = CounterTarget::start();
    let (running, run) = at_the_gate(&medic, &target);
    let out = running.interrupt();
    out.expect_code(exit::INTERRUPTED, || out.to_string());
    assert!(
        out.stderr
            .contains(&format!("`medic resume {run}` carries on")),
        "the interrupt says how to carry on\n{out}"
    );
    assert_eq!(medic.show(&run).status, "running");

    let approved = medic.run(["approve", &run, "approve"]);
    approved.expect_code(0, || approved.to_string());
    assert!(
        approved.stdout.contains("no medic process is running it"),
        "{approved}"
    );
    let out = medic.run(["resume", &run]);
    let ctx = || context(&medic, &run, &target, &out.to_string());
    out.expect_code(exit::SUCCEEDED, ctx);
    assert_eq!(medic.show(&run).status, "succeeded", "{}", ctx());
    assert_eq!((target.value("bumped"), target.value("after")), (1, 1));
    target.assert_each_key_applied_once();
}
