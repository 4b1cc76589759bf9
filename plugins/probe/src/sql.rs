//! Actions over the host's `sql` interface, for its tests: one statement with
//! params, and several statements in one call to show they share a session.

use medic_sdk::sql::{self, Value as SqlValue};
use medic_sdk::{Action, Effect, Failure, Value, json};
use serde::Deserialize;

fn connection_schema() -> Value {
    json!({"type": "string", "minLength": 1})
}

pub fn query_action() -> Action {
    Action::new("sql-query", Effect::Mutating)
        .description(
            "Runs `statement` with `params` on the granted SQL connection `connection`; \
             returns the rows by column name",
        )
        .params(json!({
            "type": "object",
            "properties": {
                "connection": connection_schema(),
                "statement": {"type": "string"},
                "params": {"type": "array", "items": {"type": ["null", "boolean", "number", "string"]}}
            },
            "required": ["connection", "statement"],
            "additionalProperties": false
        }))
        .output(row_set_schema())
}

pub fn session_action() -> Action {
    Action::new("sql-session", Effect::Mutating)
        .description(
            "Runs `statements` in order on `connection` in one call (one session), \
             sleeping `pause_ms` between them; returns each one's result (with \
             `keep_going`, a failed statement's error instead of failing)",
        )
        .params(json!({
            "type": "object",
            "properties": {
                "connection": connection_schema(),
                "statements": {"type": "array", "items": {"type": "string"}, "minItems": 1},
                "pause_ms": {"type": "integer", "minimum": 0},
                "keep_going": {"type": "boolean"}
            },
            "required": ["connection", "statements"],
            "additionalProperties": false
        }))
        .output(json!({
            "type": "object",
            "properties": {"results": {"type": "array", "items": {"type": "object"}}},
            "required": ["results"]
        }))
}

fn row_set_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "columns": {"type": "array", "items": {"type": "string"}},
            "rows": {"type": "array", "items": {"type": "object"}},
            "affected_rows": {"type": "integer"},
            "last_insert_id": {"type": "integer"}
        },
        "required": ["columns", "rows", "affected_rows", "last_insert_id"]
    })
}

pub fn query(action: &str, params: Value) -> Result<Value, Failure> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Params {
        connection: String,
        statement: String,
        #[serde(default)]
        params: Vec<Value>,
    }
    let p: Params = medic_sdk::params(action, params)?;
    let values = p
        .params
        .iter()
        .map(|v| {
            SqlValue::from_json(v)
                .ok_or_else(|| Failure::permanent(format!("`{v}` is not a SQL parameter")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(sql::query(&p.connection, &p.statement, &values)?.to_json())
}

pub fn session(action: &str, params: Value) -> Result<Value, Failure> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Params {
        connection: String,
        statements: Vec<String>,
        pause_ms: Option<u64>,
        #[serde(default)]
        keep_going: bool,
    }
    let p: Params = medic_sdk::params(action, params)?;
    let mut results = Vec::new();
    for (i, statement) in p.statements.iter().enumerate() {
        if i > 0
            && let Some(ms) = p.pause_ms
        {
            std::thread::sleep(std::time::Duration::from_millis(ms));
        }
        match sql::query(&p.connection, statement, &[]) {
            Ok(rows) => results.push(rows.to_json()),
            Err(e) if p.keep_going => results.push(json!({
                "error": e.message,
                "code": e.code,
                "retryable": e.retryable,
            })),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(json!({ "results": results }))
}
