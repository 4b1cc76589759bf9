//! `on_failure: rollback`: when a step fails for good, medic undoes exactly the
//! steps that completed, one at a time, in reverse topological order.

use medic_tests::{CounterTarget, Medic, plan};

use crate::{assert_succeeded_attempts_applied_once, context, effects, exit, run_args};

#[test]
fn a_failed_step_rolls_back_completed_steps_in_reverse_order() {
    let medic = Medic::new();
    let target = CounterTarget::start();
    let mut running = medic.spawn(run_args(&plan("rollback.yaml"), &target, &[]));
    let run = running.run_id();
    let out = running.wait(std::time::Duration::from_secs(60));
    let ctx = || context(&medic, &run, &target, &out.to_string());
    out.expect_code(exit::ROLLED_BACK, ctx);

    let view = medic.show(&run);
    assert_eq!(view.status, "rolled_back", "{}", ctx());
    let reason = view.reason.clone().unwrap_or_default();
    assert!(
        reason.contains("boom"),
        "the reason names the failed step: {reason:?}"
    );
    for step in ["a", "b", "c", "side"] {
        assert_eq!(view.step(step).status, "undone", "{step}\n{}", ctx());
    }
    assert_eq!(view.step("boom").status, "failed", "{}", ctx());
    assert_eq!(view.step("skipped").status, "skipped", "{}", ctx());
    assert_eq!(view.step("after").status, "not_run", "{}", ctx());

    // Forward effects, then only the undos of completed steps.
    let log = effects(&target);
    let (forward, undos) = log.split_at(4.min(log.len()));
    let mut forward = forward.to_vec();
    forward.sort();
    assert_eq!(
        forward,
        [
            ("a".to_string(), 1),
            ("b".to_string(), 2),
            ("c".to_string(), 3),
            ("side".to_string(), 4)
        ],
        "{}",
        ctx()
    );
    let undone: Vec<&str> = undos
        .iter()
        .map(|(counter, amount)| {
            assert!(*amount < 0, "after the failure only undos run: {log:?}");
            counter.as_str()
        })
        .collect();
    let mut sorted = undone.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        ["a", "b", "c", "side"],
        "one undo per completed step\n{}",
        ctx()
    );
    // Reverse topological: c before b before a, side before a. `side` and the chain
    // are independent, so their relative order is free.
    let at = |s: &str| undone.iter().position(|u| *u == s).unwrap();
    assert!(
        at("c") < at("b") && at("b") < at("a"),
        "chain undone in reverse: {undone:?}"
    );
    assert!(at("side") < at("a"), "side undone before a: {undone:?}");

    for counter in ["a", "b", "c", "side", "skipped", "boom", "after"] {
        assert_eq!(target.value(counter), 0, "counter {counter}\n{}", ctx());
    }
    target.assert_each_key_applied_once();
    assert_succeeded_attempts_applied_once(&view, &target, &["a", "b", "c", "side"]);
    // Undo attempts are attempts too, with their own keys.
    for step in ["a", "b", "c", "side"] {
        let undo = view.attempts_of(step, true);
        assert_eq!(undo.len(), 1, "{step}: one undo attempt\n{}", ctx());
        assert_eq!(undo[0].status, "succeeded");
        assert_eq!(target.times_applied(&undo[0].key), 1);
    }
}
