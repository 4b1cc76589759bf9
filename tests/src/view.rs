//! `medic runs show RUN --json` read back as the test sees it: the run, its steps,
//! its attempts and its events. Only the fields the tests assert on are typed; the
//! whole document is kept for failure messages.

use serde_json::Value;

/// One step as `runs show` reports it.
#[derive(Clone, Debug)]
pub struct StepView {
    pub id: String,
    pub status: String,
    pub attempt: i64,
    pub undo_attempt: i64,
    pub output: Value,
    pub error: Value,
}

/// One attempt (of a step, or of its undo).
#[derive(Clone, Debug)]
pub struct AttemptView {
    pub step: String,
    pub attempt: i64,
    pub undo: bool,
    pub key: String,
    pub status: String,
}

#[derive(Clone, Debug)]
pub struct RunView {
    pub json: Value,
    pub id: String,
    pub status: String,
    pub reason: Option<String>,
    pub steps: Vec<StepView>,
    pub attempts: Vec<AttemptView>,
}

impl RunView {
    /// The `attempt_failed` events of `step`: (attempt, retryable, error).
    pub fn failures(&self, step: &str) -> Vec<(i64, bool, String)> {
        self.json["events"]
            .as_array()
            .expect("events")
            .iter()
            .filter(|e| e["kind"] == "attempt_failed" && e["step"] == step)
            .map(|e| {
                let e = &e["data"];
                (
                    e["attempt"].as_i64().unwrap_or(-1),
                    e["retryable"]
                        .as_bool()
                        .expect("attempt_failed has `retryable`"),
                    e["error"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect()
    }

    /// The data of every event of `kind`, in order.
    pub fn events_of(&self, kind: &str) -> Vec<&Value> {
        self.json["events"]
            .as_array()
            .expect("events")
            .iter()
            .filter(|e| e["kind"] == kind)
            .map(|e| &e["data"])
            .collect()
    }

    pub fn parse(text: &str) -> Result<RunView, String> {
        let json: Value = serde_json::from_str(text)
            .map_err(|e| format!("`runs show --json` printed invalid JSON ({e})"))?;
        let run = field(&json, "run")?;
        let steps = array(&json, "steps")?
            .iter()
            .map(|s| {
                Ok(StepView {
                    id: string(s, "id")?,
                    status: string(s, "status")?,
                    attempt: integer(s, "attempt")?,
                    undo_attempt: integer(s, "undo_attempt")?,
                    output: s.get("output").cloned().unwrap_or(Value::Null),
                    error: s.get("error").cloned().unwrap_or(Value::Null),
                })
            })
            .collect::<Result<_, String>>()?;
        let attempts = array(&json, "attempts")?
            .iter()
            .map(|a| {
                Ok(AttemptView {
                    step: string(a, "step")?,
                    attempt: integer(a, "attempt")?,
                    undo: flag(a, "undo")?,
                    key: string(a, "key")?,
                    status: string(a, "status")?,
                })
            })
            .collect::<Result<_, String>>()?;
        Ok(RunView {
            id: string(run, "id")?,
            status: string(run, "status")?,
            reason: run
                .get("reason")
                .and_then(Value::as_str)
                .map(str::to_string),
            steps,
            attempts,
            json,
        })
    }

    pub fn pretty(&self) -> String {
        serde_json::to_string_pretty(&self.json).unwrap_or_default()
    }

    /// The step, or a panic naming the steps there are.
    pub fn step(&self, id: &str) -> &StepView {
        self.find_step(id)
            .unwrap_or_else(|| panic!("run {} has no step `{id}`\n{}", self.id, self.pretty()))
    }

    pub fn find_step(&self, id: &str) -> Option<&StepView> {
        self.steps.iter().find(|s| s.id == id)
    }

    pub fn step_status(&self, id: &str) -> Option<&str> {
        self.find_step(id).map(|s| s.status.as_str())
    }

    /// Attempts of `step` itself (`undo == false`) or of its undo, by attempt number.
    pub fn attempts_of(&self, step: &str, undo: bool) -> Vec<&AttemptView> {
        let mut found: Vec<&AttemptView> = self
            .attempts
            .iter()
            .filter(|a| a.step == step && a.undo == undo)
            .collect();
        found.sort_by_key(|a| a.attempt);
        found
    }

    /// The event log's `kind`s in order.
    pub fn event_kinds(&self) -> Vec<String> {
        self.json
            .get("events")
            .and_then(Value::as_array)
            .map(|events| {
                events
                    .iter()
                    .filter_map(|e| e.get("kind").and_then(Value::as_str))
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    }
}

fn field<'a>(v: &'a Value, name: &str) -> Result<&'a Value, String> {
    v.get(name)
        .ok_or_else(|| format!("`runs show --json`: no `{name}` in {v}"))
}

fn array<'a>(v: &'a Value, name: &str) -> Result<&'a Vec<Value>, String> {
    field(v, name)?
        .as_array()
        .ok_or_else(|| format!("`runs show --json`: `{name}` is not an array"))
}

fn string(v: &Value, name: &str) -> Result<String, String> {
    field(v, name)?
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| format!("`runs show --json`: `{name}` is not a string in {v}"))
}

fn integer(v: &Value, name: &str) -> Result<i64, String> {
    field(v, name)?
        .as_i64()
        .ok_or_else(|| format!("`runs show --json`: `{name}` is not an integer in {v}"))
}

/// A boolean, also accepted as SQLite's 0/1.
fn flag(v: &Value, name: &str) -> Result<bool, String> {
    let value = field(v, name)?;
    value
        .as_bool()
        .or_else(|| value.as_i64().map(|n| n != 0))
        .ok_or_else(|| format!("`runs show --json`: `{name}` is not a boolean in {v}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_shape() {
        let view = RunView::parse(
            r#"{"run": {"id": "r1", "plan_name": "p", "status": "held", "reason": "why"},
                "steps": [{"id": "a", "status": "held", "attempt": 2, "undo_attempt": 0,
                           "output": null, "error": "boom"}],
                "attempts": [{"step": "a", "attempt": 2, "undo": 0, "key": "r1/a/2", "status": "started"},
                             {"step": "a", "attempt": 1, "undo": false, "key": "r1/a/1", "status": "failed"}],
                "events": [{"seq": 1, "at": 0, "kind": "run_started", "step": null, "data": {}}]}"#,
        )
        .unwrap();
        assert_eq!(view.status, "held");
        assert_eq!(view.reason.as_deref(), Some("why"));
        assert_eq!(view.step("a").attempt, 2);
        let keys: Vec<&str> = view
            .attempts_of("a", false)
            .iter()
            .map(|a| a.key.as_str())
            .collect();
        assert_eq!(keys, ["r1/a/1", "r1/a/2"]);
        assert!(view.attempts_of("a", true).is_empty());
        assert_eq!(view.event_kinds(), ["run_started"]);
    }

    #[test]
    fn names_what_is_missing() {
        let err = RunView::parse(r#"{"run": {"id": "r1"}}"#).unwrap_err();
        assert!(err.contains("`steps`"), "{err}");
    }
}
