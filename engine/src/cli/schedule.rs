//! `medic schedule add | list | pause | resume | rm`, on the local database (a
//! running `medic serve` on it picks changes up at its next tick).

use anyhow::{Context, Result};
use clap::{Args, Subcommand};

use super::{Env, exit, parse_params, stamp};
use crate::executor::{Clock, SystemClock};
use crate::schedule::{self, Missed, OutsideWindow, Overlap, Spec};
use crate::store;

#[derive(Subcommand, Debug)]
pub(super) enum ScheduleCommand {
    /// Create a schedule of a registered plan (`medic serve` fires it).
    Add(Box<AddArgs>),
    /// List schedules with their next due time.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Stop firing a schedule until it is resumed.
    Pause { name: String },
    /// Fire a paused schedule again; due times that passed while paused do not fire.
    Resume { name: String },
    /// Remove a schedule and its history (its runs stay).
    Rm { name: String },
}

#[derive(Args, Debug)]
pub(super) struct AddArgs {
    #[arg(long)]
    pub(super) name: String,
    /// NAME@VERSION in the plan registry, or NAME for its latest version.
    #[arg(long)]
    plan: String,
    /// Five fields (minute hour day-of-month month day-of-week; days by name), or
    /// six with seconds first.
    #[arg(long)]
    cron: String,
    /// IANA time zone the cron expression and window are read in.
    #[arg(long, default_value = "UTC")]
    timezone: String,
    /// A param of each run as NAME=VALUE; repeatable.
    #[arg(long = "param", short = 'p')]
    params: Vec<String>,
    /// Delay each fire by a deterministic amount up to this (e.g. 30s; at most 1h).
    #[arg(long)]
    jitter: Option<String>,
    /// Daily maintenance window HH:MM-HH:MM (local time).
    #[arg(long)]
    window: Option<String>,
    /// A due time outside the window: wait for the next opening, or skip it.
    #[arg(long, value_parser = ["wait", "skip"], default_value = "wait")]
    outside_window: String,
    /// Due times that passed while medic was down: skip, or run-once.
    #[arg(long, value_parser = ["skip", "run-once"], default_value = "skip")]
    missed: String,
    /// A due time while the previous run still goes: skip, queue or allow.
    #[arg(long, value_parser = ["skip", "queue", "allow"], default_value = "skip")]
    overlap: String,
    /// Create it paused (`medic schedule resume NAME` starts it).
    #[arg(long)]
    pub(super) paused: bool,
}

fn kebab<T: serde::de::DeserializeOwned>(s: &str) -> T {
    serde_json::from_value(serde_json::Value::String(s.to_owned()))
        .expect("clap allowed only known values")
}

impl AddArgs {
    /// The schedule as written, for the local store or `POST /v1/schedules`.
    pub(super) fn spec(&self) -> Result<Spec> {
        Ok(Spec {
            name: self.name.clone(),
            plan: self.plan.clone(),
            params: parse_params(&self.params)?,
            cron: self.cron.clone(),
            timezone: self.timezone.clone(),
            enabled: !self.paused,
            jitter: self.jitter.clone(),
            window: self.window.clone(),
            outside_window: kebab::<OutsideWindow>(&self.outside_window),
            missed: kebab::<Missed>(&self.missed),
            overlap: kebab::<Overlap>(&self.overlap),
        })
    }
}

/// The header of `medic schedule list`, the same locally and over --server.
pub(super) fn print_header() {
    println!(
        "{:<24} {:<8} {:<24} {:<20} PLAN",
        "NAME", "STATE", "CRON", "NEXT DUE"
    );
}

/// One line of `medic schedule list`.
pub(super) fn print_line(name: &str, enabled: bool, spec: Option<&Spec>, next: Option<i64>) {
    println!(
        "{:<24} {:<8} {:<24} {:<20} {}",
        name,
        if enabled { "enabled" } else { "paused" },
        spec.map_or("?", |s| s.cron.as_str()),
        next.map(stamp).unwrap_or_else(|| "-".into()),
        spec.map_or("?", |s| s.plan.as_str()),
    );
}

pub(super) async fn schedule(env: &Env, command: ScheduleCommand) -> Result<u8> {
    let store = env.store()?;
    let now = SystemClock.now();
    match command {
        ScheduleCommand::Add(add) => {
            let spec = add.spec()?;
            let (name, paused) = (add.name, add.paused);
            let sched = match spec.validate() {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("{e}");
                    return Ok(exit::INVALID);
                }
            };
            match store
                .plan_version(&sched.plan.name, sched.plan.version)
                .await
            {
                Ok(_) => {}
                Err(store::Error::PlanNotFound(m)) => {
                    eprintln!("schedule field `plan`: {m}; register it first (POST /v1/plans)");
                    return Ok(exit::INVALID);
                }
                Err(e) => return Err(e.into()),
            }
            let json = serde_json::to_value(&spec).context("serializing the schedule")?;
            store
                .create_schedule(&name, &json, spec.enabled, now, now)
                .await?;
            let next = schedule::next_due_times(&sched, now, 1);
            match (paused, next.first()) {
                (true, _) => println!("schedule `{name}` created, paused"),
                (false, Some((due, _))) => {
                    println!("schedule `{name}` created; next due {}", stamp(*due))
                }
                (false, None) => {
                    println!("schedule `{name}` created; its cron names no future time")
                }
            }
        }
        ScheduleCommand::List { json } => {
            let rows = store.schedules().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
                return Ok(exit::SUCCEEDED);
            }
            print_header();
            for r in rows {
                let spec: Option<Spec> = serde_json::from_value(r.spec.clone()).ok();
                let next = spec
                    .as_ref()
                    .and_then(|s| s.validate().ok())
                    .filter(|_| r.enabled)
                    .and_then(|s| {
                        schedule::next_due_times(&s, r.after.max(now), 1)
                            .first()
                            .map(|n| n.0)
                    });
                print_line(&r.name, r.enabled, spec.as_ref(), next);
            }
        }
        ScheduleCommand::Pause { name } => {
            store.set_schedule_enabled(&name, false, now).await?;
            println!("schedule `{name}` paused");
        }
        ScheduleCommand::Resume { name } => {
            store.set_schedule_enabled(&name, true, now).await?;
            println!("schedule `{name}` resumed; due times from now on fire");
        }
        ScheduleCommand::Rm { name } => {
            store.delete_schedule(&name).await?;
            println!("schedule `{name}` removed; the runs it created stay");
        }
    }
    Ok(exit::SUCCEEDED)
}
