//! Preventive maintenance schedules, **pure**: the schedule model, its validation,
//! and the decision of which due times fire now. No I/O, no tokio, no clock: `now`
//! is always an argument (epoch milliseconds, like `run::Ms`).
//!
//! A *due time* is an instant the cron expression names in the schedule's time zone;
//! it is the identity of a fire (the store keeps one fire per schedule and due time).
//! Its *fire instant* is the due time plus a deterministic jitter, moved to the next
//! maintenance window when it falls outside one and the schedule says to wait.

mod decide;
mod local;
#[cfg(test)]
mod tests;

use std::fmt;
use std::str::FromStr;

use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

pub use decide::{Decision, Fire, Input, Skip, SkipReason, decide, jitter_of, next_due_times};

use crate::run::Ms;

/// A schedule as written (REST body, CLI flags, a plan's metadata), before validation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    pub name: String,
    /// `name@version` in the plan registry; `name` alone means its latest version.
    pub plan: String,
    #[serde(default)]
    pub params: serde_json::Map<String, serde_json::Value>,
    /// Five fields: minute hour day-of-month month day-of-week; or six, seconds first.
    pub cron: String,
    #[serde(default = "utc")]
    pub timezone: String,
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Upper bound of the delay added to each fire, e.g. `30s`, `5m` (humantime).
    #[serde(default)]
    pub jitter: Option<String>,
    /// Daily window `HH:MM-HH:MM` in the schedule's time zone; an end before the
    /// start crosses midnight.
    #[serde(default)]
    pub window: Option<String>,
    #[serde(default)]
    pub outside_window: OutsideWindow,
    #[serde(default)]
    pub missed: Missed,
    #[serde(default)]
    pub overlap: Overlap,
}

fn utc() -> String {
    "UTC".into()
}
fn yes() -> bool {
    true
}

/// What a due time whose fire instant falls outside the window does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OutsideWindow {
    /// Fire at the next opening of the window.
    #[default]
    Wait,
    Skip,
}

/// Due times whose fire instant passed while no scheduler was running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Missed {
    /// None of them fires.
    #[default]
    Skip,
    /// The latest of them fires once.
    RunOnce,
}

/// A due time that comes while the schedule's previous run is still going.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Overlap {
    #[default]
    Skip,
    /// Waits for the previous run to end, then fires (one at a time, in order).
    Queue,
    Allow,
}

/// A validated schedule: everything the decision needs, parsed once.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub name: String,
    pub plan: PlanRef,
    pub params: serde_json::Map<String, serde_json::Value>,
    pub cron: cron::Schedule,
    pub tz: Tz,
    pub enabled: bool,
    pub jitter: Ms,
    pub window: Option<Window>,
    pub outside_window: OutsideWindow,
    pub missed: Missed,
    pub overlap: Overlap,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanRef {
    pub name: String,
    pub version: Option<u32>,
}

impl fmt::Display for PlanRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.version {
            Some(v) => write!(f, "{}@{v}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// A daily window in local wall-clock minutes since midnight: `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start: u32,
    pub end: u32,
}

impl Window {
    /// Whether a local wall-clock minute of the day is inside the window.
    pub fn contains(&self, minute: u32) -> bool {
        if self.start < self.end {
            (self.start..self.end).contains(&minute)
        } else {
            minute >= self.start || minute < self.end
        }
    }
}

/// The longest jitter accepted: a fire must stay recognisably tied to its due time.
pub const MAX_JITTER: Ms = 3_600_000;

/// A field of a schedule that does not validate: which field, what was found, and
/// what was expected instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("schedule field `{field}`: {found:?} is not valid: expected {expected}")]
pub struct Error {
    pub field: &'static str,
    pub found: String,
    pub expected: String,
}

fn bad(field: &'static str, found: &str, expected: impl Into<String>) -> Error {
    Error {
        field,
        found: found.to_owned(),
        expected: expected.into(),
    }
}

impl Spec {
    /// Parses and checks every field; the first field that fails is named.
    pub fn validate(&self) -> Result<Schedule, Error> {
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 64
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !name_ok {
            return Err(bad(
                "name",
                &self.name,
                "1 to 64 characters among letters, digits, '-', '_' and '.'",
            ));
        }
        Ok(Schedule {
            name: self.name.clone(),
            plan: parse_plan_ref(&self.plan)?,
            params: self.params.clone(),
            cron: parse_cron(&self.cron)?,
            tz: Tz::from_str(&self.timezone).map_err(|_| {
                bad(
                    "timezone",
                    &self.timezone,
                    "an IANA time zone name such as UTC or Europe/Berlin",
                )
            })?,
            enabled: self.enabled,
            jitter: match &self.jitter {
                None => 0,
                Some(j) => parse_jitter(j)?,
            },
            window: self.window.as_deref().map(parse_window).transpose()?,
            outside_window: self.outside_window,
            missed: self.missed,
            overlap: self.overlap,
        })
    }
}

pub fn parse_plan_ref(s: &str) -> Result<PlanRef, Error> {
    let expected = "a registered plan as NAME@VERSION (VERSION a number from 1) or NAME";
    let (name, version) = match s.split_once('@') {
        None => (s, None),
        Some((n, v)) => match v.parse::<u32>() {
            Ok(v) if v >= 1 => (n, Some(v)),
            _ => return Err(bad("plan", s, expected)),
        },
    };
    if name.is_empty() || name.chars().any(char::is_whitespace) {
        return Err(bad("plan", s, expected));
    }
    Ok(PlanRef {
        name: name.to_owned(),
        version,
    })
}

/// Five standard fields, or six with seconds first (for sub-minute schedules, and
/// tests that cannot wait a minute). The `cron` crate wants seconds first and numbers
/// days of the week from Sunday = 1, where most crons use Sunday = 0, so a numeric day
/// of week is refused rather than silently read one day off: names (MON-FRI) are not
/// ambiguous.
fn parse_cron(s: &str) -> Result<cron::Schedule, Error> {
    let fields: Vec<&str> = s.split_whitespace().collect();
    let expression = match fields.len() {
        5 => format!("0 {}", fields.join(" ")),
        6 => fields.join(" "),
        n => {
            return Err(bad(
                "cron",
                s,
                format!(
                    "5 fields (minute hour day-of-month month day-of-week), or 6 with seconds first; found {n}"
                ),
            ));
        }
    };
    let dow = fields[fields.len() - 1];
    if dow.chars().any(|c| c.is_ascii_digit()) && !dow.starts_with("*/") {
        return Err(bad(
            "cron",
            s,
            "day-of-week as names (SUN, MON-FRI) or *: numbers differ between cron dialects",
        ));
    }
    cron::Schedule::from_str(&expression)
        .map_err(|e| bad("cron", s, format!("a cron expression ({e})")))
}

fn parse_jitter(s: &str) -> Result<Ms, Error> {
    let d = humantime::parse_duration(s)
        .map_err(|_| bad("jitter", s, "a duration such as 30s or 5m"))?;
    let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
    if ms > MAX_JITTER {
        return Err(bad("jitter", s, "a duration from 0s to 1h"));
    }
    Ok(ms)
}

fn parse_window(s: &str) -> Result<Window, Error> {
    let expected = "a daily window HH:MM-HH:MM (24-hour local time, start != end)";
    let minute = |t: &str| -> Option<u32> {
        let (h, m) = t.trim().split_once(':')?;
        if h.len() != 2 || m.len() != 2 {
            return None;
        }
        let (h, m) = (h.parse::<u32>().ok()?, m.parse::<u32>().ok()?);
        (h < 24 && m < 60).then_some(h * 60 + m)
    };
    let (a, b) = s
        .split_once('-')
        .ok_or_else(|| bad("window", s, expected))?;
    match (minute(a), minute(b)) {
        (Some(start), Some(end)) if start != end => Ok(Window { start, end }),
        _ => Err(bad("window", s, expected)),
    }
}
