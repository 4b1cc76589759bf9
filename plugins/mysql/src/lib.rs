//! `mysql`: recovery actions for MySQL 8 and MariaDB, done entirely through the host's
//! `sql` interface on connections the plan grants by name (`grants.sql`); the plugin
//! never sees an address or a password, except a replication password it reads with
//! the host's `secret` import to hand to CHANGE MASTER.
//!
//! Pure parts (dialects, GTID positions, quoting and rendering, dump splitting, status
//! rows) are unit-tested on the host target, and the actions' logic against a scripted
//! host (`scenarios.rs`); behaviour on real servers is for the black-box tests on a
//! real MariaDB pair (issue 15).

mod admin;
mod checksum;
mod dialect;
mod dump;
mod gtid;
mod host;
mod plan;
mod render;
mod replication;
#[cfg(test)]
mod scenarios;
mod schema;
mod server;
mod split;
mod status;
mod value;

use medic_sdk::{Context, DryRun, Failure, Manifest, Observation, Plugin, Value};

pub struct Mysql;

medic_sdk::export_plugin!(Mysql);

impl Plugin for Mysql {
    fn manifest() -> Manifest {
        let mut m = Manifest::new(
            "mysql",
            env!("CARGO_PKG_VERSION"),
            "MySQL/MariaDB recovery: status, pausing writes, long transactions, replication \
             control, GTID failover, logical backup/restore into run artifacts, checksums",
        );
        for a in admin::actions()
            .into_iter()
            .chain(replication::actions())
            .chain(dump::actions())
            .chain(checksum::actions())
        {
            m = m.action(a);
        }
        m
    }

    fn invoke(_ctx: &Context, action: &str, params: Value) -> Result<Value, Failure> {
        admin::invoke(action, params.clone())
            .or_else(|| replication::invoke(action, params.clone()))
            .or_else(|| dump::invoke(action, params.clone()))
            .or_else(|| checksum::invoke(action, params))
            .unwrap_or_else(|| Err(Failure::unknown_action(action)))
    }

    fn observe(_ctx: &Context, action: &str, params: Value) -> Result<Observation, Failure> {
        admin::observe(action, params.clone())
            .or_else(|| replication::observe(action, params.clone()))
            .or_else(|| dump::observe(action, params.clone()))
            .or_else(|| checksum::observe(action, params))
            .unwrap_or_else(|| Err(Failure::unknown_action(action)))
    }

    /// A dry run: read-only checks of the action's preconditions (`plan.rs`).
    fn plan(ctx: &Context, action: &str, params: Value) -> Result<DryRun, Failure> {
        plan::plan(ctx, action, params)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use medic_sdk::Effect;

    #[test]
    fn manifest_lists_every_action_once_with_object_schemas() {
        let m = Mysql::manifest();
        let mut names: Vec<&str> = m.actions.iter().map(|a| a.name.as_str()).collect();
        let n = names.len();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), n, "duplicate action names");
        for want in [
            "status",
            "set-read-only",
            "long-transactions",
            "kill-connections",
            "replication-status",
            "stop-replica",
            "start-replica",
            "reset-replica",
            "point-replica",
            "promote",
            "wait-caught-up",
            "capture-position",
            "most-advanced",
            "backup",
            "restore",
            "checksum-compare",
        ] {
            assert!(names.contains(&want), "missing {want}");
        }
        for a in &m.actions {
            assert_eq!(a.params_schema["type"], "object", "{}", a.name);
            assert_eq!(a.params_schema["additionalProperties"], false, "{}", a.name);
            if let Some(inv) = &a.inverse {
                assert!(
                    names.contains(&inv.as_str()),
                    "{} names unknown inverse {inv}",
                    a.name
                );
            }
            assert!(!a.description.is_empty(), "{}", a.name);
        }
    }

    #[test]
    fn manifest_every_mutating_action_can_be_observed() {
        let ctx = Context {
            run_id: "r".into(),
            step_id: "s".into(),
            attempt: 1,
            idempotency_key: "r/s/1".into(),
        };
        for a in Mysql::manifest().actions {
            let r = Mysql::observe(&ctx, &a.name, serde_json::json!({}));
            // Outside the guest observe either answers without a server or fails on
            // params/the missing host, but never says "unknown action".
            if let Err(f) = &r {
                assert!(
                    !f.message.contains("unknown action"),
                    "{}: {}",
                    a.name,
                    f.message
                );
            }
            // Read-only actions are simply run again; the rest must look at the server
            // (which fails here, outside the guest) or say why they cannot.
            if a.effect == Effect::ReadOnly {
                assert_eq!(r, Ok(Observation::NotDone), "{}", a.name);
            }
        }
        assert!(Mysql::invoke(&ctx, "nope", serde_json::json!({})).is_err());
    }
}
