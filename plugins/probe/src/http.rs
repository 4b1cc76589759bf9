//! Actions that exercise the host's `wasi:http` (granted origins, credentials) and
//! its progress reports, for medic's own tests.

use std::collections::BTreeMap;
use std::time::Duration;

use medic_sdk::http::Request;
use medic_sdk::{Action, Effect, Failure, Value, json};
use serde::Deserialize;

pub fn request_action() -> Action {
    Action::new("http-request", Effect::ReadOnly)
        .description(
            "Sends one HTTP request through wasi:http and returns the status, headers and body",
        )
        .params(json!({
            "type": "object",
            "properties": {
                "url": {"type": "string"},
                "method": {"type": "string"},
                "headers": {"type": "object", "additionalProperties": {"type": "string"}},
                "body": {"type": "string"},
                "timeout_ms": {"type": "integer", "minimum": 1}
            },
            "required": ["url"],
            "additionalProperties": false
        }))
        .output(json!({
            "type": "object",
            "properties": {
                "status": {"type": "integer"},
                "headers": {"type": "object"},
                "body": {"type": "string"}
            },
            "required": ["status", "headers", "body"]
        }))
}

pub fn request(action: &str, params: Value) -> Result<Value, Failure> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Params {
        url: String,
        method: Option<String>,
        #[serde(default)]
        headers: BTreeMap<String, String>,
        body: Option<String>,
        timeout_ms: Option<u64>,
    }
    let p: Params = medic_sdk::params(action, params)?;
    let mut request = Request::new(p.method.as_deref().unwrap_or("GET"), &p.url);
    for (name, value) in &p.headers {
        request = request.header(name, value);
    }
    if let Some(body) = p.body {
        request = request.body(body);
    }
    if let Some(ms) = p.timeout_ms {
        request = request.timeout(Duration::from_millis(ms));
    }
    let response = request.send()?;
    let headers: serde_json::Map<String, Value> = response
        .headers
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    Ok(json!({
        "status": response.status,
        "headers": headers,
        "body": response.text(),
    }))
}

pub fn progress_action() -> Action {
    Action::new("progress", Effect::ReadOnly)
        .description("Reports progress `steps` times, `interval_ms` apart, then returns")
        .params(json!({
            "type": "object",
            "properties": {
                "steps": {"type": "integer", "minimum": 1},
                "interval_ms": {"type": "integer", "minimum": 0}
            },
            "required": ["steps"],
            "additionalProperties": false
        }))
        .output(json!({
            "type": "object",
            "properties": {"reported": {"type": "integer"}},
            "required": ["reported"]
        }))
}

pub fn progress(action: &str, params: Value) -> Result<Value, Failure> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Params {
        steps: u64,
        interval_ms: Option<u64>,
    }
    let p: Params = medic_sdk::params(action, params)?;
    let interval = Duration::from_millis(p.interval_ms.unwrap_or(0));
    for done in 1..=p.steps {
        if !interval.is_zero() {
            std::thread::sleep(interval);
        }
        report(done, p.steps, &format!("step {done} of {}", p.steps));
    }
    Ok(json!({"reported": p.steps}))
}

fn report(done: u64, total: u64, message: &str) {
    #[cfg(target_arch = "wasm32")]
    medic_sdk::guest::bindings::medic::plugin::host::progress(done, total, message);
    #[cfg(not(target_arch = "wasm32"))]
    let _ = (done, total, message);
}
