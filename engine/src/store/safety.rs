//! Safety rails (issue 12): target locks, blast-radius caps and circuit breakers.
//!
//! Locks are rows of `run_locks`, one per (run, name), requested when the run is
//! created and granted all together (all or nothing) in the same transaction that
//! moves the run to `running`; they are deleted in the transaction that makes the
//! run terminal (`apply`). A SIGKILL therefore never leaks a lock nor grants one
//! twice: what is committed says who holds what, and a restart just reads it. A run
//! never holds some locks while waiting for others, so waiting runs cannot deadlock;
//! waiters are served oldest first (a younger run never jumps an older conflicting
//! waiter), so none starves.
//!
//! A run's *targets* are its resolved lock names. Caps count distinct targets: held
//! now by unfinished runs (concurrent) and granted within the last hour
//! (`target_grants`, per hour), per plan and for all runs.

use std::collections::BTreeSet;

use rusqlite::{Connection, OptionalExtension, params};

use super::{Error, Result, Store, all, sql};
use crate::plan::{LockMode, OnBusy};
use crate::run::{Entry, Ms, RunStatus};

const HOUR_MS: Ms = 3_600_000;

/// What a new run asks of the safety rails.
#[derive(Debug, Clone, Default)]
pub struct Guard {
    /// Resolved lock names (the run's targets) and modes.
    pub locks: Vec<(String, LockMode)>,
    pub on_busy: OnBusy,
    pub caps: Caps,
    /// The plan's breaker: (failures, window in ms).
    pub breaker: Option<(u32, Ms)>,
}

/// Blast-radius caps, per plan (from the plan) and global (from medic.toml).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Caps {
    pub plan_concurrent: Option<u32>,
    pub plan_per_hour: Option<u32>,
    pub global_concurrent: Option<u32>,
    pub global_per_hour: Option<u32>,
}

/// The answer to a request for a run's locks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grant {
    Granted,
    /// Another run holds (or waits longer for) a lock, or a cap is reached now.
    Busy(String),
    /// The run alone exceeds a cap: it can never start.
    Never(String),
}

/// What `Store::acquire` did for a waiting run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Acquired {
    /// The run holds its locks and is `running` (or was not waiting).
    Running,
    /// Still waiting; why.
    Waiting(String),
    /// The run is no longer waiting nor running (cancelled meanwhile).
    Ended(RunStatus),
}

/// A lock as `GET /v1/locks` lists it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LockRow {
    pub name: String,
    pub run_id: String,
    pub plan_name: String,
    /// `shared` or `exclusive`.
    pub mode: String,
    /// `held` or `waiting`.
    pub state: String,
    pub granted_at: Option<Ms>,
}

/// A plan's circuit breaker as `GET /v1/breakers` lists it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct BreakerRow {
    pub plan: String,
    /// Failures within `window_ms` that open it.
    pub failures: u32,
    pub window_ms: Ms,
    /// `open` (new runs refused) or `closed`.
    pub state: String,
    pub opened_at: Option<Ms>,
    /// Failed runs counted when it opened.
    pub failed_runs: Option<u32>,
    pub reset_at: Option<Ms>,
    pub reset_by: Option<String>,
    pub reset_reason: Option<String>,
}

pub(super) const TERMINAL: &str = "('succeeded', 'failed', 'rolled_back', 'cancelled')";

/// The checks of a new run inside the transaction that creates it, after its rows
/// are inserted: an open breaker or (with `refuse`) a busy lock is an error, which
/// rolls the run back; a busy lock under `wait` makes it `waiting` with the reason.
pub(super) fn guard_new_run(
    conn: &Connection,
    run: &str,
    plan_name: &str,
    guard: &Guard,
    at: Ms,
) -> Result<()> {
    if let Some((failures, window)) = guard.breaker {
        conn.execute(
            "INSERT INTO breakers (plan_name, failures, window_ms) VALUES (?1, ?2, ?3)
             ON CONFLICT (plan_name) DO UPDATE SET failures = ?2, window_ms = ?3",
            params![plan_name, failures, window],
        )
        .map_err(sql("recording the plan's breaker"))?;
    }
    if let Some((opened_at, failed)) = conn
        .query_row(
            "SELECT opened_at, failed_runs FROM breakers WHERE plan_name = ?1 AND opened_at IS NOT NULL",
            [plan_name],
            |r| Ok((r.get::<_, Ms>(0)?, r.get::<_, Option<u32>>(1)?)),
        )
        .optional()
        .map_err(sql("reading the plan's breaker"))?
    {
        return Err(Error::BreakerOpen {
            plan: plan_name.to_owned(),
            failed: failed.unwrap_or(0),
            opened_at,
        });
    }
    if guard.locks.is_empty() {
        return Ok(());
    }
    for (name, mode) in &guard.locks {
        conn.execute(
            "INSERT INTO run_locks (run_id, name, mode, requested_at) VALUES (?1, ?2, ?3, ?4)",
            params![run, name, mode.as_str(), at],
        )
        .map_err(sql("requesting the run's locks"))?;
    }
    match try_grant(conn, run, plan_name, &guard.caps, at)? {
        Grant::Granted => Ok(()),
        Grant::Never(why) => Err(Error::Busy {
            reason: why,
            hint: "it can never start under these limits: raise the limit or split the work".into(),
        }),
        Grant::Busy(why) if guard.on_busy == OnBusy::Refuse => Err(Error::Busy {
            reason: why,
            hint: "the plan says `on_lock_busy: refuse`: submit again once it is free, \
                   or wait with `on_lock_busy: wait`"
                .into(),
        }),
        Grant::Busy(why) => {
            conn.execute(
                "UPDATE runs SET status = 'waiting', reason = ?2 WHERE id = ?1",
                params![run, why],
            )
            .map_err(sql("marking the run waiting"))?;
            append(
                conn,
                run,
                at,
                &Entry::RunStatus {
                    status: RunStatus::Waiting,
                    reason: Some(why),
                },
            )
        }
    }
}

/// Whether the run's requested locks can all be granted now, and if so grants them
/// (all in this transaction). Caps are checked against the run's targets.
pub(super) fn try_grant(
    conn: &Connection,
    run: &str,
    plan_name: &str,
    caps: &Caps,
    now: Ms,
) -> Result<Grant> {
    let mine: Vec<(String, String, Ms)> = all(
        conn,
        "reading the run's locks",
        "SELECT name, mode, requested_at FROM run_locks WHERE run_id = ?1 ORDER BY name",
        [run],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    if mine.is_empty() {
        return Ok(Grant::Granted);
    }
    let created: Ms = conn
        .query_row("SELECT created_at FROM runs WHERE id = ?1", [run], |r| {
            r.get(0)
        })
        .map_err(sql("reading the run"))?;
    let mut busy = Vec::new();
    for (name, mode, _) in &mine {
        // Holders, and runs created before this one still waiting for the name.
        let others: Vec<(String, String, bool)> = all(
            conn,
            "reading a lock's holders",
            "SELECT l.run_id, l.mode, l.granted_at IS NOT NULL FROM run_locks l
             JOIN runs r ON r.id = l.run_id
             WHERE l.name = ?1 AND l.run_id != ?2
               AND (l.granted_at IS NOT NULL OR (r.created_at, r.id) < (?3, ?2))
             ORDER BY l.granted_at IS NULL, r.created_at",
            params![name, run, created],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?;
        for (other, their_mode, held) in others {
            if mode == "shared" && their_mode == "shared" {
                continue;
            }
            busy.push(if held {
                format!("lock `{name}` ({mode}) is held by run {other} ({their_mode})")
            } else {
                format!("lock `{name}` ({mode}) is awaited first by run {other} ({their_mode})")
            });
            break;
        }
    }
    if !busy.is_empty() {
        return Ok(Grant::Busy(busy.join("; ")));
    }
    let targets: BTreeSet<String> = mine.iter().map(|(n, _, _)| n.clone()).collect();
    let held_all = distinct(
        conn,
        "SELECT DISTINCT name FROM run_locks WHERE granted_at IS NOT NULL AND run_id != ?1",
        params![run],
    )?;
    let held_plan = distinct(
        conn,
        "SELECT DISTINCT l.name FROM run_locks l JOIN runs r ON r.id = l.run_id
         WHERE l.granted_at IS NOT NULL AND l.run_id != ?1 AND r.plan_name = ?2",
        params![run, plan_name],
    )?;
    let hour_all = distinct(
        conn,
        "SELECT DISTINCT target FROM target_grants WHERE at > ?1 AND run_id != ?2",
        params![now - HOUR_MS, run],
    )?;
    let hour_plan = distinct(
        conn,
        "SELECT DISTINCT target FROM target_grants WHERE at > ?1 AND run_id != ?2 AND plan_name = ?3",
        params![now - HOUR_MS, run, plan_name],
    )?;
    let checks = [
        (
            caps.plan_concurrent,
            &held_plan,
            "the plan's limits.concurrent_targets",
            "held now by unfinished runs of the plan",
        ),
        (
            caps.plan_per_hour,
            &hour_plan,
            "the plan's limits.targets_per_hour",
            "started on by the plan within the last hour",
        ),
        (
            caps.global_concurrent,
            &held_all,
            "medic.toml [safety] concurrent_targets",
            "held now by all unfinished runs",
        ),
        (
            caps.global_per_hour,
            &hour_all,
            "medic.toml [safety] targets_per_hour",
            "started on by all runs within the last hour",
        ),
    ];
    for (cap, others, what, counted) in checks {
        let Some(cap) = cap else { continue };
        let cap = cap as usize;
        if targets.len() > cap {
            return Ok(Grant::Never(format!(
                "the run has {} targets ({}) but {what} is {cap}",
                targets.len(),
                join(&targets)
            )));
        }
        let union: BTreeSet<&String> = others.iter().chain(targets.iter()).collect();
        if union.len() > cap {
            return Ok(Grant::Busy(format!(
                "{what} is {cap}: {} targets {counted} ({}), this run would add {}",
                others.len(),
                join(others),
                union.len() - others.len()
            )));
        }
    }
    conn.execute(
        "UPDATE run_locks SET granted_at = ?2 WHERE run_id = ?1",
        params![run, now],
    )
    .map_err(sql("granting the run's locks"))?;
    for t in &targets {
        conn.execute(
            "INSERT INTO target_grants (run_id, plan_name, target, at) VALUES (?1, ?2, ?3, ?4)",
            params![run, plan_name, t, now],
        )
        .map_err(sql("recording the run's targets"))?;
    }
    Ok(Grant::Granted)
}

fn distinct(conn: &Connection, q: &str, p: impl rusqlite::Params) -> Result<BTreeSet<String>> {
    Ok(all(conn, "counting targets", q, p, |r| r.get(0))?
        .into_iter()
        .collect())
}

fn join(names: &BTreeSet<String>) -> String {
    let shown: Vec<&str> = names.iter().take(10).map(String::as_str).collect();
    let more = names.len().saturating_sub(10);
    if more > 0 {
        format!("{}, and {more} more", shown.join(", "))
    } else {
        shown.join(", ")
    }
}

/// Appends one entry to a run's log, after its last one.
fn append(conn: &Connection, run: &str, at: Ms, e: &Entry) -> Result<()> {
    let data = serde_json::to_string(e).expect("log entries serialize");
    conn.execute(
        "INSERT INTO events (run_id, seq, at, kind, step_id, data)
         VALUES (?1, (SELECT COALESCE(MAX(seq), 0) + 1 FROM events WHERE run_id = ?1), ?2, ?3, ?4, ?5)",
        params![run, at, e.kind(), e.step(), data],
    )
    .map_err(sql("appending events"))?;
    Ok(())
}

/// In the transaction that makes a run terminal: its locks go, and if it failed,
/// its plan's breaker counts it (and opens at the threshold).
pub(super) fn on_terminal(conn: &Connection, run: &str, status: RunStatus, at: Ms) -> Result<()> {
    conn.execute("DELETE FROM run_locks WHERE run_id = ?1", [run])
        .map_err(sql("releasing the run's locks"))?;
    if !matches!(status, RunStatus::Failed | RunStatus::RolledBack) {
        return Ok(());
    }
    let breaker = conn
        .query_row(
            "SELECT b.plan_name, b.failures, b.window_ms, b.reset_at FROM breakers b
             JOIN runs r ON r.plan_name = b.plan_name
             WHERE r.id = ?1 AND b.opened_at IS NULL",
            [run],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, u32>(1)?,
                    r.get::<_, Ms>(2)?,
                    r.get::<_, Option<Ms>>(3)?,
                ))
            },
        )
        .optional()
        .map_err(sql("reading the plan's breaker"))?;
    let Some((plan, failures, window, reset_at)) = breaker else {
        return Ok(());
    };
    let since = (at - window).max(reset_at.unwrap_or(Ms::MIN));
    let failed: u32 = conn
        .query_row(
            "SELECT COUNT(*) FROM runs WHERE plan_name = ?1
             AND status IN ('failed', 'rolled_back') AND updated_at > ?2",
            params![plan, since],
            |r| r.get(0),
        )
        .map_err(sql("counting the plan's failed runs"))?;
    if failed >= failures {
        conn.execute(
            "UPDATE breakers SET opened_at = ?2, failed_runs = ?3 WHERE plan_name = ?1",
            params![plan, at, failed],
        )
        .map_err(sql("opening the plan's breaker"))?;
        tracing::warn!(
            plan,
            failed,
            "circuit breaker opened: new runs of the plan are refused"
        );
    }
    Ok(())
}

impl Store {
    /// For a `waiting` run: grants all its locks and makes it `running` if it can
    /// have them now (one transaction), else records why it waits (once per
    /// change of reason, in its reason and log).
    pub async fn acquire(&self, run: &str, caps: Caps, now: Ms) -> Result<Acquired> {
        let run = run.to_owned();
        self.writer
            .write(move |conn| {
                let (status, plan, reason): (String, String, Option<String>) = conn
                    .query_row(
                        "SELECT status, plan_name, reason FROM runs WHERE id = ?1",
                        [&run],
                        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                    )
                    .optional()
                    .map_err(sql("reading the run"))?
                    .ok_or_else(|| Error::RunNotFound(run.clone()))?;
                let status = RunStatus::parse(&status).ok_or(Error::Corrupt {
                    what: "run status",
                    detail: status,
                })?;
                if status != RunStatus::Waiting {
                    return Ok(if status.is_terminal() {
                        Acquired::Ended(status)
                    } else {
                        Acquired::Running
                    });
                }
                match try_grant(conn, &run, &plan, &caps, now)? {
                    Grant::Granted => {
                        let names: Vec<String> = all(
                            conn,
                            "reading the run's locks",
                            "SELECT name || ' (' || mode || ')' FROM run_locks WHERE run_id = ?1 ORDER BY name",
                            [&run],
                            |r| r.get(0),
                        )?;
                        conn.execute(
                            "UPDATE runs SET status = 'running', reason = NULL, updated_at = ?2 WHERE id = ?1",
                            params![run, now],
                        )
                        .map_err(sql("starting the run"))?;
                        append(
                            conn,
                            &run,
                            now,
                            &Entry::RunStatus {
                                status: RunStatus::Running,
                                reason: Some(format!("holds its locks: {}", names.join(", "))),
                            },
                        )?;
                        Ok(Acquired::Running)
                    }
                    Grant::Busy(why) | Grant::Never(why) => {
                        if reason.as_deref() != Some(why.as_str()) {
                            conn.execute(
                                "UPDATE runs SET reason = ?2, updated_at = ?3 WHERE id = ?1",
                                params![run, why, now],
                            )
                            .map_err(sql("recording why the run waits"))?;
                            append(
                                conn,
                                &run,
                                now,
                                &Entry::RunStatus {
                                    status: RunStatus::Waiting,
                                    reason: Some(why.clone()),
                                },
                            )?;
                        }
                        Ok(Acquired::Waiting(why))
                    }
                }
            })
            .await
    }

    /// Cancels a run that is still `waiting` (nothing ran): every step `not_run`, its
    /// lock requests dropped, the command consumed, in one transaction. `false` if
    /// the run was no longer waiting.
    pub async fn cancel_waiting(&self, run: &str, command: i64, by: &str, now: Ms) -> Result<bool> {
        let (run, by) = (run.to_owned(), by.to_owned());
        self.writer
            .write(move |conn| {
                let reason = format!("cancelled by {by} while waiting for its locks");
                let n = conn
                    .execute(
                        "UPDATE runs SET status = 'cancelled', reason = ?2, updated_at = ?3
                         WHERE id = ?1 AND status = 'waiting'",
                        params![run, reason, now],
                    )
                    .map_err(sql("cancelling the run"))?;
                if n == 0 {
                    return Ok(false);
                }
                conn.execute(
                    "UPDATE steps SET status = 'not_run' WHERE run_id = ?1",
                    [&run],
                )
                .map_err(sql("cancelling the run's steps"))?;
                conn.execute(
                    "UPDATE commands SET consumed_at = ?2 WHERE id = ?1",
                    params![command, now],
                )
                .map_err(sql("consuming a command"))?;
                on_terminal(conn, &run, RunStatus::Cancelled, now)?;
                append(
                    conn,
                    &run,
                    now,
                    &Entry::RunStatus {
                        status: RunStatus::Cancelled,
                        reason: Some(reason),
                    },
                )?;
                Ok(true)
            })
            .await
    }

    /// Every lock held or awaited, by name (`name`: only that one).
    pub async fn locks(&self, name: Option<&str>) -> Result<Vec<LockRow>> {
        let name = name.map(str::to_owned);
        self.read(move |conn| {
            all(
                conn,
                "listing locks",
                "SELECT l.name, l.run_id, r.plan_name, l.mode, l.granted_at FROM run_locks l
                 JOIN runs r ON r.id = l.run_id
                 WHERE ?1 IS NULL OR l.name = ?1
                 ORDER BY l.name, l.granted_at IS NULL, r.created_at",
                [name],
                |r| {
                    let granted_at: Option<Ms> = r.get(4)?;
                    Ok(LockRow {
                        name: r.get(0)?,
                        run_id: r.get(1)?,
                        plan_name: r.get(2)?,
                        mode: r.get(3)?,
                        state: if granted_at.is_some() {
                            "held"
                        } else {
                            "waiting"
                        }
                        .into(),
                        granted_at,
                    })
                },
            )
        })
        .await
    }

    /// Break-glass: drops every grant of lock `name` (the holders keep running, no
    /// longer holding it; waiting requests stay). Returns the runs that held it.
    pub async fn force_release(&self, name: &str) -> Result<Vec<String>> {
        let name = name.to_owned();
        self.writer
            .write(move |conn| {
                let holders: Vec<String> = all(
                    conn,
                    "reading a lock's holders",
                    "SELECT run_id FROM run_locks WHERE name = ?1 AND granted_at IS NOT NULL",
                    [&name],
                    |r| r.get(0),
                )?;
                conn.execute(
                    "DELETE FROM run_locks WHERE name = ?1 AND granted_at IS NOT NULL",
                    [&name],
                )
                .map_err(sql("releasing the lock"))?;
                Ok(holders)
            })
            .await
    }

    /// Every plan's breaker.
    pub async fn breakers(&self) -> Result<Vec<BreakerRow>> {
        self.read(|conn| {
            all(
                conn,
                "listing breakers",
                "SELECT plan_name, failures, window_ms, opened_at, failed_runs, reset_at, reset_by, reset_reason
                 FROM breakers ORDER BY plan_name",
                [],
                |r| {
                    let opened_at: Option<Ms> = r.get(3)?;
                    Ok(BreakerRow {
                        plan: r.get(0)?,
                        failures: r.get(1)?,
                        window_ms: r.get(2)?,
                        state: if opened_at.is_some() { "open" } else { "closed" }.into(),
                        opened_at,
                        failed_runs: r.get(4)?,
                        reset_at: r.get(5)?,
                        reset_by: r.get(6)?,
                        reset_reason: r.get(7)?,
                    })
                },
            )
        })
        .await
    }

    /// Closes a plan's breaker: runs may start again, and only failures after now
    /// count towards opening it again. `Error::BreakerNotFound` if the plan has none.
    pub async fn reset_breaker(
        &self,
        plan: &str,
        by: &str,
        reason: &str,
        now: Ms,
    ) -> Result<BreakerRow> {
        let (p, by, reason) = (plan.to_owned(), by.to_owned(), reason.to_owned());
        self.writer
            .write(move |conn| {
                let plan = p;
                let n = conn
                    .execute(
                        "UPDATE breakers SET opened_at = NULL, failed_runs = NULL, reset_at = ?2,
                         reset_by = ?3, reset_reason = ?4 WHERE plan_name = ?1",
                        params![plan, now, by, reason],
                    )
                    .map_err(sql("resetting the breaker"))?;
                if n == 0 {
                    return Err(Error::BreakerNotFound(plan.clone()));
                }
                Ok(())
            })
            .await?;
        let plan = plan.to_owned();
        self.breakers()
            .await?
            .into_iter()
            .find(|b| b.plan == plan)
            .ok_or(Error::BreakerNotFound(plan))
    }
}

#[cfg(test)]
mod tests;
