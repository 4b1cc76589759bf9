//! A strict reader of the Prometheus text exposition format (0.0.4), so tests assert
//! on parsed series and values instead of grepping for names: every line must be a
//! `# HELP`, a `# TYPE`, a sample or blank, and every sample's family must be typed.

use std::collections::{BTreeMap, HashMap};

/// One sample line.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// A parsed scrape.
#[derive(Clone, Debug, Default)]
pub struct Scrape {
    /// Metric family name -> `counter`, `gauge`, `histogram`, ...
    pub types: HashMap<String, String>,
    pub help: HashMap<String, String>,
    pub samples: Vec<Sample>,
}

/// One histogram series: cumulative `(le, count)` buckets ending with `+Inf`.
#[derive(Clone, Debug, PartialEq)]
pub struct Histogram {
    pub buckets: Vec<(f64, f64)>,
    pub sum: f64,
    pub count: f64,
}

impl Scrape {
    pub fn parse(text: &str) -> Result<Scrape, String> {
        let mut scrape = Scrape::default();
        for (n, line) in text.lines().enumerate() {
            let fail = |why: &str| format!("line {}: {why}: {line:?}", n + 1);
            let line = line.trim_end();
            if line.is_empty() {
                continue;
            }
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').ok_or_else(|| fail("bad TYPE"))?;
                if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind) {
                    return Err(fail("unknown type"));
                }
                scrape.types.insert(name.to_owned(), kind.to_owned());
                continue;
            }
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, help) = rest.split_once(' ').ok_or_else(|| fail("bad HELP"))?;
                scrape.help.insert(name.to_owned(), help.to_owned());
                continue;
            }
            if line.starts_with('#') {
                continue;
            }
            let sample = parse_sample(line).map_err(|e| fail(&e))?;
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| {
                    sample
                        .name
                        .strip_suffix(s)
                        .filter(|f| scrape.types.get(*f).is_some_and(|t| t == "histogram"))
                })
                .unwrap_or(&sample.name)
                .to_owned();
            if !scrape.types.contains_key(&family) {
                return Err(fail("sample of a family without a # TYPE line"));
            }
            scrape.samples.push(sample);
        }
        Ok(scrape)
    }

    /// The value of the one sample named `name` whose labels are exactly `labels`.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let want: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let found: Vec<f64> = self
            .samples
            .iter()
            .filter(|s| s.name == name && s.labels == want)
            .map(|s| s.value)
            .collect();
        assert!(
            found.len() <= 1,
            "{name} {labels:?} appears {} times",
            found.len()
        );
        found.first().copied()
    }

    /// Every sample named `name`.
    pub fn series(&self, name: &str) -> Vec<&Sample> {
        self.samples.iter().filter(|s| s.name == name).collect()
    }

    /// The histogram series `name` with exactly `labels` (besides `le`), checked to be
    /// well formed: buckets ascending and cumulative, `+Inf` equal to `_count`.
    pub fn histogram(&self, name: &str, labels: &[(&str, &str)]) -> Option<Histogram> {
        let count = self.value(&format!("{name}_count"), labels)?;
        let sum = self.value(&format!("{name}_sum"), labels)?;
        let want: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut buckets: Vec<(f64, f64)> = self
            .series(&format!("{name}_bucket"))
            .into_iter()
            .filter_map(|s| {
                let mut rest = s.labels.clone();
                let le = rest.remove("le")?;
                let le = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().ok()?
                };
                (rest == want).then_some((le, s.value))
            })
            .collect();
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        assert!(
            buckets
                .last()
                .is_some_and(|b| b.0.is_infinite() && b.1 == count),
            "{name}{labels:?}: the +Inf bucket must equal _count ({count}): {buckets:?}"
        );
        assert!(
            buckets.windows(2).all(|w| w[0].1 <= w[1].1),
            "{name}{labels:?}: buckets must be cumulative: {buckets:?}"
        );
        Some(Histogram {
            buckets,
            sum,
            count,
        })
    }
}

fn parse_sample(line: &str) -> Result<Sample, String> {
    let name_end = line.find(['{', ' ']).ok_or("no value")?;
    let name = &line[..name_end];
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    {
        return Err(format!("bad metric name {name:?}"));
    }
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(body) = rest.strip_prefix('{') {
        let mut chars = body.char_indices().peekable();
        let mut end = None;
        loop {
            // label name
            let start = match chars.peek() {
                Some((_, '}')) => {
                    end = chars.next().map(|(i, _)| i);
                    break;
                }
                Some((i, _)) => *i,
                None => break,
            };
            let mut key_end = start;
            for (i, c) in chars.by_ref() {
                if c == '=' {
                    key_end = i;
                    break;
                }
            }
            let key = &body[start..key_end];
            if chars.next().map(|(_, c)| c) != Some('"') {
                return Err(format!("label {key:?}: value must be quoted"));
            }
            let mut value = String::new();
            loop {
                match chars.next() {
                    Some((_, '\\')) => match chars.next() {
                        Some((_, 'n')) => value.push('\n'),
                        Some((_, c)) => value.push(c),
                        None => return Err("unterminated escape".into()),
                    },
                    Some((_, '"')) => break,
                    Some((_, c)) => value.push(c),
                    None => return Err("unterminated label value".into()),
                }
            }
            labels.insert(key.to_owned(), value);
            if let Some((_, ',')) = chars.peek() {
                chars.next();
            }
        }
        let end = end.ok_or("unterminated label set")?;
        rest = &body[end + 1..];
    }
    let value = rest.split_whitespace().next().ok_or("no value")?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().map_err(|_| format!("bad value {v:?}"))?,
    };
    Ok(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_counters_gauges_and_histograms_and_rejects_untyped_samples() {
        let text = "# HELP a_total A.\n# TYPE a_total counter\na_total{route=\"/v1/x\",status=\"200\"} 3\n\n\
                    # TYPE g gauge\ng 1.5\n# TYPE h histogram\n\
                    h_bucket{k=\"v\",le=\"0.1\"} 1\nh_bucket{k=\"v\",le=\"+Inf\"} 2\nh_sum{k=\"v\"} 0.3\nh_count{k=\"v\"} 2\n";
        let s = Scrape::parse(text).unwrap();
        assert_eq!(
            s.value("a_total", &[("route", "/v1/x"), ("status", "200")]),
            Some(3.0)
        );
        assert_eq!(s.value("g", &[]), Some(1.5));
        let h = s.histogram("h", &[("k", "v")]).unwrap();
        assert_eq!((h.buckets.len(), h.count, h.sum), (2, 2.0, 0.3));
        assert!(Scrape::parse("x 1\n").is_err());
        assert!(Scrape::parse("# TYPE x gauge\nx{a=b} 1\n").is_err());
    }
}
