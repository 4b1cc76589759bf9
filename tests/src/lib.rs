//! Shared harness of the black-box tests: the real `medic` binary run in a scratch
//! directory per test, its output captured, its runs read back through
//! `medic runs show --json`, and a counter target that records every effect the
//! probe plugin applies to it, a real etcd (`etcd.rs`, through tests/scripts/etcd.sh)
//! for the etcd plugin, a real MariaDB (`mariadb.rs`, through tests/scripts/mariadb.sh)
//! for the `sql` interface, and a contract fixture of Consul's HTTP API
//! (`consul_fixture.rs`; no agent is installable here). Modelled on ripgrep's
//! `tests/util.rs`.
//! The kafka plugin's broker is `kafka.rs` (tansu, through tests/scripts/kafka.sh).

mod ceph;
pub mod chaos;
mod consul_fixture;
mod counter;
mod etcd;
pub mod faults;
mod kafka;
mod mariadb;
mod medic;
mod metrics;
mod process;
mod proxy;
mod server;
mod stub;
mod view;
mod wait;

pub use ceph::{Ceph, CephLease};
pub use consul_fixture::{ConsulFixture, FIXTURE_NODE, Recorded, call as consul_call};
pub use counter::{Applied, CounterTarget};
pub use etcd::{Etcd, etcd_snapshot_status};
pub use kafka::{Kafka, KafkaStall, Member as KafkaMember};
pub use mariadb::{
    ADMIN_PASSWORD, ADMIN_USER, APP_PASSWORD, APP_USER, LIMITED_PASSWORD, LIMITED_USER, MariaDb,
    MariaDbPair, REPL_PASSWORD, REPL_USER, TEST_PASSWORD, TEST_USER,
};
pub use medic::{Finished, Medic, exit_code};
pub use metrics::{Histogram, Scrape};
pub use process::Running;
pub use proxy::{Fault, Proxy};
pub use server::{Client, Reply, Server};
pub use stub::Stub;
pub use view::{AttemptView, RunView, StepView};
pub use wait::poll_until;

use std::path::PathBuf;

/// The repository root (the tests crate lives in `<repo>/tests`). Cargo runs tests in
/// the package root; resolved at run time, not with `env!("CARGO_MANIFEST_DIR")`,
/// because a test binary reused from another checkout would carry that path.
pub fn repo_root() -> PathBuf {
    std::env::current_dir()
        .expect("current dir")
        .parent()
        .expect("the tests crate has a parent directory")
        .to_path_buf()
}

/// A plan named `name` whose `steps` run one after the other (each step gets the
/// previous one in `needs`), with `plugins` as written: what the per-plugin tests
/// build to try actions one at a time.
pub fn sequential_plan(
    name: &str,
    plugins: serde_json::Value,
    steps: serde_json::Value,
) -> serde_json::Value {
    let mut previous: Option<String> = None;
    let steps: Vec<serde_json::Value> = steps
        .as_array()
        .expect("steps is an array")
        .iter()
        .cloned()
        .map(|mut step| {
            let id = step["id"]
                .as_str()
                .expect("each step has an id")
                .to_string();
            if let Some(before) = previous.replace(id) {
                step["needs"] = serde_json::json!([before]);
            }
            step
        })
        .collect();
    serde_json::json!({
        "apiVersion": "medic/v1",
        "kind": "RecoveryPlan",
        "metadata": {"name": name},
        "plugins": plugins,
        "steps": steps,
    })
}

/// A plan file shipped with the tests (`tests/plans/NAME`).
pub fn plan(name: &str) -> PathBuf {
    let path = repo_root().join("tests/plans").join(name);
    assert!(path.is_file(), "test plan {} is missing", path.display());
    path
}
