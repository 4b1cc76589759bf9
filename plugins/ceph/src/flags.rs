//! Cluster-wide OSD flags (`ceph osd set/unset`): `GET /api/osd/flags` and
//! `PUT /api/osd/flags` with the whole new list (the dashboard sets what the list
//! adds and unsets what it leaves out, so every write starts from the flags the
//! cluster has now and changes only the ones asked for).

use medic_sdk::{Context, Effect, Failure, Observation, TypedAction, json};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::Target;
use crate::mgr::Mgr;

/// A flag an operator sets for maintenance (`ceph osd set FLAG`): `pause` (no client
/// reads or writes), `noup`, `nodown`, `noout` (down OSDs are not marked out: no data
/// moves while an OSD restarts), `noin`, `nobackfill`, `norebalance`, `norecover`,
/// `noscrub`, `nodeep-scrub`, `notieragent`, `nosnaptrim`. Anything else is refused
/// with this list. (No doc comments on the variants: the schema stays a plain `enum`,
/// whose validation error lists the names.)
#[derive(Deserialize, Serialize, JsonSchema, Clone, Copy, PartialEq, Eq, Debug)]
pub enum Flag {
    #[serde(rename = "pause")]
    Pause,
    #[serde(rename = "noup")]
    NoUp,
    #[serde(rename = "nodown")]
    NoDown,
    #[serde(rename = "noout")]
    NoOut,
    #[serde(rename = "noin")]
    NoIn,
    #[serde(rename = "nobackfill")]
    NoBackfill,
    #[serde(rename = "norebalance")]
    NoRebalance,
    #[serde(rename = "norecover")]
    NoRecover,
    #[serde(rename = "noscrub")]
    NoScrub,
    #[serde(rename = "nodeep-scrub")]
    NoDeepScrub,
    #[serde(rename = "notieragent")]
    NoTierAgent,
    #[serde(rename = "nosnaptrim")]
    NoSnapTrim,
}

impl Flag {
    pub fn name(self) -> &'static str {
        match self {
            Flag::Pause => "pause",
            Flag::NoUp => "noup",
            Flag::NoDown => "nodown",
            Flag::NoOut => "noout",
            Flag::NoIn => "noin",
            Flag::NoBackfill => "nobackfill",
            Flag::NoRebalance => "norebalance",
            Flag::NoRecover => "norecover",
            Flag::NoScrub => "noscrub",
            Flag::NoDeepScrub => "nodeep-scrub",
            Flag::NoTierAgent => "notieragent",
            Flag::NoSnapTrim => "nosnaptrim",
        }
    }
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FlagsParams {
    #[serde(flatten)]
    pub target: Target,
    /// The flags, e.g. `[noout]` or `[noout, norebalance]`; one of pause, noup, nodown,
    /// noout, noin, nobackfill, norebalance, norecover, noscrub, nodeep-scrub,
    /// notieragent, nosnaptrim.
    #[schemars(length(min = 1))]
    pub flags: Vec<Flag>,
}

#[derive(Serialize, JsonSchema)]
pub struct SetFlagsOutput {
    /// The cluster's flags afterwards (as `ceph osd dump` lists them, `pause` for
    /// `pauserd`+`pausewr`).
    pub flags: Vec<String>,
    /// The flags this call set.
    pub added: Vec<String>,
    /// The flags asked for that were set already.
    pub already_set: Vec<String>,
}

#[derive(Serialize, JsonSchema)]
pub struct UnsetFlagsOutput {
    pub flags: Vec<String>,
    /// The flags this call unset.
    pub removed: Vec<String>,
    /// The flags asked for that were not set.
    pub already_unset: Vec<String>,
}

/// The cluster's flags now.
fn current(mgr: &Mgr) -> Result<Vec<String>, Failure> {
    let answer = mgr.get("/api/osd/flags")?;
    strings(mgr, "/api/osd/flags", &answer)
}

fn strings(mgr: &Mgr, path: &str, answer: &medic_sdk::Value) -> Result<Vec<String>, Failure> {
    answer
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|f| f.as_str().map(String::from))
                .collect()
        })
        .ok_or_else(|| {
            Failure::permanent(format!(
                "the Ceph dashboard at {}{path} answered {answer}, not a list of flags",
                mgr.url
            ))
        })
}

/// Writes `wanted` as the cluster's flags; the flags the cluster then has.
fn write(mgr: &Mgr, wanted: Vec<String>) -> Result<Vec<String>, Failure> {
    let answer = mgr.put("/api/osd/flags", &json!({ "flags": wanted }))?;
    strings(mgr, "/api/osd/flags", &answer)
}

fn names(flags: &[Flag]) -> Vec<String> {
    let mut names: Vec<String> = flags.iter().map(|f| f.name().to_string()).collect();
    names.dedup();
    names
}

/// `ceph osd set FLAG...` through the dashboard.
pub struct SetFlags;

impl TypedAction for SetFlags {
    const NAME: &'static str = "set-flags";
    const EFFECT: Effect = Effect::Idempotent;
    const DESCRIPTION: &'static str =
        "Sets cluster-wide OSD flags (ceph osd set noout, norebalance, ...)";
    const INVERSE: Option<&'static str> = Some("unset-flags");
    type Params = FlagsParams;
    type Output = SetFlagsOutput;

    fn invoke(_ctx: &Context, p: FlagsParams) -> Result<SetFlagsOutput, Failure> {
        let mgr = p.target.connect()?;
        let before = current(&mgr)?;
        let asked = names(&p.flags);
        let (already_set, added): (Vec<String>, Vec<String>) =
            asked.iter().cloned().partition(|f| before.contains(f));
        let flags = if added.is_empty() {
            before
        } else {
            let mut wanted = before.clone();
            wanted.extend(added.iter().cloned());
            write(&mgr, wanted)?
        };
        if let Some(missing) = asked.iter().find(|f| !flags.contains(f)) {
            return Err(Failure::retryable(format!(
                "the Ceph dashboard at {} accepted the flags but the cluster has {flags:?}, \
                 without `{missing}`; another client may have unset it meanwhile",
                mgr.url
            )));
        }
        medic_sdk::log::info(&format!("set {added:?} (already set: {already_set:?})"));
        Ok(SetFlagsOutput {
            flags,
            added,
            already_set,
        })
    }

    fn observe(_: &Context, _: FlagsParams) -> Result<Observation<SetFlagsOutput>, Failure> {
        Ok(Observation::NotDone)
    }
}

/// `ceph osd unset FLAG...` through the dashboard.
pub struct UnsetFlags;

impl TypedAction for UnsetFlags {
    const NAME: &'static str = "unset-flags";
    const EFFECT: Effect = Effect::Idempotent;
    const DESCRIPTION: &'static str = "Unsets cluster-wide OSD flags (ceph osd unset noout, ...)";
    const INVERSE: Option<&'static str> = Some("set-flags");
    type Params = FlagsParams;
    type Output = UnsetFlagsOutput;

    fn invoke(_ctx: &Context, p: FlagsParams) -> Result<UnsetFlagsOutput, Failure> {
        let mgr = p.target.connect()?;
        let before = current(&mgr)?;
        let asked = names(&p.flags);
        let (removed, already_unset): (Vec<String>, Vec<String>) =
            asked.iter().cloned().partition(|f| before.contains(f));
        let flags = if removed.is_empty() {
            before
        } else {
            write(
                &mgr,
                before
                    .into_iter()
                    .filter(|f| !removed.contains(f))
                    .collect(),
            )?
        };
        if let Some(left) = asked.iter().find(|f| flags.contains(f)) {
            return Err(Failure::retryable(format!(
                "the Ceph dashboard at {} accepted the flags but the cluster still has \
                 `{left}` ({flags:?}); another client may have set it again meanwhile",
                mgr.url
            )));
        }
        medic_sdk::log::info(&format!(
            "unset {removed:?} (already unset: {already_unset:?})"
        ));
        Ok(UnsetFlagsOutput {
            flags,
            removed,
            already_unset,
        })
    }

    fn observe(_: &Context, _: FlagsParams) -> Result<Observation<UnsetFlagsOutput>, Failure> {
        Ok(Observation::NotDone)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use medic_sdk::Plugin;

    #[test]
    fn an_unknown_flag_is_refused_with_the_valid_ones() {
        let ctx = Context {
            run_id: "r".into(),
            step_id: "s".into(),
            attempt: 1,
            idempotency_key: "r/s/1".into(),
        };
        let err = crate::Ceph::invoke(
            &ctx,
            "set-flags",
            json!({"api": "http://127.0.0.1:1", "flags": ["noout", "nosuchflag"]}),
        )
        .unwrap_err();
        assert!(!err.retryable);
        for expected in [
            "nosuchflag",
            "flags[1]",
            "noout",
            "norebalance",
            "nodeep-scrub",
        ] {
            assert!(
                err.message.contains(expected),
                "{expected}: {}",
                err.message
            );
        }
    }

    #[test]
    fn flag_names_round_trip() {
        for name in [
            "pause",
            "noup",
            "nodown",
            "noout",
            "noin",
            "nobackfill",
            "norebalance",
            "norecover",
            "noscrub",
            "nodeep-scrub",
            "notieragent",
            "nosnaptrim",
        ] {
            let flag: Flag = serde_json::from_value(json!(name)).unwrap();
            assert_eq!(flag.name(), name);
        }
    }
}
