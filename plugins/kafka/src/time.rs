//! Points in time as plans write them: milliseconds since the Unix epoch (Kafka's own
//! record timestamps) or an RFC 3339 UTC time (`2026-11-23T21:40:00Z`), which is what
//! an operator reads off an incident timeline.

use medic_sdk::Failure;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Milliseconds since the Unix epoch, or an RFC 3339 time in UTC
/// (`YYYY-MM-DDTHH:MM:SS[.fff]Z` or with `+00:00`).
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum Timestamp {
    Millis(i64),
    Text(String),
}

impl Timestamp {
    pub fn millis(&self) -> Result<i64, Failure> {
        match self {
            Timestamp::Millis(ms) if *ms >= 0 => Ok(*ms),
            Timestamp::Millis(ms) => Err(Failure::permanent(format!(
                "timestamp {ms} is negative; give milliseconds since 1970-01-01T00:00:00Z"
            ))),
            Timestamp::Text(text) => parse_rfc3339(text).ok_or_else(|| {
                Failure::permanent(format!(
                    "timestamp `{text}` is neither milliseconds since the epoch nor an RFC \
                     3339 UTC time like `2026-11-23T21:40:00Z`"
                ))
            }),
        }
    }
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction](Z|+00:00)` to epoch milliseconds.
fn parse_rfc3339(text: &str) -> Option<i64> {
    if let Ok(ms) = text.trim().parse::<i64>() {
        return (ms >= 0).then_some(ms);
    }
    let text = text.trim();
    let rest = text
        .strip_suffix('Z')
        .or_else(|| text.strip_suffix('z'))
        .or_else(|| text.strip_suffix("+00:00"))?;
    let (date, clock) = rest.split_once(['T', 't', ' '])?;
    let mut d = date.split('-');
    let (y, m, day): (i64, i64, i64) = (
        d.next()?.parse().ok()?,
        d.next()?.parse().ok()?,
        d.next()?.parse().ok()?,
    );
    if d.next().is_some() || !(1..=12).contains(&m) || !(1..=31).contains(&day) {
        return None;
    }
    let (hms, fraction) = match clock.split_once('.') {
        Some((hms, f)) => (hms, f),
        None => (clock, ""),
    };
    let mut c = hms.split(':');
    let (h, min, s): (i64, i64, i64) = (
        c.next()?.parse().ok()?,
        c.next()?.parse().ok()?,
        c.next()?.parse().ok()?,
    );
    if c.next().is_some() || h > 23 || min > 59 || s > 60 {
        return None;
    }
    if !fraction.chars().all(|ch| ch.is_ascii_digit()) {
        return None;
    }
    let millis: i64 = format!("{fraction:0<3}")[..3].parse().ok()?;
    let days = days_from_civil(y, m, day);
    Some(((days * 24 + h) * 60 + min) * 60_000 + s * 1000 + millis)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_utc_times_become_epoch_millis() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339("2000-03-01T00:00:00Z"), Some(951_868_800_000));
        assert_eq!(
            parse_rfc3339("2026-11-23T21:40:05.25+00:00"),
            Some(1_795_470_005_250)
        );
        assert_eq!(parse_rfc3339("1795470005250"), Some(1_795_470_005_250));
        for bad in [
            "2026-11-23T21:40:05+02:00",
            "2026-13-01T00:00:00Z",
            "yesterday",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
        let err = Timestamp::Text("yesterday".into()).millis().unwrap_err();
        assert!(err.message.contains("RFC 3339"), "{err}");
    }
}
