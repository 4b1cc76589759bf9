//! Which notifications a run's committed entries cause (from the plan's `notify`
//! block), and the payload each channel format gets. Pure.

use serde_json::{Value, json};

use crate::plan::{NoticeEvent, Plan};
use crate::plugin::config::{Channel, ChannelFormat};
use crate::run::{Entry, Ms, RunStatus};
use crate::store::Notice;

/// The notifications caused by `log`, a batch of a run's entries whose first one gets
/// sequence number `first_seq` (1: the run's very first batch, so it just started).
pub fn for_batch(plan: &Plan, run: &str, first_seq: i64, log: &[Entry], at: Ms) -> Vec<Notice> {
    let n = &plan.notify;
    if n.channels.is_empty() || log.is_empty() {
        return Vec::new();
    }
    let wants = |e: NoticeEvent| n.events.contains(&e);
    let step_wants = |step: &str, e: NoticeEvent| {
        plan.step_index(step)
            .and_then(|i| n.steps.get(&i))
            .is_some_and(|events| events.contains(&e))
    };
    let mut out = Vec::new();
    let mut push = |event: &str, step: Option<&str>, status: &str, message: String| {
        let body = body(plan, run, event, step, status, &message, at);
        for channel in &n.channels {
            out.push(Notice {
                event: event.to_owned(),
                step: step.map(str::to_owned),
                channel: channel.clone(),
                body: body.clone(),
            });
        }
    };
    let name = &plan.name;
    if first_seq == 1 && wants(NoticeEvent::Started) {
        push(
            "started",
            None,
            "running",
            format!("medic: run {run} of plan `{name}` started"),
        );
    }
    for entry in log {
        match entry {
            Entry::RunStatus { status, reason } => {
                let why = reason
                    .as_deref()
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default();
                let (event, verb) = match status {
                    RunStatus::Succeeded => (NoticeEvent::Succeeded, "succeeded"),
                    RunStatus::Failed => (NoticeEvent::Failed, "failed"),
                    RunStatus::RolledBack => (NoticeEvent::Failed, "failed and was rolled back"),
                    RunStatus::Cancelled => (NoticeEvent::Failed, "was cancelled"),
                    RunStatus::Held => (NoticeEvent::Held, "is held for an operator"),
                    RunStatus::Running | RunStatus::RollingBack => continue,
                };
                if wants(event) {
                    push(
                        event.as_str(),
                        None,
                        status.as_str(),
                        format!("medic: run {run} of plan `{name}` {verb}{why}"),
                    );
                }
            }
            Entry::ApprovalRequested { step, prompt, .. } if wants(NoticeEvent::Approval) => {
                push(
                    "approval",
                    Some(step),
                    "running",
                    format!(
                        "medic: run {run} of plan `{name}` waits for approval of step `{step}`: {prompt} \
                         (medic approve {run} {step})"
                    ),
                );
            }
            Entry::AttemptStarted {
                step,
                attempt: 1,
                undo: false,
                ..
            } if step_wants(step, NoticeEvent::Started) => push(
                "step_started",
                Some(step),
                "running",
                format!("medic: step `{step}` of run {run} (plan `{name}`) started"),
            ),
            Entry::AttemptSucceeded {
                step, undo: false, ..
            } if step_wants(step, NoticeEvent::Succeeded) => push(
                "step_succeeded",
                Some(step),
                "running",
                format!("medic: step `{step}` of run {run} (plan `{name}`) succeeded"),
            ),
            Entry::AttemptFailed {
                step,
                undo: false,
                error,
                retry_at: None,
                attempt,
                ..
            } if step_wants(step, NoticeEvent::Failed) => push(
                "step_failed",
                Some(step),
                "running",
                format!(
                    "medic: step `{step}` of run {run} (plan `{name}`) failed after {attempt} attempt(s): {error}"
                ),
            ),
            _ => {}
        }
    }
    out
}

/// The notifications of `run` reaching escalation tier `tier` (an index into
/// `plan.notify.escalation`): to the tier's channels and the plan's.
pub fn escalated(plan: &Plan, run: &str, tier: usize, started: Ms, at: Ms) -> Vec<Notice> {
    let n = &plan.notify;
    let Some(t) = n.escalation.get(tier) else {
        return Vec::new();
    };
    let mut channels: Vec<&String> = t.channels.iter().collect();
    if n.events.contains(&NoticeEvent::Escalated) {
        channels.extend(n.channels.iter());
    }
    let mut seen = std::collections::BTreeSet::new();
    channels.retain(|c| seen.insert(*c));
    let lasted = std::time::Duration::from_secs(((at - started).max(0) / 1000) as u64);
    let message = format!(
        "medic: run {run} of plan `{}` is unresolved after {}: escalated to {} (threshold {})",
        plan.name,
        humantime::format_duration(lasted),
        t.severity,
        humantime::format_duration(t.after)
    );
    let mut b = body(plan, run, "escalated", None, "running", &message, at);
    b["severity"] = json!(t.severity);
    channels
        .into_iter()
        .map(|c| Notice {
            event: "escalated".into(),
            step: None,
            channel: c.clone(),
            body: b.clone(),
        })
        .collect()
}

/// The tiers (indices) `run` reaches at `now`, given it started at `started` and
/// reached `reached` tiers so far: every later tier whose threshold has passed.
pub fn due_tiers(plan: &Plan, started: Ms, reached: usize, now: Ms) -> Vec<usize> {
    plan.notify
        .escalation
        .iter()
        .enumerate()
        .skip(reached)
        .take_while(|(_, t)| started + t.after.as_millis() as Ms <= now)
        .map(|(i, _)| i)
        .collect()
}

/// The JSON form of a notification: what a `json` channel gets and what a template
/// renders from.
fn body(
    plan: &Plan,
    run: &str,
    event: &str,
    step: Option<&str>,
    status: &str,
    message: &str,
    at: Ms,
) -> Value {
    json!({
        "event": event,
        "run": run,
        "plan": plan.name,
        "step": step,
        "status": status,
        "severity": plan.notify.severity,
        "message": message,
        "at": at,
    })
}

/// The request body `channel` gets for a notification whose JSON form is `body`.
pub fn payload(channel: &Channel, body: &Value) -> Result<Value, String> {
    match channel.format {
        ChannelFormat::Slack => Ok(json!({ "text": body["message"] })),
        ChannelFormat::Json => Ok(body.clone()),
        ChannelFormat::Template => {
            let source = channel.template.as_deref().unwrap_or_default();
            let mut env = minijinja::Environment::new();
            env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
            let text = env
                .render_str(
                    source,
                    minijinja::Value::from(minijinja::value::Serde(body)),
                )
                .map_err(|e| format!("rendering the channel's template: {e}"))?;
            serde_json::from_str(&text)
                .map_err(|e| format!("the channel's template rendered no JSON ({e}): {text}"))
        }
    }
}
