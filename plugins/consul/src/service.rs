//! Registering and deregistering a service instance on the agent (PUT
//! /v1/agent/service/register, PUT /v1/agent/service/deregister/:id); `observe` asks
//! the agent for the instance (GET /v1/agent/service/:id: 200 or 404).

use std::collections::BTreeMap;

use medic_sdk::{Context, Effect, Failure, Observation, TypedAction};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::agent::{Agent, encode, unexpected};

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterParams {
    /// The agent's HTTP origin, e.g. http://127.0.0.1:8500 (granted in `grants.http`).
    pub address: String,
    /// A secret holding the ACL token, for setups without `[[http.credentials]]`.
    #[serde(default)]
    pub token_secret: Option<String>,
    /// The instance's ID (unique on the agent).
    pub service_id: String,
    /// The service's name.
    pub name: String,
    /// The instance's address (default: the node's).
    #[serde(default)]
    pub service_address: Option<String>,
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub meta: BTreeMap<String, String>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeregisterParams {
    /// The agent's HTTP origin, e.g. http://127.0.0.1:8500 (granted in `grants.http`).
    pub address: String,
    /// A secret holding the ACL token, for setups without `[[http.credentials]]`.
    #[serde(default)]
    pub token_secret: Option<String>,
    /// The instance's ID.
    pub service_id: String,
}

#[derive(Serialize, JsonSchema, Debug)]
pub struct RegistrationOutput {
    pub service_id: String,
    /// Whether the instance is registered afterwards.
    pub registered: bool,
    /// Deregister only: whether the agent knew it (false: nothing to do).
    pub existed: bool,
}

/// Whether the agent has the instance `id` (GET /v1/agent/service/:id).
fn registered(agent: &Agent, id: &str) -> Result<bool, Failure> {
    let path = format!("/v1/agent/service/{}", encode(id, false));
    let reply = agent.call("GET", &path, None)?;
    match reply.status {
        200 => Ok(true),
        404 => Ok(false),
        _ => Err(unexpected("GET", &path, &reply)),
    }
}

pub struct Register;

impl TypedAction for Register {
    const NAME: &'static str = "register-service";
    const EFFECT: Effect = Effect::Idempotent;
    const DESCRIPTION: &'static str =
        "Registers a service instance with the agent (PUT /v1/agent/service/register)";
    const INVERSE: Option<&'static str> = Some("deregister-service");
    type Params = RegisterParams;
    type Output = RegistrationOutput;

    fn invoke(_ctx: &Context, p: RegisterParams) -> Result<RegistrationOutput, Failure> {
        let agent = Agent::new(&p.address, p.token_secret.as_deref())?;
        let mut body = serde_json::json!({ "ID": p.service_id, "Name": p.name, "Tags": p.tags });
        if let Some(a) = &p.service_address {
            body["Address"] = a.clone().into();
        }
        if let Some(port) = p.port {
            body["Port"] = port.into();
        }
        if !p.meta.is_empty() {
            body["Meta"] = serde_json::to_value(&p.meta).unwrap_or_default();
        }
        let path = "/v1/agent/service/register";
        let reply = agent.call("PUT", path, Some(body.to_string().into_bytes()))?;
        if reply.status != 200 {
            return Err(unexpected("PUT", path, &reply));
        }
        Ok(RegistrationOutput {
            service_id: p.service_id,
            registered: true,
            existed: true,
        })
    }

    fn observe(
        _ctx: &Context,
        p: RegisterParams,
    ) -> Result<Observation<RegistrationOutput>, Failure> {
        let agent = Agent::new(&p.address, p.token_secret.as_deref())?;
        Ok(if registered(&agent, &p.service_id)? {
            Observation::Done(RegistrationOutput {
                service_id: p.service_id,
                registered: true,
                existed: true,
            })
        } else {
            Observation::NotDone
        })
    }
}

pub struct Deregister;

impl TypedAction for Deregister {
    const NAME: &'static str = "deregister-service";
    const EFFECT: Effect = Effect::Idempotent;
    const DESCRIPTION: &'static str = "Deregisters a service instance from the agent \
         (PUT /v1/agent/service/deregister/ID); an unknown ID is already done";
    const INVERSE: Option<&'static str> = Some("register-service");
    type Params = DeregisterParams;
    type Output = RegistrationOutput;

    fn invoke(_ctx: &Context, p: DeregisterParams) -> Result<RegistrationOutput, Failure> {
        let agent = Agent::new(&p.address, p.token_secret.as_deref())?;
        let path = format!(
            "/v1/agent/service/deregister/{}",
            encode(&p.service_id, false)
        );
        let reply = agent.call("PUT", &path, None)?;
        let existed = match reply.status {
            200 => true,
            404 => false,
            _ => return Err(unexpected("PUT", &path, &reply)),
        };
        Ok(RegistrationOutput {
            service_id: p.service_id,
            registered: false,
            existed,
        })
    }

    fn observe(
        _ctx: &Context,
        p: DeregisterParams,
    ) -> Result<Observation<RegistrationOutput>, Failure> {
        let agent = Agent::new(&p.address, p.token_secret.as_deref())?;
        Ok(if registered(&agent, &p.service_id)? {
            Observation::NotDone
        } else {
            Observation::Done(RegistrationOutput {
                service_id: p.service_id,
                registered: false,
                existed: true,
            })
        })
    }
}
