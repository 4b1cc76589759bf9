//! What `medic run` and `medic resume` print as a run goes, and `medic runs show`.

use serde_json::Value;
use tokio::sync::broadcast;

use crate::executor::Progress;
use crate::run::{Entry, Ms};

/// `HH:MM:SS` (UTC) of a timestamp.
pub(super) fn clock(at: Ms) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(at.max(0) as u64);
    let s = humantime::format_rfc3339_seconds(t).to_string();
    s.get(11..19).unwrap_or(&s).to_owned()
}

/// Prints the committed log entries of `run` until `stop` fires, then prints what is
/// still queued (everything committed before the run returned) and ends.
pub(super) fn spawn(
    mut rx: broadcast::Receiver<Progress>,
    run: String,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) -> tokio::task::JoinHandle<()> {
    let print = move |p: Progress| {
        if p.run_id == run {
            println!("{} {}", clock(p.at), line("medic", &p.run_id, &p.entry));
        }
    };
    tokio::spawn(async move {
        loop {
            tokio::select! {
                got = rx.recv() => match got {
                    Ok(p) => print(p),
                    Err(broadcast::error::RecvError::Lagged(n)) => println!("... {n} progress lines skipped"),
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = &mut stop => {
                    while let Ok(p) = rx.try_recv() {
                        print(p);
                    }
                    return;
                }
            }
        }
    })
}

/// One log entry as a progress line; `medic` is how to call medic for the run (with
/// `--server URL` when it runs on a server), for the commands an approval suggests.
pub(super) fn line(medic: &str, run: &str, e: &Entry) -> String {
    let undo = |u: bool| if u { "undo " } else { "" };
    match e {
        Entry::AttemptStarted {
            step,
            attempt,
            undo: u,
            ..
        } => format!("  > {step}: {}attempt {attempt} started", undo(*u)),
        Entry::AttemptSucceeded {
            step,
            attempt,
            undo: u,
            ..
        } => format!("  ok {step}: {}attempt {attempt} succeeded", undo(*u)),
        Entry::AttemptFailed {
            step,
            attempt,
            undo: u,
            error,
            retry_at,
            ..
        } => match retry_at {
            Some(at) => format!(
                "  x {step}: {}attempt {attempt} failed: {error} (retry at {})",
                undo(*u),
                clock(*at)
            ),
            None => format!("  x {step}: {}attempt {attempt} failed: {error}", undo(*u)),
        },
        Entry::StepSkipped { step, reason } => format!("  - {step}: skipped: {reason}"),
        Entry::StepNotRun { step } => format!("  - {step}: not run"),
        Entry::ApprovalRequested {
            step,
            prompt,
            deadline,
        } => format!(
            "  ? {step}: waiting for approval{}: {prompt}\n           approve: {medic} approve {run} {step}    reject: {medic} approve {run} {step} --reject",
            deadline
                .map(|d| format!(" until {}", clock(d)))
                .unwrap_or_default()
        ),
        Entry::ApprovalDecided {
            step, approved, by, ..
        } => {
            format!(
                "  {} {step}: {} by {by}",
                if *approved { "ok" } else { "x" },
                if *approved { "approved" } else { "rejected" }
            )
        }
        Entry::StepHeld { step, reason } => format!("  ! {step}: held: {reason}"),
        Entry::StepResolved {
            step,
            resolution,
            by,
        } => format!("  * {step}: {resolution} by {by}"),
        Entry::Observed {
            step,
            attempt,
            undo: u,
            result,
        } => {
            format!(
                "  ~ {step}: {}attempt {attempt} was in flight when medic stopped; observe: {result}",
                undo(*u)
            )
        }
        Entry::CancelRequested { by } => format!("  cancel requested by {by}"),
        Entry::StepProgress {
            step,
            attempt,
            undo: u,
            done,
            total,
            message,
        } => {
            let of = if *total > 0 {
                format!("{done}/{total}")
            } else {
                done.to_string()
            };
            format!("  . {step}: {}attempt {attempt}: {of} {message}", undo(*u))
        }
        Entry::Objective { met, summary, .. } => {
            format!("{} {summary}", if *met { "ok" } else { "x" })
        }
        Entry::RunStatus { status, reason } => match reason {
            Some(r) => format!("run {}: {r}", status.as_str()),
            None => format!("run {}", status.as_str()),
        },
    }
}

/// The table of `medic runs list`: runs as the store serializes them.
pub(super) fn print_list(runs: &[Value]) {
    println!(
        "{:<22} {:<13} {:<24} {:<20} REASON",
        "RUN", "STATUS", "PLAN", "CREATED"
    );
    for r in runs {
        println!(
            "{:<22} {:<13} {:<24} {:<20} {}",
            r["id"].as_str().unwrap_or("?"),
            r["status"].as_str().unwrap_or("?"),
            r["plan_name"].as_str().unwrap_or("?"),
            r["created_at"].as_i64().map(clock).unwrap_or_default(),
            r["reason"].as_str().unwrap_or_default()
        );
    }
}

/// Human view of `medic runs show`.
pub(super) fn print_show(view: &Value) {
    let run = &view["run"];
    println!(
        "run {}  plan {}  status {}",
        run["id"].as_str().unwrap_or("?"),
        run["plan_name"].as_str().unwrap_or("?"),
        run["status"].as_str().unwrap_or("?")
    );
    if let Some(by) = run["submitted_by"].as_str() {
        println!("submitted by: {by}");
    }
    if let Some(r) = run["reason"].as_str() {
        println!("reason: {r}");
    }
    println!(
        "{:<24} {:<13} {:>7} ERROR/OUTPUT",
        "STEP", "STATUS", "ATTEMPT"
    );
    for s in view["steps"].as_array().into_iter().flatten() {
        let detail = match (&s["error"], &s["output"]) {
            (Value::String(e), _) => e.clone(),
            (_, Value::Null) => String::new(),
            (_, o) => o.to_string(),
        };
        println!(
            "{:<24} {:<13} {:>7} {detail}",
            s["id"].as_str().unwrap_or("?"),
            s["status"].as_str().unwrap_or("?"),
            s["attempt"]
        );
    }
}
