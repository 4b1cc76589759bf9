//! The scheduler of `medic serve`: on start-up and every tick, decides each enabled
//! schedule (`schedule::decide`, with the executor's clock), records its skips, fires
//! its due times through `Executor::fire` (the fire and its run in one transaction)
//! and drives the runs created. Runs record `schedule:NAME` as their submitter.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::OnceCell;

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
/// missed while no scheduler ran from those merely decided late. Passes come every
/// `tick` (schedules created or resumed meanwhile, runs that ended for `queue`), and
/// sooner when a fire instant comes first, so a fire is not up to a tick late.
pub async fn run(state: Arc<AppState>, tick: Duration) {
    let up_since = state.exec.now();
    loop {
        let pause = match tick_once(&state, up_since).await {
            Ok(pass) => pass.wake_at.map_or(tick, |at| {
                let ms = (at - state.exec.now()).max(0) as u64;
                tick.min(Duration::from_millis(ms))
            }),
            Err(e) => {
                tracing::error!(error = %e, "deciding schedules failed; trying again next tick");
                tick
            }
        };
        tokio::time::sleep(pause).await;
    }
}

/// What one pass did.
#[derive(Debug, Default, Clone, Copy)]
pub struct Pass {
    /// Runs created.
    pub fired: usize,
    /// The earliest fire instant still to come.
    pub wake_at: Option<Ms>,
}

/// One pass over every schedule.
pub async fn tick_once(state: &Arc<AppState>, up_since: Ms) -> Result<Pass, store::Error> {
    let rows = state.exec.store().schedules().await?;
    // Each plan a pass fires is resolved once, however many schedules name it.
    let plans = &Plans::default();
    let pass = futures_util::stream::iter(rows.into_iter().filter(|r| r.enabled))
        .map(|row| async move { one(state, plans, row, up_since).await })
        .buffer_unordered(CONCURRENCY)
        .fold(Pass::default(), |a, b| async move {
            Pass {
                fired: a.fired + b.fired,
                wake_at: match (a.wake_at, b.wake_at) {
                    (Some(x), Some(y)) => Some(x.min(y)),
                    (x, y) => x.or(y),
                },
            }
        })
        .await;
    Ok(pass)
}

/// The plans resolved during one pass, by name and version asked for.
type Resolved = Arc<Result<(Arc<plan::Plan>, u32), String>>;

type PlanKey = (String, Option<u32>);

#[derive(Default)]
struct Plans(std::sync::Mutex<HashMap<PlanKey, Arc<OnceCell<Resolved>>>>);

impl Plans {
    async fn get(&self, state: &AppState, r: &schedule::PlanRef) -> Resolved {
        let cell = self
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry((r.name.clone(), r.version))
            .or_default()
            .clone();
        cell.get_or_init(|| async { Arc::new(resolve(state, r).await) })
            .await
            .clone()
    }
}

async fn one(state: &Arc<AppState>, plans: &Plans, row: ScheduleRow, up_since: Ms) -> Pass {
    let sched = match serde_json::from_value::<Spec>(row.spec.clone())
        .map_err(|e| e.to_string())
        .and_then(|s| s.validate().map_err(|e| e.to_string()))
    {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(schedule = %row.name, error = %e, "stored schedule does not validate; not fired");
            return Pass::default();
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
    let wake_at = d.wake_at;
    match apply(state, plans, &row, &sched, d, now).await {
        Ok(fired) => Pass { fired, wake_at },
        Err(e) => {
            tracing::error!(schedule = %row.name, error = %e, "firing the schedule failed; it is decided again next tick");
            Pass { fired: 0, wake_at }
        }
    }
}

/// Records a decision in due order, so the cursor never passes a due time whose fire
/// was not committed: skips before the first fire, the fires, then the other skips.
async fn apply(
    state: &Arc<AppState>,
    plans: &Plans,
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
    let metrics = state.exec.metrics();
    if !before.is_empty() {
        let cursor = before.iter().map(|s| s.0).max().unwrap_or(row.after);
        let reasons: Vec<&str> = before.iter().map(|s| s.1).collect();
        store.skip_due_times(row.id, before, cursor, now).await?;
        reasons
            .into_iter()
            .for_each(|r| metrics.schedule_due_time(r));
    }
    let mut fired = 0;
    if !d.fire.is_empty() {
        let who = format!("schedule:{}", row.name);
        let resolved = plans.get(state, &sched.plan).await;
        let resolved = match &*resolved {
            Ok((plan, version)) => plan::bind_params(plan, &sched.params)
                .map(|params| (plan.clone(), *version, params))
                .map_err(|d| describe(&format!("{} version {version}", sched.plan.name), &d)),
            Err(e) => Err(e.clone()),
        };
        for f in &d.fire {
            let (plan, version, params) = match &resolved {
                Ok(r) => r,
                Err(why) => {
                    tracing::error!(schedule = %row.name, due = f.due, error = %why, "the schedule's plan cannot run; this due time is skipped");
                    store
                        .skip_due_times(row.id, vec![(f.due, "plan-error")], f.due, now)
                        .await?;
                    metrics.schedule_due_time("plan-error");
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
                    let lag = (state.exec.now() - f.at).max(0) as u64;
                    metrics.schedule_fired(Duration::from_millis(lag));
                    tracing::info!(schedule = %row.name, due = f.due, run_id = %run, "schedule fired");
                    state.drive(run);
                    fired += 1;
                }
                Err(executor::Error::Store(store::Error::AlreadyFired { .. })) => {}
                // The safety rails refused the run (open breaker, busy lock under
                // `refuse`, a limit, locks that do not render): the due time is
                // skipped and recorded, not tried again every second.
                Err(
                    e @ (executor::Error::Store(
                        store::Error::BreakerOpen { .. } | store::Error::Busy { .. },
                    )
                    | executor::Error::Locks(_)),
                ) => {
                    tracing::warn!(schedule = %row.name, due = f.due, error = %e, "the safety rails refused this due time's run; it is skipped");
                    store
                        .skip_due_times(row.id, vec![(f.due, "refused")], f.due, now)
                        .await?;
                    metrics.schedule_due_time("refused");
                }
                Err(e) => return Err(e),
            }
        }
    }
    if !after.is_empty() {
        let reasons: Vec<&str> = after.iter().map(|s| s.1).collect();
        store.skip_due_times(row.id, after, d.after, now).await?;
        reasons
            .into_iter()
            .for_each(|r| metrics.schedule_due_time(r));
    }
    Ok(fired)
}

/// The schedule's plan version from the registry, checked against the installed
/// plugins (as a submission by name is).
async fn resolve(
    state: &AppState,
    r: &schedule::PlanRef,
) -> Result<(Arc<plan::Plan>, u32), String> {
    let name = &r.name;
    let stored = state
        .exec
        .store()
        .plan_version(name, r.version)
        .await
        .map_err(|e| e.to_string())?;
    let file = format!("{name} version {}", stored.version);
    let plan = plugin::check_plan(state.exec.invoker(), &file, &stored.source, stored.format)
        .await
        .map_err(|d| describe(&file, &d))?;
    Ok((Arc::new(plan), stored.version))
}

fn describe(file: &str, d: &plan::Diagnostics) -> String {
    let lines: Vec<String> = d.0.iter().map(|d| d.message.clone()).collect();
    format!("{file}: {}", lines.join("; "))
}
