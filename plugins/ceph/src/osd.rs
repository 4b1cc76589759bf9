//! One OSD: its state (`GET /api/osd`, the cluster's OSD map as the mgr sees it),
//! marking it out and in (`PUT /api/osd/ID/mark`, `ceph osd out/in`), and the
//! safe-to-destroy check (`GET /api/osd/safe_to_destroy`, the mgr's `ceph osd
//! safe-to-destroy`). Every action first checks the OSD exists: Ceph's own `osd out`
//! of an unknown id succeeds doing nothing.

use std::time::{Duration, Instant};

use medic_sdk::{Context, Effect, Failure, Observation, TypedAction, Value, json};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::Target;
use crate::mgr::Mgr;

/// An OSD as the OSD map has it.
#[derive(Serialize, JsonSchema, Clone, Debug, PartialEq)]
pub struct OsdState {
    pub osd: u32,
    pub up: bool,
    #[serde(rename = "in")]
    pub is_in: bool,
    /// The OSD map's state words, e.g. `["exists", "up"]`.
    pub state: Vec<String>,
    /// The CRUSH host it is under, when the mgr knows it.
    pub host: String,
}

/// Every OSD of the cluster, from `GET /api/osd`.
pub fn list(mgr: &Mgr) -> Result<Vec<OsdState>, Failure> {
    let answer = mgr.get("/api/osd")?;
    parse_list(&answer).ok_or_else(|| {
        Failure::permanent(format!(
            "the Ceph dashboard at {}/api/osd answered with something that is not a list of \
             OSDs: {}",
            mgr.url,
            answer.to_string().chars().take(200).collect::<String>()
        ))
    })
}

pub fn parse_list(answer: &Value) -> Option<Vec<OsdState>> {
    answer
        .as_array()?
        .iter()
        .map(|o| {
            Some(OsdState {
                osd: u32::try_from(o["osd"].as_u64()?).ok()?,
                up: o["up"].as_u64()? == 1,
                is_in: o["in"].as_u64()? == 1,
                state: o["state"]
                    .as_array()
                    .map(|s| {
                        s.iter()
                            .filter_map(|w| w.as_str().map(String::from))
                            .collect()
                    })
                    .unwrap_or_default(),
                host: o["host"]["name"].as_str().unwrap_or_default().to_string(),
            })
        })
        .collect()
}

/// The OSD `id`, or a permanent failure naming the OSDs the cluster has.
pub fn find(mgr: &Mgr, id: u32) -> Result<OsdState, Failure> {
    let all = list(mgr)?;
    all.iter().find(|o| o.osd == id).cloned().ok_or_else(|| {
        let ids: Vec<String> = all.iter().map(|o| o.osd.to_string()).collect();
        Failure::permanent(format!(
            "osd.{id} does not exist in the cluster behind {} (its OSDs: {}); check the id \
             with `ceph osd tree`",
            mgr.url,
            if ids.is_empty() {
                "none".to_string()
            } else {
                ids.join(", ")
            }
        ))
    })
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OsdParams {
    #[serde(flatten)]
    pub target: Target,
    /// The OSD's id (`osd.3` is 3).
    pub osd: u32,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OsdStatusParams {
    #[serde(flatten)]
    pub target: Target,
    /// The OSD's id (`osd.3` is 3).
    pub osd: u32,
    /// Fail (retryable) unless the OSD is up: with `retry`, a wait for it to come back.
    #[serde(default)]
    pub require_up: bool,
    /// Fail (retryable) unless the OSD is in.
    #[serde(default)]
    pub require_in: bool,
}

/// `ceph osd dump`'s entry for one OSD.
pub struct OsdStatus;

impl TypedAction for OsdStatus {
    const NAME: &'static str = "osd-status";
    const EFFECT: Effect = Effect::ReadOnly;
    const DESCRIPTION: &'static str = "Whether an OSD exists, is up and is in";
    type Params = OsdStatusParams;
    type Output = OsdState;

    fn invoke(_ctx: &Context, p: OsdStatusParams) -> Result<OsdState, Failure> {
        let mgr = p.target.connect()?;
        let osd = find(&mgr, p.osd)?;
        if (p.require_up && !osd.up) || (p.require_in && !osd.is_in) {
            return Err(Failure::retryable(format!(
                "osd.{} is {} and {} (required: {}{}); start it, or mark it in \
                 (`ceph/osd-in`)",
                osd.osd,
                if osd.up { "up" } else { "down" },
                if osd.is_in { "in" } else { "out" },
                if p.require_up { "up " } else { "" },
                if p.require_in { "in" } else { "" },
            )));
        }
        Ok(osd)
    }

    fn observe(_: &Context, _: OsdStatusParams) -> Result<Observation<OsdState>, Failure> {
        Ok(Observation::NotDone)
    }
}

#[derive(Serialize, JsonSchema)]
pub struct MarkOutput {
    pub osd: u32,
    /// Whether it was in before the call.
    pub was_in: bool,
    /// Whether it is in now.
    #[serde(rename = "in")]
    pub is_in: bool,
}

/// Marks the OSD in or out, then waits (up to 20 s) until the mgr's OSD map shows it.
fn mark(p: OsdParams, want_in: bool) -> Result<MarkOutput, Failure> {
    let mgr = p.target.connect()?;
    let before = find(&mgr, p.osd)?;
    let action = if want_in { "in" } else { "out" };
    if before.is_in != want_in {
        mgr.put(
            &format!("/api/osd/{}/mark", p.osd),
            &json!({ "action": action }),
        )?;
        let started = Instant::now();
        loop {
            let now = find(&mgr, p.osd)?;
            if now.is_in == want_in {
                break;
            }
            if started.elapsed() > Duration::from_secs(20) {
                return Err(Failure::retryable(format!(
                    "marked osd.{} {action} through {}, but after 20 s the OSD map still has \
                     it {}; check `ceph osd dump` and the mon's log",
                    p.osd,
                    mgr.url,
                    if now.is_in { "in" } else { "out" }
                )));
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        medic_sdk::log::info(&format!("marked osd.{} {action}", p.osd));
    }
    Ok(MarkOutput {
        osd: p.osd,
        was_in: before.is_in,
        is_in: want_in,
    })
}

/// `ceph osd out ID`.
pub struct OsdOut;

impl TypedAction for OsdOut {
    const NAME: &'static str = "osd-out";
    const EFFECT: Effect = Effect::Idempotent;
    const DESCRIPTION: &'static str =
        "Marks an OSD out (ceph osd out): its placement groups move to other OSDs";
    const INVERSE: Option<&'static str> = Some("osd-in");
    type Params = OsdParams;
    type Output = MarkOutput;

    fn invoke(_ctx: &Context, p: OsdParams) -> Result<MarkOutput, Failure> {
        mark(p, false)
    }

    fn observe(_: &Context, _: OsdParams) -> Result<Observation<MarkOutput>, Failure> {
        Ok(Observation::NotDone)
    }
}

/// `ceph osd in ID`.
pub struct OsdIn;

impl TypedAction for OsdIn {
    const NAME: &'static str = "osd-in";
    const EFFECT: Effect = Effect::Idempotent;
    const DESCRIPTION: &'static str = "Marks an OSD in (ceph osd in)";
    const INVERSE: Option<&'static str> = Some("osd-out");
    type Params = OsdParams;
    type Output = MarkOutput;

    fn invoke(_ctx: &Context, p: OsdParams) -> Result<MarkOutput, Failure> {
        mark(p, true)
    }

    fn observe(_: &Context, _: OsdParams) -> Result<Observation<MarkOutput>, Failure> {
        Ok(Observation::NotDone)
    }
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SafeToDestroyParams {
    #[serde(flatten)]
    pub target: Target,
    /// The OSDs' ids.
    #[schemars(length(min = 1))]
    pub osds: Vec<u32>,
    /// Fail (retryable: data may still be moving off them) unless every OSD is safe to
    /// destroy; false only reports it.
    #[serde(default = "yes")]
    pub require_safe: bool,
}

fn yes() -> bool {
    true
}

#[derive(Serialize, JsonSchema)]
pub struct SafeToDestroyOutput {
    pub safe: bool,
    /// The OSDs Ceph says are safe to destroy.
    pub safe_to_destroy: Vec<u32>,
    /// OSDs still up and serving (not safe while so).
    pub active: Vec<u32>,
    /// OSDs whose PG stats the mgr has not seen yet.
    pub missing_stats: Vec<u32>,
    /// Placement groups still stored on them.
    pub stored_pgs: Vec<String>,
    /// Ceph's reason when it could not decide.
    pub message: String,
}

/// `ceph osd safe-to-destroy IDS`.
pub struct SafeToDestroy;

impl TypedAction for SafeToDestroy {
    const NAME: &'static str = "safe-to-destroy";
    const EFFECT: Effect = Effect::ReadOnly;
    const DESCRIPTION: &'static str =
        "Whether OSDs can be destroyed without reducing data durability (ceph osd safe-to-destroy)";
    type Params = SafeToDestroyParams;
    type Output = SafeToDestroyOutput;

    fn invoke(_ctx: &Context, p: SafeToDestroyParams) -> Result<SafeToDestroyOutput, Failure> {
        let mgr = p.target.connect()?;
        for id in &p.osds {
            find(&mgr, *id)?;
        }
        let ids: Vec<String> = p.osds.iter().map(u32::to_string).collect();
        let answer = mgr.get(&format!(
            "/api/osd/safe_to_destroy?ids=%5B{}%5D",
            ids.join("%2C")
        ))?;
        let out = parse_safe(&answer);
        if p.require_safe && !out.safe {
            let why = if !out.message.is_empty() {
                out.message.clone()
            } else {
                let mut why = Vec::new();
                if !out.active.is_empty() {
                    why.push(format!("still up and serving: {:?}", out.active));
                }
                if !out.stored_pgs.is_empty() {
                    why.push(format!("still storing PGs {:?}", out.stored_pgs));
                }
                if !out.missing_stats.is_empty() {
                    why.push(format!("no PG stats yet from {:?}", out.missing_stats));
                }
                why.join("; ")
            };
            return Err(Failure::retryable(format!(
                "OSDs {:?} are not safe to destroy ({why}); mark them out and wait until their \
                 data has moved (`ceph/wait-clean`)",
                p.osds
            )));
        }
        Ok(out)
    }

    fn observe(
        _: &Context,
        _: SafeToDestroyParams,
    ) -> Result<Observation<SafeToDestroyOutput>, Failure> {
        Ok(Observation::NotDone)
    }
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|i| i.as_u64().and_then(|i| u32::try_from(i).ok()))
                .collect()
        })
        .unwrap_or_default()
}

pub fn parse_safe(answer: &Value) -> SafeToDestroyOutput {
    SafeToDestroyOutput {
        safe: answer["is_safe_to_destroy"].as_bool().unwrap_or(false),
        safe_to_destroy: ids(&answer["safe_to_destroy"]),
        active: ids(&answer["active"]),
        missing_stats: ids(&answer["missing_stats"]),
        stored_pgs: answer["stored_pgs"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|p| p.as_str().map(String::from).unwrap_or(p.to_string()))
                    .collect()
            })
            .unwrap_or_default(),
        message: answer["message"].as_str().unwrap_or_default().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_osd_list_is_read_from_the_osd_map_entries() {
        let answer = json!([
            {"osd": 0, "up": 1, "in": 1, "state": ["exists", "up"], "host": {"name": "vm"}},
            {"osd": 3, "up": 0, "in": 0, "state": ["exists"], "host": {}}
        ]);
        let list = parse_list(&answer).unwrap();
        assert_eq!(list.len(), 2);
        assert!(list[0].up && list[0].is_in && list[0].host == "vm");
        assert!(!list[1].up && !list[1].is_in && list[1].osd == 3);
        assert!(parse_list(&json!({"detail": "x"})).is_none());
    }

    #[test]
    fn safe_to_destroy_answers_are_read() {
        let out = parse_safe(
            &json!({"safe_to_destroy": [], "active": [0], "missing_stats": [],
            "stored_pgs": [], "is_safe_to_destroy": false}),
        );
        assert!(!out.safe);
        assert_eq!(out.active, [0]);
        let out = parse_safe(&json!({"message": "[errno -11] busy", "is_safe_to_destroy": false}));
        assert_eq!(out.message, "[errno -11] busy");
    }
}
