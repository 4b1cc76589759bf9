//! `probe`: medic's own test and diagnostics plugin. Its actions exercise every path
//! of the host and the executor (success, sleeps, TCP and HTTP reachability, a
//! deliberately non-idempotent counter with an inverse, scripted failures), so the
//! engine can be tested end to end without a vendor system.

mod counter;
mod http;
mod net;
mod sql;

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
            "Test and diagnostics actions: no-op, sleep, TCP/HTTP checks, a counter, SQL",
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
            Action::new("spin", Effect::ReadOnly)
                .description("Busy-loops for `ms` milliseconds without yielding (tests CPU limits)")
                .params(json!({
                    "type": "object",
                    "properties": {"ms": {"type": "integer", "minimum": 0}},
                    "required": ["ms"],
                    "additionalProperties": false
                }))
                .output(object_with(&[("spun_ms", json!({"type": "integer"}))])),
        )
        .action(
            Action::new("alloc", Effect::ReadOnly)
                .description("Allocates and touches `mib` MiB of memory (tests memory limits)")
                .params(json!({
                    "type": "object",
                    "properties": {"mib": {"type": "integer", "minimum": 0}},
                    "required": ["mib"],
                    "additionalProperties": false
                }))
                .output(object_with(&[(
                    "allocated_mib",
                    json!({"type": "integer"}),
                )])),
        )
        .action(
            Action::new("crash", Effect::ReadOnly)
                .description("Panics with `message` (tests trap handling)")
                .params(json!({
                    "type": "object",
                    "properties": {"message": {"type": "string"}},
                    "required": ["message"],
                    "additionalProperties": false
                }))
                .output(json!({"type": "object"})),
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
        .action(http::request_action())
        .action(http::progress_action())
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
        .action(sql::query_action())
        .action(sql::session_action())
    }

    fn invoke(ctx: &Context, action: &str, params: Value) -> Result<Value, Failure> {
        match action {
            "noop" => noop(action, params),
            "sleep" => sleep(action, params),
            "spin" => spin(action, params),
            "alloc" => alloc(action, params),
            "crash" => crash(action, params),
            "tcp-check" => tcp_check(action, params),
            "http-check" => http_check(action, params),
            "http-request" => http::request(action, params),
            "progress" => http::progress(action, params),
            "counter-add" => counter::add(ctx, action, params, 1),
            "counter-sub" => counter::add(ctx, action, params, -1),
            "sql-query" => sql::query(action, params),
            "sql-session" => sql::session(action, params),
            other => Err(Failure::unknown_action(other)),
        }
    }

    fn observe(ctx: &Context, action: &str, params: Value) -> Result<Observation, Failure> {
        match action {
            "counter-add" | "counter-sub" => counter::observe(ctx, action, params),
            // A statement's effect is whatever it was: the probe cannot tell.
            "sql-query" | "sql-session" => Ok(Observation::Unknown(format!(
                "`{action}` runs arbitrary SQL; look at the server"
            ))),
            // Read-only actions leave no effect to find: running them again is both
            // safe and the only way to get their output.
            "noop" | "sleep" | "spin" | "alloc" | "crash" | "tcp-check" | "http-check"
            | "http-request" | "progress" => Ok(Observation::NotDone),
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

fn spin(action: &str, params: Value) -> Result<Value, Failure> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Params {
        ms: u64,
    }
    let p: Params = medic_sdk::params(action, params)?;
    let deadline = std::time::Instant::now() + Duration::from_millis(p.ms);
    let mut x: u64 = 1;
    // Mostly pure computation between clock reads: the host has to interrupt it.
    while std::time::Instant::now() < deadline {
        for _ in 0..1_000_000 {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
    }
    Ok(json!({"spun_ms": p.ms}))
}

fn alloc(action: &str, params: Value) -> Result<Value, Failure> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Params {
        mib: usize,
    }
    let p: Params = medic_sdk::params(action, params)?;
    let mut block = vec![0u8; p.mib << 20];
    // Touch every page so the allocation is real, not just reserved.
    for i in (0..block.len()).step_by(4096) {
        block[i] = 1;
    }
    std::hint::black_box(&block);
    Ok(json!({"allocated_mib": p.mib}))
}

fn crash(action: &str, params: Value) -> Result<Value, Failure> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Params {
        message: String,
    }
    let p: Params = medic_sdk::params(action, params)?;
    panic!("{}", p.message);
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
