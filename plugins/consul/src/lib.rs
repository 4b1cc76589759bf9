//! `consul`: recovery actions over Consul's HTTP API on an origin the plan grants
//! (`grants.http`). The ACL token is best attached by the host (`[[http.credentials]]`
//! with header `X-Consul-Token`), unseen by the plugin; `token_secret` reads it from
//! a granted secret instead.
//!
//! Node and service maintenance, health of a node or a service's instances (with a
//! required state, for waits), service (de)registration, KV with check-and-set,
//! snapshots into run artifacts, leader and peers. Tested against a contract fixture
//! (tests/src/consul_fixture.rs) built from Consul's published API documentation.

mod agent;
mod base64;
mod health;
mod kv;
mod maintenance;
mod service;
mod snapshot;
mod status;

use medic_sdk::{Actions, TypedPlugin};

pub struct Consul;

impl TypedPlugin for Consul {
    const NAME: &'static str = env!("CARGO_CRATE_NAME");
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str = "Consul: node/service maintenance, health, service \
         (de)registration, KV with check-and-set, snapshot save/restore, leader and peers";

    fn actions() -> Actions {
        Actions::new()
            .add::<maintenance::NodeMaintenanceOn>()
            .add::<maintenance::NodeMaintenanceOff>()
            .add::<maintenance::ServiceMaintenanceOn>()
            .add::<maintenance::ServiceMaintenanceOff>()
            .add::<health::NodeHealth>()
            .add::<health::ServiceHealth>()
            .add::<service::Register>()
            .add::<service::Deregister>()
            .add::<kv::KvGet>()
            .add::<kv::KvPut>()
            .add::<snapshot::SnapshotSave>()
            .add::<snapshot::SnapshotRestore>()
            .add::<status::Leader>()
            .add::<status::Peers>()
    }
}

medic_sdk::export_plugin!(Consul);

#[cfg(test)]
mod tests {
    use super::*;
    use medic_sdk::{Effect, Plugin};

    #[test]
    fn manifest_has_every_action_with_inverses_that_exist() {
        let m = Consul::manifest();
        let names: Vec<&str> = m.actions.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names.len(), 14);
        for a in &m.actions {
            if let Some(inv) = &a.inverse {
                assert!(names.contains(&inv.as_str()), "{} -> {inv}", a.name);
            }
            assert_eq!(a.params_schema["type"], "object", "{}", a.name);
            if a.effect == Effect::ReadOnly {
                assert!(a.inverse.is_none());
            }
        }
    }
}
