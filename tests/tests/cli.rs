//! Black-box tests of the `medic` command line: the real binary, the real probe
//! plugin and a counter target on 127.0.0.1, checked from outside through the
//! target's log and `medic runs show --json`. One test binary, one module per area.

// A test crate root resolves `mod x;` beside itself; the areas live in `cli/`.
#[path = "cli/api.rs"]
mod api;
#[path = "cli/approval.rs"]
mod approval;
#[path = "cli/auth.rs"]
mod auth;
#[path = "cli/ceph.rs"]
mod ceph;
#[path = "cli/chaos.rs"]
mod chaos;
#[path = "cli/consul.rs"]
mod consul;
#[path = "cli/crash.rs"]
mod crash;
#[path = "cli/doors.rs"]
mod doors;
#[path = "cli/etcd.rs"]
mod etcd;
#[path = "cli/faults.rs"]
mod faults;
#[path = "cli/hostile.rs"]
mod hostile;
#[path = "cli/kafka.rs"]
mod kafka;
#[path = "cli/metrics_api.rs"]
mod metrics_api;
#[path = "cli/mysql.rs"]
mod mysql;
#[path = "cli/openapi.rs"]
mod openapi;
#[path = "cli/ops.rs"]
mod ops;
#[path = "cli/plugin_guide.rs"]
mod plugin_guide;
#[path = "cli/plugins.rs"]
mod plugins;
#[path = "cli/plugins_api.rs"]
mod plugins_api;
#[path = "cli/progress.rs"]
mod progress;
#[path = "cli/registry.rs"]
mod registry;
#[path = "cli/remote.rs"]
mod remote;
#[path = "cli/rollback.rs"]
mod rollback;
#[path = "cli/run.rs"]
mod run;
#[path = "cli/runs_api.rs"]
mod runs_api;
#[path = "cli/safety.rs"]
mod safety;
#[path = "cli/schedules.rs"]
mod schedules;
#[path = "cli/sql.rs"]
mod sql;
#[path = "cli/ui.rs"]
mod ui;
#[path = "cli/validate.rs"]
mod validate;

use std::ffi::OsString;
use std::path::Path;

use medic_tests::{CounterTarget, Medic, RunView};

/// Exit codes of `medic run` / `medic resume`, by outcome.
mod exit {
    pub const SUCCEEDED: i32 = 0;
    pub const FAILED: i32 = 1;
    pub const INVALID: i32 = 2;
    pub const ROLLED_BACK: i32 = 3;
    pub const CANCELLED: i32 = 4;
    pub const HELD: i32 = 5;
    pub const INTERRUPTED: i32 = 130;
}

/// `run PLAN --param k=v...`, with the counter target as the `target` param.
fn run_args(plan: &Path, target: &CounterTarget, params: &[(&str, &str)]) -> Vec<OsString> {
    let mut args: Vec<OsString> = vec!["run".into(), plan.into()];
    let target = format!("target={}", target.address());
    for param in std::iter::once(target).chain(params.iter().map(|(k, v)| format!("{k}={v}"))) {
        args.push("--param".into());
        args.push(param.into());
    }
    args
}

/// Everything a failure message about a run should show: its JSON, the target's log,
/// and whatever medic printed.
fn context(medic: &Medic, run: &str, target: &CounterTarget, output: &str) -> String {
    format!(
        "{}\n--- counter target applied ---\n{}{output}",
        medic.describe_run(run),
        target.describe()
    )
}

/// The effects (counter, amount) in the order the target applied them.
fn effects(target: &CounterTarget) -> Vec<(String, i64)> {
    target
        .applied()
        .into_iter()
        .map(|a| (a.counter, a.amount))
        .collect()
}

/// Every attempt medic recorded as succeeded for a counter step was applied exactly
/// once under its key: ties the database's story to the target's.
fn assert_succeeded_attempts_applied_once(view: &RunView, target: &CounterTarget, steps: &[&str]) {
    for attempt in view
        .attempts
        .iter()
        .filter(|a| steps.contains(&a.step.as_str()) && a.status == "succeeded")
    {
        assert_eq!(
            target.times_applied(&attempt.key),
            1,
            "attempt {attempt:?} is recorded as succeeded, so its key must be applied exactly once\n\
             --- counter target ---\n{}\n--- run ---\n{}",
            target.describe(),
            view.pretty()
        );
    }
}
