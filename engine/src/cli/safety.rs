//! `medic locks` and `medic breaker`: the safety rails (issue 12). Listing, and the
//! admin's break-glass calls: force-release a lock, reset a plan's circuit breaker,
//! each with a mandatory `--reason` recorded in the audit log. Locally the entry
//! names the OS user (`local:USER`); with --server the API records the token.

use anyhow::{Result, bail};
use clap::Subcommand;
use serde_json::Value;

use super::{Env, SystemClock, exit};
use crate::store::{AuditEntry, BreakerRow, LockRow};

#[derive(Subcommand, Debug)]
pub(super) enum LocksCommand {
    /// Every lock held or awaited by an unfinished run.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Break-glass: drop every grant of lock NAME (its holders go on without it).
    Release {
        name: String,
        /// Why (mandatory; recorded in the audit log).
        #[arg(long)]
        reason: String,
    },
}

#[derive(Subcommand, Debug)]
pub(super) enum BreakerCommand {
    /// The circuit breaker of every plan that declares one.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Break-glass: close PLAN's breaker so its runs may start again.
    Reset {
        plan: String,
        /// Why (mandatory; recorded in the audit log).
        #[arg(long)]
        reason: String,
    },
}

pub(super) fn check_reason(reason: &str) -> Result<()> {
    if reason.trim().is_empty() {
        bail!("--reason must say why (it is recorded in the audit log)");
    }
    Ok(())
}

pub(super) fn print_locks(locks: &[Value]) {
    if locks.is_empty() {
        println!("no locks held or awaited");
    }
    for l in locks {
        println!(
            "{:<32} {:<8} {:<10} {} ({})",
            l["name"].as_str().unwrap_or(""),
            l["state"].as_str().unwrap_or(""),
            l["mode"].as_str().unwrap_or(""),
            l["run_id"].as_str().unwrap_or(""),
            l["plan_name"].as_str().unwrap_or(""),
        );
    }
}

pub(super) fn print_breakers(breakers: &[Value]) {
    if breakers.is_empty() {
        println!("no plan declares a breaker");
    }
    for b in breakers {
        let extra = match b["state"].as_str() {
            Some("open") => format!(
                "{} failed runs; reset: medic breaker reset {} --reason TEXT",
                b["failed_runs"],
                b["plan"].as_str().unwrap_or("")
            ),
            _ => String::new(),
        };
        println!(
            "{:<32} {:<6} {} failures in {} ms {extra}",
            b["plan"].as_str().unwrap_or(""),
            b["state"].as_str().unwrap_or(""),
            b["failures"],
            b["window_ms"],
        );
    }
}

fn local_audit(path: String, reason: &str, at: i64) -> AuditEntry {
    let user = std::env::var("USER").unwrap_or_else(|_| "operator".into());
    AuditEntry {
        at,
        token: Some(format!("local:{user}")),
        role: Some("admin".into()),
        method: "CLI".into(),
        path,
        run_id: None,
        step_id: None,
        status: 200,
        reason: Some(reason.trim().to_owned()),
    }
}

pub(super) async fn locks(env: &Env, command: LocksCommand) -> Result<u8> {
    let store = env.store()?;
    match command {
        LocksCommand::List { json } => {
            let rows: Vec<Value> = store
                .locks(None)
                .await?
                .iter()
                .map(|l: &LockRow| serde_json::to_value(l).expect("serializes"))
                .collect();
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({ "locks": rows }))?
                );
            } else {
                print_locks(&rows);
            }
        }
        LocksCommand::Release { name, reason } => {
            check_reason(&reason)?;
            let holders = store.force_release(&name).await?;
            if holders.is_empty() {
                bail!("nobody holds lock `{name}`; `medic locks list` shows the locks held");
            }
            store
                .record_audit(local_audit(
                    format!("medic locks release {name}"),
                    &reason,
                    SystemClock.now_ms(),
                ))
                .await?;
            println!("lock {name} released from {}", holders.join(", "));
        }
    }
    Ok(exit::SUCCEEDED)
}

pub(super) async fn breaker(env: &Env, command: BreakerCommand) -> Result<u8> {
    let store = env.store()?;
    match command {
        BreakerCommand::List { json } => {
            let rows: Vec<Value> = store
                .breakers()
                .await?
                .iter()
                .map(|b: &BreakerRow| serde_json::to_value(b).expect("serializes"))
                .collect();
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({ "breakers": rows }))?
                );
            } else {
                print_breakers(&rows);
            }
        }
        BreakerCommand::Reset { plan, reason } => {
            check_reason(&reason)?;
            let user = std::env::var("USER").unwrap_or_else(|_| "operator".into());
            let now = SystemClock.now_ms();
            store
                .reset_breaker(&plan, &format!("local:{user}"), reason.trim(), now)
                .await?;
            store
                .record_audit(local_audit(
                    format!("medic breaker reset {plan}"),
                    &reason,
                    now,
                ))
                .await?;
            println!("breaker of plan {plan} reset: its runs may start again");
        }
    }
    Ok(exit::SUCCEEDED)
}
