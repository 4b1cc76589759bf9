//! `kafka`: recovery actions for a Kafka cluster over the Kafka protocol itself, on TCP
//! the plan grants (`grants: { connect: [IP:PORT] }`): cluster and topic metadata,
//! under-replicated and offline partitions, topic config checks, consumer-group state
//! and lag, offset resets (to earliest, latest, a time or given offsets) and a
//! produce-and-consume canary. Every action starts at one `bootstrap` broker and
//! reaches partition leaders and group coordinators at the addresses the metadata
//! advertises (or the `brokers` map of its params).
// On the host (`cargo test`) the component's exports are compiled out, so every
// action they reach looks unused there.
#![cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]

mod canary;
mod client;
mod groups;
mod metadata;
mod offsets;
mod time;

use std::collections::BTreeMap;

use client::Cluster;
use medic_sdk::{Actions, Failure, TypedPlugin};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

// Exported only in a wasm32 build; native builds are for unit tests.
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
struct Kafka;

impl TypedPlugin for Kafka {
    const NAME: &'static str = env!("CARGO_CRATE_NAME");
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str = "Kafka over its own protocol: metadata, partition health, topic config, consumer-group lag, offset resets, canary round trip";

    fn actions() -> Actions {
        Actions::new()
            .add::<metadata::ClusterMetadata>()
            .add::<metadata::TopicMetadata>()
            .add::<metadata::PartitionHealth>()
            .add::<metadata::TopicConfigCheck>()
            .add::<groups::GroupDescribe>()
            .add::<groups::GroupLag>()
            .add::<groups::ResetOffsets>()
            .add::<offsets::OffsetsAtTime>()
            .add::<canary::Canary>()
    }
}

medic_sdk::export_plugin!(Kafka);

/// The cluster to talk to, common to every action.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Target {
    /// One broker, `IP:PORT` (or `localhost:PORT`); the plan must grant it:
    /// `grants: { connect: [IP:PORT] }`. The sandbox cannot look up host names.
    #[schemars(regex(pattern = r"^\S+:\d+$"))]
    pub bootstrap: String,
    /// Addresses to use for other brokers, by broker id (`{"2": "10.0.0.2:9092"}`),
    /// when the names they advertise are not IP addresses. Each must be granted too.
    #[serde(default)]
    pub brokers: BTreeMap<String, String>,
}

impl Target {
    fn connect(&self) -> Result<Cluster, Failure> {
        Cluster::connect(&self.bootstrap, &self.brokers)
    }
}

/// A partition and an offset in it.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PartitionOffset {
    pub partition: i32,
    pub offset: i64,
}

/// A topic's partition and an offset in it.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TopicPartitionOffset {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}
