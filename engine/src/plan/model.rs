//! The validated plan: what the rest of the engine uses. Built only by `plan::parse`.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;

/// An immutable, validated recovery or maintenance plan.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub name: String,
    pub kind: PlanKind,
    pub description: Option<String>,
    /// sha256 (hex) of `canonical`: the plan's identity in the store.
    pub hash: String,
    /// The plan document as canonical JSON (keys in file order, no whitespace).
    /// `plan::parse(.., Format::Json, ..)` of this text gives back the same plan.
    pub canonical: String,
    /// Declared params in file order.
    pub params: Vec<Param>,
    /// A JSON Schema (object) for the params, built from `params`.
    pub params_schema: Value,
    /// Plugins the plan uses, by the alias steps name them with.
    pub plugins: BTreeMap<String, PluginUse>,
    /// Steps in file order; `needs` hold indices into this list.
    pub steps: Vec<Step>,
    pub on_failure: FailurePolicy,
    /// How many steps of one run may be in flight at once.
    pub concurrency: usize,
}

impl Plan {
    pub fn step_index(&self, id: &str) -> Option<usize> {
        self.steps.iter().position(|s| s.id == id)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlanKind {
    Recovery,
    Maintenance,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Param {
    pub name: String,
    /// The param's JSON Schema as written (without `default`).
    pub schema: Value,
    pub default: Option<Value>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PluginUse {
    pub alias: String,
    /// Plugin name, from `use: NAME@VERSION`.
    pub name: String,
    /// Version requirement, from `use: NAME@VERSION` (semver requirement, e.g. `0.1`).
    pub version: String,
    pub grants: Grants,
}

/// Capabilities a plan grants a plugin. Templates (e.g. `${{ params.primary }}`) are
/// rendered when a step runs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Grants {
    /// `host:port` endpoints the plugin may open TCP connections to.
    pub connect: Vec<String>,
    /// Names of secrets the plugin may look up.
    pub secrets: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub id: String,
    /// Indices of the steps this one waits for.
    pub needs: Vec<usize>,
    /// A condition (expression, without `${{ }}`); false skips the step.
    pub when: Option<String>,
    pub kind: StepKind,
    pub retry: Retry,
    pub timeout: Option<Duration>,
    /// Overrides the plan's policy for this step.
    pub on_failure: Option<FailurePolicy>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum StepKind {
    Action { call: Call, undo: Option<Call> },
    Approval(Approval),
}

/// One plugin action with its (unrendered) params.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    /// Alias into `Plan::plugins`.
    pub plugin: String,
    pub action: String,
    /// Params as written; strings may hold `${{ ... }}` templates.
    pub with: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Approval {
    /// A template rendered when the step starts waiting.
    pub prompt: String,
    pub timeout: Option<Duration>,
    pub on_timeout: ApprovalTimeout,
    /// Whether the API token that submitted the run may answer this step itself
    /// (by default a second person must).
    pub allow_self_approval: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApprovalTimeout {
    Approve,
    Reject,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Retry {
    /// Total attempts, at least 1 (1 = no retry).
    pub attempts: u32,
    pub backoff: Backoff,
    /// Delay before the second attempt.
    pub initial: Duration,
    /// Upper bound of any delay.
    pub max: Duration,
    /// Spread delays by up to +-25% so retries of many runs do not align.
    pub jitter: bool,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            attempts: 1,
            backoff: Backoff::Exponential,
            initial: Duration::from_secs(1),
            max: Duration::from_secs(60),
            jitter: true,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backoff {
    Fixed,
    Exponential,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FailurePolicy {
    /// Start nothing new, let in-flight steps finish, fail the run.
    #[default]
    Abort,
    /// Tolerate the failure: dependents still run, the run can still succeed.
    Continue,
    /// Start nothing new, then undo completed steps in reverse topological order.
    Rollback,
}

/// What a plugin action does to the world (from the plugin's manifest).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EffectClass {
    ReadOnly,
    Idempotent,
    Mutating,
}

impl EffectClass {
    /// Whether running the action again after an unknown outcome is safe.
    pub fn rerunnable(self) -> bool {
        !matches!(self, EffectClass::Mutating)
    }
}

/// What validation needs to know about an action; provided by the plugin registry.
#[derive(Debug, Clone, PartialEq)]
pub struct ActionSpec {
    pub params_schema: Value,
    pub effect: EffectClass,
    pub inverse: Option<String>,
}

/// The plugins known to medic, as seen by validation. `plan` stays pure: the caller
/// loads plugins and answers these questions.
pub trait Catalog {
    /// The action `action` of the plugin `plugin` (name and version requirement).
    /// `Err` says why the plugin cannot be had (not installed, version mismatch);
    /// `Ok(None)` means the plugin exists but has no such action.
    fn action(&self, plugin: &PluginUse, action: &str) -> Result<Option<ActionSpec>, String>;
}

/// A map of step id to the JSON the templates of later steps see.
pub type Outputs = BTreeMap<String, Value>;
