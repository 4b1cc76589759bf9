//! `hello`: a medic plugin made from the SDK's template (docs/plugin-guide.md).
//!
//! - `ping` (read-only): opens a TCP connection to a granted `ip:port`.
//! - `write-marker` (mutating, undone by `erase-marker`): writes a note into a run
//!   artifact, stamped with the call's idempotency key, which `observe` looks for.
//!
//! Replace them with your system's actions; keep the shape: one type per action,
//! serde structs for its params and output, `observe` for every mutating action.

use std::io::Write;
use std::time::{Duration, Instant};

use medic_sdk::{
    Actions, Context, Effect, Failure, Observation, TypedAction, TypedPlugin, artifact, log, tcp,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

struct Hello;

impl TypedPlugin for Hello {
    // The crate name is the stem of the .wasm file cargo builds, which is the name
    // medic looks the plugin up by: the two cannot disagree.
    const NAME: &'static str = env!("CARGO_CRATE_NAME");
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str = "Template plugin: a TCP ping and a marker artifact";

    fn actions() -> Actions {
        Actions::new()
            .add::<Ping>()
            .add::<WriteMarker>()
            .add::<EraseMarker>()
    }
}

medic_sdk::export_plugin!(Hello);

// ---- ping: read-only ------------------------------------------------------------

/// `with:` of `ping`. Doc comments become the schema's descriptions.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PingParams {
    /// `ip:port` to connect to; the plan must grant it (`grants: { connect: [...] }`).
    pub address: String,
    /// Give up connecting after this many milliseconds.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

fn default_timeout_ms() -> u64 {
    5_000
}

#[derive(Debug, Serialize, JsonSchema, PartialEq)]
pub struct PingOutput {
    pub address: String,
    /// How long the connection took to open.
    pub connect_ms: u64,
}

pub struct Ping;

impl TypedAction for Ping {
    const NAME: &'static str = "ping";
    const EFFECT: Effect = Effect::ReadOnly;
    const DESCRIPTION: &'static str = "Opens (and closes) a TCP connection to `address`";
    type Params = PingParams;
    type Output = PingOutput;

    fn invoke(_ctx: &Context, p: PingParams) -> Result<PingOutput, Failure> {
        let started = Instant::now();
        let stream = tcp::connect(&p.address, Some(Duration::from_millis(p.timeout_ms)))?;
        drop(stream);
        let connect_ms = started.elapsed().as_millis() as u64;
        log::info(&format!("{} answered in {connect_ms} ms", p.address));
        Ok(PingOutput {
            address: p.address,
            connect_ms,
        })
    }

    /// A read-only action leaves no effect to find: running it again is safe and
    /// the only way to get its output.
    fn observe(_ctx: &Context, _p: PingParams) -> Result<Observation<PingOutput>, Failure> {
        Ok(Observation::NotDone)
    }
}

// ---- write-marker: mutating, with observe and an inverse -------------------------

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MarkerParams {
    /// The artifact's name: letters, digits, `.`, `-`, `_`.
    pub name: String,
    /// What to write.
    pub note: String,
}

#[derive(Debug, Serialize, JsonSchema, PartialEq)]
pub struct MarkerOutput {
    pub name: String,
    /// The idempotency key the note is stamped with.
    pub key: String,
    /// The artifact's size afterwards.
    pub bytes: u64,
}

pub struct WriteMarker;

impl TypedAction for WriteMarker {
    const NAME: &'static str = "write-marker";
    const EFFECT: Effect = Effect::Mutating;
    const DESCRIPTION: &'static str = "Writes `note` into the run's artifact `name`";
    const INVERSE: Option<&'static str> = Some("erase-marker");
    type Params = MarkerParams;
    type Output = MarkerOutput;

    fn invoke(ctx: &Context, p: MarkerParams) -> Result<MarkerOutput, Failure> {
        medic_sdk::progress(0, 1, &format!("writing {}", p.name));
        let mut artifact = artifact::Writer::new(&p.name);
        // Stamp the effect with the idempotency key so `observe` can recognise it;
        // a real target would be handed the key (a request id, a comment, a label).
        let line = format!("{} {}\n", ctx.idempotency_key, p.note);
        artifact
            .write_all(line.as_bytes())
            .map_err(|e| Failure::permanent(format!("writing artifact `{}`: {e}", p.name)))?;
        medic_sdk::progress(1, 1, &format!("wrote {}", p.name));
        Ok(MarkerOutput {
            name: p.name,
            key: ctx.idempotency_key.clone(),
            bytes: artifact.size(),
        })
    }

    /// Asked after a crash of medic left this call's outcome unknown: `Done` if the
    /// note with this call's key is there (medic records the output without calling
    /// again), `NotDone` if not (medic calls again).
    fn observe(ctx: &Context, p: MarkerParams) -> Result<Observation<MarkerOutput>, Failure> {
        let Ok(contents) = artifact::read_to_end(&p.name) else {
            return Ok(Observation::NotDone);
        };
        let stamped = String::from_utf8_lossy(&contents)
            .lines()
            .any(|l| l.split(' ').next() == Some(ctx.idempotency_key.as_str()));
        Ok(if stamped {
            Observation::Done(MarkerOutput {
                name: p.name,
                key: ctx.idempotency_key.clone(),
                bytes: contents.len() as u64,
            })
        } else {
            Observation::NotDone
        })
    }
}

// ---- erase-marker: the inverse ----------------------------------------------------

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EraseParams {
    /// The artifact to empty.
    pub name: String,
}

#[derive(Debug, Serialize, JsonSchema, PartialEq)]
pub struct EraseOutput {
    pub name: String,
}

pub struct EraseMarker;

impl TypedAction for EraseMarker {
    const NAME: &'static str = "erase-marker";
    // Emptying twice leaves it empty: safe to repeat, so medic may re-run it blindly.
    const EFFECT: Effect = Effect::Idempotent;
    const DESCRIPTION: &'static str = "Empties the run's artifact `name`";
    type Params = EraseParams;
    type Output = EraseOutput;

    fn invoke(_ctx: &Context, p: EraseParams) -> Result<EraseOutput, Failure> {
        // The first append of a call starts the artifact afresh: appending nothing
        // empties it.
        artifact::append(&p.name, b"")?;
        Ok(EraseOutput { name: p.name })
    }

    fn observe(_ctx: &Context, p: EraseParams) -> Result<Observation<EraseOutput>, Failure> {
        Ok(match artifact::read(&p.name, 0, 1) {
            Ok(bytes) if bytes.is_empty() => Observation::Done(EraseOutput { name: p.name }),
            _ => Observation::NotDone,
        })
    }
}

// Native unit tests: `cargo test` on your machine (not wasm). The SDK's TCP helper
// works natively; the host's services (artifacts, secrets) answer with an error.
#[cfg(test)]
mod tests {
    use std::net::TcpListener;

    use medic_sdk::{Plugin, json};

    use super::*;

    fn ctx() -> Context {
        Context {
            run_id: "r1".into(),
            step_id: "s1".into(),
            attempt: 1,
            idempotency_key: "r1/s1/1".into(),
        }
    }

    #[test]
    fn the_manifest_derives_schemas_from_the_types() {
        let m = Hello::manifest();
        assert_eq!(m.name, "hello");
        let ping = &m.actions[0];
        assert_eq!(ping.params_schema["required"], json!(["address"]));
        assert_eq!(ping.params_schema["additionalProperties"], json!(false));
        let write = &m.actions[1];
        assert_eq!(write.effect, Effect::Mutating);
        assert_eq!(write.inverse.as_deref(), Some("erase-marker"));
    }

    #[test]
    fn ping_connects_to_a_listener() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let out = Hello::invoke(&ctx(), "ping", json!({ "address": address })).unwrap();
        assert_eq!(out["address"], json!(address));
    }

    #[test]
    fn bad_params_name_the_action_and_field() {
        let err = Hello::invoke(&ctx(), "ping", json!({ "address": 5 })).unwrap_err();
        assert!(err.message.contains("`ping`") && err.message.contains("`address`"));
    }
}
