//! Where a topic's logs stand: the partitions of a topic and their leaders, log start
//! and end offsets, the first offset at or after a time (ListOffsets, asked of each
//! partition's leader), one record read back (Fetch), and the `offsets-at-time`
//! action that bounds an outage's window in the log.

use std::collections::BTreeMap;

use bytes::Bytes;
use kafka_protocol::messages::{
    BrokerId, FetchRequest, ListOffsetsRequest, fetch_request::FetchPartition,
    fetch_request::FetchTopic, list_offsets_request::ListOffsetsPartition,
    list_offsets_request::ListOffsetsTopic,
};
use kafka_protocol::records::{Record, RecordBatchDecoder};
use medic_sdk::{Context, Effect, Failure, Observation, TypedAction};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::client::{Cluster, check, str_bytes, topic_name};
use crate::time::Timestamp;
use crate::{Target, TopicPartitionOffset};

/// ListOffsets' special timestamps.
pub const EARLIEST: i64 = -2;
pub const LATEST: i64 = -1;

/// A partition of a topic and the broker leading it (-1: none, offline).
#[derive(Clone, Copy, Debug)]
pub struct Partition {
    pub index: i32,
    pub leader: i32,
}

/// The partitions of `topic`, in order; an unknown topic is a permanent failure.
pub fn partitions_of(cluster: &mut Cluster, topic: &str) -> Result<Vec<Partition>, Failure> {
    let metadata = cluster.metadata(Some(&[topic.to_string()]))?;
    let t = metadata
        .topics
        .iter()
        .find(|t| t.name.as_ref().map(|n| n.as_str()) == Some(topic))
        .ok_or_else(|| unknown_topic(cluster.bootstrap_address(), topic))?;
    if t.error_code == 3 {
        return Err(unknown_topic(cluster.bootstrap_address(), topic));
    }
    check(
        t.error_code,
        &format!("reading the metadata of topic `{topic}`"),
    )?;
    let mut partitions: Vec<Partition> = t
        .partitions
        .iter()
        .map(|p| Partition {
            index: p.partition_index,
            leader: p.leader_id.0,
        })
        .collect();
    partitions.sort_by_key(|p| p.index);
    if partitions.is_empty() {
        return Err(unknown_topic(cluster.bootstrap_address(), topic));
    }
    Ok(partitions)
}

pub fn unknown_topic(bootstrap: &str, topic: &str) -> Failure {
    Failure::permanent(format!(
        "topic `{topic}` does not exist on the cluster at {bootstrap}; check its name \
         (`kafka/cluster-metadata` lists the topics)"
    ))
}

/// Keeps the partitions in `wanted` (all when `None`); a partition the topic lacks is a
/// permanent failure.
pub fn select(
    topic: &str,
    all: Vec<Partition>,
    wanted: Option<&[i32]>,
) -> Result<Vec<Partition>, Failure> {
    let Some(wanted) = wanted else {
        return Ok(all);
    };
    wanted
        .iter()
        .map(|w| {
            all.iter().find(|p| p.index == *w).copied().ok_or_else(|| {
                Failure::permanent(format!(
                    "topic `{topic}` has no partition {w}; it has partitions 0..{}",
                    all.len().saturating_sub(1)
                ))
            })
        })
        .collect()
}

/// The offset ListOffsets answers for each partition at `timestamp` (`EARLIEST`,
/// `LATEST` or epoch ms): `None` when no record is at or after that time.
pub fn list_offsets(
    cluster: &mut Cluster,
    topic: &str,
    partitions: &[Partition],
    timestamp: i64,
) -> Result<BTreeMap<i32, Option<(i64, i64)>>, Failure> {
    let mut by_leader: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
    for p in partitions {
        if p.leader < 0 {
            return Err(Failure::retryable(format!(
                "partition {} of `{topic}` has no leader (offline); its offsets cannot be \
                 read until a replica leads it again",
                p.index
            )));
        }
        by_leader.entry(p.leader).or_default().push(p.index);
    }
    let mut answers = BTreeMap::new();
    for (leader, indexes) in by_leader {
        let request = ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_isolation_level(0)
            .with_topics(vec![
                ListOffsetsTopic::default()
                    .with_name(topic_name(topic))
                    .with_partitions(
                        indexes
                            .iter()
                            .map(|i| {
                                ListOffsetsPartition::default()
                                    .with_partition_index(*i)
                                    .with_timestamp(timestamp)
                            })
                            .collect(),
                    ),
            ]);
        let answer = cluster.node(leader)?.call(&request)?;
        for t in &answer.topics {
            for p in &t.partitions {
                let what = match timestamp {
                    EARLIEST => "earliest offset".to_string(),
                    LATEST => "end offset".to_string(),
                    ms => format!("first offset at or after {ms} ms"),
                };
                check(
                    p.error_code,
                    &format!(
                        "reading the {what} of `{topic}` partition {}",
                        p.partition_index
                    ),
                )?;
                let found = (p.offset >= 0).then_some((p.offset, p.timestamp));
                answers.insert(p.partition_index, found);
            }
        }
    }
    for p in partitions {
        if !answers.contains_key(&p.index) {
            return Err(Failure::retryable(format!(
                "the leader of `{topic}` partition {} did not answer for it",
                p.index
            )));
        }
    }
    Ok(answers)
}

/// Earliest and end offsets of `partitions`, by partition.
pub fn bounds(
    cluster: &mut Cluster,
    topic: &str,
    partitions: &[Partition],
) -> Result<BTreeMap<i32, (i64, i64)>, Failure> {
    let earliest = list_offsets(cluster, topic, partitions, EARLIEST)?;
    let latest = list_offsets(cluster, topic, partitions, LATEST)?;
    Ok(partitions
        .iter()
        .map(|p| {
            let start = earliest[&p.index].map_or(0, |(o, _)| o);
            let end = latest[&p.index].map_or(start, |(o, _)| o);
            (p.index, (start, end))
        })
        .collect())
}

/// The records of `partition` from `offset`, as much as one Fetch returns (at least
/// the first batch at or after it); empty when there is none.
pub fn fetch(
    cluster: &mut Cluster,
    topic: &str,
    partition: Partition,
    offset: i64,
) -> Result<Vec<Record>, Failure> {
    let request = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(500)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_isolation_level(0)
        .with_session_id(0)
        .with_session_epoch(-1)
        .with_rack_id(str_bytes(""))
        .with_topics(vec![
            FetchTopic::default()
                .with_topic(topic_name(topic))
                .with_partitions(vec![
                    FetchPartition::default()
                        .with_partition(partition.index)
                        .with_fetch_offset(offset)
                        .with_current_leader_epoch(-1)
                        .with_last_fetched_epoch(-1)
                        .with_log_start_offset(-1)
                        .with_partition_max_bytes(1 << 20),
                ]),
        ]);
    let answer = cluster.node(partition.leader)?.call(&request)?;
    let doing = format!(
        "fetching `{topic}` partition {} from offset {offset}",
        partition.index
    );
    check(answer.error_code, &doing)?;
    let mut records = Vec::new();
    for t in &answer.responses {
        for p in &t.partitions {
            check(p.error_code, &doing)?;
            let mut bytes: Bytes = p.records.clone().unwrap_or_default();
            while bytes.len() >= 61 {
                let set = RecordBatchDecoder::decode(&mut bytes).map_err(|e| {
                    Failure::permanent(format!(
                        "{doing}: cannot read the record batch (a compressed batch is not \
                         decoded by this plugin): {e}"
                    ))
                })?;
                records.extend(set.records.into_iter().filter(|r| !r.control));
            }
        }
    }
    records.retain(|r| r.offset >= offset);
    Ok(records)
}

/// Whether a partition still holds every record from `since_ms` on: nothing was ever
/// deleted from it (its log starts at 0), it is empty, or its first retained record is
/// not newer than `since_ms`.
fn window_retained(earliest: i64, first_retained_ms: Option<i64>, since_ms: i64) -> bool {
    earliest == 0 || first_retained_ms.is_none_or(|first| first <= since_ms)
}

// ---------------------------------------------------------------- offsets-at-time

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OffsetsAtTimeParams {
    #[serde(flatten)]
    pub target: Target,
    pub topic: String,
    /// The start of the window (the interruption): epoch ms or RFC 3339 UTC.
    pub timestamp: Timestamp,
    /// Fail (permanent) when a partition no longer holds every record from
    /// `timestamp` on (retention deleted part of the window).
    #[serde(default)]
    pub require_retained: bool,
}

#[derive(Serialize, JsonSchema)]
pub struct WindowPartition {
    pub partition: i32,
    /// The log start offset.
    pub earliest: i64,
    /// The end offset (the next offset to be written).
    pub end: i64,
    /// The first offset whose record is at or after `timestamp` (`end` if none is).
    pub offset: i64,
    /// Records from `offset` up to `end`: what a group rewound to `timestamp` re-reads.
    pub records: i64,
    /// Timestamp (ms) of the first retained record, when there is one.
    pub first_retained_ms: Option<i64>,
    /// Whether the log still holds every record from `timestamp` on: nothing was
    /// ever deleted from it, or its first retained record is not newer than `timestamp`.
    pub retained: bool,
}

#[derive(Serialize, JsonSchema)]
pub struct OffsetsAtTimeOutput {
    pub topic: String,
    pub timestamp_ms: i64,
    pub partitions: Vec<WindowPartition>,
    /// Each partition's end offset when this ran: the end of the window a backfill must
    /// cover (feed it to `kafka/group-lag`'s `min_committed`).
    pub window_end: Vec<TopicPartitionOffset>,
    /// Records in the window over all partitions.
    pub records: i64,
    pub retained: bool,
}

/// ListOffsets by time and Fetch of the first retained record, per partition.
pub struct OffsetsAtTime;

impl TypedAction for OffsetsAtTime {
    const NAME: &'static str = "offsets-at-time";
    const EFFECT: Effect = Effect::ReadOnly;
    const DESCRIPTION: &'static str = "Per partition: the first offset at or after a time, the end offset, the records between, and whether the log still holds them all";
    type Params = OffsetsAtTimeParams;
    type Output = OffsetsAtTimeOutput;

    fn invoke(_: &Context, p: OffsetsAtTimeParams) -> Result<OffsetsAtTimeOutput, Failure> {
        let ms = p.timestamp.millis()?;
        let mut cluster = p.target.connect()?;
        let partitions = partitions_of(&mut cluster, &p.topic)?;
        let bounds = bounds(&mut cluster, &p.topic, &partitions)?;
        let at = list_offsets(&mut cluster, &p.topic, &partitions, ms)?;
        let mut out = Vec::new();
        for part in &partitions {
            let (earliest, end) = bounds[&part.index];
            let offset = at[&part.index].map_or(end, |(o, _)| o.clamp(earliest, end));
            let first_retained_ms = if earliest < end {
                fetch(&mut cluster, &p.topic, *part, earliest)?
                    .first()
                    .map(|r| r.timestamp)
            } else {
                None
            };
            let retained = window_retained(earliest, first_retained_ms, ms);
            out.push(WindowPartition {
                partition: part.index,
                earliest,
                end,
                offset,
                records: end - offset,
                first_retained_ms,
                retained,
            });
        }
        let lost: Vec<String> = out
            .iter()
            .filter(|w| !w.retained)
            .map(|w| {
                format!(
                    "partition {} starts at offset {} with a record from {} ms",
                    w.partition,
                    w.earliest,
                    w.first_retained_ms.unwrap_or_default()
                )
            })
            .collect();
        if p.require_retained && !lost.is_empty() {
            return Err(Failure::permanent(format!(
                "`{}` no longer holds every record since {ms} ms (retention deleted the \
                 start of the window): {}; a rewind cannot re-deliver those, restore them \
                 from a backup",
                p.topic,
                lost.join("; ")
            )));
        }
        Ok(OffsetsAtTimeOutput {
            window_end: out
                .iter()
                .map(|w| TopicPartitionOffset {
                    topic: p.topic.clone(),
                    partition: w.partition,
                    offset: w.end,
                })
                .collect(),
            records: out.iter().map(|w| w.records).sum(),
            retained: lost.is_empty(),
            topic: p.topic,
            timestamp_ms: ms,
            partitions: out,
        })
    }

    fn observe(
        _: &Context,
        _: OffsetsAtTimeParams,
    ) -> Result<Observation<OffsetsAtTimeOutput>, Failure> {
        Ok(Observation::NotDone)
    }
}

#[cfg(test)]
mod tests {
    use super::window_retained;

    #[test]
    fn a_window_is_retained_unless_retention_deleted_records_from_inside_it() {
        // Nothing ever deleted: whatever the first record's time.
        assert!(window_retained(0, Some(5_000), 1_000));
        // Deleted only records older than the window.
        assert!(window_retained(120, Some(900), 1_000));
        assert!(window_retained(120, Some(1_000), 1_000));
        // The first retained record is newer than the window's start: the records
        // between were deleted.
        assert!(!window_retained(120, Some(1_001), 1_000));
        // An empty log that once held records: the plugin cannot tell when they were
        // written, and counts it retained (nothing to re-read). Only a retention
        // shorter than the outage's age could have deleted records from the window.
        assert!(window_retained(120, None, 1_000));
    }
}
