//! Node and service maintenance mode (agent endpoints). Consul marks maintenance by
//! registering a critical check, `_node_maintenance` or `_service_maintenance:ID`, and
//! lifts it by deregistering that check: `observe` looks for it in the agent's checks.

use std::collections::BTreeMap;

use medic_sdk::{Context, Effect, Failure, Observation, TypedAction};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::agent::{Agent, encode, unexpected};

pub const NODE_CHECK: &str = "_node_maintenance";

pub fn service_check(id: &str) -> String {
    format!("_service_maintenance:{id}")
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NodeParams {
    /// The agent's HTTP origin, e.g. http://127.0.0.1:8500 (granted in `grants.http`).
    pub address: String,
    /// A secret holding the ACL token, for setups without `[[http.credentials]]`.
    #[serde(default)]
    pub token_secret: Option<String>,
    /// Shown in the maintenance check's Notes (turning on only).
    #[serde(default)]
    pub reason: Option<String>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceParams {
    /// The agent's HTTP origin, e.g. http://127.0.0.1:8500 (granted in `grants.http`).
    pub address: String,
    /// A secret holding the ACL token, for setups without `[[http.credentials]]`.
    #[serde(default)]
    pub token_secret: Option<String>,
    /// The service instance's ID on this agent.
    pub service_id: String,
    /// Shown in the maintenance check's Notes (turning on only).
    #[serde(default)]
    pub reason: Option<String>,
}

#[derive(Serialize, JsonSchema, Debug)]
pub struct MaintenanceOutput {
    /// The node or service ID.
    pub target: String,
    /// Whether maintenance is now on.
    pub maintenance: bool,
    /// The check that marks it.
    pub check_id: String,
}

/// The agent's local checks by CheckID (GET /v1/agent/checks).
fn agent_checks(agent: &Agent) -> Result<BTreeMap<String, serde_json::Value>, Failure> {
    agent
        .ok("GET", "/v1/agent/checks", None)?
        .json("listing the agent's checks")
}

fn set(agent: &Agent, path: &str, enable: bool, reason: Option<&str>) -> Result<(), Failure> {
    let mut query = format!("{path}?enable={enable}");
    if let (true, Some(reason)) = (enable, reason) {
        query.push_str(&format!("&reason={}", encode(reason, false)));
    }
    let reply = agent.call("PUT", &query, None)?;
    match reply.status {
        200 => Ok(()),
        404 => Err(Failure::permanent(format!(
            "PUT {path}: Consul does not know this service on this agent ({}): check the \
             service ID (GET /v1/agent/services lists them)",
            reply.text()
        ))),
        _ => Err(unexpected("PUT", path, &reply)),
    }
}

fn observe(
    agent: &Agent,
    check_id: String,
    target: String,
    want_on: bool,
) -> Result<Observation<MaintenanceOutput>, Failure> {
    let on = agent_checks(agent)?.contains_key(&check_id);
    Ok(if on == want_on {
        Observation::Done(MaintenanceOutput {
            target,
            maintenance: on,
            check_id,
        })
    } else {
        Observation::NotDone
    })
}

macro_rules! node_action {
    ($ty:ident, $name:literal, $inverse:literal, $on:literal, $doc:literal) => {
        pub struct $ty;

        impl TypedAction for $ty {
            const NAME: &'static str = $name;
            const EFFECT: Effect = Effect::Idempotent;
            const DESCRIPTION: &'static str = $doc;
            const INVERSE: Option<&'static str> = Some($inverse);
            type Params = NodeParams;
            type Output = MaintenanceOutput;

            fn invoke(_ctx: &Context, p: NodeParams) -> Result<MaintenanceOutput, Failure> {
                let agent = Agent::new(&p.address, p.token_secret.as_deref())?;
                set(&agent, "/v1/agent/maintenance", $on, p.reason.as_deref())?;
                Ok(MaintenanceOutput {
                    target: "node".into(),
                    maintenance: $on,
                    check_id: NODE_CHECK.into(),
                })
            }

            fn observe(
                _ctx: &Context,
                p: NodeParams,
            ) -> Result<Observation<MaintenanceOutput>, Failure> {
                let agent = Agent::new(&p.address, p.token_secret.as_deref())?;
                observe(&agent, NODE_CHECK.into(), "node".into(), $on)
            }
        }
    };
}

macro_rules! service_action {
    ($ty:ident, $name:literal, $inverse:literal, $on:literal, $doc:literal) => {
        pub struct $ty;

        impl TypedAction for $ty {
            const NAME: &'static str = $name;
            const EFFECT: Effect = Effect::Idempotent;
            const DESCRIPTION: &'static str = $doc;
            const INVERSE: Option<&'static str> = Some($inverse);
            type Params = ServiceParams;
            type Output = MaintenanceOutput;

            fn invoke(_ctx: &Context, p: ServiceParams) -> Result<MaintenanceOutput, Failure> {
                let agent = Agent::new(&p.address, p.token_secret.as_deref())?;
                let path = format!(
                    "/v1/agent/service/maintenance/{}",
                    encode(&p.service_id, false)
                );
                set(&agent, &path, $on, p.reason.as_deref())?;
                Ok(MaintenanceOutput {
                    check_id: service_check(&p.service_id),
                    target: p.service_id,
                    maintenance: $on,
                })
            }

            fn observe(
                _ctx: &Context,
                p: ServiceParams,
            ) -> Result<Observation<MaintenanceOutput>, Failure> {
                let agent = Agent::new(&p.address, p.token_secret.as_deref())?;
                observe(&agent, service_check(&p.service_id), p.service_id, $on)
            }
        }
    };
}

node_action!(
    NodeMaintenanceOn,
    "node-maintenance-on",
    "node-maintenance-off",
    true,
    "Puts the agent's node in maintenance mode (PUT /v1/agent/maintenance?enable=true): \
     its services leave DNS and healthy API results"
);
node_action!(
    NodeMaintenanceOff,
    "node-maintenance-off",
    "node-maintenance-on",
    false,
    "Takes the agent's node out of maintenance mode (PUT /v1/agent/maintenance?enable=false)"
);
service_action!(
    ServiceMaintenanceOn,
    "service-maintenance-on",
    "service-maintenance-off",
    true,
    "Puts one service instance in maintenance mode (PUT /v1/agent/service/maintenance/ID)"
);
service_action!(
    ServiceMaintenanceOff,
    "service-maintenance-off",
    "service-maintenance-on",
    false,
    "Takes one service instance out of maintenance mode"
);
