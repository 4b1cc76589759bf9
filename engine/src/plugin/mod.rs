//! `plugin` is the only module that imports wasmtime: it finds plugin components,
//! compiles and instantiates them, grants capabilities and implements the host side
//! of `sdk/wit/plugin.wit`. No wasmtime type crosses its API.
//!
//! Files: `host` (engine, instance pool, per-process compile cache, one call in a
//! fresh store), `cache` (compiled components kept on disk between processes),
//! `wasi` (what a call's store may reach), `http` (outgoing `wasi:http`: granted
//! origins only, on addresses checked by the host, with the operator's credentials),
//! `sql` (the `sql` import: a call's sessions on the operator's MySQL connections),
//! `config` (the operator's medic.toml: secrets, SQL connections, HTTP credentials),
//! `bindings` (the WIT bindings and their conversions), `catalog` (plan checks against
//! installed plugins), `install` (listing the plugin dirs, inspecting one, installing
//! a component into the first one), `trust` (publisher signatures and the operator's
//! trusted keys), `capability` (what a component asks for, from its imports).

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::plan::{EffectClass, Grants};

mod bindings;
mod cache;
mod capability;
mod catalog;
pub mod config;
mod host;
mod http;
mod install;
mod sql;
mod trust;
mod wasi;

pub use cache::Source;
pub use capability::Capability;
pub use catalog::{CheckedPlans, check_plan};
pub use config::{HttpCredential, OperatorConfig, SqlConnection, SqlTls, read_secret};
pub use host::{Host, MEMORY_LIMIT, OUTPUT_LIMIT, POOL_INSTANCES};
pub use install::{Inspected, Install, InstallOptions, InstallOutcome, Installed};
pub use sql::ROW_SET_LIMIT;
pub use trust::{Signer, TrustedKeys, keygen, sign};

/// Whether `name` can be a plugin's name: it is the stem of its file (`NAME.wasm`),
/// so ASCII letters, digits, `-` and `_` only; never a path like `../x`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Where plugins are found and what every call may use.
#[derive(Debug, Clone)]
pub struct HostConfig {
    /// Directories searched for `NAME.wasm` components.
    pub plugin_dirs: Vec<PathBuf>,
    /// Wall-clock limit of one call when the step sets no timeout.
    pub default_timeout: Duration,
    /// The operator's secrets, SQL connections and HTTP credentials (medic.toml).
    pub operator: Arc<OperatorConfig>,
    /// Where runs' artifacts are kept (`DIR/RUN_ID/NAME`); `None` refuses them.
    pub artifacts_dir: Option<PathBuf>,
    /// CPU time one call may use (time the guest itself runs, not time it waits on
    /// the network or the host); past it the call stops with a `Limit` error.
    pub cpu_budget: Duration,
    /// Where compiled components are kept between processes (`DATA/plugin-cache`);
    /// `None` compiles each plugin once per process.
    pub cache_dir: Option<PathBuf>,
    /// The operator's trusted publisher keys: a dir of minisign `*.pub` files
    /// (`DATA/trusted-keys`). `None` trusts no key: only unsigned installs, when
    /// allowed, succeed.
    pub trusted_keys: Option<PathBuf>,
    /// How call instances get their memory.
    pub allocator: Allocator,
}

impl HostConfig {
    /// Plugin dirs and default timeout, a 60-second CPU budget per call, pooled
    /// instances, and nothing else configured: no compile cache, trusted keys,
    /// secrets, SQL connections, credentials or artifacts.
    pub fn new(plugin_dirs: Vec<PathBuf>, default_timeout: Duration) -> HostConfig {
        HostConfig {
            plugin_dirs,
            default_timeout,
            operator: Arc::default(),
            artifacts_dir: None,
            cpu_budget: Duration::from_secs(60),
            cache_dir: None,
            trusted_keys: None,
            allocator: Allocator::Pooling,
        }
    }
}

/// Instance allocation of the plugin runtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allocator {
    /// A pool reserved up front for [`POOL_INSTANCES`] concurrent calls: an instance
    /// takes a ready slot instead of mapping fresh memory (falls back to on-demand,
    /// with a warning, if the OS refuses the reservation).
    Pooling,
    /// Memory mapped per instance and unmapped when it is dropped.
    OnDemand,
}

/// A plugin's self-description, read from its `manifest()` export.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    pub name: String,
    pub version: String,
    pub description: String,
    pub actions: Vec<ActionInfo>,
    /// sha256 (hex) of the component file.
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ActionInfo {
    pub name: String,
    pub description: String,
    pub params_schema: Value,
    pub output_schema: Value,
    pub effect: EffectClass,
    pub inverse: Option<String>,
}

impl Manifest {
    pub fn action(&self, name: &str) -> Option<&ActionInfo> {
        self.actions.iter().find(|a| a.name == name)
    }
}

/// Who calls and why; becomes the WIT `context`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallContext {
    pub run_id: String,
    pub step_id: String,
    pub attempt: u32,
    /// `run/step/attempt`.
    pub idempotency_key: String,
    /// A dry run: the plugin changes nothing and answers what it would do (WIT
    /// `context.dry-run`, medic:plugin@0.3.0).
    pub dry_run: bool,
}

/// One call of a plugin action.
#[derive(Debug, Clone)]
pub struct Call {
    /// Plugin name and semver requirement (`probe`, `0.1`).
    pub plugin: String,
    pub version: String,
    pub action: String,
    pub params: Value,
    pub ctx: CallContext,
    /// What the plan grants the plugin, templates rendered: TCP endpoints, HTTP
    /// origins, SQL connection names and secret names. Nothing else is reachable.
    pub grants: Grants,
    /// Wall-clock limit of this call; `None` uses the host's default.
    pub timeout: Option<Duration>,
    /// Where the plugin's progress reports go; `None` only traces them.
    pub progress: Option<ProgressSink>,
    /// The exact build (sha256 of the component) to call: the one the run started
    /// with, even if another has been installed since. `None` calls the installed one.
    pub build: Option<String>,
}

/// How far a running call has come, as its plugin last reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgressReport {
    pub done: u64,
    /// 0 when the plugin does not know.
    pub total: u64,
    pub message: String,
}

/// Where a call's progress reports go. It keeps only the latest report, so a
/// plugin reporting in a tight loop never waits and never fills a queue; the reader
/// decides how often to look (the executor: a few times a second, and once more
/// when the call ends).
#[derive(Debug, Clone)]
pub struct ProgressSink(Arc<tokio::sync::watch::Sender<Option<ProgressReport>>>);

/// Longest progress message kept; a longer one is cut (at a character boundary).
pub const PROGRESS_MESSAGE_LIMIT: usize = 1000;

impl ProgressSink {
    pub fn new() -> (
        ProgressSink,
        tokio::sync::watch::Receiver<Option<ProgressReport>>,
    ) {
        let (tx, rx) = tokio::sync::watch::channel(None);
        (ProgressSink(Arc::new(tx)), rx)
    }

    /// Replaces the latest report; works whether or not anyone still reads.
    pub fn report(&self, done: u64, total: u64, mut message: String) {
        if message.len() > PROGRESS_MESSAGE_LIMIT {
            let mut end = PROGRESS_MESSAGE_LIMIT;
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            message.truncate(end);
        }
        self.0.send_replace(Some(ProgressReport {
            done,
            total,
            message,
        }));
    }
}

/// What `observe` found out about an action's effect.
#[derive(Debug, Clone, PartialEq)]
pub enum Observation {
    Done(Value),
    NotDone,
    Unknown(String),
}

/// Why a plugin call did not return an output. The variants let retry policy decide:
/// only `Failed { retryable: true }` and `Timeout` are worth another attempt.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("plugin `{name}` not found in {dirs}: install NAME.wasm there or pass --plugin-dir")]
    NotFound { name: String, dirs: String },
    #[error("plugin `{name}` is version {found}, but the plan asks for {wanted}")]
    Version {
        name: String,
        found: String,
        wanted: String,
    },
    #[error("loading plugin {path}: {message}")]
    Load { path: String, message: String },
    #[error("plugin `{plugin}` has no action `{action}`")]
    UnknownAction { plugin: String, action: String },
    #[error("{message}")]
    Failed { message: String, retryable: bool },
    #[error("plugin trapped: {message}")]
    Trap { message: String },
    #[error("timed out after {}", humantime::format_duration(*.after))]
    Timeout { after: Duration },
    #[error("plugin returned invalid output: {message}")]
    InvalidOutput { message: String },
    /// The call broke a host limit (memory, CPU time, output size); retrying would
    /// break it again.
    #[error("plugin broke its {what} limit: {message}")]
    Limit { what: String, message: String },
    /// A component offered for installation is not one medic can install.
    #[error("cannot install this plugin: {message}")]
    NotInstallable { message: String },
    /// Installing would replace a plugin with an older (or a different build of the
    /// same) version, which needs to be asked for explicitly.
    #[error(
        "plugin `{name}` {installed} is installed and this component is {offered}; \
         installing would {what} it: ask for it explicitly (force) if that is what you want"
    )]
    NotNewer {
        name: String,
        installed: String,
        offered: String,
        /// `downgrade` or `replace`.
        what: &'static str,
    },
    /// The install's signature policy refused it (unsigned, bad or untrusted
    /// signature); the message names the file, the key and what to do.
    #[error("{message}")]
    Untrusted { message: String },
    /// The build a run is pinned to is neither installed nor kept any more.
    #[error(
        "plugin `{name}` build {sha256} (the one this run started with) is no longer \
         installed nor kept in the plugin cache; install that exact build again (or \
         cancel the run and start a new one on the installed build)"
    )]
    BuildGone { name: String, sha256: String },
    #[error("writing the plugin to {path}: {source}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    pub fn retryable(&self) -> bool {
        matches!(
            self,
            Error::Failed {
                retryable: true,
                ..
            } | Error::Timeout { .. }
        )
    }
}

/// What the executor needs from plugins. `Host` is the real implementation; the
/// executor's unit tests use an in-process one.
pub trait Invoker: Send + Sync + 'static {
    /// Loads the plugin (once per process) and returns its manifest.
    fn manifest(
        &self,
        plugin: &str,
        version: &str,
    ) -> impl Future<Output = Result<Arc<Manifest>, Error>> + Send;
    fn invoke(&self, call: Call) -> impl Future<Output = Result<Value, Error>> + Send;
    fn observe(&self, call: Call) -> impl Future<Output = Result<Observation, Error>> + Send;
    /// Where `check_plan` may keep the plans that passed it (each used again only
    /// while this invoker gives the same manifests); `None` checks every plan afresh.
    fn checked_plans(&self) -> Option<&CheckedPlans> {
        None
    }
}

#[cfg(test)]
mod tests;
