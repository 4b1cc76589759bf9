//! `medic report RUN` and `GET /v1/runs/{id}/report`: a run as a postmortem. Who or
//! what triggered it (token, schedule, alert), the approvals and who gave them, what
//! each step ran with its outputs, errors and durations, escalations and
//! notifications, and the timeline of its events. Built from the run's stored view
//! (`Store::detail`); pure.

use std::fmt::Write;

use serde::Serialize;
use serde_json::{Value, json};

use crate::run::Ms;
use crate::store::{AlertRunRow, EscalationRow, NotificationRow};

/// Everything a report is made from.
pub struct Input {
    /// `Store::detail` of the run.
    pub detail: Value,
    pub alerts: Vec<AlertRunRow>,
    pub escalations: Vec<EscalationRow>,
    pub notifications: Vec<NotificationRow>,
}

/// The postmortem of a run (its JSON form).
#[derive(Debug, Clone, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Report {
    pub run: String,
    pub plan: String,
    pub plan_version: Option<u64>,
    pub status: String,
    pub reason: Option<String>,
    /// `token NAME`, `schedule NAME`, `alert RULE`, or `medic run` (local).
    pub triggered_by: String,
    pub started_at: Ms,
    /// When it reached a final status (its last update), if it has.
    pub ended_at: Option<Ms>,
    pub duration_ms: Option<Ms>,
    #[schema(value_type = Object)]
    pub params: Value,
    /// The alerts that started the run, with their resolution.
    #[schema(value_type = Vec<Object>)]
    pub alerts: Vec<Value>,
    #[schema(value_type = Vec<Object>)]
    pub approvals: Vec<Value>,
    #[schema(value_type = Vec<Object>)]
    pub steps: Vec<Value>,
    #[schema(value_type = Vec<Object>)]
    pub errors: Vec<Value>,
    #[schema(value_type = Vec<Object>)]
    pub escalations: Vec<Value>,
    #[schema(value_type = Vec<Object>)]
    pub notifications: Vec<Value>,
    /// Every event, with its offset from the start.
    #[schema(value_type = Vec<Object>)]
    pub timeline: Vec<Value>,
}

const TERMINAL: [&str; 4] = ["succeeded", "failed", "rolled_back", "cancelled"];

/// Builds the report.
pub fn build(input: &Input) -> Report {
    let d = &input.detail;
    let run = &d["run"];
    let started_at = run["created_at"].as_i64().unwrap_or(0);
    let status = run["status"].as_str().unwrap_or("").to_owned();
    let ended_at = TERMINAL
        .contains(&status.as_str())
        .then(|| run["updated_at"].as_i64().unwrap_or(started_at));
    let triggered_by = match run["submitted_by"].as_str() {
        Some(s) if s.starts_with("schedule:") => format!("schedule {}", &s[9..]),
        Some(s) if s.starts_with("alert:") => format!("alert {}", &s[6..]),
        Some(s) => format!("token {s}"),
        None => "medic run (local)".into(),
    };
    let events = d["events"].as_array().cloned().unwrap_or_default();
    let mut approvals = Vec::new();
    let mut errors = Vec::new();
    let mut timeline = Vec::new();
    for e in &events {
        let at = e["at"].as_i64().unwrap_or(started_at);
        let data = &e["data"];
        let kind = e["kind"].as_str().unwrap_or("");
        let step = e["step"].as_str();
        match kind {
            "approval_decided" => approvals.push(json!({
                "step": step,
                "approved": data["approved"],
                "by": data["by"],
                "comment": data["comment"],
                "at": at,
            })),
            "attempt_failed" => errors.push(json!({
                "step": step,
                "attempt": data["attempt"],
                "undo": data["undo"],
                "error": data["error"],
                "retried": data.get("retry_at").is_some_and(|r| !r.is_null()),
                "at": at,
            })),
            _ => {}
        }
        if kind == "step_progress" {
            continue;
        }
        timeline.push(json!({
            "at": at,
            "offset_ms": at - started_at,
            "kind": kind,
            "step": step,
            "text": describe(kind, data),
        }));
    }
    let attempts = d["attempts"].as_array().cloned().unwrap_or_default();
    let steps = d["steps"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            let id = s["id"].as_str().unwrap_or("");
            let n = attempts
                .iter()
                .filter(|a| a["step"] == id && a["undo"] == false)
                .count();
            let undone = attempts
                .iter()
                .any(|a| a["step"] == id && a["undo"] == true);
            let duration = match (s["started_at"].as_i64(), s["finished_at"].as_i64()) {
                (Some(a), Some(b)) => json!(b - a),
                _ => Value::Null,
            };
            json!({
                "id": id,
                "status": s["status"],
                "attempts": n,
                "undo_ran": undone,
                "started_at": s["started_at"],
                "finished_at": s["finished_at"],
                "duration_ms": duration,
                "output": s["output"],
                "error": s["error"],
            })
        })
        .collect();
    Report {
        run: run["id"].as_str().unwrap_or("").to_owned(),
        plan: run["plan_name"].as_str().unwrap_or("").to_owned(),
        plan_version: run["plan_version"].as_u64(),
        status,
        reason: run["reason"].as_str().map(str::to_owned),
        triggered_by,
        started_at,
        ended_at,
        duration_ms: ended_at.map(|e| e - started_at),
        params: d["params"].clone(),
        alerts: input
            .alerts
            .iter()
            .map(|a| {
                json!({
                    "rule": a.rule,
                    "fingerprint": a.fingerprint,
                    "starts_at": a.starts_at,
                    "labels": a.labels,
                    "received_at": a.received_at,
                    "resolved_at": a.resolved_at,
                    "resolution": a.resolution,
                })
            })
            .collect(),
        approvals,
        steps,
        errors,
        escalations: input
            .escalations
            .iter()
            .map(|e| json!({"tier": e.tier, "severity": e.severity, "at": e.at, "offset_ms": e.at - started_at}))
            .collect(),
        notifications: input
            .notifications
            .iter()
            .map(|n| {
                json!({
                    "event": n.event,
                    "step": n.step,
                    "channel": n.channel,
                    "attempts": n.attempts,
                    "delivered_at": n.delivered_at,
                    "gave_up_at": n.gave_up_at,
                    "last_error": n.last_error,
                })
            })
            .collect(),
        timeline,
    }
}

fn describe(kind: &str, d: &Value) -> String {
    let s = |k: &str| match &d[k] {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    };
    match kind {
        "run_status" => match d.get("reason").and_then(Value::as_str) {
            Some(r) => format!("run {}: {r}", s("status")),
            None => format!("run {}", s("status")),
        },
        "attempt_started" if d["undo"] == true => format!("undo attempt {} started", s("attempt")),
        "attempt_started" => format!("attempt {} started", s("attempt")),
        "attempt_succeeded" => format!(
            "{}attempt {} succeeded",
            if d["undo"] == true { "undo " } else { "" },
            s("attempt")
        ),
        "attempt_failed" => format!(
            "{}attempt {} failed{}: {}",
            if d["undo"] == true { "undo " } else { "" },
            s("attempt"),
            if d.get("retry_at").is_some_and(|r| !r.is_null()) {
                " (will retry)"
            } else {
                ""
            },
            s("error")
        ),
        "step_skipped" => format!("skipped: {}", s("reason")),
        "step_not_run" => "not run".into(),
        "approval_requested" => format!("waits for approval: {}", s("prompt")),
        "approval_decided" => format!(
            "{} by {}{}",
            if d["approved"] == true {
                "approved"
            } else {
                "rejected"
            },
            s("by"),
            d.get("comment")
                .and_then(Value::as_str)
                .map(|c| format!(" ({c})"))
                .unwrap_or_default()
        ),
        "step_held" => format!("held: {}", s("reason")),
        "step_resolved" => format!("{} by {}", s("resolution"), s("by")),
        "observed" => format!(
            "in-flight attempt {} observed: {}",
            s("attempt"),
            s("result")
        ),
        "cancel_requested" => format!("cancel requested by {}", s("by")),
        other => other.to_owned(),
    }
}

/// `2026-11-23T10:00:00.123Z`.
pub fn timestamp(at: Ms) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(at.max(0) as u64);
    humantime::format_rfc3339_millis(t).to_string()
}

/// `+1.250s` from the start.
fn offset(ms: Ms) -> String {
    format!("+{}.{:03}s", ms / 1000, ms % 1000)
}

fn secs(ms: Ms) -> String {
    format!("{}.{:03}s", ms / 1000, ms % 1000)
}

fn code(v: &Value) -> String {
    let t = match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let t = t.replace('|', "\\|").replace('\n', " ");
    if t.len() > 200 {
        let mut cut = 200;
        while !t.is_char_boundary(cut) {
            cut -= 1;
        }
        format!("`{}…`", &t[..cut])
    } else {
        format!("`{t}`")
    }
}

/// The report as Markdown.
pub fn markdown(r: &Report) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "# Postmortem: run `{}` of plan `{}`\n", r.run, r.plan);
    let _ = writeln!(o, "## Summary\n");
    let version = r
        .plan_version
        .map(|v| format!(" version {v}"))
        .unwrap_or_default();
    let _ = writeln!(o, "- Plan: `{}`{version}", r.plan);
    let _ = writeln!(
        o,
        "- Outcome: **{}**{}",
        r.status,
        r.reason
            .as_deref()
            .map(|x| format!(": {x}"))
            .unwrap_or_default()
    );
    let _ = writeln!(o, "- Triggered by: {}", r.triggered_by);
    let _ = writeln!(o, "- Started: {}", timestamp(r.started_at));
    match (r.ended_at, r.duration_ms) {
        (Some(e), Some(d)) => {
            let _ = writeln!(o, "- Ended: {} (took {})", timestamp(e), secs(d));
        }
        _ => o.push_str("- Ended: not yet (the run is still going)\n"),
    }
    let _ = writeln!(o, "- Params: {}", code(&r.params));
    o.push('\n');

    if !r.alerts.is_empty() {
        o.push_str("## Alert\n\n");
        for a in &r.alerts {
            let _ = writeln!(
                o,
                "- Rule `{}`, fingerprint `{}`, firing since {}; labels {}",
                a["rule"].as_str().unwrap_or(""),
                a["fingerprint"].as_str().unwrap_or(""),
                a["starts_at"].as_str().unwrap_or(""),
                code(&a["labels"])
            );
            match a["resolved_at"].as_i64() {
                Some(at) => {
                    let _ = writeln!(
                        o,
                        "- Resolved at {} ({})",
                        timestamp(at),
                        a["resolution"].as_str().unwrap_or("")
                    );
                }
                None => o.push_str("- Not resolved yet\n"),
            }
        }
        o.push('\n');
    }

    if !r.approvals.is_empty() {
        o.push_str("## Approvals\n\n");
        for a in &r.approvals {
            let _ = writeln!(
                o,
                "- `{}`: {} by **{}** at {}{}",
                a["step"].as_str().unwrap_or(""),
                if a["approved"] == true {
                    "approved"
                } else {
                    "rejected"
                },
                a["by"].as_str().unwrap_or(""),
                timestamp(a["at"].as_i64().unwrap_or(0)),
                a["comment"]
                    .as_str()
                    .map(|c| format!(": \"{c}\""))
                    .unwrap_or_default()
            );
        }
        o.push('\n');
    }

    o.push_str("## Steps\n\n| Step | Status | Attempts | Duration | Output / error |\n|---|---|---|---|---|\n");
    for s in &r.steps {
        let duration = s["duration_ms"].as_i64().map_or("-".into(), secs);
        let detail = if !s["error"].is_null() {
            code(&s["error"])
        } else if !s["output"].is_null() {
            code(&s["output"])
        } else {
            String::new()
        };
        let _ = writeln!(
            o,
            "| `{}` | {}{} | {} | {} | {} |",
            s["id"].as_str().unwrap_or(""),
            s["status"].as_str().unwrap_or(""),
            if s["undo_ran"] == true {
                " (undo ran)"
            } else {
                ""
            },
            s["attempts"],
            duration,
            detail
        );
    }
    o.push('\n');

    if !r.errors.is_empty() {
        o.push_str("## Errors\n\n");
        for e in &r.errors {
            let _ = writeln!(
                o,
                "- `{}` {}attempt {}{}: {}",
                e["step"].as_str().unwrap_or(""),
                if e["undo"] == true { "undo " } else { "" },
                e["attempt"],
                if e["retried"] == true {
                    " (retried)"
                } else {
                    ""
                },
                e["error"].as_str().unwrap_or("")
            );
        }
        o.push('\n');
    }

    if !r.escalations.is_empty() {
        o.push_str("## Escalations\n\n");
        for e in &r.escalations {
            let _ = writeln!(
                o,
                "- {} escalated to **{}**",
                offset(e["offset_ms"].as_i64().unwrap_or(0)),
                e["severity"].as_str().unwrap_or("")
            );
        }
        o.push('\n');
    }

    if !r.notifications.is_empty() {
        o.push_str("## Notifications\n\n");
        for n in &r.notifications {
            let state = if !n["delivered_at"].is_null() {
                "delivered".to_owned()
            } else if !n["gave_up_at"].is_null() {
                format!("given up: {}", n["last_error"].as_str().unwrap_or(""))
            } else {
                "pending".to_owned()
            };
            let _ = writeln!(
                o,
                "- {} to `{}`: {state} after {} attempt(s)",
                n["event"].as_str().unwrap_or(""),
                n["channel"].as_str().unwrap_or(""),
                n["attempts"]
            );
        }
        o.push('\n');
    }

    o.push_str("## Timeline\n\n| Offset | Step | Event |\n|---|---|---|\n");
    for t in &r.timeline {
        let _ = writeln!(
            o,
            "| {} | {} | {} |",
            offset(t["offset_ms"].as_i64().unwrap_or(0)),
            t["step"]
                .as_str()
                .map(|s| format!("`{s}`"))
                .unwrap_or_default(),
            t["text"]
                .as_str()
                .unwrap_or("")
                .replace('|', "\\|")
                .replace('\n', " ")
        );
    }
    o
}
