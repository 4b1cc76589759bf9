//! `cli` is the only user of clap and anyhow: the `medic` commands, run in-process
//! on the embedded SQLite database, or with `--server URL` over the REST API of a
//! running `medic serve` (`remote`).

mod ops;
mod plugin;
mod progress;
mod remote;
mod safety;
mod schedule;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use serde_json::{Map, Value};

use crate::api::{AuthMode, Role};
use crate::executor::{CommandKind, Executor, Node, SystemClock};
use crate::plan::{self, Plan};
use crate::plugin::{Host, HostConfig, OperatorConfig};
use crate::run::RunStatus;
use crate::store::Store;

/// Exit codes: what a script calling medic at 3 a.m. needs to tell apart.
pub mod exit {
    pub const SUCCEEDED: u8 = 0;
    pub const FAILED: u8 = 1;
    pub const INVALID: u8 = 2;
    pub const ROLLED_BACK: u8 = 3;
    pub const CANCELLED: u8 = 4;
    pub const HELD: u8 = 5;
    /// Ctrl-C, as shells report SIGINT.
    pub const INTERRUPTED: u8 = 130;
}

#[derive(Parser, Debug)]
#[command(
    name = "medic",
    version,
    about = "Durable, declarative recovery plans for distributed data systems"
)]
struct Cli {
    /// Where medic keeps its database (medic.db) and node locks.
    #[arg(long, global = true, env = "MEDIC_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Directory of plugin components (NAME.wasm); repeatable. Default:
    /// DATA_DIR/plugins and ./plugins/dist.
    #[arg(
        long = "plugin-dir",
        global = true,
        env = "MEDIC_PLUGIN_DIR",
        value_delimiter = ':'
    )]
    plugin_dirs: Vec<PathBuf>,
    /// The operator configuration (secrets dir, SQL connections, HTTP credentials
    /// plugins may be granted). Default: DATA_DIR/medic.toml, if it exists.
    #[arg(long, global = true, env = "MEDIC_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// CPU time one plugin call may use (its own execution, not its waits on the
    /// network), e.g. 60s or 5m; a call past it fails with a CPU time limit error.
    #[arg(
        long,
        global = true,
        env = "MEDIC_PLUGIN_CPU_BUDGET",
        value_name = "DURATION",
        default_value = "60s",
        value_parser = humantime::parse_duration
    )]
    plugin_cpu_budget: Duration,
    /// Talk to a running `medic serve` at URL (e.g. http://127.0.0.1:7777) over its
    /// REST API instead of using the local database.
    #[arg(long, global = true, env = "MEDIC_SERVER", value_name = "URL")]
    server: Option<String>,
    /// Bearer token sent to the server with --server.
    #[arg(
        long,
        global = true,
        env = "MEDIC_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    token: Option<String>,
    /// With an https:// --server: trust the PEM certificate(s) in this file (a private
    /// CA, or the server's self-signed --tls-cert) instead of the Web PKI roots.
    #[arg(long, global = true, env = "MEDIC_CA_CERT", value_name = "PEM")]
    ca_cert: Option<PathBuf>,
    /// Directory of the plugin publishers' minisign public keys (*.pub) that plugin
    /// installs are verified against. Default: DATA_DIR/trusted-keys.
    #[arg(long, global = true, env = "MEDIC_TRUSTED_KEYS", value_name = "DIR")]
    trusted_keys: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Check a plan (and optionally params) without running anything.
    Validate {
        file: PathBuf,
        /// A param as NAME=VALUE; repeatable.
        #[arg(long = "param", short = 'p')]
        params: Vec<String>,
    },
    /// Run a plan to the end, printing each step as it goes: in this process, or
    /// with --server on the server (following its event stream).
    Run {
        /// The plan file (or --plan NAME with --server).
        #[arg(required_unless_present = "plan", conflicts_with = "plan")]
        file: Option<PathBuf>,
        /// With --server: run a registered plan, its latest version or NAME@VERSION.
        #[arg(long, value_name = "NAME[@VERSION]")]
        plan: Option<String>,
        #[arg(long = "param", short = 'p')]
        params: Vec<String>,
        /// With --server: print the run id and return; the run goes on at the server.
        #[arg(long)]
        detach: bool,
        /// Change nothing: resolve params and templates, ask each mutating action's
        /// plugin what it would do (read-only precondition checks), run read-only
        /// actions, and print the steps in order. No run is recorded. Exit 0 when every
        /// check passed, 1 otherwise.
        #[arg(long, conflicts_with = "detach")]
        dry_run: bool,
    },
    /// List or show runs.
    Runs {
        #[command(subcommand)]
        command: RunsCommand,
    },
    /// Plans registered on a medic server (with --server): register, list, show.
    Plans {
        #[command(subcommand)]
        command: PlansCommand,
    },
    /// Serve the REST API; takes over unfinished runs whose medic process died.
    /// Every call but /healthz, /readyz and /openapi.json needs a token (`medic token`).
    Serve {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:7777", env = "MEDIC_LISTEN")]
        listen: std::net::SocketAddr,
        /// Take every request as `anonymous` with role admin, no token needed. Only on
        /// a loopback address (127.0.0.1, ::1).
        #[arg(long)]
        no_auth: bool,
        /// Serve HTTPS with this PEM certificate chain (leaf first); needs --tls-key.
        #[arg(long, env = "MEDIC_TLS_CERT", requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// The PEM private key of --tls-cert.
        #[arg(long, env = "MEDIC_TLS_KEY", requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        /// Tests only: the clock is the system's plus the offset in ms written in
        /// this file, read at every tick (escalation thresholds, timers, schedules).
        #[arg(long, hide = true, env = "MEDIC_CLOCK_FILE")]
        clock_file: Option<PathBuf>,
    },
    /// Print a plan as a runbook for people: Markdown with params, grants,
    /// notifications and escalation, the DAG as a Mermaid flowchart, and each step.
    Doc { file: PathBuf },
    /// Print a run as a postmortem: who or what triggered it, approvals, steps with
    /// outputs, errors and durations, escalations, notifications and the timeline.
    Report {
        run: String,
        /// The report as JSON (what `GET /v1/runs/{id}/report` gives).
        #[arg(long)]
        json: bool,
    },
    /// Install, list and inspect plugins; create signing keys and sign plugins.
    Plugin {
        #[command(subcommand)]
        command: plugin::PluginCommand,
    },
    /// Create, list and revoke the API tokens of `medic serve`.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Preventive maintenance schedules of registered plans (fired by `medic serve`).
    Schedule {
        #[command(subcommand)]
        command: schedule::ScheduleCommand,
    },
    /// Target locks: list them; break-glass release (admin, with --reason).
    Locks {
        #[command(subcommand)]
        command: safety::LocksCommand,
    },
    /// Plans' circuit breakers: list them; break-glass reset (admin, with --reason).
    Breaker {
        #[command(subcommand)]
        command: safety::BreakerCommand,
    },
    /// Carry on with unfinished runs whose medic process died (all, or RUN).
    Resume { run: Option<String> },
    /// Approve (or reject) an approval step that is waiting.
    Approve {
        run: String,
        step: String,
        #[arg(long)]
        reject: bool,
        #[arg(long)]
        comment: Option<String>,
    },
    /// Cancel a run: nothing new starts, completed steps are undone.
    Cancel { run: String },
    /// Run a held step again, as a new attempt.
    Retry { run: String, step: String },
    /// Go on without a held step: recorded skipped, its undo never runs (for a held
    /// undo: leave it undone).
    Skip { run: String, step: String },
    /// A held step's effect is there (you checked the target): record it as done
    /// without running it again, so a rollback undoes it (for a held undo: done).
    Done { run: String, step: String },
}

#[derive(Subcommand, Debug)]
enum TokenCommand {
    /// Create a token and print its secret (once: only its sha256 is kept).
    Create {
        /// Who or what the token is for; recorded in the audit log and as the
        /// submitter of its runs.
        #[arg(long)]
        name: String,
        /// viewer (read), operator (submit and steer runs), approver (also approve),
        /// admin (everything).
        #[arg(long, value_parser = parse_role)]
        role: Role,
    },
    /// List tokens: names, roles, when created and last used. Never the secrets.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token: it stops working at once, also in a running `medic serve`.
    Revoke { name: String },
}

fn parse_role(s: &str) -> Result<Role, String> {
    Role::parse(s)
}

#[derive(Subcommand, Debug)]
enum RunsCommand {
    List {
        #[arg(long)]
        status: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
    Show {
        run: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
enum PlansCommand {
    /// Register a plan file as the next version of its name (the same content as the
    /// latest version registers nothing new).
    Register { file: PathBuf },
    /// List registered plans.
    List {
        #[arg(long)]
        json: bool,
    },
    /// NAME: its versions; NAME@VERSION (or NAME@latest): that version's source.
    Show {
        #[arg(value_name = "NAME[@VERSION]")]
        plan: String,
        #[arg(long)]
        json: bool,
    },
}

/// Entry point of the `medic` binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("MEDIC_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::from(exit::FAILED);
        }
    };
    if let Some(server) = cli.server.clone().filter(|s| !s.is_empty()) {
        let code = rt.block_on(remote::main(server, cli.token, cli.ca_cert, cli.command));
        // A blocking HTTP read left behind by Ctrl-C must not keep the process alive.
        rt.shutdown_background();
        return ExitCode::from(code);
    }
    match rt.block_on(dispatch(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(exit::INVALID)
        }
    }
}

struct Env {
    data_dir: PathBuf,
    plugin_dirs: Vec<PathBuf>,
    /// The operator configuration file, if there is one.
    config: Option<PathBuf>,
    plugin_cpu_budget: Duration,
    trusted_keys: PathBuf,
}

impl Env {
    fn new(cli: &Cli) -> Result<Env> {
        let data_dir = match &cli.data_dir {
            Some(d) => d.clone(),
            None => {
                let home = std::env::var_os("HOME")
                    .context("set --data-dir (or MEDIC_DATA_DIR): HOME is not set")?;
                PathBuf::from(home).join(".local/state/medic")
            }
        };
        let plugin_dirs = if cli.plugin_dirs.is_empty() {
            vec![data_dir.join("plugins"), PathBuf::from("plugins/dist")]
        } else {
            cli.plugin_dirs.clone()
        };
        let config = match &cli.config {
            Some(path) => Some(path.clone()),
            None => Some(data_dir.join("medic.toml")).filter(|p| p.is_file()),
        };
        let trusted_keys = cli
            .trusted_keys
            .clone()
            .unwrap_or_else(|| data_dir.join("trusted-keys"));
        Ok(Env {
            data_dir,
            plugin_dirs,
            config,
            plugin_cpu_budget: cli.plugin_cpu_budget,
            trusted_keys,
        })
    }

    fn store(&self) -> Result<Store> {
        std::fs::create_dir_all(&self.data_dir)
            .with_context(|| format!("creating the data dir {}", self.data_dir.display()))?;
        Ok(Store::open(&self.data_dir.join("medic.db"))?)
    }

    fn operator(&self) -> Result<OperatorConfig> {
        Ok(match &self.config {
            Some(path) => OperatorConfig::load(path).map_err(anyhow::Error::msg)?,
            None => OperatorConfig::default(),
        })
    }

    fn host(&self) -> Result<Host> {
        self.host_with(self.operator()?)
    }

    fn host_with(&self, operator: OperatorConfig) -> Result<Host> {
        let mut config = HostConfig::new(self.plugin_dirs.clone(), Duration::from_secs(300));
        config.operator = Arc::new(operator);
        config.artifacts_dir = Some(self.data_dir.join("artifacts"));
        config.cpu_budget = self.plugin_cpu_budget;
        config.cache_dir = Some(self.data_dir.join("plugin-cache"));
        config.trusted_keys = Some(self.trusted_keys.clone());
        Ok(Host::new(config)?)
    }

    fn executor(&self) -> Result<Executor<Host>> {
        self.executor_on(Arc::new(SystemClock))
    }

    fn executor_on(&self, clock: Arc<dyn crate::executor::Clock>) -> Result<Executor<Host>> {
        let node = Node::register(&self.data_dir)?;
        let operator = self.operator()?;
        let limits = crate::executor::GlobalLimits {
            concurrent_targets: operator.safety.concurrent_targets,
            targets_per_hour: operator.safety.targets_per_hour,
        };
        Ok(Executor::new(
            self.store()?,
            Arc::new(self.host_with(operator)?),
            clock,
            node,
        )
        .with_limits(limits))
    }
}

async fn dispatch(cli: Cli) -> Result<u8> {
    let env = Env::new(&cli)?;
    match cli.command {
        Command::Validate { file, params } => {
            let host = env.host()?;
            match load_plan(&host, &file, &params).await {
                Ok((plan, _)) => {
                    println!(
                        "{}: ok: plan `{}` with {} steps ({})",
                        file.display(),
                        plan.name,
                        plan.steps.len(),
                        &plan.hash[..12]
                    );
                    Ok(exit::SUCCEEDED)
                }
                Err(code) => Ok(code),
            }
        }
        Command::Run {
            file,
            plan,
            params,
            detach,
            dry_run,
        } => {
            if plan.is_some() || detach {
                bail!(
                    "--plan and --detach need a medic server: pass --server URL (or set MEDIC_SERVER)"
                );
            }
            let Some(file) = file else {
                bail!("name the plan file: medic run FILE");
            };
            let exec = env.executor()?;
            let (plan, params) = match load_plan(exec_host(&exec), &file, &params).await {
                Ok(v) => v,
                Err(code) => return Ok(code),
            };
            if dry_run {
                let report = exec.dry_run(&plan, params).await?;
                for line in crate::executor::describe_dry_run(&report) {
                    println!("{line}");
                }
                return Ok(if report["ok"] == true {
                    exit::SUCCEEDED
                } else {
                    exit::FAILED
                });
            }
            let run = exec.create(&plan, params).await?;
            println!(
                "run {run} started: plan `{}` ({} steps, {})",
                plan.name,
                plan.steps.len(),
                &plan.hash[..12]
            );
            let summary = exec.store().load_run(&run).await?.summary;
            if summary.status == RunStatus::Waiting {
                println!(
                    "run {run} waiting: {}",
                    summary.reason.as_deref().unwrap_or("for its locks")
                );
            }
            drive(&exec, &run).await
        }
        Command::Serve {
            listen,
            no_auth,
            tls_cert,
            tls_key,
            clock_file,
        } => {
            if no_auth && !listen.ip().is_loopback() {
                anyhow::bail!(
                    "--no-auth is only allowed on a loopback address (127.0.0.1 or ::1), not {listen}: \
                     anyone who can reach it could run plans. Create a token instead: \
                     medic token create --name NAME --role admin"
                );
            }
            let tls = match (&tls_cert, &tls_key) {
                (Some(cert), Some(key)) => Some(crate::api::tls::config(cert, key)?),
                _ => None,
            };
            let exec = match clock_file {
                Some(f) => env.executor_on(Arc::new(ops::FileClock(f)))?,
                None => env.executor()?,
            };
            let operator = Arc::new(env.operator()?);
            let auth = if no_auth {
                AuthMode::Off
            } else {
                AuthMode::Tokens
            };
            if auth == AuthMode::Tokens
                && exec
                    .store()
                    .tokens()
                    .await?
                    .iter()
                    .all(|t| t.revoked_at.is_some())
            {
                println!(
                    "no API tokens yet: every call but /healthz, /readyz and /openapi.json gets 401. \
                     Create one with: medic token create --name NAME --role admin"
                );
            }
            let state = crate::api::AppState::with_operator(exec, auth, operator);
            let resumed = state.resume_orphans().await?;
            // Notifications out and escalation, on the executor's clock.
            state.spawn_ops(std::time::Duration::from_secs(1));
            // Schedules are decided once before the listener opens (so a due time
            // missed while down is handled at start-up), then every second.
            tokio::spawn(crate::api::scheduler::run(
                state.clone(),
                std::time::Duration::from_secs(1),
            ));
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| format!("listening on {listen}"))?;
            let scheme = if tls.is_some() { "https" } else { "http" };
            println!(
                "medic serving on {scheme}://{} ({resumed} unfinished run(s) resumed{})",
                listener.local_addr()?,
                if no_auth {
                    "; --no-auth: no tokens checked"
                } else {
                    ""
                }
            );
            let router = crate::api::router(state);
            match tls {
                None => axum::serve(listener, router)
                    .with_graceful_shutdown(shutdown())
                    .await
                    .context("serving the API")?,
                Some(config) => {
                    axum::serve(crate::api::tls::TlsListener::new(listener, config)?, router)
                        .with_graceful_shutdown(shutdown())
                        .await
                        .context("serving the API over TLS")?
                }
            }
            // Runs in flight stay as the store has them; the next start resumes them.
            println!("medic stopped; unfinished runs resume at the next start");
            Ok(exit::SUCCEEDED)
        }
        Command::Token { command } => token(&env, command).await,
        Command::Plugin { command } => plugin::plugin(&env, command).await,
        Command::Schedule { command } => schedule::schedule(&env, command).await,
        Command::Locks { command } => safety::locks(&env, command).await,
        Command::Breaker { command } => safety::breaker(&env, command).await,
        Command::Doc { file } => ops::doc(&file),
        Command::Report { run, json } => ops::report(&env, &run, json).await,
        Command::Resume { run } => {
            let exec = env.executor()?;
            let one = run.is_some();
            let runs = match run {
                Some(r) => vec![r],
                None => exec
                    .store()
                    .unfinished_runs()
                    .await?
                    .into_iter()
                    .map(|r| r.id)
                    .collect(),
            };
            if runs.is_empty() {
                println!("no unfinished runs");
                return Ok(exit::SUCCEEDED);
            }
            let mut worst = exit::SUCCEEDED;
            let mut tasks = Vec::new();
            for run in runs {
                match exec.claim(&run).await {
                    Ok(()) => {}
                    // Another live medic is running it: nothing to resume, not a failure.
                    Err(e @ crate::executor::Error::Owned { .. }) if !one => {
                        println!("run {run} skipped: {e}");
                        continue;
                    }
                    Err(e) => {
                        eprintln!("run {run} not resumed: {e}");
                        worst = worst.max(exit::FAILED);
                        continue;
                    }
                }
                println!("run {run} resumed");
                let exec = exec.clone();
                tasks.push(tokio::spawn(async move { drive(&exec, &run).await }));
            }
            for t in tasks {
                worst = worst.max(t.await??);
            }
            Ok(worst)
        }
        Command::Runs {
            command:
                RunsCommand::List {
                    status,
                    limit,
                    json,
                },
        } => {
            let store = env.store()?;
            let status = status
                .map(|s| RunStatus::parse_input(&s).map_err(anyhow::Error::msg))
                .transpose()?;
            let runs = store
                .list_runs(&crate::store::RunFilter {
                    status,
                    limit,
                    ..Default::default()
                })
                .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&runs)?);
            } else {
                let Value::Array(runs) = serde_json::to_value(&runs)? else {
                    bail!("runs did not serialize as a list");
                };
                progress::print_list(&runs);
            }
            Ok(exit::SUCCEEDED)
        }
        Command::Runs {
            command: RunsCommand::Show { run, json },
        } => {
            let store = env.store()?;
            let view = store.detail(&run).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&view)?);
            } else {
                progress::print_show(&view);
            }
            Ok(exit::SUCCEEDED)
        }
        Command::Approve {
            run,
            step,
            reject,
            comment,
        } => {
            let kind = if reject {
                CommandKind::Reject
            } else {
                CommandKind::Approve
            };
            command(&env, &run, Some(&step), kind, comment.as_deref()).await
        }
        Command::Cancel { run } => command(&env, &run, None, CommandKind::Cancel, None).await,
        Command::Retry { run, step } => {
            command(&env, &run, Some(&step), CommandKind::Retry, None).await
        }
        Command::Skip { run, step } => {
            command(&env, &run, Some(&step), CommandKind::Skip, None).await
        }
        Command::Done { run, step } => {
            command(&env, &run, Some(&step), CommandKind::Done, None).await
        }
        Command::Plans { .. } => {
            bail!("plans are registered on a medic server: pass --server URL (or set MEDIC_SERVER)")
        }
    }
}

/// `medic token create | list | revoke`, on the local database.
async fn token(env: &Env, command: TokenCommand) -> Result<u8> {
    let store = env.store()?;
    let now = SystemClock.now_ms();
    match command {
        TokenCommand::Create { name, role } => {
            crate::api::check_token_name(&name).map_err(anyhow::Error::msg)?;
            let (secret, hash) = crate::api::new_token().map_err(anyhow::Error::msg)?;
            store.create_token(&name, role.as_str(), &hash, now).await?;
            // The secret alone on stdout, so `TOKEN=$(medic token create ...)` works.
            eprintln!("token `{name}` ({role}) created; its secret is shown only now, store it:");
            println!("{secret}");
        }
        TokenCommand::List { json } => {
            let tokens = store.tokens().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&tokens)?);
            } else {
                println!(
                    "{:<24} {:<9} {:<20} {:<20} STATE",
                    "NAME", "ROLE", "CREATED", "LAST USED"
                );
                for t in tokens {
                    println!(
                        "{:<24} {:<9} {:<20} {:<20} {}",
                        t.name,
                        t.role,
                        stamp(t.created_at),
                        t.last_used_at.map(stamp).unwrap_or("never".into()),
                        match t.revoked_at {
                            Some(at) => format!("revoked {}", stamp(at)),
                            None => "live".into(),
                        }
                    );
                }
            }
        }
        TokenCommand::Revoke { name } => {
            store.revoke_token(&name, now).await?;
            println!("token `{name}` revoked; calls with it get 401 from now on");
        }
    }
    Ok(exit::SUCCEEDED)
}

/// A timestamp as RFC 3339 (UTC, seconds).
fn stamp(at: i64) -> String {
    let t = std::time::UNIX_EPOCH + Duration::from_millis(at.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

fn exec_host(exec: &Executor<Host>) -> &Host {
    exec.invoker()
}

/// Parses and validates the plan file (checking actions against the installed
/// plugins) and binds the params. Prints every diagnostic; `Err` is the exit code.
async fn load_plan(
    host: &Host,
    file: &std::path::Path,
    params: &[String],
) -> Result<(Plan, Value), u8> {
    let name = file.display().to_string();
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{name}: cannot read the plan: {e}");
            return Err(exit::INVALID);
        }
    };
    let Some(format) = plan::Format::from_path(file) else {
        eprintln!("{name}: unknown plan format: name the file .yaml, .yml or .json");
        return Err(exit::INVALID);
    };
    let print = |d: plan::Diagnostics| {
        for d in d.iter() {
            eprintln!("{d}");
        }
        eprintln!("{name}: {} problem(s); nothing was run", d.len());
        exit::INVALID
    };
    let plan = crate::plugin::check_plan(host, &name, &text, format)
        .await
        .map_err(print)?;
    let given = parse_params(params).map_err(|e| {
        eprintln!("{e}");
        exit::INVALID
    })?;
    let params = plan::bind_params(&plan, &given).map_err(|d| {
        for d in d.iter() {
            eprintln!("--param {d}");
        }
        eprintln!("{name}: the params do not fit the plan; nothing was run");
        exit::INVALID
    })?;
    Ok((plan, params))
}

/// `--param NAME=VALUE`s as strings; the plan's param types coerce them when bound.
fn parse_params(params: &[String]) -> Result<Map<String, Value>> {
    let mut given = Map::new();
    for p in params {
        let Some((k, v)) = p.split_once('=') else {
            bail!("--param {p}: expected NAME=VALUE");
        };
        given.insert(k.to_owned(), Value::String(v.to_owned()));
    }
    Ok(given)
}

/// The exit code of a run that stands at `status`.
fn exit_for(status: RunStatus) -> u8 {
    match status {
        RunStatus::Succeeded => exit::SUCCEEDED,
        RunStatus::Failed => exit::FAILED,
        RunStatus::RolledBack => exit::ROLLED_BACK,
        RunStatus::Cancelled => exit::CANCELLED,
        RunStatus::Held | RunStatus::Waiting | RunStatus::Running | RunStatus::RollingBack => {
            exit::HELD
        }
    }
}

/// Drives a run, printing progress, and maps its end to an exit code.
async fn drive(exec: &Executor<Host>, run: &str) -> Result<u8> {
    let (stop, stopped) = tokio::sync::oneshot::channel();
    let printer = progress::spawn(exec.subscribe(), run.to_owned(), stopped);
    let status = tokio::select! {
        status = exec.drive(run) => Some(status),
        _ = tokio::signal::ctrl_c() => None,
    };
    let _ = stop.send(());
    let _ = printer.await;
    let status = match status {
        Some(Ok(status)) => status,
        // Steps may have run: this is not "invalid input", and the run is resumable.
        Some(Err(e)) => {
            eprintln!("error: run {run} stopped: {e}");
            eprintln!(
                "  what was committed is kept; `medic resume {run}` carries on once the cause is fixed"
            );
            return Ok(exit::FAILED);
        }
        None => {
            eprintln!("interrupted: run {run} is left as it is; `medic resume {run}` carries on");
            eprintln!(
                "  (attempts in flight are checked with their plugin before anything is re-run)"
            );
            return Ok(exit::INTERRUPTED);
        }
    };
    let summary = exec.store().load_run(run).await?.summary;
    let reason = summary.reason.map(|r| format!(": {r}")).unwrap_or_default();
    println!("run {run} {}{reason}", status.as_str());
    if status == RunStatus::Held {
        println!(
            "  resolve the held step(s) (`medic retry {run} STEP`, `medic done {run} STEP` or `medic skip {run} STEP`), then `medic resume {run}`"
        );
    }
    Ok(exit_for(status))
}

/// Records an operator command for a run after checking it makes sense now.
async fn command(
    env: &Env,
    run: &str,
    step: Option<&str>,
    kind: CommandKind,
    comment: Option<&str>,
) -> Result<u8> {
    let store = env.store()?;
    let by = std::env::var("USER").unwrap_or_else(|_| "operator".into());
    crate::executor::post_command(&store, run, step, kind, &by, comment, SystemClock.now_ms())
        .await?;
    let kind = kind.as_str();
    let stored = store.load_run(run).await?;
    let owner_alive = match &stored.summary.owner {
        Some(o) => crate::executor::node_alive(&env.data_dir, o)?,
        None => false,
    };
    if owner_alive {
        println!(
            "{kind} recorded for run {run}; the medic process running it picks it up within a second"
        );
    } else {
        println!(
            "{kind} recorded for run {run}; no medic process is running it: `medic resume {run}` carries on"
        );
    }
    Ok(exit::SUCCEEDED)
}

impl SystemClock {
    fn now_ms(&self) -> i64 {
        crate::executor::Clock::now(self)
    }
}
