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
    /// Schedules declared in `metadata.schedules`, validated; `plan` holds the
    /// plan's name (registering a version points them at it).
    pub schedules: Vec<crate::schedule::Spec>,
    /// The recovery time objective runs of the plan are measured against.
    pub objective: Option<Objective>,
    /// Safety rails: target locks, blast-radius limits, the circuit breaker.
    pub safety: Safety,
    /// The `notify` block: channels, events, step notifications, escalation tiers.
    pub notify: super::Notify,
}

impl Plan {
    pub fn step_index(&self, id: &str) -> Option<usize> {
        self.steps.iter().position(|s| s.id == id)
    }
}

/// A recovery time objective (`objective` in the plan): a run meets it when it (or
/// step `to`) succeeds at most `within` after it started (or step `from` ended).
#[derive(Debug, Clone, PartialEq)]
pub struct Objective {
    pub within: Duration,
    /// Index of the step whose end starts the clock; `None`: the run's start.
    pub from: Option<usize>,
    /// Index of the step whose end stops the clock; `None`: the run's end.
    pub to: Option<usize>,
}

/// What a plan declares to keep its runs from misfiring at scale (issue 12).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Safety {
    /// The resources a run touches; each name is a template rendered with the run's
    /// params at submission. The rendered names are also the run's *targets*, which
    /// the blast-radius limits count.
    pub locks: Vec<LockDecl>,
    /// What a run does when a lock is held by another run or a limit is reached.
    pub on_lock_busy: OnBusy,
    pub limits: Limits,
    pub breaker: Option<Breaker>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LockDecl {
    /// A template, e.g. `mysql/${{ params.cluster }}`.
    pub name: String,
    pub mode: LockMode,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LockMode {
    Shared,
    Exclusive,
}

impl LockMode {
    pub fn as_str(self) -> &'static str {
        match self {
            LockMode::Shared => "shared",
            LockMode::Exclusive => "exclusive",
        }
    }

    pub fn parse(s: &str) -> Option<LockMode> {
        match s {
            "shared" => Some(LockMode::Shared),
            "exclusive" => Some(LockMode::Exclusive),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnBusy {
    /// The run is created `waiting` and starts once it can have every lock.
    #[default]
    Wait,
    /// The submission is refused; no run is created.
    Refuse,
}

/// Blast-radius caps of one plan (the operator's global ones are in medic.toml).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// Distinct targets all running runs of the plan may hold at once.
    pub concurrent_targets: Option<u32>,
    /// Distinct targets runs of the plan may start on within any hour.
    pub targets_per_hour: Option<u32>,
}

/// After `failures` runs of the plan failed within `window`, new runs are refused
/// until an admin resets the breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Breaker {
    pub failures: u32,
    pub window: Duration,
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
    /// Origins (`scheme://host[:port]`) the plugin may send HTTP requests to.
    pub http: Vec<String>,
    /// Names of the operator's SQL connections (medic's configuration) the plugin may
    /// query through the host's `sql` interface.
    pub sql: Vec<String>,
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

/// An HTTP origin a plan grants: scheme, host and port, nothing else.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Origin {
    /// `http` or `https`.
    pub scheme: String,
    /// A name or an IP address (IPv6 without brackets).
    pub host: String,
    pub port: u16,
}

impl Origin {
    /// `host:port`, with brackets around an IPv6 address: what a resolver takes.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}", self.scheme, self.authority())
    }
}

/// Parses an HTTP grant: `http://host[:port]` or `https://host[:port]`, without a
/// path, query or user; the port defaults to the scheme's.
pub fn origin(text: &str) -> Result<Origin, String> {
    let expected = "expected an origin like `http://127.0.0.1:2379` or `https://ceph-mgr:8443` (scheme, host and port; no path)";
    let (scheme, rest) = text
        .split_once("://")
        .ok_or_else(|| format!("`{text}` has no scheme: {expected}"))?;
    let default_port = match scheme {
        "http" => 80,
        "https" => 443,
        other => return Err(format!("`{text}` has scheme `{other}`: {expected}")),
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.is_empty() || rest.contains(['/', '?', '#', '@']) {
        return Err(format!("`{text}` is not just an origin: {expected}"));
    }
    let (host, port) =
        if let Some(v6) = rest.strip_prefix('[') {
            let (host, after) = v6
                .split_once(']')
                .ok_or_else(|| format!("`{text}` has an unclosed `[`: {expected}"))?;
            match after {
                "" => (host, None),
                p => (
                    host,
                    Some(p.strip_prefix(':').ok_or_else(|| {
                        format!("`{text}`: expected `:PORT` after `]`: {expected}")
                    })?),
                ),
            }
        } else {
            match rest.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (rest, None),
            }
        };
    if host.is_empty() {
        return Err(format!("`{text}` has no host: {expected}"));
    }
    let port = match port {
        None => default_port,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("`{text}` has port `{p}`, expected 1-65535: {expected}"))?,
    };
    Ok(Origin {
        scheme: scheme.to_string(),
        host: host.to_ascii_lowercase(),
        port,
    })
}
