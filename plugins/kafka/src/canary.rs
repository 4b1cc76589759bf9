//! The produce-and-consume canary: one record with a unique value written to a
//! partition (acks from all in-sync replicas), then fetched back from the offset the
//! leader gave it and compared, proving the write and read paths end to end.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::messages::{
    ProduceRequest, produce_request::PartitionProduceData, produce_request::TopicProduceData,
};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use medic_sdk::{Context, Effect, Failure, Observation, TypedAction};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::Target;
use crate::client::{check, topic_name};
use crate::offsets::{fetch, partitions_of, select};

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CanaryParams {
    #[serde(flatten)]
    pub target: Target,
    /// A topic set aside for canaries: every call appends one record to it.
    pub topic: String,
    #[serde(default)]
    #[schemars(range(min = 0))]
    pub partition: i32,
}

#[derive(Serialize, JsonSchema)]
pub struct CanaryOutput {
    pub topic: String,
    pub partition: i32,
    /// The offset the leader gave the canary record.
    pub offset: i64,
    /// The value written and read back.
    pub value: String,
    pub produce_ms: u64,
    pub round_trip_ms: u64,
}

/// Produce one record, fetch it back, compare.
pub struct Canary;

impl TypedAction for Canary {
    const NAME: &'static str = "canary";
    const EFFECT: Effect = Effect::Mutating;
    const DESCRIPTION: &'static str = "Produces one unique record to a canary topic (acks=all) and fetches it back from its offset; fails if it does not come back intact";
    type Params = CanaryParams;
    type Output = CanaryOutput;

    fn invoke(ctx: &Context, p: CanaryParams) -> Result<CanaryOutput, Failure> {
        let started = Instant::now();
        let mut cluster = p.target.connect()?;
        let all = partitions_of(&mut cluster, &p.topic)?;
        let part = select(&p.topic, all, Some(&[p.partition]))?[0];
        if part.leader < 0 {
            return Err(Failure::retryable(format!(
                "canary: `{}` partition {} has no leader (offline)",
                p.topic, p.partition
            )));
        }
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let value = format!("medic-canary {} {now_ms}", ctx.idempotency_key);
        let record = Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: 0,
            sequence: -1,
            timestamp: now_ms,
            key: Some(Bytes::from_static(b"medic-canary")),
            value: Some(Bytes::from(value.clone().into_bytes())),
            headers: IndexMap::new(),
        };
        let mut batch = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut batch,
            [&record],
            &RecordEncodeOptions {
                version: 2,
                compression: Compression::None,
            },
        )
        .map_err(|e| Failure::permanent(format!("canary: encoding the record: {e}")))?;
        let request = ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(10_000)
            .with_topic_data(vec![
                TopicProduceData::default()
                    .with_name(topic_name(&p.topic))
                    .with_partition_data(vec![
                        PartitionProduceData::default()
                            .with_index(p.partition)
                            .with_records(Some(batch.freeze())),
                    ]),
            ]);
        let produced = Instant::now();
        let answer = cluster.node(part.leader)?.call(&request)?;
        let doing = format!(
            "canary: producing to `{}` partition {}",
            p.topic, p.partition
        );
        let response = answer
            .responses
            .iter()
            .flat_map(|t| &t.partition_responses)
            .find(|r| r.index == p.partition)
            .ok_or_else(|| {
                Failure::retryable(format!("{doing}: the leader did not answer for it"))
            })?;
        check(response.error_code, &doing)?;
        let offset = response.base_offset;
        let produce_ms = produced.elapsed().as_millis() as u64;

        let records = fetch(&mut cluster, &p.topic, part, offset)?;
        let back = records.iter().find(|r| r.offset == offset).ok_or_else(|| {
            Failure::retryable(format!(
                "canary: the record produced to `{}` partition {} at offset {offset} could \
                 not be fetched back (the fetch returned {} record(s)); the read path or \
                 replication is broken",
                p.topic,
                p.partition,
                records.len()
            ))
        })?;
        if back.value.as_deref() != Some(value.as_bytes()) {
            return Err(Failure::permanent(format!(
                "canary: offset {offset} of `{}` partition {} holds {:?}, not the canary \
                 {value:?} just written there",
                p.topic,
                p.partition,
                back.value
                    .as_ref()
                    .map(|v| String::from_utf8_lossy(v).into_owned())
            )));
        }
        Ok(CanaryOutput {
            topic: p.topic,
            partition: p.partition,
            offset,
            value,
            produce_ms,
            round_trip_ms: started.elapsed().as_millis() as u64,
        })
    }

    /// Another canary record is harmless: run it again.
    fn observe(_: &Context, _: CanaryParams) -> Result<Observation<CanaryOutput>, Failure> {
        Ok(Observation::NotDone)
    }
}
