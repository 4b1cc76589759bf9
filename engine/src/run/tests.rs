//! The state machine's rules, one test per rule, driven by events alone.

use serde_json::{Value, json};

use super::*;
use crate::dag::Dag;
use crate::plan::{self, Format, Plan};

struct Sim {
    plan: Plan,
    dag: Dag,
    state: RunState,
    now: Ms,
}

impl Sim {
    fn new(steps: &str) -> Sim {
        Sim::with_head("", steps)
    }

    fn with_head(head: &str, steps: &str) -> Sim {
        let text = format!(
            "apiVersion: medic/v1\nkind: RecoveryPlan\nmetadata: {{ name: t }}\nplugins:\n  p: {{ use: probe@0.1 }}\n{head}steps:\n{steps}"
        );
        let plan =
            plan::parse("t.yaml", &text, Format::Yaml, None).unwrap_or_else(|d| panic!("{d}"));
        let dag = Dag::new(plan.steps.iter().map(|s| s.needs.clone()).collect()).unwrap();
        let state = RunState::new("r1".into(), json!({}), plan.steps.len());
        Sim {
            plan,
            dag,
            state,
            now: 1_000,
        }
    }

    fn ev(&mut self, e: Event) -> Outcome {
        transition(&mut self.state, &self.plan, &self.dag, e, self.now)
    }

    fn i(&self, id: &str) -> usize {
        self.plan.step_index(id).unwrap()
    }

    fn status(&self, id: &str) -> StepStatus {
        self.state.steps[self.i(id)].status
    }

    fn ok(&mut self, id: &str, attempt: u32) -> Outcome {
        let step = self.i(id);
        self.ev(Event::Finished {
            step,
            attempt,
            undo: false,
            result: Ok(json!({"from": id})),
        })
    }

    fn err(&mut self, id: &str, attempt: u32, retryable: bool) -> Outcome {
        let step = self.i(id);
        let result = Err(Failure {
            message: format!("{id} broke"),
            retryable,
        });
        self.ev(Event::Finished {
            step,
            attempt,
            undo: false,
            result,
        })
    }

    fn undo_ok(&mut self, id: &str, attempt: u32) -> Outcome {
        let step = self.i(id);
        self.ev(Event::Finished {
            step,
            attempt,
            undo: true,
            result: Ok(json!({})),
        })
    }

    /// Step ids of the `Invoke` effects, with `u:` before undo calls.
    fn invoked(&self, out: &Outcome) -> Vec<String> {
        out.effects
            .iter()
            .filter_map(|e| match e {
                Effect::Invoke(c) => Some(format!(
                    "{}{}",
                    if c.undo { "u:" } else { "" },
                    self.plan.steps[c.step].id
                )),
                _ => None,
            })
            .collect()
    }
}

const CHAIN: &str = "
  - { id: a, uses: p/noop }
  - { id: b, uses: p/noop, needs: [a], with: { from: '${{ steps.a.output.from }}' } }
";

#[test]
fn a_chain_runs_in_order_and_passes_outputs_downstream() {
    let mut s = Sim::new(CHAIN);
    let out = s.ev(Event::Start);
    assert_eq!(s.invoked(&out), ["a"]);
    let out = s.ok("a", 1);
    let Effect::Invoke(c) = &out.effects[0] else {
        panic!("{out:?}")
    };
    assert_eq!(c.params, json!({"from": "a"}));
    assert_eq!(c.key, "r1/b/1");
    assert_eq!(s.state.status, RunStatus::Running);
    let out = s.ok("b", 1);
    assert_eq!(s.state.status, RunStatus::Succeeded);
    assert!(out.log.contains(&Entry::RunStatus {
        status: RunStatus::Succeeded,
        reason: None
    }));
}

#[test]
fn a_retryable_failure_backs_off_then_starts_the_next_attempt() {
    let mut s = Sim::new(
        "  - { id: a, uses: p/noop, retry: { attempts: 3, initial: 2s, jitter: false } }\n",
    );
    s.ev(Event::Start);
    let out = s.err("a", 1, true);
    assert_eq!(out.effects, vec![Effect::Wake { step: 0, at: 3_000 }]);
    assert_eq!(s.status("a"), StepStatus::Backoff);
    // A timer that fires early changes nothing but asks again.
    s.now = 2_999;
    assert_eq!(
        s.ev(Event::Due { step: 0 }).effects,
        vec![Effect::Wake { step: 0, at: 3_000 }]
    );
    s.now = 3_000;
    let out = s.ev(Event::Due { step: 0 });
    assert_eq!(s.invoked(&out), ["a"]);
    assert_eq!(s.state.steps[0].attempt, 2);
    // The second backoff doubles.
    let out = s.err("a", 2, true);
    assert_eq!(out.effects, vec![Effect::Wake { step: 0, at: 7_000 }]);
    s.now = 7_000;
    s.ev(Event::Due { step: 0 });
    s.err("a", 3, true);
    assert_eq!(s.status("a"), StepStatus::Failed);
    assert_eq!(s.state.status, RunStatus::Failed);
    assert_eq!(
        s.state.reason.as_deref(),
        Some("step `a` failed: attempt 3 of 3 failed: a broke")
    );
}

#[test]
fn a_permanent_failure_is_not_retried_and_abort_leaves_the_rest_not_run() {
    let mut s = Sim::new(
        "  - { id: a, uses: p/noop, retry: { attempts: 5 } }\n  - { id: b, uses: p/noop }\n  - { id: c, uses: p/noop, needs: [a] }\n",
    );
    s.ev(Event::Start);
    let out = s.err("a", 1, false);
    assert!(out.effects.is_empty());
    assert_eq!(s.status("c"), StepStatus::NotRun);
    // b was in flight: the run waits for it before it is failed.
    assert_eq!(s.state.status, RunStatus::Running);
    s.ok("b", 1);
    assert_eq!(s.state.status, RunStatus::Failed);
}

#[test]
fn rollback_waits_for_in_flight_steps_then_undoes_in_reverse_topological_order() {
    let mut s = Sim::with_head(
        "on_failure: rollback\n",
        "
  - { id: a, uses: p/counter-add, undo: { uses: p/counter-sub } }
  - { id: b, uses: p/counter-add, needs: [a], undo: { uses: p/counter-sub } }
  - { id: c, uses: p/noop, needs: [a] }
  - { id: d, uses: p/counter-add, needs: [a], undo: { uses: p/counter-sub } }
  - { id: e, uses: p/noop, needs: [b, c, d] }
",
    );
    s.ev(Event::Start);
    s.ok("a", 1);
    s.ok("b", 1);
    let out = s.err("c", 1, false);
    // d is still running: nothing is undone yet, e never starts.
    assert!(s.invoked(&out).is_empty());
    assert_eq!(s.status("e"), StepStatus::NotRun);
    assert_eq!(s.state.status, RunStatus::RollingBack);
    let out = s.ok("d", 1);
    assert_eq!(s.invoked(&out), ["u:d"]);
    let out = s.undo_ok("d", 1);
    assert_eq!(s.invoked(&out), ["u:b"]);
    let out = s.undo_ok("b", 1);
    assert_eq!(s.invoked(&out), ["u:a"]);
    s.undo_ok("a", 1);
    assert_eq!(s.state.status, RunStatus::RolledBack);
    assert_eq!(s.status("c"), StepStatus::Failed);
}

#[test]
fn an_undo_that_fails_for_good_holds_the_run_until_an_operator_decides() {
    let mut s = Sim::with_head(
        "on_failure: rollback\n",
        "  - { id: a, uses: p/counter-add, undo: { uses: p/counter-sub } }\n  - { id: b, uses: p/noop, needs: [a] }\n",
    );
    s.ev(Event::Start);
    s.ok("a", 1);
    s.err("b", 1, false);
    let step = s.i("a");
    s.ev(Event::Finished {
        step,
        attempt: 1,
        undo: true,
        result: Err(Failure {
            message: "gone".into(),
            retryable: false,
        }),
    });
    assert_eq!(s.status("a"), StepStatus::Held);
    assert_eq!(s.state.status, RunStatus::Held);
    let reason = s.state.reason.clone().unwrap();
    assert!(
        reason.contains("undo of `a` failed after 1 attempt(s): gone"),
        "{reason}"
    );
    assert!(reason.contains("medic retry r1 a"), "{reason}");
    let out = s.ev(Event::Resolve {
        step,
        resolution: Resolution::Retry,
        by: "ops".into(),
    });
    assert_eq!(s.invoked(&out), ["u:a"]);
    assert_eq!(s.state.steps[step].undo_attempt, 2);
    s.undo_ok("a", 2);
    assert_eq!(s.state.status, RunStatus::RolledBack);
}

#[test]
fn approvals_wait_and_time_out_as_declared() {
    let steps = "
  - { id: gate, approval: { prompt: 'go?', timeout: 30m, on_timeout: reject } }
  - { id: after, uses: p/noop, needs: [gate] }
";
    let mut s = Sim::new(steps);
    let out = s.ev(Event::Start);
    assert_eq!(
        out.effects,
        vec![Effect::Wake {
            step: 0,
            at: 1_000 + 30 * 60_000
        }]
    );
    assert_eq!(s.status("gate"), StepStatus::Approval);
    let out = s.ev(Event::Decision {
        step: 0,
        approve: true,
        by: "alice".into(),
        comment: None,
    });
    assert_eq!(s.invoked(&out), ["after"]);
    assert_eq!(
        s.state.steps[0].output,
        Some(json!({"approved": true, "by": "alice", "comment": null}))
    );

    let mut s = Sim::new(steps);
    s.ev(Event::Start);
    s.now += 30 * 60_000;
    s.ev(Event::Due { step: 0 });
    assert_eq!(s.status("gate"), StepStatus::Failed);
    assert_eq!(s.status("after"), StepStatus::NotRun);
    assert_eq!(
        s.state.reason.as_deref(),
        Some("step `gate` failed: approval timed out after 30m (on_timeout: reject)")
    );
}

#[test]
fn a_false_condition_skips_the_step_and_its_dependents_still_run() {
    let mut s = Sim::new(
        "  - { id: a, uses: p/noop, when: 'false' }\n  - { id: b, uses: p/noop, needs: [a] }\n",
    );
    let out = s.ev(Event::Start);
    assert_eq!(s.invoked(&out), ["b"]);
    assert_eq!(s.status("a"), StepStatus::Skipped);
}

#[test]
fn continue_tolerates_a_failure() {
    let mut s = Sim::new(
        "  - { id: a, uses: p/noop, on_failure: continue }\n  - { id: b, uses: p/noop, needs: [a] }\n",
    );
    s.ev(Event::Start);
    let out = s.err("a", 1, false);
    assert_eq!(s.invoked(&out), ["b"]);
    s.ok("b", 1);
    assert_eq!(s.state.status, RunStatus::Succeeded);
}

#[test]
fn concurrency_bounds_the_steps_in_flight() {
    let steps: String = (0..5)
        .map(|i| format!("  - {{ id: s{i}, uses: p/noop }}\n"))
        .collect();
    let mut s = Sim::with_head("concurrency: 2\n", &steps);
    let out = s.ev(Event::Start);
    assert_eq!(s.invoked(&out), ["s0", "s1"]);
    let out = s.ok("s1", 1);
    assert_eq!(s.invoked(&out), ["s2"]);
    assert_eq!(s.state.in_flight(), 2);
}

/// A run read back after a crash with `a` in flight.
fn crashed(effect_steps: &str) -> Sim {
    crashed_with("", effect_steps)
}

/// Like [`crashed`], with plan fields before `steps:`.
fn crashed_with(head: &str, effect_steps: &str) -> Sim {
    let mut s = Sim::with_head(head, effect_steps);
    s.ev(Event::Start);
    let steps = s.state.steps.clone();
    s.state = RunState::restore(
        "r1".into(),
        RunStatus::Running,
        None,
        None,
        json!({}),
        steps,
    );
    s
}

#[test]
fn recovery_observes_in_flight_attempts_instead_of_re_running_them() {
    let mut s = crashed("  - { id: a, uses: p/counter-add }\n");
    let out = recover(&mut s.state, &s.plan, &s.dag, s.now);
    let Effect::Observe(c) = &out.effects[0] else {
        panic!("{out:?}")
    };
    assert_eq!(
        (c.step, c.attempt, c.undo, c.key.as_str()),
        (0, 1, false, "r1/a/1")
    );
    assert!(s.invoked(&out).is_empty());
    s.ev(Event::Observed {
        step: 0,
        attempt: 1,
        undo: false,
        observed: Observed::Done(json!({"v": 1})),
        effect: EffectClass::Mutating,
    });
    assert_eq!(s.status("a"), StepStatus::Succeeded);
    assert_eq!(s.state.status, RunStatus::Succeeded);
}

#[test]
fn recovery_re_runs_an_idempotent_action_with_the_same_key() {
    let mut s = crashed("  - { id: a, uses: p/sleep }\n");
    recover(&mut s.state, &s.plan, &s.dag, s.now);
    let out = s.ev(Event::Observed {
        step: 0,
        attempt: 1,
        undo: false,
        observed: Observed::NotDone,
        effect: EffectClass::Idempotent,
    });
    let Effect::Invoke(c) = &out.effects[0] else {
        panic!("{out:?}")
    };
    assert_eq!((c.attempt, c.key.as_str()), (1, "r1/a/1"));
}

#[test]
fn recovery_holds_a_mutating_action_whose_effect_is_not_there() {
    let mut s =
        crashed("  - { id: a, uses: p/counter-add }\n  - { id: b, uses: p/noop, needs: [a] }\n");
    recover(&mut s.state, &s.plan, &s.dag, s.now);
    let out = s.ev(Event::Observed {
        step: 0,
        attempt: 1,
        undo: false,
        observed: Observed::NotDone,
        effect: EffectClass::Mutating,
    });
    assert!(out.effects.is_empty());
    assert_eq!(s.status("a"), StepStatus::Held);
    assert_eq!(s.state.status, RunStatus::Held);
    assert_eq!(
        s.state.reason.as_deref(),
        Some(
            "`a` (p/counter-add, mutating) was in flight when medic stopped and observe says the effect is not done: \
             running it again could apply it twice. Check the target, then `medic retry r1 a` to run it again, \
             `medic done r1 a` if the effect is there (recorded as done, so a rollback undoes it) or \
             `medic skip r1 a` to go on without it"
        )
    );
    let out = s.ev(Event::Resolve {
        step: 0,
        resolution: Resolution::Retry,
        by: "ops".into(),
    });
    let Effect::Invoke(c) = &out.effects[0] else {
        panic!("{out:?}")
    };
    assert_eq!((c.attempt, c.key.as_str()), (2, "r1/a/2"));
    assert_eq!(s.state.status, RunStatus::Running);
}

/// Found by the chaos harness: an operator who found a held step's effect on the
/// target had only `skip`, which records the step skipped, so a later rollback left
/// that effect in place. `done` records it succeeded, and the rollback undoes it.
#[test]
fn a_held_step_marked_done_is_undone_by_a_later_rollback_and_a_skipped_one_is_not() {
    let steps = "  - { id: a, uses: p/counter-add, undo: { uses: p/counter-sub } }\n  - { id: b, uses: p/noop, needs: [a] }\n";
    for (resolution, undone) in [(Resolution::Done, true), (Resolution::Skip, false)] {
        let mut s = crashed_with("on_failure: rollback\n", steps);
        recover(&mut s.state, &s.plan, &s.dag, s.now);
        s.ev(Event::Observed {
            step: 0,
            attempt: 1,
            undo: false,
            observed: Observed::NotDone,
            effect: EffectClass::Mutating,
        });
        assert_eq!(s.status("a"), StepStatus::Held);
        let out = s.ev(Event::Resolve {
            step: 0,
            resolution: resolution.clone(),
            by: "ops".into(),
        });
        assert!(
            out.log.contains(&Entry::StepResolved {
                step: "a".into(),
                resolution: if undone { "done" } else { "skip" }.into(),
                by: "ops".into()
            }),
            "{out:?}"
        );
        assert_eq!(
            s.status("a"),
            if undone {
                StepStatus::Succeeded
            } else {
                StepStatus::Skipped
            }
        );
        assert_eq!(s.invoked(&out), ["b"], "the run goes on either way");
        let out = s.err("b", 1, false);
        let undos: Vec<(usize, bool)> = out
            .effects
            .iter()
            .filter_map(|e| match e {
                Effect::Invoke(c) => Some((c.step, c.undo)),
                _ => None,
            })
            .collect();
        if undone {
            assert_eq!(undos, [(0, true)], "{resolution:?}: a's undo runs");
            s.ev(Event::Finished {
                step: 0,
                attempt: 1,
                undo: true,
                result: Ok(json!({})),
            });
            assert_eq!(s.state.status, RunStatus::RolledBack);
        } else {
            assert!(undos.is_empty(), "{resolution:?}: {out:?}");
            assert_eq!(s.state.status, RunStatus::RolledBack);
        }
    }
}

#[test]
fn late_results_for_settled_attempts_are_ignored() {
    let mut s = Sim::new(CHAIN);
    s.ev(Event::Start);
    s.ok("a", 1);
    let before = s.state.clone();
    let out = s.ok("a", 1);
    assert_eq!(out, Outcome::default());
    assert_eq!(s.state, before);
}

#[test]
fn cancel_undoes_completed_steps_and_ends_cancelled() {
    let mut s = Sim::new(
        "  - { id: a, uses: p/counter-add, undo: { uses: p/counter-sub } }\n  - { id: b, uses: p/noop, needs: [a] }\n",
    );
    s.ev(Event::Start);
    s.ok("a", 1);
    let out = s.ev(Event::Cancel { by: "bob".into() });
    // b is in flight: wait for it.
    assert!(s.invoked(&out).is_empty());
    let out = s.ok("b", 1);
    assert_eq!(s.invoked(&out), ["u:a"]);
    s.undo_ok("a", 1);
    assert_eq!(s.state.status, RunStatus::Cancelled);
    assert_eq!(s.state.reason.as_deref(), Some("cancelled by bob"));
}

#[test]
fn backoff_is_exponential_capped_and_jittered_within_a_quarter() {
    let retry = plan::Retry {
        attempts: 10,
        backoff: plan::Backoff::Exponential,
        initial: std::time::Duration::from_secs(1),
        max: std::time::Duration::from_secs(10),
        jitter: false,
    };
    let d: Vec<Ms> = (1..=6).map(|a| transition::delay(&retry, a, "k")).collect();
    assert_eq!(d, [1_000, 2_000, 4_000, 8_000, 10_000, 10_000]);
    let jittered = plan::Retry {
        jitter: true,
        ..retry
    };
    for a in 1..=4 {
        for k in ["r/a/1", "r/b/1", "r/c/2"] {
            let base = transition::delay(&retry, a, k);
            let j = transition::delay(&jittered, a, k);
            assert!((base * 3 / 4..=base * 5 / 4).contains(&j), "{j} vs {base}");
        }
    }
    // The same key always gets the same delay: a replay agrees with the original.
    assert_eq!(
        transition::delay(&jittered, 3, "r/a/3"),
        transition::delay(&jittered, 3, "r/a/3")
    );
}

#[test]
fn scope_values_are_json() {
    let mut s = Sim::new(CHAIN);
    s.ev(Event::Start);
    s.ok("a", 1);
    assert_eq!(
        s.state.scope()["steps"]["a"],
        json!({"status": "succeeded", "output": {"from": "a"}})
    );
    assert_eq!(s.state.scope()["run"]["id"], Value::String("r1".into()));
}

#[test]
fn statuses_round_trip_through_their_names() {
    for st in RunStatus::ALL {
        assert_eq!(RunStatus::parse(st.as_str()), Some(st));
    }
    for st in StepStatus::ALL {
        assert_eq!(StepStatus::parse(st.as_str()), Some(st));
    }
    assert_eq!(
        RunStatus::parse_input("done"),
        Err("unknown status `done`: expected one of waiting, running, rolling_back, held, succeeded, failed, rolled_back, cancelled".into())
    );
}

/// The objective entry a run of `s` would record on ending at `s.now`, created at 0.
fn objective(s: &Sim) -> (bool, Option<Ms>, String) {
    match objective::measure(&s.plan, &s.state, 0, s.now) {
        Some(Entry::Objective {
            met,
            elapsed_ms,
            summary,
            ..
        }) => (met, elapsed_ms, summary),
        other => panic!("{other:?}"),
    }
}

const DRILL: &str = "  - { id: break, uses: p/noop }
  - { id: repair, uses: p/noop, needs: [break] }
  - { id: verify, uses: p/noop, needs: [repair] }
  - { id: report, uses: p/noop, needs: [verify] }
";

#[test]
fn an_objective_is_measured_from_the_run_start_to_its_end() {
    let mut s = Sim::with_head("objective: { within: 10s }\n", DRILL);
    s.ev(Event::Start);
    for id in ["break", "repair", "verify", "report"] {
        s.ok(id, 1);
    }
    s.now = 10_000;
    assert_eq!(
        objective(&s),
        (
            true,
            Some(10_000),
            "objective of 10s met: recovered in 10.0s".into()
        )
    );
    s.now = 10_001;
    let (met, elapsed, summary) = objective(&s);
    assert!(!met);
    assert_eq!(elapsed, Some(10_001));
    assert_eq!(
        summary,
        "objective of 10s missed: recovery took 10.0s, 1ms too long"
    );
}

#[test]
fn an_objective_between_steps_ignores_what_runs_before_and_after() {
    let mut s = Sim::with_head(
        "objective: { within: 1m, from: break, to: verify }\n",
        DRILL,
    );
    s.ev(Event::Start);
    s.now = 5_000;
    s.ok("break", 1);
    s.now = 65_000;
    s.ok("repair", 1);
    s.now = 65_000; // verify ends exactly 60 s after break did
    s.ok("verify", 1);
    s.now = 500_000; // a slow report does not count
    s.ok("report", 1);
    assert_eq!(s.state.status, RunStatus::Succeeded);
    assert_eq!(
        objective(&s),
        (
            true,
            Some(60_000),
            "objective of 1m met: recovered in 1m".into()
        )
    );
}

#[test]
fn a_failed_run_or_a_clock_that_never_started_misses_the_objective() {
    // The run fails quickly: fast is not enough, it must have recovered.
    let mut s = Sim::with_head("objective: { within: 1h }\n", DRILL);
    s.ev(Event::Start);
    s.ok("break", 1);
    s.err("repair", 1, false);
    assert_eq!(s.state.status, RunStatus::Failed);
    let (met, elapsed, summary) = objective(&s);
    assert!(!met);
    assert_eq!(elapsed, Some(1_000));
    assert_eq!(
        summary,
        "objective of 1h missed: the run ended failed after 1.0s"
    );

    // `from` never succeeded: there is no elapsed time to speak of.
    let mut s = Sim::with_head("objective: { within: 1h, from: break }\n", DRILL);
    s.ev(Event::Start);
    s.err("break", 1, false);
    let (met, elapsed, summary) = objective(&s);
    assert!(!met);
    assert_eq!(elapsed, None);
    assert_eq!(
        summary,
        "objective of 1h missed: the clock never started: step `break` (from) ended failed"
    );

    // `to` did not succeed although the run did not stop there (on_failure: continue).
    let mut s = Sim::with_head(
        "on_failure: continue\nobjective: { within: 1h, to: verify }\n",
        DRILL,
    );
    s.ev(Event::Start);
    s.ok("break", 1);
    s.ok("repair", 1);
    s.err("verify", 1, false);
    let (met, _, summary) = objective(&s);
    assert!(!met);
    assert_eq!(
        summary,
        "objective of 1h missed: step `verify` (to) ended failed after 1.0s"
    );
}

#[test]
fn a_plan_without_an_objective_records_none() {
    let mut s = Sim::new(DRILL);
    s.ev(Event::Start);
    assert_eq!(objective::measure(&s.plan, &s.state, 0, s.now), None);
}
