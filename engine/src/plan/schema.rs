//! JSON Schema checks (the plan schema, action params, run params) through the
//! `jsonschema` crate, with its errors rewritten into messages that say what was
//! expected, found at a JSON pointer into the instance.

use jsonschema::error::{TypeKind, ValidationErrorKind};
use jsonschema::{ValidationError, Validator};
use serde_json::Value;

use super::diagnostic::{describe, esc, list};

/// One schema violation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Problem {
    /// JSON pointer into the instance.
    pub pointer: String,
    /// The problem is the member's key (an unknown field), not its value.
    pub key: bool,
    pub message: String,
}

/// Compiles a schema (draft 2020-12 unless it says otherwise).
pub(crate) fn compile(schema: &Value) -> Result<Validator, String> {
    jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .build(schema)
        .map_err(|e| e.to_string())
}

/// Every violation of `schema` by `instance`, in a stable order.
pub(crate) fn check(validator: &Validator, schema: &Value, instance: &Value) -> Vec<Problem> {
    let mut out = Vec::new();
    for e in validator.iter_errors(instance) {
        explain(&e, schema, &mut out);
    }
    out
}

/// Hints for the patterns the plan schema uses, so a bad id says what an id is.
const PATTERN_HINTS: &[(&str, &str)] = &[
    (
        "^[a-z0-9][a-z0-9-]*$",
        "lowercase letters, digits and `-`, starting with a letter or digit",
    ),
    (
        "^[a-z][a-z0-9_-]*$",
        "lowercase letters, digits, `_` and `-`, starting with a letter",
    ),
    (
        "^[A-Za-z_][A-Za-z0-9_]*$",
        "letters, digits and `_`, not starting with a digit",
    ),
    (
        "^[a-z][a-z0-9_-]*/[A-Za-z0-9_][A-Za-z0-9_.-]*$",
        "`ALIAS/ACTION`, e.g. `mysql/backup`, with ALIAS declared under `plugins`",
    ),
];

fn explain(e: &ValidationError<'_>, schema: &Value, out: &mut Vec<Problem>) {
    let pointer = e.instance_path().as_str().to_string();
    let instance = e.instance();
    let keyword_path = e.evaluation_path().as_str().to_string();
    let message = match e.kind() {
        ValidationErrorKind::Type { kind } => {
            let expected = match kind {
                TypeKind::Single(t) => article(&t.to_string()),
                TypeKind::Multiple(ts) => {
                    let names: Vec<String> = ts.iter().map(|t| article(&t.to_string())).collect();
                    names.join(" or ")
                }
            };
            format!("expected {expected}, found {}", describe(instance))
        }
        ValidationErrorKind::Required { property } => {
            format!(
                "missing required field `{}`",
                property.as_str().unwrap_or_default()
            )
        }
        ValidationErrorKind::AdditionalProperties { unexpected }
        | ValidationErrorKind::UnevaluatedProperties { unexpected } => {
            let known = sibling_properties(schema, &keyword_path);
            for field in unexpected {
                let message = if known.is_empty() {
                    format!("unknown field `{field}`; remove it")
                } else {
                    format!(
                        "unknown field `{field}`; expected one of: {}",
                        list(&known, 30)
                    )
                };
                out.push(Problem {
                    pointer: format!("{pointer}/{}", esc(field)),
                    key: true,
                    message,
                });
            }
            return;
        }
        ValidationErrorKind::Enum { options } => {
            let options: Vec<String> = options
                .as_array()
                .map(|a| a.iter().map(plain).collect())
                .unwrap_or_default();
            format!(
                "expected one of: {}; found {}",
                options.join(", "),
                describe(instance)
            )
        }
        ValidationErrorKind::Constant { expected_value } => {
            format!(
                "expected `{}`, found {}",
                plain(expected_value),
                describe(instance)
            )
        }
        ValidationErrorKind::Pattern { pattern } => {
            let what = PATTERN_HINTS
                .iter()
                .find(|(p, _)| p == pattern)
                .map_or_else(
                    || format!("a string matching `{pattern}`"),
                    |(_, h)| (*h).to_string(),
                );
            format!("expected {what}; found {}", describe(instance))
        }
        ValidationErrorKind::PropertyNames { error } => {
            // The inner error is about the key, as a string instance.
            let key = error.instance().as_str().unwrap_or_default().to_string();
            let mut inner = Vec::new();
            explain(error, schema, &mut inner);
            let reason = inner
                .pop()
                .map(|p| p.message)
                .unwrap_or_else(|| error.to_string());
            out.push(Problem {
                pointer: format!("{pointer}/{}", esc(&key)),
                key: true,
                message: format!("invalid name `{key}`: {reason}"),
            });
            return;
        }
        ValidationErrorKind::Minimum { limit } => {
            format!("expected at least {limit}, found {}", describe(instance))
        }
        ValidationErrorKind::Maximum { limit } => {
            format!("expected at most {limit}, found {}", describe(instance))
        }
        ValidationErrorKind::MinItems { limit } => {
            format!(
                "expected at least {limit} item{}, found {}",
                plural(*limit),
                count(instance)
            )
        }
        ValidationErrorKind::MaxItems { limit } => {
            format!(
                "expected at most {limit} item{}, found {}",
                plural(*limit),
                count(instance)
            )
        }
        ValidationErrorKind::MinLength { limit } => {
            format!(
                "expected at least {limit} character{}, found {}",
                plural(*limit),
                describe(instance)
            )
        }
        ValidationErrorKind::MaxLength { limit } => {
            format!(
                "expected at most {limit} character{}, found {}",
                plural(*limit),
                describe(instance)
            )
        }
        ValidationErrorKind::FalseSchema => {
            let field = pointer.rsplit('/').next().unwrap_or_default().to_string();
            let message = if keyword_path.contains("/dependentSchemas/approval/") {
                format!(
                    "an approval step takes no `{field}`; remove it or make the step a `uses` step"
                )
            } else {
                format!("field `{field}` is not allowed here; remove it")
            };
            out.push(Problem {
                pointer,
                key: true,
                message,
            });
            return;
        }
        ValidationErrorKind::OneOfNotValid { .. }
        | ValidationErrorKind::OneOfMultipleValid { .. }
            if keyword_path.ends_with("/steps/items/$ref/oneOf")
                || keyword_path.ends_with("/$defs/step/oneOf") =>
        {
            let both = matches!(e.kind(), ValidationErrorKind::OneOfMultipleValid { .. });
            if both {
                "a step has `uses` (a plugin action) or `approval`, not both; split it into two steps".to_string()
            } else {
                "a step needs `uses` (a plugin action, `ALIAS/ACTION`) or `approval`; add one"
                    .to_string()
            }
        }
        _ => e.to_string(),
    };
    out.push(Problem {
        pointer,
        key: false,
        message,
    });
}

/// The `properties` next to the keyword at `keyword_path` (an evaluation path,
/// which may pass through local `$ref`s).
fn sibling_properties(schema: &Value, keyword_path: &str) -> Vec<String> {
    let mut node = schema;
    let segments: Vec<&str> = keyword_path.split('/').skip(1).collect();
    let Some((_, parents)) = segments.split_last() else {
        return Vec::new();
    };
    for seg in parents {
        let seg = seg.replace("~1", "/").replace("~0", "~");
        let next = if seg == "$ref" {
            node.get("$ref")
                .and_then(Value::as_str)
                .and_then(|r| r.strip_prefix('#'))
                .and_then(|p| schema.pointer(p))
        } else {
            match node {
                Value::Object(m) => m.get(&seg),
                Value::Array(a) => seg.parse::<usize>().ok().and_then(|i| a.get(i)),
                _ => None,
            }
        };
        match next {
            Some(n) => node = n,
            None => return Vec::new(),
        }
    }
    node.get("properties")
        .and_then(Value::as_object)
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default()
}

fn article(t: &str) -> String {
    match t {
        "integer" | "object" | "array" => format!("an {t}"),
        "null" => "null".into(),
        _ => format!("a {t}"),
    }
}

/// A value as it would be written in a plan: strings without quotes.
fn plain(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn plural(n: u64) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn count(v: &Value) -> usize {
    v.as_array().map_or(0, Vec::len)
}
