//! The Raft leader and peers (GET /v1/status/leader, /v1/status/peers).

use medic_sdk::{Context, Effect, Failure, Observation, TypedAction};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::agent::Agent;

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StatusParams {
    /// The agent's HTTP origin, e.g. http://127.0.0.1:8500 (granted in `grants.http`).
    pub address: String,
    /// A secret holding the ACL token, for setups without `[[http.credentials]]`.
    #[serde(default)]
    pub token_secret: Option<String>,
    /// Leader only: fail (retryably) while the cluster has no leader.
    #[serde(default)]
    pub require: bool,
}

#[derive(Serialize, JsonSchema, Debug)]
pub struct LeaderOutput {
    /// The leader's Raft address (ip:port); empty when there is none.
    pub leader: String,
    pub has_leader: bool,
}

pub struct Leader;

impl TypedAction for Leader {
    const NAME: &'static str = "leader";
    const EFFECT: Effect = Effect::ReadOnly;
    const DESCRIPTION: &'static str = "The Raft leader (GET /v1/status/leader)";
    type Params = StatusParams;
    type Output = LeaderOutput;

    fn invoke(_ctx: &Context, p: StatusParams) -> Result<LeaderOutput, Failure> {
        let agent = Agent::new(&p.address, p.token_secret.as_deref())?;
        let leader: String = agent
            .ok("GET", "/v1/status/leader", None)?
            .json("reading the leader")?;
        if p.require && leader.is_empty() {
            return Err(Failure::retryable("the Consul cluster has no leader"));
        }
        Ok(LeaderOutput {
            has_leader: !leader.is_empty(),
            leader,
        })
    }

    fn observe(_ctx: &Context, _p: StatusParams) -> Result<Observation<LeaderOutput>, Failure> {
        Ok(Observation::NotDone)
    }
}

#[derive(Serialize, JsonSchema, Debug)]
pub struct PeersOutput {
    /// The Raft peers' addresses (ip:port).
    pub peers: Vec<String>,
    pub count: usize,
}

pub struct Peers;

impl TypedAction for Peers {
    const NAME: &'static str = "peers";
    const EFFECT: Effect = Effect::ReadOnly;
    const DESCRIPTION: &'static str = "The Raft peers (GET /v1/status/peers)";
    type Params = StatusParams;
    type Output = PeersOutput;

    fn invoke(_ctx: &Context, p: StatusParams) -> Result<PeersOutput, Failure> {
        let agent = Agent::new(&p.address, p.token_secret.as_deref())?;
        let peers: Vec<String> = agent
            .ok("GET", "/v1/status/peers", None)?
            .json("reading the peers")?;
        Ok(PeersOutput {
            count: peers.len(),
            peers,
        })
    }

    fn observe(_ctx: &Context, _p: StatusParams) -> Result<Observation<PeersOutput>, Failure> {
        Ok(Observation::NotDone)
    }
}
