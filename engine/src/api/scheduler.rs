//! The scheduler of `medic serve`: on start-up and every tick, decides each enabled
//! schedule (`schedule::decide`, with the executor's clock), records its skips, fires
//! its due times through `Executor::fire` (the fire and its run in one transaction)
//! and drives the runs created. Runs record `schedule:NAME` as their submitter.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;

use super::AppState;
use crate::executor::{self, Fire};
use crate::plan;
use crate::plugin;
use crate::run::Ms;
use crate::schedule::{self, Decision, Spec};
use crate::store::{self, ScheduleRow};

/// How many schedules are decided and fired at once: enough for their fires to share
/// group commits, few enough to bound memory.
const CONCURRENCY: usize = 256;

/// Runs until the process ends. `up_since` (the clock at start-up) tells due times
/// missed while no scheduler ran from those merely decided late.
pub async fn run(state: Arc<AppState>, tick: Duration) {
    let up_since = state.exec.now();
    loop {
        if let Err(e) = tick_once(&state, up_since).await {
            tracing::error!(error = %e, "deciding schedules failed; trying again next tick");
        }
        tokio::time::sleep(tick).await;
    }
}

/// One pass over every schedule; returns how many runs it created.
pub async fn tick_once(state: &Arc<AppState>, up_since: Ms) -> Result<usize, store::Error> {
    let rows = state.exec.store().schedules().await?;
    let fired = futures_util::stream::iter(rows.into_iter().filter(|r| r.enabled))
        .map(|row| async move { one(state, row, up_since).await })
        .buffer_unordered(CONCURRENCY)
        .fold(0, |n, k| async move { n + k })
        .await;
    Ok(fired)
}

async fn one(state: &Arc<AppState>, row: ScheduleRow, up_since: Ms) -> usize {
    let sched = match serde_json::from_value::<Spec>(row.spec.clone())
        .map_err(|e| e.to_string())
        .and_then(|s| s.validate().map_err(|e| e.to_string()))
    {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(schedule = %row.name, error = %e, "stored schedule does not validate; not fired");
            return 0;
        }
    };
    let now = state.exec.now();
    let d = schedule::decide(
        &sched,
        schedule::Input {
            after: row.after,
            up_since,
            now,
            running: row.last_run_going,
        },
    );
    match apply(state, &row, &sched, d, now).await {
        Ok(n) => n,
        Err(e) => {
            tracing::error!(schedule = %row.name, error = %e, "firing the schedule failed; it is decided again next tick");
            0
        }
    }
}

/// Records a decision in due order, so the cursor never passes a due time whose fire
/// was not committed: skips before the first fire, the fires, then the other skips.
async fn apply(
    state: &Arc<AppState>,
    row: &ScheduleRow,
    sched: &schedule::Schedule,
    d: Decision,
    now: Ms,
) -> Result<usize, executor::Error> {
    let store = state.exec.store();
    let first_fire = d.fire.first().map(|f| f.due);
    let (before, after): (Vec<_>, Vec<_>) = d
        .skip
        .iter()
        .map(|s| (s.due, s.reason.as_str()))
        .partition(|(due, _)| first_fire.is_none_or(|f| *due < f));
    if !before.is_empty() {
        let cursor = before.iter().map(|s| s.0).max().unwrap_or(row.after);
        store.skip_due_times(row.id, before, cursor, now).await?;
    }
    let mut fired = 0;
    if !d.fire.is_empty() {
        let who = format!("schedule:{}", row.name);
        let resolved = resolve(state, sched).await;
        for f in &d.fire {
            let (plan, version, params) = match &resolved {
                Ok(r) => r,
                Err(why) => {
                    tracing::error!(schedule = %row.name, due = f.due, error = %why, "the schedule's plan cannot run; this due time is skipped");
                    store
                        .skip_due_times(row.id, vec![(f.due, "plan-error")], f.due, now)
                        .await?;
                    continue;
                }
            };
            let fire = Fire {
                schedule_id: row.id,
                schedule: &row.name,
                due: f.due,
                at: f.at,
                plan_version: Some(*version),
                submitted_by: &who,
            };
            match state.exec.fire(plan, params.clone(), fire).await {
                Ok(run) => {
                    tracing::info!(schedule = %row.name, due = f.due, run_id = %run, "schedule fired");
                    state.drive(run);
                    fired += 1;
                }
                Err(executor::Error::Store(store::Error::AlreadyFired { .. })) => {}
                Err(e) => return Err(e),
            }
        }
    }
    if !after.is_empty() {
        store.skip_due_times(row.id, after, d.after, now).await?;
    }
    Ok(fired)
}

/// The schedule's plan version from the registry, checked against the installed
/// plugins (as a submission by name is), with its params bound.
async fn resolve(
    state: &AppState,
    sched: &schedule::Schedule,
) -> Result<(plan::Plan, u32, serde_json::Value), String> {
    let name = &sched.plan.name;
    let stored = state
        .exec
        .store()
        .plan_version(name, sched.plan.version)
        .await
        .map_err(|e| e.to_string())?;
    let file = format!("{name} version {}", stored.version);
    let plan = plugin::check_plan(state.exec.invoker(), &file, &stored.source, stored.format)
        .await
        .map_err(|d| describe(&file, &d))?;
    let params = plan::bind_params(&plan, &sched.params).map_err(|d| describe(&file, &d))?;
    Ok((plan, stored.version, params))
}

fn describe(file: &str, d: &plan::Diagnostics) -> String {
    let lines: Vec<String> = d.0.iter().map(|d| d.message.clone()).collect();
    format!("{file}: {}", lines.join("; "))
}
