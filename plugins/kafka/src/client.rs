//! The Kafka wire: one TCP connection per broker (`medic_sdk::tcp`, so only granted
//! endpoints), size-prefixed frames, request headers with correlation ids, API
//! versions negotiated with the broker (ApiVersions first), and the routing of a
//! request to the broker that must answer it (a partition's leader, a group's
//! coordinator). Messages are encoded and decoded by the `kafka-protocol` crate.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::{Buf, BufMut, BytesMut};
use kafka_protocol::error::{ParseResponseErrorCode, ResponseError};
use kafka_protocol::messages::{
    ApiVersionsRequest, FindCoordinatorRequest, MetadataRequest, MetadataResponse, RequestHeader,
    ResponseHeader, TopicName, metadata_request::MetadataRequestTopic,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use medic_sdk::Failure;

/// How long one request may wait for its answer.
const IO_TIMEOUT: Duration = Duration::from_secs(30);
/// A frame larger than this is not a Kafka answer to anything the plugin asks (and
/// would not fit the plugin's memory).
const MAX_FRAME: usize = 32 << 20;

/// The highest version of each API the plugin speaks: later versions change the
/// shape of fields it reads (topic ids instead of names, batched group keys).
fn our_max(api_key: i16) -> i16 {
    match api_key {
        0 => 9,  // Produce (v13 addresses topics by id)
        1 => 12, // Fetch (v13 by topic id)
        2 => 7,  // ListOffsets
        3 => 12, // Metadata
        8 => 8,  // OffsetCommit
        9 => 7,  // OffsetFetch (v8 batches groups)
        10 => 3, // FindCoordinator (v4 batches keys)
        15 => 5, // DescribeGroups
        16 => 4, // ListGroups
        32 => 4, // DescribeConfigs
        17 => 1, // SaslHandshake
        36 => 2, // SaslAuthenticate
        _ => 0,
    }
}

fn api_name(api_key: i16) -> String {
    kafka_protocol::messages::ApiKey::try_from(api_key)
        .map(|k| format!("{k:?}"))
        .unwrap_or_else(|_| format!("API {api_key}"))
}

pub fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

pub fn topic_name(s: &str) -> TopicName {
    TopicName(str_bytes(s))
}

/// A Kafka error code as a failure of `doing`, or `Ok` for 0. Errors Kafka calls
/// retriable (leader moving, coordinator loading, ...) are retryable here too.
pub fn check(code: i16, doing: &str) -> Result<(), Failure> {
    match code.err() {
        None => Ok(()),
        Some(e) => Err(kafka_failure(e, doing)),
    }
}

pub fn kafka_failure(e: ResponseError, doing: &str) -> Failure {
    let message = format!(
        "{doing}: the broker answered {e} (Kafka error {})",
        e.code()
    );
    if e.is_retriable()
        || matches!(
            e,
            ResponseError::CoordinatorLoadInProgress
                | ResponseError::CoordinatorNotAvailable
                | ResponseError::NotCoordinator
                | ResponseError::RebalanceInProgress
        )
    {
        Failure::retryable(message)
    } else {
        Failure::permanent(message)
    }
}

/// One open connection to one broker.
pub struct Broker {
    pub address: String,
    stream: TcpStream,
    correlation: i32,
    /// api key -> (min, max) the broker supports.
    versions: BTreeMap<i16, (i16, i16)>,
}

impl Broker {
    /// Connects to `address` (granted `ip:port` or `localhost:port`) and asks which
    /// API versions it speaks.
    pub fn connect(address: &str) -> Result<Broker, Failure> {
        let stream = medic_sdk::tcp::connect(address, None).map_err(|f| {
            let hint = if f.retryable {
                "; is the broker running and listening there?"
            } else {
                ""
            };
            Failure {
                message: format!("Kafka broker {address}: {}{hint}", f.message),
                ..f
            }
        })?;
        let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
        let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
        let mut broker = Broker {
            address: address.to_string(),
            stream,
            correlation: 0,
            versions: BTreeMap::new(),
        };
        let request = ApiVersionsRequest::default()
            .with_client_software_name(str_bytes("medic-kafka"))
            .with_client_software_version(str_bytes(env!("CARGO_PKG_VERSION")));
        let answer = broker.exchange(&request, 3)?;
        check(
            answer.error_code,
            &format!("asking {address} for its API versions"),
        )?;
        broker.versions = answer
            .api_keys
            .iter()
            .map(|k| (k.api_key, (k.min_version, k.max_version)))
            .collect();
        Ok(broker)
    }

    /// Sends `request` at the highest version both sides speak; its answer.
    pub fn call<R: Request>(&mut self, request: &R) -> Result<R::Response, Failure> {
        let (broker_min, broker_max) = self.versions.get(&R::KEY).copied().ok_or_else(|| {
            Failure::permanent(format!(
                "the broker at {} does not offer the Kafka API {} that this action needs",
                self.address,
                api_name(R::KEY)
            ))
        })?;
        let version = our_max(R::KEY).min(broker_max).min(R::VERSIONS.max);
        if version < broker_min.max(R::VERSIONS.min) {
            return Err(Failure::permanent(format!(
                "the broker at {} speaks {} versions {broker_min}..{broker_max}, none of \
                 which this plugin speaks (up to {})",
                self.address,
                api_name(R::KEY),
                our_max(R::KEY)
            )));
        }
        self.exchange(request, version)
    }

    fn exchange<R: Request>(&mut self, request: &R, version: i16) -> Result<R::Response, Failure> {
        self.correlation += 1;
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation)
            .with_client_id(Some(str_bytes("medic-kafka")));
        let mut body = BytesMut::new();
        header
            .encode(&mut body, R::header_version(version))
            .and_then(|()| request.encode(&mut body, version))
            .map_err(|e| {
                Failure::permanent(format!(
                    "encoding a {} v{version} request: {e}",
                    api_name(R::KEY)
                ))
            })?;
        let mut frame = BytesMut::with_capacity(body.len() + 4);
        frame.put_i32(body.len() as i32);
        frame.extend_from_slice(&body);
        let io_failure = |e: io::Error, address: &str| {
            Failure::retryable(format!(
                "Kafka broker {address}: {} request failed: {e}; is the broker running and \
                 listening there?",
                api_name(R::KEY)
            ))
        };
        self.stream
            .write_all(&frame)
            .map_err(|e| io_failure(e, &self.address))?;

        let mut size = [0u8; 4];
        self.stream.read_exact(&mut size).map_err(|e| {
            let closed = matches!(
                e.kind(),
                io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset
            );
            // A broker that requires SASL (or TLS) drops a client whose first request
            // (after ApiVersions, which Kafka answers before authentication) is not an
            // authentication: every attempt would end the same way.
            if closed && self.correlation <= 2 {
                Failure::permanent(format!(
                    "Kafka broker {} closed the connection at the first request ({}, \
                     {e}): it likely requires SASL authentication or TLS, which this \
                     plugin does not speak yet; give it a plaintext listener without \
                     authentication, or check that this is a Kafka listener",
                    self.address,
                    api_name(R::KEY)
                ))
            } else {
                io_failure(e, &self.address)
            }
        })?;
        let size = i32::from_be_bytes(size);
        if size < 0 || size as usize > MAX_FRAME {
            return Err(Failure::permanent(format!(
                "{} answered a frame of {size} bytes to {}: is this a Kafka listener (and \
                 not a TLS or SASL_SSL one)?",
                self.address,
                api_name(R::KEY)
            )));
        }
        let mut answer = vec![0u8; size as usize];
        self.stream
            .read_exact(&mut answer)
            .map_err(|e| io_failure(e, &self.address))?;
        let mut answer = bytes::Bytes::from(answer);
        let decode_failure = |what: &str, e: &dyn std::fmt::Display| {
            Failure::permanent(format!(
                "{} sent a {} v{version} answer this plugin cannot read ({what}): {e}",
                self.address,
                api_name(R::KEY)
            ))
        };
        let header = ResponseHeader::decode(&mut answer, R::Response::header_version(version))
            .map_err(|e| decode_failure("header", &e))?;
        if header.correlation_id != self.correlation {
            return Err(Failure::retryable(format!(
                "{} answered request {} with the answer to {}; the connection is out of step",
                self.address, self.correlation, header.correlation_id
            )));
        }
        let response =
            R::Response::decode(&mut answer, version).map_err(|e| decode_failure("body", &e))?;
        let _ = answer.remaining();
        Ok(response)
    }
}

/// A broker as the cluster's metadata lists it.
#[derive(Clone)]
pub struct Node {
    pub id: i32,
    pub host: String,
    pub port: i32,
}

/// The cluster reached through one bootstrap broker: connections by broker id,
/// opened on demand to the addresses the metadata advertises (or the plan's
/// `brokers` overrides).
pub struct Cluster {
    bootstrap: Broker,
    nodes: Vec<Node>,
    overrides: BTreeMap<String, String>,
    open: BTreeMap<i32, Broker>,
}

impl Cluster {
    pub fn connect(
        bootstrap: &str,
        overrides: &BTreeMap<String, String>,
    ) -> Result<Cluster, Failure> {
        let mut broker = Broker::connect(bootstrap)?;
        let metadata = broker.call(&metadata_request(Some(&[])))?;
        let nodes = nodes_of(&metadata);
        Ok(Cluster {
            bootstrap: broker,
            nodes,
            overrides: overrides.clone(),
            open: BTreeMap::new(),
        })
    }

    /// The bootstrap broker, for requests any broker answers.
    pub fn bootstrap(&mut self) -> &mut Broker {
        &mut self.bootstrap
    }

    pub fn bootstrap_address(&self) -> &str {
        &self.bootstrap.address
    }

    /// Metadata of `topics` (all topics for `None`).
    pub fn metadata(&mut self, topics: Option<&[String]>) -> Result<MetadataResponse, Failure> {
        let answer = self.bootstrap.call(&metadata_request(topics))?;
        self.nodes = nodes_of(&answer);
        Ok(answer)
    }

    /// The connection to broker `id`.
    pub fn node(&mut self, id: i32) -> Result<&mut Broker, Failure> {
        if !self.open.contains_key(&id) {
            let node = self
                .nodes
                .iter()
                .find(|n| n.id == id)
                .cloned()
                .ok_or_else(|| {
                    Failure::retryable(format!(
                        "broker {id} is not in the cluster's metadata (from {}); it may be down",
                        self.bootstrap.address
                    ))
                })?;
            let advertised = format!("{}:{}", node.host, node.port);
            let address = self
                .overrides
                .get(&id.to_string())
                .cloned()
                .unwrap_or_else(|| advertised.clone());
            if address == self.bootstrap.address {
                return Ok(&mut self.bootstrap);
            }
            let broker = Broker::connect(&address).map_err(|f| Failure {
                message: format!(
                    "{} (broker {id} advertises {advertised}; when that name is not an IP \
                     address the plugin can reach, map it with `brokers: {{\"{id}\": \
                     \"IP:PORT\"}}` and grant that address)",
                    f.message
                ),
                ..f
            })?;
            self.open.insert(id, broker);
        }
        Ok(self.open.get_mut(&id).expect("inserted above"))
    }

    /// The connection to the coordinator of consumer group `group`.
    pub fn coordinator(&mut self, group: &str) -> Result<&mut Broker, Failure> {
        let request = FindCoordinatorRequest::default()
            .with_key(str_bytes(group))
            .with_key_type(0);
        let answer = self.bootstrap.call(&request)?;
        check(
            answer.error_code,
            &format!("finding the coordinator of group `{group}`"),
        )?;
        let id = answer.node_id.0;
        if !self.nodes.iter().any(|n| n.id == id) {
            self.nodes.push(Node {
                id,
                host: answer.host.to_string(),
                port: answer.port,
            });
        }
        self.node(id)
    }
}

fn metadata_request(topics: Option<&[String]>) -> MetadataRequest {
    MetadataRequest::default()
        .with_topics(topics.map(|names| {
            names
                .iter()
                .map(|n| MetadataRequestTopic::default().with_name(Some(topic_name(n))))
                .collect()
        }))
        .with_allow_auto_topic_creation(false)
}

fn nodes_of(metadata: &MetadataResponse) -> Vec<Node> {
    metadata
        .brokers
        .iter()
        .map(|b| Node {
            id: b.node_id.0,
            host: b.host.to_string(),
            port: b.port,
        })
        .collect()
}
