//! `medic --server URL ...`: the commands over the REST API of a running `medic serve`
//! instead of the local database, printing what the local commands print and
//! exiting with the same codes. Blocking HTTP (`ureq`) on a blocking thread, so
//! Ctrl-C stays with the async runtime.

mod http;
mod sse;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use super::plugin::{self, PluginCommand};
use super::safety::{self, BreakerCommand, LocksCommand};
use super::schedule::{self, ScheduleCommand};
use super::{Command, PlansCommand, RunsCommand, exit, exit_for, parse_params, progress};
use crate::run::{Entry, RunStatus};
use crate::schedule::Spec;
use http::{Client, segment};

/// How long `run` keeps trying to reach a server that went away mid-run (a restart
/// takes the run over, so waiting is usually right) before it gives up following.
const GIVE_UP_AFTER: Duration = Duration::from_secs(120);

/// Runs `command` against the server; prints errors; returns the exit code.
pub(super) async fn main(
    server: String,
    token: Option<String>,
    ca_cert: Option<PathBuf>,
    command: Command,
) -> u8 {
    let following = Arc::new(Mutex::new(None::<String>));
    let shown = server.clone();
    let work = tokio::task::spawn_blocking({
        let following = following.clone();
        move || -> Result<u8> {
            let client = Client::new(&server, token, ca_cert.as_deref())?;
            Remote { client, following }.dispatch(command)
        }
    });
    tokio::select! {
        done = work => match done {
            Ok(Ok(code)) => code,
            Ok(Err(e)) => {
                eprintln!("error: {e:#}");
                e.downcast_ref::<http::Error>()
                    .map_or(exit::INVALID, http::Error::exit_code)
            }
            Err(e) => {
                eprintln!("error: {e}");
                exit::FAILED
            }
        },
        _ = tokio::signal::ctrl_c() => {
            let run = following.lock().unwrap_or_else(|p| p.into_inner()).clone();
            match run {
                Some(run) => eprintln!(
                    "interrupted: stopped following run {run}; it goes on at medic {shown}\n  \
                     watch it: medic --server {shown} runs show {run}    stop it: medic --server {shown} cancel {run}"
                ),
                None => eprintln!("interrupted"),
            }
            exit::INTERRUPTED
        }
    }
}

struct Remote {
    client: Client,
    /// The run being followed, for the Ctrl-C message.
    following: Arc<Mutex<Option<String>>>,
}

impl Remote {
    fn dispatch(&self, command: Command) -> Result<u8> {
        match command {
            Command::Validate { file, params } => self.validate(&file, &params),
            Command::Run {
                file,
                plan,
                params,
                detach,
                dry_run,
            } => self.run(file.as_deref(), plan.as_deref(), &params, detach, dry_run),
            Command::Runs {
                command:
                    RunsCommand::List {
                        status,
                        limit,
                        json,
                    },
            } => self.list(status.as_deref(), limit, json),
            Command::Runs {
                command: RunsCommand::Show { run, json },
            } => {
                let view = self.show(&run)?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&view)?);
                } else {
                    progress::print_show(&view);
                }
                Ok(exit::SUCCEEDED)
            }
            Command::Plans { command } => match command {
                PlansCommand::Register { file } => self.register(&file),
                PlansCommand::List { json } => self.plans(json),
                PlansCommand::Show { plan, json } => self.plan(&plan, json),
            },
            Command::Doc { file } => super::ops::doc(&file),
            Command::Report { run, json } => {
                let body = self.client.get(
                    &format!("reading the report of run {run}"),
                    &format!("/v1/runs/{}/report", http::segment(&run)),
                )?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&body)?);
                } else {
                    let r: crate::ops::report::Report = serde_json::from_value(body)
                        .context("the server's report is not one this medic reads")?;
                    print!("{}", crate::ops::report::markdown(&r));
                }
                Ok(exit::SUCCEEDED)
            }
            Command::Resume { run } => self.resume(run),
            Command::Approve {
                run,
                step,
                reject,
                comment,
            } => {
                let action = if reject { "reject" } else { "approve" };
                self.command(&run, Some(&step), action, comment.as_deref())
            }
            Command::Cancel { run } => self.command(&run, None, "cancel", None),
            Command::Retry { run, step } => self.command(&run, Some(&step), "retry", None),
            Command::Skip { run, step } => self.command(&run, Some(&step), "skip", None),
            Command::Done { run, step } => self.command(&run, Some(&step), "done", None),
            Command::Serve { .. } => {
                bail!("`medic serve` runs a server; it does not take --server (unset MEDIC_SERVER)")
            }
            Command::Schedule { command } => self.schedule(command),
            Command::Locks { command } => self.locks(command),
            Command::Breaker { command } => self.breaker(command),
            Command::Plugin { command } => self.plugin(command),
            Command::Token { .. } => bail!(
                "`medic token` works on medic's host, against its database: run it there without --server (unset MEDIC_SERVER)"
            ),
        }
    }

    /// `medic locks ...` through `/v1/locks`.
    fn locks(&self, command: LocksCommand) -> Result<u8> {
        match command {
            LocksCommand::List { json } => {
                let body = self.client.get("listing locks", "/v1/locks")?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&body)?);
                } else {
                    safety::print_locks(body["locks"].as_array().map_or(&[], Vec::as_slice));
                }
            }
            LocksCommand::Release { name, reason } => {
                safety::check_reason(&reason)?;
                let reply = self.client.post(
                    &format!("releasing lock {name}"),
                    "/v1/locks/release",
                    &json!({ "name": name, "reason": reason }),
                    None,
                )?;
                let from: Vec<&str> = reply.body["released_from"]
                    .as_array()
                    .map(|a| a.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                println!("lock {name} released from {}", from.join(", "));
            }
        }
        Ok(exit::SUCCEEDED)
    }

    /// `medic breaker ...` through `/v1/breakers`.
    fn breaker(&self, command: BreakerCommand) -> Result<u8> {
        match command {
            BreakerCommand::List { json } => {
                let body = self.client.get("listing breakers", "/v1/breakers")?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&body)?);
                } else {
                    safety::print_breakers(body["breakers"].as_array().map_or(&[], Vec::as_slice));
                }
            }
            BreakerCommand::Reset { plan, reason } => {
                safety::check_reason(&reason)?;
                self.client.post(
                    &format!("resetting the breaker of plan {plan}"),
                    &format!("/v1/breakers/{}/reset", segment(&plan)),
                    &json!({ "reason": reason }),
                    None,
                )?;
                println!("breaker of plan {plan} reset: its runs may start again");
            }
        }
        Ok(exit::SUCCEEDED)
    }

    /// `medic schedule ...` through `/v1/schedules`, printing what the local command prints.
    fn schedule(&self, command: ScheduleCommand) -> Result<u8> {
        let path = |name: &str| format!("/v1/schedules/{}", segment(name));
        match command {
            ScheduleCommand::Add(add) => {
                let spec = serde_json::to_value(add.spec()?)?;
                let what = format!("creating schedule {}", add.name);
                let created = self.client.post(&what, "/v1/schedules", &spec, None)?.body;
                let name = &add.name;
                match (add.paused, created["next"][0]["due_at"].as_i64()) {
                    (true, _) => println!("schedule `{name}` created, paused"),
                    (false, Some(due)) => {
                        println!("schedule `{name}` created; next due {}", super::stamp(due))
                    }
                    (false, None) => {
                        println!("schedule `{name}` created; its cron names no future time")
                    }
                }
            }
            ScheduleCommand::List { json } => {
                let list = self.client.get("listing schedules", "/v1/schedules")?;
                let rows = list["schedules"].as_array().cloned().unwrap_or_default();
                if json {
                    println!("{}", serde_json::to_string_pretty(&rows)?);
                    return Ok(exit::SUCCEEDED);
                }
                schedule::print_header();
                for r in &rows {
                    let spec: Option<Spec> = serde_json::from_value(r["spec"].clone()).ok();
                    schedule::print_line(
                        r["name"].as_str().unwrap_or("?"),
                        r["enabled"].as_bool().unwrap_or(false),
                        spec.as_ref(),
                        r["next"][0]["due_at"].as_i64(),
                    );
                }
            }
            ScheduleCommand::Pause { name } => {
                let what = format!("pausing schedule {name}");
                self.client
                    .patch(&what, &path(&name), &json!({ "enabled": false }))?;
                println!("schedule `{name}` paused");
            }
            ScheduleCommand::Resume { name } => {
                let what = format!("resuming schedule {name}");
                self.client
                    .patch(&what, &path(&name), &json!({ "enabled": true }))?;
                println!("schedule `{name}` resumed; due times from now on fire");
            }
            ScheduleCommand::Rm { name } => {
                let what = format!("removing schedule {name}");
                self.client.delete(&what, &path(&name))?;
                println!("schedule `{name}` removed; the runs it created stay");
            }
        }
        Ok(exit::SUCCEEDED)
    }

    /// `medic plugin ...` through `/v1/plugins`, printing what the local command prints.
    fn plugin(&self, command: PluginCommand) -> Result<u8> {
        match command {
            PluginCommand::Install {
                file,
                signature,
                allow_unsigned,
                force,
            } => {
                let offered = plugin::read_offered(&file, signature.as_deref())?;
                let mut headers = Vec::new();
                if let Some((text, _)) = &offered.signature {
                    use base64::Engine as _;
                    headers.push((
                        crate::api::SIGNATURE_HEADER,
                        base64::engine::general_purpose::STANDARD.encode(text),
                    ));
                }
                let path = format!("/v1/plugins?force={force}&allow_unsigned={allow_unsigned}");
                let what = format!("installing {}", file.display());
                let done = self
                    .client
                    .post_bytes(&what, &path, "application/wasm", &headers, &offered.bytes)?
                    .body;
                let s = |k: &str| done[k].as_str().unwrap_or("?").to_string();
                plugin::print_installed(
                    &s("name"),
                    &s("version"),
                    &s("outcome"),
                    done["previous"].as_str(),
                    done["signed_by"].as_str(),
                    &format!("{} on {}", s("path"), self.client.base()),
                );
                Ok(exit::SUCCEEDED)
            }
            PluginCommand::List { json } => {
                let list = self.client.get("listing plugins", "/v1/plugins")?;
                plugin::print_list(&list, json)
            }
            PluginCommand::Inspect { plugin: p, json } => {
                let (name, version) = plugin::plugin_ref(&p);
                let doc = self.client.get(
                    &format!("inspecting plugin {name}"),
                    &format!("/v1/plugins/{}", segment(name)),
                )?;
                plugin::check_version(&doc, name, version)?;
                plugin::print_doc(&doc, json)
            }
            PluginCommand::Keygen { .. } | PluginCommand::Sign { .. } => bail!(
                "`medic plugin keygen` and `medic plugin sign` work on local files: run them without --server (unset MEDIC_SERVER)"
            ),
        }
    }

    /// How to call medic against this server, for the hints printed.
    fn medic(&self) -> String {
        format!("medic --server {}", self.client.base())
    }

    fn validate(&self, file: &Path, params: &[String]) -> Result<u8> {
        let name = file.display().to_string();
        let body = json!({ "plan": read_plan(file)?, "params": parse_params(params)? });
        let valid = self
            .client
            .post(
                &format!("validating {name}"),
                "/v1/plans/validate",
                &body,
                None,
            )?
            .body;
        println!(
            "{name}: ok: plan `{}` with {} steps ({})",
            valid["name"].as_str().unwrap_or("?"),
            valid["steps"],
            short(&valid["hash"])
        );
        Ok(exit::SUCCEEDED)
    }

    fn run(
        &self,
        file: Option<&Path>,
        plan: Option<&str>,
        params: &[String],
        detach: bool,
        dry_run: bool,
    ) -> Result<u8> {
        let mut body = match (file, plan) {
            (Some(file), _) => json!({ "plan": read_plan(file)? }),
            (None, Some(plan)) => {
                let (name, version) = plan_ref(plan)?;
                let mut b = json!({ "plan_name": name });
                if let Some(v) = version {
                    b["plan_version"] = v.into();
                }
                b
            }
            (None, None) => bail!("name the plan: `run FILE` or `run --plan NAME[@VERSION]`"),
        };
        body["params"] = Value::Object(parse_params(params)?);
        if dry_run {
            let report = self
                .client
                .post("dry-running the plan", "/v1/runs?dry_run=true", &body, None)?
                .body;
            for line in crate::executor::describe_dry_run(&report) {
                println!("{line}");
            }
            return Ok(if report["ok"] == true {
                exit::SUCCEEDED
            } else {
                exit::FAILED
            });
        }
        let submitted = self.submit(&body)?;
        let Some(run) = submitted["id"].as_str() else {
            bail!(
                "medic at {} accepted the run but did not say its id: {submitted}",
                self.client.base()
            );
        };
        if detach {
            println!("{run}");
            return Ok(exit::SUCCEEDED);
        }
        let view = self.show(run)?;
        println!(
            "run {run} started: plan `{}` ({} steps, {})",
            view["run"]["plan_name"].as_str().unwrap_or("?"),
            view["steps"].as_array().map_or(0, Vec::len),
            short(&view["run"]["plan_hash"])
        );
        self.follow(run, 0)
    }

    /// POST /v1/runs with one Idempotency-Key for this invocation, sent again while
    /// the answer may have been lost: the server makes one run per key.
    fn submit(&self, body: &Value) -> Result<Value, http::Error> {
        let key = format!("medic-cli-{:032x}", rand::random::<u128>());
        let mut delay = Duration::from_millis(500);
        let mut tries = 1;
        loop {
            match self
                .client
                .post("submitting the run", "/v1/runs", body, Some(&key))
            {
                Err(e) if e.is_transient() && tries < 4 => {
                    eprintln!(
                        "{e}\n  trying again in {delay:?} with the same Idempotency-Key (no second run)"
                    );
                    std::thread::sleep(delay);
                    delay *= 2;
                    tries += 1;
                }
                r => return r.map(|r| r.body),
            }
        }
    }

    fn show(&self, run: &str) -> Result<Value, http::Error> {
        self.client.get(
            &format!("reading run {run}"),
            &format!("/v1/runs/{}", segment(run)),
        )
    }

    /// Prints the run's events after `after` until the server ends the stream with the
    /// run ended or held, reconnecting with `Last-Event-ID` when the connection drops.
    /// Returns the exit code of how the run stands.
    fn follow(&self, run: &str, mut after: i64) -> Result<u8> {
        *self.following.lock().unwrap_or_else(|p| p.into_inner()) = Some(run.to_owned());
        let medic = self.medic();
        let mut trouble_since: Option<Instant> = None;
        let mut delay = Duration::from_millis(200);
        loop {
            let mut ended = false;
            let mut trouble = None;
            match self.client.events(run, after) {
                Ok(mut stream) => loop {
                    match stream.next_event() {
                        Ok(Some(ev)) => {
                            let row = serde_json::from_str(&ev.data).unwrap_or(Value::Null);
                            if let Some(seq) = print_row(&medic, run, after, &row) {
                                after = seq;
                                trouble_since = None;
                                delay = Duration::from_millis(200);
                            }
                        }
                        Ok(None) => {
                            ended = true;
                            break;
                        }
                        Err(e) => {
                            trouble = Some(format!("the event stream broke: {e}"));
                            break;
                        }
                    }
                },
                Err(e) if !e.is_transient() && e.status() != Some(500) => return Err(e.into()),
                Err(e) => trouble = Some(e.to_string()),
            }
            // The server ends the stream once the run has ended or is held; an end
            // while it still runs is a server going down, so look again.
            if ended {
                match self.show(run) {
                    Ok(view) => {
                        let status: RunStatus = serde_json::from_value(
                            view["run"]["status"].clone(),
                        )
                        .with_context(|| {
                            format!("medic at {} sent an unknown run status", self.client.base())
                        })?;
                        if status.is_terminal() || status == RunStatus::Held {
                            // The stream can end a moment before the events committed with
                            // the run's last status reach it; the run's view has them all.
                            for row in view["events"].as_array().into_iter().flatten() {
                                after = print_row(&medic, run, after, row).unwrap_or(after);
                            }
                            return Ok(self.finish(run, status, &view));
                        }
                    }
                    Err(e) if !e.is_transient() => return Err(e.into()),
                    Err(e) => trouble = Some(e.to_string()),
                }
            }
            if let Some(t) = trouble {
                let since = *trouble_since.get_or_insert_with(Instant::now);
                if since.elapsed() > GIVE_UP_AFTER {
                    bail!(
                        "{t}\n  gave up following run {run} after {GIVE_UP_AFTER:?}; it goes on at the server: `{medic} runs show {run}`"
                    );
                }
                eprintln!("{t}\n  reconnecting to follow run {run} after event {after}");
            }
            std::thread::sleep(delay);
            delay = (delay * 2).min(Duration::from_secs(5));
        }
    }

    /// The closing line of `run`/`resume`, as the local ones print it.
    fn finish(&self, run: &str, status: RunStatus, view: &Value) -> u8 {
        let reason = view["run"]["reason"]
            .as_str()
            .map(|r| format!(": {r}"))
            .unwrap_or_default();
        println!("run {run} {}{reason}", status.as_str());
        if status == RunStatus::Held {
            let medic = self.medic();
            println!(
                "  resolve the held step(s) (`{medic} retry {run} STEP`, `{medic} done {run} STEP` or `{medic} skip {run} STEP`); the server carries on from there"
            );
        }
        exit_for(status)
    }

    fn resume(&self, run: Option<String>) -> Result<u8> {
        let Some(run) = run else {
            bail!(
                "name the run: `{} resume RUN` (medic serve takes over every run whose process died when it starts)",
                self.medic()
            );
        };
        let view = self.show(&run)?;
        let after = view["events"]
            .as_array()
            .and_then(|e| e.last())
            .and_then(|e| e["seq"].as_i64())
            .unwrap_or(0);
        self.client.post(
            &format!("resuming run {run}"),
            &format!("/v1/runs/{}/resume", segment(&run)),
            &json!({}),
            None,
        )?;
        println!("run {run} resumed");
        self.follow(&run, after)
    }

    fn list(&self, status: Option<&str>, limit: usize, json: bool) -> Result<u8> {
        let mut query = format!("/v1/runs?limit={limit}");
        if let Some(s) = status {
            query.push_str(&format!("&status={}", segment(s)));
        }
        let list = self.client.get("listing runs", &query)?;
        let runs = list["runs"].as_array().cloned().unwrap_or_default();
        if json {
            println!("{}", serde_json::to_string_pretty(&runs)?);
        } else {
            progress::print_list(&runs);
        }
        Ok(exit::SUCCEEDED)
    }

    fn command(
        &self,
        run: &str,
        step: Option<&str>,
        action: &str,
        comment: Option<&str>,
    ) -> Result<u8> {
        let path = match step {
            Some(step) => format!("/v1/runs/{}/steps/{}/{action}", segment(run), segment(step)),
            None => format!("/v1/runs/{}/{action}", segment(run)),
        };
        // Servers with auth record the token's name instead.
        let mut body = json!({ "by": std::env::var("USER").unwrap_or_else(|_| "operator".into()) });
        if let Some(c) = comment {
            body["comment"] = c.into();
        }
        let what = match step {
            Some(step) => format!("{action} of step {step} of run {run}"),
            None => format!("{action} of run {run}"),
        };
        self.client.post(&what, &path, &body, None)?;
        println!(
            "{action} recorded for run {run}; medic at {} carries it out",
            self.client.base()
        );
        Ok(exit::SUCCEEDED)
    }

    fn register(&self, file: &Path) -> Result<u8> {
        let name = file.display().to_string();
        let reply = self.client.post(
            &format!("registering {name}"),
            "/v1/plans",
            &json!({ "plan": read_plan(file)? }),
            None,
        )?;
        let b = &reply.body;
        let (plan, version, hash) = (
            b["name"].as_str().unwrap_or("?"),
            &b["version"],
            short(&b["hash"]),
        );
        // The contract says `created`; a 200 without it means the same.
        let created = b["created"].as_bool().unwrap_or(reply.status == 201);
        if !created {
            println!(
                "plan `{plan}` version {version} unchanged ({hash}): it is already the latest version"
            );
        } else {
            println!("plan `{plan}` version {version} registered ({hash})");
        }
        Ok(exit::SUCCEEDED)
    }

    fn plans(&self, json: bool) -> Result<u8> {
        let list = self.client.get("listing plans", "/v1/plans")?;
        let plans = list["plans"].as_array().cloned().unwrap_or_default();
        if json {
            println!("{}", serde_json::to_string_pretty(&plans)?);
            return Ok(exit::SUCCEEDED);
        }
        println!("{:<32} {:>6} {:>8} UPDATED", "PLAN", "LATEST", "VERSIONS");
        for p in &plans {
            println!(
                "{:<32} {:>6} {:>8} {}",
                p["name"].as_str().unwrap_or("?"),
                p["latest"].to_string(),
                p["versions"].to_string(),
                when(&p["updated_at"])
            );
        }
        Ok(exit::SUCCEEDED)
    }

    /// NAME: its versions. NAME@VERSION: that version's source on stdout (so it can
    /// be saved and edited), what it is on stderr.
    fn plan(&self, plan: &str, json: bool) -> Result<u8> {
        let (name, version) = plan_ref(plan)?;
        if !plan.contains('@') {
            let view = self.client.get(
                &format!("reading plan {name}"),
                &format!("/v1/plans/{}", segment(name)),
            )?;
            if json {
                println!("{}", serde_json::to_string_pretty(&view)?);
                return Ok(exit::SUCCEEDED);
            }
            println!("plan `{name}`");
            println!("{:>7} {:<14} CREATED", "VERSION", "HASH");
            for v in view["versions"].as_array().into_iter().flatten() {
                println!(
                    "{:>7} {:<14} {}",
                    v["version"].to_string(),
                    short(&v["hash"]),
                    when(&v["created_at"])
                );
            }
            return Ok(exit::SUCCEEDED);
        }
        let version = version.map_or_else(|| "latest".to_owned(), |v| v.to_string());
        let view = self.client.get(
            &format!("reading plan {name} version {version}"),
            &format!("/v1/plans/{}/versions/{version}", segment(name)),
        )?;
        if json {
            println!("{}", serde_json::to_string_pretty(&view)?);
            return Ok(exit::SUCCEEDED);
        }
        eprintln!(
            "plan `{name}` version {} ({}), registered {}",
            view["version"],
            short(&view["hash"]),
            when(&view["created_at"])
        );
        let source = match &view["source"] {
            Value::String(s) => s.clone(),
            other => serde_json::to_string_pretty(other)?,
        };
        print!("{source}");
        if !source.ends_with('\n') {
            println!();
        }
        Ok(exit::SUCCEEDED)
    }
}

/// Prints one row of the run's event log (`{seq, at, kind, step, data}`, from the
/// stream or the run's view) as the local `run` prints it; returns its sequence
/// number, or `None` for a row already printed or not from the log.
fn print_row(medic: &str, run: &str, after: i64, row: &Value) -> Option<i64> {
    let seq = row["seq"].as_i64()?;
    if seq <= after {
        return None;
    }
    let at = row["at"].as_i64().unwrap_or(0);
    let line = match serde_json::from_value::<Entry>(row["data"].clone()) {
        Ok(entry) => progress::line(medic, run, &entry),
        // A newer server's kind of event: still worth a line.
        Err(_) => format!(
            "  {} {}",
            row["kind"].as_str().unwrap_or("event"),
            row["step"].as_str().unwrap_or("")
        ),
    };
    println!("{} {line}", progress::clock(at));
    Some(seq)
}

fn read_plan(file: &Path) -> Result<String> {
    std::fs::read_to_string(file)
        .with_context(|| format!("{}: cannot read the plan", file.display()))
}

/// `NAME` or `NAME@VERSION` (a number, or `latest`).
fn plan_ref(s: &str) -> Result<(&str, Option<u64>)> {
    let (name, version) = match s.rsplit_once('@') {
        Some((n, "latest")) => (n, None),
        Some((n, v)) => match v.parse::<u64>() {
            Ok(v) if v > 0 => (n, Some(v)),
            _ => bail!("plan `{s}`: VERSION in NAME@VERSION is a number from 1, or `latest`"),
        },
        None => (s, None),
    };
    if name.is_empty() {
        bail!("plan `{s}`: expected NAME or NAME@VERSION");
    }
    Ok((name, version))
}

/// The first 12 characters of a hash, as the local commands show it.
fn short(hash: &Value) -> String {
    hash.as_str().unwrap_or("?").chars().take(12).collect()
}

/// A timestamp as the server sent it: milliseconds, or already a date.
fn when(v: &Value) -> String {
    match v {
        Value::Number(n) => n.as_i64().map_or_else(
            || n.to_string(),
            |ms| {
                let t = std::time::UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
                humantime::format_rfc3339_seconds(t).to_string()
            },
        ),
        Value::String(s) => s.clone(),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_refs_take_a_version_number_or_latest() {
        assert_eq!(plan_ref("fix-db").unwrap(), ("fix-db", None));
        assert_eq!(plan_ref("fix-db@3").unwrap(), ("fix-db", Some(3)));
        assert_eq!(plan_ref("fix-db@latest").unwrap(), ("fix-db", None));
        assert!(plan_ref("fix-db@0").is_err());
        assert!(plan_ref("fix-db@x").is_err());
        assert!(plan_ref("@2").is_err());
    }
}
