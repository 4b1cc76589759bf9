//! The escalation loop of `medic serve`: every tick, each unfinished run whose plan
//! declares `notify.escalation` tiers and has passed a tier's `escalate_after`
//! (measured from the run's start, by the executor's clock) is marked escalated to
//! that tier and its channels are notified, in one transaction, once per tier.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::executor::Executor;
use crate::metrics;
use crate::plan::{self, Plan};
use crate::plugin::Invoker;
use crate::run::Ms;
use crate::store::{self, Store};

use super::notice;

/// Runs until the process ends, on the executor's clock and store.
pub async fn run<I: Invoker>(exec: Executor<I>, tick: Duration) {
    let mut plans = Plans::default();
    loop {
        match tick_once(exec.store(), &mut plans, exec.now()).await {
            Ok(severities) => severities.iter().for_each(|s| {
                exec.metrics()
                    .ops_event(metrics::ESCALATIONS, "severity", s)
            }),
            Err(e) => {
                tracing::error!(error = %e, "checking runs for escalation failed; trying again next tick")
            }
        }
        tokio::time::sleep(tick).await;
    }
}

/// Stored plans by hash (`None`: no escalation tiers, or does not parse).
#[derive(Default)]
pub struct Plans(HashMap<String, Option<Arc<Plan>>>);

/// One pass; returns the severity of each escalation it recorded.
pub async fn tick_once(
    store: &Store,
    plans: &mut Plans,
    now: Ms,
) -> Result<Vec<String>, store::Error> {
    let mut done = Vec::new();
    for run in store.pending_runs().await? {
        let plan = match plans.0.get(&run.plan_hash) {
            Some(p) => p.clone(),
            None => {
                let source = store.plan_source(&run.plan_hash).await?;
                let parsed = plan::parse(&run.plan_hash, &source, plan::Format::Json, None)
                    .ok()
                    .filter(|p| !p.notify.escalation.is_empty())
                    .map(Arc::new);
                plans.0.insert(run.plan_hash.clone(), parsed.clone());
                parsed
            }
        };
        let Some(plan) = plan else { continue };
        for tier in notice::due_tiers(&plan, run.created_at, run.tiers as usize, now) {
            let notices = notice::escalated(&plan, &run.id, tier, run.created_at, now);
            let severity = &plan.notify.escalation[tier].severity;
            if store
                .escalate(&run.id, tier as u32, severity, notices, now)
                .await?
            {
                tracing::warn!(run_id = %run.id, severity = %severity, "run escalated");
                done.push(severity.clone());
            }
        }
    }
    Ok(done)
}
