//! What the cluster says about itself (Metadata, DescribeConfigs): brokers and
//! controller, topics and their partitions' leaders, replicas and in-sync replicas,
//! the partitions that are under-replicated or offline, and whether a topic's
//! replication settings meet the plan's minimums.

use kafka_protocol::messages::{
    DescribeConfigsRequest, MetadataResponse, describe_configs_request::DescribeConfigsResource,
};
use medic_sdk::{Context, Effect, Failure, Observation, TypedAction};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::Target;
use crate::client::{check, str_bytes};
use crate::offsets::unknown_topic;

#[derive(Serialize, JsonSchema)]
pub struct BrokerInfo {
    pub id: i32,
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
}

#[derive(Serialize, JsonSchema)]
pub struct PartitionInfo {
    pub partition: i32,
    /// The leader's broker id; -1 when the partition has none (offline).
    pub leader: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    pub offline_replicas: Vec<i32>,
    /// Fewer in-sync replicas than replicas.
    pub under_replicated: bool,
    /// No leader: nobody can read or write the partition.
    pub offline: bool,
}

#[derive(Serialize, JsonSchema)]
pub struct TopicInfo {
    pub name: String,
    pub internal: bool,
    pub partitions: Vec<PartitionInfo>,
    /// The largest replica count of its partitions.
    pub replication_factor: usize,
}

fn topics_of(metadata: &MetadataResponse, bootstrap: &str) -> Result<Vec<TopicInfo>, Failure> {
    let mut topics = Vec::new();
    for t in &metadata.topics {
        let name = t.name.as_ref().map(|n| n.to_string()).unwrap_or_default();
        if t.error_code == 3 {
            return Err(unknown_topic(bootstrap, &name));
        }
        check(
            t.error_code,
            &format!("reading the metadata of topic `{name}`"),
        )?;
        let mut partitions: Vec<PartitionInfo> = t
            .partitions
            .iter()
            .map(|p| {
                let replicas: Vec<i32> = p.replica_nodes.iter().map(|b| b.0).collect();
                let isr: Vec<i32> = p.isr_nodes.iter().map(|b| b.0).collect();
                PartitionInfo {
                    partition: p.partition_index,
                    leader: p.leader_id.0,
                    under_replicated: isr.len() < replicas.len(),
                    offline: p.leader_id.0 < 0,
                    offline_replicas: p.offline_replicas.iter().map(|b| b.0).collect(),
                    replicas,
                    isr,
                }
            })
            .collect();
        partitions.sort_by_key(|p| p.partition);
        topics.push(TopicInfo {
            replication_factor: partitions
                .iter()
                .map(|p| p.replicas.len())
                .max()
                .unwrap_or(0),
            name,
            internal: t.is_internal,
            partitions,
        });
    }
    topics.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(topics)
}

// ---------------------------------------------------------------- cluster-metadata

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClusterParams {
    #[serde(flatten)]
    pub target: Target,
}

#[derive(Serialize, JsonSchema)]
pub struct TopicSummary {
    pub name: String,
    pub partitions: usize,
    pub replication_factor: usize,
    pub internal: bool,
}

#[derive(Serialize, JsonSchema)]
pub struct ClusterOutput {
    pub cluster_id: Option<String>,
    pub controller: i32,
    pub brokers: Vec<BrokerInfo>,
    pub topics: Vec<TopicSummary>,
    pub under_replicated_partitions: usize,
    pub offline_partitions: usize,
}

/// Brokers, controller and the topics with their partition counts.
pub struct ClusterMetadata;

impl TypedAction for ClusterMetadata {
    const NAME: &'static str = "cluster-metadata";
    const EFFECT: Effect = Effect::ReadOnly;
    const DESCRIPTION: &'static str = "Cluster id, controller, brokers, topics, and counts of under-replicated and offline partitions";
    type Params = ClusterParams;
    type Output = ClusterOutput;

    fn invoke(_: &Context, p: ClusterParams) -> Result<ClusterOutput, Failure> {
        let mut cluster = p.target.connect()?;
        let metadata = cluster.metadata(None)?;
        let topics = topics_of(&metadata, cluster.bootstrap_address())?;
        let count = |f: fn(&PartitionInfo) -> bool| {
            topics
                .iter()
                .flat_map(|t| &t.partitions)
                .filter(|p| f(p))
                .count()
        };
        let mut brokers: Vec<BrokerInfo> = metadata
            .brokers
            .iter()
            .map(|b| BrokerInfo {
                id: b.node_id.0,
                host: b.host.to_string(),
                port: b.port,
                rack: b.rack.as_ref().map(|r| r.to_string()),
            })
            .collect();
        brokers.sort_by_key(|b| b.id);
        Ok(ClusterOutput {
            cluster_id: metadata.cluster_id.as_ref().map(|c| c.to_string()),
            controller: metadata.controller_id.0,
            under_replicated_partitions: count(|p| p.under_replicated),
            offline_partitions: count(|p| p.offline),
            topics: topics
                .into_iter()
                .map(|t| TopicSummary {
                    partitions: t.partitions.len(),
                    replication_factor: t.replication_factor,
                    internal: t.internal,
                    name: t.name,
                })
                .collect(),
            brokers,
        })
    }

    fn observe(_: &Context, _: ClusterParams) -> Result<Observation<ClusterOutput>, Failure> {
        Ok(Observation::NotDone)
    }
}

// ---------------------------------------------------------------- topic-metadata

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TopicsParams {
    #[serde(flatten)]
    pub target: Target,
    /// The topics; all (internal ones included) when left out.
    #[serde(default)]
    pub topics: Option<Vec<String>>,
}

#[derive(Serialize, JsonSchema)]
pub struct TopicsOutput {
    pub topics: Vec<TopicInfo>,
}

/// Each partition's leader, replicas and in-sync replicas.
pub struct TopicMetadata;

impl TypedAction for TopicMetadata {
    const NAME: &'static str = "topic-metadata";
    const EFFECT: Effect = Effect::ReadOnly;
    const DESCRIPTION: &'static str =
        "Topics' partitions with leader, replicas, in-sync replicas; an unknown topic fails";
    type Params = TopicsParams;
    type Output = TopicsOutput;

    fn invoke(_: &Context, p: TopicsParams) -> Result<TopicsOutput, Failure> {
        let mut cluster = p.target.connect()?;
        let metadata = cluster.metadata(p.topics.as_deref())?;
        let topics = topics_of(&metadata, cluster.bootstrap_address())?;
        for wanted in p.topics.iter().flatten() {
            if !topics.iter().any(|t| &t.name == wanted) {
                return Err(unknown_topic(cluster.bootstrap_address(), wanted));
            }
        }
        Ok(TopicsOutput { topics })
    }

    fn observe(_: &Context, _: TopicsParams) -> Result<Observation<TopicsOutput>, Failure> {
        Ok(Observation::NotDone)
    }
}

// ---------------------------------------------------------------- partition-health

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HealthParams {
    #[serde(flatten)]
    pub target: Target,
    /// The topics to check; all when left out.
    #[serde(default)]
    pub topics: Option<Vec<String>>,
    /// Fail (retryable) when a partition is offline or under-replicated; false only
    /// reports them.
    #[serde(default = "yes")]
    pub require_healthy: bool,
}

fn yes() -> bool {
    true
}

#[derive(Serialize, JsonSchema)]
pub struct PartitionRef {
    pub topic: String,
    pub partition: i32,
    pub leader: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
}

#[derive(Serialize, JsonSchema)]
pub struct HealthOutput {
    pub partitions: usize,
    pub under_replicated: Vec<PartitionRef>,
    pub offline: Vec<PartitionRef>,
    pub healthy: bool,
}

/// Under-replicated and offline partitions.
pub struct PartitionHealth;

impl TypedAction for PartitionHealth {
    const NAME: &'static str = "partition-health";
    const EFFECT: Effect = Effect::ReadOnly;
    const DESCRIPTION: &'static str = "Under-replicated and offline partitions; fails (retryable) when there are any, unless require_healthy is false";
    type Params = HealthParams;
    type Output = HealthOutput;

    fn invoke(_: &Context, p: HealthParams) -> Result<HealthOutput, Failure> {
        let mut cluster = p.target.connect()?;
        let metadata = cluster.metadata(p.topics.as_deref())?;
        let topics = topics_of(&metadata, cluster.bootstrap_address())?;
        let mut out = HealthOutput {
            partitions: 0,
            under_replicated: Vec::new(),
            offline: Vec::new(),
            healthy: true,
        };
        for t in &topics {
            for part in &t.partitions {
                out.partitions += 1;
                let r = || PartitionRef {
                    topic: t.name.clone(),
                    partition: part.partition,
                    leader: part.leader,
                    replicas: part.replicas.clone(),
                    isr: part.isr.clone(),
                };
                if part.offline {
                    out.offline.push(r());
                } else if part.under_replicated {
                    out.under_replicated.push(r());
                }
            }
        }
        out.healthy = out.offline.is_empty() && out.under_replicated.is_empty();
        if !out.healthy && p.require_healthy {
            let name = |r: &PartitionRef| format!("{}/{}", r.topic, r.partition);
            return Err(Failure::retryable(format!(
                "the cluster at {} has {} offline partition(s) [{}] and {} under-replicated \
                 partition(s) [{}]; bring the missing brokers back before going on",
                cluster.bootstrap_address(),
                out.offline.len(),
                out.offline.iter().map(name).collect::<Vec<_>>().join(", "),
                out.under_replicated.len(),
                out.under_replicated
                    .iter()
                    .map(name)
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        Ok(out)
    }

    fn observe(_: &Context, _: HealthParams) -> Result<Observation<HealthOutput>, Failure> {
        Ok(Observation::NotDone)
    }
}

// ---------------------------------------------------------------- topic-config-check

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfigCheckParams {
    #[serde(flatten)]
    pub target: Target,
    pub topic: String,
    /// The least replication factor every partition must have.
    #[serde(default = "one")]
    #[schemars(range(min = 1))]
    pub min_replication_factor: usize,
    /// The least `min.insync.replicas` the topic must have.
    #[serde(default = "one")]
    #[schemars(range(min = 1))]
    pub min_insync_replicas: usize,
}

fn one() -> usize {
    1
}

#[derive(Serialize, JsonSchema)]
pub struct ConfigCheckOutput {
    pub topic: String,
    pub replication_factor: usize,
    pub min_insync_replicas: usize,
    /// Every config the broker described for the topic, `name=value`.
    pub configs: Vec<String>,
}

/// Replication factor from the metadata, `min.insync.replicas` from DescribeConfigs.
pub struct TopicConfigCheck;

impl TypedAction for TopicConfigCheck {
    const NAME: &'static str = "topic-config-check";
    const EFFECT: Effect = Effect::ReadOnly;
    const DESCRIPTION: &'static str = "Fails when a topic's replication factor or min.insync.replicas is below the given minimum, or the broker describes no configs";
    type Params = ConfigCheckParams;
    type Output = ConfigCheckOutput;

    fn invoke(_: &Context, p: ConfigCheckParams) -> Result<ConfigCheckOutput, Failure> {
        let mut cluster = p.target.connect()?;
        let bootstrap = cluster.bootstrap_address().to_string();
        let metadata = cluster.metadata(Some(std::slice::from_ref(&p.topic)))?;
        let topics = topics_of(&metadata, &bootstrap)?;
        let topic = topics
            .iter()
            .find(|t| t.name == p.topic)
            .filter(|t| !t.partitions.is_empty())
            .ok_or_else(|| unknown_topic(&bootstrap, &p.topic))?;
        let thin: Vec<String> = topic
            .partitions
            .iter()
            .filter(|part| part.replicas.len() < p.min_replication_factor)
            .map(|part| format!("{} ({} replica(s))", part.partition, part.replicas.len()))
            .collect();
        if !thin.is_empty() {
            return Err(Failure::permanent(format!(
                "topic `{}` has partitions with fewer than {} replicas: {}; raise its \
                 replication factor (kafka-reassign-partitions) before relying on it",
                p.topic,
                p.min_replication_factor,
                thin.join(", ")
            )));
        }
        let request = DescribeConfigsRequest::default().with_resources(vec![
            DescribeConfigsResource::default()
                .with_resource_type(2) // TOPIC
                .with_resource_name(str_bytes(&p.topic))
                .with_configuration_keys(None),
        ]);
        let answer = cluster.bootstrap().call(&request)?;
        let doing = format!("describing the configs of topic `{}`", p.topic);
        let mut configs = Vec::new();
        for result in &answer.results {
            check(result.error_code, &doing)?;
            for c in &result.configs {
                let value = c.value.as_ref().map(|v| v.to_string()).unwrap_or_default();
                configs.push((c.name.to_string(), value));
            }
        }
        let min_isr = judge_min_isr(
            &p.topic,
            &bootstrap,
            topic.replication_factor,
            &configs,
            p.min_insync_replicas,
        )?;
        let configs = configs.iter().map(|(n, v)| format!("{n}={v}")).collect();
        Ok(ConfigCheckOutput {
            topic: p.topic,
            replication_factor: topic.replication_factor,
            min_insync_replicas: min_isr,
            configs,
        })
    }

    fn observe(
        _: &Context,
        _: ConfigCheckParams,
    ) -> Result<Observation<ConfigCheckOutput>, Failure> {
        Ok(Observation::NotDone)
    }
}

/// `min.insync.replicas` of `configs` (as DescribeConfigs gave them), checked against
/// the required minimum and the topic's replication factor.
fn judge_min_isr(
    topic: &str,
    bootstrap: &str,
    replication_factor: usize,
    configs: &[(String, String)],
    required: usize,
) -> Result<usize, Failure> {
    let doing = format!("describing the configs of topic `{topic}`");
    if configs.is_empty() {
        return Err(Failure::permanent(format!(
            "{doing}: the broker at {bootstrap} returned no configs (an empty \
             DescribeConfigs answer), so `min.insync.replicas` cannot be checked; this \
             broker does not describe topic configs: check them with its own tools"
        )));
    }
    let Some((_, value)) = configs.iter().find(|(n, _)| n == "min.insync.replicas") else {
        return Err(Failure::permanent(format!(
            "{doing}: the broker described {} configs but not `min.insync.replicas`",
            configs.len()
        )));
    };
    let min_isr: usize = value.parse().map_err(|_| {
        Failure::permanent(format!(
            "{doing}: `min.insync.replicas` is `{value}`, not a number"
        ))
    })?;
    if min_isr < required {
        return Err(Failure::permanent(format!(
            "topic `{topic}` has min.insync.replicas={min_isr}, below the required \
             {required}: with acks=all a write is then acknowledged by too few replicas"
        )));
    }
    if min_isr > replication_factor {
        return Err(Failure::permanent(format!(
            "topic `{topic}` has min.insync.replicas={min_isr} above its replication \
             factor {replication_factor}: acks=all writes can never succeed"
        )));
    }
    Ok(min_isr)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn configs(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn min_insync_replicas_is_judged_against_the_minimum_and_the_replication_factor() {
        let ok = configs(&[("cleanup.policy", "delete"), ("min.insync.replicas", "2")]);
        assert_eq!(judge_min_isr("t", "b:1", 3, &ok, 2).unwrap(), 2);

        let low = judge_min_isr("t", "b:1", 3, &ok, 3).unwrap_err();
        assert!(!low.retryable);
        assert!(
            low.message
                .contains("min.insync.replicas=2, below the required 3"),
            "{low}"
        );

        let high = judge_min_isr("t", "b:1", 1, &ok, 1).unwrap_err();
        assert!(
            high.message.contains("above its replication factor 1"),
            "{high}"
        );

        let none = judge_min_isr("t", "b:1", 3, &[], 1).unwrap_err();
        assert!(none.message.contains("returned no configs"), "{none}");

        let missing = judge_min_isr("t", "b:1", 3, &configs(&[("a", "b")]), 1).unwrap_err();
        assert!(
            missing.message.contains("but not `min.insync.replicas`"),
            "{missing}"
        );

        let junk = configs(&[("min.insync.replicas", "two")]);
        let junk = judge_min_isr("t", "b:1", 3, &junk, 1).unwrap_err();
        assert!(junk.message.contains("not a number"), "{junk}");
    }
}
