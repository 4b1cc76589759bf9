//! Whether a run met its plan's recovery time objective (`objective` in the plan):
//! measured once, when the run ends, from the step times the run already keeps.

use std::time::Duration;

use super::{Entry, Ms, RunState, RunStatus, StepStatus};
use crate::plan::Plan;

/// The `objective` entry of a run of `plan` that just ended (`state.status` is
/// terminal) at `now`; `started` is when the run was created. `None` when the plan
/// declares no objective.
pub fn measure(plan: &Plan, state: &RunState, started: Ms, now: Ms) -> Option<Entry> {
    let objective = plan.objective.as_ref()?;
    let within_ms = Ms::try_from(objective.within.as_millis()).unwrap_or(Ms::MAX);
    let within = humantime::format_duration(objective.within).to_string();
    let missed = |elapsed_ms: Option<Ms>, why: String| Entry::Objective {
        within_ms,
        elapsed_ms,
        met: false,
        summary: format!("objective of {within} missed: {why}"),
    };

    let start = match objective.from {
        None => started,
        Some(i) => {
            let step = &state.steps[i];
            match (step.status, step.finished_at) {
                (StepStatus::Succeeded, Some(at)) => at,
                (status, _) => {
                    return Some(missed(
                        None,
                        format!(
                            "the clock never started: step `{}` (from) ended {}",
                            plan.steps[i].id,
                            status.as_str()
                        ),
                    ));
                }
            }
        }
    };
    let (stop, done) = match objective.to {
        None => (now, state.status == RunStatus::Succeeded),
        Some(i) => {
            let step = &state.steps[i];
            (
                step.finished_at.unwrap_or(now),
                step.status == StepStatus::Succeeded,
            )
        }
    };
    let elapsed_ms = (stop - start).max(0);
    let took = fmt_ms(elapsed_ms);
    if !done {
        let what = match objective.to {
            None => format!("the run ended {}", state.status.as_str()),
            Some(i) => format!(
                "step `{}` (to) ended {}",
                plan.steps[i].id,
                state.steps[i].status.as_str()
            ),
        };
        return Some(missed(Some(elapsed_ms), format!("{what} after {took}")));
    }
    if elapsed_ms > within_ms {
        return Some(missed(
            Some(elapsed_ms),
            format!(
                "recovery took {took}, {} too long",
                fmt_ms(elapsed_ms - within_ms)
            ),
        ));
    }
    Some(Entry::Objective {
        within_ms,
        elapsed_ms: Some(elapsed_ms),
        met: true,
        summary: format!("objective of {within} met: recovered in {took}"),
    })
}

/// Milliseconds as people read them at the scale of a recovery: `850ms`, `42.1s`,
/// `12m 5s`.
fn fmt_ms(ms: Ms) -> String {
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else {
        humantime::format_duration(Duration::from_secs((ms / 1000) as u64)).to_string()
    }
}
