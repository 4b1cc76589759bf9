//! `transition` and `recover`: every rule of how a run moves, in one place.

use std::time::Duration;

use serde_json::{Value, json};

use super::{
    AttemptCall, Effect, Entry, Event, Failure, Ms, Observed, Outcome, Resolution, RunState,
    RunStatus, StepStatus, Stop, attempt_key,
};
use crate::dag::Dag;
use crate::plan::{self, ApprovalTimeout, Backoff, EffectClass, FailurePolicy, Plan, StepKind};

/// Applies `event` to `state` at time `now`. Never fails: an event that no longer
/// fits the state (a late timer, a result for an attempt already settled) is ignored.
pub fn transition(state: &mut RunState, plan: &Plan, dag: &Dag, event: Event, now: Ms) -> Outcome {
    let mut m = Machine::new(state, plan, dag, now);
    if !m.state.status.is_terminal() {
        m.apply(event);
        m.advance();
    }
    m.out
}

/// Rebuilds derived state of a run read back from the store, and asks for what must
/// happen for it to go on: `Observe` for each attempt that was in flight when medic
/// stopped (it is never re-run blindly), timers for backoffs and approvals.
pub fn recover(state: &mut RunState, plan: &Plan, dag: &Dag, now: Ms) -> Outcome {
    let mut m = Machine::new(state, plan, dag, now);
    for i in 0..plan.steps.len() {
        m.state.set_scope(&plan.steps[i].id, i);
    }
    if m.state.status.is_terminal() {
        return m.out;
    }
    for i in 0..plan.steps.len() {
        let s = &m.state.steps[i];
        match s.status {
            StepStatus::Pending => m.check_ready(i),
            StepStatus::Running => {
                let attempt = s.attempt;
                if let Some(call) = m.render_call(i, attempt, false) {
                    m.out.effects.push(Effect::Observe(call));
                }
            }
            StepStatus::Undoing => {
                let attempt = s.undo_attempt;
                if let Some(call) = m.render_call(i, attempt, true) {
                    m.out.effects.push(Effect::Observe(call));
                }
            }
            StepStatus::Backoff | StepStatus::UndoBackoff | StepStatus::Approval => {
                if let Some(at) = s.until {
                    m.out.effects.push(Effect::Wake { step: i, at });
                }
            }
            StepStatus::Succeeded
            | StepStatus::Failed
            | StepStatus::Skipped
            | StepStatus::NotRun
            | StepStatus::Held
            | StepStatus::Undone => {}
        }
    }
    m.advance();
    m.out
}

struct Machine<'a> {
    state: &'a mut RunState,
    plan: &'a Plan,
    dag: &'a Dag,
    now: Ms,
    out: Outcome,
}

impl<'a> Machine<'a> {
    fn new(state: &'a mut RunState, plan: &'a Plan, dag: &'a Dag, now: Ms) -> Self {
        Machine {
            state,
            plan,
            dag,
            now,
            out: Outcome::default(),
        }
    }

    fn id(&self, step: usize) -> String {
        self.plan.steps[step].id.clone()
    }

    fn set(&mut self, step: usize, status: StepStatus) {
        let old = self.state.steps[step].status;
        if old.in_flight() {
            self.state.flying -= 1;
        }
        if status.in_flight() {
            self.state.flying += 1;
        }
        self.state.steps[step].status = status;
        self.out.touched.push(step);
        let id = &self.plan.steps[step].id;
        self.state.set_scope(id, step);
    }

    /// Whether `attempt` is the one in flight for the step (or its undo): results and
    /// observations of older attempts arrive late and are ignored.
    fn is_current(&self, step: usize, attempt: u32, undo: bool) -> bool {
        let s = &self.state.steps[step];
        if undo {
            s.status == StepStatus::Undoing && s.undo_attempt == attempt
        } else {
            s.status == StepStatus::Running && s.attempt == attempt
        }
    }

    fn policy(&self, step: usize) -> FailurePolicy {
        self.plan.steps[step]
            .on_failure
            .unwrap_or(self.plan.on_failure)
    }

    /// A need is satisfied when it succeeded, was skipped, or failed with `continue`.
    fn satisfied(&self, need: usize) -> bool {
        match self.state.steps[need].status {
            StepStatus::Succeeded | StepStatus::Skipped => true,
            StepStatus::Failed => self.policy(need) == FailurePolicy::Continue,
            _ => false,
        }
    }

    fn check_ready(&mut self, step: usize) {
        if self.state.stop.is_some()
            || self.state.queued[step]
            || self.state.steps[step].status != StepStatus::Pending
        {
            return;
        }
        if self.dag.needs(step).iter().all(|&n| self.satisfied(n)) {
            self.state.queued[step] = true;
            self.state.ready.push_back(step);
        }
    }

    fn settled(&mut self, step: usize) {
        for &d in self.dag.dependents(step) {
            self.check_ready(d);
        }
    }

    fn apply(&mut self, event: Event) {
        match event {
            Event::Start => {
                for i in 0..self.plan.steps.len() {
                    self.check_ready(i);
                }
            }
            Event::Finished {
                step,
                attempt,
                undo,
                result,
            } => self.finished(step, attempt, undo, result),
            Event::Due { step } => self.due(step),
            Event::Decision {
                step,
                approve,
                by,
                comment,
            } => {
                if self.state.steps[step].status != StepStatus::Approval {
                    return;
                }
                self.out.log.push(Entry::ApprovalDecided {
                    step: self.id(step),
                    approved: approve,
                    by: by.clone(),
                    comment: comment.clone(),
                });
                if approve {
                    self.succeed(
                        step,
                        json!({ "approved": true, "by": by, "comment": comment }),
                    );
                } else {
                    let why = match comment {
                        Some(c) => format!("rejected by {by}: {c}"),
                        None => format!("rejected by {by}"),
                    };
                    self.fail(step, why);
                }
            }
            Event::Cancel { by } => {
                self.out.log.push(Entry::CancelRequested { by: by.clone() });
                if self.state.stop != Some(Stop::Rollback) {
                    self.state.reason = Some(format!("cancelled by {by}"));
                    self.out.run_changed = true;
                    self.stop(Stop::Cancel);
                }
            }
            Event::Observed {
                step,
                attempt,
                undo,
                observed,
                effect,
            } => self.observed(step, attempt, undo, observed, effect),
            Event::Resolve {
                step,
                resolution,
                by,
            } => self.resolve(step, resolution, by),
            Event::Progress {
                step,
                attempt,
                undo,
                done,
                total,
                message,
            } => {
                if self.is_current(step, attempt, undo) {
                    self.out.log.push(Entry::StepProgress {
                        step: self.id(step),
                        attempt,
                        undo,
                        done,
                        total,
                        message,
                    });
                }
            }
        }
    }

    fn finished(&mut self, step: usize, attempt: u32, undo: bool, result: Result<Value, Failure>) {
        if !self.is_current(step, attempt, undo) {
            return;
        }
        let id = self.id(step);
        match result {
            Ok(output) => {
                self.out.log.push(Entry::AttemptSucceeded {
                    step: id,
                    attempt,
                    undo,
                    output: output.clone(),
                });
                if undo {
                    self.state.steps[step].finished_at = Some(self.now);
                    self.set(step, StepStatus::Undone);
                } else {
                    self.succeed(step, output);
                }
            }
            Err(failure) => {
                let retry = &self.plan.steps[step].retry;
                let may_retry = failure.retryable
                    && attempt < retry.attempts
                    && (undo || self.state.stop.is_none());
                let retry_at = may_retry.then(|| {
                    let key = attempt_key(&self.state.id, &id, attempt, undo);
                    self.now + delay(retry, attempt, &key)
                });
                self.out.log.push(Entry::AttemptFailed {
                    step: id.clone(),
                    attempt,
                    undo,
                    error: failure.message.clone(),
                    retryable: failure.retryable,
                    retry_at,
                });
                let st = &mut self.state.steps[step];
                st.error = Some(failure.message.clone());
                if let Some(at) = retry_at {
                    st.until = Some(at);
                    self.set(
                        step,
                        if undo {
                            StepStatus::UndoBackoff
                        } else {
                            StepStatus::Backoff
                        },
                    );
                    self.out.effects.push(Effect::Wake { step, at });
                } else if undo {
                    let reason = format!(
                        "undo of `{id}` failed after {attempt} attempt(s): {}; fix the target, then retry the undo \
                         (`medic retry {run} {id}`), record it done if you undid it by hand (`medic done {run} {id}`) \
                         or leave it (`medic skip {run} {id}`)",
                        failure.message,
                        run = self.state.id
                    );
                    self.hold(step, true, reason);
                } else {
                    let what = if attempt > 1 {
                        format!(
                            "attempt {attempt} of {} failed: {}",
                            retry.attempts, failure.message
                        )
                    } else {
                        failure.message
                    };
                    self.fail(step, what);
                }
            }
        }
    }

    fn due(&mut self, step: usize) {
        let s = &self.state.steps[step];
        let Some(until) = s.until else { return };
        if !matches!(
            s.status,
            StepStatus::Backoff | StepStatus::UndoBackoff | StepStatus::Approval
        ) {
            return;
        }
        if until > self.now {
            self.out.effects.push(Effect::Wake { step, at: until });
            return;
        }
        match s.status {
            StepStatus::Backoff => {
                self.state.steps[step].until = None;
                // Re-queued ahead of new work; it starts its next attempt when a slot is free.
                self.state.ready.push_front(step);
                self.state.queued[step] = true;
            }
            StepStatus::UndoBackoff => {
                self.state.steps[step].until = None;
                self.start_attempt(step, true);
            }
            StepStatus::Approval => {
                let StepKind::Approval(a) = &self.plan.steps[step].kind else {
                    return;
                };
                let timeout = a
                    .timeout
                    .map(|t| humantime::format_duration(t).to_string())
                    .unwrap_or_default();
                self.out.log.push(Entry::ApprovalDecided {
                    step: self.id(step),
                    approved: a.on_timeout == ApprovalTimeout::Approve,
                    by: "timeout".into(),
                    comment: Some(format!("no decision within {timeout}")),
                });
                match a.on_timeout {
                    ApprovalTimeout::Approve => {
                        self.succeed(step, json!({ "approved": true, "by": "timeout" }))
                    }
                    ApprovalTimeout::Reject => self.fail(
                        step,
                        format!("approval timed out after {timeout} (on_timeout: reject)"),
                    ),
                }
            }
            _ => {}
        }
    }

    fn observed(
        &mut self,
        step: usize,
        attempt: u32,
        undo: bool,
        observed: Observed,
        effect: EffectClass,
    ) {
        if !self.is_current(step, attempt, undo) {
            return;
        }
        let id = self.id(step);
        let result = match &observed {
            Observed::Done(_) => "done".to_string(),
            Observed::NotDone => "not done".to_string(),
            Observed::Unknown(why) => format!("unknown: {why}"),
        };
        self.out.log.push(Entry::Observed {
            step: id.clone(),
            attempt,
            undo,
            result: result.clone(),
        });
        match observed {
            Observed::Done(output) => self.finished(step, attempt, undo, Ok(output)),
            _ if effect.rerunnable() => {
                // Safe to call again: the same attempt, with the same idempotency key.
                if let Some(call) = self.render_call(step, attempt, undo) {
                    self.out.effects.push(Effect::Invoke(call));
                }
            }
            _ => {
                let call = self.call_name(step, undo);
                let what = if undo { "its undo " } else { "" };
                let reason = format!(
                    "`{id}` ({what}{call}, mutating) was in flight when medic stopped and observe says \
                     the effect is {result}: running it again could apply it twice. Check the target, then \
                     `medic retry {run} {id}` to run it again, `medic done {run} {id}` if the effect is there \
                     (recorded as done, so a rollback undoes it) or `medic skip {run} {id}` to go on without it",
                    run = self.state.id
                );
                self.hold(step, undo, reason);
            }
        }
    }

    fn resolve(&mut self, step: usize, resolution: Resolution, by: String) {
        if self.state.steps[step].status != StepStatus::Held {
            return;
        }
        let undo = self.state.steps[step].held_undo;
        let name = match resolution {
            Resolution::Retry => "retry",
            Resolution::Skip => "skip",
            Resolution::Done => "done",
            Resolution::Fail => "fail",
        };
        self.out.log.push(Entry::StepResolved {
            step: self.id(step),
            resolution: name.into(),
            by: by.clone(),
        });
        self.state.steps[step].held_undo = false;
        match (undo, resolution) {
            (false, Resolution::Retry) => {
                self.set(step, StepStatus::Backoff);
                self.state.ready.push_front(step);
                self.state.queued[step] = true;
            }
            (false, Resolution::Skip) => {
                let st = &mut self.state.steps[step];
                st.error = Some(format!("skipped by {by} after a hold"));
                st.finished_at = Some(self.now);
                self.set(step, StepStatus::Skipped);
                self.settled(step);
            }
            (false, Resolution::Done) => self.succeed(step, Value::Null),
            (false, Resolution::Fail) => {
                self.fail(step, format!("marked failed by {by} after a hold"))
            }
            (true, Resolution::Retry) => {
                self.set(step, StepStatus::UndoBackoff);
                self.start_attempt(step, true);
            }
            (true, Resolution::Skip | Resolution::Fail) => {
                self.state.steps[step].error = Some(format!("undo left undone by {by}"));
                self.set(step, StepStatus::Undone);
            }
            (true, Resolution::Done) => {
                self.state.steps[step].error = None;
                self.set(step, StepStatus::Undone);
            }
        }
    }

    fn succeed(&mut self, step: usize, output: Value) {
        let st = &mut self.state.steps[step];
        st.output = Some(output);
        st.error = None;
        st.until = None;
        st.finished_at = Some(self.now);
        self.set(step, StepStatus::Succeeded);
        self.settled(step);
    }

    fn fail(&mut self, step: usize, message: String) {
        let st = &mut self.state.steps[step];
        st.error = Some(message.clone());
        st.until = None;
        st.finished_at = Some(self.now);
        self.set(step, StepStatus::Failed);
        match self.policy(step) {
            FailurePolicy::Continue => self.settled(step),
            policy => {
                if self.state.reason.is_none() {
                    self.state.reason = Some(format!(
                        "step `{}` failed: {message}",
                        self.plan.steps[step].id
                    ));
                    self.out.run_changed = true;
                }
                let stop = if policy == FailurePolicy::Rollback {
                    Stop::Rollback
                } else {
                    Stop::Abort
                };
                self.stop(stop);
            }
        }
    }

    fn hold(&mut self, step: usize, undo: bool, reason: String) {
        let st = &mut self.state.steps[step];
        st.error = Some(reason.clone());
        st.held_undo = undo;
        st.until = None;
        self.set(step, StepStatus::Held);
        self.out.log.push(Entry::StepHeld {
            step: self.id(step),
            reason,
        });
    }

    /// Stops going forward: steps that have not started never will.
    fn stop(&mut self, stop: Stop) {
        // Rollback is stronger than abort; cancel only replaces a plain abort.
        let new = match (self.state.stop, stop) {
            (None, s) => s,
            (Some(Stop::Abort), s) => s,
            (Some(old), _) => old,
        };
        if self.state.stop == Some(new) {
            return;
        }
        self.state.stop = Some(new);
        self.out.run_changed = true;
        self.state.ready.clear();
        for i in 0..self.state.steps.len() {
            self.state.queued[i] = false;
            if matches!(
                self.state.steps[i].status,
                StepStatus::Pending | StepStatus::Backoff | StepStatus::Approval
            ) {
                self.state.steps[i].until = None;
                self.set(i, StepStatus::NotRun);
                self.out.log.push(Entry::StepNotRun { step: self.id(i) });
            }
        }
    }

    /// Starts what can start, then settles the run's status.
    fn advance(&mut self) {
        let held = self
            .state
            .steps
            .iter()
            .any(|s| s.status == StepStatus::Held);
        if !held {
            match self.state.stop {
                None => {
                    while self.state.flying < self.plan.concurrency {
                        let Some(step) = self.state.ready.pop_front() else {
                            break;
                        };
                        self.state.queued[step] = false;
                        self.start(step);
                    }
                }
                Some(Stop::Abort) => {}
                Some(Stop::Rollback | Stop::Cancel) => {
                    if self.state.flying == 0 && !self.undo_waiting() {
                        self.start_next_undo();
                    }
                }
            }
        }
        self.settle_status(held);
    }

    fn undo_waiting(&self) -> bool {
        self.state
            .steps
            .iter()
            .any(|s| s.status == StepStatus::UndoBackoff)
    }

    /// Undoes one completed step at a time, latest in topological order first, so
    /// every step is undone before anything it needed.
    fn start_next_undo(&mut self) {
        let next = self.dag.topological().iter().rev().copied().find(|&i| {
            self.state.steps[i].status == StepStatus::Succeeded
                && matches!(
                    &self.plan.steps[i].kind,
                    StepKind::Action { undo: Some(_), .. }
                )
        });
        if let Some(step) = next {
            self.start_attempt(step, true);
        }
    }

    fn settle_status(&mut self, held: bool) {
        let s = &self.state;
        let status = if s.flying > 0 || self.undo_waiting() {
            self.active_status()
        } else if held {
            RunStatus::Held
        } else {
            match s.stop {
                None => {
                    let open = s.steps.iter().any(|st| {
                        matches!(
                            st.status,
                            StepStatus::Pending | StepStatus::Backoff | StepStatus::Approval
                        )
                    });
                    if open || !s.ready.is_empty() {
                        RunStatus::Running
                    } else {
                        RunStatus::Succeeded
                    }
                }
                Some(Stop::Abort) => RunStatus::Failed,
                Some(Stop::Rollback) => RunStatus::RolledBack,
                Some(Stop::Cancel) => RunStatus::Cancelled,
            }
        };
        if status != self.state.status {
            self.state.status = status;
            if status == RunStatus::Held {
                let reasons: Vec<String> = self
                    .state
                    .steps
                    .iter()
                    .filter(|st| st.status == StepStatus::Held)
                    .filter_map(|st| st.error.clone())
                    .collect();
                self.state.reason = Some(reasons.join("; "));
            } else if matches!(status, RunStatus::Running | RunStatus::Succeeded) {
                self.state.reason = None;
            }
            self.out.run_changed = true;
            self.out.log.push(Entry::RunStatus {
                status,
                reason: self.state.reason.clone(),
            });
        }
    }

    fn active_status(&self) -> RunStatus {
        match self.state.stop {
            Some(Stop::Rollback | Stop::Cancel) => RunStatus::RollingBack,
            _ => RunStatus::Running,
        }
    }

    /// Starts a ready step: evaluates `when`, opens an approval, or starts an attempt.
    fn start(&mut self, step: usize) {
        let st = &self.state.steps[step];
        if st.status == StepStatus::Backoff {
            self.start_attempt(step, false);
            return;
        }
        if st.status != StepStatus::Pending {
            return;
        }
        let def = &self.plan.steps[step];
        if let Some(when) = &def.when {
            match plan::condition(when, &self.state.scope) {
                Ok(true) => {}
                Ok(false) => {
                    let reason = format!("`when: {when}` is false");
                    let st = &mut self.state.steps[step];
                    st.error = Some(reason.clone());
                    st.finished_at = Some(self.now);
                    self.set(step, StepStatus::Skipped);
                    self.out.log.push(Entry::StepSkipped {
                        step: self.id(step),
                        reason,
                    });
                    self.settled(step);
                    return;
                }
                Err(e) => {
                    self.state.steps[step].started_at = Some(self.now);
                    self.fail(step, format!("evaluating `when: {when}`: {e}"));
                    return;
                }
            }
        }
        self.state.steps[step].started_at = Some(self.now);
        match &def.kind {
            StepKind::Approval(a) => {
                match plan::render(&Value::String(a.prompt.clone()), &self.state.scope) {
                    Ok(prompt) => {
                        let prompt = prompt
                            .as_str()
                            .map(str::to_owned)
                            .unwrap_or_else(|| prompt.to_string());
                        let deadline = a.timeout.map(|t| self.now + ms(t));
                        self.state.steps[step].until = deadline;
                        self.set(step, StepStatus::Approval);
                        self.out.log.push(Entry::ApprovalRequested {
                            step: self.id(step),
                            prompt,
                            deadline,
                        });
                        if let Some(at) = deadline {
                            self.out.effects.push(Effect::Wake { step, at });
                        }
                    }
                    Err(e) => self.fail(step, format!("rendering the approval prompt: {e}")),
                }
            }
            StepKind::Action { .. } => self.start_attempt(step, false),
        }
    }

    /// Records a new attempt of the action (or its undo) and asks for its invocation.
    fn start_attempt(&mut self, step: usize, undo: bool) {
        let st = &mut self.state.steps[step];
        let attempt = if undo {
            st.undo_attempt += 1;
            st.undo_attempt
        } else {
            st.attempt += 1;
            st.attempt
        };
        st.until = None;
        let Some(call) = self.render_call(step, attempt, undo) else {
            return;
        };
        let status = if undo {
            StepStatus::Undoing
        } else {
            StepStatus::Running
        };
        self.set(step, status);
        self.out.log.push(Entry::AttemptStarted {
            step: self.id(step),
            attempt,
            undo,
            key: call.key.clone(),
            params: call.params.clone(),
        });
        self.out.effects.push(Effect::Invoke(call));
    }

    /// Renders the params and grants of a step's action (or undo). A template that
    /// cannot render fails the step (or holds its undo): it would fail every attempt.
    fn render_call(&mut self, step: usize, attempt: u32, undo: bool) -> Option<AttemptCall> {
        let def = &self.plan.steps[step];
        let StepKind::Action {
            call,
            undo: undo_call,
        } = &def.kind
        else {
            return None;
        };
        let call = if undo { undo_call.as_ref()? } else { call };
        let key = attempt_key(&self.state.id, &def.id, attempt, undo);
        let grants = &self.plan.plugins[&call.plugin].grants;
        let scope = &self.state.scope;
        let render_all = |list: &[String]| {
            list.iter()
                .map(|g| plan::render(&Value::String(g.clone()), scope))
                .map(|v| {
                    v.map(|v| {
                        v.as_str()
                            .map(str::to_owned)
                            .unwrap_or_else(|| v.to_string())
                    })
                })
                .collect::<Result<Vec<_>, _>>()
        };
        let rendered = plan::render(&call.with, scope).and_then(|params| {
            let grants = plan::Grants {
                connect: render_all(&grants.connect)?,
                http: render_all(&grants.http)?,
                sql: render_all(&grants.sql)?,
                secrets: render_all(&grants.secrets)?,
            };
            Ok((params, grants))
        });
        match rendered {
            Ok((params, grants)) => Some(AttemptCall {
                step,
                attempt,
                undo,
                key,
                params,
                grants,
            }),
            Err(e) => {
                let msg = format!("rendering params of {}: {e}", self.call_name(step, undo));
                if undo {
                    self.hold(step, true, msg);
                } else {
                    self.fail(step, msg);
                }
                None
            }
        }
    }

    fn call_name(&self, step: usize, undo: bool) -> String {
        match &self.plan.steps[step].kind {
            StepKind::Action { call, undo: u } => {
                let c = if undo {
                    u.as_ref().unwrap_or(call)
                } else {
                    call
                };
                format!("{}/{}", c.plugin, c.action)
            }
            StepKind::Approval(_) => "approval".into(),
        }
    }
}

fn ms(d: Duration) -> Ms {
    d.as_millis().min(i64::MAX as u128) as Ms
}

/// Delay before the attempt after `attempt` (1-based): `initial * 2^(attempt-1)` for
/// exponential backoff, capped at `max`, spread by up to +-25% when `jitter` is set.
/// The spread comes from a hash of the attempt's key, so the state machine stays pure
/// and a replay gives the same delay.
pub(crate) fn delay(retry: &plan::Retry, attempt: u32, key: &str) -> Ms {
    let base = match retry.backoff {
        Backoff::Fixed => retry.initial,
        Backoff::Exponential => retry
            .initial
            .checked_mul(
                1u32.checked_shl(attempt.saturating_sub(1))
                    .unwrap_or(u32::MAX),
            )
            .unwrap_or(retry.max),
    }
    .min(retry.max);
    let base = ms(base);
    if !retry.jitter || base == 0 {
        return base;
    }
    // sha256, not std's hasher: its output may change between Rust releases.
    use sha2::Digest;
    let h = sha2::Sha256::digest(key.as_bytes());
    let h = u64::from_le_bytes(h[..8].try_into().expect("8 bytes"));
    let spread = (h % 501) as i64 - 250; // -250..=250 per mille: +-25%
    base + base * spread / 1000
}
