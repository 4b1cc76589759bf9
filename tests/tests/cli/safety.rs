//! Safety rails (issue 12) through the real `medic serve`, the probe plugin and the
//! counter target: exclusive target locks (wait and refuse), released after cancel
//! and after rollback, lock state across a SIGKILL of the server, the circuit
//! breaker (trip, refusal, reset), break-glass calls audited with actor and reason.

use medic_tests::{CounterTarget, Medic, Server, plan};
use serde_json::{Value, json};

fn body(target: &CounterTarget, cluster: &str, extra: Value) -> Value {
    let text = std::fs::read_to_string(plan("locked.yaml")).expect("test plan");
    let mut params = json!({ "target": target.address(), "cluster": cluster });
    if let Some(extra) = extra.as_object() {
        for (k, v) in extra {
            params[k] = v.clone();
        }
    }
    json!({ "plan": text, "params": params })
}

fn refusing(target: &CounterTarget, cluster: &str) -> Value {
    let mut b = body(target, cluster, json!({}));
    let text = b["plan"]
        .as_str()
        .unwrap()
        .replace("on_lock_busy: wait", "on_lock_busy: refuse");
    b["plan"] = json!(text);
    b
}

fn submit(server: &Server, body: &Value) -> String {
    let (status, _, created) = server.post("/v1/runs", &[], body);
    assert_eq!(status, 201, "{created}");
    created["id"].as_str().expect("run id").to_owned()
}

fn approve(server: &Server, run: &str) {
    let (status, _, body) = server.post(
        &format!("/v1/runs/{run}/steps/gate/approve"),
        &[],
        &json!({}),
    );
    assert_eq!(status, 202, "{body}");
}

/// (run, state) of each lock named `name`, holders first.
fn locks(server: &Server, name: &str) -> Vec<(String, String)> {
    let (status, body) = server.get_json("/v1/locks");
    assert_eq!(status, 200, "{body}");
    body["locks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["name"] == name)
        .map(|l| {
            (
                l["run_id"].as_str().unwrap().to_owned(),
                l["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn waiting_on(server: &Server, run: &str, holder: &str) -> Value {
    let view = server.wait_status(run, "waiting");
    let reason = view["run"]["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("lock `db/orders` (exclusive) is held by run") && reason.contains(holder),
        "the run view says which lock and who holds it: {view}"
    );
    assert!(
        view["steps"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["status"] == "pending"),
        "nothing of a waiting run started: {view}"
    );
    view
}

fn held(run: &str) -> (String, String) {
    (run.to_owned(), "held".to_owned())
}

fn waiting(run: &str) -> (String, String) {
    (run.to_owned(), "waiting".to_owned())
}

#[test]
fn a_second_run_on_an_exclusive_lock_waits_then_runs_and_another_target_is_not_blocked() {
    let medic = Medic::new();
    let target = CounterTarget::start();
    let server = Server::admin(&medic);
    let a = submit(&server, &body(&target, "orders", json!({})));
    server.wait_step(&a, "gate", "approval");
    let b = submit(&server, &body(&target, "orders", json!({})));
    waiting_on(&server, &b, &a);
    // Another cluster is another lock: it runs at once.
    let c = submit(&server, &body(&target, "billing", json!({"gate": false})));
    server.wait_status(&c, "succeeded");
    assert_eq!(locks(&server, "db/orders"), [held(&a), waiting(&b)]);
    assert_eq!(
        target.value("orders"),
        1,
        "only the holder acted on db/orders"
    );

    approve(&server, &a);
    server.wait_status(&a, "succeeded");
    server.wait_step(&b, "gate", "approval");
    assert_eq!(locks(&server, "db/orders"), [held(&b)]);
    assert_eq!(target.value("orders"), 2);
    approve(&server, &b);
    server.wait_status(&b, "succeeded");
    assert_eq!(locks(&server, "db/orders"), []);
    let events = server.events(&b, None);
    let statuses: Vec<&str> = events
        .iter()
        .filter(|e| e.1 == "run_status")
        .filter_map(|e| e.2["data"]["status"].as_str())
        .collect();
    assert_eq!(statuses, ["waiting", "running", "succeeded"], "{events:?}");
}

#[test]
fn refuse_turns_a_busy_lock_into_a_409_and_creates_no_run() {
    let medic = Medic::new();
    let target = CounterTarget::start();
    let server = Server::admin(&medic);
    let a = submit(&server, &refusing(&target, "orders"));
    server.wait_step(&a, "gate", "approval");
    let (status, ctype, problem) = server.post("/v1/runs", &[], &refusing(&target, "orders"));
    assert_eq!(
        (status, ctype.as_str()),
        (409, "application/problem+json"),
        "{problem}"
    );
    let detail = problem["detail"].as_str().unwrap();
    assert!(
        detail.contains("lock `db/orders` (exclusive) is held by run")
            && detail.contains(&a)
            && detail.contains("on_lock_busy: refuse"),
        "{problem}"
    );
    assert_eq!(server.runs().len(), 1, "the refused submission left no run");
    approve(&server, &a);
    server.wait_status(&a, "succeeded");
    // Free again: the same submission is accepted.
    let b = submit(&server, &refusing(&target, "orders"));
    server.wait_step(&b, "gate", "approval");
}

#[test]
fn locks_are_released_after_cancel_and_after_rollback_and_a_waiting_run_can_be_cancelled() {
    let medic = Medic::new();
    let target = CounterTarget::start();
    let server = Server::admin(&medic);
    // Cancel of the holder: its bump is undone and the lock goes to the waiter.
    let a = submit(&server, &body(&target, "orders", json!({})));
    server.wait_step(&a, "gate", "approval");
    let b = submit(&server, &body(&target, "orders", json!({"fail": true})));
    waiting_on(&server, &b, &a);
    let (status, _, r) = server.post(&format!("/v1/runs/{a}/cancel"), &[], &json!({}));
    assert_eq!(status, 202, "{r}");
    server.wait_status(&a, "cancelled");
    server.wait_step(&b, "gate", "approval");
    assert_eq!(locks(&server, "db/orders"), [held(&b)]);

    // Rollback of the holder (its last step fails): released, the next waiter runs.
    let c = submit(&server, &body(&target, "orders", json!({"gate": false})));
    waiting_on(&server, &c, &b);
    approve(&server, &b);
    server.wait_status(&b, "rolled_back");
    server.wait_status(&c, "succeeded");
    assert_eq!(target.value("orders"), 1, "a and b undone, c applied");

    // A run cancelled while it waits: nothing ran, its request is gone.
    let d = submit(&server, &body(&target, "orders", json!({})));
    server.wait_step(&d, "gate", "approval");
    let e = submit(&server, &body(&target, "orders", json!({})));
    waiting_on(&server, &e, &d);
    let (status, _, r) = server.post(&format!("/v1/runs/{e}/cancel"), &[], &json!({}));
    assert_eq!(status, 202, "{r}");
    let view = server.wait_status(&e, "cancelled");
    assert!(view["attempts"].as_array().unwrap().is_empty(), "{view}");
    assert!(
        view["steps"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["status"] == "not_run"),
        "{view}"
    );
    assert_eq!(locks(&server, "db/orders"), [held(&d)]);
}

#[test]
fn lock_state_survives_a_sigkill_of_the_server_without_leak_or_deadlock() {
    let medic = Medic::new();
    let target = CounterTarget::start();
    let token = medic.create_token("ops", "admin");
    let server = Server::start(&medic, Some(&token), &[]);
    let a = submit(&server, &body(&target, "orders", json!({})));
    server.wait_step(&a, "gate", "approval");
    let b = submit(&server, &body(&target, "orders", json!({})));
    waiting_on(&server, &b, &a);
    let Server { running, .. } = server;
    let killed = running.kill();
    assert_eq!(killed.code, 128 + 9, "{killed}");

    let server = Server::start(&medic, Some(&token), &[]);
    assert_eq!(
        locks(&server, "db/orders"),
        [held(&a), waiting(&b)],
        "the same holder and waiter after restart"
    );
    waiting_on(&server, &b, &a);
    approve(&server, &a);
    server.wait_status(&a, "succeeded");
    server.wait_step(&b, "gate", "approval");
    approve(&server, &b);
    server.wait_status(&b, "succeeded");
    assert_eq!(locks(&server, "db/orders"), []);
    assert_eq!(target.value("orders"), 2);
    target.assert_each_key_applied_once();
}

#[test]
fn the_breaker_trips_after_two_failures_refuses_runs_and_an_audited_admin_reset_closes_it() {
    let medic = Medic::new();
    let target = CounterTarget::start();
    let admin = medic.create_token("alice-admin", "admin");
    let operator = medic.create_token("bob-ops", "operator");
    let server = Server::start(&medic, Some(&admin), &[]);
    for cluster in ["c1", "c2"] {
        let run = submit(
            &server,
            &body(&target, cluster, json!({"gate": false, "fail": true})),
        );
        server.wait_status(&run, "rolled_back");
    }
    let (status, _, problem) = server.post(
        "/v1/runs",
        &[],
        &body(&target, "c3", json!({"gate": false})),
    );
    assert_eq!(status, 409, "{problem}");
    let detail = problem["detail"].as_str().unwrap();
    assert!(
        detail.contains("circuit breaker of plan `test-locked` is open")
            && detail.contains("2 runs of it failed")
            && detail.contains("medic breaker reset test-locked"),
        "names the breaker, the failures and how to reset: {problem}"
    );
    assert_eq!(server.runs().len(), 2, "no run was created");
    let (_, list) = server.get_json("/v1/breakers");
    assert_eq!(list["breakers"][0]["state"], "open", "{list}");

    // Reset: admin only, and only with a reason.
    let op = server.client(Some(&operator));
    let reply = op.call(
        "POST",
        "/v1/breakers/test-locked/reset",
        Some(&json!({"reason": "x"})),
    );
    assert_eq!(reply.status, 403, "{:?}", reply.body);
    let reply = server.call(
        "POST",
        "/v1/breakers/test-locked/reset",
        Some(&json!({"reason": "  "})),
    );
    assert_eq!(reply.status, 400, "{:?}", reply.body);
    let out = medic.remote(
        server.url(),
        [
            "--token",
            &admin,
            "breaker",
            "reset",
            "test-locked",
            "--reason",
            "INC-7: replica disk replaced",
        ],
    );
    out.expect_code(0, || out.to_string());
    let (_, list) = server.get_json("/v1/breakers");
    assert_eq!(list["breakers"][0]["state"], "closed", "{list}");
    assert_eq!(list["breakers"][0]["reset_by"], "alice-admin", "{list}");

    let (_, audit) = server.get_json("/v1/audit");
    let entry = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["path"] == "/v1/breakers/test-locked/reset" && e["status"] == 200)
        .unwrap_or_else(|| panic!("the reset is audited: {audit}"));
    assert_eq!(
        (&entry["token"], &entry["role"], &entry["reason"]),
        (
            &json!("alice-admin"),
            &json!("admin"),
            &json!("INC-7: replica disk replaced")
        ),
        "{entry}"
    );
    let run = submit(&server, &body(&target, "c3", json!({"gate": false})));
    server.wait_status(&run, "succeeded");
}

#[test]
fn an_admin_force_releases_a_lock_with_an_audited_reason_and_the_waiter_starts() {
    let medic = Medic::new();
    let target = CounterTarget::start();
    let admin = medic.create_token("carol-admin", "admin");
    let operator = medic.create_token("dave-ops", "operator");
    let server = Server::start(&medic, Some(&admin), &[]);
    let a = submit(&server, &body(&target, "orders", json!({})));
    server.wait_step(&a, "gate", "approval");
    let b = submit(&server, &body(&target, "orders", json!({"gate": false})));
    waiting_on(&server, &b, &a);

    let release = |reason: &str| json!({"name": "db/orders", "reason": reason});
    let reply =
        server
            .client(Some(&operator))
            .call("POST", "/v1/locks/release", Some(&release("x")));
    assert_eq!(reply.status, 403, "{:?}", reply.body);
    let reply = server.call("POST", "/v1/locks/release", Some(&release("")));
    assert_eq!(reply.status, 400, "{:?}", reply.body);
    assert!(
        reply.body["detail"].as_str().unwrap().contains("reason"),
        "{:?}",
        reply.body
    );
    let reply = server.call(
        "POST",
        "/v1/locks/release",
        Some(&release("run a is stuck, INC-9")),
    );
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert_eq!(reply.body["released_from"], json!([a]));
    server.wait_status(&b, "succeeded");

    let (_, audit) = server.get_json("/v1/audit");
    let entries = audit["entries"].as_array().unwrap();
    let ok = entries
        .iter()
        .find(|e| e["path"] == "/v1/locks/release" && e["status"] == 200)
        .unwrap_or_else(|| panic!("audited: {audit}"));
    assert_eq!(
        (&ok["token"], &ok["reason"]),
        (&json!("carol-admin"), &json!("run a is stuck, INC-9"))
    );
    assert!(
        entries.iter().any(|e| e["path"] == "/v1/locks/release"
            && e["status"] == 403
            && e["token"] == "dave-ops"),
        "the refused attempt is audited too: {audit}"
    );
}

/// `medic run --dry-run` of the shipped plans/mysql/safe-restart.yaml against a real
/// MariaDB pair: the steps are printed in order with their resolved params and what
/// the mysql plugin's plan mode found on the servers, and the servers show that
/// nothing changed (replication threads, read_only, rows, the primary's binlog
/// position) and no run was recorded.
#[test]
fn a_dry_run_on_a_real_mariadb_pair_lists_the_steps_in_order_and_changes_nothing() {
    use medic_tests::{ADMIN_PASSWORD, ADMIN_USER, MariaDbPair, repo_root};

    let pair = MariaDbPair::start();
    let medic = Medic::new();
    let secrets = medic.data_dir().join("secrets");
    std::fs::create_dir_all(&secrets).unwrap();
    std::fs::write(secrets.join("mysql-medic"), format!("{ADMIN_PASSWORD}\n")).unwrap();
    let mut toml = String::from("secrets_dir = \"secrets\"\n");
    for (name, db) in [("primary", &pair.primary), ("replica", &pair.replica)] {
        toml.push_str(&format!(
            "\n[sql.{name}]\naddress = \"{}\"\nuser = \"{ADMIN_USER}\"\npassword_secret = \"mysql-medic\"\n",
            db.address()
        ));
    }
    std::fs::write(medic.data_dir().join("medic.toml"), toml).unwrap();
    pair.primary.sql(
        "CREATE DATABASE IF NOT EXISTS app; CREATE TABLE app.dry (id INT PRIMARY KEY); \
         INSERT INTO app.dry VALUES (1), (2), (3)",
    );
    let state = || {
        (
            pair.replica.slave_status("Slave_IO_Running"),
            pair.replica.slave_status("Slave_SQL_Running"),
            pair.primary
                .sql("SELECT @@global.read_only")
                .trim()
                .to_owned(),
            pair.replica
                .sql("SELECT @@global.read_only")
                .trim()
                .to_owned(),
            pair.primary
                .sql("SELECT @@global.gtid_binlog_pos")
                .trim()
                .to_owned(),
            pair.primary
                .sql("SELECT COUNT(*) FROM app.dry")
                .trim()
                .to_owned(),
        )
    };
    // Let the replica apply the table first, so both threads are settled.
    let pos = pair
        .primary
        .sql("SELECT @@global.gtid_binlog_pos")
        .trim()
        .to_owned();
    assert_eq!(
        pair.replica
            .sql(&format!("SELECT MASTER_GTID_WAIT('{pos}', 20)"))
            .trim(),
        "0"
    );
    let before = state();
    assert_eq!(
        (before.0.as_deref(), before.1.as_deref(), before.2.as_str()),
        (Some("Yes"), Some("Yes"), "0"),
        "a healthy pair to start from"
    );

    let plan = repo_root().join("plans/mysql/safe-restart.yaml");
    let out = medic.run(["run", plan.to_str().unwrap(), "--dry-run"]);
    out.expect_code(0, || out.to_string());
    let text = out.stdout.clone();
    // Steps in the plan's order, with resolved params and what would be done.
    let order: Vec<usize> = [
        "primary-status mysql/status (read-only)",
        "a-stop mysql/stop-replica (idempotent)",
        "a-restart",
        "a-start mysql/start-replica",
        "pause-writes mysql/set-read-only (idempotent)",
        "resume-writes mysql/set-read-only",
    ]
    .iter()
    .map(|s| {
        text.find(s)
            .unwrap_or_else(|| panic!("`{s}` missing from the dry run:\n{text}"))
    })
    .collect();
    assert!(
        order.windows(2).all(|w| w[0] < w[1]),
        "steps out of order:\n{text}"
    );
    for expected in [
        r#"with: {"server":"replica"#,
        "would: STOP SLAVE on `replica` (now IO thread Yes, SQL thread running",
        "check ok: is a replica",
        "would: SET GLOBAL read_only = ON on `primary` (now OFF",
        "would: nothing: read_only is already OFF on `primary`",
        "check ok: connection: `primary` answers (mariadb",
        "would: wait for an approval",
        "dry run ok",
    ] {
        assert!(
            text.contains(expected),
            "`{expected}` missing from the dry run:\n{text}"
        );
    }

    // Checked on the servers: nothing changed.
    assert_eq!(state(), before, "the dry run changed the servers:\n{text}");
    let runs = medic.run(["runs", "list", "--json"]);
    runs.expect_code(0, || runs.to_string());
    assert!(
        !runs.stdout.contains("mysql-safe-restart"),
        "a dry run records no run: {runs}"
    );
}

/// `POST /v1/runs?dry_run=true`: the report of what would be done, with resolved
/// params and locks, and nothing stored or applied (the counter target saw nothing,
/// no run, no lock).
#[test]
fn a_dry_run_over_the_api_answers_the_plan_and_stores_nothing() {
    let medic = Medic::new();
    let target = CounterTarget::start();
    let server = Server::admin(&medic);
    let (status, _, report) = server.post(
        "/v1/runs?dry_run=true",
        &[],
        &body(&target, "orders", json!({})),
    );
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["dry_run"], true);
    assert_eq!(
        report["locks"],
        json!([{"name": "db/orders", "mode": "exclusive"}])
    );
    let steps: Vec<(&str, &str)> = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["id"].as_str().unwrap(), s["kind"].as_str().unwrap()))
        .collect();
    assert_eq!(
        steps,
        [
            ("bump", "action"),
            ("gate", "approval"),
            ("finish", "action")
        ],
        "{report}"
    );
    assert_eq!(
        report["steps"][0]["params"]["counter"], "orders",
        "templates resolved: {report}"
    );
    assert_eq!(report["steps"][0]["effect"], "mutating");
    assert_eq!(
        report["steps"][0]["checked"], false,
        "probe has no plan mode, and says so: {report}"
    );
    assert!(server.runs().is_empty(), "no run stored");
    assert_eq!(locks(&server, "db/orders"), []);
    assert!(
        target.applied().is_empty(),
        "nothing applied: {:?}",
        target.applied()
    );

    // The CLI over --server prints the same report.
    let token = medic.create_token("cli", "operator");
    let out = medic.remote(
        server.url(),
        [
            "--token",
            &token,
            "run",
            plan("locked.yaml").to_str().unwrap(),
            "-p",
            &format!("target={}", target.address()),
            "-p",
            "cluster=orders",
            "--dry-run",
        ],
    );
    out.expect_code(0, || out.to_string());
    for expected in [
        "dry run of plan `test-locked`",
        "locks: db/orders (exclusive)",
        "1. bump probe/counter-add (mutating)",
        "2. gate",
        "3. finish probe/counter-add (mutating)",
        "note: 2 step(s) could not be checked",
    ] {
        assert!(out.stdout.contains(expected), "`{expected}` missing: {out}");
    }
    assert!(server.runs().is_empty() && target.applied().is_empty());
}

/// A scheduled fire the rails refuse (its lock is busy under `refuse`) is recorded
/// as a skipped due time (`refused`), once, and creates no run, instead of being
/// tried again every second.
#[test]
fn a_scheduled_fire_refused_by_a_busy_lock_is_skipped_once_and_recorded() {
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    let medic = Medic::new();
    let target = CounterTarget::start();
    let server = Server::admin(&medic);
    let text = refusing(&target, "orders")["plan"].clone();
    let (status, _, body) = server.post("/v1/plans", &[], &json!({ "plan": text }));
    assert_eq!(status, 201, "{body}");
    let holder = submit(&server, &refusing(&target, "orders"));
    server.wait_step(&holder, "gate", "approval");

    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let due = (now / 1000 + 3) * 1000;
    let t = due / 1000;
    let cron = format!("{} {} {} * * *", t % 60, (t / 60) % 60, (t / 3600) % 24);
    let (status, _, body) = server.post(
        "/v1/schedules",
        &[],
        &json!({
            "name": "locked-nightly",
            "plan": "test-locked@1",
            "params": { "target": target.address(), "cluster": "orders" },
            "cron": cron,
        }),
    );
    assert_eq!(status, 201, "{body}");
    let history = || {
        let (_, body) = server.get_json("/v1/schedules/locked-nightly");
        body["history"].as_array().cloned().unwrap_or_default()
    };
    let row = medic_tests::poll_until(
        Duration::from_secs(15),
        "the due time is handled",
        || history().into_iter().find(|h| h["due_at"] == json!(due)),
        || format!("{:?}", history()),
    );
    assert_eq!(row["outcome"], "refused", "{row}");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(history().len(), 1, "handled once: {:?}", history());
    assert_eq!(server.runs().len(), 1, "only the holder's run exists");
}

/// The operator's global cap (medic.toml `[safety] concurrent_targets = 1`): a run on
/// another target waits while one target is held, with the cap named, and starts
/// when the holder ends. A cap of 0 is refused at start-up with the field named.
#[test]
fn a_global_concurrent_targets_cap_from_medic_toml_makes_another_target_wait() {
    let medic = Medic::new();
    let target = CounterTarget::start();
    std::fs::write(
        medic.data_dir().join("medic.toml"),
        "[safety]\nconcurrent_targets = 0\n",
    )
    .unwrap();
    let bad = medic.run(["validate", plan("locked.yaml").to_str().unwrap()]);
    assert!(
        bad.code != 0 && bad.stderr.contains("[safety] concurrent_targets = 0"),
        "{bad}"
    );
    std::fs::write(
        medic.data_dir().join("medic.toml"),
        "[safety]\nconcurrent_targets = 1\n",
    )
    .unwrap();
    let server = Server::admin(&medic);
    let a = submit(&server, &body(&target, "orders", json!({})));
    server.wait_step(&a, "gate", "approval");
    let b = submit(&server, &body(&target, "billing", json!({"gate": false})));
    let view = server.wait_status(&b, "waiting");
    let reason = view["run"]["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("medic.toml [safety] concurrent_targets is 1")
            && reason.contains("db/orders"),
        "{view}"
    );
    assert_eq!(target.value("billing"), 0);
    approve(&server, &a);
    server.wait_status(&b, "succeeded");
    assert_eq!(target.value("billing"), 1);
}

/// The same break-glass release from medic's host, without a server in between
/// (`medic locks release` on the database the server uses): audited as `local:USER`
/// with the reason; a reason is mandatory and a lock nobody holds is an error.
#[test]
fn the_local_cli_lists_and_force_releases_a_lock_and_the_audit_log_keeps_the_reason() {
    let medic = Medic::new();
    let target = CounterTarget::start();
    let server = Server::admin(&medic);
    let a = submit(&server, &body(&target, "orders", json!({})));
    server.wait_step(&a, "gate", "approval");
    let b = submit(&server, &body(&target, "orders", json!({"gate": false})));
    waiting_on(&server, &b, &a);

    let list = medic.run(["locks", "list"]);
    list.expect_code(0, || list.to_string());
    assert!(
        list.stdout.contains("db/orders")
            && list.stdout.contains(&a)
            && list.stdout.contains("waiting"),
        "{list}"
    );
    let no_reason = medic.run(["locks", "release", "db/orders", "--reason", " "]);
    assert!(
        no_reason.code != 0 && no_reason.stderr.contains("--reason must say why"),
        "{no_reason}"
    );
    let nobody = medic.run(["locks", "release", "db/none", "--reason", "x"]);
    assert!(
        nobody.code != 0 && nobody.stderr.contains("nobody holds lock `db/none`"),
        "{nobody}"
    );
    let out = medic
        .command([
            "locks",
            "release",
            "db/orders",
            "--reason",
            "INC-11 holder wedged",
        ])
        .env("USER", "erin")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    server.wait_status(&b, "succeeded");

    let (_, audit) = server.get_json("/v1/audit");
    let entry = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["method"] == "CLI")
        .unwrap_or_else(|| panic!("the local release is audited: {audit}"));
    assert_eq!(
        (&entry["token"], &entry["path"], &entry["reason"]),
        (
            &json!("local:erin"),
            &json!("medic locks release db/orders"),
            &json!("INC-11 holder wedged")
        ),
        "{entry}"
    );
}
