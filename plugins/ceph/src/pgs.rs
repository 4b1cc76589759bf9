//! The cluster as a whole, from `GET /api/health/minimal` (the mgr's `ceph health`,
//! OSD map summary and placement-group states): health with its checks, a status
//! summary, and the wait until every placement group is active+clean.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use medic_sdk::{Context, Effect, Failure, Observation, TypedAction, Value};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::Target;
use crate::mgr::Mgr;
use crate::osd;

/// One health check Ceph reports (`ceph health detail`).
#[derive(Serialize, JsonSchema, Clone, Debug, PartialEq)]
pub struct Check {
    /// The check's code, e.g. `OSDMAP_FLAGS`, `PG_DEGRADED`.
    pub name: String,
    /// `HEALTH_WARN` or `HEALTH_ERR`.
    pub severity: String,
    pub summary: String,
    pub muted: bool,
}

/// What `/api/health/minimal` says, in the parts the actions use.
#[derive(Debug, Clone, PartialEq)]
pub struct Minimal {
    pub status: String,
    pub checks: Vec<Check>,
    pub pgs_by_state: BTreeMap<String, u64>,
    pub quorum: u64,
    pub mgr_active: String,
    pub osds: u64,
    pub osds_up: u64,
    pub osds_in: u64,
    pub objects_degraded: u64,
    pub objects_misplaced: u64,
    pub objects_unfound: u64,
    pub bytes_total: u64,
    pub bytes_avail: u64,
}

impl Minimal {
    pub fn pgs(&self) -> u64 {
        self.pgs_by_state.values().sum()
    }

    pub fn active_clean(&self) -> u64 {
        self.pgs_by_state.get("active+clean").copied().unwrap_or(0)
    }

    /// `3 active+undersized+degraded, 1 peering`: the states that are not active+clean.
    pub fn unclean(&self) -> String {
        let others: Vec<String> = self
            .pgs_by_state
            .iter()
            .filter(|(state, _)| *state != "active+clean")
            .map(|(state, n)| format!("{n} {state}"))
            .collect();
        if others.is_empty() {
            "none".to_string()
        } else {
            others.join(", ")
        }
    }
}

pub fn parse_minimal(v: &Value) -> Option<Minimal> {
    let u = |v: &Value| v.as_u64().unwrap_or(0);
    let osds = v["osd_map"]["osds"].as_array();
    Some(Minimal {
        status: v["health"]["status"].as_str()?.to_string(),
        checks: v["health"]["checks"]
            .as_array()
            .map(|checks| {
                checks
                    .iter()
                    .map(|c| Check {
                        name: c["type"].as_str().unwrap_or_default().to_string(),
                        severity: c["severity"].as_str().unwrap_or_default().to_string(),
                        summary: c["summary"]["message"]
                            .as_str()
                            .unwrap_or_default()
                            .to_string(),
                        muted: c["muted"].as_bool().unwrap_or(false),
                    })
                    .collect()
            })
            .unwrap_or_default(),
        pgs_by_state: v["pg_info"]["statuses"]
            .as_object()
            .map(|s| s.iter().map(|(k, n)| (k.clone(), u(n))).collect())
            .unwrap_or_default(),
        quorum: v["mon_status"]["quorum"]
            .as_array()
            .map_or(0, |q| q.len() as u64),
        mgr_active: v["mgr_map"]["active_name"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        osds: osds.map_or(0, |o| o.len() as u64),
        osds_up: osds.map_or(0, |o| o.iter().filter(|o| u(&o["up"]) == 1).count() as u64),
        osds_in: osds.map_or(0, |o| o.iter().filter(|o| u(&o["in"]) == 1).count() as u64),
        objects_degraded: u(&v["pg_info"]["object_stats"]["num_objects_degraded"]),
        objects_misplaced: u(&v["pg_info"]["object_stats"]["num_objects_misplaced"]),
        objects_unfound: u(&v["pg_info"]["object_stats"]["num_objects_unfound"]),
        bytes_total: u(&v["df"]["stats"]["total_bytes"]),
        bytes_avail: u(&v["df"]["stats"]["total_avail_bytes"]),
    })
}

pub fn minimal(mgr: &Mgr) -> Result<Minimal, Failure> {
    let answer = mgr.get("/api/health/minimal")?;
    parse_minimal(&answer).ok_or_else(|| {
        Failure::permanent(format!(
            "the Ceph dashboard at {}/api/health/minimal answered without a health status: {}; \
             does the dashboard user have read access to the cluster (role `read-only` or more)?",
            mgr.url,
            answer.to_string().chars().take(200).collect::<String>()
        ))
    })
}

// ---------------------------------------------------------------- health

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HealthParams {
    #[serde(flatten)]
    pub target: Target,
    /// Fail (retryable) unless the cluster is HEALTH_OK, apart from `ignore_checks`;
    /// false just reports the health.
    #[serde(default = "yes")]
    pub require_ok: bool,
    /// Health checks that do not count against `require_ok`, e.g. `[OSDMAP_FLAGS]`
    /// while a maintenance flag is set on purpose.
    #[serde(default)]
    pub ignore_checks: Vec<String>,
}

fn yes() -> bool {
    true
}

#[derive(Serialize, JsonSchema)]
pub struct HealthOutput {
    /// `HEALTH_OK`, `HEALTH_WARN` or `HEALTH_ERR`.
    pub status: String,
    pub checks: Vec<Check>,
    /// Whether the cluster counts as healthy: HEALTH_OK, or only ignored or muted checks.
    pub ok: bool,
}

/// `ceph health detail`.
pub struct Health;

impl TypedAction for Health {
    const NAME: &'static str = "health";
    const EFFECT: Effect = Effect::ReadOnly;
    const DESCRIPTION: &'static str = "The cluster's health and its checks (ceph health detail)";
    type Params = HealthParams;
    type Output = HealthOutput;

    fn invoke(_ctx: &Context, p: HealthParams) -> Result<HealthOutput, Failure> {
        let mgr = p.target.connect()?;
        let m = minimal(&mgr)?;
        let failing: Vec<&Check> = m
            .checks
            .iter()
            .filter(|c| !c.muted && !p.ignore_checks.contains(&c.name))
            .collect();
        let ok = m.status == "HEALTH_OK" || failing.is_empty();
        if p.require_ok && !ok {
            let list: Vec<String> = failing
                .iter()
                .map(|c| format!("{} ({}): {}", c.name, c.severity, c.summary))
                .collect();
            return Err(Failure::retryable(format!(
                "the cluster behind {} is {}: {}; fix these first, or name a check that is \
                 expected in `ignore_checks`",
                mgr.url,
                m.status,
                list.join("; ")
            )));
        }
        Ok(HealthOutput {
            status: m.status,
            checks: m.checks,
            ok,
        })
    }

    fn observe(_: &Context, _: HealthParams) -> Result<Observation<HealthOutput>, Failure> {
        Ok(Observation::NotDone)
    }
}

// ---------------------------------------------------------------- status

#[derive(Serialize, JsonSchema)]
pub struct StatusOutput {
    pub health: String,
    /// Monitors in quorum.
    pub quorum: u64,
    /// The active mgr's name.
    pub mgr_active: String,
    pub osds: u64,
    pub osds_up: u64,
    pub osds_in: u64,
    /// The cluster-wide OSD flags (`noout`, ...).
    pub flags: Vec<String>,
    pub pgs: u64,
    pub pgs_active_clean: u64,
    /// Placement groups by state, e.g. `{"active+clean": 120}`.
    pub pgs_by_state: BTreeMap<String, u64>,
    pub objects_degraded: u64,
    pub objects_misplaced: u64,
    pub objects_unfound: u64,
    pub bytes_total: u64,
    pub bytes_avail: u64,
}

/// `ceph status`.
pub struct Status;

impl TypedAction for Status {
    const NAME: &'static str = "status";
    const EFFECT: Effect = Effect::ReadOnly;
    const DESCRIPTION: &'static str =
        "Quorum, mgr, OSDs up/in, flags, placement groups by state, usage (ceph status)";
    type Params = Target;
    type Output = StatusOutput;

    fn invoke(_ctx: &Context, p: Target) -> Result<StatusOutput, Failure> {
        let mgr = p.connect()?;
        let m = minimal(&mgr)?;
        let flags = mgr.get("/api/osd/flags")?;
        Ok(StatusOutput {
            health: m.status.clone(),
            quorum: m.quorum,
            mgr_active: m.mgr_active.clone(),
            osds: m.osds,
            osds_up: m.osds_up,
            osds_in: m.osds_in,
            flags: flags
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|f| f.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default(),
            pgs: m.pgs(),
            pgs_active_clean: m.active_clean(),
            objects_degraded: m.objects_degraded,
            objects_misplaced: m.objects_misplaced,
            objects_unfound: m.objects_unfound,
            bytes_total: m.bytes_total,
            bytes_avail: m.bytes_avail,
            pgs_by_state: m.pgs_by_state,
        })
    }

    fn observe(_: &Context, _: Target) -> Result<Observation<StatusOutput>, Failure> {
        Ok(Observation::NotDone)
    }
}

// ---------------------------------------------------------------- wait-clean

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WaitCleanParams {
    #[serde(flatten)]
    pub target: Target,
    /// Give up (retryable failure) after this many seconds. The step's `timeout`
    /// (default 5 minutes) must be longer.
    #[serde(default = "default_deadline")]
    #[schemars(range(min = 1))]
    pub deadline_s: u64,
    /// Seconds between two looks at the cluster.
    #[serde(default = "default_poll")]
    #[schemars(range(min = 1, max = 60))]
    pub poll_s: u64,
    /// Seconds the cluster must stay all active+clean before the wait ends: the mgr
    /// hears the OSDs' PG stats every few seconds (`mgr_stats_period`, 5 s), so right
    /// after a change (an OSD marked in) it may still report the state from before.
    #[serde(default = "default_settle")]
    #[schemars(range(max = 600))]
    pub settle_s: u64,
    /// OSDs that must also be up (e.g. the one just restarted: right after a restart
    /// its PGs may still look clean until the mons notice it went down).
    #[serde(default)]
    pub osds_up: Vec<u32>,
}

fn default_deadline() -> u64 {
    240
}

fn default_poll() -> u64 {
    2
}

fn default_settle() -> u64 {
    5
}

#[derive(Serialize, JsonSchema)]
pub struct WaitCleanOutput {
    pub pgs: u64,
    pub pgs_active_clean: u64,
    /// How long the wait took, milliseconds.
    pub waited_ms: u64,
    /// How many times the cluster was asked.
    pub polls: u64,
}

/// Waits until every placement group is active+clean.
pub struct WaitClean;

impl TypedAction for WaitClean {
    const NAME: &'static str = "wait-clean";
    const EFFECT: Effect = Effect::ReadOnly;
    const DESCRIPTION: &'static str = "Waits until every placement group is active+clean (and \
         given OSDs are up) for `settle_s`, reporting progress, up to a deadline";
    type Params = WaitCleanParams;
    type Output = WaitCleanOutput;

    fn invoke(_ctx: &Context, p: WaitCleanParams) -> Result<WaitCleanOutput, Failure> {
        let mgr = p.target.connect()?;
        for id in &p.osds_up {
            osd::find(&mgr, *id)?;
        }
        let started = Instant::now();
        let deadline = Duration::from_secs(p.deadline_s);
        let settle = Duration::from_secs(p.settle_s);
        let mut clean_since: Option<Instant> = None;
        let mut polls = 0;
        loop {
            polls += 1;
            let m = minimal(&mgr)?;
            let down: Vec<u32> = if p.osds_up.is_empty() {
                Vec::new()
            } else {
                osd::list(&mgr)?
                    .into_iter()
                    .filter(|o| p.osds_up.contains(&o.osd) && !o.up)
                    .map(|o| o.osd)
                    .collect()
            };
            let (pgs, clean) = (m.pgs(), m.active_clean());
            let mut message = format!("{clean} of {pgs} placement groups active+clean");
            if clean < pgs {
                message.push_str(&format!(" (others: {})", m.unclean()));
            }
            if !down.is_empty() {
                message.push_str(&format!("; waiting for osd {down:?} to be up"));
            }
            medic_sdk::progress(clean, pgs, &message);
            if pgs > 0 && clean == pgs && down.is_empty() {
                let since = *clean_since.get_or_insert_with(Instant::now);
                if since.elapsed() < settle {
                    std::thread::sleep(Duration::from_secs(p.poll_s).min(settle));
                    continue;
                }
                return Ok(WaitCleanOutput {
                    pgs,
                    pgs_active_clean: clean,
                    waited_ms: started.elapsed().as_millis() as u64,
                    polls,
                });
            }
            clean_since = None;
            if started.elapsed() + Duration::from_secs(p.poll_s) > deadline {
                return Err(Failure::retryable(format!(
                    "after {} s the cluster behind {} still has {message}; check `ceph health \
                     detail` for stuck or down placement groups",
                    p.deadline_s, mgr.url
                )));
            }
            std::thread::sleep(Duration::from_secs(p.poll_s));
        }
    }

    fn observe(_: &Context, _: WaitCleanParams) -> Result<Observation<WaitCleanOutput>, Failure> {
        Ok(Observation::NotDone)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use medic_sdk::json;

    #[test]
    fn minimal_health_is_read_with_pg_states_and_checks() {
        let v = json!({
            "health": {"status": "HEALTH_WARN", "checks": [{"severity": "HEALTH_WARN",
                "summary": {"message": "noout flag(s) set", "count": 1}, "muted": false,
                "type": "OSDMAP_FLAGS"}]},
            "mon_status": {"quorum": [0, 1, 2]},
            "osd_map": {"osds": [{"in": 1, "up": 1}, {"in": 0, "up": 1}]},
            "pg_info": {"statuses": {"active+clean": 7, "active+undersized+degraded": 2},
                "object_stats": {"num_objects_degraded": 4}},
            "mgr_map": {"active_name": "x"},
            "df": {"stats": {"total_bytes": 100, "total_avail_bytes": 60}}
        });
        let m = parse_minimal(&v).unwrap();
        assert_eq!(m.status, "HEALTH_WARN");
        assert_eq!(m.checks[0].name, "OSDMAP_FLAGS");
        assert_eq!((m.pgs(), m.active_clean()), (9, 7));
        assert_eq!(m.unclean(), "2 active+undersized+degraded");
        assert_eq!((m.quorum, m.osds, m.osds_up, m.osds_in), (3, 2, 2, 1));
        assert_eq!(m.objects_degraded, 4);
        assert!(parse_minimal(&json!({"detail": "no"})).is_none());
    }
}
