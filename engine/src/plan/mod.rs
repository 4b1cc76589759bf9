//! `plan` owns the plan format and is pure: bytes in, a validated `Plan` plus every
//! diagnostic out. Templates and conditions are rendered here too. No tokio, SQL or
//! wasmtime.
//!
//! OWNER NOTE (remove when implemented): parse (YAML via yaml-rust2 with locations,
//! JSON via serde_json) -> check against `plans/plan.schema.json` (jsonschema) ->
//! raw serde types -> semantic checks (ids, needs, cycles via `dag::Dag`, template
//! references, params, action params against `Catalog`) -> `Plan`.

mod model;

pub use model::*;

use serde_json::Value;

/// The plan format's JSON Schema, published as `plans/plan.schema.json`.
pub const SCHEMA: &str = include_str!("../../../plans/plan.schema.json");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Yaml,
    Json,
}

/// One problem found in a plan (or in the params given to it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file (or other source name) the plan came from.
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
    let _ = (file, text, format, catalog);
    unimplemented!("plan::parse")
}

/// Checks the params given to a run against the plan's params and fills in defaults.
/// `given` values that are JSON strings are coerced to the declared type where the
/// param is not a string (so `--param replicas=3` gives the number 3).
pub fn bind_params(plan: &Plan, given: &serde_json::Map<String, Value>) -> Result<Value, Diagnostics> {
    let _ = (plan, given);
    unimplemented!("plan::bind_params")
}

/// Renders every string in `value` that holds a `${{ expr }}` template against `scope`
/// (`{"params": .., "steps": {id: {"output": .., "status": ..}}, "run": {"id": ..}}`).
/// A string that is exactly one `${{ expr }}` keeps the expression's JSON type.
pub fn render(value: &Value, scope: &Value) -> Result<Value, TemplateError> {
    let _ = (value, scope);
    unimplemented!("plan::render")
}

/// Evaluates a `when` condition against `scope`.
pub fn condition(expr: &str, scope: &Value) -> Result<bool, TemplateError> {
    let _ = (expr, scope);
    unimplemented!("plan::condition")
}
