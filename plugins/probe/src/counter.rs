//! The counter actions and the client of the counter target's line protocol:
//! `ADD <counter> <amount> <key>` → `OK <value>`, `HAS <key>` → `YES`/`NO`,
//! `GET <counter>` → `VALUE <value>`. `ADD` is deliberately not idempotent, so
//! crash recovery has to use `observe` (`HAS`) instead of re-running.

use std::time::Duration;

use medic_sdk::{Context, Failure, Observation, Value, json};
use serde::Deserialize;

use crate::net;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    address: String,
    counter: String,
    amount: i64,
    delay_before_ms: Option<u64>,
    delay_after_ms: Option<u64>,
    /// Attempts before this one fail with a retryable failure (tests retries
    /// without any state in the target).
    fail_until_attempt: Option<u32>,
    /// Fail permanently (tests failure policies and rollback).
    #[serde(default)]
    fail: bool,
}

pub fn params_schema(with_failures: bool) -> Value {
    let mut properties = json!({
        "address": crate::address_schema(),
        "counter": {"type": "string", "pattern": "^\\S+$"},
        "amount": {"type": "integer"},
        "delay_before_ms": {"type": "integer", "minimum": 0},
        "delay_after_ms": {"type": "integer", "minimum": 0}
    });
    if with_failures {
        properties["fail_until_attempt"] = json!({"type": "integer", "minimum": 1});
        properties["fail"] = json!({"type": "boolean"});
    }
    json!({
        "type": "object",
        "properties": properties,
        "required": ["address", "counter", "amount"],
        "additionalProperties": false
    })
}

pub fn output_schema() -> Value {
    crate::object_with(&[
        ("counter", json!({"type": "string"})),
        ("value", json!({"type": "integer"})),
    ])
}

/// `sign` is 1 for counter-add, -1 for counter-sub.
pub fn add(ctx: &Context, action: &str, params: Value, sign: i64) -> Result<Value, Failure> {
    let p: Params = medic_sdk::params(action, params)?;
    if p.fail {
        return Err(Failure::permanent(format!(
            "{action} on counter `{}` failed as asked (`fail: true`)",
            p.counter
        )));
    }
    if let Some(until) = p.fail_until_attempt
        && ctx.attempt < until
    {
        return Err(Failure::retryable(format!(
            "{action} on counter `{}`: attempt {} fails as asked (`fail_until_attempt: {until}`)",
            p.counter, ctx.attempt
        )));
    }
    let amount = p
        .amount
        .checked_mul(sign)
        .ok_or_else(|| Failure::permanent(format!("amount {} cannot be negated", p.amount)))?;
    if let Some(ms) = p.delay_before_ms {
        std::thread::sleep(Duration::from_millis(ms));
    }
    medic_sdk::log::debug(&format!(
        "{action}: ADD {} {amount} {} at {}",
        p.counter, ctx.idempotency_key, p.address
    ));
    let reply = net::exchange(
        &p.address,
        &format!("ADD {} {amount} {}", p.counter, ctx.idempotency_key),
    )?;
    let value = parse_reply(&p.address, &reply, "OK")?;
    if let Some(ms) = p.delay_after_ms {
        std::thread::sleep(Duration::from_millis(ms));
    }
    Ok(json!({"counter": p.counter, "value": value}))
}

pub fn observe(ctx: &Context, action: &str, params: Value) -> Result<Observation, Failure> {
    let p: Params = medic_sdk::params(action, params)?;
    let reply = net::exchange(&p.address, &format!("HAS {}", ctx.idempotency_key))?;
    match reply.as_str() {
        "YES" => {
            let reply = net::exchange(&p.address, &format!("GET {}", p.counter))?;
            let value = parse_reply(&p.address, &reply, "VALUE")?;
            Ok(Observation::Done(
                json!({"counter": p.counter, "value": value}),
            ))
        }
        "NO" => Ok(Observation::NotDone),
        other => Err(Failure::retryable(format!(
            "counter target {} answered {other:?} to HAS; expected YES or NO",
            p.address
        ))),
    }
}

/// Parses `<word> <integer>`.
fn parse_reply(address: &str, reply: &str, word: &str) -> Result<i64, Failure> {
    reply
        .strip_prefix(word)
        .and_then(|rest| rest.strip_prefix(' '))
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| {
            Failure::retryable(format!(
                "counter target {address} answered {reply:?}; expected `{word} <integer>`"
            ))
        })
}
