//! The typed values a plugin author works with; the guest adapter converts them to
//! and from the WIT records (JSON text) at the boundary.

use serde::de::DeserializeOwned;
use serde_json::Value;

/// Who is calling and why (the WIT `context`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Context {
    pub run_id: String,
    pub step_id: String,
    /// 1 for the first attempt of a step, 2 for its first retry, ...
    pub attempt: u32,
    /// `run/step/attempt`; the same for a call and its re-invocation after a crash
    /// of medic, so hand it to the target to dedupe.
    pub idempotency_key: String,
}

/// What calling an action does to the world. Only read-only and idempotent actions
/// are ever re-run blindly by medic's crash recovery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    ReadOnly,
    Idempotent,
    Mutating,
}

/// One action of a plugin, as listed in its manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct Action {
    pub name: String,
    pub description: String,
    /// JSON Schema the params must match; medic validates plans against it.
    pub params_schema: Value,
    /// JSON Schema of the output.
    pub output_schema: Value,
    pub effect: Effect,
    /// The action that undoes this one.
    pub inverse: Option<String>,
}

impl Action {
    /// An action with no params (`{}` only) and any object as output.
    pub fn new(name: impl Into<String>, effect: Effect) -> Action {
        Action {
            name: name.into(),
            description: String::new(),
            params_schema: serde_json::json!({
                "type": "object", "properties": {}, "additionalProperties": false
            }),
            output_schema: serde_json::json!({"type": "object"}),
            effect,
            inverse: None,
        }
    }

    pub fn description(mut self, description: impl Into<String>) -> Action {
        self.description = description.into();
        self
    }

    pub fn params(mut self, schema: Value) -> Action {
        self.params_schema = schema;
        self
    }

    pub fn output(mut self, schema: Value) -> Action {
        self.output_schema = schema;
        self
    }

    pub fn inverse(mut self, action: impl Into<String>) -> Action {
        self.inverse = Some(action.into());
        self
    }
}

/// A plugin's self-description.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    pub name: String,
    /// Semantic version; plans ask for it as `name@requirement`.
    pub version: String,
    pub description: String,
    pub actions: Vec<Action>,
}

impl Manifest {
    pub fn new(
        name: impl Into<String>,
        version: impl Into<String>,
        description: impl Into<String>,
    ) -> Manifest {
        Manifest {
            name: name.into(),
            version: version.into(),
            description: description.into(),
            actions: Vec::new(),
        }
    }

    pub fn action(mut self, action: Action) -> Manifest {
        self.actions.push(action);
        self
    }
}

/// Why an action failed. `retryable` tells medic whether another attempt may help.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub message: String,
    pub retryable: bool,
}

impl Failure {
    /// A failure another attempt may cure (a refused connection, a busy target).
    pub fn retryable(message: impl Into<String>) -> Failure {
        Failure {
            message: message.into(),
            retryable: true,
        }
    }

    /// A failure that retrying will not cure (bad params, a missing object).
    pub fn permanent(message: impl Into<String>) -> Failure {
        Failure {
            message: message.into(),
            retryable: false,
        }
    }

    /// The failure for an action the plugin does not offer.
    pub fn unknown_action(action: &str) -> Failure {
        Failure::permanent(format!("unknown action `{action}`"))
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

/// What `observe` found out about an action's effect. `T` is the output: JSON for
/// an untyped [`Plugin`](crate::Plugin), the action's output type for a
/// [`TypedAction`](crate::TypedAction).
#[derive(Debug, Clone, PartialEq)]
pub enum Observation<T = Value> {
    /// The effect holds; the payload is what `invoke` would have returned.
    Done(T),
    /// The effect does not hold; running the action is needed.
    NotDone,
    /// The plugin cannot tell; the payload says why.
    Unknown(String),
}

/// Deserializes an action's params into a typed struct; a mismatch is a permanent
/// failure naming the action and the field (medic validates params against the
/// schema first, so this only fires when the schema and the struct disagree).
/// [`TypedAction`](crate::TypedAction)s get this for free.
pub fn params<T: DeserializeOwned>(action: &str, params: Value) -> Result<T, Failure> {
    crate::typed::parse_params(action, params)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_mismatch_is_a_permanent_failure_naming_the_action() {
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct P {
            ms: u64,
        }
        let err = params::<P>("sleep", serde_json::json!({"ms": "x"})).unwrap_err();
        assert!(!err.retryable);
        assert!(err.message.contains("`sleep`"), "{}", err.message);
        let ok: P = params("sleep", serde_json::json!({"ms": 5})).unwrap();
        assert_eq!(ok.ms, 5);
    }
}

/// What a dry run of an action found (see [`Plugin::plan`](crate::Plugin::plan) and
/// [`TypedAction::plan`](crate::TypedAction::plan)): what it would do, and the
/// read-only checks of its preconditions.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DryRun {
    /// Whether the plugin checked anything (false: no plan mode for this action).
    pub checked: bool,
    /// What the action would do, e.g. `SET GLOBAL read_only = ON on replica`.
    pub would: String,
    pub checks: Vec<Check>,
}

/// One read-only precondition check of a dry run.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Check {
    pub what: String,
    pub ok: bool,
    pub detail: String,
}

impl DryRun {
    /// What the default plan mode answers: nothing was checked.
    pub fn unchecked(action: &str) -> DryRun {
        DryRun {
            checked: false,
            would: format!(
                "run `{action}` (the plugin has no plan mode for it: no precondition was checked)"
            ),
            checks: Vec::new(),
        }
    }

    /// A checked plan that would do `would`; add checks with [`DryRun::check`].
    pub fn would(would: impl Into<String>) -> DryRun {
        DryRun {
            checked: true,
            would: would.into(),
            checks: Vec::new(),
        }
    }

    pub fn check(mut self, what: impl Into<String>, ok: bool, detail: impl Into<String>) -> DryRun {
        self.checks.push(Check {
            what: what.into(),
            ok,
            detail: detail.into(),
        });
        self
    }

    /// Whether every check passed.
    pub fn ok(&self) -> bool {
        self.checks.iter().all(|c| c.ok)
    }
}
