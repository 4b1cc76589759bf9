//! `ceph`: recovery actions for a Ceph cluster (16 "Pacific" and later) through the
//! manager's REST API, served by the mgr `dashboard` module on an origin the plan
//! grants (`grants.http`): health and status, cluster-wide OSD flags (`noout`,
//! `norebalance`, ...), marking an OSD out and in, the safe-to-destroy check, and
//! waiting until every placement group is active+clean (with progress).
//!
//! Credentials: the dashboard user's password comes from a granted secret
//! (`password_secret`), never from the plan; or the operator attaches a bearer token
//! for the origin in medic.toml (`[[http.credentials]]`).
//!
//! Not here: `ceph osd ok-to-stop`, which Ceph 16's dashboard API does not offer
//! (plans ask the operator to run it, see plans/ceph).

pub mod flags;
pub mod mgr;
pub mod osd;
pub mod pgs;

use medic_sdk::{Actions, TypedPlugin};

// Exported only in a wasm32 build; native builds are for unit tests.
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
struct Ceph;

impl TypedPlugin for Ceph {
    const NAME: &'static str = env!("CARGO_CRATE_NAME");
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str = "Ceph over the mgr dashboard's REST API: health, status, \
         cluster flags, OSD out/in, safe-to-destroy, wait for active+clean";

    fn actions() -> Actions {
        Actions::new()
            .add::<pgs::Health>()
            .add::<pgs::Status>()
            .add::<flags::SetFlags>()
            .add::<flags::UnsetFlags>()
            .add::<osd::OsdStatus>()
            .add::<osd::OsdOut>()
            .add::<osd::OsdIn>()
            .add::<osd::SafeToDestroy>()
            .add::<pgs::WaitClean>()
    }
}

medic_sdk::export_plugin!(Ceph);

/// The cluster to talk to, common to every action.
#[derive(serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Target {
    /// The mgr dashboard's URL, `http://HOST:PORT` or `https://HOST:PORT` (no path;
    /// `ceph mgr services` shows it); the plan must grant it: `grants: { http: [URL] }`.
    #[schemars(regex(pattern = r"^https?://[^/\s]+/?$"))]
    pub api: String,
    /// The dashboard user medic logs in as.
    #[serde(default = "default_user")]
    pub user: String,
    /// A granted secret holding that user's password. Leave it out when medic.toml
    /// attaches `Authorization: Bearer TOKEN` for the origin.
    #[serde(default)]
    pub password_secret: Option<String>,
}

fn default_user() -> String {
    "medic".to_string()
}

impl Target {
    fn connect(&self) -> Result<mgr::Mgr, medic_sdk::Failure> {
        mgr::Mgr::connect(&self.api, &self.user, self.password_secret.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use medic_sdk::{Effect, Plugin};

    #[test]
    fn manifest_has_every_action_with_effects_and_inverses_that_exist() {
        let m = Ceph::manifest();
        let by_name = |n: &str| {
            m.actions
                .iter()
                .find(|a| a.name == n)
                .unwrap_or_else(|| panic!("no action {n}"))
        };
        let names: Vec<&str> = m.actions.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "health",
                "status",
                "set-flags",
                "unset-flags",
                "osd-status",
                "osd-out",
                "osd-in",
                "safe-to-destroy",
                "wait-clean"
            ]
        );
        for read_only in [
            "health",
            "status",
            "osd-status",
            "safe-to-destroy",
            "wait-clean",
        ] {
            assert_eq!(by_name(read_only).effect, Effect::ReadOnly, "{read_only}");
        }
        for (action, inverse) in [
            ("set-flags", "unset-flags"),
            ("unset-flags", "set-flags"),
            ("osd-out", "osd-in"),
            ("osd-in", "osd-out"),
        ] {
            assert_eq!(by_name(action).effect, Effect::Idempotent, "{action}");
            assert_eq!(
                by_name(action).inverse.as_deref(),
                Some(inverse),
                "{action}"
            );
        }
    }
}
