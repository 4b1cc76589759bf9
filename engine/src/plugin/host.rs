//! `Host`: the wasmtime engine, the per-process cache of compiled plugins, and one
//! call of a plugin export in a fresh, capability-limited store.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::sync::OnceCell;
use tracing::instrument;
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, Store, UpdateDeadline};

use super::bindings::{self, PluginPre};
use super::wasi::{Access, CallState, Caller};
use super::{Call, CheckedPlans, Error, HostConfig, Invoker, Manifest, Observation};

/// Linear memory one call may use.
pub const MEMORY_LIMIT: usize = 64 << 20;
/// Largest output (JSON text) a call may return.
pub const OUTPUT_LIMIT: usize = 1 << 20;
/// How often the epoch advances, i.e. how long a busy guest runs before it yields
/// to tokio (and a timed-out call can be dropped).
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// The wasmtime component host.
pub struct Host {
    pub(super) config: HostConfig,
    engine: Engine,
    linker: Linker<CallState>,
    /// One cell per plugin name: concurrent first calls compile once; a failed load
    /// leaves the cell empty so a later call (after the file is fixed) retries. An
    /// install puts a new, filled cell in place.
    pub(super) plugins: Mutex<HashMap<String, Arc<OnceCell<Arc<Loaded>>>>>,
    /// Held while installing, so two installs of one plugin cannot interleave their
    /// check of the installed version and their write.
    pub(super) installing: tokio::sync::Mutex<()>,
    ticker: Arc<AtomicBool>,
    /// Plans that passed `check_plan` against the plugins loaded here.
    checked: CheckedPlans,
}

/// A compiled plugin, ready to instantiate.
pub(super) struct Loaded {
    pre: PluginPre<CallState>,
    pub(super) manifest: Arc<Manifest>,
}

impl Host {
    pub fn new(config: HostConfig) -> Result<Host, Error> {
        let engine_error = |e: wasmtime::Error| Error::Load {
            path: "(wasmtime engine)".to_string(),
            message: format!("setting up the plugin runtime: {e:#}"),
        };
        let mut wasm = Config::new();
        wasm.epoch_interruption(true);
        let engine = Engine::new(&wasm).map_err(engine_error)?;

        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(engine_error)?;
        bindings::host::add_to_linker::<_, wasmtime::component::HasSelf<_>>(
            &mut linker,
            |state: &mut CallState| state,
        )
        .map_err(engine_error)?;
        bindings::sql::add_to_linker::<_, wasmtime::component::HasSelf<_>>(
            &mut linker,
            |state: &mut CallState| state,
        )
        .map_err(engine_error)?;

        // A plain thread, not a tokio task: it must tick even when every runtime
        // worker is busy running guest code.
        let ticker = Arc::new(AtomicBool::new(true));
        {
            let engine = engine.clone();
            let running = ticker.clone();
            std::thread::Builder::new()
                .name("medic-plugin-epoch".into())
                .spawn(move || {
                    while running.load(Ordering::Relaxed) {
                        std::thread::sleep(EPOCH_TICK);
                        engine.increment_epoch();
                    }
                })
                .map_err(|e| Error::Load {
                    path: "(wasmtime engine)".to_string(),
                    message: format!("starting the epoch ticker thread: {e}"),
                })?;
        }

        Ok(Host {
            config,
            engine,
            linker,
            plugins: Mutex::new(HashMap::new()),
            installing: tokio::sync::Mutex::new(()),
            ticker,
            checked: CheckedPlans::default(),
        })
    }

    /// The plugin `name`, compiled and its manifest read on first use.
    pub(super) async fn loaded(&self, name: &str) -> Result<Arc<Loaded>, Error> {
        let cell = {
            let mut plugins = self.plugins.lock().unwrap_or_else(|e| e.into_inner());
            plugins.entry(name.to_string()).or_default().clone()
        };
        cell.get_or_try_init(|| self.load(name)).await.cloned()
    }

    async fn load(&self, name: &str) -> Result<Arc<Loaded>, Error> {
        let path = self.find(name)?;
        let shown = path.display().to_string();
        // Reading and compiling take a while of I/O and CPU; keep them off the
        // async workers.
        let file = path.clone();
        let bytes = tokio::task::spawn_blocking(move || std::fs::read(&file))
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r.map_err(|e| e.to_string()))
            .map_err(|e| Error::Load {
                path: shown.clone(),
                message: format!("reading the file: {e}"),
            })?;
        let loaded = self.compile(bytes, name, &shown).await?;
        if loaded.manifest.name != name {
            return Err(Error::Load {
                path: shown,
                message: format!(
                    "the file is named `{name}.wasm` but the plugin calls itself `{}`; rename one",
                    loaded.manifest.name
                ),
            });
        }
        tracing::info!(plugin = name, version = %loaded.manifest.version, path = %shown, "loaded plugin");
        Ok(Arc::new(loaded))
    }

    /// Compiles a component, links it against what medic grants, and reads its
    /// manifest. `label` names the plugin in its log lines, `shown` in errors.
    pub(super) async fn compile(
        &self,
        bytes: Vec<u8>,
        label: &str,
        shown: &str,
    ) -> Result<Loaded, Error> {
        let load_error = |message: String| Error::Load {
            path: shown.to_string(),
            message,
        };
        let engine = self.engine.clone();
        let (sha256, component) = tokio::task::spawn_blocking(move || {
            let sha256 = hex(&Sha256::digest(&bytes));
            let component = Component::new(&engine, &bytes).map_err(|e| {
                format!(
                    "compiling the component (is it a wasm32-wasip2 build of a medic plugin?): {e:#}"
                )
            })?;
            Ok::<_, String>((sha256, component))
        })
        .await
        .map_err(|e| load_error(format!("compiling the component: {e}")))?
        .map_err(load_error)?;
        let pre = self
            .linker
            .instantiate_pre(&component)
            .and_then(PluginPre::new)
            .map_err(|e| {
                load_error(format!(
                    "linking: the component imports something medic does not grant or does not \
                     export the medic:plugin/plugin world: {e:#}"
                ))
            })?;

        let caller = Caller {
            plugin: label.to_string(),
            ..Caller::default()
        };
        let wit_manifest = self
            .run(
                &pre,
                caller,
                Access::default(),
                self.config.default_timeout,
                |plugin, store| Box::pin(async move { plugin.call_manifest(store).await }),
            )
            .await
            .map_err(|e| load_error(format!("reading its manifest: {e}")))?;
        let manifest = bindings::manifest_from_wit(wit_manifest, shown, sha256)?;
        Ok(Loaded {
            pre,
            manifest: Arc::new(manifest),
        })
    }

    pub(super) fn find(&self, name: &str) -> Result<PathBuf, Error> {
        let not_found = || Error::NotFound {
            name: name.to_string(),
            dirs: self
                .config
                .plugin_dirs
                .iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        };
        if !super::valid_name(name) {
            return Err(not_found());
        }
        self.config
            .plugin_dirs
            .iter()
            .map(|dir| dir.join(format!("{name}.wasm")))
            .find(|path| path.is_file())
            .ok_or_else(not_found)
    }

    /// Checks the version and the action of `call`, then grants its endpoints.
    async fn prepare(&self, call: &Call) -> Result<(Arc<Loaded>, Caller, Access), Error> {
        let loaded = self.loaded(&call.plugin).await?;
        check_version(&loaded.manifest, &call.version)?;
        if loaded.manifest.action(&call.action).is_none() {
            return Err(Error::UnknownAction {
                plugin: call.plugin.clone(),
                action: call.action.clone(),
            });
        }
        let connect = resolve(&call.grants.connect).await?;
        let caller = Caller {
            plugin: call.plugin.clone(),
            run_id: call.ctx.run_id.clone(),
            step_id: call.ctx.step_id.clone(),
            attempt: call.ctx.attempt,
        };
        let access = Access {
            connect,
            grants: call.grants.clone(),
        };
        Ok((loaded, caller, access))
    }

    /// Runs one export in a fresh store and instance, within `timeout`.
    async fn run<R, F>(
        &self,
        pre: &PluginPre<CallState>,
        caller: Caller,
        access: Access,
        timeout: Duration,
        export: F,
    ) -> Result<R, Error>
    where
        F: for<'a> FnOnce(
            &'a bindings::Plugin,
            &'a mut Store<CallState>,
        ) -> std::pin::Pin<
            Box<dyn std::future::Future<Output = wasmtime::Result<R>> + Send + 'a>,
        >,
    {
        let state = CallState::new(caller, access, &self.config, MEMORY_LIMIT, timeout);
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.limiter);
        // Yield to tokio on every tick: the guest keeps running, but the timeout
        // below gets to fire and drop the call.
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|_| Ok(UpdateDeadline::Yield(1)));

        let call = async {
            let plugin = pre.instantiate_async(&mut store).await?;
            export(&plugin, &mut store).await
        };
        match tokio::time::timeout(timeout, call).await {
            Err(_elapsed) => Err(Error::Timeout { after: timeout }),
            Ok(Ok(value)) => Ok(value),
            Ok(Err(trap)) => Err(match store.data().limiter.refused {
                Some(wanted) => Error::Limit {
                    what: "memory".to_string(),
                    message: format!(
                        "it asked for {} MiB of linear memory, the limit is {} MiB ({})",
                        wanted >> 20,
                        MEMORY_LIMIT >> 20,
                        trap_reason(&trap)
                    ),
                },
                None => Error::Trap {
                    message: trap_message(&trap, &store.data().stderr.contents()),
                },
            }),
        }
    }

    fn timeout(&self, call: &Call) -> Duration {
        call.timeout.unwrap_or(self.config.default_timeout)
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        self.ticker.store(false, Ordering::Relaxed);
    }
}

impl Invoker for Host {
    fn checked_plans(&self) -> Option<&CheckedPlans> {
        Some(&self.checked)
    }

    #[instrument(skip_all, fields(plugin, version))]
    async fn manifest(&self, plugin: &str, version: &str) -> Result<Arc<Manifest>, Error> {
        let loaded = self.loaded(plugin).await?;
        check_version(&loaded.manifest, version)?;
        Ok(loaded.manifest.clone())
    }

    #[instrument(skip_all, fields(plugin = %call.plugin, action = %call.action, run_id = %call.ctx.run_id, step_id = %call.ctx.step_id, attempt = call.ctx.attempt))]
    async fn invoke(&self, call: Call) -> Result<Value, Error> {
        let (loaded, caller, access) = self.prepare(&call).await?;
        let ctx = bindings::context_to_wit(&call.ctx);
        let params = call.params.to_string();
        let action = call.action.clone();
        let output = self
            .run(
                &loaded.pre,
                caller,
                access,
                self.timeout(&call),
                |plugin, store| {
                    Box::pin(async move { plugin.call_invoke(store, &ctx, &action, &params).await })
                },
            )
            .await?
            .map_err(bindings::failure_from_wit)?;
        check_output_size(output.len())?;
        bindings::parse_output(&output)
    }

    #[instrument(skip_all, fields(plugin = %call.plugin, action = %call.action, run_id = %call.ctx.run_id, step_id = %call.ctx.step_id, attempt = call.ctx.attempt))]
    async fn observe(&self, call: Call) -> Result<Observation, Error> {
        let (loaded, caller, access) = self.prepare(&call).await?;
        let ctx = bindings::context_to_wit(&call.ctx);
        let params = call.params.to_string();
        let action = call.action.clone();
        let observation = self
            .run(
                &loaded.pre,
                caller,
                access,
                self.timeout(&call),
                |plugin, store| {
                    Box::pin(
                        async move { plugin.call_observe(store, &ctx, &action, &params).await },
                    )
                },
            )
            .await?
            .map_err(bindings::failure_from_wit)?;
        if let bindings::wit::Observation::Done(output) = &observation {
            check_output_size(output.len())?;
        }
        bindings::observation_from_wit(observation)
    }
}

/// Why the guest stopped: the trap code (e.g. `wasm \`unreachable\` instruction
/// executed`, which is how a Rust panic ends) or the host error it ran into.
fn trap_reason(err: &wasmtime::Error) -> String {
    match err.downcast_ref::<wasmtime::Trap>() {
        Some(trap) => trap.to_string(),
        None => err.root_cause().to_string(),
    }
}

/// The trap reason, the guest function it happened in, and the end of the guest's
/// stderr (where a Rust panic prints its message).
fn trap_message(err: &wasmtime::Error, stderr: &[u8]) -> String {
    let mut message = trap_reason(err);
    let function = err
        .downcast_ref::<wasmtime::WasmBacktrace>()
        .and_then(|bt| {
            bt.frames()
                .iter()
                .find_map(|f| f.func_name().map(str::to_string))
        });
    if let Some(function) = function {
        message.push_str(&format!(" in {function}"));
    }
    let stderr = String::from_utf8_lossy(stderr);
    let stderr = stderr.trim();
    if !stderr.is_empty() {
        const TAIL: usize = 1000;
        let start = stderr.char_indices().rev().nth(TAIL).map_or(0, |(i, _)| i);
        // One line: error messages end up in single-line logs and events.
        let tail = stderr[start..].replace('\n', " / ");
        message.push_str(&format!("; its stderr: {tail}"));
    }
    message
}

fn check_version(manifest: &Manifest, wanted: &str) -> Result<(), Error> {
    let mismatch = || Error::Version {
        name: manifest.name.clone(),
        found: manifest.version.clone(),
        wanted: wanted.to_string(),
    };
    let req = semver::VersionReq::parse(wanted).map_err(|_| mismatch())?;
    let found = semver::Version::parse(&manifest.version).map_err(|_| mismatch())?;
    if req.matches(&found) {
        Ok(())
    } else {
        Err(mismatch())
    }
}

fn check_output_size(len: usize) -> Result<(), Error> {
    if len > OUTPUT_LIMIT {
        return Err(Error::Limit {
            what: "output size".to_string(),
            message: format!(
                "its output is {len} bytes, the limit is {OUTPUT_LIMIT}; return a reference \
                 (an artifact) instead of the data"
            ),
        });
    }
    Ok(())
}

/// Resolves the granted `host:port` endpoints now, on the host: the guest has no
/// name lookup, and the grant is the set of addresses they resolve to at call time.
async fn resolve(endpoints: &[String]) -> Result<HashSet<SocketAddr>, Error> {
    let mut addrs = HashSet::new();
    for endpoint in endpoints {
        let resolved = tokio::net::lookup_host(endpoint.as_str())
            .await
            .map_err(|e| Error::Failed {
                message: format!(
                    "resolving the granted endpoint `{endpoint}` (expected host:port): {e}"
                ),
                // A name that does not resolve now may resolve once DNS recovers.
                retryable: true,
            })?;
        addrs.extend(resolved);
    }
    Ok(addrs)
}

pub(super) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
