//! Health of a node (GET /v1/health/node/:node) and of a service's instances (GET
//! /v1/health/service/:service). Both can `require` a state: a step that waits for a
//! drain or for checks to pass fails retryably until it holds, so the step's `retry:`
//! policy is the wait.

use medic_sdk::{Context, Effect, Failure, Observation, TypedAction};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::agent::{Agent, encode};
use crate::maintenance::NODE_CHECK;

/// One health check as Consul reports it (the fields medic keeps).
#[derive(Deserialize, Serialize, JsonSchema, Debug, Clone)]
pub struct Check {
    #[serde(rename(deserialize = "CheckID"))]
    pub check_id: String,
    #[serde(rename(deserialize = "Name"), default)]
    pub name: String,
    /// passing | warning | critical | maintenance
    #[serde(rename(deserialize = "Status"))]
    pub status: String,
    #[serde(rename(deserialize = "ServiceID"), default)]
    pub service_id: String,
    #[serde(rename(deserialize = "Notes"), default)]
    pub notes: String,
    #[serde(rename(deserialize = "Output"), default)]
    pub output: String,
}

/// The worst of `checks`' states: critical > warning > passing (passing when none).
pub fn worst(checks: &[Check]) -> &'static str {
    let rank = |s: &str| match s {
        "passing" => 0,
        "warning" => 1,
        _ => 2,
    };
    match checks.iter().map(|c| rank(&c.status)).max().unwrap_or(0) {
        0 => "passing",
        1 => "warning",
        _ => "critical",
    }
}

#[derive(Deserialize, JsonSchema, Clone, Copy, PartialEq, Eq, Default, Debug)]
#[serde(rename_all = "lowercase")]
pub enum NodeRequire {
    /// Report only.
    #[default]
    Any,
    /// Every check passing, and no maintenance.
    Passing,
    /// The node's `_node_maintenance` check is there (critical).
    Maintenance,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NodeHealthParams {
    /// The agent's HTTP origin, e.g. http://127.0.0.1:8500 (granted in `grants.http`).
    pub address: String,
    /// A secret holding the ACL token, for setups without `[[http.credentials]]`.
    #[serde(default)]
    pub token_secret: Option<String>,
    /// The node's name (or ID).
    pub node: String,
    /// A state to require: not holding fails the step retryably (retry: is the wait).
    #[serde(default)]
    pub require: NodeRequire,
}

#[derive(Serialize, JsonSchema, Debug)]
pub struct NodeHealthOutput {
    pub node: String,
    /// The worst check state: passing | warning | critical.
    pub status: String,
    /// Whether the node is in maintenance mode.
    pub maintenance: bool,
    pub checks: Vec<Check>,
}

pub struct NodeHealth;

impl TypedAction for NodeHealth {
    const NAME: &'static str = "node-health";
    const EFFECT: Effect = Effect::ReadOnly;
    const DESCRIPTION: &'static str = "Health checks of a node (GET /v1/health/node/NODE), optionally requiring passing or maintenance";
    type Params = NodeHealthParams;
    type Output = NodeHealthOutput;

    fn invoke(_ctx: &Context, p: NodeHealthParams) -> Result<NodeHealthOutput, Failure> {
        let agent = Agent::new(&p.address, p.token_secret.as_deref())?;
        let path = format!("/v1/health/node/{}", encode(&p.node, false));
        let checks: Vec<Check> = agent
            .ok("GET", &path, None)?
            .json("reading the node's checks")?;
        let out = NodeHealthOutput {
            status: worst(&checks).into(),
            maintenance: checks.iter().any(|c| c.check_id == NODE_CHECK),
            node: p.node,
            checks,
        };
        if out.checks.is_empty() && p.require != NodeRequire::Any {
            return Err(Failure::permanent(format!(
                "node `{}` has no health checks: is that the node's name in Consul? \
                 (GET /v1/catalog/nodes lists them)",
                out.node
            )));
        }
        let failing = || {
            out.checks
                .iter()
                .filter(|c| c.status != "passing")
                .map(|c| format!("{} ({}): {}", c.check_id, c.status, c.output))
                .collect::<Vec<_>>()
                .join("; ")
        };
        match p.require {
            NodeRequire::Passing if out.status != "passing" => Err(Failure::retryable(format!(
                "node `{}` is not passing yet: {}",
                out.node,
                failing()
            ))),
            NodeRequire::Maintenance if !out.maintenance => Err(Failure::retryable(format!(
                "node `{}` is not in maintenance mode (no {NODE_CHECK} check)",
                out.node
            ))),
            _ => Ok(out),
        }
    }

    fn observe(
        _ctx: &Context,
        _p: NodeHealthParams,
    ) -> Result<Observation<NodeHealthOutput>, Failure> {
        Ok(Observation::NotDone)
    }
}

#[derive(Deserialize, JsonSchema, Clone, Copy, PartialEq, Eq, Default, Debug)]
#[serde(rename_all = "lowercase")]
pub enum ServiceRequire {
    /// Report only.
    #[default]
    Any,
    /// Every (selected) instance passing, and at least one.
    Passing,
    /// No (selected) instance passing: traffic has left them.
    Drained,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceHealthParams {
    /// The agent's HTTP origin, e.g. http://127.0.0.1:8500 (granted in `grants.http`).
    pub address: String,
    /// A secret holding the ACL token, for setups without `[[http.credentials]]`.
    #[serde(default)]
    pub token_secret: Option<String>,
    /// The service's name.
    pub service: String,
    /// Only the instances on this node.
    #[serde(default)]
    pub node: Option<String>,
    /// A state to require: not holding fails the step retryably (retry: is the wait).
    #[serde(default)]
    pub require: ServiceRequire,
}

#[derive(Serialize, JsonSchema, Debug)]
pub struct Instance {
    pub node: String,
    pub service_id: String,
    pub address: String,
    pub port: u64,
    /// The worst of its checks (node checks included): passing | warning | critical.
    pub status: String,
    pub checks: Vec<Check>,
}

#[derive(Serialize, JsonSchema, Debug)]
pub struct ServiceHealthOutput {
    pub service: String,
    pub instances: Vec<Instance>,
    /// How many of `instances` pass.
    pub passing: usize,
}

#[derive(Deserialize)]
struct Entry {
    #[serde(rename = "Node")]
    node: EntryNode,
    #[serde(rename = "Service")]
    service: EntryService,
    #[serde(rename = "Checks", default)]
    checks: Vec<Check>,
}

#[derive(Deserialize)]
struct EntryNode {
    #[serde(rename = "Node")]
    node: String,
}

#[derive(Deserialize)]
struct EntryService {
    #[serde(rename = "ID")]
    id: String,
    #[serde(rename = "Address", default)]
    address: String,
    #[serde(rename = "Port", default)]
    port: u64,
}

pub struct ServiceHealth;

impl TypedAction for ServiceHealth {
    const NAME: &'static str = "service-health";
    const EFFECT: Effect = Effect::ReadOnly;
    const DESCRIPTION: &'static str = "Health of a service's instances (GET /v1/health/service/NAME), \
         optionally on one node, optionally requiring passing or drained";
    type Params = ServiceHealthParams;
    type Output = ServiceHealthOutput;

    fn invoke(_ctx: &Context, p: ServiceHealthParams) -> Result<ServiceHealthOutput, Failure> {
        let agent = Agent::new(&p.address, p.token_secret.as_deref())?;
        let path = format!("/v1/health/service/{}", encode(&p.service, false));
        let entries: Vec<Entry> = agent
            .ok("GET", &path, None)?
            .json("reading the service's health")?;
        let instances: Vec<Instance> = entries
            .into_iter()
            .filter(|e| p.node.as_ref().is_none_or(|n| *n == e.node.node))
            .map(|e| Instance {
                status: worst(&e.checks).into(),
                node: e.node.node,
                service_id: e.service.id,
                address: e.service.address,
                port: e.service.port,
                checks: e.checks,
            })
            .collect();
        let passing = instances.iter().filter(|i| i.status == "passing").count();
        let out = ServiceHealthOutput {
            service: p.service,
            passing,
            instances,
        };
        let on = p
            .node
            .as_ref()
            .map(|n| format!(" on node `{n}`"))
            .unwrap_or_default();
        match p.require {
            ServiceRequire::Passing if out.instances.is_empty() => Err(Failure::retryable(
                format!("service `{}` has no instances{on}", out.service),
            )),
            ServiceRequire::Passing if passing < out.instances.len() => {
                Err(Failure::retryable(format!(
                    "service `{}`{on}: {passing} of {} instances passing",
                    out.service,
                    out.instances.len()
                )))
            }
            ServiceRequire::Drained if passing > 0 => Err(Failure::retryable(format!(
                "service `{}`{on} is not drained yet: {passing} instance(s) still passing",
                out.service
            ))),
            _ => Ok(out),
        }
    }

    fn observe(
        _ctx: &Context,
        _p: ServiceHealthParams,
    ) -> Result<Observation<ServiceHealthOutput>, Failure> {
        Ok(Observation::NotDone)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worst_state_wins() {
        let check = |s: &str| Check {
            check_id: "c".into(),
            name: String::new(),
            status: s.into(),
            service_id: String::new(),
            notes: String::new(),
            output: String::new(),
        };
        assert_eq!(worst(&[]), "passing");
        assert_eq!(worst(&[check("passing"), check("warning")]), "warning");
        assert_eq!(worst(&[check("warning"), check("critical")]), "critical");
    }

    #[test]
    fn parses_consuls_check_shape() {
        let checks: Vec<Check> = serde_json::from_str(
            r#"[{"ID":"","Node":"n1","CheckID":"_node_maintenance","Name":"Node Maintenance Mode",
                "Status":"critical","Notes":"patching","Output":"","ServiceID":"","ServiceName":"",
                "ServiceTags":[],"Namespace":"default"}]"#,
        )
        .unwrap();
        assert_eq!(checks[0].check_id, NODE_CHECK);
        assert_eq!(checks[0].notes, "patching");
    }
}
