//! Local wall-clock time in a schedule's zone to instants, with the DST rules: a wall
//! time that does not exist (spring forward) is the first valid instant after it; one
//! that exists twice (fall back) is the earlier.

use chrono::{DateTime, LocalResult, NaiveDateTime, TimeDelta, TimeZone, Timelike, Utc};
use chrono_tz::Tz;

use crate::run::Ms;

pub(crate) fn to_utc(ms: Ms) -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp_millis(ms).unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// The wall-clock time at an instant.
pub(crate) fn wall(tz: Tz, at: Ms) -> NaiveDateTime {
    tz.from_utc_datetime(&to_utc(at).naive_utc()).naive_local()
}

/// Minutes since local midnight at an instant.
pub(crate) fn minute_of_day(tz: Tz, at: Ms) -> u32 {
    let w = wall(tz, at);
    w.hour() * 60 + w.minute()
}

/// The instant of a wall-clock time.
pub(crate) fn instant(tz: Tz, w: NaiveDateTime) -> Ms {
    match tz.from_local_datetime(&w) {
        LocalResult::Single(t) => t.timestamp_millis(),
        LocalResult::Ambiguous(earlier, _) => earlier.timestamp_millis(),
        LocalResult::None => {
            // In a gap: walk forward to the first wall time that exists. Gaps are whole
            // minutes in every zone since 1970 and last at most a few hours.
            let mut m = w.with_second(0).unwrap_or(w);
            for _ in 0..(48 * 60) {
                m += TimeDelta::minutes(1);
                if let Some(t) = tz.from_local_datetime(&m).earliest() {
                    return t.timestamp_millis();
                }
            }
            // No zone has a two-day gap; read the wall time as UTC rather than panic.
            Utc.from_utc_datetime(&w).timestamp_millis()
        }
    }
}

/// Due times strictly after `after`, in order, deduplicated (several wall times in one
/// gap become one instant). The cron expression is matched against wall-clock time:
/// it is iterated in a zone without DST and each wall time is then placed in `tz`.
pub(crate) fn due_after(cron: &cron::Schedule, tz: Tz, after: Ms) -> impl Iterator<Item = Ms> + '_ {
    // Every wall time up to wall(after) maps to an instant <= after (the mapping is
    // monotonic), so starting there misses nothing.
    let start = Utc.from_utc_datetime(&wall(tz, after));
    let mut last = after;
    cron.after_owned(start).filter_map(move |w| {
        let t = instant(tz, w.naive_utc());
        (t > last).then(|| {
            last = t;
            t
        })
    })
}

/// The next instant at or after `at` whose local minute of day is `minute` (a window
/// opening), with the same DST rules as due times.
pub(crate) fn next_local_minute(tz: Tz, at: Ms, minute: u32) -> Ms {
    let w = wall(tz, at);
    let day = w.date();
    for d in 0..3 {
        let date = day + TimeDelta::days(d);
        let Some(naive) = date.and_hms_opt(minute / 60, minute % 60, 0) else {
            continue;
        };
        let t = instant(tz, naive);
        if t >= at {
            return t;
        }
    }
    at
}
