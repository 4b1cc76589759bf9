//! GTID positions of both families, parsed so they can be compared: MariaDB's
//! `domain-server-seq` lists (one per replication domain) and MySQL's GTID sets
//! (`uuid[:tag]:1-5:7`, intervals of transaction numbers per source).

use std::collections::BTreeMap;
use std::fmt;

use crate::dialect::Kind;

/// A position as text without the line breaks MySQL puts after each comma of
/// `gtid_executed`, so it fits in a template, a log line or a dump's header.
pub fn compact(text: &str) -> String {
    text.split_whitespace().collect()
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Position {
    /// Domain -> (server id, sequence number) of the last transaction seen in it.
    MariaDb(BTreeMap<u32, (u32, u64)>),
    /// Source (uuid, or `uuid:tag`) -> sorted, disjoint, non-adjacent intervals.
    MySql(BTreeMap<String, Vec<(u64, u64)>>),
}

impl Position {
    pub fn parse(kind: Kind, text: &str) -> Result<Position, String> {
        match kind {
            Kind::MariaDb => parse_mariadb(text),
            Kind::MySql => parse_mysql(text),
        }
    }

    pub fn is_empty(&self) -> bool {
        match self {
            Position::MariaDb(m) => m.is_empty(),
            Position::MySql(m) => m.is_empty(),
        }
    }

    /// Whether a server at `self` has applied everything up to `other`.
    pub fn contains(&self, other: &Position) -> bool {
        self.missing(other).is_empty()
    }

    /// What `self` lacks of `other`, for people: per MariaDB domain how many sequence
    /// numbers behind, per MySQL source how many transactions; empty when none.
    pub fn missing(&self, other: &Position) -> String {
        let mut parts = Vec::new();
        match (self, other) {
            (Position::MariaDb(have), Position::MariaDb(want)) => {
                for (domain, (_, seq)) in want {
                    let at = have.get(domain).map_or(0, |(_, s)| *s);
                    if at < *seq {
                        parts.push(format!(
                            "domain {domain}: at {at}, needs {seq} ({} behind)",
                            seq - at
                        ));
                    }
                }
            }
            (Position::MySql(have), Position::MySql(want)) => {
                for (source, intervals) in want {
                    let empty = Vec::new();
                    let got = have.get(source).unwrap_or(&empty);
                    let lacking: u64 = intervals.iter().map(|&(a, b)| uncovered(got, a, b)).sum();
                    if lacking > 0 {
                        parts.push(format!("{source}: {lacking} transaction(s) missing"));
                    }
                }
            }
            _ => parts.push("positions of different server families cannot be compared".into()),
        }
        parts.join("; ")
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Position::MariaDb(m) => {
                let parts: Vec<String> =
                    m.iter().map(|(d, (s, n))| format!("{d}-{s}-{n}")).collect();
                f.write_str(&parts.join(","))
            }
            Position::MySql(m) => {
                let parts: Vec<String> = m
                    .iter()
                    .map(|(src, ivs)| {
                        let ivs: Vec<String> = ivs
                            .iter()
                            .map(|&(a, b)| {
                                if a == b {
                                    a.to_string()
                                } else {
                                    format!("{a}-{b}")
                                }
                            })
                            .collect();
                        format!("{src}:{}", ivs.join(":"))
                    })
                    .collect();
                f.write_str(&parts.join(","))
            }
        }
    }
}

fn parse_mariadb(text: &str) -> Result<Position, String> {
    let mut map = BTreeMap::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let nums: Vec<&str> = part.split('-').collect();
        let bad = || format!("`{part}` is not a MariaDB GTID (domain-server-sequence)");
        let [d, s, n] = nums.as_slice() else {
            return Err(bad());
        };
        let (d, s, n) = (
            d.parse::<u32>().map_err(|_| bad())?,
            s.parse::<u32>().map_err(|_| bad())?,
            n.parse::<u64>().map_err(|_| bad())?,
        );
        if map.insert(d, (s, n)).is_some() {
            return Err(format!("domain {d} appears twice in `{text}`"));
        }
    }
    Ok(Position::MariaDb(map))
}

fn parse_mysql(text: &str) -> Result<Position, String> {
    let mut map: BTreeMap<String, Vec<(u64, u64)>> = BTreeMap::new();
    // gtid_executed wraps lines after each comma.
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let mut fields = part.split(':');
        let uuid = fields
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        if uuid.len() != 36 || !uuid.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
            return Err(format!("`{part}` does not start with a server uuid"));
        }
        let mut source = uuid;
        for field in fields {
            let field = field.trim();
            if field.starts_with(|c: char| c.is_ascii_digit()) {
                let (a, b) = match field.split_once('-') {
                    Some((a, b)) => (a.parse::<u64>(), b.parse::<u64>()),
                    None => (field.parse::<u64>(), field.parse::<u64>()),
                };
                let (Ok(a), Ok(b)) = (a, b) else {
                    return Err(format!("`{field}` in `{part}` is not an interval"));
                };
                if a > b || a == 0 {
                    return Err(format!("`{field}` in `{part}` is not an interval"));
                }
                map.entry(source.clone()).or_default().push((a, b));
            } else {
                // A tag (MySQL 8.3+): the intervals after it belong to uuid:tag.
                let uuid = source.split(':').next().unwrap_or_default().to_string();
                source = format!("{uuid}:{}", field.to_ascii_lowercase());
            }
        }
    }
    for ivs in map.values_mut() {
        *ivs = normalize(std::mem::take(ivs));
    }
    Ok(Position::MySql(map))
}

fn normalize(mut ivs: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    ivs.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::with_capacity(ivs.len());
    for (a, b) in ivs {
        match out.last_mut() {
            Some(last) if a <= last.1.saturating_add(1) => last.1 = last.1.max(b),
            _ => out.push((a, b)),
        }
    }
    out
}

/// How many of `a..=b` the normalized intervals `have` do not cover.
fn uncovered(have: &[(u64, u64)], a: u64, b: u64) -> u64 {
    let covered: u64 = have
        .iter()
        .map(|&(x, y)| {
            let (lo, hi) = (x.max(a), y.min(b));
            if lo <= hi { hi - lo + 1 } else { 0 }
        })
        .sum();
    (b - a + 1) - covered
}

#[cfg(test)]
mod tests {
    use super::*;

    const U1: &str = "3E11FA47-71CA-11E1-9E33-C80AA9429562";
    const U2: &str = "4a11fa47-71ca-11e1-9e33-c80aa9429562";

    #[test]
    fn gtid_mariadb_positions_parse_and_compare_per_domain() {
        let at = Position::parse(Kind::MariaDb, "0-1-100,1-2-5").unwrap();
        let want = Position::parse(Kind::MariaDb, "0-1-90").unwrap();
        assert!(at.contains(&want));
        let ahead = Position::parse(Kind::MariaDb, "0-1-120, 1-2-5").unwrap();
        assert!(!at.contains(&ahead));
        assert_eq!(
            at.missing(&ahead),
            "domain 0: at 100, needs 120 (20 behind)"
        );
        let other_domain = Position::parse(Kind::MariaDb, "2-3-1").unwrap();
        assert!(!at.contains(&other_domain));
        assert_eq!(at.to_string(), "0-1-100,1-2-5");
        assert!(Position::parse(Kind::MariaDb, "").unwrap().is_empty());
        assert!(Position::parse(Kind::MariaDb, "0-1").is_err());
        assert!(Position::parse(Kind::MariaDb, "0-1-2,0-1-3").is_err());
    }

    #[test]
    fn gtid_mysql_sets_parse_merge_and_compare_by_interval() {
        let text = format!("{U1}:1-5:6-10:12,\n{U2}:1-3");
        let at = Position::parse(Kind::MySql, &text).unwrap();
        assert_eq!(
            at.to_string(),
            format!("{}:1-10:12,{U2}:1-3", U1.to_ascii_lowercase())
        );
        assert!(at.contains(&Position::parse(Kind::MySql, &format!("{U1}:3-7")).unwrap()));
        let gap = Position::parse(Kind::MySql, &format!("{U1}:1-12")).unwrap();
        assert!(!at.contains(&gap));
        assert!(
            at.missing(&gap).contains("1 transaction(s) missing"),
            "{}",
            at.missing(&gap)
        );
        assert!(Position::parse(Kind::MySql, "").unwrap().is_empty());
        assert!(Position::parse(Kind::MySql, "nope:1-2").is_err());
        assert!(Position::parse(Kind::MySql, &format!("{U1}:5-2")).is_err());
    }

    #[test]
    fn gtid_mysql_tags_are_separate_sources() {
        let at = Position::parse(Kind::MySql, &format!("{U1}:1-3:mytag:1-2")).unwrap();
        let tagged = Position::parse(Kind::MySql, &format!("{U1}:mytag:2")).unwrap();
        assert!(at.contains(&tagged));
        let untagged4 = Position::parse(Kind::MySql, &format!("{U1}:4")).unwrap();
        assert!(!at.contains(&untagged4));
    }

    #[test]
    fn gtid_compact_drops_mysql_line_breaks() {
        assert_eq!(
            compact(&format!("{U1}:1-5,\n{U2}:1-3")),
            format!("{U1}:1-5,{U2}:1-3")
        );
    }

    #[test]
    fn gtid_families_do_not_compare() {
        let m = Position::parse(Kind::MariaDb, "0-1-1").unwrap();
        let y = Position::parse(Kind::MySql, &format!("{U1}:1")).unwrap();
        assert!(!m.contains(&y));
    }
}
