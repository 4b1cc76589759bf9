//! Every rule of the decision, on an injected `now`.

use chrono::{TimeZone, Utc};

use super::*;

/// Epoch ms of a UTC wall time.
fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> Ms {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, 0)
        .unwrap()
        .timestamp_millis()
}

const MIN: Ms = 60_000;
const HOUR: Ms = 60 * MIN;

fn spec(cron: &str) -> Spec {
    Spec {
        name: "nightly".into(),
        plan: "compact@2".into(),
        params: Default::default(),
        cron: cron.into(),
        timezone: "UTC".into(),
        enabled: true,
        jitter: None,
        window: None,
        outside_window: OutsideWindow::Wait,
        missed: Missed::Skip,
        overlap: Overlap::Skip,
    }
}

fn sched(f: impl FnOnce(&mut Spec)) -> Schedule {
    let mut s = spec("0 3 * * *");
    f(&mut s);
    s.validate().unwrap()
}

fn input(after: Ms, now: Ms) -> Input {
    Input {
        after,
        up_since: after,
        now,
        running: false,
    }
}

fn dues(d: &Decision) -> Vec<Ms> {
    d.fire.iter().map(|f| f.due).collect()
}

fn skips(d: &Decision) -> Vec<(Ms, SkipReason)> {
    d.skip.iter().map(|s| (s.due, s.reason)).collect()
}

// ---- validation ----

fn err(f: impl FnOnce(&mut Spec)) -> Error {
    let mut s = spec("0 3 * * *");
    f(&mut s);
    s.validate().unwrap_err()
}

#[test]
fn a_valid_spec_parses() {
    let s = sched(|s| {
        s.timezone = "Europe/Berlin".into();
        s.jitter = Some("5m".into());
        s.window = Some("22:00-04:30".into());
    });
    assert_eq!(
        s.plan,
        PlanRef {
            name: "compact".into(),
            version: Some(2)
        }
    );
    assert_eq!(s.jitter, 5 * MIN);
    assert_eq!(
        s.window,
        Some(Window {
            start: 22 * 60,
            end: 4 * 60 + 30
        })
    );
    assert_eq!(s.tz, chrono_tz::Europe::Berlin);
}

#[test]
fn bad_cron_names_the_field_and_what_was_expected() {
    let e = err(|s| s.cron = "0 0 3 * * * 2026".into());
    assert_eq!(e.field, "cron");
    assert!(e.expected.contains("5 fields"), "{e}");
    let e = err(|s| s.cron = "61 3 * * *".into());
    assert_eq!(e.field, "cron");
    assert!(
        e.to_string()
            .starts_with("schedule field `cron`: \"61 3 * * *\" is not valid"),
        "{e}"
    );
    let e = err(|s| s.cron = "0 3 * * 1-5".into());
    assert!(e.expected.contains("names"), "{e}");
    assert!(spec("0 3 * * MON-FRI").validate().is_ok());
    assert!(spec("*/15 * * * *").validate().is_ok());
    // Six fields: seconds first.
    let every_20s = spec("*/20 * * * * *").validate().unwrap();
    let t = utc(2026, 1, 1, 0, 0);
    let n: Vec<Ms> = next_due_times(&every_20s, t, 3)
        .into_iter()
        .map(|x| x.0)
        .collect();
    assert_eq!(n, vec![t + 20_000, t + 40_000, t + 60_000]);
}

#[test]
fn unknown_time_zone_is_refused() {
    let e = err(|s| s.timezone = "Mars/Olympus".into());
    assert_eq!(e.field, "timezone");
    assert!(e.expected.contains("IANA"), "{e}");
}

#[test]
fn window_syntax_is_checked() {
    for w in [
        "22:00",
        "22-04",
        "25:00-01:00",
        "22:00-22:00",
        "2:00-04:00",
        "22:00-04:60",
    ] {
        let e = err(|s| s.window = Some(w.into()));
        assert_eq!(e.field, "window", "{w}");
        assert!(e.expected.contains("HH:MM-HH:MM"), "{e}");
    }
}

#[test]
fn jitter_bounds_are_checked() {
    assert_eq!(err(|s| s.jitter = Some("2h".into())).field, "jitter");
    assert_eq!(err(|s| s.jitter = Some("soon".into())).field, "jitter");
    assert!(sched(|s| s.jitter = Some("1h".into())).jitter == HOUR);
}

#[test]
fn plan_and_name_are_checked() {
    assert_eq!(err(|s| s.plan = "compact@0".into()).field, "plan");
    assert_eq!(err(|s| s.plan = "compact@x".into()).field, "plan");
    assert_eq!(err(|s| s.plan = "@3".into()).field, "plan");
    assert_eq!(sched(|s| s.plan = "compact".into()).plan.version, None);
    assert_eq!(err(|s| s.name = "has space".into()).field, "name");
}

#[test]
fn spec_reads_from_yaml_style_json_with_defaults() {
    let s: Spec = serde_json::from_str(
        r#"{"name":"n","plan":"p@1","cron":"0 3 * * *","missed":"run-once","overlap":"queue"}"#,
    )
    .unwrap();
    assert_eq!(s.timezone, "UTC");
    assert!(s.enabled);
    assert_eq!(s.missed, Missed::RunOnce);
    assert_eq!(s.overlap, Overlap::Queue);
    assert_eq!(s.outside_window, OutsideWindow::Wait);
    assert!(
        serde_json::from_str::<Spec>(r#"{"name":"n","plan":"p","cron":"x","typo":1}"#).is_err()
    );
}

// ---- firing on time ----

#[test]
fn fires_once_at_its_due_time_and_never_twice() {
    let s = sched(|_| {});
    let t0 = utc(2026, 1, 1, 0, 0);
    let due = utc(2026, 1, 1, 3, 0);
    let d = decide(&s, input(t0, due - 1));
    assert!(d.fire.is_empty());
    assert_eq!(d.next_due, Some(due));
    assert_eq!(d.wake_at, Some(due));
    let d = decide(&s, input(t0, due));
    assert_eq!(
        d.fire,
        vec![Fire {
            due,
            at: due,
            missed: false
        }]
    );
    assert_eq!(d.after, due);
    assert_eq!(d.next_due, Some(utc(2026, 1, 2, 3, 0)));
    // Deciding again from the recorded cursor fires nothing more.
    let again = decide(
        &s,
        Input {
            after: d.after,
            up_since: t0,
            now: due + MIN,
            running: false,
        },
    );
    assert!(again.fire.is_empty() && again.skip.is_empty());
}

#[test]
fn disabled_schedule_does_nothing() {
    let s = sched(|s| s.enabled = false);
    let d = decide(&s, input(0, utc(2026, 1, 5, 0, 0)));
    assert_eq!(
        d,
        Decision {
            after: 0,
            ..Decision::default()
        }
    );
}

#[test]
fn next_due_times_lists_upcoming_fires() {
    let s = sched(|_| {});
    let n = next_due_times(&s, utc(2026, 1, 1, 0, 0), 3);
    assert_eq!(
        n.iter().map(|x| x.0).collect::<Vec<_>>(),
        vec![
            utc(2026, 1, 1, 3, 0),
            utc(2026, 1, 2, 3, 0),
            utc(2026, 1, 3, 3, 0)
        ]
    );
}

// ---- DST ----

#[test]
fn spring_forward_gap_fires_once_at_the_first_valid_instant_after() {
    // Berlin, 2026-03-29: 02:00 CET becomes 03:00 CEST (01:00 UTC); 02:30 never happens.
    let s = sched(|s| {
        s.cron = "30 2 * * *".into();
        s.timezone = "Europe/Berlin".into();
    });
    let after = utc(2026, 3, 28, 12, 0);
    let d = decide(&s, input(after, utc(2026, 3, 29, 12, 0)));
    assert_eq!(dues(&d), vec![utc(2026, 3, 29, 1, 0)]); // 03:00 CEST
    // The day before and after are at 02:30 local as usual.
    let n = next_due_times(&s, utc(2026, 3, 27, 12, 0), 3);
    assert_eq!(
        n.iter().map(|x| x.0).collect::<Vec<_>>(),
        vec![
            utc(2026, 3, 28, 1, 30),
            utc(2026, 3, 29, 1, 0),
            utc(2026, 3, 30, 0, 30)
        ]
    );
}

#[test]
fn due_times_inside_a_gap_collapse_into_one_fire() {
    // Every 15 minutes in New York, 2026-03-08: 02:00-02:59 do not exist.
    let s = sched(|s| {
        s.cron = "*/15 * * * *".into();
        s.timezone = "America/New_York".into();
        s.overlap = Overlap::Allow;
    });
    let after = utc(2026, 3, 8, 6, 50); // 01:50 EST
    let d = decide(&s, input(after, utc(2026, 3, 8, 7, 20)));
    // 01:00 EST... 01:45 EST = 06:45 UTC (before after); then 02:00..02:45 (gap) and
    // 03:00 EDT are all 07:00 UTC: one fire; then 03:15 EDT = 07:15 UTC.
    assert_eq!(
        dues(&d),
        vec![utc(2026, 3, 8, 7, 0), utc(2026, 3, 8, 7, 15)]
    );
}

#[test]
fn fall_back_ambiguous_time_fires_once_the_earlier() {
    // Berlin, 2026-10-25: 03:00 CEST becomes 02:00 CET; 02:30 happens twice
    // (00:30 UTC and 01:30 UTC).
    let s = sched(|s| {
        s.cron = "30 2 * * *".into();
        s.timezone = "Europe/Berlin".into();
    });
    let after = utc(2026, 10, 24, 12, 0);
    let d = decide(&s, input(after, utc(2026, 10, 25, 12, 0)));
    assert_eq!(dues(&d), vec![utc(2026, 10, 25, 0, 30)]);
    // Deciding inside the repeated hour, after the first 02:30 fired, fires nothing.
    let d2 = decide(
        &s,
        Input {
            after: d.after,
            up_since: after,
            now: utc(2026, 10, 25, 1, 45),
            running: false,
        },
    );
    assert!(d2.fire.is_empty() && d2.skip.is_empty());
    assert_eq!(d2.next_due, Some(utc(2026, 10, 26, 1, 30)));
}

#[test]
fn hourly_schedule_across_fall_back_fires_each_wall_hour_once() {
    let s = sched(|s| {
        s.cron = "0 * * * *".into();
        s.timezone = "Europe/Berlin".into();
        s.overlap = Overlap::Allow;
    });
    let d = decide(
        &s,
        input(utc(2026, 10, 24, 22, 30), utc(2026, 10, 25, 3, 0)),
    );
    // Wall 01:00 CEST, 02:00 (CEST, the earlier), 03:00 CET, 04:00 CET.
    assert_eq!(
        dues(&d),
        vec![
            utc(2026, 10, 24, 23, 0),
            utc(2026, 10, 25, 0, 0),
            utc(2026, 10, 25, 2, 0),
            utc(2026, 10, 25, 3, 0)
        ]
    );
}

// ---- missed runs after downtime ----

fn after_downtime(missed: Missed) -> (Schedule, Input) {
    let s = sched(|s| {
        s.cron = "0 * * * *".into();
        s.missed = missed;
    });
    // Last handled 00:00; down from 00:30 until 03:30; deciding at start-up.
    let i = Input {
        after: utc(2026, 1, 1, 0, 0),
        up_since: utc(2026, 1, 1, 3, 30),
        now: utc(2026, 1, 1, 3, 30),
        running: false,
    };
    (s, i)
}

#[test]
fn missed_skip_fires_none_of_the_missed_due_times() {
    let (s, i) = after_downtime(Missed::Skip);
    let d = decide(&s, i);
    assert!(d.fire.is_empty());
    assert_eq!(
        skips(&d),
        vec![
            (utc(2026, 1, 1, 1, 0), SkipReason::Missed),
            (utc(2026, 1, 1, 2, 0), SkipReason::Missed),
            (utc(2026, 1, 1, 3, 0), SkipReason::Missed)
        ]
    );
    assert_eq!(d.after, utc(2026, 1, 1, 3, 0));
    assert_eq!(d.next_due, Some(utc(2026, 1, 1, 4, 0)));
}

#[test]
fn missed_run_once_fires_the_latest_once() {
    let (s, i) = after_downtime(Missed::RunOnce);
    let d = decide(&s, i);
    assert_eq!(
        d.fire,
        vec![Fire {
            due: utc(2026, 1, 1, 3, 0),
            at: utc(2026, 1, 1, 3, 0),
            missed: true
        }]
    );
    assert_eq!(
        skips(&d),
        vec![
            (utc(2026, 1, 1, 1, 0), SkipReason::Coalesced),
            (utc(2026, 1, 1, 2, 0), SkipReason::Coalesced)
        ]
    );
    // After the catch-up, the next decision (same process) is back on time.
    let later = decide(
        &s,
        Input {
            after: d.after,
            running: false,
            now: utc(2026, 1, 1, 4, 0),
            ..i
        },
    );
    assert_eq!(
        later.fire,
        vec![Fire {
            due: utc(2026, 1, 1, 4, 0),
            at: utc(2026, 1, 1, 4, 0),
            missed: false
        }]
    );
}

#[test]
fn a_late_tick_while_up_is_not_a_missed_run() {
    let (s, mut i) = after_downtime(Missed::Skip);
    i.up_since = i.after; // the scheduler was up all along, only slow to decide
    let d = decide(&s, i);
    assert!(d.skip.iter().all(|x| x.reason != SkipReason::Missed));
    assert_eq!(d.fire.len(), 1); // overlap: skip; the others overlap the first
}

// ---- overlap ----

fn two_due(overlap: Overlap, running: bool) -> Decision {
    let s = sched(|s| {
        s.cron = "*/10 * * * *".into();
        s.overlap = overlap;
    });
    let t = utc(2026, 1, 1, 0, 0);
    decide(
        &s,
        Input {
            after: t,
            up_since: t,
            now: t + 20 * MIN,
            running,
        },
    )
}

#[test]
fn overlap_skip() {
    let d = two_due(Overlap::Skip, true);
    assert!(d.fire.is_empty());
    assert_eq!(
        d.skip.iter().map(|s| s.reason).collect::<Vec<_>>(),
        vec![SkipReason::Overlap; 2]
    );
    assert_eq!(d.after, utc(2026, 1, 1, 0, 20));
    let d = two_due(Overlap::Skip, false);
    assert_eq!(dues(&d), vec![utc(2026, 1, 1, 0, 10)]);
    assert_eq!(
        skips(&d),
        vec![(utc(2026, 1, 1, 0, 20), SkipReason::Overlap)]
    );
}

#[test]
fn overlap_queue_waits_for_the_previous_run() {
    let d = two_due(Overlap::Queue, true);
    assert!(d.fire.is_empty() && d.skip.is_empty());
    assert_eq!(d.after, utc(2026, 1, 1, 0, 0), "nothing handled: both wait");
    assert_eq!(d.next_due, Some(utc(2026, 1, 1, 0, 10)));
    assert_eq!(d.wake_at, None, "only the run's end wakes it");
    let d = two_due(Overlap::Queue, false);
    assert_eq!(dues(&d), vec![utc(2026, 1, 1, 0, 10)]);
    assert!(d.skip.is_empty());
    assert_eq!(d.after, utc(2026, 1, 1, 0, 10));
    assert_eq!(d.next_due, Some(utc(2026, 1, 1, 0, 20)));
}

#[test]
fn overlap_allow_fires_regardless() {
    let d = two_due(Overlap::Allow, true);
    assert_eq!(
        dues(&d),
        vec![utc(2026, 1, 1, 0, 10), utc(2026, 1, 1, 0, 20)]
    );
    assert!(d.skip.is_empty());
}

// ---- windows ----

#[test]
fn outside_window_waits_for_the_next_opening() {
    let s = sched(|s| {
        s.cron = "0 12 * * *".into();
        s.timezone = "Europe/Berlin".into();
        s.window = Some("22:00-04:00".into());
    });
    let after = utc(2026, 1, 1, 0, 0);
    let due = utc(2026, 1, 1, 11, 0); // 12:00 CET
    let opening = utc(2026, 1, 1, 21, 0); // 22:00 CET
    let d = decide(&s, input(after, utc(2026, 1, 1, 20, 59)));
    assert!(d.fire.is_empty());
    assert_eq!((d.next_due, d.wake_at), (Some(due), Some(opening)));
    let d = decide(&s, input(after, opening));
    assert_eq!(
        d.fire,
        vec![Fire {
            due,
            at: opening,
            missed: false
        }]
    );
}

#[test]
fn outside_window_skip() {
    let s = sched(|s| {
        s.cron = "0 12 * * *".into();
        s.window = Some("22:00-04:00".into());
        s.outside_window = OutsideWindow::Skip;
    });
    let d = decide(&s, input(utc(2026, 1, 1, 0, 0), utc(2026, 1, 1, 13, 0)));
    assert_eq!(
        skips(&d),
        vec![(utc(2026, 1, 1, 12, 0), SkipReason::OutsideWindow)]
    );
    assert_eq!(next_due_times(&s, d.after, 1)[0].1, None);
}

#[test]
fn inside_a_window_that_crosses_midnight_fires_on_time() {
    let s = sched(|s| {
        s.cron = "30 1 * * *".into();
        s.window = Some("22:00-04:00".into());
        s.outside_window = OutsideWindow::Skip;
    });
    let d = decide(&s, input(utc(2026, 1, 1, 0, 0), utc(2026, 1, 1, 2, 0)));
    assert_eq!(dues(&d), vec![utc(2026, 1, 1, 1, 30)]);
}

#[test]
fn due_times_waiting_for_one_opening_fire_once() {
    let s = sched(|s| {
        s.cron = "0 * * * *".into();
        s.window = Some("22:00-23:00".into());
        s.overlap = Overlap::Allow;
    });
    let d = decide(&s, input(utc(2026, 1, 1, 17, 30), utc(2026, 1, 1, 22, 0)));
    // 18:00..21:00 wait for 22:00; 22:00 is inside: the latest waiting one and 22:00 fire.
    assert_eq!(
        dues(&d),
        vec![utc(2026, 1, 1, 21, 0), utc(2026, 1, 1, 22, 0)]
    );
    assert_eq!(
        d.skip
            .iter()
            .filter(|s| s.reason == SkipReason::Coalesced)
            .count(),
        3
    );
}

// ---- jitter ----

#[test]
fn jitter_is_deterministic_and_within_bounds() {
    let s = sched(|s| {
        s.cron = "* * * * *".into();
        s.jitter = Some("30s".into());
    });
    let t = utc(2026, 1, 1, 0, 0);
    let js: Vec<Ms> = (0..2000).map(|i| jitter_of(&s, t + i * MIN)).collect();
    assert!(js.iter().all(|j| (0..=30_000).contains(j)));
    assert!(
        js.iter().any(|j| *j < 3_000) && js.iter().any(|j| *j > 27_000),
        "spread over the range"
    );
    assert_eq!(
        js[7],
        jitter_of(&s, t + 7 * MIN),
        "same due time, same jitter"
    );
    let other = sched(|o| {
        o.name = "other".into();
        o.cron = "* * * * *".into();
        o.jitter = Some("30s".into());
    });
    assert_ne!(
        js[..20],
        (0..20)
            .map(|i| jitter_of(&other, t + i * MIN))
            .collect::<Vec<_>>()[..]
    );
    // The fire happens at due + jitter, not before.
    let due = t + MIN;
    let at = due + jitter_of(&s, due);
    let before = decide(&s, input(t, at - 1));
    assert!(before.fire.is_empty());
    assert_eq!(before.wake_at, Some(at));
    assert_eq!(
        decide(&s, input(t, at)).fire,
        vec![Fire {
            due,
            at,
            missed: false
        }]
    );
}

#[test]
fn no_jitter_means_zero() {
    let s = sched(|_| {});
    assert_eq!(jitter_of(&s, 12345), 0);
}

#[test]
fn a_long_downtime_is_decided_in_bounded_steps() {
    let s = sched(|s| s.cron = "* * * * *".into());
    let t = utc(2026, 1, 1, 0, 0);
    let now = t + 100 * 24 * HOUR; // 144,000 minutes
    let d = decide(
        &s,
        Input {
            after: t,
            up_since: now,
            now,
            running: false,
        },
    );
    assert_eq!(d.skip.len(), 100_000);
    assert_eq!(d.wake_at, Some(now), "asks to be called again at once");
    let d2 = decide(
        &s,
        Input {
            after: d.after,
            up_since: now,
            now,
            running: false,
        },
    );
    // The due time at `now` itself is on time, not missed.
    assert_eq!(d2.skip.len(), 43_999);
    assert_eq!(dues(&d2), vec![now]);
    assert_eq!(d2.after, now);
}

#[test]
fn the_maintenance_example_schedule_validates() {
    let text = include_str!("../../../plans/maintenance/endpoint-health-sweep.schedule.json");
    let spec: Spec = serde_json::from_str(text).unwrap();
    let s = spec.validate().unwrap();
    assert_eq!(s.plan.name, "endpoint-health-sweep");
    assert_eq!(s.missed, Missed::RunOnce);
}
