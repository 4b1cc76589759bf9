//! `probe`: medic's own test and diagnostics plugin. Its actions exercise every path
//! of the host and the executor (success, sleeps, TCP and HTTP reachability, a
//! deliberately non-idempotent counter with an inverse, scripted failures), so the
//! engine can be tested end to end without a vendor system.

mod counter;
mod net;

use std::time::Duration;

use medic_sdk::{Action, Context, Effect, Failure, Manifest, Observation, Plugin, Value, json};
use serde::Deserialize;

struct Probe;

medic_sdk::export_plugin!(Probe);

impl Plugin for Probe {
    fn manifest() -> Manifest {
        Manifest::new(
            "probe",
            env!("CARGO_PKG_VERSION"),
            "Test and diagnostics actions: no-op, sleep, TCP/HTTP checks, a counter",
        )
        .action(
            Action::new("noop", Effect::ReadOnly)
                .description("Does nothing; returns `echo` if given")
                .params(json!({
                    "type": "object",
                    "properties": {"echo": {}},
                    "required": [],
                    "additionalProperties": false
                }))
                .output(json!({"type": "object", "properties": {"echo": {}}})),
        )
        .action(
            Action::new("sleep", Effect::ReadOnly)
                .description("Sleeps for `ms` milliseconds")
                .params(json!({
                    "type": "object",
                    "properties": {"ms": {"type": "integer", "minimum": 0}},
                    "required": ["ms"],
                    "additionalProperties": false
                }))
                .output(object_with(&[("slept_ms", json!({"type": "integer"}))])),
        )
        .action(
            Action::new("tcp-check", Effect::ReadOnly)
                .description("Opens (and closes) a TCP connection to `address`")
                .params(json!({
                    "type": "object",
                    "properties": {
                        "address": address_schema(),
                        "timeout_ms": {"type": "integer", "minimum": 1}
                    },
                    "required": ["address"],
                    "additionalProperties": false
                }))
                .output(object_with(&[
                    ("address", json!({"type": "string"})),
                    ("connect_ms", json!({"type": "integer"})),
                ])),
        )
        .action(
            Action::new("http-check", Effect::ReadOnly)
                .description("GETs an http:// URL and checks the response status")
                .params(json!({
                    "type": "object",
                    "properties": {
                        "url": {"type": "string", "pattern": "^http://[^/\\s]+(/\\S*)?$"},
                        "expect_status": {"type": "integer", "minimum": 100, "maximum": 599}
                    },
                    "required": ["url"],
                    "additionalProperties": false
                }))
                .output(object_with(&[("status", json!({"type": "integer"}))])),
        )
        .action(
            Action::new("counter-add", Effect::Mutating)
                .description("Adds `amount` to `counter` on a counter target (not idempotent)")
                .params(counter::params_schema(true))
                .output(counter::output_schema())
                .inverse("counter-sub"),
        )
        .action(
            Action::new("counter-sub", Effect::Mutating)
                .description("Subtracts `amount` from `counter` on a counter target")
                .params(counter::params_schema(false))
                .output(counter::output_schema())
                .inverse("counter-add"),
        )
    }

    fn invoke(ctx: &Context, action: &str, params: Value) -> Result<Value, Failure> {
        match action {
            "noop" => noop(action, params),
            "sleep" => sleep(action, params),
            "tcp-check" => tcp_check(action, params),
            "http-check" => http_check(action, params),
            "counter-add" => counter::add(ctx, action, params, 1),
            "counter-sub" => counter::add(ctx, action, params, -1),
            other => Err(Failure::unknown_action(other)),
        }
    }

    fn observe(ctx: &Context, action: &str, params: Value) -> Result<Observation, Failure> {
        match action {
            "counter-add" | "counter-sub" => counter::observe(ctx, action, params),
            // Read-only actions leave no effect to find: running them again is both
            // safe and the only way to get their output.
            "noop" | "sleep" | "tcp-check" | "http-check" => Ok(Observation::NotDone),
            other => Err(Failure::unknown_action(other)),
        }
    }
}

fn address_schema() -> Value {
    json!({"type": "string", "pattern": "^\\S+:[0-9]{1,5}$"})
}

fn object_with(props: &[(&str, Value)]) -> Value {
    let properties: serde_json::Map<String, Value> = props
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    let required: Vec<&str> = props.iter().map(|(k, _)| *k).collect();
    json!({"type": "object", "properties": properties, "required": required})
}

fn noop(action: &str, params: Value) -> Result<Value, Failure> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Params {
        echo: Option<Value>,
    }
    let p: Params = medic_sdk::params(action, params)?;
    Ok(match p.echo {
        Some(echo) => json!({"echo": echo}),
        None => json!({}),
    })
}

fn sleep(action: &str, params: Value) -> Result<Value, Failure> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Params {
        ms: u64,
    }
    let p: Params = medic_sdk::params(action, params)?;
    std::thread::sleep(Duration::from_millis(p.ms));
    Ok(json!({"slept_ms": p.ms}))
}

fn tcp_check(action: &str, params: Value) -> Result<Value, Failure> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Params {
        address: String,
        timeout_ms: Option<u64>,
    }
    let p: Params = medic_sdk::params(action, params)?;
    let timeout = p.timeout_ms.map(Duration::from_millis);
    let started = std::time::Instant::now();
    let stream = net::connect(&p.address, timeout)?;
    let connect_ms = started.elapsed().as_millis() as u64;
    drop(stream);
    Ok(json!({"address": p.address, "connect_ms": connect_ms}))
}

fn http_check(action: &str, params: Value) -> Result<Value, Failure> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Params {
        url: String,
        expect_status: Option<u16>,
    }
    let p: Params = medic_sdk::params(action, params)?;
    let expect = p.expect_status.unwrap_or(200);
    let status = net::http_get_status(&p.url)?;
    if status != expect {
        return Err(Failure::retryable(format!(
            "GET {} answered {status}, expected {expect}",
            p.url
        )));
    }
    Ok(json!({"status": status}))
}
