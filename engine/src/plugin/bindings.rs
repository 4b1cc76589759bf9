//! The host side of `sdk/wit/plugin.wit`: generated bindings, conversions from the
//! WIT records to the module's public types, the `host` import (log, progress,
//! secrets, artifacts) and the `sql` import (which runs in `sql.rs`).

use serde_json::Value;

use super::wasi::CallState;
use super::{ActionInfo, CallContext, Error, Manifest, Observation};
use crate::plan::EffectClass;

/// Kept in its own namespace: the WIT names (`Manifest`, `Observation`) are also
/// the names of the module's public types.
mod generated {
    wasmtime::component::bindgen!({
        path: "../sdk/wit",
        world: "plugin",
        // Exports run on a fiber so the epoch ticker can make a busy guest yield and
        // a tokio timeout can drop the call. `host` stays synchronous: it never blocks
        // for long. `sql.query` waits on a server, so it is async: a slow statement
        // parks the call instead of a tokio worker, and the timeout still drops it.
        imports: { "medic:plugin/sql.query": async },
        exports: { default: async },
    });
}

pub(super) use generated::medic::plugin::host;
pub(super) use generated::medic::plugin::sql;
pub(super) use generated::medic::plugin::types as wit;
pub(super) use generated::{Plugin, PluginPre};

impl host::Host for CallState {
    fn log(&mut self, level: host::Level, message: String) {
        let c = &self.caller;
        // `tracing` levels are static per call site, hence one event per level.
        macro_rules! event {
            ($level:expr) => {
                tracing::event!(
                    target: "medic::plugin::guest",
                    $level,
                    plugin = %c.plugin,
                    run_id = %c.run_id,
                    step_id = %c.step_id,
                    attempt = c.attempt,
                    "{message}"
                )
            };
        }
        match level {
            host::Level::Trace => event!(tracing::Level::TRACE),
            host::Level::Debug => event!(tracing::Level::DEBUG),
            host::Level::Info => event!(tracing::Level::INFO),
            host::Level::Warn => event!(tracing::Level::WARN),
            host::Level::Error => event!(tracing::Level::ERROR),
        }
    }

    fn progress(&mut self, done: u64, total: u64, message: String) {
        let c = &self.caller;
        tracing::info!(
            target: "medic::plugin::guest",
            plugin = %c.plugin,
            run_id = %c.run_id,
            step_id = %c.step_id,
            attempt = c.attempt,
            done,
            total,
            "progress: {message}"
        );
        // Latest report only, never waiting: the executor reads it a few times a
        // second and records it as the step's progress event.
        if let Some(sink) = &self.progress {
            sink.report(done, total, message);
        }
    }

    fn secret(&mut self, name: String) -> Result<String, String> {
        if !self.grants.secrets.contains(&name) {
            return Err(format!(
                "secret `{name}` is not granted to plugin `{}`: list it under the plan's \
                 `grants: {{ secrets: [...] }}` for this plugin",
                self.caller.plugin
            ));
        }
        super::read_secret(self.operator.secrets_dir.as_deref(), &name)
    }

    fn artifact_append(&mut self, name: String, data: Vec<u8>) -> Result<u64, String> {
        use std::io::Write;
        let path = self.artifact_path(&name)?;
        let fresh = self.artifacts_started.insert(name.clone());
        let failed =
            |e: std::io::Error| format!("artifact `{name}`: writing {}: {e}", path.display());
        if fresh && let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(failed)?;
        }
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .append(!fresh)
            .truncate(fresh)
            .open(&path)
            .map_err(failed)?;
        file.write_all(&data).map_err(failed)?;
        // Durable before the guest is told: a later step may depend on it.
        file.sync_data().map_err(failed)?;
        Ok(file.metadata().map_err(failed)?.len())
    }

    fn artifact_read(&mut self, name: String, offset: u64, len: u32) -> Result<Vec<u8>, String> {
        use std::io::{Read, Seek};
        let path = self.artifact_path(&name)?;
        let mut file = std::fs::File::open(&path)
            .map_err(|e| format!("artifact `{name}` of run {}: {e}", self.caller.run_id))?;
        let failed =
            |e: std::io::Error| format!("artifact `{name}`: reading {}: {e}", path.display());
        file.seek(std::io::SeekFrom::Start(offset))
            .map_err(failed)?;
        // Bounded by the guest's own memory limit as well, but never more than 16 MiB
        // per call of this function.
        let len = (len as u64).min(16 << 20);
        let mut out = Vec::new();
        file.take(len).read_to_end(&mut out).map_err(failed)?;
        Ok(out)
    }
}

impl CallState {
    /// `ARTIFACTS_DIR/RUN_ID/NAME`, once `name` is known to stay inside it.
    fn artifact_path(&self, name: &str) -> Result<std::path::PathBuf, String> {
        let valid = !name.is_empty()
            && name.len() <= 128
            && !name.starts_with('.')
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
        if !valid {
            return Err(format!(
                "`{name}` is not an artifact name: letters, digits, `.`, `-` and `_`, not \
                 starting with `.`, at most 128"
            ));
        }
        let Some(dir) = &self.artifacts_dir else {
            return Err(format!("artifact `{name}`: this medic keeps no artifacts"));
        };
        if !super::valid_name(&self.caller.run_id) {
            return Err(format!(
                "artifact `{name}`: only a run's steps have artifacts"
            ));
        }
        Ok(dir.join(&self.caller.run_id).join(name))
    }
}

impl sql::Host for CallState {
    async fn query(
        &mut self,
        connection: String,
        statement: String,
        params: Vec<sql::Value>,
    ) -> Result<sql::RowSet, sql::SqlError> {
        super::sql::query(self, connection, statement, params).await
    }
}

pub(super) fn context_to_wit(ctx: &CallContext) -> wit::Context {
    wit::Context {
        run_id: ctx.run_id.clone(),
        step_id: ctx.step_id.clone(),
        attempt: ctx.attempt,
        idempotency_key: ctx.idempotency_key.clone(),
        dry_run: ctx.dry_run,
    }
}

/// Converts the guest's manifest; `path` and `sha256` describe the file it came from.
pub(super) fn manifest_from_wit(
    m: wit::Manifest,
    path: &str,
    sha256: String,
) -> Result<Manifest, Error> {
    let schema = |action: &str, which: &str, text: &str| -> Result<Value, Error> {
        serde_json::from_str(text).map_err(|e| Error::Load {
            path: path.to_string(),
            message: format!(
                "the {which} schema of action `{action}` is not JSON ({e}); fix the plugin's manifest"
            ),
        })
    };
    let actions = m
        .actions
        .into_iter()
        .map(|a| {
            Ok(ActionInfo {
                params_schema: schema(&a.name, "params", &a.params_schema)?,
                output_schema: schema(&a.name, "output", &a.output_schema)?,
                effect: match a.effect {
                    wit::Effect::ReadOnly => EffectClass::ReadOnly,
                    wit::Effect::Idempotent => EffectClass::Idempotent,
                    wit::Effect::Mutating => EffectClass::Mutating,
                },
                name: a.name,
                description: a.description,
                inverse: a.inverse,
            })
        })
        .collect::<Result<Vec<_>, Error>>()?;
    Ok(Manifest {
        name: m.name,
        version: m.version,
        description: m.description,
        actions,
        sha256,
    })
}

pub(super) fn failure_from_wit(f: wit::Failure) -> Error {
    Error::Failed {
        message: f.message,
        retryable: f.retryable,
    }
}

pub(super) fn observation_from_wit(o: wit::Observation) -> Result<Observation, Error> {
    Ok(match o {
        wit::Observation::Done(output) => Observation::Done(parse_output(&output)?),
        wit::Observation::NotDone => Observation::NotDone,
        wit::Observation::Unknown(why) => Observation::Unknown(why),
    })
}

pub(super) fn parse_output(text: &str) -> Result<Value, Error> {
    serde_json::from_str(text).map_err(|e| Error::InvalidOutput {
        message: format!("not JSON ({e}): {}", preview(text)),
    })
}

/// The start of a possibly huge guest string, for error messages.
fn preview(text: &str) -> String {
    const MAX: usize = 200;
    match text.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}...", &text[..i]),
        None => text.to_string(),
    }
}
