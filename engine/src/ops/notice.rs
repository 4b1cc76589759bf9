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
                    RunStatus::Waiting | RunStatus::Running | RunStatus::RollingBack => continue,
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

/// The notifications telling the channels of the tiers `run` reached (indices into
/// `plan.notify.escalation`) that it ended with `status`: whoever was paged hears
/// the outcome, not only the plan's own channels.
pub fn escalation_ended(
    plan: &Plan,
    run: &str,
    tiers: &[usize],
    status: &str,
    reason: Option<&str>,
    at: Ms,
) -> Vec<Notice> {
    let reached: Vec<&crate::plan::Tier> = tiers
        .iter()
        .filter_map(|i| plan.notify.escalation.get(*i))
        .collect();
    let Some(top) = reached.last() else {
        return Vec::new();
    };
    let mut seen = std::collections::BTreeSet::new();
    let channels: Vec<&String> = reached
        .iter()
        .flat_map(|t| t.channels.iter())
        .filter(|c| seen.insert(*c))
        .collect();
    let why = reason.map(|r| format!(": {r}")).unwrap_or_default();
    let message = format!(
        "medic: run {run} of plan `{}` (escalated to {}) ended {status}{why}",
        plan.name, top.severity
    );
    let mut b = body(plan, run, "escalation_ended", None, status, &message, at);
    b["severity"] = json!(top.severity);
    channels
        .into_iter()
        .map(|c| Notice {
            event: "escalation_ended".into(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan;

    fn plan(notify: &str) -> Plan {
        let text = format!(
            "apiVersion: medic/v1\nkind: RecoveryPlan\nmetadata: {{ name: t }}\nplugins:\n  p: {{ use: probe@0.1 }}\n{notify}\nsteps:\n  - {{ id: a, uses: p/noop }}\n  - {{ id: b, uses: p/noop, needs: [a] }}\n"
        );
        plan::parse("t.yaml", &text, plan::Format::Yaml, None).unwrap_or_else(|d| panic!("{d}"))
    }

    fn events(n: &[Notice]) -> Vec<(String, Option<String>, String)> {
        n.iter()
            .map(|n| (n.event.clone(), n.step.clone(), n.channel.clone()))
            .collect()
    }

    fn owned(v: &[(&str, Option<&str>, &str)]) -> Vec<(String, Option<String>, String)> {
        v.iter()
            .map(|(e, s, c)| (e.to_string(), s.map(str::to_owned), c.to_string()))
            .collect()
    }

    #[test]
    fn run_and_step_events_notify_the_channels_the_plan_names() {
        let p = plan(
            "notify:\n  severity: sev3\n  channels: [x, y]\n  events: [started, failed, approval]\n  steps: { b: [failed] }",
        );
        let log = vec![
            Entry::AttemptStarted {
                step: "a".into(),
                attempt: 1,
                undo: false,
                key: "k".into(),
                params: Value::Null,
            },
            Entry::AttemptFailed {
                step: "b".into(),
                attempt: 2,
                undo: false,
                error: "boom".into(),
                retryable: false,
                retry_at: None,
            },
            // A failure that will be retried is no step failure yet.
            Entry::AttemptFailed {
                step: "b".into(),
                attempt: 1,
                undo: false,
                error: "flaky".into(),
                retryable: true,
                retry_at: Some(5),
            },
            Entry::RunStatus {
                status: RunStatus::Succeeded,
                reason: None,
            },
            Entry::RunStatus {
                status: RunStatus::RolledBack,
                reason: Some("step b failed".into()),
            },
        ];
        let n = for_batch(&p, "r1", 1, &log, 7);
        assert_eq!(
            events(&n),
            owned(&[
                ("started", None, "x"),
                ("started", None, "y"),
                ("step_failed", Some("b"), "x"),
                ("step_failed", Some("b"), "y"),
                ("failed", None, "x"),
                ("failed", None, "y"),
            ])
        );
        assert_eq!(n[0].body["severity"], "sev3");
        assert_eq!(n[0].body["at"], 7);
        assert!(
            n[2].body["message"]
                .as_str()
                .unwrap()
                .contains("failed after 2 attempt(s): boom"),
            "{}",
            n[2].body
        );
        assert_eq!(
            n[4].body["message"],
            "medic: run r1 of plan `t` failed and was rolled back: step b failed"
        );
        // Not the run's first batch: no `started`; a plan without notify: nothing.
        assert!(for_batch(&p, "r1", 5, &log[..1], 7).is_empty());
        assert!(for_batch(&plan(""), "r1", 1, &log, 7).is_empty());
    }

    #[test]
    fn tiers_are_due_in_order_at_their_thresholds() {
        let p = plan(
            "notify:\n  channels: [x]\n  events: [escalated]\n  escalation:\n    - { severity: sev2, escalate_after: 30m, channels: [lead] }\n    - { severity: sev1, escalate_after: 2h, channels: [lead, boss] }",
        );
        let m = 60_000;
        assert!(due_tiers(&p, 0, 0, 30 * m - 1).is_empty());
        assert_eq!(due_tiers(&p, 0, 0, 30 * m), [0]);
        assert!(due_tiers(&p, 0, 1, 119 * m).is_empty());
        assert_eq!(due_tiers(&p, 0, 0, 121 * m), [0, 1]);
        assert_eq!(due_tiers(&p, 0, 1, 121 * m), [1]);
        assert!(due_tiers(&p, 0, 2, 999 * m).is_empty());
        let n = escalated(&p, "r1", 1, 0, 121 * m);
        assert_eq!(
            events(&n),
            owned(&[
                ("escalated", None, "lead"),
                ("escalated", None, "boss"),
                ("escalated", None, "x"),
            ])
        );
        assert_eq!(n[0].body["severity"], "sev1");
        let ended = escalation_ended(&p, "r1", &[0, 1], "cancelled", Some("by bob"), 5);
        assert_eq!(
            events(&ended),
            owned(&[
                ("escalation_ended", None, "lead"),
                ("escalation_ended", None, "boss"),
            ])
        );
        assert_eq!(
            ended[0].body["message"],
            "medic: run r1 of plan `t` (escalated to sev1) ended cancelled: by bob"
        );
        assert_eq!(
            n[0].body["message"],
            "medic: run r1 of plan `t` is unresolved after 2h 1m: escalated to sev1 (threshold 2h)"
        );
    }

    #[test]
    fn each_channel_format_gets_its_payload() {
        let body =
            json!({"event": "failed", "message": "it broke", "severity": "sev2", "run": "r1"});
        let ch = |format, template: Option<&str>| Channel {
            url: "http://h/x".into(),
            format,
            template: template.map(str::to_owned),
        };
        assert_eq!(
            payload(&ch(ChannelFormat::Slack, None), &body).unwrap(),
            json!({"text": "it broke"})
        );
        assert_eq!(
            payload(&ch(ChannelFormat::Json, None), &body).unwrap(),
            body
        );
        let ding = r#"{"msgtype": "markdown", "markdown": {"title": "medic {{ event }}", "text": {{ ("**" ~ severity ~ "** " ~ message) | tojson }}}}"#;
        assert_eq!(
            payload(&ch(ChannelFormat::Template, Some(ding)), &body).unwrap(),
            json!({"msgtype": "markdown", "markdown": {"title": "medic failed", "text": "**sev2** it broke"}})
        );
        let e = payload(&ch(ChannelFormat::Template, Some("{{ nope }}")), &body).unwrap_err();
        assert!(e.contains("template"), "{e}");
        let e = payload(&ch(ChannelFormat::Template, Some("not {{ run }}")), &body).unwrap_err();
        assert!(
            e.contains("rendered no JSON") && e.contains("not r1"),
            "{e}"
        );
    }
}
