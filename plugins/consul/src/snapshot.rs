//! Snapshots of the servers' state into a run artifact (GET /v1/snapshot) and back
//! (PUT /v1/snapshot). The whole snapshot passes through the plugin's memory (64 MiB).

use std::io::Write;

use medic_sdk::{Context, Effect, Failure, Observation, TypedAction, artifact};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::agent::Agent;

fn default_artifact() -> String {
    "consul.snap".into()
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SnapshotParams {
    /// The agent's HTTP origin, e.g. http://127.0.0.1:8500 (granted in `grants.http`).
    pub address: String,
    /// A secret holding the ACL token (a management token), for setups without
    /// `[[http.credentials]]`.
    #[serde(default)]
    pub token_secret: Option<String>,
    /// The run artifact to write (save) or read (restore).
    #[serde(default = "default_artifact")]
    pub artifact: String,
}

#[derive(Serialize, JsonSchema, Debug)]
pub struct SnapshotOutput {
    pub artifact: String,
    pub bytes: u64,
    /// The Raft index of the snapshot (X-Consul-Index), save only.
    pub index: Option<u64>,
}

pub struct SnapshotSave;

impl TypedAction for SnapshotSave {
    const NAME: &'static str = "snapshot-save";
    const EFFECT: Effect = Effect::Idempotent;
    const DESCRIPTION: &'static str =
        "Saves a snapshot of the servers' state (GET /v1/snapshot) into a run artifact";
    type Params = SnapshotParams;
    type Output = SnapshotOutput;

    fn invoke(_ctx: &Context, p: SnapshotParams) -> Result<SnapshotOutput, Failure> {
        let agent = Agent::new(&p.address, p.token_secret.as_deref())?;
        let reply = agent.ok("GET", "/v1/snapshot", None)?;
        if reply.body.is_empty() {
            return Err(Failure::retryable("GET /v1/snapshot: an empty snapshot"));
        }
        let mut writer = artifact::Writer::new(&p.artifact);
        writer
            .write_all(&reply.body)
            .map_err(|e| Failure::permanent(format!("writing artifact `{}`: {e}", p.artifact)))?;
        Ok(SnapshotOutput {
            artifact: p.artifact,
            bytes: reply.body.len() as u64,
            index: reply.index,
        })
    }

    /// Saving again is harmless (the artifact starts afresh), so observe says not done.
    fn observe(_ctx: &Context, _p: SnapshotParams) -> Result<Observation<SnapshotOutput>, Failure> {
        Ok(Observation::NotDone)
    }
}

pub struct SnapshotRestore;

impl TypedAction for SnapshotRestore {
    const NAME: &'static str = "snapshot-restore";
    const EFFECT: Effect = Effect::Idempotent;
    const DESCRIPTION: &'static str = "Restores the servers' state from a run artifact a \
         snapshot-save of this run wrote (PUT /v1/snapshot); restoring the same snapshot twice \
         leaves the same state";
    type Params = SnapshotParams;
    type Output = SnapshotOutput;

    fn invoke(_ctx: &Context, p: SnapshotParams) -> Result<SnapshotOutput, Failure> {
        let data = artifact::read_to_end(&p.artifact)?;
        if data.is_empty() {
            return Err(Failure::permanent(format!(
                "artifact `{}` is empty or missing: save a snapshot (snapshot-save) earlier in \
                 this run",
                p.artifact
            )));
        }
        let agent = Agent::new(&p.address, p.token_secret.as_deref())?;
        agent.ok("PUT", "/v1/snapshot", Some(data.clone()))?;
        Ok(SnapshotOutput {
            artifact: p.artifact,
            bytes: data.len() as u64,
            index: None,
        })
    }

    /// Whether the servers already hold the snapshot cannot be read back; restoring
    /// it again gives the same state, so: not done.
    fn observe(_ctx: &Context, _p: SnapshotParams) -> Result<Observation<SnapshotOutput>, Failure> {
        Ok(Observation::NotDone)
    }
}
