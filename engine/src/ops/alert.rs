//! Alerts in: the one shape both webhooks (Alertmanager's and the generic one) are
//! read into, the rule an alert matches, and the params a rule renders from it. Pure.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::plugin::config::AlertRule;

/// One alert, firing or resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    pub firing: bool,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// Identifies one firing of the alert: a repeat of the same firing (Alertmanager
    /// re-sends at every `repeat_interval`) carries the same value.
    pub starts_at: String,
    /// Identifies the alert across firings (Alertmanager's, or the sha256 of the
    /// sorted labels).
    pub fingerprint: String,
}

/// The fingerprint of an alert that brings none: the first 16 hex digits of the
/// sha256 of its labels, sorted by name.
pub fn fingerprint(labels: &BTreeMap<String, String>) -> String {
    let mut h = Sha256::new();
    for (k, v) in labels {
        h.update(k.as_bytes());
        h.update([0xff]);
        h.update(v.as_bytes());
        h.update([0xfe]);
    }
    h.finalize()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The first rule (in file order) whose `match` labels the alert carries.
pub fn rule<'a>(rules: &'a [AlertRule], alert: &Alert) -> Option<&'a AlertRule> {
    rules.iter().find(|r| r.matches(&alert.labels))
}

/// The scope rule params are rendered in: `labels`, `annotations`, `alert`.
pub fn scope(alert: &Alert) -> Value {
    json!({
        "labels": alert.labels,
        "annotations": alert.annotations,
        "alert": {
            "fingerprint": alert.fingerprint,
            "starts_at": alert.starts_at,
            "status": if alert.firing { "firing" } else { "resolved" },
        },
    })
}

/// The rule's params for `alert`, templates rendered; the error names the rule.
pub fn params(rule: &AlertRule, alert: &Alert) -> Result<Map<String, Value>, String> {
    let rendered = crate::plan::render(&Value::Object(rule.params.clone()), &scope(alert))
        .map_err(|e| format!("alert rule `{}` params: {e}", rule.name))?;
    match rendered {
        Value::Object(m) => Ok(m),
        _ => Ok(Map::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::config::OperatorConfig;

    fn alert(labels: &[(&str, &str)]) -> Alert {
        let labels: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Alert {
            firing: true,
            fingerprint: fingerprint(&labels),
            labels,
            annotations: BTreeMap::from([("summary".into(), "lagging".into())]),
            starts_at: "2026-11-23T10:00:00Z".into(),
        }
    }

    #[test]
    fn the_first_matching_rule_renders_params_from_labels() {
        let c = OperatorConfig::parse(
            r#"
[[alerts.rules]]
name = "lag"
match = { alertname = "ReplicaLag", team = "db" }
plan = "resync@2"
params = { replica = "${{ labels.instance }}", why = "${{ annotations.summary }}", n = 3 }
[[alerts.rules]]
name = "any-db"
match = { team = "db" }
plan = "triage"
"#,
        )
        .unwrap();
        let rules = &c.alerts.rules;
        let a = alert(&[
            ("alertname", "ReplicaLag"),
            ("team", "db"),
            ("instance", "db-2:3306"),
        ]);
        let r = rule(rules, &a).unwrap();
        assert_eq!(r.name, "lag");
        assert_eq!(
            Value::Object(params(r, &a).unwrap()),
            json!({"replica": "db-2:3306", "why": "lagging", "n": 3})
        );
        let b = alert(&[("alertname", "Other"), ("team", "db")]);
        assert_eq!(rule(rules, &b).unwrap().name, "any-db");
        assert!(rule(rules, &alert(&[("team", "web")])).is_none());
        // A label the template needs and the alert lacks names the rule.
        let e = params(r, &alert(&[("alertname", "ReplicaLag"), ("team", "db")])).unwrap_err();
        assert!(e.contains("alert rule `lag`"), "{e}");
    }

    #[test]
    fn fingerprints_depend_on_labels_not_their_order() {
        let a = alert(&[("a", "1"), ("b", "2")]);
        let b = alert(&[("b", "2"), ("a", "1")]);
        assert_eq!(a.fingerprint, b.fingerprint);
        assert_eq!(a.fingerprint.len(), 16);
        assert_ne!(a.fingerprint, alert(&[("a", "1"), ("b", "3")]).fingerprint);
    }

    #[test]
    fn bad_rules_and_channels_are_named() {
        for (toml, want) in [
            (
                "[[alerts.rules]]\nname = \"r\"\nmatch = {}\nplan = \"p\"\n",
                "match: empty",
            ),
            (
                "[[alerts.rules]]\nname = \"r\"\nmatch = { a = \"b\" }\nplan = \"p@x\"\n",
                "#1 (`r`) plan",
            ),
            (
                "[[alerts.rules]]\nname = \"r\"\nmatch = { a = \"b\" }\nplan = \"p\"\non_resolved = \"drop\"\n",
                "on_resolved",
            ),
            (
                "[notify.channels.x]\nurl = \"ftp://h/x\"\n",
                "[notify.channels.x] url",
            ),
            (
                "[notify.channels.x]\nurl = \"http://h/x\"\nformat = \"template\"\n",
                "needs `template`",
            ),
            (
                "[notify.channels.x]\nurl = \"http://h/x\"\nformat = \"template\"\ntemplate = \"{{ oops\"\n",
                "[notify.channels.x] template",
            ),
            (
                "[notify]\nretry_initial = \"soon\"\n",
                "invalid duration `soon`",
            ),
            ("[notify]\nmax_attempts = 0\n", "max_attempts"),
        ] {
            let e = OperatorConfig::parse(toml).unwrap_err();
            assert!(e.contains(want), "{toml}: {e}");
        }
    }
}
