//! Templates and conditions: `${{ expr }}` in plan strings, rendered with minijinja
//! when a step runs, and checked when the plan is validated (syntax, and that every
//! variable it reads exists and is available to that step).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::LazyLock;

use minijinja::syntax::SyntaxConfig;
use minijinja::value::ValueKind;
use minijinja::{AutoEscape, Environment, ErrorKind, UndefinedBehavior};
use regex::Regex;
use serde_json::Value;

use super::TemplateError;
use super::diagnostic::{describe, list};

/// The variables templates can read.
pub(crate) const ROOTS: &[&str] = &["params", "steps", "run"];
/// What a step exposes to the templates of the steps after it.
pub(crate) const STEP_FIELDS: &[&str] = &["output", "status"];
/// What `run` holds.
pub(crate) const RUN_FIELDS: &[&str] = &["id"];

/// One environment for the whole process: it holds only configuration.
static ENV: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    // `${{ }}` like GitHub Actions; blocks and comments get `$` prefixes too, so
    // plain `{{`, `{%` and `{#` in commands and JSON stay literal text.
    let syntax = SyntaxConfig::builder()
        .variable_delimiters("${{", "}}")
        .block_delimiters("${%", "%}")
        .comment_delimiters("${#", "#}")
        .keep_trailing_newline(true)
        .build()
        .expect("distinct delimiters");
    env.set_syntax(syntax);
    // A typo in an output field must fail the step, not render as "".
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_auto_escape_callback(|_| AutoEscape::None);
    env.set_formatter(|out, state, value| match value.kind() {
        // Inside text, null is empty and lists/maps are JSON (what a plugin or a
        // person reading a prompt expects), not Python-like reprs.
        ValueKind::None => Ok(()),
        ValueKind::Seq | ValueKind::Map => {
            let json = serde_json::to_string(value)
                .map_err(|e| minijinja::Error::new(ErrorKind::BadSerialization, e.to_string()))?;
            out.write_str(&json).map_err(minijinja::Error::from)
        }
        _ => minijinja::escape_formatter(out, state, value),
    });
    env
});

static SUBSCRIPT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"\bsteps\s*\[\s*(?:'([^']*)'|"([^"]*)")\s*\]"#).expect("valid regex")
});
static HYPHENATED: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\bsteps\.([a-z][a-z0-9_]*(?:-[a-z0-9_]+)+)").expect("valid regex")
});

/// Whether a string is a template at all; others are used as written.
pub(crate) fn is_template(s: &str) -> bool {
    s.contains("${{") || s.contains("${%") || s.contains("${#")
}

/// The expression of a string that is exactly one `${{ expr }}`.
fn single_expression(s: &str) -> Option<&str> {
    let inner = s.trim().strip_prefix("${{")?.strip_suffix("}}")?;
    if inner.contains("${{") || inner.contains("${%") || ENV.compile_expression(inner).is_err() {
        return None;
    }
    Some(inner)
}

/// A `when` condition without its optional `${{ }}` wrapper.
pub(crate) fn unwrap_condition(expr: &str) -> &str {
    let t = expr.trim();
    match t.strip_prefix("${{").and_then(|r| r.strip_suffix("}}")) {
        Some(inner) if !inner.contains("${{") && !inner.contains("}}") => inner.trim(),
        _ => t,
    }
}

/// Renders every template string in `value` (see `plan::render`).
pub(crate) fn render(value: &Value, scope: &Value) -> Result<Value, TemplateError> {
    // The scope grows with every finished step: convert it only if a template needs it.
    let ctx = std::cell::OnceCell::new();
    render_value(value, &ctx, scope)
}

fn render_value(
    value: &Value,
    ctx: &std::cell::OnceCell<minijinja::Value>,
    scope: &Value,
) -> Result<Value, TemplateError> {
    Ok(match value {
        Value::String(s) if is_template(s) => {
            let ctx = ctx.get_or_init(|| minijinja::Value::from(minijinja::value::Serde(scope)));
            render_string(s, ctx, scope)?
        }
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|v| render_value(v, ctx, scope))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| Ok((k.clone(), render_value(v, ctx, scope)?)))
                .collect::<Result<_, TemplateError>>()?,
        ),
        other => other.clone(),
    })
}

fn render_string(s: &str, ctx: &minijinja::Value, scope: &Value) -> Result<Value, TemplateError> {
    let fail = |e: minijinja::Error| template_error(s, &e, scope);
    if let Some(expr) = single_expression(s) {
        let value = ENV
            .compile_expression(expr)
            .map_err(fail)?
            .eval(ctx)
            .map_err(fail)?;
        if value.is_undefined() {
            return Err(undefined(s, scope));
        }
        return serde_json::to_value(&value).map_err(|e| TemplateError {
            message: format!("template `{s}`: its value cannot be turned into JSON: {e}"),
        });
    }
    let out = ENV
        .template_from_str(s)
        .map_err(fail)?
        .render(ctx)
        .map_err(fail)?;
    Ok(Value::String(out))
}

/// Evaluates a `when` condition (see `plan::condition`).
pub(crate) fn condition(expr: &str, scope: &Value) -> Result<bool, TemplateError> {
    let inner = unwrap_condition(expr);
    let ctx = minijinja::Value::from(minijinja::value::Serde(scope));
    let fail = |e: minijinja::Error| template_error(expr, &e, scope);
    let value = ENV
        .compile_expression(inner)
        .map_err(fail)?
        .eval(ctx)
        .map_err(fail)?;
    if value.is_undefined() {
        return Err(undefined(expr, scope));
    }
    match value.kind() {
        ValueKind::Bool => Ok(value.is_true()),
        _ => {
            let shown =
                serde_json::to_value(&value).map_or_else(|_| value.to_string(), |v| describe(&v));
            Err(TemplateError {
                message: format!(
                    "condition `{expr}` gave {shown}; expected true or false (compare explicitly, e.g. `x == 'yes'` or `x | length > 0`)"
                ),
            })
        }
    }
}

fn template_error(source: &str, e: &minijinja::Error, scope: &Value) -> TemplateError {
    if e.kind() == ErrorKind::UndefinedError {
        return undefined(source, scope);
    }
    let detail = e.detail().map(|d| format!(": {d}")).unwrap_or_default();
    TemplateError {
        message: format!("template `{source}`: {}{detail}", e.kind()),
    }
}

/// Names the first variable path the template reads that `scope` does not have.
fn undefined(source: &str, scope: &Value) -> TemplateError {
    let mut paths: Vec<Vec<String>> = analyze(source)
        .map(|r| {
            r.vars
                .into_iter()
                .map(|v| v.split('.').map(String::from).collect())
                .collect()
        })
        .unwrap_or_default();
    if let Ok(r) = analyze(source) {
        for id in r.subscripts {
            paths.push(vec!["steps".into(), id]);
        }
    }
    for path in paths {
        let mut node = scope;
        for (i, seg) in path.iter().enumerate() {
            match node.get(seg) {
                Some(next) => node = next,
                None => {
                    let full = path.join(".");
                    let message = if i == 0 {
                        format!(
                            "template `{source}`: `{full}` is undefined: there is no variable `{seg}`"
                        )
                    } else {
                        let parent = path[..i].join(".");
                        let has: Vec<String> = node
                            .as_object()
                            .map(|m| m.keys().cloned().collect())
                            .unwrap_or_default();
                        let has = if has.is_empty() {
                            format!("it is {}", describe(node))
                        } else {
                            format!("it has: {}", list(&has, 20))
                        };
                        format!(
                            "template `{source}`: `{full}` is undefined: `{parent}` has no field `{seg}` ({has})"
                        )
                    };
                    return TemplateError { message };
                }
            }
        }
    }
    TemplateError {
        message: format!("template `{source}`: a value it reads is undefined"),
    }
}

/// The variables a template (or a bare expression) reads.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Refs {
    /// Dotted paths from minijinja's nested undeclared-variable analysis, sorted:
    /// `steps.backup.output.file`, `params.primary`.
    pub vars: Vec<String>,
    /// Step ids read by item lookup, `steps['pause-writes']`: minijinja's analysis
    /// stops at item lookups, so these are found in the expression text.
    pub subscripts: Vec<String>,
    /// `steps.pause-writes`, which minijinja reads as `steps.pause - writes`.
    pub hyphenated: Vec<String>,
}

/// Analyzes a template string (with `${{ }}`), or with `expression`, a bare
/// expression as `when` takes. `Err` is the syntax error.
pub(crate) fn analyze_as(source: &str, expression: bool) -> Result<Refs, String> {
    let (vars, regions): (HashSet<String>, Vec<&str>) = if expression {
        let inner = unwrap_condition(source);
        let expr = ENV
            .compile_expression(inner)
            .map_err(|e| syntax_message(&e))?;
        (expr.undeclared_variables(true), vec![inner])
    } else {
        let tmpl = ENV
            .template_from_str(source)
            .map_err(|e| syntax_message(&e))?;
        (tmpl.undeclared_variables(true), expression_regions(source))
    };
    let mut subscripts = BTreeSet::new();
    let mut hyphenated = BTreeSet::new();
    for region in regions {
        for c in SUBSCRIPT.captures_iter(region) {
            if let Some(m) = c.get(1).or_else(|| c.get(2)) {
                subscripts.insert(m.as_str().to_string());
            }
        }
        for c in HYPHENATED.captures_iter(region) {
            hyphenated.insert(c[1].to_string());
        }
    }
    let mut vars: Vec<String> = vars.into_iter().collect();
    vars.sort();
    Ok(Refs {
        vars,
        subscripts: subscripts.into_iter().collect(),
        hyphenated: hyphenated.into_iter().collect(),
    })
}

fn analyze(source: &str) -> Result<Refs, String> {
    analyze_as(
        source,
        single_expression(source).is_none() && !is_template(source),
    )
}

fn syntax_message(e: &minijinja::Error) -> String {
    let detail = e.detail().unwrap_or("invalid syntax");
    format!("invalid template: {detail}")
}

/// The text inside each `${{ ... }}` (and `${% ... %}`) of a template.
fn expression_regions(source: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = source;
    while let Some(start) = rest.find("${") {
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .or_else(|| after.find("%}"))
            .unwrap_or(after.len());
        out.push(&after[..end]);
        rest = &after[end..];
    }
    out
}

/// What a template may read where it is written.
pub(crate) struct Site<'a> {
    /// Declared params, in file order.
    pub params: &'a [String],
    /// Step id to index, for every step with a usable id.
    pub steps: &'a HashMap<String, usize>,
    /// `None` where no step output can exist yet (plugin grants).
    pub step: Option<StepSite<'a>>,
}

pub(crate) struct StepSite<'a> {
    pub index: usize,
    pub id: &'a str,
    /// Steps upstream of this one; `None` when the graph has a cycle (already
    /// reported), which skips the upstream check.
    pub upstream: Option<&'a [bool]>,
    /// The step's own output may be read (in its `undo`).
    pub allow_self: bool,
}

/// Everything wrong with the variables a template reads, as messages.
pub(crate) fn check_refs(refs: &Refs, site: &Site<'_>) -> Vec<String> {
    let mut out = Vec::new();
    if !refs.hyphenated.is_empty() {
        // The analysis of such a template is about subtraction and would only add noise.
        for id in &refs.hyphenated {
            let (head, tail) = id.split_once('-').unwrap_or((id, ""));
            out.push(format!(
                "`steps.{id}` reads as `steps.{head} - {tail}` (a subtraction); write `steps['{id}']` for a step id with `-`"
            ));
        }
        return out;
    }
    let globals: HashSet<&str> = ENV.globals().map(|(name, _)| name).collect();
    for var in &refs.vars {
        let parts: Vec<&str> = var.split('.').collect();
        match parts[0] {
            "params" => {
                if let Some(name) = parts.get(1)
                    && !site.params.iter().any(|p| p == name)
                {
                    out.push(if site.params.is_empty() {
                        format!("unknown param `{name}`: the plan declares no params; declare it under `params:`")
                    } else {
                        format!("unknown param `{name}`; declared params: {}", list(site.params, 30))
                    });
                }
            }
            "steps" => {
                if let Some(id) = parts.get(1) {
                    step_ref(
                        id,
                        parts.get(2).copied(),
                        &format!("steps.{id}"),
                        site,
                        &mut out,
                    );
                }
            }
            "run" => {
                if let Some(field) = parts.get(1)
                    && !RUN_FIELDS.contains(field)
                {
                    out.push(format!(
                        "unknown field `run.{field}`; `run` has: {}",
                        RUN_FIELDS.join(", ")
                    ));
                }
            }
            root if globals.contains(root) => {}
            root => out.push(format!(
                "unknown variable `{root}`; templates can read {}",
                ROOTS
                    .iter()
                    .map(|r| format!("`{r}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        }
    }
    for id in &refs.subscripts {
        step_ref(id, None, &format!("steps['{id}']"), site, &mut out);
    }
    out
}

fn step_ref(id: &str, field: Option<&str>, written: &str, site: &Site<'_>, out: &mut Vec<String>) {
    let Some(step) = &site.step else {
        out.push(format!("`{written}`: plugin grants are set before any step runs, so they can read only `params` and `run`"));
        return;
    };
    let Some(&index) = site.steps.get(id) else {
        let mut ids: Vec<String> = site.steps.keys().cloned().collect();
        ids.sort();
        out.push(format!(
            "`{written}`: unknown step `{id}`; expected one of: {}",
            list(&ids, 20)
        ));
        return;
    };
    if let Some(field) = field
        && !STEP_FIELDS.contains(&field)
    {
        out.push(format!(
            "`{written}.{field}`: a step has only `output` and `status`"
        ));
    }
    if index == step.index {
        if !step.allow_self {
            out.push(format!(
                "`{written}`: step `{id}` cannot read its own output (only its `undo` can)"
            ));
        }
        return;
    }
    if let Some(upstream) = step.upstream
        && !upstream.get(index).copied().unwrap_or(false)
    {
        out.push(format!(
            "`{written}`: step `{id}` does not run before step `{}`; add `{id}` to its `needs`",
            step.id
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn scope() -> Value {
        json!({
            "params": {"primary": "db1:3306", "n": 3, "flag": false},
            "steps": {"backup": {"output": {"artifact": "b-1", "size": 10, "tags": ["a", "b"]}, "status": "succeeded"},
                      "pause-writes": {"output": null, "status": "succeeded"}},
            "run": {"id": "r-1"}
        })
    }

    #[test]
    fn a_lone_expression_keeps_its_type_and_text_renders_to_a_string() {
        let with = json!({
            "n": "${{ params.n }}",
            "obj": " ${{ steps.backup.output }} ",
            "text": "copy ${{ steps.backup.output.artifact }} to ${{ params.primary }}",
            "list": ["${{ params.n + 1 }}", "{{ not a template }}", 7, "${{ steps.backup.output.tags }} and ${{ none }}."],
            "hyphen": "${{ steps['pause-writes'].status }}",
            "two": "${{ params.n }}${{ params.n }}",
        });
        assert_eq!(
            render(&with, &scope()).unwrap(),
            json!({
                "n": 3,
                "obj": {"artifact": "b-1", "size": 10, "tags": ["a", "b"]},
                "text": "copy b-1 to db1:3306",
                "list": [4, "{{ not a template }}", 7, "[\"a\",\"b\"] and ."],
                "hyphen": "succeeded",
                "two": "33",
            })
        );
    }

    #[test]
    fn a_missing_field_is_an_error_naming_it() {
        let err = render(&json!("${{ steps.backup.output.artefact }}"), &scope()).unwrap_err();
        assert_eq!(
            err.message,
            "template `${{ steps.backup.output.artefact }}`: `steps.backup.output.artefact` is undefined: `steps.backup.output` has no field `artefact` (it has: artifact, size, tags)"
        );
        let err = render(&json!("at ${{ params.replica }}!"), &scope()).unwrap_err();
        assert_eq!(
            err.message,
            "template `at ${{ params.replica }}!`: `params.replica` is undefined: `params` has no field `replica` (it has: primary, n, flag)"
        );
        let err = render(&json!("${{ params.n + }}"), &scope()).unwrap_err();
        assert_eq!(
            err.message,
            "template `${{ params.n + }}`: syntax error: unexpected end of variable block"
        );
    }

    #[test]
    fn conditions_must_be_booleans() {
        assert!(condition("params.n > 2", &scope()).unwrap());
        assert!(!condition("${{ params.flag }}", &scope()).unwrap());
        assert!(condition(" ${{ steps.backup.status == 'succeeded' }} ", &scope()).unwrap());
        assert_eq!(
            condition("params.primary", &scope()).unwrap_err().message,
            "condition `params.primary` gave string \"db1:3306\"; expected true or false (compare explicitly, e.g. `x == 'yes'` or `x | length > 0`)"
        );
        assert_eq!(
            condition("steps.verify.status == 'ok'", &scope())
                .unwrap_err()
                .message,
            "template `steps.verify.status == 'ok'`: `steps.verify.status` is undefined: `steps` has no field `verify` (it has: backup, pause-writes)"
        );
    }

    #[test]
    fn analysis_finds_nested_paths_subscripts_and_hyphen_mistakes() {
        let refs = analyze_as(
            "${{ steps.backup.output.file }} ${{ steps['pause-writes'].output }} ${% for h in params.hosts %}${{ h }}${% endfor %}",
            false,
        )
        .unwrap();
        assert_eq!(
            refs.vars,
            vec!["params.hosts", "steps", "steps.backup.output.file"]
        );
        assert_eq!(refs.subscripts, vec!["pause-writes"]);
        let refs = analyze_as("steps.pause-writes.status == 'ok'", true).unwrap();
        assert_eq!(refs.hyphenated, vec!["pause-writes"]);
        assert_eq!(
            analyze_as("${{ a + }}", false).unwrap_err(),
            "invalid template: unexpected end of variable block"
        );
    }
}
