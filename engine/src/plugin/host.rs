//! `Host`: the wasmtime engine and its instance pool, the per-process cache of
//! compiled plugins (backed by the on-disk `cache`), and one call of a plugin export
//! in a fresh, capability-limited store.

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
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, UpdateDeadline,
};

use super::bindings::{self, PluginPre};
use super::cache::{Cache, Source};
use super::capability::{self, Capability};
use super::wasi::{Access, CallState, Caller};
use super::{Allocator, Call, CheckedPlans, Error, HostConfig, Invoker, Manifest, Observation};

/// Linear memory one call may use.
pub const MEMORY_LIMIT: usize = 64 << 20;
/// Largest output (JSON text) a call may return.
pub const OUTPUT_LIMIT: usize = 1 << 20;
/// How often the epoch advances, i.e. how long a busy guest runs before it yields
/// to tokio (and a timed-out call can be dropped).
const EPOCH_TICK: Duration = Duration::from_millis(10);
/// Calls in flight at once (each holds one instance). The pooling allocator reserves
/// this many slots up front; a call beyond it waits for a slot instead of failing.
pub const POOL_INSTANCES: u32 = 1000;
/// Core wasm instances, memories and tables one plugin component may have (a Rust
/// wasm32-wasip2 build has a few core instances and one memory).
const PER_COMPONENT: u32 = 8;

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
    /// Every build loaded in this process, by sha256: a run pinned to a build keeps
    /// calling it after an install replaced the plugin's cell.
    pub(super) builds: Mutex<HashMap<String, Arc<Loaded>>>,
    /// Compiled components kept between processes, if configured.
    cache: Option<Cache>,
    /// One permit per instance the allocator can hold at once.
    slots: tokio::sync::Semaphore,
    /// The allocator actually in use (pooling may have fallen back).
    allocator: Allocator,
}

/// A compiled plugin, ready to instantiate.
pub(super) struct Loaded {
    pre: PluginPre<CallState>,
    pub(super) manifest: Arc<Manifest>,
    /// What it asks for, from its imports.
    pub(super) capabilities: Vec<Capability>,
    /// Compiled now or loaded from the on-disk cache.
    pub(super) source: Source,
}

impl Host {
    pub fn new(config: HostConfig) -> Result<Host, Error> {
        let engine_error = |e: wasmtime::Error| Error::Load {
            path: "(wasmtime engine)".to_string(),
            message: format!("setting up the plugin runtime: {e:#}"),
        };
        let mut wasm = Config::new();
        wasm.epoch_interruption(true);
        let mut allocator = config.allocator;
        let engine = match allocator {
            Allocator::OnDemand => Engine::new(&wasm).map_err(engine_error)?,
            Allocator::Pooling => {
                let mut pooled = wasm.clone();
                pooled.allocation_strategy(InstanceAllocationStrategy::Pooling(pool()));
                match Engine::new(&pooled) {
                    Ok(engine) => engine,
                    Err(e) => {
                        // A small vm.max_map_count or address-space ulimit refuses the
                        // reservation; calls still work, only slower.
                        tracing::warn!(error = %format!("{e:#}"),
                            "the plugin instance pool could not be reserved; allocating instances on demand");
                        allocator = Allocator::OnDemand;
                        Engine::new(&wasm).map_err(engine_error)?
                    }
                }
            }
        };
        let cache = config.cache_dir.clone().map(|dir| Cache::new(dir, &engine));

        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(engine_error)?;
        // `wasi:http/outgoing-handler` and its types only: every request goes through
        // `http::Hooks::send_request`, which admits granted origins only.
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker).map_err(engine_error)?;
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
            cache,
            builds: Mutex::new(HashMap::new()),
            slots: tokio::sync::Semaphore::new(POOL_INSTANCES as usize),
            allocator,
        })
    }

    /// The allocator in use: `Pooling` unless asked otherwise or the OS refused it.
    pub fn allocator(&self) -> Allocator {
        self.allocator
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
        let kept = self.cache.as_ref().map(|_| bytes.clone());
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
        tracing::info!(plugin = name, version = %loaded.manifest.version, path = %shown,
            source = loaded.source.as_str(), "loaded plugin");
        let loaded = Arc::new(loaded);
        self.remember(&loaded, kept.as_deref());
        Ok(loaded)
    }

    /// Records a build this process loaded, so runs pinned to it can go on calling
    /// it, and keeps a copy of its wasm in the cache dir for later processes.
    pub(super) fn remember(&self, loaded: &Arc<Loaded>, bytes: Option<&[u8]>) {
        let sha = loaded.manifest.sha256.clone();
        if let (Some(cache), Some(bytes)) = (&self.cache, bytes) {
            cache.keep_wasm(&sha, bytes);
        }
        self.builds
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(sha, loaded.clone());
    }

    /// The build `sha256` of plugin `name`: the installed one if it is that build,
    /// else one loaded earlier in this process, else the copy kept in the cache dir.
    pub(super) async fn build(&self, name: &str, sha256: &str) -> Result<Arc<Loaded>, Error> {
        if let Ok(l) = self.loaded(name).await
            && l.manifest.sha256 == sha256
        {
            return Ok(l);
        }
        let seen = self
            .builds
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(sha256)
            .cloned();
        if let Some(l) = seen.filter(|l| l.manifest.name == name) {
            return Ok(l);
        }
        let gone = || Error::BuildGone {
            name: name.to_string(),
            sha256: sha256.to_string(),
        };
        let path = self
            .cache
            .as_ref()
            .map(|c| c.wasm_path(sha256))
            .filter(|p| p.is_file())
            .ok_or_else(gone)?;
        let shown = path.display().to_string();
        let bytes = std::fs::read(&path).map_err(|e| Error::Load {
            path: shown.clone(),
            message: format!("reading the kept build: {e}"),
        })?;
        if hex(&Sha256::digest(&bytes)) != sha256 {
            return Err(gone());
        }
        let loaded = Arc::new(self.compile(bytes, name, &shown).await?);
        if loaded.manifest.name != name {
            return Err(gone());
        }
        tracing::info!(plugin = name, version = %loaded.manifest.version, sha256,
            "loaded a pinned build kept in the cache");
        self.remember(&loaded, None);
        Ok(loaded)
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
        let cache = self.cache.clone();
        let (sha256, component, source) = tokio::task::spawn_blocking(move || {
            let sha256 = hex(&Sha256::digest(&bytes));
            let compiled = match &cache {
                Some(cache) => cache.load(&engine, &bytes, &sha256),
                None => Component::new(&engine, &bytes).map(|c| (c, Source::Compiled)),
            };
            let (component, source) = compiled.map_err(|e| {
                format!(
                    "compiling the component (is it a wasm32-wasip2 build of a medic plugin?): {e:#}"
                )
            })?;
            Ok::<_, String>((sha256, component, source))
        })
        .await
        .map_err(|e| load_error(format!("compiling the component: {e}")))?
        .map_err(load_error)?;
        let capabilities = capability::from_imports(
            component
                .component_type()
                .imports(&self.engine)
                .map(|(name, _)| name),
        );
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
            capabilities,
            source,
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
        let loaded = match &call.build {
            Some(sha256) => self.build(&call.plugin, sha256).await?,
            None => self.loaded(&call.plugin).await?,
        };
        check_version(&loaded.manifest, &call.version)?;
        if loaded.manifest.action(&call.action).is_none() {
            return Err(Error::UnknownAction {
                plugin: call.plugin.clone(),
                action: call.action.clone(),
            });
        }
        let connect = resolve(&call.grants.connect).await?;
        let http = super::http::resolve_origins(&call.grants.http)
            .await
            .map_err(|message| Error::Failed {
                message,
                // A name that does not resolve now may resolve once DNS recovers.
                retryable: true,
            })?;
        let caller = Caller {
            plugin: call.plugin.clone(),
            run_id: call.ctx.run_id.clone(),
            step_id: call.ctx.step_id.clone(),
            attempt: call.ctx.attempt,
        };
        let access = Access {
            connect,
            http,
            grants: call.grants.clone(),
            progress: call.progress.clone(),
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
        // Waits (rather than fails) when every pool slot is taken.
        let _slot = self.slots.acquire().await.map_err(|_| Error::Trap {
            message: "the plugin host is shutting down".to_string(),
        })?;
        let state = CallState::new(caller, access, &self.config, MEMORY_LIMIT, timeout);
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.limiter);
        // Yield to tokio on every tick: the guest keeps running, but the timeout
        // below gets to fire and drop the call. The callback runs only while the
        // guest executes (never while it waits in a host call), so counting its
        // ticks measures the guest's CPU time, at tick resolution.
        let cpu_budget = self.config.cpu_budget;
        let budget_ticks = cpu_ticks(cpu_budget);
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |mut ctx| {
            let state = ctx.data_mut();
            state.cpu_ticks += 1;
            if state.cpu_ticks > budget_ticks {
                state.cpu_exceeded = true;
                return Err(wasmtime::Error::msg("the call used up its CPU budget"));
            }
            Ok(UpdateDeadline::Yield(1))
        });

        let call = async {
            let plugin = pre.instantiate_async(&mut store).await?;
            export(&plugin, &mut store).await
        };
        match tokio::time::timeout(timeout, call).await {
            Err(_elapsed) => Err(Error::Timeout { after: timeout }),
            Ok(Ok(value)) => Ok(value),
            Ok(Err(_)) if store.data().cpu_exceeded => Err(Error::Limit {
                what: "CPU time".to_string(),
                message: format!(
                    "it ran for more than its CPU budget of {} (measured in {} ms ticks of \
                     guest execution; waiting on the network does not count): make the \
                     action do less per call, or raise the budget (medic \
                     --plugin-cpu-budget)",
                    humantime::format_duration(cpu_budget),
                    EPOCH_TICK.as_millis()
                ),
            }),
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

/// Whole epoch ticks in `budget`, at least one.
fn cpu_ticks(budget: Duration) -> u64 {
    (budget.as_millis() / EPOCH_TICK.as_millis()).max(1) as u64
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

/// The instance pool, sized for medic's limits: [`POOL_INSTANCES`] calls at once,
/// each with at most [`MEMORY_LIMIT`] of linear memory. Virtual address space is
/// reserved up front; memory is committed only as instances touch it.
fn pool() -> PoolingAllocationConfig {
    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(POOL_INSTANCES)
        .total_core_instances(POOL_INSTANCES * PER_COMPONENT)
        .max_core_instances_per_component(PER_COMPONENT)
        .total_memories(POOL_INSTANCES * 2)
        .max_memories_per_component(PER_COMPONENT)
        .total_tables(POOL_INSTANCES * PER_COMPONENT)
        .max_tables_per_component(PER_COMPONENT)
        .total_stacks(POOL_INSTANCES)
        .max_memory_size(MEMORY_LIMIT)
        // A freed slot's memory is returned to the kernel (madvise) in batches of
        // 32 instead of one call each: every madvise is a TLB shootdown across the
        // runtime's threads, and a slot is reused only after its batch is flushed.
        // Measured (benches/plugin.rs): sequential noop call 26 -> 16 us, 16
        // parallel callers 1.47x on-demand; keeping 1 MiB resident (memset instead
        // of madvise) was slower sequentially (25 us) and gained less in parallel.
        .decommit_batch_size(32);
    pool
}

pub(super) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
