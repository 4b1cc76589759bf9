//! The state of a run and of each of its steps, as persisted by `store`.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::Ms;

/// Where a run is. The last four are terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Created, but no step started: it waits for locks another run holds or for a
    /// blast-radius limit (`reason` says which). It becomes `running` in the same
    /// transaction that grants all its locks.
    Waiting,
    /// Steps are being started as they become ready.
    Running,
    /// A step failed with policy `rollback` (or the run was cancelled): nothing new
    /// starts; completed steps are being undone.
    RollingBack,
    /// Nothing can progress until an operator resolves a held step.
    Held,
    Succeeded,
    Failed,
    RolledBack,
    Cancelled,
}

impl RunStatus {
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            RunStatus::Succeeded | RunStatus::Failed | RunStatus::RolledBack | RunStatus::Cancelled
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Waiting => "waiting",
            RunStatus::Running => "running",
            RunStatus::RollingBack => "rolling_back",
            RunStatus::Held => "held",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::RolledBack => "rolled_back",
            RunStatus::Cancelled => "cancelled",
        }
    }

    /// Every status, in lifecycle order.
    pub const ALL: [RunStatus; 8] = [
        RunStatus::Waiting,
        RunStatus::Running,
        RunStatus::RollingBack,
        RunStatus::Held,
        RunStatus::Succeeded,
        RunStatus::Failed,
        RunStatus::RolledBack,
        RunStatus::Cancelled,
    ];

    pub fn parse(s: &str) -> Option<RunStatus> {
        RunStatus::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Like `parse`, with a message naming the valid statuses (for CLI and API input).
    pub fn parse_input(s: &str) -> Result<RunStatus, String> {
        RunStatus::parse(s).ok_or_else(|| {
            let names: Vec<&str> = RunStatus::ALL.iter().map(|st| st.as_str()).collect();
            format!("unknown status `{s}`: expected one of {}", names.join(", "))
        })
    }
}

/// Why the run stopped going forward, if it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// A step failed with policy `abort`: let in-flight steps finish, then fail.
    Abort,
    /// A step failed with policy `rollback`: finish in-flight steps, undo, roll back.
    Rollback,
    /// An operator cancelled: finish in-flight steps, undo, cancelled.
    Cancel,
}

/// Where a step is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    Pending,
    /// Attempt `attempt` of the action is in flight.
    Running,
    /// Waiting until `until` to start attempt `attempt + 1`.
    Backoff,
    /// Waiting for an operator's decision (until `until`, if the approval times out).
    Approval,
    Succeeded,
    /// Failed for good; `error` says why.
    Failed,
    /// Its `when` was false; `error` says why.
    Skipped,
    /// The run stopped before the step could start.
    NotRun,
    /// The outcome of an attempt is unknown and the action must not be re-run
    /// blindly, or its undo failed for good: an operator decides.
    Held,
    /// Undo attempt `undo_attempt` is in flight.
    Undoing,
    /// Waiting until `until` to retry the undo.
    UndoBackoff,
    Undone,
}

impl StepStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            StepStatus::Pending => "pending",
            StepStatus::Running => "running",
            StepStatus::Backoff => "backoff",
            StepStatus::Approval => "approval",
            StepStatus::Succeeded => "succeeded",
            StepStatus::Failed => "failed",
            StepStatus::Skipped => "skipped",
            StepStatus::NotRun => "not_run",
            StepStatus::Held => "held",
            StepStatus::Undoing => "undoing",
            StepStatus::UndoBackoff => "undo_backoff",
            StepStatus::Undone => "undone",
        }
    }

    /// Every status.
    pub const ALL: [StepStatus; 12] = [
        StepStatus::Pending,
        StepStatus::Running,
        StepStatus::Backoff,
        StepStatus::Approval,
        StepStatus::Succeeded,
        StepStatus::Failed,
        StepStatus::Skipped,
        StepStatus::NotRun,
        StepStatus::Held,
        StepStatus::Undoing,
        StepStatus::UndoBackoff,
        StepStatus::Undone,
    ];

    pub fn parse(s: &str) -> Option<StepStatus> {
        StepStatus::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// An attempt (of the action or its undo) is in flight.
    pub fn in_flight(self) -> bool {
        matches!(self, StepStatus::Running | StepStatus::Undoing)
    }
}

/// One step's persisted state.
#[derive(Debug, Clone, PartialEq)]
pub struct StepState {
    pub status: StepStatus,
    /// Attempts of the action started so far.
    pub attempt: u32,
    /// Attempts of the undo started so far.
    pub undo_attempt: u32,
    /// Deadline of a backoff or an approval.
    pub until: Option<Ms>,
    pub output: Option<Value>,
    pub error: Option<String>,
    /// Whether the hold is about the undo (true) or the action (false).
    pub held_undo: bool,
    pub started_at: Option<Ms>,
    pub finished_at: Option<Ms>,
}

impl StepState {
    pub fn new() -> StepState {
        StepState {
            status: StepStatus::Pending,
            attempt: 0,
            undo_attempt: 0,
            until: None,
            output: None,
            error: None,
            held_undo: false,
            started_at: None,
            finished_at: None,
        }
    }
}

impl Default for StepState {
    fn default() -> Self {
        StepState::new()
    }
}

/// A run's state: what `store` persists and `transition` changes.
#[derive(Debug, Clone, PartialEq)]
pub struct RunState {
    pub id: String,
    pub status: RunStatus,
    /// Why the run failed, is held, or was cancelled.
    pub reason: Option<String>,
    pub stop: Option<Stop>,
    pub steps: Vec<StepState>,
    /// The bound params of the run.
    pub params: Value,
    // Derived, not persisted: rebuilt by `RunState::restore`.
    pub(crate) scope: Value,
    pub(crate) ready: VecDeque<usize>,
    pub(crate) queued: Vec<bool>,
    /// Steps with an attempt in flight (`StepStatus::in_flight`).
    pub(crate) flying: usize,
}

impl RunState {
    /// A new run that has not started.
    pub fn new(id: String, params: Value, steps: usize) -> RunState {
        RunState::restore(
            id,
            RunStatus::Running,
            None,
            None,
            params,
            vec![StepState::new(); steps],
        )
    }

    /// A run read back from the store. `stop` is persisted with the run row.
    pub fn restore(
        id: String,
        status: RunStatus,
        reason: Option<String>,
        stop: Option<Stop>,
        params: Value,
        steps: Vec<StepState>,
    ) -> RunState {
        let flying = steps.iter().filter(|s| s.status.in_flight()).count();
        let mut state = RunState {
            scope: json!({ "params": params, "steps": {}, "run": { "id": id } }),
            queued: vec![false; steps.len()],
            flying,
            id,
            status,
            reason,
            stop,
            steps,
            params,
            ready: VecDeque::new(),
        };
        // Step entries need step ids, which only the plan knows: `recover` fills them.
        state.scope["steps"] = Value::Object(Map::new());
        state
    }

    pub(crate) fn set_scope(&mut self, step_id: &str, step: usize) {
        let s = &self.steps[step];
        let entry = json!({
            "status": s.status.as_str(),
            "output": s.output.clone().unwrap_or(Value::Null),
        });
        self.scope["steps"][step_id] = entry;
    }

    /// How many steps have an attempt in flight.
    pub fn in_flight(&self) -> usize {
        self.flying
    }

    /// The template scope: `{params, steps: {id: {status, output}}, run: {id}}`.
    pub fn scope(&self) -> &Value {
        &self.scope
    }
}
