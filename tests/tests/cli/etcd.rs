//! The `etcd` plugin against a real etcd 3.4 (tests/scripts/etcd.sh, one private
//! single member per test): each action through `medic run` of the real binary, its
//! outputs checked against `etcdctl`'s own answers; the snapshot artifact read by
//! `etcdctl snapshot status`; `plans/etcd/safe-restart.yaml` end to end with the
//! operator's restart between `medic approve`s; and bad input: an origin the plan
//! does not grant, a server that is not there, params the schema refuses.

use std::time::Duration;

use medic_tests::{Etcd, Finished, Medic, RunView, Server, etcd_snapshot_status, repo_root};
use serde_json::{Value, json};

use crate::exit;

/// Runs a plan of `steps` (etcd steps, one after the other) whose etcd plugin is
/// granted the HTTP origins `grants`; returns what medic printed and the run.
fn run_steps(medic: &Medic, grants: &[&str], steps: Value) -> (Finished, RunView) {
    let mut previous: Option<String> = None;
    let steps: Vec<Value> = steps
        .as_array()
        .expect("steps is an array")
        .iter()
        .cloned()
        .map(|mut step| {
            if let Some(before) = previous.replace(step["id"].as_str().unwrap().to_string()) {
                step["needs"] = json!([before]);
            }
            step
        })
        .collect();
    let plan = json!({
        "apiVersion": "medic/v1",
        "kind": "RecoveryPlan",
        "metadata": {"name": "etcd-test"},
        "plugins": {"etcd": {"use": "etcd@0.1", "grants": {"http": grants}}},
        "steps": steps,
    });
    let path = medic.write("plan.json", &serde_json::to_string_pretty(&plan).unwrap());
    let out = medic.run(["run".as_ref(), path.as_os_str()]);
    let run = run_id(&out);
    let view = medic.show(&run);
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

fn step(id: &str, action: &str, with: Value) -> Value {
    json!({"id": id, "uses": format!("etcd/{action}"), "with": with})
}

/// A gateway uint64 (etcdctl's JSON writes them as numbers) as a decimal string.
fn id(v: &Value) -> String {
    match v {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        other => panic!("not an id: {other}"),
    }
}

#[test]
fn health_status_and_member_list_agree_with_etcdctl() {
    let etcd = Etcd::private();
    let medic = Medic::new();
    let target = json!({"endpoint": etcd.url});
    let (out, view) = run_steps(
        &medic,
        &[&etcd.url],
        json!([
            step("health", "health", target.clone()),
            step(
                "status",
                "status",
                json!({"endpoint": etcd.url, "require_leader": true})
            ),
            step("members", "member-list", target.clone()),
        ]),
    );
    out.expect_code(exit::SUCCEEDED, || view.pretty());

    let health = &view.step("health").output;
    assert_eq!(health["healthy"], true, "{}", view.pretty());
    let ctl_health = etcd.ctl_json(&["endpoint", "health"]);
    assert_eq!(
        ctl_health[0]["health"], true,
        "etcdctl agrees: {ctl_health}"
    );

    let status = &view.step("status").output;
    let ctl = etcd.ctl_json(&["endpoint", "status"]);
    let ctl = &ctl[0]["Status"];
    assert_eq!(status["version"], ctl["version"], "{}", view.pretty());
    assert_eq!(
        status["member_id"].as_str().unwrap(),
        id(&ctl["header"]["member_id"])
    );
    assert_eq!(status["leader"].as_str().unwrap(), id(&ctl["leader"]));
    assert_eq!(status["is_leader"], true, "a single member leads itself");
    assert_eq!(
        status["db_size"], ctl["dbSize"],
        "no writes between the two"
    );
    assert_eq!(status["raft_term"], ctl["raftTerm"]);
    let (ours, theirs) = (
        status["raft_index"].as_u64().unwrap(),
        ctl["raftIndex"].as_u64().unwrap(),
    );
    assert!(
        ours > 0 && ours <= theirs,
        "raft index {ours}, etcdctl's later {theirs}"
    );

    let members = &view.step("members").output;
    let ctl = etcd.ctl_json(&["member", "list"]);
    let ctl_members = ctl["members"].as_array().unwrap();
    let ours = members["members"].as_array().unwrap();
    assert_eq!(ours.len(), ctl_members.len(), "{}", view.pretty());
    for (m, c) in ours.iter().zip(ctl_members) {
        assert_eq!(m["id"].as_str().unwrap(), id(&c["ID"]));
        assert_eq!(m["name"], c["name"]);
        assert_eq!(m["peer_urls"], c["peerURLs"]);
        assert_eq!(m["client_urls"], c["clientURLs"]);
        assert_eq!(m["is_learner"], false);
    }
    // etcdctl's table prints ids in hex: `id_hex` is what an operator reads there.
    let table = etcd.ctl(&["member", "list"]);
    assert!(
        table.starts_with(ours[0]["id_hex"].as_str().unwrap()),
        "`{table}` starts with our id_hex {}",
        ours[0]["id_hex"]
    );
    assert_eq!(
        (members["voters"].as_u64(), members["quorum"].as_u64()),
        (Some(1), Some(1))
    );
}

#[test]
fn snapshot_artifact_is_a_snapshot_etcdctl_reads() {
    let etcd = Etcd::private();
    for i in 0..20 {
        etcd.ctl(&["put", &format!("/medic/key-{i:02}"), &"v".repeat(100 + i)]);
    }
    let ctl_revision = etcd.ctl_json(&["endpoint", "status"])[0]["Status"]["header"]["revision"]
        .as_u64()
        .unwrap();
    let medic = Medic::new();
    let (out, view) = run_steps(
        &medic,
        &[&etcd.url],
        json!([step(
            "snap",
            "snapshot",
            json!({"endpoint": etcd.url, "artifact": "before-restart.db"})
        )]),
    );
    out.expect_code(exit::SUCCEEDED, || view.pretty());
    let output = &view.step("snap").output;
    assert_eq!(output["artifact"], "before-restart.db");
    assert_eq!(
        output["revision"].as_u64(),
        Some(ctl_revision),
        "{}",
        view.pretty()
    );

    let file = medic
        .data_dir()
        .join("artifacts")
        .join(&view.id)
        .join("before-restart.db");
    let bytes = std::fs::metadata(&file)
        .unwrap_or_else(|e| panic!("the artifact {} is missing: {e}", file.display()))
        .len();
    assert_eq!(
        output["bytes"].as_u64(),
        Some(bytes),
        "output bytes = the file's size"
    );
    let status = etcd_snapshot_status(&file);
    assert_eq!(
        status["revision"].as_u64(),
        Some(ctl_revision),
        "etcdctl reads {status}"
    );
    assert!(
        status["totalKey"].as_u64().unwrap() >= 20,
        "the 20 keys are in it: {status}"
    );
    // The same as etcdctl's own save: the db plus the sha256 etcd appends.
    let theirs = medic.dir().join("etcdctl.db");
    etcd.ctl(&["snapshot", "save", theirs.to_str().unwrap()]);
    assert_eq!(etcd_snapshot_status(&theirs)["hash"], status["hash"]);
}

/// A database larger than a plugin's 64 MiB of memory: the snapshot is streamed into
/// the artifact as it arrives, never held whole.
#[test]
fn a_snapshot_larger_than_the_plugins_memory_streams_into_the_artifact() {
    let etcd = Etcd::private();
    // Incompressible-looking values, 1 MB each (etcd's request limit is 1.5 MiB).
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in 0..72 {
        let value: Vec<u8> = (0..1_000_000)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                b'a' + (seed % 26) as u8
            })
            .collect();
        etcd.put(&format!("/medic/big-{i:02}"), &value);
    }
    let db_size = etcd.ctl_json(&["endpoint", "status"])[0]["Status"]["dbSize"]
        .as_u64()
        .unwrap();
    assert!(
        db_size > 64 << 20,
        "the database ({db_size} bytes) outgrows the plugin's memory"
    );
    let medic = Medic::new();
    let (out, view) = run_steps(
        &medic,
        &[&etcd.url],
        json!([step("snap", "snapshot", json!({"endpoint": etcd.url}))]),
    );
    out.expect_code(exit::SUCCEEDED, || view.pretty());
    let file = medic
        .data_dir()
        .join("artifacts")
        .join(&view.id)
        .join("etcd-snapshot.db");
    let bytes = std::fs::metadata(&file).unwrap().len();
    assert_eq!(view.step("snap").output["bytes"].as_u64(), Some(bytes));
    // The backend file keeps growing for a moment after the puts (bolt commits in
    // batches): the snapshot is at least as large as it was.
    assert!(bytes > db_size, "{bytes} bytes, the database had {db_size}");
    let status = etcd_snapshot_status(&file);
    assert!(status["totalKey"].as_u64().unwrap() >= 72, "{status}");
    assert_eq!(
        status["revision"],
        view.step("snap").output["revision"],
        "etcdctl reads the revision the step reported: {status}"
    );
}

#[test]
fn defragment_and_alarm_disarm_are_idempotent() {
    let etcd = Etcd::private();
    let medic = Medic::new();
    let target = json!({"endpoint": etcd.url});
    let disarm = json!({"endpoint": etcd.url, "alarm": "NOSPACE"});
    let (out, view) = run_steps(
        &medic,
        &[&etcd.url],
        json!([
            step("defrag-1", "defragment", target.clone()),
            step("defrag-2", "defragment", target.clone()),
            step("alarms", "alarm-list", target.clone()),
            step("disarm-1", "alarm-disarm", disarm.clone()),
            step("disarm-2", "alarm-disarm", disarm),
            step("alarms-after", "alarm-list", target.clone()),
        ]),
    );
    out.expect_code(exit::SUCCEEDED, || view.pretty());
    for s in ["defrag-1", "defrag-2"] {
        let o = &view.step(s).output;
        assert!(
            o["db_size_after"].as_u64().unwrap() > 0,
            "{}",
            view.pretty()
        );
        assert!(o["db_size_in_use"].as_u64() <= o["db_size_after"].as_u64());
    }
    assert_eq!(view.step("alarms").output["alarms"], json!([]));
    assert_eq!(
        etcd.ctl(&["alarm", "list"]).trim(),
        "",
        "etcdctl sees no alarm either"
    );
    for s in ["disarm-1", "disarm-2"] {
        let o = &view.step(s).output;
        assert_eq!(
            (&o["disarmed"], &o["remaining"]),
            (&json!([]), &json!([])),
            "{}",
            view.pretty()
        );
    }
    assert_eq!(view.step("alarms-after").output["count"], 0);
    assert_eq!(etcd.ctl_json(&["endpoint", "health"])[0]["health"], true);
}

#[test]
fn member_promote_leaves_a_voter_alone_and_waits_for_a_learner_to_catch_up() {
    let etcd = Etcd::private();
    let voter = id(&etcd.ctl_json(&["member", "list"])["members"][0]["ID"]);
    // A learner that never starts: etcd refuses to promote it until it has caught up.
    let added = etcd.ctl_json(&[
        "member",
        "add",
        "lagging",
        "--learner",
        "--peer-urls=http://127.0.0.1:9",
    ]);
    let learner = id(&added["member"]["ID"]);
    let medic = Medic::new();

    let (out, view) = run_steps(
        &medic,
        &[&etcd.url],
        json!([
            step(
                "voter",
                "member-promote",
                json!({"endpoint": etcd.url, "member_id": voter})
            ),
            step("members", "member-list", json!({"endpoint": etcd.url})),
        ]),
    );
    out.expect_code(exit::SUCCEEDED, || view.pretty());
    assert_eq!(
        view.step("voter").output["promoted"],
        false,
        "{}",
        view.pretty()
    );
    let members = view.step("members").output["members"]
        .as_array()
        .unwrap()
        .clone();
    let listed = members
        .iter()
        .find(|m| m["id"] == learner.as_str())
        .expect("the learner is listed");
    assert_eq!(listed["is_learner"], true);
    assert_eq!(view.step("members").output["learners"], 1);

    let mut promote = step(
        "learner",
        "member-promote",
        json!({"endpoint": etcd.url, "member_id": learner}),
    );
    promote["retry"] = json!({"attempts": 2, "backoff": "fixed", "initial": "100ms", "max": "100ms", "jitter": false});
    let (out, view) = run_steps(&medic, &[&etcd.url], json!([promote]));
    out.expect_code(exit::FAILED, || view.pretty());
    let failed = view.failures("learner");
    assert_eq!(failed.len(), 2, "retried once: {failed:?}");
    assert!(
        failed.iter().all(|(_, retryable, _)| *retryable),
        "{failed:?}"
    );
    assert!(
        failed[0].2.contains("has not caught up with the leader"),
        "{failed:?}"
    );
    let ctl = etcd.ctl_json(&["member", "list"]);
    assert!(
        ctl["members"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| id(&m["ID"]) == learner && m["isLearner"] == true),
        "still a learner: {ctl}"
    );

    let (out, view) = run_steps(
        &medic,
        &[&etcd.url],
        json!([step(
            "nobody",
            "member-promote",
            json!({"endpoint": etcd.url, "member_id": "0x1234"})
        )]),
    );
    out.expect_code(exit::FAILED, || view.pretty());
    let failed = view.failures("nobody");
    assert_eq!(failed.len(), 1, "not retried: {failed:?}");
    assert!(
        !failed[0].1 && failed[0].2.contains("no member 4660"),
        "{failed:?}"
    );
}

#[test]
fn member_promote_makes_a_running_learner_a_voter() {
    let etcd = Etcd::private();
    let learner = etcd.learner();
    let ctl = etcd.ctl_json(&["member", "list"]);
    let id_of_learner = ctl["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["isLearner"] == true)
        .map(|m| id(&m["ID"]))
        .unwrap_or_else(|| panic!("the learner is listed: {ctl}"));
    let medic = Medic::new();
    let mut promote = step(
        "promote",
        "member-promote",
        json!({"endpoint": etcd.url, "member_id": id_of_learner}),
    );
    // It may still be catching up with the leader: etcd refuses until it has.
    promote["retry"] = json!({"attempts": 20, "backoff": "fixed", "initial": "500ms", "max": "500ms", "jitter": false});
    let (out, view) = run_steps(
        &medic,
        &[&etcd.url, &learner.url],
        json!([
            promote,
            step("members", "member-list", json!({"endpoint": etcd.url})),
            step(
                "learner-status",
                "status",
                json!({"endpoint": learner.url, "require_leader": true})
            ),
        ]),
    );
    out.expect_code(exit::SUCCEEDED, || view.pretty());
    let o = &view.step("promote").output;
    assert_eq!(
        (&o["promoted"], &o["voters"]),
        (&json!(true), &json!(2)),
        "{}",
        view.pretty()
    );
    let members = &view.step("members").output;
    assert_eq!(
        (
            members["voters"].as_u64(),
            members["learners"].as_u64(),
            members["quorum"].as_u64()
        ),
        (Some(2), Some(0), Some(2))
    );
    let ctl = etcd.ctl_json(&["member", "list"]);
    assert!(
        ctl["members"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["isLearner"] != true),
        "etcdctl sees no learner left: {ctl}"
    );
    assert_eq!(view.step("learner-status").output["is_learner"], false);
}

#[test]
fn safe_restart_plan_runs_end_to_end_with_the_operators_restart() {
    let etcd = Etcd::private();
    etcd.ctl(&["put", "/medic/before", "restart"]);
    let medic = Medic::new();
    let plan = repo_root().join("plans/etcd/safe-restart.yaml");
    let mut running = medic.spawn([
        "run".as_ref(),
        plan.as_os_str(),
        "-p".as_ref(),
        format!("member_a={}", etcd.url).as_ref(),
    ]);
    let run = running.run_id();
    medic.wait_for_run(
        &run,
        Duration::from_secs(60),
        "step `a-restart` waiting for approval",
        |view| (view.step_status("a-restart") == Some("approval")).then_some(()),
        || running.describe(),
    );
    let view = medic.show(&run);
    assert_eq!(
        view.step("snapshot").status,
        "succeeded",
        "{}",
        view.pretty()
    );
    let artifact = medic
        .data_dir()
        .join("artifacts")
        .join(&run)
        .join("etcd-snapshot.db");
    assert!(
        etcd_snapshot_status(&artifact)["totalKey"]
            .as_u64()
            .unwrap()
            >= 1
    );

    // The operator restarts the member and approves while it is still coming back:
    // `a-back` retries until it answers.
    etcd.stop();
    medic
        .run(["approve", &run, "a-restart", "--comment", "restarted etcd"])
        .expect_code(0, || running.describe());
    medic.wait_for_run(
        &run,
        Duration::from_secs(30),
        "`a-back` failing while the member is down",
        |view| (!view.failures("a-back").is_empty()).then_some(()),
        || running.describe(),
    );
    etcd.start_again();
    let out = running.wait(Duration::from_secs(90));
    let view = medic.show(&run);
    out.expect_code(exit::SUCCEEDED, || format!("{}\n{out}", view.pretty()));
    let failed = view.failures("a-back");
    assert!(
        failed.iter().all(|(_, retryable, _)| *retryable),
        "{failed:?}"
    );
    assert!(failed[0].2.contains("is etcd running"), "{failed:?}");
    assert_eq!(view.step("a-back").status, "succeeded");
    assert_eq!(
        view.step("a-quorum").output["is_leader"],
        true,
        "{}",
        view.pretty()
    );
    assert_eq!(view.step("a-defragment").status, "skipped");
    assert_eq!(view.step("b-restart").status, "skipped");
    assert_eq!(
        etcd.ctl(&["get", "--print-value-only", "/medic/before"])
            .trim(),
        "restart"
    );
}

#[test]
fn safe_restart_plan_defragments_without_an_approval() {
    let etcd = Etcd::private();
    let medic = Medic::new();
    let plan = repo_root().join("plans/etcd/safe-restart.yaml");
    let out = medic.run([
        "run".as_ref(),
        plan.as_os_str(),
        "-p".as_ref(),
        format!("member_a={}", etcd.url).as_ref(),
        "-p".as_ref(),
        "mode=defragment".as_ref(),
    ]);
    let view = medic.show(&run_id(&out));
    out.expect_code(exit::SUCCEEDED, || view.pretty());
    assert_eq!(view.step("a-defragment").status, "succeeded");
    assert_eq!(view.step("a-restart").status, "skipped");
    assert_eq!(view.step("members-after").output["voters"], 1);
}

/// With etcd's auth on: refused without a token (a permanent failure that says how to
/// give one), accepted with a token from a granted secret or attached by the host
/// from medic.toml's `[[http.credentials]]`; the token appears in no output.
#[test]
fn auth_tokens_come_from_a_secret_or_the_operators_configuration() {
    let etcd = Etcd::private();
    let token = etcd.enable_auth();
    let medic = Medic::new();
    std::fs::create_dir_all(medic.data_dir().join("secrets")).unwrap();
    std::fs::write(
        medic.data_dir().join("secrets/etcd-token"),
        format!("{token}\n"),
    )
    .unwrap();
    std::fs::write(medic.data_dir().join("secrets/etcd-header"), &token).unwrap();
    std::fs::write(
        medic.data_dir().join("medic.toml"),
        "secrets_dir = \"secrets\"\n",
    )
    .unwrap();

    let (out, view) = run_steps(
        &medic,
        &[&etcd.url],
        json!([step("defrag", "defragment", json!({"endpoint": etcd.url}))]),
    );
    out.expect_code(exit::FAILED, || view.pretty());
    let failed = view.failures("defrag");
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(!failed[0].1, "{failed:?}");
    assert!(
        failed[0].2.contains("user name is empty") && failed[0].2.contains("token_secret"),
        "{failed:?}"
    );

    // A token from a secret the plan grants.
    let plan = json!({
        "apiVersion": "medic/v1",
        "kind": "RecoveryPlan",
        "metadata": {"name": "etcd-auth"},
        "plugins": {"etcd": {"use": "etcd@0.1", "grants": {"http": [etcd.url], "secrets": ["etcd-token"]}}},
        "steps": [
            {"id": "alarms", "uses": "etcd/alarm-list", "with": {"endpoint": etcd.url, "token_secret": "etcd-token"}},
            {"id": "defrag", "needs": ["alarms"], "uses": "etcd/defragment", "with": {"endpoint": etcd.url, "token_secret": "etcd-token"}},
        ],
    });
    let path = medic.write("auth.json", &plan.to_string());
    let out = medic.run(["run".as_ref(), path.as_os_str()]);
    let view = medic.show(&run_id(&out));
    out.expect_code(exit::SUCCEEDED, || view.pretty());
    assert!(!view.json.to_string().contains(&token) && !out.stdout.contains(&token));

    // The same token attached by the host for the origin: the plan grants no secret.
    std::fs::write(
        medic.data_dir().join("medic.toml"),
        format!(
            "secrets_dir = \"secrets\"\n\n[[http.credentials]]\norigin = \"{}\"\nheader = \"Authorization\"\nsecret = \"etcd-header\"\n",
            etcd.url
        ),
    )
    .unwrap();
    let (out, view) = run_steps(
        &medic,
        &[&etcd.url],
        json!([step("defrag", "defragment", json!({"endpoint": etcd.url}))]),
    );
    out.expect_code(exit::SUCCEEDED, || view.pretty());
    assert!(!view.json.to_string().contains(&token));
}

#[test]
fn an_origin_the_plan_does_not_grant_is_refused_by_the_host() {
    let etcd = Etcd::private();
    let medic = Medic::new();
    let (out, view) = run_steps(
        &medic,
        &["http://127.0.0.1:9"],
        json!([step("status", "status", json!({"endpoint": etcd.url}))]),
    );
    out.expect_code(exit::FAILED, || view.pretty());
    let failed = view.failures("status");
    assert_eq!(failed.len(), 1, "{failed:?}");
    let (_, retryable, error) = &failed[0];
    assert!(!retryable, "{failed:?}");
    assert!(
        error.contains("is not granted") && error.contains(&etcd.url),
        "the refusal names the origin: {error}"
    );
}

#[test]
fn an_unreachable_server_is_retried_then_fails_with_a_clear_error() {
    // A port nothing listens on: a stopped private member's.
    let etcd = Etcd::private();
    etcd.stop();
    let medic = Medic::new();
    let mut health = step("health", "health", json!({"endpoint": etcd.url}));
    health["retry"] = json!({"attempts": 3, "backoff": "fixed", "initial": "100ms", "max": "100ms", "jitter": false});
    let (out, view) = run_steps(&medic, &[&etcd.url], json!([health]));
    out.expect_code(exit::FAILED, || view.pretty());
    let failed = view.failures("health");
    assert_eq!(failed.len(), 3, "every attempt was made: {failed:?}");
    for (_, retryable, error) in &failed {
        assert!(retryable, "{failed:?}");
        assert!(
            error.contains(&etcd.url) && error.contains("is etcd running"),
            "names the endpoint and what to check: {error}"
        );
    }
    assert!(out.stdout.contains("is etcd running"), "{out}");
}

#[test]
fn params_the_schema_refuses_are_rejected_before_anything_runs() {
    let medic = Medic::new();
    for (with, field) in [
        (json!({"endpoint": "127.0.0.1:2379"}), "endpoint"),
        (
            json!({"endpoint": "http://127.0.0.1:2379", "alarm": "LOW"}),
            "alarm",
        ),
        (
            json!({"endpoint": "http://127.0.0.1:2379", "alarm": "NOSPACE", "force": true}),
            "force",
        ),
    ] {
        let plan = json!({
            "apiVersion": "medic/v1",
            "kind": "RecoveryPlan",
            "metadata": {"name": "etcd-bad"},
            "plugins": {"etcd": {"use": "etcd@0.1", "grants": {"http": ["http://127.0.0.1:2379"]}}},
            "steps": [{"id": "disarm", "uses": "etcd/alarm-disarm", "with": with}],
        });
        let path = medic.write("bad.json", &plan.to_string());
        let out = medic.run(["run".as_ref(), path.as_os_str()]);
        out.expect_code(exit::INVALID, String::new);
        assert!(
            out.stderr.contains(field) || out.stdout.contains(field),
            "the diagnostic names `{field}`\n{out}"
        );
        assert!(!medic.data_dir().join("artifacts").exists());
    }
    let out = medic.run([
        "validate".as_ref(),
        repo_root().join("plans/etcd/safe-restart.yaml").as_os_str(),
        "-p".as_ref(),
        "member_a=127.0.0.1:2379".as_ref(),
    ]);
    out.expect_code(exit::INVALID, String::new);
    assert!(
        out.stderr.contains("member_a") || out.stdout.contains("member_a"),
        "{out}"
    );
}

/// The weekly maintenance plan (plans/maintenance/etcd-defrag-weekly.yaml) registered
/// with `medic serve` creates the schedule its metadata declares, and a run of it by
/// name against a real member takes a snapshot etcdctl reads, defragments, and finds
/// the member healthy with a leader afterwards.
#[test]
fn the_weekly_defrag_maintenance_plan_schedules_itself_and_runs_against_a_real_member() {
    let etcd = Etcd::private();
    etcd.put("maintenance/key", b"value");
    let medic = Medic::new();
    let server = Server::admin(&medic);
    let text =
        std::fs::read_to_string(repo_root().join("plans/maintenance/etcd-defrag-weekly.yaml"))
            .expect("the maintenance plan");
    let (status, _, body) = server.post("/v1/plans", &[], &json!({ "plan": text }));
    assert_eq!(status, 201, "{body}");

    let (status, schedule) = server.get_json("/v1/schedules/etcd-defrag-weekly");
    assert_eq!(status, 200, "{schedule}");
    assert_eq!(
        schedule["declared_by"],
        json!("etcd-defrag-weekly"),
        "{schedule}"
    );
    assert_eq!(
        schedule["spec"]["plan"],
        json!("etcd-defrag-weekly@1"),
        "{schedule}"
    );
    assert!(
        !schedule["next"].as_array().unwrap().is_empty(),
        "a weekly due time is coming: {schedule}"
    );

    let (status, _, created) = server.post(
        "/v1/runs",
        &[],
        &json!({ "plan_name": "etcd-defrag-weekly", "params": { "endpoint": etcd.url } }),
    );
    assert_eq!(status, 201, "{created}");
    let run = created["id"].as_str().expect("run id").to_string();
    let view = server.wait_run(&run, "the run to end", |v| {
        let s = v["run"]["status"].as_str()?;
        matches!(s, "succeeded" | "failed").then(|| v.clone())
    });
    assert_eq!(
        view["run"]["status"],
        "succeeded",
        "{}",
        server.describe(&run)
    );
    let snapshot = medic
        .data_dir()
        .join("artifacts")
        .join(&run)
        .join("etcd-before-defrag.db");
    let read = etcd_snapshot_status(&snapshot);
    assert!(read["totalKey"].as_u64().unwrap_or(0) >= 1, "{read}");
    let steps = view["steps"].as_array().unwrap();
    assert!(steps.iter().all(|s| s["status"] == "succeeded"), "{view}");
}
