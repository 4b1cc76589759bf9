//! The guest side of `sdk/wit/plugin.wit` (wasm32 only): the generated bindings and
//! the adapter that turns a typed [`Plugin`](crate::Plugin) into the WIT exports.

use std::marker::PhantomData;

use crate::{Action, Context, Effect, Failure, Observation, Plugin};

// Generated FFI glue (see the lint note in Cargo.toml); its canonical-ABI
// functions take one argument per flattened WIT field.
#[allow(unsafe_code, clippy::too_many_arguments)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "wit",
        world: "plugin",
        // Plugin crates call the export macro through `medic_sdk::export_plugin!`.
        pub_export_macro: true,
        default_bindings_module: "medic_sdk::guest::bindings",
    });
}

use bindings::medic::plugin::host;
use bindings::medic::plugin::types as wit;

/// Implements the WIT exports for any `P: Plugin`; named by `export_plugin!`.
pub struct Adapter<P>(PhantomData<P>);

impl<P: Plugin> bindings::Guest for Adapter<P> {
    fn manifest() -> wit::Manifest {
        let m = P::manifest();
        wit::Manifest {
            name: m.name,
            version: m.version,
            description: m.description,
            actions: m.actions.into_iter().map(action_to_wit).collect(),
        }
    }

    fn invoke(ctx: wit::Context, action: String, params: String) -> Result<String, wit::Failure> {
        let params = parse_params(&action, &params)?;
        let dry_run = ctx.dry_run;
        let ctx = context_from_wit(ctx);
        if dry_run {
            let plan = P::plan(&ctx, &action, params).map_err(failure_to_wit)?;
            return Ok(serde_json::to_string(&plan).expect("a dry run serializes"));
        }
        let output = P::invoke(&ctx, &action, params).map_err(failure_to_wit)?;
        Ok(output.to_string())
    }

    fn observe(
        ctx: wit::Context,
        action: String,
        params: String,
    ) -> Result<wit::Observation, wit::Failure> {
        let params = parse_params(&action, &params)?;
        let observation =
            P::observe(&context_from_wit(ctx), &action, params).map_err(failure_to_wit)?;
        Ok(match observation {
            Observation::Done(output) => wit::Observation::Done(output.to_string()),
            Observation::NotDone => wit::Observation::NotDone,
            Observation::Unknown(why) => wit::Observation::Unknown(why),
        })
    }
}

pub(crate) fn log(level: crate::log::Level, message: &str) {
    use crate::log::Level;
    let level = match level {
        Level::Trace => host::Level::Trace,
        Level::Debug => host::Level::Debug,
        Level::Info => host::Level::Info,
        Level::Warn => host::Level::Warn,
        Level::Error => host::Level::Error,
    };
    host::log(level, message);
}

fn parse_params(action: &str, params: &str) -> Result<serde_json::Value, wit::Failure> {
    serde_json::from_str(params).map_err(|e| wit::Failure {
        message: format!("params of `{action}` are not JSON: {e}"),
        retryable: false,
    })
}

fn context_from_wit(ctx: wit::Context) -> Context {
    Context {
        run_id: ctx.run_id,
        step_id: ctx.step_id,
        attempt: ctx.attempt,
        idempotency_key: ctx.idempotency_key,
    }
}

fn failure_to_wit(f: Failure) -> wit::Failure {
    wit::Failure {
        message: f.message,
        retryable: f.retryable,
    }
}

fn action_to_wit(a: Action) -> wit::Action {
    wit::Action {
        name: a.name,
        description: a.description,
        params_schema: a.params_schema.to_string(),
        output_schema: a.output_schema.to_string(),
        effect: match a.effect {
            Effect::ReadOnly => wit::Effect::ReadOnly,
            Effect::Idempotent => wit::Effect::Idempotent,
            Effect::Mutating => wit::Effect::Mutating,
        },
        inverse: a.inverse,
    }
}

pub(crate) fn progress(done: u64, total: u64, message: &str) {
    host::progress(done, total, message);
}

pub(crate) fn secret(name: &str) -> Result<String, String> {
    host::secret(name)
}

pub(crate) fn artifact_append(name: &str, data: &[u8]) -> Result<u64, String> {
    host::artifact_append(name, data)
}

pub(crate) fn artifact_read(name: &str, offset: u64, len: u32) -> Result<Vec<u8>, String> {
    host::artifact_read(name, offset, len)
}
