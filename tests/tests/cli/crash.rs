//! Crash tests: SIGKILL the real `medic run` while a step (or an undo) is in flight,
//! restart with `medic resume RUN`, and check from outside, in the counter target's
//! log and `runs show`, that nothing was applied twice, nothing was lost, and what
//! could not be decided safely was held for an operator.
//!
//! Each kill point is held open by a deliberate delay in the plan's params (seconds),
//! and the test waits for it by polling `runs show` or by waiting on the target's
//! log, never by sleeping blindly.

use std::time::Duration;

use medic_tests::{
    CounterTarget, Finished, MariaDb, Medic, RunView, Running, TEST_PASSWORD, TEST_USER, plan,
    poll_until,
};
use serde_json::json;

use crate::{assert_succeeded_attempts_applied_once, context, effects, exit, run_args};

/// Long enough that a kill lands inside the delay with a wide margin (the poll
/// interval is 40 ms), short enough to keep every scenario within a few seconds.
const HOLD_MS: &str = "3000";
const WAIT: Duration = Duration::from_secs(30);

struct Crash {
    medic: Medic,
    target: CounterTarget,
    run: String,
    /// What the killed process printed, for failure messages.
    killed: Option<Finished>,
}

impl Crash {
    fn start(params: &[(&str, &str)]) -> (Crash, Running) {
        let medic = Medic::new();
        let target = CounterTarget::start();
        let mut running = medic.spawn(run_args(&plan("counters.yaml"), &target, params));
        let run = running.run_id();
        let crash = Crash {
            medic,
            target,
            run,
            killed: None,
        };
        (crash, running)
    }

    /// Polls `runs show` until `check` holds, while `running` is still alive.
    fn wait_until(&self, running: &Running, what: &str, check: impl Fn(&RunView) -> bool) {
        self.medic.wait_for_run(
            &self.run,
            WAIT,
            what,
            |view| check(view).then_some(()),
            || {
                format!(
                    "--- counter target applied ---\n{}{}",
                    self.target.describe(),
                    running.describe()
                )
            },
        );
    }

    fn kill(&mut self, running: Running) {
        let killed = running.kill();
        assert_eq!(killed.code, 128 + 9, "medic died of SIGKILL\n{killed}");
        self.killed = Some(killed);
    }

    fn show(&self) -> RunView {
        self.medic.show(&self.run)
    }

    fn resume(&self) -> Finished {
        self.medic.run(["resume", &self.run])
    }

    fn context(&self, out: &Finished) -> String {
        let killed = self
            .killed
            .as_ref()
            .map(|k| format!("\n--- the killed process ---\n{k}"))
            .unwrap_or_default();
        context(
            &self.medic,
            &self.run,
            &self.target,
            &format!("{out}{killed}"),
        )
    }

    /// The forward path completed: every step succeeded, each counter moved once.
    fn assert_succeeded(&self, out: &Finished) {
        let ctx = || self.context(out);
        out.expect_code(exit::SUCCEEDED, ctx);
        let view = self.show();
        assert_eq!(view.status, "succeeded", "{}", ctx());
        for step in ["start", "slow-check", "bump-a", "bump-b", "finish"] {
            assert_eq!(view.step(step).status, "succeeded", "{step}\n{}", ctx());
        }
        assert_eq!(
            effects(&self.target),
            [("a".into(), 10), ("b".into(), 1), ("c".into(), 100)],
            "each counter-add applied exactly once, in dependency order\n{}",
            ctx()
        );
        assert_eq!(
            (
                self.target.value("a"),
                self.target.value("b"),
                self.target.value("c")
            ),
            (10, 1, 100)
        );
        self.target.assert_each_key_applied_once();
        assert_succeeded_attempts_applied_once(
            &view,
            &self.target,
            &["bump-a", "bump-b", "finish"],
        );
        assert_eq!(
            view.step("finish").output,
            json!({"counter": "c", "value": 100}),
            "{}",
            ctx()
        );
    }

    /// The rollback completed: forward effects then their undos in reverse
    /// topological order, each exactly once, and `finish` (which failed) never undone.
    fn assert_rolled_back(&self, out: &Finished) {
        let ctx = || self.context(out);
        out.expect_code(exit::ROLLED_BACK, ctx);
        let view = self.show();
        assert_eq!(view.status, "rolled_back", "{}", ctx());
        assert_eq!(view.step("finish").status, "failed", "{}", ctx());
        assert_eq!(view.step("bump-b").status, "undone", "{}", ctx());
        assert_eq!(view.step("bump-a").status, "undone", "{}", ctx());
        assert_eq!(
            effects(&self.target),
            [
                ("a".into(), 10),
                ("b".into(), 1),
                ("b".into(), -1),
                ("a".into(), -10)
            ],
            "undos once each, bump-b's before bump-a's\n{}",
            ctx()
        );
        for counter in ["a", "b", "c"] {
            assert_eq!(
                self.target.value(counter),
                0,
                "counter {counter}\n{}",
                ctx()
            );
        }
        self.target.assert_each_key_applied_once();
        assert_succeeded_attempts_applied_once(&view, &self.target, &["bump-a", "bump-b"]);
        assert!(
            view.attempts_of("finish", true).is_empty(),
            "a failed step has nothing to undo\n{}",
            ctx()
        );
    }

    /// medic asked the target whether this attempt's effect held, instead of guessing.
    fn assert_observed(&self, key: &str) {
        assert!(
            self.target
                .requests()
                .iter()
                .any(|r| r == &format!("HAS {key}")),
            "resume should `observe` the in-flight attempt {key} (a HAS request)\nrequests: {:?}",
            self.target.requests()
        );
    }

    /// The attempt of `step` (or of its undo) that was in flight when medic died.
    fn in_flight(&self, view: &RunView, step: &str, undo: bool) -> String {
        let attempts = view.attempts_of(step, undo);
        let last = attempts.last().unwrap_or_else(|| {
            panic!(
                "no attempt of {step} (undo: {undo}) recorded before the kill\n{}",
                view.pretty()
            )
        });
        assert_eq!(
            last.status,
            "started",
            "the attempt was recorded as started before the plugin ran\n{}",
            view.pretty()
        );
        last.key.clone()
    }
}

/// (a) A read-only step in flight: resume finds it not done and simply runs it again.
#[test]
fn killed_during_a_read_only_step_resume_reruns_it() {
    let (mut crash, running) = Crash::start(&[("check_ms", HOLD_MS)]);
    crash.wait_until(&running, "slow-check running after bump-b succeeded", |v| {
        v.step_status("slow-check") == Some("running")
            && v.step_status("bump-b") == Some("succeeded")
    });
    crash.kill(running);

    let view = crash.show();
    assert_eq!(view.status, "running", "the crash left the run unfinished");
    assert_eq!(view.step("slow-check").status, "running");
    crash.in_flight(&view, "slow-check", false);
    assert_eq!(view.step("finish").status, "pending");

    let out = crash.resume();
    crash.assert_succeeded(&out);
    let view = crash.show();
    assert_eq!(
        view.step("slow-check").output,
        json!({"slept_ms": 3000}),
        "slow-check ran again to get its output\n{}",
        crash.context(&out)
    );
    assert!(
        view.attempts_of("slow-check", false)
            .last()
            .is_some_and(|a| a.status == "succeeded"),
        "{}",
        crash.context(&out)
    );
    // Everything bump-a and bump-b did before the crash stands: resume did not touch them.
    assert_eq!(view.attempts_of("bump-a", false).len(), 1);
    assert_eq!(view.attempts_of("bump-b", false).len(), 2);
}

/// (b) A mutating step in flight before its effect landed: `observe` says not done,
/// and re-running a non-idempotent action could apply it twice, so resume holds the
/// step and tells the operator what to do; `medic retry` + `medic resume` finish it.
#[test]
fn killed_before_a_mutation_landed_resume_holds_until_retry() {
    let (mut crash, running) = Crash::start(&[("a_before_ms", HOLD_MS)]);
    crash.wait_until(&running, "bump-a running", |v| {
        v.step_status("bump-a") == Some("running")
    });
    crash.kill(running);
    assert!(
        crash.target.applied().is_empty(),
        "the kill landed before bump-a's ADD\n{}",
        crash.target.describe()
    );
    let lost_key = crash.in_flight(&crash.show(), "bump-a", false);

    let out = crash.resume();
    let ctx = || crash.context(&out);
    out.expect_code(exit::HELD, ctx);
    assert_eq!(
        crash.target.times_applied(&lost_key),
        0,
        "held, not re-run\n{}",
        ctx()
    );
    crash.assert_observed(&lost_key);
    let view = crash.show();
    assert_eq!(view.status, "held", "{}", ctx());
    assert_eq!(view.step("bump-a").status, "held", "{}", ctx());
    assert_eq!(view.step("bump-b").status, "pending", "{}", ctx());
    let reason = view
        .step("bump-a")
        .error
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        reason.contains("bump-a")
            && reason.contains(&format!("medic retry {} bump-a", crash.run))
            && reason.contains(&format!("medic skip {} bump-a", crash.run)),
        "the hold names the step and the commands that resolve it: {reason:?}\n{}",
        ctx()
    );
    assert!(
        view.event_kinds().iter().any(|k| k == "step_held"),
        "{}",
        ctx()
    );

    crash
        .medic
        .run(["retry", &crash.run, "bump-a"])
        .expect_code(0, ctx);
    let out = crash.resume();
    crash.assert_succeeded(&out);
    let view = crash.show();
    assert_eq!(
        crash.target.times_applied(&lost_key),
        0,
        "the lost attempt's key never landed; the retry is a new attempt with its own key"
    );
    let attempts = view.attempts_of("bump-a", false);
    assert!(
        attempts.len() >= 2,
        "retry made a new attempt\n{}",
        crash.context(&out)
    );
    assert_eq!(attempts.last().unwrap().status, "succeeded");
}

/// (c) A mutating step in flight after its effect landed but before medic recorded
/// it: `observe` finds the effect, so resume records success and never applies it
/// again.
#[test]
fn killed_after_a_mutation_landed_resume_observes_it_done() {
    let (mut crash, running) = Crash::start(&[("a_after_ms", HOLD_MS)]);
    let key = crash.target.wait_for(
        WAIT,
        "bump-a's ADD on counter a",
        |applied| {
            applied
                .iter()
                .find(|a| a.counter == "a")
                .map(|a| a.key.clone())
        },
        || running.describe(),
    );
    crash.kill(running);

    let view = crash.show();
    assert_eq!(
        view.step("bump-a").status,
        "running",
        "medic had not recorded the result"
    );
    assert_eq!(crash.in_flight(&view, "bump-a", false), key);

    let out = crash.resume();
    crash.assert_succeeded(&out);
    crash.assert_observed(&key);
    let view = crash.show();
    assert_eq!(crash.target.times_applied(&key), 1);
    assert_eq!(
        view.step("bump-a").output,
        json!({"counter": "a", "value": 10}),
        "the observed output stands in for the lost one\n{}",
        crash.context(&out)
    );
    assert_eq!(
        view.attempts_of("bump-a", false).len(),
        1,
        "no new attempt: the first one was done\n{}",
        crash.context(&out)
    );
}

/// (d) Killed during rollback, after an undo's effect landed: resume observes it
/// done, does not apply it again, and finishes the remaining undos in order.
#[test]
fn killed_during_an_undo_resume_finishes_the_rollback() {
    let (mut crash, running) =
        Crash::start(&[("fail_finish", "true"), ("undo_b_after_ms", HOLD_MS)]);
    let key = crash.target.wait_for(
        WAIT,
        "bump-b's undo (ADD b -1)",
        |applied| {
            applied
                .iter()
                .find(|a| a.counter == "b" && a.amount < 0)
                .map(|a| a.key.clone())
        },
        || running.describe(),
    );
    crash.kill(running);

    let view = crash.show();
    assert_eq!(view.status, "rolling_back", "{}", view.pretty());
    assert_eq!(view.step("bump-b").status, "undoing", "{}", view.pretty());
    assert_eq!(
        view.step("bump-a").status,
        "succeeded",
        "bump-a's undo waits its turn"
    );
    assert_eq!(crash.in_flight(&view, "bump-b", true), key);

    let out = crash.resume();
    crash.assert_rolled_back(&out);
    crash.assert_observed(&key);
    assert_eq!(
        crash.show().attempts_of("bump-b", true).len(),
        1,
        "the observed undo attempt counts; no second one\n{}",
        crash.context(&out)
    );
}

/// (d') Killed during rollback before an undo's effect landed: the undo is mutating
/// too, so resume holds it; `medic retry` + `medic resume` finish the rollback.
#[test]
fn killed_before_an_undo_landed_resume_holds_until_retry() {
    let (mut crash, running) =
        Crash::start(&[("fail_finish", "true"), ("undo_b_before_ms", HOLD_MS)]);
    crash.wait_until(&running, "bump-b undoing", |v| {
        v.step_status("bump-b") == Some("undoing")
    });
    crash.kill(running);
    assert!(
        !crash.target.applied().iter().any(|a| a.amount < 0),
        "the kill landed before any undo's ADD\n{}",
        crash.target.describe()
    );
    let lost_key = crash.in_flight(&crash.show(), "bump-b", true);

    let out = crash.resume();
    let ctx = || crash.context(&out);
    out.expect_code(exit::HELD, ctx);
    crash.assert_observed(&lost_key);
    let view = crash.show();
    assert_eq!(view.status, "held", "{}", ctx());
    assert_eq!(view.step("bump-b").status, "held", "{}", ctx());
    assert_eq!(
        view.step("bump-a").status,
        "succeeded",
        "not undone yet\n{}",
        ctx()
    );
    let reason = view
        .step("bump-b")
        .error
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        reason.contains("bump-b") && reason.contains(&format!("medic retry {} bump-b", crash.run)),
        "the hold names the step and how to resolve it: {reason:?}\n{}",
        ctx()
    );

    crash
        .medic
        .run(["retry", &crash.run, "bump-b"])
        .expect_code(0, ctx);
    let out = crash.resume();
    crash.assert_rolled_back(&out);
    assert_eq!(crash.target.times_applied(&lost_key), 0);
}

/// (e) Killed while waiting for an approval: the wait is persisted, an approval
/// recorded while no medic owns the run is applied by the next `medic resume`.
#[test]
fn killed_while_waiting_for_approval_resume_applies_the_decision() {
    let medic = Medic::new();
    let target = CounterTarget::start();
    let mut running = medic.spawn(run_args(&plan("approval.yaml"), &target, &[]));
    let run = running.run_id();
    medic.wait_for_run(
        &run,
        WAIT,
        "step `approve` waiting for approval",
        |v| (v.step_status("approve") == Some("approval")).then_some(()),
        || running.describe(),
    );
    let killed = running.kill();
    assert_eq!(killed.code, 128 + 9, "{killed}");

    medic
        .run(["approve", &run, "approve"])
        .expect_code(0, || killed.to_string());
    let out = medic.run(["resume", &run]);
    let ctx = || context(&medic, &run, &target, &format!("{out}\n{killed}"));
    out.expect_code(exit::SUCCEEDED, ctx);
    let view = medic.show(&run);
    assert_eq!(view.status, "succeeded", "{}", ctx());
    assert_eq!(
        effects(&target),
        [("bumped".into(), 1), ("after".into(), 1)],
        "{}",
        ctx()
    );
    target.assert_each_key_applied_once();
}

/// `medic resume` must not take over a run whose medic is alive: two processes
/// driving one run could both apply an effect.
#[test]
fn resume_leaves_a_run_with_a_live_owner_alone() {
    let (crash, mut running) = Crash::start(&[("a_after_ms", HOLD_MS)]);
    crash.target.wait_for(
        WAIT,
        "bump-a's ADD on counter a",
        |applied| applied.iter().any(|a| a.counter == "a").then_some(()),
        || running.describe(),
    );
    let out = crash.resume();
    assert_ne!(
        out.code,
        exit::SUCCEEDED,
        "resume of a run owned by a live process must refuse\n{}",
        crash.context(&out)
    );
    assert!(
        out.stderr.contains(&crash.run),
        "the refusal names the run\n{out}"
    );
    assert!(
        running.is_alive(),
        "the owner keeps going\n{}",
        running.describe()
    );
    assert!(
        !crash.target.requests().iter().any(|r| r.starts_with("HAS")),
        "resume did not observe anything of a live run\n{:?}",
        crash.target.requests()
    );
    let finished = running.wait(WAIT);
    crash.assert_succeeded(&finished);
}

/// Found by the chaos harness (RELIABILITY.md): a mutating step whose effect landed
/// in a real MariaDB just before medic was killed is held (its plugin cannot tell);
/// the operator sees the row and answers `medic done`, not `skip`: the step is
/// recorded as done, so when a later step fails the rollback runs its undo and the
/// row is gone. (With `skip` the row stayed: a skipped step's undo never runs.)
#[test]
fn a_held_step_marked_done_after_its_effect_landed_is_undone_by_the_rollback() {
    let db = MariaDb::shared();
    let database = db.fresh_database("done");
    db.sql(&format!(
        "CREATE TABLE {database}.t (tag VARCHAR(16) NOT NULL)"
    ));
    let medic = Medic::new();
    let target = CounterTarget::start();
    let secrets = medic.data_dir().join("secrets");
    std::fs::create_dir_all(&secrets).unwrap();
    std::fs::write(secrets.join("db"), format!("{TEST_PASSWORD}\n")).unwrap();
    std::fs::write(
        medic.data_dir().join("medic.toml"),
        format!(
            "secrets_dir = \"secrets\"\n[sql.db]\naddress = \"{}\"\nuser = \"{TEST_USER}\"\n\
             password_secret = \"db\"\ntls = \"off\"\ndatabase = \"{database}\"\n",
            db.address()
        ),
    )
    .unwrap();
    let plan = json!({
        "apiVersion": "medic/v1",
        "kind": "RecoveryPlan",
        "metadata": {"name": "done-then-rollback"},
        "params": {"target": {"type": "string"}},
        "plugins": {"probe": {"use": "probe@0.1", "grants": {
            "sql": ["db"], "connect": ["${{ params.target }}"]
        }}},
        "on_failure": "rollback",
        "steps": [
            {"id": "write", "uses": "probe/sql-session", "with": {
                "connection": "db",
                "statements": ["INSERT INTO t VALUES ('landed')", "SELECT 1"],
                "pause_ms": 3000
            }, "undo": {"uses": "probe/sql-query", "with": {
                "connection": "db", "statement": "DELETE FROM t WHERE tag = 'landed'"
            }}},
            {"id": "fails", "needs": ["write"], "uses": "probe/counter-add", "with": {
                "address": "${{ params.target }}", "counter": "x", "amount": 1, "fail": true
            }}
        ]
    });
    let path = medic.write("plan.json", &plan.to_string());
    let rows = || {
        db.sql(&format!("SELECT COUNT(*) FROM {database}.t"))
            .trim()
            .to_string()
    };
    let mut running = medic.spawn(run_args(&path, &target, &[]));
    let run = running.run_id();
    poll_until(
        WAIT,
        "the INSERT to land while the session pauses",
        || (rows() == "1").then_some(()),
        || running.describe(),
    );
    let killed = running.kill();
    assert_eq!(killed.code, 128 + 9, "{killed}");

    let out = medic.run(["resume", &run]);
    let ctx = || format!("{out}\n{}", medic.describe_run(&run));
    out.expect_code(exit::HELD, ctx);
    let view = medic.show(&run);
    assert_eq!(view.step("write").status, "held", "{}", ctx());
    let reason = view
        .step("write")
        .error
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        reason.contains(&format!("medic done {run} write")),
        "the hold offers `done`: {reason}"
    );

    medic.run(["done", &run, "write"]).expect_code(0, ctx);
    let out = medic.run(["resume", &run]);
    let ctx = || format!("{out}\n{}", medic.describe_run(&run));
    out.expect_code(exit::ROLLED_BACK, ctx);
    let view = medic.show(&run);
    assert_eq!(
        view.attempts_of("write", true).len(),
        1,
        "the undo of the step marked done ran once\n{}",
        ctx()
    );
    assert_eq!(rows(), "0", "the rollback deleted the row\n{}", ctx());
    assert_eq!(
        view.attempts_of("write", false).len(),
        1,
        "`done` did not run the step again\n{}",
        ctx()
    );
}
