//! `plan` owns the plan format and is pure: bytes in, a validated `Plan` plus every
//! diagnostic out. Templates and conditions are rendered here too. No tokio, SQL or
//! wasmtime.
//!
//! Pipeline: `locate` (YAML/JSON text -> JSON value + node positions) -> `validate`
//! (the plan JSON Schema through `schema`, then `raw` serde types and semantic
//! checks: ids, needs, cycles via `dag::Dag`, template references via `template`,
//! plugin uses, action params against a `Catalog`) -> `Plan`. `diagnostic` renders
//! what is wrong and where.

mod diagnostic;
mod locate;
mod model;
mod notify;
mod params;
mod raw;
mod schema;
mod template;
mod validate;

#[cfg(test)]
mod tests;

pub use model::*;
pub use notify::{NoticeEvent, Notify, Tier};

use serde_json::Value;

/// The plan format's JSON Schema, published as `plans/plan.schema.json`.
pub const SCHEMA: &str = include_str!("../../../plans/plan.schema.json");

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    Yaml,
    Json,
}

impl Format {
    /// The format a file name's extension says: `.yaml`/`.yml` or `.json`.
    pub fn from_path(path: &std::path::Path) -> Option<Format> {
        match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "yaml" | "yml" => Some(Format::Yaml),
            "json" => Some(Format::Json),
            _ => None,
        }
    }
}

/// One problem found in a plan (or in the params given to it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file (or other source name) the plan came from; empty for problems with
    /// run params, which have no file.
    pub file: String,
    /// 1-based line and column of the offending node, where known.
    pub line: Option<usize>,
    pub column: Option<usize>,
    /// Where in the document, e.g. `steps[2].with.server` (empty for the whole document).
    pub path: String,
    /// What is wrong, what was expected, and what to do.
    pub message: String,
}

/// Every problem found; never empty when returned as an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostics(pub Vec<Diagnostic>);

/// A template or condition that could not be rendered at run time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct TemplateError {
    pub message: String,
}

/// Parses and validates a plan. With `catalog`, each step's action is looked up and
/// its `with` checked against the action's params schema; without, action checks
/// are skipped (used when re-reading a plan from the store).
pub fn parse(
    file: &str,
    text: &str,
    format: Format,
    catalog: Option<&dyn Catalog>,
) -> Result<Plan, Diagnostics> {
    let (doc, locs) = locate::locate(text, format).map_err(|errors| {
        Diagnostics(
            errors
                .into_iter()
                .map(|e| Diagnostic {
                    file: file.to_string(),
                    line: e.pos.map(|p| p.0),
                    column: e.pos.map(|p| p.1),
                    path: String::new(),
                    message: e.message,
                })
                .collect(),
        )
    })?;
    validate::plan(file, &doc, &locs, catalog).map_err(Diagnostics)
}

/// Reads and parses a plan file; the format comes from its extension.
pub fn load_file(
    path: &std::path::Path,
    catalog: Option<&dyn Catalog>,
) -> Result<Plan, Diagnostics> {
    let file = path.display().to_string();
    let whole = |message: String| {
        Diagnostics(vec![Diagnostic {
            file: file.clone(),
            line: None,
            column: None,
            path: String::new(),
            message,
        }])
    };
    let format = Format::from_path(path).ok_or_else(|| {
        whole("unknown plan file extension; expected `.yaml`, `.yml` or `.json`".into())
    })?;
    let text =
        std::fs::read_to_string(path).map_err(|e| whole(format!("cannot read the plan: {e}")))?;
    parse(&file, &text, format, catalog)
}

/// Checks the params given to a run against the plan's params and fills in defaults.
/// `given` values that are JSON strings are coerced to the declared type where the
/// param is not a string (so `--param replicas=3` gives the number 3).
pub fn bind_params(
    plan: &Plan,
    given: &serde_json::Map<String, Value>,
) -> Result<Value, Diagnostics> {
    params::bind(plan, given).map_err(Diagnostics)
}

/// Renders every string in `value` that holds a `${{ expr }}` template against `scope`
/// (`{"params": .., "steps": {id: {"output": .., "status": ..}}, "run": {"id": ..}}`).
/// A string that is exactly one `${{ expr }}` keeps the expression's JSON type.
pub fn render(value: &Value, scope: &Value) -> Result<Value, TemplateError> {
    template::render(value, scope)
}

/// Evaluates a `when` condition against `scope`.
pub fn condition(expr: &str, scope: &Value) -> Result<bool, TemplateError> {
    template::condition(expr, scope)
}

/// A run's locks, which are also its targets: each name the plan declares, rendered
/// with the run's bound `params`, sorted by name (two declarations that render to
/// the same name become one, exclusive if either is).
pub fn resolve_locks(plan: &Plan, params: &Value) -> Result<Vec<(String, LockMode)>, String> {
    let scope = serde_json::json!({ "params": params });
    let mut out: std::collections::BTreeMap<String, LockMode> = Default::default();
    for (i, lock) in plan.safety.locks.iter().enumerate() {
        let rendered = template::render(&Value::String(lock.name.clone()), &scope)
            .map_err(|e| format!("locks[{i}] `{}`: {e}", lock.name))?;
        let name = match rendered {
            Value::String(s) => s,
            other => other.to_string(),
        };
        if name.trim().is_empty() {
            return Err(format!(
                "locks[{i}] `{}` renders to an empty name with these params",
                lock.name
            ));
        }
        let mode = out.entry(name).or_insert(lock.mode);
        *mode = (*mode).max(lock.mode);
    }
    Ok(out.into_iter().collect())
}
