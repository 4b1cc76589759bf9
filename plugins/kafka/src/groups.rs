//! Consumer groups, asked of their coordinator: state and members (DescribeGroups),
//! committed offsets (OffsetFetch), lag against the logs' end offsets, and resetting
//! committed offsets (OffsetCommit as an admin, which Kafka only accepts while the
//! group has no members: the plugin checks first and says so).

use std::collections::BTreeMap;

use kafka_protocol::messages::{
    DescribeGroupsRequest, GroupId, OffsetCommitRequest, OffsetFetchRequest,
    offset_commit_request::OffsetCommitRequestPartition,
    offset_commit_request::OffsetCommitRequestTopic, offset_fetch_request::OffsetFetchRequestTopic,
};
use medic_sdk::{Context, Effect, Failure, Observation, TypedAction};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::client::{Cluster, check, str_bytes, topic_name};
use crate::offsets::{Partition, bounds, list_offsets, partitions_of, select};
use crate::time::Timestamp;
use crate::{PartitionOffset, Target, TopicPartitionOffset};

#[derive(Serialize, JsonSchema)]
pub struct Member {
    pub member_id: String,
    pub client_id: String,
    pub client_host: String,
}

#[derive(Serialize, JsonSchema)]
pub struct GroupState {
    pub group: String,
    /// Kafka's group state: `Empty`, `Stable`, `PreparingRebalance`,
    /// `CompletingRebalance` or `Dead` (unknown group).
    pub state: String,
    pub protocol_type: String,
    pub members: Vec<Member>,
}

fn describe(cluster: &mut Cluster, group: &str) -> Result<GroupState, Failure> {
    let request = DescribeGroupsRequest::default()
        .with_groups(vec![GroupId(str_bytes(group))])
        .with_include_authorized_operations(false);
    let answer = cluster.coordinator(group)?.call(&request)?;
    let g = answer.groups.into_iter().next().ok_or_else(|| {
        Failure::retryable(format!("DescribeGroups of `{group}` answered no group"))
    })?;
    check(
        g.error_code,
        &format!("describing consumer group `{group}`"),
    )?;
    Ok(GroupState {
        group: group.to_string(),
        state: g.group_state.to_string(),
        protocol_type: g.protocol_type.to_string(),
        members: g
            .members
            .iter()
            .map(|m| Member {
                member_id: m.member_id.to_string(),
                client_id: m.client_id.to_string(),
                client_host: m.client_host.to_string(),
            })
            .collect(),
    })
}

/// Committed offsets of `group`, by topic and partition (only those it committed).
fn committed(
    cluster: &mut Cluster,
    group: &str,
    topics: Option<&[(String, Vec<i32>)]>,
) -> Result<BTreeMap<(String, i32), i64>, Failure> {
    // "All topics" is asked as every topic of the cluster by name rather than as
    // Kafka's null list: tansu 0.6 answers the null list with a null array, which no
    // client can read.
    let all;
    let topics = match topics {
        Some(t) => t,
        None => {
            let metadata = cluster.metadata(None)?;
            all = metadata
                .topics
                .iter()
                .filter(|t| !t.is_internal)
                .filter_map(|t| {
                    let name = t.name.as_ref()?.to_string();
                    Some((
                        name,
                        t.partitions.iter().map(|p| p.partition_index).collect(),
                    ))
                })
                .collect::<Vec<(String, Vec<i32>)>>();
            &all[..]
        }
    };
    let request = OffsetFetchRequest::default()
        .with_group_id(GroupId(str_bytes(group)))
        .with_topics(Some(
            topics
                .iter()
                .map(|(t, parts)| {
                    OffsetFetchRequestTopic::default()
                        .with_name(topic_name(t))
                        .with_partition_indexes(parts.clone())
                })
                .collect(),
        ));
    let answer = cluster.coordinator(group)?.call(&request)?;
    let doing = format!("reading the committed offsets of consumer group `{group}`");
    check(answer.error_code, &doing)?;
    let mut offsets = BTreeMap::new();
    for t in &answer.topics {
        for p in &t.partitions {
            if p.error_code == 3 {
                continue; // a partition the group never committed for
            }
            check(p.error_code, &doing)?;
            if p.committed_offset >= 0 {
                offsets.insert((t.name.to_string(), p.partition_index), p.committed_offset);
            }
        }
    }
    Ok(offsets)
}

fn unknown_group(cluster: &Cluster, group: &str) -> Failure {
    Failure::permanent(format!(
        "consumer group `{group}` is unknown to the cluster at {}: it has no members and \
         no committed offsets; check the group id",
        cluster.bootstrap_address()
    ))
}

fn is_active(state: &GroupState) -> bool {
    !state.members.is_empty() || !matches!(state.state.as_str(), "Empty" | "Dead" | "")
}

// ---------------------------------------------------------------- group-describe

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GroupParams {
    #[serde(flatten)]
    pub target: Target,
    pub group: String,
}

/// State, protocol and members of a consumer group.
pub struct GroupDescribe;

impl TypedAction for GroupDescribe {
    const NAME: &'static str = "group-describe";
    const EFFECT: Effect = Effect::ReadOnly;
    const DESCRIPTION: &'static str =
        "A consumer group's state and members (state Dead: Kafka does not know the group)";
    type Params = GroupParams;
    type Output = GroupState;

    fn invoke(_: &Context, p: GroupParams) -> Result<GroupState, Failure> {
        let mut cluster = p.target.connect()?;
        describe(&mut cluster, &p.group)
    }

    fn observe(_: &Context, _: GroupParams) -> Result<Observation<GroupState>, Failure> {
        Ok(Observation::NotDone)
    }
}

// ---------------------------------------------------------------- group-lag

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LagParams {
    #[serde(flatten)]
    pub target: Target,
    pub group: String,
    /// The topics to measure (all their partitions); left out: the topics the group
    /// has committed offsets for.
    #[serde(default)]
    pub topics: Option<Vec<String>>,
    /// Fail (retryable, so `retry:` can wait for a drain) when a partition lags more
    /// than this many records.
    #[serde(default)]
    #[schemars(range(min = 0))]
    pub max_lag: Option<i64>,
    /// Fail (retryable) unless the group has committed at least these offsets (the
    /// end of a window it must have consumed, e.g. `kafka/offsets-at-time`'s
    /// `window_end`).
    #[serde(default)]
    pub min_committed: Vec<TopicPartitionOffset>,
}

#[derive(Serialize, JsonSchema)]
pub struct PartitionLag {
    pub topic: String,
    pub partition: i32,
    /// The group's committed offset; `None` when it committed none for the partition.
    pub committed: Option<i64>,
    pub end: i64,
    /// Records from the committed offset (or the log start, without one) to the end.
    pub lag: i64,
}

#[derive(Serialize, JsonSchema)]
pub struct LagOutput {
    pub group: String,
    pub state: String,
    pub members: usize,
    pub partitions: Vec<PartitionLag>,
    pub total_lag: i64,
    pub max_partition_lag: i64,
}

/// Committed offsets against end offsets, per partition.
pub struct GroupLag;

impl TypedAction for GroupLag {
    const NAME: &'static str = "group-lag";
    const EFFECT: Effect = Effect::ReadOnly;
    const DESCRIPTION: &'static str = "A consumer group's lag per partition; fails (retryable) above max_lag or below min_committed, naming the partitions";
    type Params = LagParams;
    type Output = LagOutput;

    fn invoke(_: &Context, p: LagParams) -> Result<LagOutput, Failure> {
        let mut cluster = p.target.connect()?;
        let state = describe(&mut cluster, &p.group)?;
        let mut by_topic: BTreeMap<String, Vec<Partition>> = BTreeMap::new();
        for t in p.topics.iter().flatten() {
            by_topic.insert(t.clone(), partitions_of(&mut cluster, t)?);
        }
        let offsets = committed(&mut cluster, &p.group, None)?;
        // Kafka calls an unknown group `Dead`; tansu calls it `Empty`. Either way a
        // group without members or committed offsets is nothing to measure.
        if offsets.is_empty() && state.members.is_empty() {
            return Err(unknown_group(&cluster, &p.group));
        }
        if p.topics.is_none() {
            if offsets.is_empty() {
                return Err(Failure::permanent(format!(
                    "consumer group `{}` ({}, {} member(s)) has committed no offsets; name \
                     the topics it reads (`topics:`) to measure its lag",
                    p.group,
                    state.state,
                    state.members.len()
                )));
            }
            for (topic, _) in offsets.keys() {
                if !by_topic.contains_key(topic) {
                    let parts = partitions_of(&mut cluster, topic)?;
                    by_topic.insert(topic.clone(), parts);
                }
            }
        }
        let mut partitions = Vec::new();
        for (topic, parts) in &by_topic {
            let bounds = bounds(&mut cluster, topic, parts)?;
            for part in parts {
                let (start, end) = bounds[&part.index];
                let committed = offsets.get(&(topic.clone(), part.index)).copied();
                let lag = (end - committed.unwrap_or(start)).max(0);
                partitions.push(PartitionLag {
                    topic: topic.clone(),
                    partition: part.index,
                    committed,
                    end,
                    lag,
                });
            }
        }
        let out = LagOutput {
            group: p.group.clone(),
            state: state.state,
            members: state.members.len(),
            total_lag: partitions.iter().map(|l| l.lag).sum(),
            max_partition_lag: partitions.iter().map(|l| l.lag).max().unwrap_or(0),
            partitions,
        };
        if let Some(max) = p.max_lag {
            let over: Vec<String> = out
                .partitions
                .iter()
                .filter(|l| l.lag > max)
                .map(|l| {
                    format!(
                        "{}/{} lag {} (committed {}, end {})",
                        l.topic,
                        l.partition,
                        l.lag,
                        l.committed.map_or("none".to_string(), |c| c.to_string()),
                        l.end
                    )
                })
                .collect();
            if !over.is_empty() {
                return Err(Failure::retryable(format!(
                    "consumer group `{}` lags more than max_lag {max} on {} partition(s): {}; \
                     total lag {} ({} member(s), state {})",
                    p.group,
                    over.len(),
                    over.join(", "),
                    out.total_lag,
                    out.members,
                    out.state
                )));
            }
        }
        let short: Vec<String> = p
            .min_committed
            .iter()
            .filter_map(|want| {
                let have = offsets.get(&(want.topic.clone(), want.partition)).copied();
                (have.unwrap_or(-1) < want.offset).then(|| {
                    format!(
                        "{}/{} committed {} < {}",
                        want.topic,
                        want.partition,
                        have.map_or("none".to_string(), |c| c.to_string()),
                        want.offset
                    )
                })
            })
            .collect();
        if !short.is_empty() {
            return Err(Failure::retryable(format!(
                "consumer group `{}` has not yet consumed the whole window: {}",
                p.group,
                short.join(", ")
            )));
        }
        Ok(out)
    }

    fn observe(_: &Context, _: LagParams) -> Result<Observation<LagOutput>, Failure> {
        Ok(Observation::NotDone)
    }
}

// ---------------------------------------------------------------- reset-offsets

/// Where to move the group's offsets.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum ResetTo {
    /// Each partition's log start.
    Earliest,
    /// Each partition's end: skip everything not yet consumed.
    Latest,
    /// The first record at or after this time (epoch ms or RFC 3339 UTC); the end of
    /// partitions with no record that recent.
    Timestamp(Timestamp),
    /// These offsets (each within the partition's log).
    Offsets(Vec<PartitionOffset>),
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetParams {
    #[serde(flatten)]
    pub target: Target,
    pub group: String,
    pub topic: String,
    /// `earliest`, `latest`, `{timestamp: ...}` or `{offsets: [{partition, offset}]}`.
    pub to: ResetTo,
    /// The partitions to reset (all of the topic's when left out; with `offsets`,
    /// those listed).
    #[serde(default)]
    pub partitions: Option<Vec<i32>>,
}

#[derive(Serialize, JsonSchema)]
pub struct ResetPartition {
    pub partition: i32,
    /// The committed offset before the reset (`None`: none, or not known because the
    /// reset was observed after a crash).
    pub previous: Option<i64>,
    pub offset: i64,
}

#[derive(Serialize, JsonSchema)]
pub struct ResetOutput {
    pub group: String,
    pub topic: String,
    pub partitions: Vec<ResetPartition>,
    /// The offsets committed before, as `to: {offsets: ...}` takes them: the undo.
    pub previous_offsets: Vec<PartitionOffset>,
    /// Records the group will read again (positive) or skip (negative) in all.
    pub moved_by: i64,
}

/// The offsets `to` means for `partitions` of `topic`.
fn targets(
    cluster: &mut Cluster,
    topic: &str,
    to: &ResetTo,
    wanted: Option<&[i32]>,
) -> Result<Vec<(Partition, i64)>, Failure> {
    let all = partitions_of(cluster, topic)?;
    let explicit: Option<Vec<i32>> = match to {
        ResetTo::Offsets(list) => {
            if list.is_empty() {
                return Err(Failure::permanent(
                    "`to: {offsets: []}` lists no partition; give at least one \
                     {partition, offset}",
                ));
            }
            Some(list.iter().map(|o| o.partition).collect())
        }
        _ => None,
    };
    let parts = select(topic, all, explicit.as_deref().or(wanted))?;
    let bounds = bounds(cluster, topic, &parts)?;
    let resolved: BTreeMap<i32, i64> = match to {
        ResetTo::Earliest => bounds.iter().map(|(p, (s, _))| (*p, *s)).collect(),
        ResetTo::Latest => bounds.iter().map(|(p, (_, e))| (*p, *e)).collect(),
        ResetTo::Timestamp(ts) => {
            let ms = ts.millis()?;
            let at = list_offsets(cluster, topic, &parts, ms)?;
            at.iter()
                .map(|(p, found)| {
                    let (start, end) = bounds[p];
                    (*p, found.map_or(end, |(o, _)| o.clamp(start, end)))
                })
                .collect()
        }
        ResetTo::Offsets(list) => {
            let mut m = BTreeMap::new();
            for o in list {
                let (start, end) = bounds[&o.partition];
                if o.offset < start || o.offset > end {
                    return Err(Failure::permanent(format!(
                        "offset {} is outside `{topic}` partition {}: its log holds \
                         offsets {start}..{end} (end included: the next record)",
                        o.offset, o.partition
                    )));
                }
                m.insert(o.partition, o.offset);
            }
            m
        }
    };
    Ok(parts.into_iter().map(|p| (p, resolved[&p.index])).collect())
}

/// Moves a group's committed offsets; refuses while the group has members.
pub struct ResetOffsets;

impl TypedAction for ResetOffsets {
    const NAME: &'static str = "reset-offsets";
    const EFFECT: Effect = Effect::Mutating;
    const DESCRIPTION: &'static str = "Moves a consumer group's committed offsets on a topic to earliest, latest, a time or given offsets; refuses while the group has active members";
    const INVERSE: Option<&'static str> = Some("reset-offsets");
    type Params = ResetParams;
    type Output = ResetOutput;

    fn invoke(_: &Context, p: ResetParams) -> Result<ResetOutput, Failure> {
        let mut cluster = p.target.connect()?;
        let targets = targets(&mut cluster, &p.topic, &p.to, p.partitions.as_deref())?;
        let state = describe(&mut cluster, &p.group)?;
        if is_active(&state) {
            let clients: Vec<String> = state
                .members
                .iter()
                .map(|m| {
                    let mut who = m.member_id.clone();
                    if !m.client_id.is_empty() {
                        who = format!("{who} (client {} on {})", m.client_id, m.client_host);
                    }
                    who
                })
                .collect();
            return Err(Failure::retryable(format!(
                "refusing to reset the offsets of consumer group `{}`: it has {} active \
                 member(s) (state {}{}{}); Kafka keeps a live group's own offsets, so stop \
                 its consumers first, then retry",
                p.group,
                state.members.len(),
                state.state,
                if clients.is_empty() { "" } else { ": " },
                clients.join(", ")
            )));
        }
        let wanted = [(
            p.topic.clone(),
            targets.iter().map(|(part, _)| part.index).collect(),
        )];
        let before = committed(&mut cluster, &p.group, Some(&wanted))?;
        let request = OffsetCommitRequest::default()
            .with_group_id(GroupId(str_bytes(&p.group)))
            .with_generation_id_or_member_epoch(-1)
            .with_member_id(str_bytes(""))
            .with_retention_time_ms(-1)
            .with_topics(vec![
                OffsetCommitRequestTopic::default()
                    .with_name(topic_name(&p.topic))
                    .with_partitions(
                        targets
                            .iter()
                            .map(|(part, offset)| {
                                OffsetCommitRequestPartition::default()
                                    .with_partition_index(part.index)
                                    .with_committed_offset(*offset)
                                    .with_committed_leader_epoch(-1)
                                    .with_committed_metadata(Some(str_bytes("medic reset")))
                            })
                            .collect(),
                    ),
            ]);
        let answer = cluster.coordinator(&p.group)?.call(&request)?;
        for t in &answer.topics {
            for part in &t.partitions {
                if part.error_code == 25 || part.error_code == 68 {
                    return Err(Failure::retryable(format!(
                        "the coordinator refused to reset `{}` partition {} for group `{}`: \
                         a consumer joined the group meanwhile; stop its consumers, then retry",
                        p.topic, part.partition_index, p.group
                    )));
                }
                check(
                    part.error_code,
                    &format!(
                        "committing the new offset of `{}` partition {} for group `{}`",
                        p.topic, part.partition_index, p.group
                    ),
                )?;
            }
        }
        let partitions: Vec<ResetPartition> = targets
            .iter()
            .map(|(part, offset)| ResetPartition {
                partition: part.index,
                previous: before.get(&(p.topic.clone(), part.index)).copied(),
                offset: *offset,
            })
            .collect();
        Ok(ResetOutput {
            moved_by: partitions
                .iter()
                .filter_map(|r| r.previous.map(|prev| prev - r.offset))
                .sum(),
            previous_offsets: partitions
                .iter()
                .filter_map(|r| {
                    r.previous.map(|offset| PartitionOffset {
                        partition: r.partition,
                        offset,
                    })
                })
                .collect(),
            group: p.group,
            topic: p.topic,
            partitions,
        })
    }

    /// Done when every partition's committed offset is the target the params give now
    /// (for `latest`, the end offset now: records written since a crash count).
    fn observe(_: &Context, p: ResetParams) -> Result<Observation<ResetOutput>, Failure> {
        let mut cluster = p.target.connect()?;
        let targets = targets(&mut cluster, &p.topic, &p.to, p.partitions.as_deref())?;
        let wanted = [(
            p.topic.clone(),
            targets.iter().map(|(part, _)| part.index).collect(),
        )];
        let now = committed(&mut cluster, &p.group, Some(&wanted))?;
        let done = targets
            .iter()
            .all(|(part, offset)| now.get(&(p.topic.clone(), part.index)) == Some(offset));
        if !done {
            return Ok(Observation::NotDone);
        }
        Ok(Observation::Done(ResetOutput {
            partitions: targets
                .iter()
                .map(|(part, offset)| ResetPartition {
                    partition: part.index,
                    previous: None,
                    offset: *offset,
                })
                .collect(),
            previous_offsets: Vec::new(),
            moved_by: 0,
            group: p.group,
            topic: p.topic,
        }))
    }
}
