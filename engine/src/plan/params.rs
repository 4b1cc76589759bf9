//! Binding the params given to a run: coercion of command-line strings to the
//! declared types, defaults, and a check against each param's schema.

use serde_json::{Map, Value, json};

use super::diagnostic::{display_path, esc, list};
use super::{Diagnostic, Plan, schema};

pub(crate) fn bind(plan: &Plan, given: &Map<String, Value>) -> Result<Value, Vec<Diagnostic>> {
    let mut problems: Vec<(String, String)> = Vec::new();
    let declared: Vec<String> = plan.params.iter().map(|p| p.name.clone()).collect();
    for name in given.keys() {
        if !declared.contains(name) {
            let expected = if declared.is_empty() {
                "the plan takes no params".to_string()
            } else {
                format!("declared params: {}", list(&declared, 30))
            };
            problems.push((
                format!("/params/{}", esc(name)),
                format!("unknown param `{name}`; {expected}"),
            ));
        }
    }
    let mut bound = Map::new();
    for p in &plan.params {
        let pointer = format!("/params/{}", esc(&p.name));
        let value = match (given.get(&p.name), &p.default) {
            (Some(v), _) => coerce(v, &p.schema),
            (None, Some(d)) => d.clone(),
            (None, None) => {
                problems.push((
                    pointer,
                    format!(
                        "missing param `{}`: it has no default; give it a value",
                        p.name
                    ),
                ));
                continue;
            }
        };
        match schema::compile(&p.schema) {
            // Checked when the plan was parsed; a plan built by hand may still have it.
            Err(e) => problems.push((
                pointer.clone(),
                format!("invalid JSON Schema for param `{}`: {e}", p.name),
            )),
            Ok(validator) => {
                for problem in schema::check(&validator, &p.schema, &value) {
                    problems.push((format!("{pointer}{}", problem.pointer), problem.message));
                }
            }
        }
        bound.insert(p.name.clone(), value);
    }
    if problems.is_empty() {
        return Ok(Value::Object(bound));
    }
    let doc = json!({ "params": bound });
    Err(problems
        .into_iter()
        .map(|(pointer, message)| Diagnostic {
            file: String::new(),
            line: None,
            column: None,
            path: display_path(&doc, &pointer),
            message,
        })
        .collect())
}

/// A string given for a param whose schema does not allow strings is read as JSON
/// (`3`, `true`, `[1,2]`, `{"a":1}`); if that fails it stays a string and the
/// schema check says what was expected.
fn coerce(v: &Value, schema: &Value) -> Value {
    let Value::String(s) = v else {
        return v.clone();
    };
    let types: Vec<&str> = match schema.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => return v.clone(),
    };
    if types.contains(&"string") {
        return v.clone();
    }
    serde_json::from_str(s.trim()).unwrap_or_else(|_| v.clone())
}
