//! The escalation loop of `medic serve`: every tick, each unfinished run whose plan
//! declares `notify.escalation` tiers and has passed a tier's `escalate_after`
//! (measured from the run's start, by the executor's clock) is marked escalated to
//! that tier and its channels are notified, in one transaction, once per tier. When
//! an escalated run ends, the channels of the tiers it reached are told, once.

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
        let Some(plan) = plans.get(store, &run.plan_hash).await? else {
            continue;
        };
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
    // Runs that ended after escalating: their tiers hear how, once.
    for run in store.ended_escalations().await? {
        let tiers: Vec<usize> = run.tiers.iter().map(|t| *t as usize).collect();
        let notices = match plans.get(store, &run.plan_hash).await? {
            Some(plan) => notice::escalation_ended(
                &plan,
                &run.id,
                &tiers,
                &run.status,
                run.reason.as_deref(),
                now,
            ),
            None => Vec::new(),
        };
        store.close_escalation(&run.id, notices, now).await?;
    }
    Ok(done)
}

impl Plans {
    /// The stored plan `hash` if it declares escalation tiers, parsed once.
    async fn get(&mut self, store: &Store, hash: &str) -> Result<Option<Arc<Plan>>, store::Error> {
        if let Some(p) = self.0.get(hash) {
            return Ok(p.clone());
        }
        let source = store.plan_source(hash).await?;
        let parsed = plan::parse(hash, &source, plan::Format::Json, None)
            .ok()
            .filter(|p| !p.notify.escalation.is_empty())
            .map(Arc::new);
        self.0.insert(hash.to_owned(), parsed.clone());
        Ok(parsed)
    }
}
