//! The `kafka` plugin against a real Kafka-protocol broker (tansu 0.6 through
//! tests/scripts/kafka.sh, one private broker per test): each action through `medic
//! run` of the real binary, its outputs and effects checked against the broker's own
//! state as kafka-python reads it (tests/scripts/kafka_client.py), never through the
//! plugin; `plans/kafka/consumer-backfill.yaml` end to end with the operator's stop
//! and restart of the consumers between `medic approve`s; the lag audit plan; and bad
//! input: an unknown topic or group, a broker that is not there, a reset while the
//! group has a member.
//!
//! tansu's memory storage counts record batches in its offsets: every record here is
//! produced as its own batch, so offsets and lag are exact.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use medic_tests::{
    Finished, Kafka, KafkaStall, Medic, RunView, Server, repo_root, sequential_plan,
};
use serde_json::{Value, json};

use crate::exit;

/// When the outage began: between the last record before it and the first during it.
/// tansu finds offsets by time on the time it appended a record (not the record's
/// own timestamp), so the outage is real time, not a timestamp given to records.
struct Outage {
    ms: i64,
    /// The same instant in RFC 3339, as an operator gives it.
    rfc3339: String,
}

/// Runs a plan of `steps` (kafka steps, one after the other) granted `bootstrap`.
fn run_steps(medic: &Medic, bootstrap: &str, steps: Value) -> (Finished, RunView) {
    let plan = sequential_plan(
        "kafka-test",
        json!({"kafka": {"use": "kafka@0.1", "grants": {"connect": [bootstrap]}}}),
        steps,
    );
    let path = medic.write("plan.json", &serde_json::to_string_pretty(&plan).unwrap());
    let out = medic.run(["run".as_ref(), path.as_os_str()]);
    let view = medic.show(&run_id(&out));
    (out, view)
}

fn run_id(out: &Finished) -> String {
    out.stdout
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("run "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no `run ID started` line\n{out}"))
        .to_string()
}

/// A step `kafka/ACTION` with `with` plus the bootstrap address.
fn step(id: &str, action: &str, bootstrap: &str, mut with: Value) -> Value {
    with["bootstrap"] = json!(bootstrap);
    json!({"id": id, "uses": format!("kafka/{action}"), "with": with})
}

/// The one failure message of a step that failed on its only attempt.
fn only_failure(view: &RunView, id: &str) -> (bool, String) {
    let failures = view.failures(id);
    assert_eq!(failures.len(), 1, "{}", view.pretty());
    let (_, retryable, message) = failures.into_iter().next().unwrap();
    (retryable, message)
}

/// `orders` with two partitions: 4 records from before the outage and 3 from during
/// it on each; group `loader` has read and committed all 14.
fn orders(kafka: &Kafka) -> Outage {
    kafka.create_topic("orders", 2);
    for p in 0..2 {
        assert_eq!(
            kafka.produce("orders", p, &format!("before-{p}"), 4, None),
            [0, 1, 2, 3]
        );
    }
    std::thread::sleep(Duration::from_millis(50));
    let now = SystemTime::now();
    let outage = Outage {
        ms: now.duration_since(UNIX_EPOCH).unwrap().as_millis() as i64,
        rfc3339: humantime::format_rfc3339_millis(now).to_string(),
    };
    std::thread::sleep(Duration::from_millis(50));
    for p in 0..2 {
        assert_eq!(
            kafka.produce("orders", p, &format!("outage-{p}"), 3, None),
            [4, 5, 6]
        );
    }
    assert_eq!(kafka.consume("loader", "orders", 14).len(), 14);
    assert_eq!(
        kafka.committed("loader", "orders"),
        [(0, Some(7)), (1, Some(7))].into()
    );
    outage
}

#[test]
fn metadata_health_lag_and_window_agree_with_the_broker() {
    let kafka = Kafka::private();
    let outage = orders(&kafka);
    // The group falls behind on partition 1 only.
    kafka.produce("orders", 1, "late", 2, None);
    let medic = Medic::new();
    let b = kafka.bootstrap.as_str();
    let (out, view) = run_steps(
        &medic,
        b,
        json!([
            step("cluster", "cluster-metadata", b, json!({})),
            step("topics", "topic-metadata", b, json!({"topics": ["orders"]})),
            step("health", "partition-health", b, json!({})),
            step("group", "group-describe", b, json!({"group": "loader"})),
            step("lag", "group-lag", b, json!({"group": "loader"})),
            step(
                "window",
                "offsets-at-time",
                b,
                json!({"topic": "orders", "timestamp": outage.rfc3339, "require_retained": true})
            ),
        ]),
    );
    out.expect_code(exit::SUCCEEDED, || view.pretty());

    let cluster = &view.step("cluster").output;
    let port: i64 = b.rsplit_once(':').unwrap().1.parse().unwrap();
    assert_eq!(
        cluster["brokers"],
        json!([{"id": 111, "host": "127.0.0.1", "port": port, "rack": null}]),
        "tansu is node 111 on the port the script chose"
    );
    assert_eq!(
        cluster["topics"],
        json!([{"name": "orders", "partitions": 2, "replication_factor": 1, "internal": false}])
    );
    assert_eq!(
        (
            &cluster["under_replicated_partitions"],
            &cluster["offline_partitions"]
        ),
        (&json!(0), &json!(0))
    );
    let parts = &view.step("topics").output["topics"][0]["partitions"];
    assert_eq!(parts[1]["leader"], 111);
    assert_eq!(parts[1]["isr"], json!([111]));
    assert_eq!(view.step("health").output["healthy"], true);
    assert_eq!(view.step("group").output["state"], "Empty");
    assert_eq!(view.step("group").output["members"], json!([]));

    // Lag: the broker's committed offsets (read by kafka-python) against the ends.
    let committed = kafka.committed("loader", "orders");
    let lag = &view.step("lag").output;
    assert_eq!(
        lag["partitions"],
        json!([
            {"topic": "orders", "partition": 0, "committed": committed[&0], "end": 7, "lag": 0},
            {"topic": "orders", "partition": 1, "committed": committed[&1], "end": 9, "lag": 2},
        ]),
        "{}",
        view.pretty()
    );
    assert_eq!(
        (&lag["total_lag"], &lag["max_partition_lag"]),
        (&json!(2), &json!(2))
    );

    // The outage window starts at offset 4 of each partition (the first record from
    // 20:00) and ends where the logs end now.
    let window = &view.step("window").output;
    assert_eq!(window["timestamp_ms"], outage.ms);
    assert_eq!(window["partitions"][0]["offset"], 4);
    assert_eq!(window["partitions"][1]["offset"], 4);
    let first = window["partitions"][0]["first_retained_ms"]
        .as_i64()
        .unwrap();
    assert!(first < outage.ms, "{window}");
    assert_eq!(window["records"], 3 + 5);
    assert_eq!(
        window["window_end"],
        json!([
            {"topic": "orders", "partition": 0, "offset": 7},
            {"topic": "orders", "partition": 1, "offset": 9},
        ])
    );
}

#[test]
fn canary_writes_a_record_the_broker_serves_to_another_client() {
    let kafka = Kafka::private();
    kafka.create_topic("canary", 1);
    kafka.produce("canary", 0, "earlier", 2, None);
    let medic = Medic::new();
    let b = kafka.bootstrap.as_str();
    let (out, view) = run_steps(
        &medic,
        b,
        json!([step("canary", "canary", b, json!({"topic": "canary"}))]),
    );
    out.expect_code(exit::SUCCEEDED, || view.pretty());
    let canary = &view.step("canary").output;
    assert_eq!(canary["offset"], 2, "{}", view.pretty());
    let value = canary["value"].as_str().unwrap();
    assert!(value.starts_with("medic-canary "), "{value}");

    let records = kafka.consume("canary-reader", "canary", 3);
    assert_eq!(records.len(), 3, "{records:?}");
    assert_eq!(
        records[2],
        (0, 2, value.to_string()),
        "kafka-python reads the canary back"
    );
}

#[test]
fn topic_config_check_checks_replication_and_says_when_the_broker_has_no_configs() {
    let kafka = Kafka::private();
    kafka.create_topic("orders", 2);
    let medic = Medic::new();
    let b = kafka.bootstrap.as_str();

    let (out, view) = run_steps(
        &medic,
        b,
        json!([step(
            "config",
            "topic-config-check",
            b,
            json!({"topic": "orders", "min_replication_factor": 3})
        )]),
    );
    out.expect_code(exit::FAILED, || view.pretty());
    let (retryable, message) = only_failure(&view, "config");
    assert!(!retryable, "{message}");
    assert!(
        message.contains("fewer than 3 replicas: 0 (1 replica(s)), 1 (1 replica(s))"),
        "{message}"
    );

    // tansu answers DescribeConfigs with no configs: the check must not pass.
    let (out, view) = run_steps(
        &medic,
        b,
        json!([step(
            "config",
            "topic-config-check",
            b,
            json!({"topic": "orders"})
        )]),
    );
    out.expect_code(exit::FAILED, || view.pretty());
    let (retryable, message) = only_failure(&view, "config");
    assert!(!retryable, "{message}");
    assert!(message.contains("returned no configs"), "{message}");
    assert!(message.contains("min.insync.replicas"), "{message}");
}

/// Each way to reset, its effect read back from the broker by kafka-python.
#[test]
fn reset_offsets_moves_the_committed_offsets_the_broker_keeps() {
    let kafka = Kafka::private();
    let outage = orders(&kafka);
    let medic = Medic::new();
    let b = kafka.bootstrap.as_str();
    let reset = |to: Value, partitions: Option<Value>| {
        let mut with = json!({"group": "loader", "topic": "orders", "to": to});
        if let Some(p) = partitions {
            with["partitions"] = p;
        }
        let (out, view) = run_steps(&medic, b, json!([step("reset", "reset-offsets", b, with)]));
        out.expect_code(exit::SUCCEEDED, || view.pretty());
        view.step("reset").output.clone()
    };

    let out = reset(json!("earliest"), None);
    assert_eq!(
        kafka.committed("loader", "orders"),
        [(0, Some(0)), (1, Some(0))].into()
    );
    assert_eq!(
        out["previous_offsets"],
        json!([{"partition": 0, "offset": 7}, {"partition": 1, "offset": 7}])
    );
    assert_eq!(out["moved_by"], 14);

    reset(json!({"timestamp": outage.rfc3339}), None);
    assert_eq!(
        kafka.committed("loader", "orders"),
        [(0, Some(4)), (1, Some(4))].into()
    );

    // Epoch ms, one partition only.
    reset(
        json!({"timestamp": outage.ms - 3_600_000}),
        Some(json!([1])),
    );
    assert_eq!(
        kafka.committed("loader", "orders"),
        [(0, Some(4)), (1, Some(0))].into()
    );

    reset(json!({"offsets": [{"partition": 0, "offset": 6}]}), None);
    assert_eq!(
        kafka.committed("loader", "orders"),
        [(0, Some(6)), (1, Some(0))].into()
    );

    kafka.produce("orders", 1, "new", 1, None);
    let out = reset(json!("latest"), None);
    assert_eq!(
        kafka.committed("loader", "orders"),
        [(0, Some(7)), (1, Some(8))].into()
    );
    assert_eq!(out["moved_by"], (6 - 7) + (0 - 8));

    // An offset outside the log is refused, naming the log's range; nothing moves.
    let (out, view) = run_steps(
        &medic,
        b,
        json!([step(
            "reset",
            "reset-offsets",
            b,
            json!({"group": "loader", "topic": "orders", "to": {"offsets": [{"partition": 1, "offset": 50}]}})
        )]),
    );
    out.expect_code(exit::FAILED, || view.pretty());
    let (retryable, message) = only_failure(&view, "reset");
    assert!(!retryable, "{message}");
    assert!(
        message.contains("offset 50 is outside `orders` partition 1"),
        "{message}"
    );
    assert!(message.contains("0..8"), "{message}");
    assert_eq!(
        kafka.committed("loader", "orders"),
        [(0, Some(7)), (1, Some(8))].into()
    );
}

#[test]
fn reset_is_refused_while_the_group_has_an_active_member() {
    let kafka = Kafka::private();
    orders(&kafka);
    let member = kafka.hold_member("loader", "orders", 120);
    let medic = Medic::new();
    let b = kafka.bootstrap.as_str();
    let (out, view) = run_steps(
        &medic,
        b,
        json!([
            step("group", "group-describe", b, json!({"group": "loader"})),
            step(
                "reset",
                "reset-offsets",
                b,
                json!({"group": "loader", "topic": "orders", "to": "earliest"})
            ),
        ]),
    );
    out.expect_code(exit::FAILED, || view.pretty());
    assert_eq!(
        view.step("group").output["state"],
        "Stable",
        "{}",
        view.pretty()
    );
    assert_eq!(
        view.step("group").output["members"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let (retryable, message) = only_failure(&view, "reset");
    assert!(
        retryable,
        "the member may leave: a retry can succeed ({message})"
    );
    assert!(
        message.contains(
            "refusing to reset the offsets of consumer group `loader`: it has 1 active member(s)"
        ),
        "{message}"
    );
    assert!(message.contains("stop its consumers first"), "{message}");
    drop(member);
    assert_eq!(
        kafka.committed("loader", "orders"),
        [(0, Some(7)), (1, Some(7))].into(),
        "nothing was reset"
    );
}

#[test]
fn unknown_topic_unknown_group_and_a_stopped_broker_are_clear_step_errors() {
    let kafka = Kafka::private();
    orders(&kafka);
    let medic = Medic::new();
    let b = kafka.bootstrap.as_str();

    for (action, with) in [
        ("topic-metadata", json!({"topics": ["no-such-topic"]})),
        (
            "reset-offsets",
            json!({"group": "loader", "topic": "no-such-topic", "to": "earliest"}),
        ),
        (
            "offsets-at-time",
            json!({"topic": "no-such-topic", "timestamp": 0}),
        ),
    ] {
        let (out, view) = run_steps(&medic, b, json!([step("s", action, b, with)]));
        out.expect_code(exit::FAILED, || view.pretty());
        let (retryable, message) = only_failure(&view, "s");
        assert!(!retryable, "{action}: {message}");
        assert!(
            message.contains("topic `no-such-topic` does not exist on the cluster at"),
            "{action}: {message}"
        );
    }

    let (out, view) = run_steps(
        &medic,
        b,
        json!([step(
            "lag",
            "group-lag",
            b,
            json!({"group": "no-such-group"})
        )]),
    );
    out.expect_code(exit::FAILED, || view.pretty());
    let (retryable, message) = only_failure(&view, "lag");
    assert!(!retryable, "{message}");
    assert!(
        message.contains("consumer group `no-such-group` is unknown to the cluster"),
        "{message}"
    );

    // A partition the topic lacks.
    let (out, view) = run_steps(
        &medic,
        b,
        json!([step(
            "reset",
            "reset-offsets",
            b,
            json!({"group": "loader", "topic": "orders", "to": "earliest", "partitions": [5]})
        )]),
    );
    out.expect_code(exit::FAILED, || view.pretty());
    let (_, message) = only_failure(&view, "reset");
    assert!(
        message.contains("topic `orders` has no partition 5"),
        "{message}"
    );

    // An address the plan does not grant.
    let other = "127.0.0.1:1";
    let (out, view) = run_steps(
        &medic,
        b,
        json!([step("cluster", "cluster-metadata", other, json!({}))]),
    );
    out.expect_code(exit::FAILED, || view.pretty());
    let (retryable, message) = only_failure(&view, "cluster");
    assert!(!retryable, "{message}");
    assert!(
        message.contains("not allowed: the plan does not grant it"),
        "{message}"
    );

    // The broker is down: the port refuses; retryable, naming the address.
    kafka.stop();
    let (out, view) = run_steps(
        &medic,
        b,
        json!([step("cluster", "cluster-metadata", b, json!({}))]),
    );
    out.expect_code(exit::FAILED, || view.pretty());
    let (retryable, message) = only_failure(&view, "cluster");
    assert!(retryable, "{message}");
    assert!(message.contains(&format!("Kafka broker {b}")), "{message}");
    assert!(message.contains("is the broker running"), "{message}");
}

/// plans/kafka/consumer-backfill.yaml: the group is rewound to the outage's start
/// only after the operator approved that its consumers are stopped and the last one
/// has left the group, re-reads exactly the outage's records, and the plan sees its
/// lag drain to the window's end.
#[test]
fn backfill_plan_rewinds_the_group_and_verifies_it_reread_the_gap() {
    let kafka = Kafka::private();
    let outage = orders(&kafka);
    let medic = Medic::new();
    let plan = repo_root().join("plans/kafka/consumer-backfill.yaml");
    let mut running = medic.spawn([
        "run".as_ref(),
        plan.as_os_str(),
        "-p".as_ref(),
        format!("bootstrap={}", kafka.bootstrap).as_ref(),
        "-p".as_ref(),
        "group=loader".as_ref(),
        "-p".as_ref(),
        "topic=orders".as_ref(),
        "-p".as_ref(),
        format!("from={}", outage.rfc3339).as_ref(),
    ]);
    let run = running.run_id();
    let wait_approval = |step: &str, running: &mut medic_tests::Running| {
        medic.wait_for_run(
            &run,
            Duration::from_secs(60),
            &format!("step `{step}` waiting for approval"),
            |view| (view.step_status(step) == Some("approval")).then_some(()),
            || running.describe(),
        );
    };
    wait_approval("stop-consumers", &mut running);
    let view = medic.show(&run);
    assert_eq!(
        view.step("window").output["records"],
        6,
        "{}",
        view.pretty()
    );
    assert_eq!(
        kafka.committed("loader", "orders"),
        [(0, Some(7)), (1, Some(7))].into(),
        "nothing moves before the operator approves"
    );
    // The operator approves while one consumer is still in the group (it leaves 8 s
    // after joining): the rewind is refused and retried until it has left.
    let straggler = kafka.hold_member("loader", "orders", 8);
    medic
        .run([
            "approve",
            &run,
            "stop-consumers",
            "--comment",
            "loader stopped",
        ])
        .expect_code(0, || running.describe());
    medic.wait_for_run(
        &run,
        Duration::from_secs(60),
        "the rewind refused while a consumer is in the group",
        |view| (!view.failures("rewind").is_empty()).then_some(()),
        || running.describe(),
    );
    assert_eq!(
        kafka.committed("loader", "orders"),
        [(0, Some(7)), (1, Some(7))].into(),
        "nothing moves while the group has a member"
    );
    straggler.wait_left();

    wait_approval("restart-consumers", &mut running);
    assert_eq!(
        kafka.committed("loader", "orders"),
        [(0, Some(4)), (1, Some(4))].into(),
        "the broker holds the group rewound to the first record of the outage"
    );
    // The consumers run again: they re-read exactly the outage's records.
    let mut reread = kafka.consume("loader", "orders", 6);
    reread.sort();
    let expected: Vec<(i64, i64, String)> = (0..2)
        .flat_map(|p| (4..7).map(move |o| (p, o, format!("outage-{p}-{}", o - 4))))
        .collect();
    assert_eq!(reread, expected);
    medic
        .run(["approve", &run, "restart-consumers"])
        .expect_code(0, || running.describe());

    let out = running.wait(Duration::from_secs(90));
    let view = medic.show(&run);
    out.expect_code(exit::SUCCEEDED, || format!("{}\n{out}", view.pretty()));
    assert_eq!(view.step("rewind").output["moved_by"], 6);
    let refused = view.failures("rewind");
    assert!(
        refused
            .iter()
            .all(|(_, retryable, m)| *retryable && m.contains("1 active member(s)")),
        "{refused:?}"
    );
    assert_eq!(view.step("drain").output["total_lag"], 0);
    assert_eq!(
        kafka.committed("loader", "orders"),
        [(0, Some(7)), (1, Some(7))].into()
    );
}

/// The drain check does not pass while the group has not consumed the window: here
/// it is rewound and never re-consumes.
#[test]
fn backfill_drain_check_fails_until_the_window_is_consumed() {
    let kafka = Kafka::private();
    let outage = orders(&kafka);
    let medic = Medic::new();
    let b = kafka.bootstrap.as_str();
    let window_end = json!([
        {"topic": "orders", "partition": 0, "offset": 7},
        {"topic": "orders", "partition": 1, "offset": 7},
    ]);
    let (out, view) = run_steps(
        &medic,
        b,
        json!([
            step(
                "rewind",
                "reset-offsets",
                b,
                json!({"group": "loader", "topic": "orders", "to": {"timestamp": outage.ms}})
            ),
            step(
                "drain",
                "group-lag",
                b,
                json!({"group": "loader", "topics": ["orders"], "min_committed": window_end})
            ),
        ]),
    );
    out.expect_code(exit::FAILED, || view.pretty());
    let (retryable, message) = only_failure(&view, "drain");
    assert!(retryable, "{message}");
    assert!(
        message.contains("has not yet consumed the whole window: orders/0 committed 4 < 7, orders/1 committed 4 < 7"),
        "{message}"
    );
}

/// plans/maintenance/kafka-consumer-lag-audit.yaml passes while the group keeps up
/// and fails, naming the group, partition and lag, once it falls behind.
#[test]
fn the_consumer_lag_audit_passes_under_the_threshold_and_names_what_lags_above_it() {
    let kafka = Kafka::private();
    orders(&kafka);
    kafka.produce("orders", 0, "late", 3, None);
    let medic = Medic::new();
    let plan = repo_root().join("plans/maintenance/kafka-consumer-lag-audit.yaml");
    let audit = |max_lag: u32| {
        let out = medic.run([
            "run".as_ref(),
            plan.as_os_str(),
            "-p".as_ref(),
            format!("bootstrap={}", kafka.bootstrap).as_ref(),
            "-p".as_ref(),
            "group=loader".as_ref(),
            "-p".as_ref(),
            "topic=orders".as_ref(),
            "-p".as_ref(),
            format!("max_lag={max_lag}").as_ref(),
        ]);
        let view = medic.show(&run_id(&out));
        (out, view)
    };
    let (out, view) = audit(3);
    out.expect_code(exit::SUCCEEDED, || view.pretty());
    assert_eq!(view.step("lag").output["max_partition_lag"], 3);

    let (out, view) = audit(2);
    out.expect_code(exit::FAILED, || view.pretty());
    let failures = view.failures("lag");
    assert_eq!(failures.len(), 3, "checked three times: {}", view.pretty());
    let message = &failures[2].2;
    assert!(
        message.contains(
            "consumer group `loader` lags more than max_lag 2 on 1 partition(s): orders/0 lag 3 (committed 7, end 10)"
        ),
        "{message}"
    );
    assert_eq!(
        kafka.committed("loader", "orders"),
        [(0, Some(7)), (1, Some(7))].into(),
        "the audit changed nothing"
    );

    // Registered with `medic serve`, the plan creates the schedule it declares.
    let server = Server::admin(&medic);
    let text = std::fs::read_to_string(&plan).expect("the maintenance plan");
    let (status, _, body) = server.post("/v1/plans", &[], &json!({ "plan": text }));
    assert_eq!(status, 201, "{body}");
    let (status, schedule) = server.get_json("/v1/schedules/kafka-consumer-lag-audit");
    assert_eq!(status, 200, "{schedule}");
    assert_eq!(
        schedule["declared_by"],
        json!("kafka-consumer-lag-audit"),
        "{schedule}"
    );
    assert_eq!(
        schedule["spec"]["cron"],
        json!("*/15 * * * *"),
        "{schedule}"
    );
}

/// Killed after the broker stored the reset but before medic heard so (a relay
/// withholds the OffsetCommit answer), `medic resume` asks the plugin to `observe`:
/// the committed offsets already are the targets, so the step succeeds without a
/// second commit.
#[test]
fn killed_after_the_reset_landed_resume_observes_it_done() {
    let kafka = Kafka::private();
    orders(&kafka);
    let relay = KafkaStall::start(&kafka.bootstrap, 8);
    let medic = Medic::new();
    let a = relay.address.as_str();
    let plan = json!({
        "apiVersion": "medic/v1",
        "kind": "RecoveryPlan",
        "metadata": {"name": "kafka-crash"},
        "plugins": {"kafka": {"use": "kafka@0.1", "grants": {"connect": [a]}}},
        "steps": [{
            "id": "reset",
            "uses": "kafka/reset-offsets",
            // Every broker (node 111) through the relay.
            "with": {"bootstrap": a, "brokers": {"111": a}, "group": "loader",
                     "topic": "orders", "to": "earliest"},
        }],
    });
    let path = medic.write("plan.json", &plan.to_string());
    let mut running = medic.spawn(["run".as_ref(), path.as_os_str()]);
    let run = running.run_id();
    medic_tests::poll_until(
        Duration::from_secs(30),
        "the broker to store the reset",
        || {
            (kafka.committed("loader", "orders") == [(0, Some(0)), (1, Some(0))].into())
                .then_some(())
        },
        || running.describe(),
    );
    let killed = running.kill();
    assert_eq!(killed.code, 128 + 9, "medic died of SIGKILL\n{killed}");
    assert_eq!(medic.show(&run).step("reset").status, "running");

    let out = medic.run(["resume", &run]);
    let view = medic.show(&run);
    out.expect_code(exit::SUCCEEDED, || view.pretty());
    assert_eq!(relay.requests(8), 1, "no second OffsetCommit");
    assert_eq!(
        view.attempts_of("reset", false).len(),
        1,
        "{}",
        view.pretty()
    );
    assert!(
        view.event_kinds().iter().any(|k| k.contains("observ")),
        "{:?}",
        view.event_kinds()
    );
    assert_eq!(
        view.step("reset").output["partitions"],
        json!([
            {"partition": 0, "previous": null, "offset": 0},
            {"partition": 1, "previous": null, "offset": 0},
        ])
    );
    assert_eq!(
        kafka.committed("loader", "orders"),
        [(0, Some(0)), (1, Some(0))].into()
    );
}

/// A broker that requires SASL: the plugin speaks no SASL yet, and says so instead of
/// retrying. (tansu refuses to create users without authentication, so with its memory
/// storage no user exists and right or wrong credentials cannot be tried here.)
#[test]
fn a_broker_requiring_sasl_is_a_clear_permanent_error() {
    let kafka = Kafka::requiring_sasl();
    let medic = Medic::new();
    let b = kafka.bootstrap.as_str();
    let (out, view) = run_steps(
        &medic,
        b,
        json!([step("cluster", "cluster-metadata", b, json!({}))]),
    );
    out.expect_code(exit::FAILED, || view.pretty());
    let (retryable, message) = only_failure(&view, "cluster");
    assert!(!retryable, "{message}");
    assert!(
        message.contains(&format!(
            "Kafka broker {b} closed the connection at the first request"
        )),
        "{message}"
    );
    assert!(
        message.contains("requires SASL authentication or TLS"),
        "{message}"
    );
}
