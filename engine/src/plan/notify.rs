//! The plan's `notify` block: which channels hear about its runs, for which events,
//! per step, and the severity tiers a run escalates through. Channel names only: the
//! operator's medic.toml says where each channel is (`[notify.channels.NAME]`).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use super::diagnostic::{Report, list};

/// A run event a plan can be notified of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NoticeEvent {
    Started,
    /// A step waits for approval.
    Approval,
    /// The run waits for an operator (a held step).
    Held,
    /// The run failed, was rolled back or was cancelled.
    Failed,
    Succeeded,
    /// The run reached the next severity tier.
    Escalated,
}

impl NoticeEvent {
    pub const ALL: [NoticeEvent; 6] = [
        NoticeEvent::Started,
        NoticeEvent::Approval,
        NoticeEvent::Held,
        NoticeEvent::Failed,
        NoticeEvent::Succeeded,
        NoticeEvent::Escalated,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            NoticeEvent::Started => "started",
            NoticeEvent::Approval => "approval",
            NoticeEvent::Held => "held",
            NoticeEvent::Failed => "failed",
            NoticeEvent::Succeeded => "succeeded",
            NoticeEvent::Escalated => "escalated",
        }
    }
}

/// A severity tier a run escalates to once unfinished for `after`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tier {
    pub severity: String,
    pub after: Duration,
    pub channels: Vec<String>,
}

/// The validated `notify` block (empty when the plan has none).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Notify {
    pub channels: Vec<String>,
    /// Run events that notify `channels`.
    pub events: Vec<NoticeEvent>,
    pub severity: Option<String>,
    /// Step index -> its step-level events (`Started`, `Failed`, `Succeeded`).
    pub steps: BTreeMap<usize, Vec<NoticeEvent>>,
    /// In order of `after`, strictly increasing.
    pub escalation: Vec<Tier>,
}

impl Notify {
    pub fn is_empty(&self) -> bool {
        self.channels.is_empty() && self.escalation.is_empty()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNotify {
    #[serde(default)]
    channels: Vec<String>,
    events: Option<Vec<NoticeEvent>>,
    severity: Option<String>,
    #[serde(default)]
    steps: BTreeMap<String, Vec<NoticeEvent>>,
    #[serde(default)]
    escalation: Vec<RawTier>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTier {
    severity: String,
    escalate_after: String,
    channels: Vec<String>,
}

fn channel_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Checks `notify` (already past the schema check) against the plan's step ids.
pub(super) fn validate(
    value: Option<&Value>,
    steps: &HashMap<String, usize>,
    r: &mut Report<'_>,
) -> Notify {
    let Some(value) = value else {
        return Notify::default();
    };
    // The schema check has reported a malformed block.
    let Ok(raw) = serde_json::from_value::<RawNotify>(value.clone()) else {
        return Notify::default();
    };
    let names = |list: &[String], pointer: &str, r: &mut Report<'_>| {
        for (i, c) in list.iter().enumerate() {
            if !channel_name(c) {
                r.at(
                    &format!("{pointer}/{i}"),
                    format!(
                        "`{c}` is not a channel name: 1-64 letters, digits, `-` and `_`, as in medic.toml [notify.channels.NAME]"
                    ),
                );
            }
        }
    };
    names(&raw.channels, "/notify/channels", r);
    let mut step_events = BTreeMap::new();
    let mut ids: Vec<String> = steps.keys().cloned().collect();
    ids.sort();
    for (id, events) in &raw.steps {
        let pointer = format!("/notify/steps/{}", id.replace('~', "~0").replace('/', "~1"));
        match steps.get(id) {
            Some(&i) => {
                step_events.insert(i, events.clone());
            }
            None => r.at_key(
                &pointer,
                format!("unknown step `{id}`; expected one of: {}", list(&ids, 20)),
            ),
        }
    }
    if (!raw.steps.is_empty() || raw.events.as_ref().is_some_and(|e| !e.is_empty()))
        && raw.channels.is_empty()
    {
        r.at(
            "/notify",
            "`events` and `steps` notify `channels`, but none is given: add `channels: [NAME]` (a channel of medic.toml [notify.channels.NAME])",
        );
    }
    let mut escalation: Vec<Tier> = Vec::new();
    for (i, t) in raw.escalation.iter().enumerate() {
        let pointer = format!("/notify/escalation/{i}");
        names(&t.channels, &format!("{pointer}/channels"), r);
        let after = match humantime::parse_duration(&t.escalate_after) {
            Ok(d) if !d.is_zero() => d,
            Ok(_) => {
                r.at(
                    &format!("{pointer}/escalate_after"),
                    "`escalate_after` must be more than 0s, e.g. `30m`",
                );
                continue;
            }
            Err(e) => {
                r.at(
                    &format!("{pointer}/escalate_after"),
                    format!(
                        "invalid duration `{}`: {e}; expected e.g. `30m` or `1h 30m`",
                        t.escalate_after
                    ),
                );
                continue;
            }
        };
        if let Some(prev) = escalation.last()
            && prev.after >= after
        {
            r.at(
                &format!("{pointer}/escalate_after"),
                format!(
                    "tier `{}` escalates after {} but the tier before it (`{}`) after {}: thresholds must increase from tier to tier",
                    t.severity,
                    humantime::format_duration(after),
                    prev.severity,
                    humantime::format_duration(prev.after)
                ),
            );
            continue;
        }
        escalation.push(Tier {
            severity: t.severity.clone(),
            after,
            channels: t.channels.clone(),
        });
    }
    Notify {
        events: raw.events.unwrap_or_else(|| NoticeEvent::ALL.to_vec()),
        channels: raw.channels,
        severity: raw.severity,
        steps: step_events,
        escalation,
    }
}

#[cfg(test)]
mod tests {
    use crate::plan::{Format, parse};

    fn errors(notify: &str) -> String {
        let text = format!(
            "apiVersion: medic/v1\nkind: RecoveryPlan\nmetadata: {{ name: t }}\nplugins:\n  p: {{ use: probe@0.1 }}\nnotify:\n{notify}\nsteps:\n  - {{ id: a, uses: p/noop }}\n"
        );
        match parse("t.yaml", &text, Format::Yaml, None) {
            Ok(_) => String::new(),
            Err(d) => d.to_string(),
        }
    }

    #[test]
    fn notify_blocks_are_checked_with_their_field_named() {
        assert_eq!(errors("  channels: [oncall]\n  steps: { a: [failed] }"), "");
        let e = errors("  channels: [oncall]\n  steps: { zz: [failed] }");
        assert!(
            e.contains("unknown step `zz`") && e.contains("notify.steps.zz"),
            "{e}"
        );
        let e = errors("  channels: [\"on call\"]");
        assert!(e.contains("not a channel name"), "{e}");
        let e = errors("  events: [failed]");
        assert!(e.contains("none is given"), "{e}");
        let e = errors("  channels: [x]\n  events: [exploded]");
        assert!(e.contains("events"), "{e}");
        let e = errors(
            "  escalation:\n    - { severity: a, escalate_after: 1h, channels: [x] }\n    - { severity: b, escalate_after: 30m, channels: [x] }",
        );
        assert!(e.contains("thresholds must increase"), "{e}");
        let e = errors("  escalation:\n    - { severity: a, escalate_after: soon, channels: [x] }");
        assert!(e.contains("invalid duration `soon`"), "{e}");
        let e = errors("  channels: [x]\n  steps: { a: [approval] }");
        assert!(e.contains("notify.steps.a"), "{e}");
    }
}
