//! Per-call store state: the WASI p2 context a call is granted (TCP to its granted
//! endpoints only; no filesystem, environment, arguments, stdio, UDP or name lookup),
//! its `wasi:http` hooks (granted origins only, see `http`), the resource table, the
//! memory limiter, the CPU it used and where its progress reports go.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::sockets::SocketAddrUse;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use super::http::{GrantedOrigin, Hooks};
use super::sql::Sessions;
use super::{HostConfig, OperatorConfig, ProgressSink};
use crate::plan::Grants;

/// Who is calling, for the fields of the guest's log events.
#[derive(Debug, Clone, Default)]
pub(super) struct Caller {
    pub plugin: String,
    pub run_id: String,
    pub step_id: String,
    pub attempt: u32,
}

/// What one call may reach: the addresses its TCP grants resolved to, its HTTP
/// origins with the addresses they resolved to, and the plan's grants (rendered) for
/// the host's own interfaces.
#[derive(Debug, Clone, Default)]
pub(super) struct Access {
    pub connect: HashSet<SocketAddr>,
    pub http: Vec<GrantedOrigin>,
    pub grants: Grants,
    /// Where the call's progress reports go, if anywhere.
    pub progress: Option<ProgressSink>,
}

/// The `T` of one call's `Store<T>`; dropped with the store when the call ends.
pub(super) struct CallState {
    wasi: WasiCtx,
    /// The plan's grants for this call (secrets, SQL connections, HTTP origins).
    pub grants: Grants,
    /// The operator's configuration: what granted names mean.
    pub operator: Arc<OperatorConfig>,
    /// Where the host keeps runs' artifacts; `None` refuses them.
    pub artifacts_dir: Option<PathBuf>,
    /// Artifacts this call has appended to: its first append starts one afresh.
    pub artifacts_started: HashSet<String>,
    /// The call's SQL sessions, closed (or killed mid-statement) with the store.
    pub sql: Sessions,
    table: ResourceTable,
    http_ctx: WasiHttpCtx,
    http: Hooks,
    pub limiter: MemoryLimiter,
    /// Epoch ticks (`EPOCH_TICK` each) in which the guest was running.
    pub cpu_ticks: u64,
    /// Set when the call used up its CPU budget, to tell that trap from others.
    pub cpu_exceeded: bool,
    pub progress: Option<ProgressSink>,
    pub caller: Caller,
    /// The guest's stderr, kept so a trap can quote the panic message before it.
    pub stderr: MemoryOutputPipe,
}

/// Enough stderr for a panic message; a guest that writes more sees the stream closed.
const STDERR_CAPACITY: usize = 8 << 10;

impl CallState {
    /// `connect` holds the socket addresses the granted endpoints resolved to;
    /// `timeout` is the call's wall-clock limit, which bounds its HTTP waits and its
    /// SQL connects.
    pub fn new(
        caller: Caller,
        access: Access,
        config: &HostConfig,
        memory_limit: usize,
        timeout: Duration,
    ) -> CallState {
        let connect = Arc::new(access.connect);
        let stderr = MemoryOutputPipe::new(STDERR_CAPACITY);
        // The builder's defaults already give no env, args, preopens, stdin or
        // stdout; networking is spelled out because it is the one capability we grant.
        let wasi = WasiCtxBuilder::new()
            .stderr(stderr.clone())
            .allow_tcp(true)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .socket_addr_check(move |addr, usage| {
                let allowed = match usage {
                    SocketAddrUse::TcpConnect => connect.contains(&addr),
                    // `connect` first binds implicitly to the wildcard address; any
                    // explicit bind (a listener) is not a capability plugins get.
                    SocketAddrUse::TcpBind => addr.ip().is_unspecified() && addr.port() == 0,
                    _ => false,
                };
                Box::pin(async move { allowed })
            })
            .build();
        let http = Hooks {
            caller: caller.clone(),
            origins: Arc::new(access.http),
            operator: config.operator.clone(),
            deadline: tokio::time::Instant::now() + timeout,
        };
        CallState {
            wasi,
            grants: access.grants,
            operator: config.operator.clone(),
            artifacts_dir: config.artifacts_dir.clone(),
            artifacts_started: HashSet::new(),
            sql: Sessions::new(timeout),
            table: ResourceTable::new(),
            http_ctx: WasiHttpCtx::new(),
            http,
            limiter: MemoryLimiter::new(memory_limit),
            cpu_ticks: 0,
            cpu_exceeded: false,
            progress: access.progress,
            caller,
            stderr,
        }
    }
}

impl WasiView for CallState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for CallState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http_ctx,
            table: &mut self.table,
            hooks: &mut self.http,
        }
    }
}

/// Caps linear memory and remembers a refused growth, so a guest that aborts on an
/// allocation failure is reported as breaking its memory limit, not as a bare trap.
pub(super) struct MemoryLimiter {
    pub limit: usize,
    /// The size a refused `memory.grow` asked for.
    pub refused: Option<usize>,
}

impl MemoryLimiter {
    fn new(limit: usize) -> MemoryLimiter {
        MemoryLimiter {
            limit,
            refused: None,
        }
    }
}

/// Tables hold function references; this many is far beyond any plugin's needs.
const TABLE_ELEMENTS_LIMIT: usize = 100_000;

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.limit {
            self.refused = Some(desired);
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= TABLE_ELEMENTS_LIMIT)
    }
}
