//! `metrics` owns medic's Prometheus metrics and their names, help texts and
//! buckets. The executor records plugin calls, step ends and its ready queue; the
//! API records requests and renders everything, with the run counts it reads from
//! the store at scrape time, in the text exposition format 0.0.4.
//!
//! The recorder belongs to a [`Metrics`] value handed around explicitly, never
//! installed as the `metrics` crate's global recorder, so two executors in one
//! process (tests, benchmarks) do not mix their numbers.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

// `::metrics` is the crate; this module has the same name.
use ::metrics::{Key, Label, Level, Metadata, Recorder, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusRecorder};

use crate::run::RunStatus;

pub const RUNS: &str = "medic_runs";
pub const STEP_DURATION: &str = "medic_step_duration_seconds";
pub const PLUGIN_CALL_DURATION: &str = "medic_plugin_call_duration_seconds";
pub const QUEUE_DEPTH: &str = "medic_queue_depth";
pub const HTTP_REQUESTS: &str = "medic_http_requests_total";
pub const SCHEDULE_DUE_TIMES: &str = "medic_schedule_due_times_total";
pub const SCHEDULE_FIRE_LAG: &str = "medic_schedule_fire_lag_seconds";
pub const RUN_OBJECTIVES: &str = "medic_run_objectives_total";
pub const ALERTS: &str = "medic_alerts_total";
pub const NOTIFICATION_DELIVERIES: &str = "medic_notification_deliveries_total";
pub const ESCALATIONS: &str = "medic_escalations_total";

/// The `Content-Type` of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// One plugin call: from milliseconds (a no-op) to the 5-minute default timeout.
const CALL_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];
/// A whole step: retries, backoff and, for approvals, the operator: up to hours.
const STEP_BUCKETS: &[f64] = &[
    0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 14400.0,
];
/// From a fire instant to its run's commit: milliseconds normally, seconds when a
/// pass is busy, minutes after downtime (`run-once`).
const LAG_BUCKETS: &[f64] = &[
    0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0,
];
/// Histogram samples are buffered until rendered; drain them at least this often
/// when nobody scrapes, so memory stays bounded.
const UPKEEP_EVERY: u64 = 4096;

static META: Metadata<'static> = Metadata::new(module_path!(), Level::INFO, Some(module_path!()));

/// Which export of a plugin was called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallKind {
    Invoke,
    /// After a crash: did an in-flight attempt's effect land?
    Observe,
}

/// What kind of step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepKind {
    Action,
    Approval,
}

/// medic's metrics; cheap to share behind the executor.
pub struct Metrics {
    recorder: PrometheusRecorder,
    /// Steps ready but not started, summed over every run this process drives.
    queue: AtomicI64,
    samples: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full(PLUGIN_CALL_DURATION.into()), CALL_BUCKETS)
            .and_then(|b| {
                b.set_buckets_for_metric(Matcher::Full(STEP_DURATION.into()), STEP_BUCKETS)
            })
            .and_then(|b| {
                b.set_buckets_for_metric(Matcher::Full(SCHEDULE_FIRE_LAG.into()), LAG_BUCKETS)
            })
            .expect("bucket lists are not empty")
            .build_recorder();
        recorder.describe_gauge(
            RUNS.into(),
            None,
            "Runs in the database by status (all medic processes sharing it).".into(),
        );
        recorder.describe_histogram(
            STEP_DURATION.into(),
            Some(Unit::Seconds),
            "Time from a step's start to its end (succeeded or failed), retries, backoff and \
             approval waits included, for steps this process saw end. kind: action or approval."
                .into(),
        );
        recorder.describe_histogram(
            PLUGIN_CALL_DURATION.into(),
            Some(Unit::Seconds),
            "Duration of one plugin call made by this process. call: invoke (an attempt) or \
             observe (checking an attempt found in flight after a crash); outcome: ok or error."
                .into(),
        );
        recorder.describe_gauge(
            QUEUE_DEPTH.into(),
            None,
            "Steps of the runs this process drives whose dependencies are met but that have not \
             started: waiting for a free slot under their plan's `concurrency`, or behind a held \
             step. Retries waiting out their backoff are not counted until the backoff ends."
                .into(),
        );
        recorder.describe_counter(
            HTTP_REQUESTS.into(),
            None,
            "HTTP requests answered, by route template (`/ui/` for the web UI, `unmatched` for unknown paths) and status."
                .into(),
        );
        recorder.describe_counter(
            SCHEDULE_DUE_TIMES.into(),
            None,
            "Schedule due times this process handled, by outcome: fired, or why it was skipped \
             (missed, coalesced, outside-window, overlap, plan-error, refused)."
                .into(),
        );
        recorder.describe_counter(
            ALERTS.into(),
            None,
            "Alerts received at /v1/hooks/*, by outcome: started, duplicate, unmatched, \
             cancelled, annotated, ignored, error."
                .into(),
        );
        recorder.describe_counter(
            NOTIFICATION_DELIVERIES.into(),
            None,
            "Notification delivery attempts this process made, by outcome: delivered, retry \
             (failed, tried again later) or given-up."
                .into(),
        );
        recorder.describe_counter(
            ESCALATIONS.into(),
            None,
            "Runs this process marked escalated to a severity tier, by severity.".into(),
        );
        recorder.describe_histogram(
            SCHEDULE_FIRE_LAG.into(),
            Some(Unit::Seconds),
            "Time from a due time's fire instant (due time plus jitter, or its window's opening) \
             to the commit of the run it created."
                .into(),
        );
        recorder.describe_counter(
            RUN_OBJECTIVES.into(),
            None,
            "Runs of plans with an `objective` that ended in this process, by plan and outcome: \
             met, or missed (too slow, or the run or its `to` step did not succeed). Alert on \
             missed runs of a recovery drill."
                .into(),
        );
        Metrics {
            recorder,
            queue: AtomicI64::new(0),
            samples: AtomicU64::new(0),
        }
    }

    /// One plugin call of `plugin`'s `action` returned (`ok`) or failed after `took`.
    pub fn plugin_call(
        &self,
        plugin: &str,
        action: &str,
        call: CallKind,
        ok: bool,
        took: Duration,
    ) {
        let call = match call {
            CallKind::Invoke => "invoke",
            CallKind::Observe => "observe",
        };
        let key = Key::from_parts(
            PLUGIN_CALL_DURATION,
            vec![
                Label::new("plugin", plugin.to_owned()),
                Label::new("action", action.to_owned()),
                Label::new("call", call),
                Label::new("outcome", if ok { "ok" } else { "error" }),
            ],
        );
        self.recorder
            .register_histogram(&key, &META)
            .record(took.as_secs_f64());
        self.sampled();
    }

    /// A step of `kind` ended with `status` (`succeeded` or `failed`) after `took`.
    pub fn step_ended(&self, kind: StepKind, status: &'static str, took: Duration) {
        let kind = match kind {
            StepKind::Action => "action",
            StepKind::Approval => "approval",
        };
        let key = Key::from_parts(
            STEP_DURATION,
            vec![Label::new("kind", kind), Label::new("status", status)],
        );
        self.recorder
            .register_histogram(&key, &META)
            .record(took.as_secs_f64());
        self.sampled();
    }

    /// The number of ready, not started steps changed by `delta`.
    pub fn queue_changed(&self, delta: i64) {
        self.queue.fetch_add(delta, Ordering::Relaxed);
    }

    /// Steps ready but not started, now.
    pub fn queue_depth(&self) -> i64 {
        self.queue.load(Ordering::Relaxed)
    }

    /// An HTTP request to `route` (a route template, never a raw path) was answered.
    pub fn http_request(&self, route: &str, status: u16) {
        let key = Key::from_parts(
            HTTP_REQUESTS,
            vec![
                Label::new("route", route.to_owned()),
                Label::new("status", status.to_string()),
            ],
        );
        self.recorder.register_counter(&key, &META).increment(1);
    }

    /// A schedule's due time was handled: `fired` or a skip reason.
    pub fn schedule_due_time(&self, outcome: &str) {
        let key = Key::from_parts(
            SCHEDULE_DUE_TIMES,
            vec![Label::new("outcome", outcome.to_owned())],
        );
        self.recorder.register_counter(&key, &META).increment(1);
    }

    /// A run of `plan` ended and met (or missed) its plan's recovery time objective.
    /// Only plans that declare an objective count, so the plan label stays bounded by
    /// the plans an operator wrote objectives for.
    pub fn run_objective(&self, plan: &str, met: bool) {
        let key = Key::from_parts(
            RUN_OBJECTIVES,
            vec![
                Label::new("plan", plan.to_owned()),
                Label::new("outcome", if met { "met" } else { "missed" }),
            ],
        );
        self.recorder.register_counter(&key, &META).increment(1);
    }

    /// One event of the operations loop (`ops`): `name` is [`ALERTS`],
    /// [`NOTIFICATION_DELIVERIES`] or [`ESCALATIONS`], `label` its one label.
    pub fn ops_event(&self, name: &'static str, label: &'static str, value: &str) {
        let key = Key::from_parts(name, vec![Label::new(label, value.to_owned())]);
        self.recorder.register_counter(&key, &META).increment(1);
    }

    /// A fire's run was committed `lag` after its fire instant.
    pub fn schedule_fired(&self, lag: Duration) {
        self.schedule_due_time("fired");
        self.recorder
            .register_histogram(&Key::from_name(SCHEDULE_FIRE_LAG), &META)
            .record(lag.as_secs_f64());
        self.sampled();
    }

    /// Everything, in the text exposition format 0.0.4, with `runs` (the count of
    /// runs in each status, read from the store) as `medic_runs`.
    pub fn render(&self, runs: &[(RunStatus, u64)]) -> String {
        for (status, n) in runs {
            let key = Key::from_parts(RUNS, vec![Label::new("status", status.as_str())]);
            self.recorder.register_gauge(&key, &META).set(*n as f64);
        }
        self.recorder
            .register_gauge(&Key::from_name(QUEUE_DEPTH), &META)
            .set(self.queue_depth() as f64);
        self.recorder.handle().render()
    }

    fn sampled(&self) {
        if self.samples.fetch_add(1, Ordering::Relaxed) % UPKEEP_EVERY == UPKEEP_EVERY - 1 {
            self.recorder.handle().run_upkeep();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_metric_in_the_text_format_with_buckets_and_counts() {
        let m = Metrics::new();
        m.plugin_call(
            "probe",
            "noop",
            CallKind::Invoke,
            true,
            Duration::from_millis(7),
        );
        m.plugin_call(
            "probe",
            "noop",
            CallKind::Invoke,
            true,
            Duration::from_millis(70),
        );
        m.step_ended(StepKind::Action, "succeeded", Duration::from_millis(300));
        m.queue_changed(2);
        m.queue_changed(-1);
        m.http_request("/v1/runs", 201);
        let text = m.render(&[(RunStatus::Running, 3), (RunStatus::Failed, 0)]);
        for line in [
            "# TYPE medic_runs gauge",
            "medic_runs{status=\"running\"} 3",
            "medic_runs{status=\"failed\"} 0",
            "# TYPE medic_plugin_call_duration_seconds histogram",
            "medic_plugin_call_duration_seconds_bucket{plugin=\"probe\",action=\"noop\",call=\"invoke\",outcome=\"ok\",le=\"0.01\"} 1",
            "medic_plugin_call_duration_seconds_bucket{plugin=\"probe\",action=\"noop\",call=\"invoke\",outcome=\"ok\",le=\"0.1\"} 2",
            "medic_plugin_call_duration_seconds_count{plugin=\"probe\",action=\"noop\",call=\"invoke\",outcome=\"ok\"} 2",
            "medic_step_duration_seconds_count{kind=\"action\",status=\"succeeded\"} 1",
            "# TYPE medic_queue_depth gauge",
            "medic_queue_depth 1",
            "medic_http_requests_total{route=\"/v1/runs\",status=\"201\"} 1",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "no line `{line}` in:\n{text}"
            );
        }
    }
}
