//! `run` is the pure state machine of one run and its steps:
//! `transition(state, event, now) -> Outcome` (log entries to persist, effects to
//! dispatch after the commit). No I/O, no clock: time comes in with each event.

pub mod objective;
mod state;
mod transition;

pub use state::*;
pub use transition::{recover, transition};

use serde_json::Value;

use crate::plan::EffectClass;

/// Unix time in milliseconds.
pub type Ms = i64;

/// Why an attempt failed, as the state machine needs to know it.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub message: String,
    /// Whether another attempt may help (a refused connection, a timeout).
    pub retryable: bool,
}

/// What `observe` said about an attempt that was in flight when medic stopped.
#[derive(Debug, Clone, PartialEq)]
pub enum Observed {
    Done(Value),
    NotDone,
    Unknown(String),
}

/// What an operator decided about a held step.
#[derive(Debug, Clone, PartialEq)]
pub enum Resolution {
    /// Run the action (or its undo) again, as a new attempt.
    Retry,
    /// Go on without the step: it is recorded skipped (its undo never runs); for an
    /// undo, leave it undone.
    Skip,
    /// Its effect is there: record the step as succeeded (output `null`) without
    /// running it again, so a later rollback undoes it; for an undo, record it done.
    Done,
    /// Treat the step as failed for good; the failure policy applies.
    Fail,
}

/// Something that happened to a run. Each is applied by `transition`.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The run was created and may start.
    Start,
    /// An attempt of a step's action (`undo: false`) or of its undo returned.
    Finished {
        step: usize,
        attempt: u32,
        undo: bool,
        result: Result<Value, Failure>,
    },
    /// A timer the run asked for (`Effect::Wake`) fired.
    Due { step: usize },
    /// An operator approved or rejected an approval step.
    Decision {
        step: usize,
        approve: bool,
        by: String,
        comment: Option<String>,
    },
    /// An operator cancelled the run: completed steps are undone.
    Cancel { by: String },
    /// `observe` answered for an attempt found in flight at start-up.
    Observed {
        step: usize,
        attempt: u32,
        undo: bool,
        observed: Observed,
        effect: EffectClass,
    },
    /// An operator resolved a held step.
    Resolve {
        step: usize,
        resolution: Resolution,
        by: String,
    },
    /// The plugin of an attempt in flight reported how far it has come. Recorded
    /// only while that attempt is the step's current one; changes no state.
    Progress {
        step: usize,
        attempt: u32,
        undo: bool,
        done: u64,
        total: u64,
        message: String,
    },
}

/// One call of a step's action (or its undo), rendered and ready to hand to a plugin.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptCall {
    pub step: usize,
    pub attempt: u32,
    pub undo: bool,
    /// The idempotency key, `run/step/attempt`.
    pub key: String,
    pub params: Value,
    /// The plugin's grants, templates rendered.
    pub grants: crate::plan::Grants,
}

/// Work to do after the transition's records are durable.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Call the action (or its undo).
    Invoke(AttemptCall),
    /// Ask the plugin whether the effect of this in-flight attempt already holds.
    Observe(AttemptCall),
    /// Send `Event::Due { step }` at `at`.
    Wake { step: usize, at: Ms },
}

/// One record of the run's append-only event log (and, for attempts, the attempt
/// table). Serialized into the store as `kind` + JSON; read back by `medic --server`
/// from the event stream.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Entry {
    RunStatus {
        status: RunStatus,
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    AttemptStarted {
        step: String,
        attempt: u32,
        undo: bool,
        key: String,
        params: Value,
    },
    AttemptSucceeded {
        step: String,
        attempt: u32,
        undo: bool,
        output: Value,
    },
    AttemptFailed {
        step: String,
        attempt: u32,
        undo: bool,
        error: String,
        retryable: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        retry_at: Option<Ms>,
    },
    StepSkipped {
        step: String,
        reason: String,
    },
    StepNotRun {
        step: String,
    },
    ApprovalRequested {
        step: String,
        prompt: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        deadline: Option<Ms>,
    },
    ApprovalDecided {
        step: String,
        approved: bool,
        by: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        comment: Option<String>,
    },
    StepHeld {
        step: String,
        reason: String,
    },
    StepResolved {
        step: String,
        resolution: String,
        by: String,
    },
    Observed {
        step: String,
        attempt: u32,
        undo: bool,
        result: String,
    },
    CancelRequested {
        by: String,
    },
    /// The run ended: whether it met its plan's recovery time objective. `elapsed`
    /// is from the clock's start (the run's, or step `from`'s end) to its stop (the
    /// run's end, or step `to`'s end); `None` when the clock never started.
    Objective {
        within_ms: Ms,
        #[serde(skip_serializing_if = "Option::is_none")]
        elapsed_ms: Option<Ms>,
        met: bool,
        /// For people: e.g. `recovered in 42.1s, within 10m` or why it was missed.
        summary: String,
    },
    /// How far an attempt in flight has come (`total` 0: unknown), as its plugin
    /// reported it; at most a few per second per attempt, the last one always.
    StepProgress {
        step: String,
        attempt: u32,
        undo: bool,
        done: u64,
        total: u64,
        message: String,
    },
}

impl Entry {
    pub fn kind(&self) -> &'static str {
        match self {
            Entry::RunStatus { .. } => "run_status",
            Entry::AttemptStarted { .. } => "attempt_started",
            Entry::AttemptSucceeded { .. } => "attempt_succeeded",
            Entry::AttemptFailed { .. } => "attempt_failed",
            Entry::StepSkipped { .. } => "step_skipped",
            Entry::StepNotRun { .. } => "step_not_run",
            Entry::ApprovalRequested { .. } => "approval_requested",
            Entry::ApprovalDecided { .. } => "approval_decided",
            Entry::StepHeld { .. } => "step_held",
            Entry::StepResolved { .. } => "step_resolved",
            Entry::Observed { .. } => "observed",
            Entry::CancelRequested { .. } => "cancel_requested",
            Entry::StepProgress { .. } => "step_progress",
            Entry::Objective { .. } => "objective",
        }
    }

    /// The step the entry is about, if any.
    pub fn step(&self) -> Option<&str> {
        match self {
            Entry::RunStatus { .. } | Entry::CancelRequested { .. } | Entry::Objective { .. } => {
                None
            }
            Entry::AttemptStarted { step, .. }
            | Entry::AttemptSucceeded { step, .. }
            | Entry::AttemptFailed { step, .. }
            | Entry::StepSkipped { step, .. }
            | Entry::StepNotRun { step }
            | Entry::ApprovalRequested { step, .. }
            | Entry::ApprovalDecided { step, .. }
            | Entry::StepHeld { step, .. }
            | Entry::StepResolved { step, .. }
            | Entry::Observed { step, .. }
            | Entry::StepProgress { step, .. } => Some(step),
        }
    }
}

/// What one transition produced: records to commit, then effects to dispatch.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Outcome {
    pub log: Vec<Entry>,
    pub effects: Vec<Effect>,
    /// Steps whose state changed (their rows must be written).
    pub touched: Vec<usize>,
    /// Whether the run's own status or reason changed.
    pub run_changed: bool,
}

impl Outcome {
    pub fn merge(&mut self, other: Outcome) {
        self.log.extend(other.log);
        self.effects.extend(other.effects);
        self.touched.extend(other.touched);
        self.run_changed |= other.run_changed;
    }
}

/// The idempotency key of an attempt, handed to the plugin: `run/step/attempt`
/// (`run/step/undo-N` for undo attempts).
pub fn attempt_key(run_id: &str, step_id: &str, attempt: u32, undo: bool) -> String {
    if undo {
        format!("{run_id}/{step_id}/undo-{attempt}")
    } else {
        format!("{run_id}/{step_id}/{attempt}")
    }
}

#[cfg(test)]
mod tests;
