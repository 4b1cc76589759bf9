//! `medic doc PLAN`: a plan as a runbook for people (Markdown): what it is for, its
//! params, grants, notifications and escalation, the DAG as a Mermaid flowchart, then
//! each step in the order it can run, with approvals, retries and undo. Pure.

use std::fmt::Write;

use serde_json::Value;

use crate::dag::Dag;
use crate::plan::{ApprovalTimeout, Backoff, Call, FailurePolicy, Plan, PlanKind, Step, StepKind};

/// The runbook of `plan`.
pub fn render(plan: &Plan) -> String {
    let mut o = String::new();
    let kind = match plan.kind {
        PlanKind::Recovery => "Recovery plan",
        PlanKind::Maintenance => "Maintenance plan",
    };
    let _ = writeln!(o, "# {kind}: `{}`\n", plan.name);
    if let Some(d) = &plan.description {
        let _ = writeln!(o, "{}\n", d.trim());
    }
    let _ = writeln!(
        o,
        "- Steps: {} (at most {} at once)\n- On failure: {}\n- Plan hash: `{}`\n",
        plan.steps.len(),
        plan.concurrency,
        policy(plan.on_failure),
        &plan.hash[..12]
    );

    o.push_str("## Params\n\n");
    if plan.params.is_empty() {
        o.push_str("None.\n\n");
    } else {
        o.push_str("| Name | Type | Default | Description |\n|---|---|---|---|\n");
        for p in &plan.params {
            let ty = p.schema.get("type").map_or("any".into(), compact);
            let default = p
                .default
                .as_ref()
                .map_or("*(required)*".into(), |d| format!("`{}`", compact(d)));
            let desc = p
                .schema
                .get("description")
                .and_then(Value::as_str)
                .unwrap_or("");
            let _ = writeln!(o, "| `{}` | {ty} | {default} | {} |", p.name, cell(desc));
        }
        o.push('\n');
    }

    o.push_str("## Plugins and grants\n\n");
    for u in plan.plugins.values() {
        let _ = write!(o, "- `{}`: `{}@{}`", u.alias, u.name, u.version);
        let g = &u.grants;
        let mut grants = Vec::new();
        for (what, list) in [
            ("connect", &g.connect),
            ("http", &g.http),
            ("sql", &g.sql),
            ("secrets", &g.secrets),
        ] {
            if !list.is_empty() {
                let items: Vec<String> = list.iter().map(|i| format!("`{i}`")).collect();
                grants.push(format!("{what} {}", items.join(", ")));
            }
        }
        if grants.is_empty() {
            o.push_str(", no grants\n");
        } else {
            let _ = writeln!(o, "; grants: {}", grants.join("; "));
        }
    }
    o.push('\n');

    if let Some(obj) = &plan.objective {
        o.push_str(
            "## Recovery time objective

",
        );
        let from = obj.from.map_or("the run's start".to_string(), |i| {
            format!("the end of `{}`", plan.steps[i].id)
        });
        let to = obj.to.map_or("the run's end".to_string(), |i| {
            format!("the end of `{}`", plan.steps[i].id)
        });
        let _ = writeln!(
            o,
            "At most **{}** from {from} to {to}; each run records whether it met it.\n",
            humantime::format_duration(obj.within)
        );
    }

    let safety = &plan.safety;
    if !safety.locks.is_empty() || safety.breaker.is_some() {
        o.push_str(
            "## Safety rails

",
        );
        for l in &safety.locks {
            let _ = writeln!(o, "- Lock `{}` ({})", l.name, l.mode.as_str());
        }
        if !safety.locks.is_empty() {
            let busy = match safety.on_lock_busy {
                crate::plan::OnBusy::Wait => "wait for it",
                crate::plan::OnBusy::Refuse => "are refused",
            };
            let _ = writeln!(o, "- Runs that find a lock held {busy}");
        }
        if let Some(n) = safety.limits.concurrent_targets {
            let _ = writeln!(o, "- At most {n} targets at once");
        }
        if let Some(n) = safety.limits.targets_per_hour {
            let _ = writeln!(o, "- At most {n} targets per hour");
        }
        if let Some(b) = safety.breaker {
            let _ = writeln!(
                o,
                "- Breaker: {} failed runs within {} stop new runs until an admin resets it",
                b.failures,
                humantime::format_duration(b.window)
            );
        }
        o.push('\n');
    }

    let n = &plan.notify;
    if !n.is_empty() {
        o.push_str("## Notifications and escalation\n\n");
        if let Some(s) = &n.severity {
            let _ = writeln!(o, "- Severity at start: **{s}**");
        }
        if !n.channels.is_empty() {
            let events: Vec<&str> = n.events.iter().map(|e| e.as_str()).collect();
            let _ = writeln!(
                o,
                "- Channels {} hear: {}",
                ticks(&n.channels),
                events.join(", ")
            );
        }
        for (i, events) in &n.steps {
            let events: Vec<&str> = events.iter().map(|e| e.as_str()).collect();
            let _ = writeln!(o, "- Step `{}`: {}", plan.steps[*i].id, events.join(", "));
        }
        for t in &n.escalation {
            let _ = writeln!(
                o,
                "- Unresolved after {}: escalate to **{}**, notify {}",
                humantime::format_duration(t.after),
                t.severity,
                ticks(&t.channels)
            );
        }
        o.push('\n');
    }

    o.push_str("## Flow\n\n```mermaid\nflowchart TD\n");
    for (i, s) in plan.steps.iter().enumerate() {
        let label = match &s.kind {
            StepKind::Action { call, .. } => {
                format!("{}<br/>{}/{}", s.id, call.plugin, call.action)
            }
            StepKind::Approval(_) => format!("{}<br/>approval", s.id),
        };
        let label = label.replace('"', "#quot;");
        match &s.kind {
            StepKind::Approval(_) => {
                let _ = writeln!(o, "    s{i}{{\"{label}\"}}");
            }
            StepKind::Action { .. } => {
                let _ = writeln!(o, "    s{i}[\"{label}\"]");
            }
        }
    }
    for (i, s) in plan.steps.iter().enumerate() {
        for &n in &s.needs {
            let arrow = if s.when.is_some() {
                "-. when .->"
            } else {
                "-->"
            };
            let _ = writeln!(o, "    s{n} {arrow} s{i}");
        }
    }
    o.push_str("```\n\n## Steps\n\n");
    let order: Vec<usize> = match Dag::new(plan.steps.iter().map(|s| s.needs.clone()).collect()) {
        Ok(d) => d.topological().to_vec(),
        Err(_) => (0..plan.steps.len()).collect(),
    };
    for (k, &i) in order.iter().enumerate() {
        step(&mut o, plan, k + 1, &plan.steps[i]);
    }
    o
}

fn step(o: &mut String, plan: &Plan, number: usize, s: &Step) {
    let _ = writeln!(o, "### {number}. `{}`\n", s.id);
    if !s.needs.is_empty() {
        let needs: Vec<String> = s
            .needs
            .iter()
            .map(|n| format!("`{}`", plan.steps[*n].id))
            .collect();
        let _ = writeln!(o, "- After: {}", needs.join(", "));
    }
    if let Some(w) = &s.when {
        let _ = writeln!(o, "- Only when: `{w}`");
    }
    match &s.kind {
        StepKind::Action { call, undo } => {
            let _ = writeln!(o, "- Action: {}", action(call));
            if s.retry.attempts > 1 {
                let backoff = match s.retry.backoff {
                    Backoff::Fixed => "fixed",
                    Backoff::Exponential => "exponential",
                };
                let _ = writeln!(
                    o,
                    "- Retries: up to {} attempts, {backoff} backoff from {} to {}",
                    s.retry.attempts,
                    humantime::format_duration(s.retry.initial),
                    humantime::format_duration(s.retry.max)
                );
            }
            if let Some(t) = s.timeout {
                let _ = writeln!(o, "- Timeout: {}", humantime::format_duration(t));
            }
            match undo {
                Some(u) => {
                    let _ = writeln!(o, "- Undo: {}", action(u));
                }
                None => o.push_str("- Undo: none\n"),
            }
        }
        StepKind::Approval(a) => {
            let _ = writeln!(o, "- **Approval**: {}", a.prompt.trim());
            if let Some(t) = a.timeout {
                let then = match a.on_timeout {
                    ApprovalTimeout::Approve => "approved",
                    ApprovalTimeout::Reject => "rejected",
                };
                let _ = writeln!(
                    o,
                    "- Unanswered after {}: {then}",
                    humantime::format_duration(t)
                );
            }
            let who = if a.allow_self_approval {
                "anyone with the approver role, the submitter included"
            } else {
                "an approver other than the submitter"
            };
            let _ = writeln!(o, "- Answered by: {who} (`medic approve RUN {}`)", s.id);
        }
    }
    if let Some(p) = s.on_failure {
        let _ = writeln!(o, "- On failure: {}", policy(p));
    }
    o.push('\n');
}

fn action(c: &Call) -> String {
    let with = match &c.with {
        Value::Object(m) if m.is_empty() => String::new(),
        Value::Null => String::new(),
        w => format!(" with `{}`", compact(w)),
    };
    format!("`{}/{}`{with}", c.plugin, c.action)
}

fn policy(p: FailurePolicy) -> &'static str {
    match p {
        FailurePolicy::Abort => "abort (start nothing new, fail the run)",
        FailurePolicy::Continue => "continue (dependents still run)",
        FailurePolicy::Rollback => "rollback (undo completed steps in reverse order)",
    }
}

fn compact(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn ticks(list: &[String]) -> String {
    let items: Vec<String> = list.iter().map(|c| format!("`{c}`")).collect();
    items.join(", ")
}

/// A table cell: one line, no `|`.
fn cell(s: &str) -> String {
    s.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace('|', "\\|")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every plan shipped under plans/ renders; each runbook is a snapshot.
    #[test]
    fn runbooks_of_the_shipped_plans() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../plans");
        let mut files = Vec::new();
        for dir in [
            "examples",
            "mysql",
            "etcd",
            "consul",
            "kafka",
            "ceph",
            "maintenance",
        ] {
            for e in std::fs::read_dir(root.join(dir)).unwrap() {
                let p = e.unwrap().path();
                if p.extension().is_some_and(|x| x == "yaml") {
                    files.push((dir, p));
                }
            }
        }
        files.sort();
        assert!(files.len() >= 10, "{files:?}");
        for (dir, path) in files {
            let plan = crate::plan::load_file(&path, None)
                .unwrap_or_else(|d| panic!("{}: {d}", path.display()));
            let name = format!(
                "doc_{dir}_{}",
                path.file_stem()
                    .unwrap()
                    .to_string_lossy()
                    .replace('.', "_")
            );
            let text = render(&plan);
            assert!(text.contains("```mermaid\nflowchart TD\n"), "{name}");
            insta::assert_snapshot!(name, text);
        }
    }
}
