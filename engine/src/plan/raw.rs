//! The plan file format as written (serde types). Each part is read on its own
//! after the schema check, so one malformed step does not hide the problems of
//! the others; `validate` turns these into the `model` types.

use serde::Deserialize;
use serde_json::{Map, Value};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMetadata {
    pub name: String,
    pub description: Option<String>,
    /// Schedules the plan declares for itself (checked one by one in `validate`).
    #[serde(default)]
    pub schedules: Vec<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawObjective {
    pub within: String,
    pub from: Option<String>,
    pub to: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPlugin {
    #[serde(rename = "use")]
    pub use_: String,
    #[serde(default)]
    pub grants: RawGrants,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawGrants {
    #[serde(default)]
    pub connect: Vec<String>,
    #[serde(default)]
    pub http: Vec<String>,
    #[serde(default)]
    pub sql: Vec<String>,
    #[serde(default)]
    pub secrets: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawStep {
    pub id: String,
    #[serde(default)]
    pub needs: Vec<String>,
    pub when: Option<String>,
    pub uses: Option<String>,
    pub with: Option<Map<String, Value>>,
    pub undo: Option<RawCall>,
    pub retry: Option<RawRetry>,
    pub timeout: Option<String>,
    pub on_failure: Option<RawPolicy>,
    pub approval: Option<RawApproval>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCall {
    pub uses: String,
    pub with: Option<Map<String, Value>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRetry {
    pub attempts: Option<u32>,
    pub backoff: Option<RawBackoff>,
    pub initial: Option<String>,
    pub max: Option<String>,
    pub jitter: Option<bool>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum RawBackoff {
    Fixed,
    Exponential,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum RawPolicy {
    Abort,
    Continue,
    Rollback,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawApproval {
    pub prompt: String,
    pub timeout: Option<String>,
    pub on_timeout: Option<RawOnTimeout>,
    pub allow_self_approval: Option<bool>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum RawOnTimeout {
    Approve,
    Reject,
}

/// A lock as written: a name (exclusive) or `{ name, mode }`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum RawLock {
    Name(String),
    Full {
        name: String,
        #[serde(default)]
        mode: Option<String>,
    },
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLimits {
    pub concurrent_targets: Option<u32>,
    pub targets_per_hour: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawBreaker {
    pub failures: u32,
    pub window: String,
}
