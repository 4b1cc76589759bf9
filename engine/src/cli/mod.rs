//! `cli` is the only user of clap and anyhow: the `medic` commands, run in-process
//! on the embedded SQLite database.

mod progress;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use serde_json::{Map, Value};

use crate::executor::{CommandKind, Executor, Node, SystemClock};
use crate::plan::{self, Plan};
use crate::plugin::{Host, HostConfig};
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
    /// Run a plan to the end in this process, printing each step as it goes.
    Run {
        file: PathBuf,
        #[arg(long = "param", short = 'p')]
        params: Vec<String>,
    },
    /// List or show runs.
    Runs {
        #[command(subcommand)]
        command: RunsCommand,
    },
    /// Serve the REST API; takes over unfinished runs whose medic process died.
    Serve {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:7777", env = "MEDIC_LISTEN")]
        listen: std::net::SocketAddr,
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
    /// Leave a held step (or its undo) as it is and go on.
    Skip { run: String, step: String },
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
        Ok(Env {
            data_dir,
            plugin_dirs,
        })
    }

    fn store(&self) -> Result<Store> {
        std::fs::create_dir_all(&self.data_dir)
            .with_context(|| format!("creating the data dir {}", self.data_dir.display()))?;
        Ok(Store::open(&self.data_dir.join("medic.db"))?)
    }

    fn host(&self) -> Result<Host> {
        Ok(Host::new(HostConfig {
            plugin_dirs: self.plugin_dirs.clone(),
            default_timeout: Duration::from_secs(300),
        })?)
    }

    fn executor(&self) -> Result<Executor<Host>> {
        let node = Node::register(&self.data_dir)?;
        Ok(Executor::new(
            self.store()?,
            Arc::new(self.host()?),
            Arc::new(SystemClock),
            node,
        ))
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
        Command::Run { file, params } => {
            let exec = env.executor()?;
            let (plan, params) = match load_plan(exec_host(&exec), &file, &params).await {
                Ok(v) => v,
                Err(code) => return Ok(code),
            };
            let run = exec.create(&plan, params).await?;
            println!(
                "run {run} started: plan `{}` ({} steps, {})",
                plan.name,
                plan.steps.len(),
                &plan.hash[..12]
            );
            drive(&exec, &run).await
        }
        Command::Serve { listen } => {
            let exec = env.executor()?;
            let state = crate::api::AppState::new(exec);
            let resumed = state.resume_orphans().await?;
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| format!("listening on {listen}"))?;
            println!(
                "medic serving on http://{} ({resumed} unfinished run(s) resumed)",
                listener.local_addr()?
            );
            axum::serve(listener, crate::api::router(state))
                .with_graceful_shutdown(shutdown())
                .await
                .context("serving the API")?;
            // Runs in flight stay as the store has them; the next start resumes them.
            println!("medic stopped; unfinished runs resume at the next start");
            Ok(exit::SUCCEEDED)
        }
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
                println!(
                    "{:<22} {:<13} {:<24} {:<20} REASON",
                    "RUN", "STATUS", "PLAN", "CREATED"
                );
                for r in runs {
                    println!(
                        "{:<22} {:<13} {:<24} {:<20} {}",
                        r.id,
                        r.status.as_str(),
                        r.plan_name,
                        progress::clock(r.created_at),
                        r.reason.unwrap_or_default()
                    );
                }
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
    }
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
    let mut given = Map::new();
    for p in params {
        let Some((k, v)) = p.split_once('=') else {
            eprintln!("--param {p}: expected NAME=VALUE");
            return Err(exit::INVALID);
        };
        given.insert(k.to_owned(), Value::String(v.to_owned()));
    }
    let params = plan::bind_params(&plan, &given).map_err(|d| {
        for d in d.iter() {
            eprintln!("--param {d}");
        }
        eprintln!("{name}: the params do not fit the plan; nothing was run");
        exit::INVALID
    })?;
    Ok((plan, params))
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
            "  resolve the held step(s) (`medic retry {run} STEP` or `medic skip {run} STEP`), then `medic resume {run}`"
        );
    }
    Ok(match status {
        RunStatus::Succeeded => exit::SUCCEEDED,
        RunStatus::Failed => exit::FAILED,
        RunStatus::RolledBack => exit::ROLLED_BACK,
        RunStatus::Cancelled => exit::CANCELLED,
        RunStatus::Held | RunStatus::Running | RunStatus::RollingBack => exit::HELD,
    })
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
