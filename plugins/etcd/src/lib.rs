//! `etcd`: recovery actions for an etcd 3.4+ cluster over its v3 JSON gateway (the
//! client URL, granted to the plugin as an HTTP origin): health, status, members,
//! snapshot into a run artifact, defragment, alarms, learner promotion. Every action
//! talks to one member, the `endpoint` of its params; an optional `token_secret`
//! names a granted secret holding an etcd auth token.

mod b64;
mod gateway;

use std::io::Write;

use gateway::{Endpoint, hex, parse_member_id, u64_field};
use medic_sdk::{
    Actions, Context, Effect, Failure, Observation, TypedAction, TypedPlugin, Value, json,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

// Exported only in a wasm32 build; native builds are for unit tests.
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
struct Etcd;

impl TypedPlugin for Etcd {
    const NAME: &'static str = env!("CARGO_CRATE_NAME");
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str = "etcd 3.4+ over the v3 JSON gateway: health, status, members, snapshot, defragment, alarms, promote";

    fn actions() -> Actions {
        Actions::new()
            .add::<Health>()
            .add::<Status>()
            .add::<MemberList>()
            .add::<Snapshot>()
            .add::<Defragment>()
            .add::<AlarmList>()
            .add::<AlarmDisarm>()
            .add::<MemberPromote>()
    }
}

medic_sdk::export_plugin!(Etcd);

/// The member to talk to, common to every action.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Target {
    /// The member's client URL, `http://HOST:PORT` or `https://HOST:PORT` (no path);
    /// the plan must grant it: `grants: { http: [URL] }`.
    #[schemars(regex(pattern = r"^https?://[^/\s]+/?$"))]
    pub endpoint: String,
    /// A granted secret holding an etcd auth token, sent as `Authorization`. Leave it
    /// out when auth is off or medic.toml attaches the credential for the origin.
    #[serde(default)]
    pub token_secret: Option<String>,
}

impl Target {
    fn connect(&self) -> Result<Endpoint, Failure> {
        Endpoint::new(&self.endpoint, self.token_secret.as_deref())
    }
}

// ---------------------------------------------------------------- health

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HealthParams {
    #[serde(flatten)]
    pub target: Target,
    /// Fail (retryable) when the member reports itself unhealthy; false just reports it.
    #[serde(default = "yes")]
    pub require_healthy: bool,
}

fn yes() -> bool {
    true
}

#[derive(Serialize, JsonSchema)]
pub struct HealthOutput {
    pub endpoint: String,
    pub healthy: bool,
    /// etcd's reason when it says it is not healthy (e.g. `NOSPACE`, no leader).
    pub reason: String,
}

/// `GET /health`: whether the member has a leader, no alarm and answers a read.
pub struct Health;

impl TypedAction for Health {
    const NAME: &'static str = "health";
    const EFFECT: Effect = Effect::ReadOnly;
    const DESCRIPTION: &'static str = "Whether a member is healthy (GET /health)";
    type Params = HealthParams;
    type Output = HealthOutput;

    fn invoke(_ctx: &Context, p: HealthParams) -> Result<HealthOutput, Failure> {
        let endpoint = p.target.connect()?;
        let (status, body) = endpoint.get("/health")?;
        let answer: Value = serde_json::from_slice(&body).map_err(|_| {
            Failure::permanent(format!(
                "etcd at {}/health answered HTTP {status} with {:?}, not etcd's health JSON; is \
                 this an etcd client URL?",
                endpoint.url,
                String::from_utf8_lossy(&body)
                    .chars()
                    .take(200)
                    .collect::<String>()
            ))
        })?;
        let healthy = answer["health"] == "true" || answer["health"] == true;
        let reason = answer["reason"].as_str().unwrap_or_default().to_string();
        if !healthy && p.require_healthy {
            return Err(Failure::retryable(format!(
                "etcd at {} is not healthy (HTTP {status}{}{reason}); check its quorum and \
                 alarms (`etcd/alarm-list`)",
                endpoint.url,
                if reason.is_empty() { "" } else { ": " }
            )));
        }
        Ok(HealthOutput {
            endpoint: endpoint.url,
            healthy,
            reason,
        })
    }

    fn observe(_: &Context, _: HealthParams) -> Result<Observation<HealthOutput>, Failure> {
        Ok(Observation::NotDone)
    }
}

// ---------------------------------------------------------------- status

#[derive(Serialize, JsonSchema)]
pub struct StatusOutput {
    pub endpoint: String,
    /// etcd's server version, e.g. `3.4.23`.
    pub version: String,
    /// This member's id, decimal (as the JSON gateway writes it).
    pub member_id: String,
    /// The leader's id, decimal; `0` when the member sees no leader.
    pub leader: String,
    pub is_leader: bool,
    pub is_learner: bool,
    /// Size of the backend database file, bytes.
    pub db_size: u64,
    /// Bytes of it in use (the rest is what a defragment gives back).
    pub db_size_in_use: u64,
    pub raft_index: u64,
    pub raft_term: u64,
    pub raft_applied_index: u64,
    /// The store's revision when asked.
    pub revision: u64,
    /// Errors the member reports about itself (e.g. an active alarm).
    pub errors: Vec<String>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StatusParams {
    #[serde(flatten)]
    pub target: Target,
    /// Fail (retryable) while the member sees no leader: the check that the cluster
    /// has quorum again after a restart.
    #[serde(default)]
    pub require_leader: bool,
}

/// `POST /v3/maintenance/status`.
pub struct Status;

impl TypedAction for Status {
    const NAME: &'static str = "status";
    const EFFECT: Effect = Effect::ReadOnly;
    const DESCRIPTION: &'static str =
        "A member's version, db size, leader and raft index (maintenance/status)";
    type Params = StatusParams;
    type Output = StatusOutput;

    fn invoke(_ctx: &Context, p: StatusParams) -> Result<StatusOutput, Failure> {
        let status = status(&p.target.connect()?)?;
        if p.require_leader && status.leader == "0" {
            return Err(Failure::retryable(format!(
                "etcd at {} sees no leader: the cluster has lost quorum or is electing one; \
                 check that a majority of its voting members are up",
                status.endpoint
            )));
        }
        Ok(status)
    }

    fn observe(_: &Context, _: StatusParams) -> Result<Observation<StatusOutput>, Failure> {
        Ok(Observation::NotDone)
    }
}

fn status(endpoint: &Endpoint) -> Result<StatusOutput, Failure> {
    let s = endpoint.post("/v3/maintenance/status", &json!({}))?;
    let member = u64_field(&s["header"], "member_id");
    let leader = u64_field(&s, "leader");
    Ok(StatusOutput {
        endpoint: endpoint.url.clone(),
        version: s["version"].as_str().unwrap_or_default().to_string(),
        member_id: member.to_string(),
        leader: leader.to_string(),
        is_leader: member != 0 && member == leader,
        is_learner: s["isLearner"].as_bool().unwrap_or(false),
        db_size: u64_field(&s, "dbSize"),
        db_size_in_use: u64_field(&s, "dbSizeInUse"),
        raft_index: u64_field(&s, "raftIndex"),
        raft_term: u64_field(&s, "raftTerm"),
        raft_applied_index: u64_field(&s, "raftAppliedIndex"),
        revision: u64_field(&s["header"], "revision"),
        errors: s["errors"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|e| e.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default(),
    })
}

// ---------------------------------------------------------------- member-list

#[derive(Serialize, JsonSchema, Clone)]
pub struct Member {
    /// Decimal id (what `member-promote` takes).
    pub id: String,
    /// The same id in hex, as `etcdctl member list` prints it.
    pub id_hex: String,
    /// Empty for a member added but not started yet.
    pub name: String,
    pub peer_urls: Vec<String>,
    pub client_urls: Vec<String>,
    pub is_learner: bool,
}

#[derive(Serialize, JsonSchema)]
pub struct MemberListOutput {
    pub endpoint: String,
    pub members: Vec<Member>,
    /// Voting members: quorum is `voters / 2 + 1` of them.
    pub voters: u32,
    pub learners: u32,
    pub quorum: u32,
}

/// `POST /v3/cluster/member/list`.
pub struct MemberList;

impl TypedAction for MemberList {
    const NAME: &'static str = "member-list";
    const EFFECT: Effect = Effect::ReadOnly;
    const DESCRIPTION: &'static str = "The cluster's members, voters and learners";
    type Params = Target;
    type Output = MemberListOutput;

    fn invoke(_ctx: &Context, p: Target) -> Result<MemberListOutput, Failure> {
        let endpoint = p.connect()?;
        let members = members(&endpoint)?;
        let voters = members.iter().filter(|m| !m.is_learner).count() as u32;
        Ok(MemberListOutput {
            endpoint: endpoint.url,
            learners: members.len() as u32 - voters,
            quorum: voters / 2 + 1,
            voters,
            members,
        })
    }

    fn observe(_: &Context, _: Target) -> Result<Observation<MemberListOutput>, Failure> {
        Ok(Observation::NotDone)
    }
}

fn members(endpoint: &Endpoint) -> Result<Vec<Member>, Failure> {
    let list = endpoint.post("/v3/cluster/member/list", &json!({}))?;
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    Ok(list["members"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|m| {
            let id = u64_field(m, "ID");
            Member {
                id: id.to_string(),
                id_hex: hex(id),
                name: m["name"].as_str().unwrap_or_default().to_string(),
                peer_urls: strings(&m["peerURLs"]),
                client_urls: strings(&m["clientURLs"]),
                is_learner: m["isLearner"].as_bool().unwrap_or(false),
            }
        })
        .collect())
}

// ---------------------------------------------------------------- snapshot

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SnapshotParams {
    #[serde(flatten)]
    pub target: Target,
    /// The run artifact to write (letters, digits, `.`, `-`, `_`).
    #[serde(default = "default_artifact")]
    #[schemars(regex(pattern = r"^[A-Za-z0-9._-]+$"))]
    pub artifact: String,
}

fn default_artifact() -> String {
    "etcd-snapshot.db".to_string()
}

#[derive(Serialize, JsonSchema)]
pub struct SnapshotOutput {
    pub endpoint: String,
    /// The artifact's name: `DATA_DIR/artifacts/RUN/NAME`, a file `etcdctl snapshot
    /// status` and `etcdctl snapshot restore` take.
    pub artifact: String,
    pub bytes: u64,
    /// The store's revision just before the snapshot began (the snapshot holds at
    /// least it).
    pub revision: u64,
}

/// `POST /v3/maintenance/snapshot`: the member's backend, streamed, into an artifact.
pub struct Snapshot;

impl TypedAction for Snapshot {
    const NAME: &'static str = "snapshot";
    // Changes nothing in etcd; a retry starts the artifact afresh.
    const EFFECT: Effect = Effect::ReadOnly;
    const DESCRIPTION: &'static str =
        "Saves a member's snapshot (maintenance/snapshot) into a run artifact";
    type Params = SnapshotParams;
    type Output = SnapshotOutput;

    fn invoke(_ctx: &Context, p: SnapshotParams) -> Result<SnapshotOutput, Failure> {
        let endpoint = p.target.connect()?;
        let before = status(&endpoint)?;
        let path = "/v3/maintenance/snapshot";
        let mut answer = endpoint.open("POST", path, Some(&json!({})), None)?;
        if answer.status != 200 {
            let mut body = Vec::new();
            while let Some(chunk) = answer.body.chunk()? {
                body.extend_from_slice(&chunk);
            }
            endpoint.answer(path, answer.status, &body)?;
        }
        // The gateway streams one JSON object a line per chunk of the backend:
        // {"result":{"blob":BASE64,"remaining_bytes":...}}, or {"error":{...}} when the
        // stream broke; the last chunk is the sha256 etcdctl also appends (and `snapshot
        // restore` checks). Read as it arrives, so the plugin never holds the whole db.
        let mut writer = medic_sdk::artifact::Writer::new(&p.artifact);
        let mut bytes = 0u64;
        let total = before.db_size.max(1);
        let mut pending: Vec<u8> = Vec::new();
        let mut ended = false;
        while !ended {
            match answer.body.chunk()? {
                Some(chunk) => pending.extend_from_slice(&chunk),
                None => ended = true,
            }
            while let Some(line) = next_line(&mut pending, ended) {
                let data = snapshot_chunk(&endpoint.url, path, &line, bytes)?;
                writer.write_all(&data).map_err(|e| {
                    Failure::permanent(format!("writing artifact `{}`: {e}", p.artifact))
                })?;
                bytes += data.len() as u64;
                medic_sdk::progress(bytes.min(total), total, "streaming the snapshot");
            }
        }
        if bytes == 0 {
            return Err(Failure::retryable(format!(
                "etcd at {}{path} sent an empty snapshot",
                endpoint.url
            )));
        }
        Ok(SnapshotOutput {
            endpoint: endpoint.url,
            artifact: p.artifact,
            bytes,
            revision: before.revision,
        })
    }

    fn observe(_: &Context, _: SnapshotParams) -> Result<Observation<SnapshotOutput>, Failure> {
        Ok(Observation::NotDone)
    }
}

/// Takes the next complete line out of `pending` (the rest of it too when the stream
/// has `ended`); blank lines are skipped.
fn next_line(pending: &mut Vec<u8>, ended: bool) -> Option<Vec<u8>> {
    loop {
        let line = match pending.iter().position(|&b| b == b'\n') {
            Some(end) => {
                let mut line: Vec<u8> = pending.drain(..=end).collect();
                line.pop();
                line
            }
            None if ended && !pending.is_empty() => std::mem::take(pending),
            None => return None,
        };
        if !line.iter().all(u8::is_ascii_whitespace) {
            return Some(line);
        }
    }
}

/// The bytes of one line of the gateway's snapshot stream.
fn snapshot_chunk(url: &str, path: &str, line: &[u8], so_far: u64) -> Result<Vec<u8>, Failure> {
    let chunk: Value = serde_json::from_slice(line).map_err(|e| {
        Failure::retryable(format!(
            "etcd at {url}{path}: the snapshot stream broke off after {so_far} bytes ({e})"
        ))
    })?;
    if let Some(error) = chunk.get("error") {
        return Err(Failure::retryable(format!(
            "etcd at {url}{path}: the snapshot stream failed after {so_far} bytes: {error}"
        )));
    }
    let blob = chunk["result"]["blob"].as_str().unwrap_or_default();
    b64::decode(blob).ok_or_else(|| {
        Failure::permanent(format!(
            "etcd at {url}{path}: a snapshot chunk is not base64"
        ))
    })
}

// ---------------------------------------------------------------- defragment

#[derive(Serialize, JsonSchema)]
pub struct DefragmentOutput {
    pub endpoint: String,
    pub db_size_before: u64,
    pub db_size_after: u64,
    pub db_size_in_use: u64,
}

/// `POST /v3/maintenance/defragment`: gives the backend's free pages back to the
/// file system. Blocks the member's reads and writes while it runs: one member at a
/// time.
pub struct Defragment;

impl TypedAction for Defragment {
    const NAME: &'static str = "defragment";
    const EFFECT: Effect = Effect::Idempotent;
    const DESCRIPTION: &'static str =
        "Defragments one member's backend (maintenance/defragment); run one member at a time";
    type Params = Target;
    type Output = DefragmentOutput;

    fn invoke(_ctx: &Context, p: Target) -> Result<DefragmentOutput, Failure> {
        let endpoint = p.connect()?;
        let before = status(&endpoint)?;
        endpoint.post_slow("/v3/maintenance/defragment", &json!({}))?;
        let after = status(&endpoint)?;
        Ok(DefragmentOutput {
            endpoint: endpoint.url,
            db_size_before: before.db_size,
            db_size_after: after.db_size,
            db_size_in_use: after.db_size_in_use,
        })
    }
}

// ---------------------------------------------------------------- alarms

#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "UPPERCASE")]
pub enum AlarmKind {
    /// The backend reached its quota: writes are refused until space is freed
    /// (compact, defragment) and the alarm disarmed.
    Nospace,
    /// A member's data was found corrupt.
    Corrupt,
}

impl AlarmKind {
    fn name(self) -> &'static str {
        match self {
            AlarmKind::Nospace => "NOSPACE",
            AlarmKind::Corrupt => "CORRUPT",
        }
    }
}

#[derive(Serialize, JsonSchema, Clone)]
pub struct Alarm {
    /// Decimal member id.
    pub member_id: String,
    /// `NOSPACE` or `CORRUPT`.
    pub alarm: String,
}

#[derive(Serialize, JsonSchema)]
pub struct AlarmListOutput {
    pub endpoint: String,
    pub alarms: Vec<Alarm>,
    pub count: u32,
}

/// `POST /v3/maintenance/alarm` with action GET.
pub struct AlarmList;

impl TypedAction for AlarmList {
    const NAME: &'static str = "alarm-list";
    const EFFECT: Effect = Effect::ReadOnly;
    const DESCRIPTION: &'static str = "The cluster's active alarms";
    type Params = Target;
    type Output = AlarmListOutput;

    fn invoke(_ctx: &Context, p: Target) -> Result<AlarmListOutput, Failure> {
        let endpoint = p.connect()?;
        let alarms = alarms(&endpoint)?;
        Ok(AlarmListOutput {
            endpoint: endpoint.url,
            count: alarms.len() as u32,
            alarms,
        })
    }

    fn observe(_: &Context, _: Target) -> Result<Observation<AlarmListOutput>, Failure> {
        Ok(Observation::NotDone)
    }
}

fn alarms(endpoint: &Endpoint) -> Result<Vec<Alarm>, Failure> {
    let answer = endpoint.post("/v3/maintenance/alarm", &json!({"action": "GET"}))?;
    Ok(answer["alarms"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|a| Alarm {
            member_id: u64_field(a, "memberID").to_string(),
            // The gateway omits enum fields at their zero value (NONE).
            alarm: a["alarm"].as_str().unwrap_or("NONE").to_string(),
        })
        .collect())
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AlarmDisarmParams {
    #[serde(flatten)]
    pub target: Target,
    /// Which alarm to disarm. Free the space (compact, defragment) before disarming
    /// NOSPACE, or it fires again.
    pub alarm: AlarmKind,
    /// Only this member's alarm (decimal, or hex as etcdctl prints it); every
    /// member's when left out.
    #[serde(default)]
    pub member_id: Option<String>,
}

#[derive(Serialize, JsonSchema)]
pub struct AlarmDisarmOutput {
    pub endpoint: String,
    /// The alarms this call disarmed (none when there were none: disarming is idempotent).
    pub disarmed: Vec<Alarm>,
    /// Alarms still active afterwards, of any kind.
    pub remaining: Vec<Alarm>,
}

/// `POST /v3/maintenance/alarm` with action DEACTIVATE, for each matching alarm.
pub struct AlarmDisarm;

impl AlarmDisarm {
    fn matching(p: &AlarmDisarmParams, alarms: &[Alarm]) -> Result<Vec<Alarm>, Failure> {
        let member = p.member_id.as_deref().map(parse_member_id).transpose()?;
        Ok(alarms
            .iter()
            .filter(|a| a.alarm == p.alarm.name())
            .filter(|a| member.is_none_or(|m| a.member_id == m.to_string()))
            .cloned()
            .collect())
    }
}

impl TypedAction for AlarmDisarm {
    const NAME: &'static str = "alarm-disarm";
    const EFFECT: Effect = Effect::Idempotent;
    const DESCRIPTION: &'static str =
        "Disarms an alarm (NOSPACE, CORRUPT) on one or every member; nothing to do is success";
    type Params = AlarmDisarmParams;
    type Output = AlarmDisarmOutput;

    fn invoke(_ctx: &Context, p: AlarmDisarmParams) -> Result<AlarmDisarmOutput, Failure> {
        let endpoint = p.target.connect()?;
        let disarm = Self::matching(&p, &alarms(&endpoint)?)?;
        for a in &disarm {
            endpoint.post(
                "/v3/maintenance/alarm",
                &json!({"action": "DEACTIVATE", "memberID": a.member_id, "alarm": a.alarm}),
            )?;
        }
        let remaining = alarms(&endpoint)?;
        if let Some(still) = Self::matching(&p, &remaining)?.first() {
            return Err(Failure::retryable(format!(
                "etcd at {}: alarm {} of member {} is still active after disarming it; the \
                 condition is back (for NOSPACE: compact and defragment first)",
                endpoint.url, still.alarm, still.member_id
            )));
        }
        Ok(AlarmDisarmOutput {
            endpoint: endpoint.url,
            disarmed: disarm,
            remaining,
        })
    }

    fn observe(
        _: &Context,
        p: AlarmDisarmParams,
    ) -> Result<Observation<AlarmDisarmOutput>, Failure> {
        let endpoint = p.target.connect()?;
        let remaining = alarms(&endpoint)?;
        if Self::matching(&p, &remaining)?.is_empty() {
            Ok(Observation::Done(AlarmDisarmOutput {
                endpoint: endpoint.url,
                disarmed: Vec::new(),
                remaining,
            }))
        } else {
            Ok(Observation::NotDone)
        }
    }
}

// ---------------------------------------------------------------- member-promote

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MemberPromoteParams {
    #[serde(flatten)]
    pub target: Target,
    /// The learner to promote: decimal id (`member-list`'s `id`), or hex as etcdctl
    /// prints it (a hex id of digits only must be written `0x...`).
    #[schemars(length(min = 1))]
    pub member_id: String,
}

#[derive(Serialize, JsonSchema)]
pub struct MemberPromoteOutput {
    pub endpoint: String,
    pub member_id: String,
    /// False when the member already was a voter (nothing to do).
    pub promoted: bool,
    pub voters: u32,
}

/// `POST /v3/cluster/member/promote`: a learner becomes a voting member. etcd refuses
/// until the learner has caught up with the leader (a retryable failure).
pub struct MemberPromote;

impl TypedAction for MemberPromote {
    const NAME: &'static str = "member-promote";
    const EFFECT: Effect = Effect::Mutating;
    const DESCRIPTION: &'static str =
        "Promotes a learner to a voting member once it has caught up (member/promote)";
    type Params = MemberPromoteParams;
    type Output = MemberPromoteOutput;

    fn invoke(_ctx: &Context, p: MemberPromoteParams) -> Result<MemberPromoteOutput, Failure> {
        let endpoint = p.target.connect()?;
        let id = parse_member_id(&p.member_id)?;
        let member = find_member(&endpoint, id)?;
        if !member.is_learner {
            return promoted(&endpoint, id, false);
        }
        let path = "/v3/cluster/member/promote";
        match endpoint.post(path, &json!({"ID": id.to_string()})) {
            Ok(_) => promoted(&endpoint, id, true),
            Err(f) if f.message.contains("in sync with leader") => {
                Err(Failure::retryable(format!(
                    "etcd at {}{path}: learner {id} ({}) has not caught up with the leader yet; \
                 medic retries per the step's retry policy (is the learner's etcd running?)",
                    endpoint.url,
                    hex(id)
                )))
            }
            Err(f) => Err(f),
        }
    }

    fn observe(
        _: &Context,
        p: MemberPromoteParams,
    ) -> Result<Observation<MemberPromoteOutput>, Failure> {
        let endpoint = p.target.connect()?;
        let id = parse_member_id(&p.member_id)?;
        let member = find_member(&endpoint, id)?;
        if member.is_learner {
            Ok(Observation::NotDone)
        } else {
            Ok(Observation::Done(promoted(&endpoint, id, true)?))
        }
    }
}

fn find_member(endpoint: &Endpoint, id: u64) -> Result<Member, Failure> {
    let all = members(endpoint)?;
    all.iter()
        .find(|m| m.id == id.to_string())
        .cloned()
        .ok_or_else(|| {
            let ids: Vec<String> = all
                .iter()
                .map(|m| format!("{} ({})", m.id, m.name))
                .collect();
            Failure::permanent(format!(
                "etcd at {}: no member {id} ({}); its members are {}",
                endpoint.url,
                hex(id),
                ids.join(", ")
            ))
        })
}

fn promoted(endpoint: &Endpoint, id: u64, promoted: bool) -> Result<MemberPromoteOutput, Failure> {
    let voters = members(endpoint)?.iter().filter(|m| !m.is_learner).count() as u32;
    Ok(MemberPromoteOutput {
        endpoint: endpoint.url.clone(),
        member_id: id.to_string(),
        promoted,
        voters,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use medic_sdk::Plugin;

    #[test]
    fn manifest_lists_every_action_with_its_effect() {
        let m = <Etcd as Plugin>::manifest();
        let names: Vec<&str> = m.actions.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "health",
                "status",
                "member-list",
                "snapshot",
                "defragment",
                "alarm-list",
                "alarm-disarm",
                "member-promote"
            ]
        );
    }

    #[test]
    fn snapshot_stream_lines_are_split_however_the_chunks_fall() {
        let mut pending = b"{\"a\":1}\n\n{\"b\"".to_vec();
        assert_eq!(next_line(&mut pending, false).unwrap(), b"{\"a\":1}");
        assert_eq!(next_line(&mut pending, false), None);
        pending.extend_from_slice(b":2}");
        assert_eq!(next_line(&mut pending, true).unwrap(), b"{\"b\":2}");
        assert_eq!(next_line(&mut pending, true), None);
        let line = br#"{"result":{"blob":"Zm9v"}}"#;
        assert_eq!(snapshot_chunk("u", "/p", line, 0).unwrap(), b"foo");
        let broken = snapshot_chunk("u", "/p", br#"{"error":{"code":14}}"#, 9).unwrap_err();
        assert!(broken.retryable && broken.message.contains("after 9 bytes"));
    }

    #[test]
    fn member_ids_read_as_decimal_or_hex() {
        assert_eq!(
            parse_member_id("995376874953495308").unwrap(),
            995376874953495308
        );
        assert_eq!(
            parse_member_id("dd0455f6d1edcc0c").unwrap(),
            0xdd0455f6d1edcc0c
        );
        assert_eq!(parse_member_id("0x10").unwrap(), 16);
        assert!(parse_member_id("zz").is_err());
    }
}
