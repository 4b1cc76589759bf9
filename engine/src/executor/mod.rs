//! `executor` is the async glue that drives runs: it feeds events to the pure state
//! machine (`run`), commits what each transition recorded (`store`), and only then
//! dispatches its effects: plugin calls (`plugin`), observations after a crash,
//! timers. It is the only writer of run state. Time comes from an injected `Clock`.

mod dry_run;
mod node;
mod plans;
mod progress;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::{Notify, broadcast, mpsc};
use tokio::task::JoinSet;
use tracing::{Instrument, info_span};

use crate::dag::Dag;
use crate::metrics::{self, CallKind, Metrics};
use crate::plan::{self, EffectClass, Plan, StepKind};
use crate::plugin::{self, Call, CallContext, Invoker};
use crate::run::{
    self, AttemptCall, Effect, Entry, Event, Failure, Ms, Observed, Outcome, Resolution, RunState,
    RunStatus, StepStatus,
};
use crate::store::{self, Batch, NewRun, Store};

pub use dry_run::describe as describe_dry_run;
pub use node::{Node, NodeError, node_alive};

/// Where time comes from: the system clock in medic, a controlled one in tests.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Ms;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Ms {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as Ms)
            .unwrap_or(0)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Store(#[from] store::Error),
    #[error("the stored plan of run `{run}` no longer parses: {diagnostics}")]
    StoredPlan {
        run: String,
        diagnostics: plan::Diagnostics,
    },
    #[error("run `{run}` has {stored} stored steps but its plan has {planned}")]
    Mismatch {
        run: String,
        stored: usize,
        planned: usize,
    },
    #[error(
        "run `{run}` is owned by a running medic process ({owner}); it will carry on with the run"
    )]
    Owned { run: String, owner: String },
    #[error(transparent)]
    Node(#[from] NodeError),
    #[error("run {run} has no step `{step}`; its steps are: {known}")]
    UnknownStep {
        run: String,
        step: String,
        known: String,
    },
    /// The command does not fit the run's state now (e.g. approving a step that is
    /// not waiting for approval).
    #[error("{0}")]
    NotApplicable(String),
    /// The plan's `locks` do not render with the run's params.
    #[error("{0}")]
    Locks(String),
}

/// An operator's command for a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandKind {
    Approve,
    Reject,
    Cancel,
    Retry,
    Skip,
    Done,
}

impl CommandKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CommandKind::Approve => "approve",
            CommandKind::Reject => "reject",
            CommandKind::Cancel => "cancel",
            CommandKind::Retry => "retry",
            CommandKind::Skip => "skip",
            CommandKind::Done => "done",
        }
    }

    /// The step status the command applies to (`None`: it is about the whole run).
    fn expects(self) -> Option<run::StepStatus> {
        match self {
            CommandKind::Approve | CommandKind::Reject => Some(run::StepStatus::Approval),
            CommandKind::Retry | CommandKind::Skip | CommandKind::Done => {
                Some(run::StepStatus::Held)
            }
            CommandKind::Cancel => None,
        }
    }
}

/// Checks that an operator's command fits the run now and leaves it in the run's
/// inbox, where the process driving the run (or the next resume) applies it.
pub async fn post_command(
    store: &Store,
    run: &str,
    step: Option<&str>,
    kind: CommandKind,
    by: &str,
    comment: Option<&str>,
    now: Ms,
) -> Result<(), Error> {
    let verb = kind.as_str();
    let stored = store.load_run(run).await?;
    if stored.summary.status.is_terminal() {
        return Err(Error::NotApplicable(format!(
            "run {run} is already {}; nothing to {verb}",
            stored.summary.status.as_str()
        )));
    }
    if let (Some(step), Some(want)) = (step, kind.expects()) {
        let steps = store.steps(run).await?;
        let Some((_, s)) = steps.iter().find(|(id, _)| id == step) else {
            let known: Vec<&str> = steps.iter().map(|(id, _)| id.as_str()).collect();
            return Err(Error::UnknownStep {
                run: run.into(),
                step: step.into(),
                known: known.join(", "),
            });
        };
        if s.status != want {
            return Err(Error::NotApplicable(format!(
                "step `{step}` of run {run} is {}, not {}: nothing to {verb}",
                s.status.as_str(),
                want.as_str()
            )));
        }
    }
    store
        .post_command(run, step, verb, by, comment, now)
        .await?;
    Ok(())
}

/// One committed log entry of a run, for whoever watches (the CLI's progress lines,
/// later the API's event stream). Sent only after the entry is durable.
#[derive(Debug, Clone)]
pub struct Progress {
    pub run_id: String,
    pub seq: i64,
    pub at: Ms,
    pub entry: Entry,
}

/// A schedule's due time to fire (`Executor::fire`).
#[derive(Debug, Clone, Copy)]
pub struct Fire<'a> {
    pub schedule_id: i64,
    pub schedule: &'a str,
    pub due: Ms,
    /// When it fires (jittered, maybe moved into a window).
    pub at: Ms,
    pub plan_version: Option<u32>,
    /// `schedule:NAME`.
    pub submitted_by: &'a str,
}

/// A firing alert's run to start (`Executor::alert`).
#[derive(Debug, Clone, Copy)]
pub struct AlertStart<'a> {
    pub fingerprint: &'a str,
    pub starts_at: &'a str,
    /// The alert rule that matched.
    pub rule: &'a str,
    pub labels: &'a Value,
    pub plan_version: Option<u32>,
    /// `alert:RULE`.
    pub submitted_by: &'a str,
}

/// What the caller knows of a run it submits; all of it optional.
#[derive(Debug, Clone, Copy, Default)]
pub struct Submission<'a> {
    /// The registered plan version submitted by name (`None`: an inline plan).
    pub plan_version: Option<u32>,
    /// A client's `Idempotency-Key`: the same key gives back the same run.
    pub idempotency_key: Option<&'a str>,
    /// The name of the API token that asked for the run.
    pub submitted_by: Option<&'a str>,
}

/// Runs plans durably.
pub struct Executor<I: Invoker> {
    inner: Arc<Inner<I>>,
}

impl<I: Invoker> Clone for Executor<I> {
    fn clone(&self) -> Self {
        Executor {
            inner: self.inner.clone(),
        }
    }
}

struct Inner<I> {
    store: Store,
    invoker: Arc<I>,
    clock: Arc<dyn Clock>,
    node: Node,
    progress: broadcast::Sender<Progress>,
    metrics: Metrics,
    /// How often a driven run looks for operator commands left in the database by
    /// other processes (approvals, cancel, retry, skip).
    inbox_poll: Duration,
    /// A bell per run this process drives: a command posted through this process
    /// rings it so the driver reads its inbox at once instead of at the next poll.
    bells: Mutex<HashMap<String, Arc<Notify>>>,
    plans: plans::Plans,
    /// The operator's global blast-radius caps (medic.toml `[safety]`).
    limits: GlobalLimits,
}

/// Caps on the targets of all runs together (medic.toml `[safety]`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GlobalLimits {
    pub concurrent_targets: Option<u32>,
    pub targets_per_hour: Option<u32>,
}

impl<I: Invoker> Executor<I> {
    pub fn new(store: Store, invoker: Arc<I>, clock: Arc<dyn Clock>, node: Node) -> Self {
        let (progress, _) = broadcast::channel(65_536);
        Executor {
            inner: Arc::new(Inner {
                store,
                invoker,
                clock,
                node,
                progress,
                metrics: Metrics::new(),
                inbox_poll: Duration::from_millis(250),
                bells: Mutex::new(HashMap::new()),
                plans: plans::Plans::default(),
                limits: GlobalLimits::default(),
            }),
        }
    }

    /// Sets the global blast-radius caps; call before the executor is cloned.
    pub fn with_limits(mut self, limits: GlobalLimits) -> Self {
        Arc::get_mut(&mut self.inner)
            .expect("with_limits is called before the executor is shared")
            .limits = limits;
        self
    }

    /// The caps a run of `plan` is held to: the plan's and the operator's.
    fn caps(&self, plan: &Plan) -> store::Caps {
        store::Caps {
            plan_concurrent: plan.safety.limits.concurrent_targets,
            plan_per_hour: plan.safety.limits.targets_per_hour,
            global_concurrent: self.inner.limits.concurrent_targets,
            global_per_hour: self.inner.limits.targets_per_hour,
        }
    }

    /// What a new run of `plan` with `params` asks of the safety rails.
    fn guard(&self, plan: &Plan, params: &Value) -> Result<store::Guard, Error> {
        let locks = plan::resolve_locks(plan, params)
            .map_err(|e| Error::Locks(format!("plan `{}`: {e}", plan.name)))?;
        Ok(store::Guard {
            locks,
            on_busy: plan.safety.on_lock_busy,
            caps: self.caps(plan),
            breaker: plan
                .safety
                .breaker
                .map(|b| (b.failures, b.window.as_millis() as Ms)),
        })
    }

    pub fn invoker(&self) -> &I {
        &self.inner.invoker
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub fn now(&self) -> Ms {
        self.inner.clock.now()
    }

    /// What this executor recorded: plugin calls, step ends, its ready queue.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// Wakes the driver of `run` in this process, if there is one, to read the
    /// run's inbox now: for a command just posted through this process. Commands
    /// posted by other processes are found by the driver's poll.
    pub fn ring(&self, run: &str) {
        if let Some(bell) = lock(&self.inner.bells).get(run) {
            // A permit is kept if the driver is not waiting right now.
            bell.notify_one();
        }
    }

    /// Committed log entries of every run this executor drives.
    pub fn subscribe(&self) -> broadcast::Receiver<Progress> {
        self.inner.progress.subscribe()
    }

    /// The row of a new run of `plan` in `state`, owned by this process, with its
    /// safety `guard` and pinned plugin `builds`; submit, fire and alert add who
    /// asked for it.
    fn new_run<'a>(
        &'a self,
        plan: &'a Plan,
        state: &'a RunState,
        guard: &store::Guard,
        builds: &[(String, String)],
    ) -> NewRun<'a> {
        NewRun {
            plan_name: &plan.name,
            plan_version: None,
            plan_hash: &plan.hash,
            plan_source: &plan.canonical,
            step_ids: plan.steps.iter().map(|s| s.id.as_str()).collect(),
            state,
            owner: Some(self.inner.node.id()),
            submitted_by: None,
            idempotency_key: None,
            at: self.now(),
            plugin_builds: builds.to_vec(),
            guard: guard.clone(),
        }
    }

    /// Stores the plan and a new run of it with bound `params`, owned by this
    /// process. Returns the run id; `drive` runs it.
    pub async fn create(&self, plan: &Plan, params: Value) -> Result<String, Error> {
        Ok(self.submit(plan, params, Submission::default()).await?.0)
    }

    /// Like `create`, with what the API knows of the submission: a second submission
    /// with the same `idempotency_key` gets the first one's run back (and `false`)
    /// instead of a new run.
    pub async fn submit(
        &self,
        plan: &Plan,
        params: Value,
        how: Submission<'_>,
    ) -> Result<(String, bool), Error> {
        let builds = self.plugin_builds(plan).await;
        let guard = self.guard(plan, &params)?;
        let mut tries = 0;
        loop {
            let id = new_run_id(self.now());
            let state = RunState::new(id, params.clone(), plan.steps.len());
            let created = self
                .inner
                .store
                .create_run(NewRun {
                    plan_version: how.plan_version,
                    submitted_by: how.submitted_by,
                    idempotency_key: how.idempotency_key,
                    ..self.new_run(plan, &state, &guard, &builds)
                })
                .await;
            match created {
                // Two runs created in the same millisecond drew the same 24 random
                // bits: nothing was stored for this one, so draw again.
                Err(store::Error::RunIdTaken(_)) if tries < 3 => tries += 1,
                other => return Ok(other?),
            }
        }
    }

    /// Creates the run of a schedule's due time, recording the fire in the same
    /// transaction (`Store::fire`): a due time already fired gives
    /// `store::Error::AlreadyFired` and no run.
    pub async fn fire(&self, plan: &Plan, params: Value, fire: Fire<'_>) -> Result<String, Error> {
        let builds = self.plugin_builds(plan).await;
        let guard = self.guard(plan, &params)?;
        let mut tries = 0;
        loop {
            let id = new_run_id(self.now());
            let state = RunState::new(id, params.clone(), plan.steps.len());
            let created = self
                .inner
                .store
                .fire(store::NewFire {
                    schedule_id: fire.schedule_id,
                    schedule: fire.schedule,
                    due: fire.due,
                    fire_at: fire.at,
                    run: NewRun {
                        plan_version: fire.plan_version,
                        submitted_by: Some(fire.submitted_by),
                        ..self.new_run(plan, &state, &guard, &builds)
                    },
                })
                .await;
            match created {
                Err(store::Error::RunIdTaken(_)) if tries < 3 => tries += 1,
                other => return Ok(other?),
            }
        }
    }

    /// Creates the run of a firing alert, recording the alert in the same transaction
    /// (`Store::alert_fire`): an alert that has a run already (this firing, or an
    /// earlier one still going) gets `AlertFired::Duplicate` and no new run.
    pub async fn alert(
        &self,
        plan: &Plan,
        params: Value,
        alert: AlertStart<'_>,
    ) -> Result<store::AlertFired, Error> {
        let builds = self.plugin_builds(plan).await;
        // An alert storm is what the safety rails are for: alert-started runs take
        // their plan's locks, caps and breaker like any other.
        let guard = self.guard(plan, &params)?;
        let mut tries = 0;
        loop {
            let id = new_run_id(self.now());
            let state = RunState::new(id, params.clone(), plan.steps.len());
            let created = self
                .inner
                .store
                .alert_fire(store::NewAlertRun {
                    fingerprint: alert.fingerprint,
                    starts_at: alert.starts_at,
                    rule: alert.rule,
                    labels: alert.labels,
                    run: NewRun {
                        plan_version: alert.plan_version,
                        submitted_by: Some(alert.submitted_by),
                        ..self.new_run(plan, &state, &guard, &builds)
                    },
                })
                .await;
            match created {
                Err(store::Error::RunIdTaken(_)) if tries < 3 => tries += 1,
                other => return Ok(other?),
            }
        }
    }

    /// The plugin builds a new run of `plan` starts with (and keeps using after an
    /// install of another build): the sha256 of each plugin's component as the
    /// invoker has it now, which is what the plan was just checked against. A plugin
    /// that does not load is left unpinned: its calls fail as they would anyway.
    async fn plugin_builds(&self, plan: &Plan) -> Vec<(String, String)> {
        let mut builds = Vec::new();
        for u in plan.plugins.values() {
            if builds.iter().any(|(name, _)| *name == u.name) {
                continue;
            }
            if let Ok(m) = self.inner.invoker.manifest(&u.name, &u.version).await {
                builds.push((u.name.clone(), m.sha256.clone()));
            }
        }
        builds
    }

    /// Takes over an unfinished run whose owner is gone (or that has none).
    pub async fn claim(&self, run: &str) -> Result<(), Error> {
        let stored = self.inner.store.load_run(run).await?;
        let owner = stored.summary.owner;
        let me = self.inner.node.id();
        if owner.as_deref() == Some(me) {
            return Ok(());
        }
        if let Some(o) = &owner
            && self.inner.node.is_alive(o)?
        {
            return Err(Error::Owned {
                run: run.into(),
                owner: o.clone(),
            });
        }
        if !self.inner.store.claim(run, me, owner.as_deref()).await? {
            let now = self
                .inner
                .store
                .load_run(run)
                .await?
                .summary
                .owner
                .unwrap_or_default();
            return Err(Error::Owned {
                run: run.into(),
                owner: now,
            });
        }
        if let Some(o) = owner {
            self.inner.node.forget(&o);
        }
        Ok(())
    }

    /// Drives a run this process owns until it is terminal or held for an operator.
    /// Picks up where the store says the run is: attempts that were in flight when a
    /// previous process died are observed, never blindly re-run.
    pub async fn drive(&self, run_id: &str) -> Result<RunStatus, Error> {
        let span = info_span!("run", run_id);
        self.drive_inner(run_id).instrument(span).await
    }

    /// The plan of a stored run, parsed once per process (by its content hash).
    pub fn stored_plan(&self, stored: &store::StoredRun) -> Result<Arc<Plan>, Error> {
        Ok(self.parsed(stored)?.plan.clone())
    }

    fn parsed(&self, stored: &store::StoredRun) -> Result<Arc<plans::Parsed>, Error> {
        let run = &stored.summary.id;
        self.inner
            .plans
            .get(run, &stored.summary.plan_hash, &stored.plan_source)
            .map_err(|diagnostics| Error::StoredPlan {
                run: run.clone(),
                diagnostics,
            })
    }

    async fn drive_inner(&self, run_id: &str) -> Result<RunStatus, Error> {
        let inner = &self.inner;
        let mut stored = inner.store.load_run(run_id).await?;
        let mut parsed = self.parsed(&stored)?;
        if stored.summary.status == RunStatus::Waiting {
            if let Some(ended) = self.wait_for_locks(run_id, &parsed.plan).await? {
                return Ok(ended);
            }
            stored = inner.store.load_run(run_id).await?;
            parsed = self.parsed(&stored)?;
        }
        let (plan, dag) = (parsed.plan.clone(), parsed.dag.clone());
        if plan.steps.len() != stored.state.steps.len() {
            return Err(Error::Mismatch {
                run: run_id.into(),
                stored: stored.state.steps.len(),
                planned: plan.steps.len(),
            });
        }
        let seen = stored.state.steps.iter().map(|s| s.status).collect();
        let bell = Bell::hang(self, run_id);
        let mut driver = Driver {
            exec: self.clone(),
            bell: bell.0.clone(),
            plan: plan.clone(),
            dag,
            seen,
            queued: 0,
            state: stored.state,
            next_seq: stored.next_seq,
            created_at: stored.summary.created_at,
            builds: stored.plugin_builds,
            events: mpsc::unbounded_channel(),
            tasks: JoinSet::new(),
        };
        // For a new run this queues the steps that need nothing (what `Event::Start`
        // does); for one read back after a crash it also observes in-flight attempts.
        let outcome = run::recover(&mut driver.state, &plan, &driver.dag, self.now());
        driver.commit(outcome, Vec::new()).await?;
        driver.run().await
    }
}

impl<I: Invoker> Executor<I> {
    /// Holds a `waiting` run until it has all its locks (then `None`: it is
    /// `running`, nothing started yet) or is cancelled (`Some(Cancelled)`). Tries
    /// again every `inbox_poll` and whenever a command for it is posted here.
    async fn wait_for_locks(&self, run: &str, plan: &Plan) -> Result<Option<RunStatus>, Error> {
        let bell = Bell::hang(self, run);
        let caps = self.caps(plan);
        loop {
            match self.inner.store.acquire(run, caps, self.now()).await? {
                store::Acquired::Running => return Ok(None),
                store::Acquired::Ended(status) => return Ok(Some(status)),
                store::Acquired::Waiting(_) => {}
            }
            for cmd in self.inner.store.open_commands(run).await? {
                if cmd.kind == "cancel"
                    && self
                        .inner
                        .store
                        .cancel_waiting(run, cmd.id, &cmd.by, self.now())
                        .await?
                {
                    return Ok(Some(RunStatus::Cancelled));
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(self.inner.inbox_poll) => {}
                _ = bell.0.notified() => {}
            }
        }
    }
}

/// A run's bell while its driver lives; taken down when the driver ends.
struct Bell<I: Invoker>(Arc<Notify>, Executor<I>, String);

impl<I: Invoker> Bell<I> {
    fn hang(exec: &Executor<I>, run: &str) -> Bell<I> {
        let bell = lock(&exec.inner.bells)
            .entry(run.to_owned())
            .or_default()
            .clone();
        Bell(bell, exec.clone(), run.to_owned())
    }
}

impl<I: Invoker> Drop for Bell<I> {
    fn drop(&mut self) {
        lock(&self.1.inner.bells).remove(&self.2);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

struct Driver<I: Invoker> {
    exec: Executor<I>,
    /// Rung by `Executor::ring` when a command for this run was posted here.
    bell: Arc<Notify>,
    plan: Arc<Plan>,
    dag: Arc<Dag>,
    state: RunState,
    /// Each step's status as last committed, to see which steps just ended.
    seen: Vec<StepStatus>,
    /// This run's share of `medic_queue_depth`: its ready steps not started.
    queued: usize,
    next_seq: i64,
    /// When the run was created: where its recovery time objective's clock starts.
    created_at: Ms,
    /// The plugin builds the run started with (name -> sha256), which its calls use.
    builds: std::collections::BTreeMap<String, String>,
    events: (mpsc::UnboundedSender<Event>, mpsc::UnboundedReceiver<Event>),
    /// Plugin calls and timers of this run. Dropped with the driver, so a timer of a
    /// finished run (an approval timeout, say) does not outlive it.
    tasks: JoinSet<()>,
}

impl<I: Invoker> Driver<I> {
    async fn run(&mut self) -> Result<RunStatus, Error> {
        let poll = self.exec.inner.inbox_poll;
        let mut next_poll = tokio::time::Instant::now();
        loop {
            if self.state.status.is_terminal() {
                return Ok(self.state.status);
            }
            while self.tasks.try_join_next().is_some() {}
            // A held run has nothing in flight: only an operator's command can move it,
            // so look at the inbox once and give the run back if there is none.
            let held = self.state.status == RunStatus::Held;
            let mut batch = Vec::new();
            let mut consumed = Vec::new();
            let read_inbox = tokio::select! {
                ev = self.events.1.recv(), if !held => {
                    batch.extend(ev);
                    // Everything that is ready now goes into the same commit.
                    while let Ok(ev) = self.events.1.try_recv() {
                        batch.push(ev);
                    }
                    false
                }
                _ = tokio::time::sleep_until(next_poll) => true,
                _ = self.bell.notified() => true,
            };
            if read_inbox {
                next_poll = tokio::time::Instant::now() + poll;
                for cmd in self.exec.inner.store.open_commands(&self.state.id).await? {
                    consumed.push(cmd.id);
                    if let Some(ev) = self.command_event(&cmd) {
                        batch.push(ev);
                    }
                }
                if held && consumed.is_empty() {
                    return Ok(RunStatus::Held);
                }
            }
            if batch.is_empty() && consumed.is_empty() {
                continue;
            }
            let now = self.exec.now();
            let mut outcome = Outcome::default();
            for ev in batch {
                outcome.merge(run::transition(
                    &mut self.state,
                    &self.plan,
                    &self.dag,
                    ev,
                    now,
                ));
            }
            self.commit(outcome, consumed).await?;
        }
    }

    fn command_event(&self, cmd: &store::Command) -> Option<Event> {
        let step = cmd.step.as_deref().and_then(|s| self.plan.step_index(s));
        let by = cmd.by.clone();
        Some(match (cmd.kind.as_str(), step) {
            ("approve" | "reject", Some(step)) => Event::Decision {
                step,
                approve: cmd.kind == "approve",
                by,
                comment: cmd.comment.clone(),
            },
            ("cancel", _) => Event::Cancel { by },
            ("retry", Some(step)) => Event::Resolve {
                step,
                resolution: Resolution::Retry,
                by,
            },
            ("skip", Some(step)) => Event::Resolve {
                step,
                resolution: Resolution::Skip,
                by,
            },
            ("done", Some(step)) => Event::Resolve {
                step,
                resolution: Resolution::Done,
                by,
            },
            ("fail", Some(step)) => Event::Resolve {
                step,
                resolution: Resolution::Fail,
                by,
            },
            _ => {
                tracing::warn!(command = cmd.id, kind = %cmd.kind, "ignoring a command that names no step of this run");
                return None;
            }
        })
    }

    /// Makes the transition's records durable, tells watchers, then dispatches.
    async fn commit(&mut self, mut outcome: Outcome, consumed: Vec<i64>) -> Result<(), Error> {
        let at = self.exec.now();
        // The objective is measured in the same commit as the run's end, so it is
        // recorded exactly once, even across a crash.
        let ended = outcome.run_changed && self.state.status.is_terminal();
        let objective = ended
            .then(|| run::objective::measure(&self.plan, &self.state, self.created_at, at))
            .flatten();
        let objective_met = match &objective {
            Some(Entry::Objective { met, .. }) => Some(*met),
            _ => None,
        };
        outcome.log.extend(objective);
        let touched: BTreeSet<usize> = outcome.touched.iter().copied().collect();
        let touched_steps: Vec<usize> = touched.iter().copied().collect();
        let notices = crate::ops::notice::for_batch(
            &self.plan,
            &self.state.id,
            self.next_seq,
            &outcome.log,
            at,
        );
        let mut batch = Batch {
            run_id: self.state.id.clone(),
            run: outcome.run_changed.then(|| {
                (
                    self.state.status,
                    self.state.stop,
                    self.state.reason.clone(),
                )
            }),
            steps: touched
                .into_iter()
                .map(|i| {
                    (
                        i,
                        self.plan.steps[i].id.clone(),
                        self.state.steps[i].clone(),
                    )
                })
                .collect(),
            events: Vec::with_capacity(outcome.log.len()),
            consumed,
            at,
            notices,
        };
        for entry in outcome.log {
            batch.events.push((self.next_seq, entry));
            self.next_seq += 1;
        }
        let committed = batch.events.clone();
        if batch.run.is_some()
            || !batch.steps.is_empty()
            || !committed.is_empty()
            || !batch.consumed.is_empty()
        {
            self.exec.inner.store.commit(batch).await?;
        }
        self.record_metrics(&touched_steps);
        if let Some(met) = objective_met {
            self.exec.inner.metrics.run_objective(&self.plan.name, met);
        }
        for (seq, entry) in committed {
            let _ = self.exec.inner.progress.send(Progress {
                run_id: self.state.id.clone(),
                seq,
                at,
                entry,
            });
        }
        for effect in outcome.effects {
            self.dispatch(effect);
        }
        Ok(())
    }

    /// After a commit: the steps that just ended, and the run's ready queue.
    fn record_metrics(&mut self, touched: &[usize]) {
        let m = &self.exec.inner.metrics;
        for &i in touched {
            let (was, st) = (self.seen[i], &self.state.steps[i]);
            self.seen[i] = st.status;
            let status = match st.status {
                StepStatus::Succeeded => "succeeded",
                StepStatus::Failed => "failed",
                _ => continue,
            };
            if matches!(was, StepStatus::Succeeded | StepStatus::Failed) {
                continue;
            }
            let (Some(start), Some(end)) = (st.started_at, st.finished_at) else {
                continue;
            };
            let kind = match self.plan.steps[i].kind {
                StepKind::Action { .. } => metrics::StepKind::Action,
                StepKind::Approval(_) => metrics::StepKind::Approval,
            };
            m.step_ended(
                kind,
                status,
                Duration::from_millis((end - start).max(0) as u64),
            );
        }
        let queued = self.state.ready.len();
        m.queue_changed(queued as i64 - self.queued as i64);
        self.queued = queued;
    }

    fn call(&self, a: AttemptCall) -> Call {
        let def = &self.plan.steps[a.step];
        let StepKind::Action { call, undo } = &def.kind else {
            unreachable!("only action steps have attempts")
        };
        let c = if a.undo {
            undo.as_ref().unwrap_or(call)
        } else {
            call
        };
        let using = &self.plan.plugins[&c.plugin];
        Call {
            plugin: using.name.clone(),
            version: using.version.clone(),
            action: c.action.clone(),
            params: a.params,
            ctx: CallContext {
                run_id: self.state.id.clone(),
                step_id: def.id.clone(),
                attempt: a.attempt,
                idempotency_key: a.key,
                dry_run: false,
            },
            grants: a.grants,
            timeout: def.timeout,
            progress: None,
            build: self.builds.get(&using.name).cloned(),
        }
    }

    fn dispatch(&mut self, effect: Effect) {
        let tx = self.events.0.clone();
        let invoker = self.exec.inner.invoker.clone();
        let exec = self.exec.clone();
        match effect {
            Effect::Invoke(a) => {
                let (step, attempt, undo) = (a.step, a.attempt, a.undo);
                let mut call = self.call(a);
                let (sink, reports) = plugin::ProgressSink::new();
                call.progress = Some(sink);
                let span = info_span!("attempt", step_id = %call.ctx.step_id, attempt, undo);
                self.tasks.spawn(
                    async move {
                        let (plugin, action) = (call.plugin.clone(), call.action.clone());
                        let began = std::time::Instant::now();
                        // Reports become events of this run; a send fails only when
                        // its driver is gone, which must not fail the call.
                        let progress_tx = tx.clone();
                        let emit = move |r: plugin::ProgressReport| {
                            let _ = progress_tx.send(Event::Progress {
                                step,
                                attempt,
                                undo,
                                done: r.done,
                                total: r.total,
                                message: r.message,
                            });
                        };
                        let result =
                            progress::forwarding(invoker.invoke(call), reports, emit).await;
                        exec.inner.metrics.plugin_call(
                            &plugin,
                            &action,
                            CallKind::Invoke,
                            result.is_ok(),
                            began.elapsed(),
                        );
                        let result = result.map_err(failure);
                        let _ = tx.send(Event::Finished {
                            step,
                            attempt,
                            undo,
                            result,
                        });
                    }
                    .instrument(span),
                );
            }
            Effect::Observe(a) => {
                let (step, attempt, undo) = (a.step, a.attempt, a.undo);
                let call = self.call(a);
                self.tasks.spawn(async move {
                    // Without a manifest we cannot know the action is safe to repeat.
                    let effect = match invoker.manifest(&call.plugin, &call.version).await {
                        Ok(m) => m
                            .action(&call.action)
                            .map(|a| a.effect)
                            .unwrap_or(EffectClass::Mutating),
                        Err(_) => EffectClass::Mutating,
                    };
                    let (plugin, action) = (call.plugin.clone(), call.action.clone());
                    let began = std::time::Instant::now();
                    let result = invoker.observe(call).await;
                    exec.inner.metrics.plugin_call(
                        &plugin,
                        &action,
                        CallKind::Observe,
                        result.is_ok(),
                        began.elapsed(),
                    );
                    let observed = match result {
                        Ok(plugin::Observation::Done(v)) => Observed::Done(v),
                        Ok(plugin::Observation::NotDone) => Observed::NotDone,
                        Ok(plugin::Observation::Unknown(why)) => Observed::Unknown(why),
                        Err(e) => Observed::Unknown(format!("observe failed: {e}")),
                    };
                    let _ = tx.send(Event::Observed {
                        step,
                        attempt,
                        undo,
                        observed,
                        effect,
                    });
                });
            }
            Effect::Wake { step, at } => {
                let wait = (at - self.exec.now()).max(0) as u64;
                self.tasks.spawn(async move {
                    tokio::time::sleep(Duration::from_millis(wait)).await;
                    let _ = tx.send(Event::Due { step });
                });
            }
        }
    }
}

impl<I: Invoker> Drop for Driver<I> {
    fn drop(&mut self) {
        // A driver that stops (the run ended, was held, or its process is shutting
        // down) no longer has ready steps waiting in this process.
        self.exec.inner.metrics.queue_changed(-(self.queued as i64));
    }
}

fn failure(e: plugin::Error) -> Failure {
    Failure {
        retryable: e.retryable(),
        message: e.to_string(),
    }
}

/// A run id that sorts by creation time: `r` + 12 hex digits of milliseconds + 6 random.
fn new_run_id(now: Ms) -> String {
    format!("r{:012x}{:06x}", now, rand::random::<u32>() & 0xff_ffff)
}

#[cfg(test)]
mod tests;
