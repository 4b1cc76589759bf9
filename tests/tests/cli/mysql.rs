//! The mysql plugin and plans/mysql against a real GTID-replicated MariaDB pair
//! (tests/scripts/mariadb-pair.sh, one private pair per test): replication broken for
//! real, the real `medic` binary running the shipped plans, and every verdict read
//! from the servers themselves (threads, CHECKSUM TABLE, read_only, a fresh write
//! arriving), not from medic's report. Plus bad input: each a clear step error with
//! nothing left read-only.

use std::time::{Duration, Instant};

use medic_tests::{
    ADMIN_PASSWORD, ADMIN_USER, APP_PASSWORD, APP_USER, MariaDb, MariaDbPair, Medic, REPL_PASSWORD,
    REPL_USER, RunView, Running, Scrape, Server, TEST_PASSWORD, TEST_USER, repo_root,
    sequential_plan,
};
use serde_json::{Value, json};

use crate::exit;

/// One test's pair and medic, with a `medic.toml` naming `primary` and `replica`.
struct Group {
    pair: MariaDbPair,
    medic: Medic,
}

impl Group {
    fn start() -> Group {
        Group::with_admin_password(ADMIN_PASSWORD)
    }

    /// `password` is what medic's secret holds for the `medic` user.
    fn with_admin_password(password: &str) -> Group {
        let pair = MariaDbPair::start();
        let medic = Medic::new();
        let secrets = medic.data_dir().join("secrets");
        std::fs::create_dir_all(&secrets).unwrap();
        std::fs::write(secrets.join("mysql-medic"), format!("{password}\n")).unwrap();
        std::fs::write(
            secrets.join("mysql-repl-password"),
            format!("{REPL_PASSWORD}\n"),
        )
        .unwrap();
        let mut toml = String::from("secrets_dir = \"secrets\"\n");
        for (name, db) in [("primary", &pair.primary), ("replica", &pair.replica)] {
            toml.push_str(&connection(name, &db.address()));
        }
        // Nothing listens here: the script's ports are random, this one is taken
        // and closed by the test itself.
        toml.push_str(&connection("nowhere", &closed_address()));
        std::fs::write(medic.data_dir().join("medic.toml"), toml).unwrap();
        let group = Group { pair, medic };
        group.seed();
        group
    }

    /// A table of 200 rows written by the application user, replicated.
    fn seed(&self) {
        self.app(
            &self.pair.primary,
            "CREATE TABLE app.items (id INT PRIMARY KEY, v VARCHAR(40) NOT NULL); \
             CREATE TABLE app.notes (id INT PRIMARY KEY, body TEXT)",
        )
        .unwrap();
        let values: Vec<String> = (1..=200).map(|i| format!("({i}, 'item {i}')")).collect();
        self.app(
            &self.pair.primary,
            &format!("INSERT INTO app.items VALUES {}", values.join(", ")),
        )
        .unwrap();
        self.app(
            &self.pair.primary,
            "INSERT INTO app.notes VALUES (1, 'hello'), (2, NULL)",
        )
        .unwrap();
        self.caught_up();
    }

    fn app(&self, db: &MariaDb, statements: &str) -> Result<String, String> {
        db.sql_as(APP_USER, APP_PASSWORD, statements)
    }

    /// Waits (up to 20 s) until the replica has applied the primary's binlog.
    fn caught_up(&self) {
        let target = self
            .pair
            .primary
            .sql("SELECT @@global.gtid_binlog_pos")
            .trim()
            .to_string();
        let reached = self
            .pair
            .replica
            .sql(&format!("SELECT MASTER_GTID_WAIT('{target}', 20)"));
        assert_eq!(
            reached.trim(),
            "0",
            "the replica did not reach {target}\n{}",
            self.pair.replica.sql("SHOW SLAVE STATUS\\G")
        );
    }

    /// Breaks replication for real: the replica's SQL thread stopped, a row written
    /// on the replica directly (root is not stopped by read_only), the same key
    /// written on the primary, a table dropped on the replica; replication started
    /// again stops on the duplicate key.
    fn break_replica(&self) {
        let replica = &self.pair.replica;
        replica.sql("STOP SLAVE SQL_THREAD");
        replica.sql(
            "INSERT INTO app.items VALUES (1000, 'drifted on the replica'); \
             UPDATE app.items SET v = 'drifted' WHERE id = 7; DROP TABLE app.notes",
        );
        self.app(
            &self.pair.primary,
            "INSERT INTO app.items VALUES (1000, 'written on the primary')",
        )
        .unwrap();
        replica.sql("START SLAVE SQL_THREAD");
        let deadline = Instant::now() + Duration::from_secs(20);
        while replica.slave_status("Slave_SQL_Running").as_deref() != Some("No") {
            assert!(
                Instant::now() < deadline,
                "the replica's SQL thread did not stop on the conflict\n{}",
                replica.sql("SHOW SLAVE STATUS\\G")
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        assert_ne!(self.checksums(&self.pair.primary), self.checksums(replica));
    }

    /// `CHECKSUM TABLE` of the app tables (missing tables show as NULL).
    fn checksums(&self, db: &MariaDb) -> String {
        db.sql("CHECKSUM TABLE app.items, app.notes")
    }

    fn variable(&self, db: &MariaDb, name: &str) -> String {
        db.sql(&format!("SELECT @@global.{name}"))
            .trim()
            .to_string()
    }

    /// The end state of a successful resync, asserted on the servers.
    fn assert_resynced(&self, ctx: &dyn Fn() -> String) {
        let (primary, replica) = (&self.pair.primary, &self.pair.replica);
        assert_eq!(
            replica.slave_status("Slave_IO_Running").as_deref(),
            Some("Yes"),
            "{}",
            ctx()
        );
        assert_eq!(
            replica.slave_status("Slave_SQL_Running").as_deref(),
            Some("Yes"),
            "{}\n{}",
            replica.sql("SHOW SLAVE STATUS\\G"),
            ctx()
        );
        assert_eq!(
            self.checksums(primary),
            self.checksums(replica),
            "checksums differ\n{}",
            ctx()
        );
        assert_eq!(
            replica.sql("SELECT v FROM app.items WHERE id IN (7, 1000) ORDER BY id"),
            "item 7\nwritten on the primary\n",
            "the replica's drift is gone\n{}",
            ctx()
        );
        assert_eq!(self.variable(primary, "read_only"), "0", "{}", ctx());
        assert_eq!(
            self.variable(replica, "read_only"),
            "1",
            "the rebuilt replica is read-only\n{}",
            ctx()
        );
        // Writes resumed, and a new one arrives on the replica.
        self.app(
            primary,
            "INSERT INTO app.items VALUES (5000, 'after the resync')",
        )
        .unwrap_or_else(|e| panic!("the application cannot write: {e}\n{}", ctx()));
        self.caught_up();
        assert_eq!(
            replica.sql("SELECT v FROM app.items WHERE id = 5000"),
            "after the resync\n",
            "{}",
            ctx()
        );
        assert_eq!(
            self.checksums(primary),
            self.checksums(replica),
            "{}",
            ctx()
        );
    }

    /// `medic run` of a shipped plan under plans/mysql, in the background.
    fn spawn_plan(&self, plan: &str, params: &[String]) -> Running {
        let path = repo_root().join("plans/mysql").join(plan);
        let mut args = vec!["run".to_string(), path.display().to_string()];
        for p in params {
            args.push("-p".into());
            args.push(p.clone());
        }
        self.medic.spawn(args)
    }

    fn resync_params(&self) -> Vec<String> {
        vec![
            "primary_host=127.0.0.1".into(),
            format!("primary_port={}", self.pair.primary.port),
            format!("repl_user={REPL_USER}"),
            r#"databases=["app"]"#.into(),
            "catch_up_timeout_s=20".into(),
        ]
    }

    /// Waits until `step` waits for approval, then approves it.
    fn approve(&self, running: &Running, run: &str, step: &str) {
        self.medic.wait_for_run(
            run,
            Duration::from_secs(30),
            &format!("step `{step}` waiting for approval"),
            |view| (view.step_status(step) == Some("approval")).then_some(()),
            || running.describe(),
        );
        self.medic
            .run(["approve", run, step])
            .expect_code(0, || running.describe());
    }

    /// Runs a plan of mysql steps (one after the other) written by the test.
    fn run_steps(&self, steps: Value) -> (medic_tests::Finished, RunView) {
        let plan = sequential_plan(
            "mysql-test",
            json!({"mysql": {"use": "mysql@0.1", "grants": {
                "sql": ["primary", "replica", "nowhere"],
                "secrets": ["mysql-repl-password"],
            }}}),
            steps,
        );
        let path = self
            .medic
            .write("plan.json", &serde_json::to_string_pretty(&plan).unwrap());
        self.run_file(&path, &[])
    }

    /// `medic run PATH -p P...` to its end: the output and the run's view.
    fn run_file(
        &self,
        path: &std::path::Path,
        params: &[&str],
    ) -> (medic_tests::Finished, RunView) {
        let mut args = vec!["run".to_string(), path.display().to_string()];
        for p in params {
            args.extend(["-p".to_string(), p.to_string()]);
        }
        let out = self.medic.run_with_timeout(args, Duration::from_secs(60));
        let run = out
            .stdout
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("run "))
            .and_then(|l| l.split_whitespace().next())
            .unwrap_or_else(|| panic!("no `run ID started` line\n{out}"))
            .to_string();
        let view = self.medic.show(&run);
        (out, view)
    }

    fn assert_nothing_read_only(&self, ctx: &dyn Fn() -> String) {
        assert_eq!(
            self.variable(&self.pair.primary, "read_only"),
            "0",
            "the primary was left read-only\n{}",
            ctx()
        );
        self.app(
            &self.pair.primary,
            "INSERT INTO app.items VALUES (7777, 'still writable')",
        )
        .unwrap_or_else(|e| panic!("the application cannot write: {e}\n{}", ctx()));
    }
}

fn connection(name: &str, address: &str) -> String {
    format!(
        "\n[sql.{name}]\naddress = \"{address}\"\nuser = \"{ADMIN_USER}\"\n\
         password_secret = \"mysql-medic\"\ntls = \"off\"\n"
    )
}

/// A loopback address nothing listens on (bound, then closed).
fn closed_address() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().to_string()
}

/// Each step of the run succeeded with exactly one successful attempt: nothing applied
/// twice.
fn assert_each_step_once(view: &RunView, ctx: &dyn Fn() -> String) {
    for step in view.json["steps"].as_array().unwrap() {
        let id = step["id"].as_str().unwrap();
        let succeeded = view
            .attempts_of(id, false)
            .iter()
            .filter(|a| a.status == "succeeded")
            .count();
        assert!(
            succeeded <= 1,
            "step {id} succeeded {succeeded} times\n{}",
            ctx()
        );
        assert_eq!(view.step(id).status, "succeeded", "{}", ctx());
    }
}

fn step_error(view: &RunView, step: &str) -> String {
    view.step(step)
        .error
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn replica_resync_rebuilds_a_broken_replica() {
    let started = Instant::now();
    let group = Group::start();
    group.break_replica();

    let mut running = group.spawn_plan("replica-resync.yaml", &group.resync_params());
    let run = running.run_id();
    group.approve(&running, &run, "approve-rebuild");
    let out = running.wait(Duration::from_secs(60));
    let ctx = || format!("{out}\n{}", group.medic.describe_run(&run));
    out.expect_code(exit::SUCCEEDED, ctx);

    group.assert_resynced(&ctx);
    assert_each_step_once(&group.medic.show(&run), &ctx);
    eprintln!(
        "replica_resync_rebuilds_a_broken_replica: {:?}",
        started.elapsed()
    );
}

/// SIGKILLed while `restore` is blocked (a test client holds a table lock on the
/// replica), then resumed: the mutating restore is held rather than guessed at,
/// `medic retry` + `medic resume` finish the run, and the end state is the same.
#[test]
fn replica_resync_killed_mid_run_resumes_to_the_same_end() {
    let started = Instant::now();
    let group = Group::start();
    group.break_replica();
    let mut lock = group
        .pair
        .replica
        .spawn_sql("LOCK TABLES app.items READ; SELECT SLEEP(60)");

    let mut running = group.spawn_plan("replica-resync.yaml", &group.resync_params());
    let run = running.run_id();
    group.approve(&running, &run, "approve-rebuild");
    group.medic.wait_for_run(
        &run,
        Duration::from_secs(30),
        "restore running",
        |view| (view.step_status("restore") == Some("running")).then_some(()),
        || running.describe(),
    );
    // Inside the blocked statement, not before it.
    std::thread::sleep(Duration::from_millis(500));
    let killed = running.kill();
    assert_eq!(killed.code, 128 + 9, "{killed}");
    assert_eq!(
        group.variable(&group.pair.primary, "read_only"),
        "1",
        "writes were paused when medic died"
    );
    lock.kill().unwrap();
    lock.wait().unwrap();

    let out = group.medic.run(["resume", &run]);
    let ctx = || format!("{killed}\n{out}\n{}", group.medic.describe_run(&run));
    // restore is mutating and leaves no marker: resume must hold it, not guess.
    out.expect_code(exit::HELD, ctx);
    let view = group.medic.show(&run);
    assert_eq!(view.step("restore").status, "held", "{}", ctx());
    for done in [
        "pause-writes",
        "capture-position",
        "backup",
        "reset-replica",
    ] {
        assert_eq!(view.step(done).status, "succeeded", "{}", ctx());
    }
    group
        .medic
        .run(["retry", &run, "restore"])
        .expect_code(0, ctx);
    let out = group.medic.run(["resume", &run]);
    let ctx = || format!("{killed}\n{out}\n{}", group.medic.describe_run(&run));
    out.expect_code(exit::SUCCEEDED, ctx);
    group.assert_resynced(&ctx);
    let view = group.medic.show(&run);
    assert_each_step_once(&view, &ctx);
    assert_eq!(
        view.attempts_of("pause-writes", false).len(),
        1,
        "writes were paused once\n{}",
        ctx()
    );
    eprintln!(
        "replica_resync_killed_mid_run_resumes_to_the_same_end: {:?}",
        started.elapsed()
    );
}

#[test]
fn primary_failover_promotes_the_replica() {
    let started = Instant::now();
    let group = Group::start();
    // A write the replica has, then the primary dies.
    group
        .app(
            &group.pair.primary,
            "INSERT INTO app.items VALUES (3000, 'last')",
        )
        .unwrap();
    group.caught_up();
    group.pair.primary.kill();

    let hosts = json!({"replica": {"host": "127.0.0.1", "port": group.pair.replica.port}});
    let mut running = group.spawn_plan(
        "primary-failover.yaml",
        &[format!("hosts={hosts}"), format!("repl_user={REPL_USER}")],
    );
    let run = running.run_id();
    group.approve(&running, &run, "approve-failover");
    let out = running.wait(Duration::from_secs(60));
    let ctx = || format!("{out}\n{}", group.medic.describe_run(&run));
    out.expect_code(exit::SUCCEEDED, ctx);

    let replica = &group.pair.replica;
    assert_eq!(replica.slave_status("Slave_IO_Running"), None, "{}", ctx());
    assert_eq!(group.variable(replica, "read_only"), "0", "{}", ctx());
    group
        .app(
            replica,
            "INSERT INTO app.items VALUES (3001, 'on the new primary')",
        )
        .unwrap_or_else(|e| panic!("the new primary refuses writes: {e}\n{}", ctx()));
    assert_eq!(
        replica.sql("SELECT COUNT(*) FROM app.items WHERE id IN (3000, 3001)"),
        "2\n"
    );
    eprintln!(
        "primary_failover_promotes_the_replica: {:?}",
        started.elapsed()
    );
}

/// The replica lags (MASTER_DELAY): it has fetched the primary's last write into its
/// relay log but not applied it when the primary dies. Promotion applies it first, so
/// an acknowledged write is not lost.
#[test]
fn primary_failover_applies_fetched_transactions_before_promoting() {
    let started = Instant::now();
    let group = Group::start();
    let (primary, replica) = (&group.pair.primary, &group.pair.replica);
    replica.sql("STOP SLAVE; CHANGE MASTER TO MASTER_DELAY = 8; START SLAVE");
    group
        .app(
            primary,
            "INSERT INTO app.items VALUES (3000, 'fetched, not applied')",
        )
        .unwrap();
    let target = primary
        .sql("SELECT @@global.gtid_binlog_pos")
        .trim()
        .to_string();
    let deadline = Instant::now() + Duration::from_secs(10);
    while replica.slave_status("Gtid_IO_Pos").as_deref() != Some(target.as_str()) {
        assert!(
            Instant::now() < deadline,
            "the replica did not fetch {target}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        replica.sql("SELECT COUNT(*) FROM app.items WHERE id = 3000"),
        "0\n",
        "still in the relay log only"
    );
    primary.kill();

    let hosts = json!({"replica": {"host": "127.0.0.1", "port": replica.port}});
    let mut running = group.spawn_plan(
        "primary-failover.yaml",
        &[format!("hosts={hosts}"), format!("repl_user={REPL_USER}")],
    );
    let run = running.run_id();
    group.approve(&running, &run, "approve-failover");
    let out = running.wait(Duration::from_secs(60));
    let ctx = || format!("{out}\n{}", group.medic.describe_run(&run));
    out.expect_code(exit::SUCCEEDED, ctx);

    assert_eq!(replica.slave_status("Slave_IO_Running"), None, "{}", ctx());
    assert_eq!(
        replica.sql("SELECT v FROM app.items WHERE id = 3000"),
        "fetched, not applied\n",
        "the fetched write was applied before promotion\n{}",
        ctx()
    );
    group
        .app(
            replica,
            "INSERT INTO app.items VALUES (3001, 'on the new primary')",
        )
        .unwrap_or_else(|e| panic!("the new primary refuses writes: {e}\n{}", ctx()));
    // The drain happened inside promote: it waited for the delayed SQL thread.
    let view = group.medic.show(&run);
    let promote = view.json["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == "promote")
        .unwrap();
    let took = promote["finished_at"].as_i64().unwrap() - promote["started_at"].as_i64().unwrap();
    assert!(
        took >= 1000,
        "promote took {took} ms: the delay ran out before it, so no drain was tested\n{}",
        ctx()
    );
    eprintln!(
        "primary_failover_applies_fetched_transactions_before_promoting: {:?} (promote {took} ms)",
        started.elapsed()
    );
}

/// A transaction left open (holding a row lock) is listed by `long-transactions` and
/// ended by `kill-connections` fed from its output; the row is writable again.
#[test]
fn long_transactions_are_listed_and_killed() {
    let group = Group::start();
    let mut holder = group
        .pair
        .primary
        .spawn_sql("BEGIN; UPDATE app.items SET v = 'held' WHERE id = 1; SELECT SLEEP(30)");
    std::thread::sleep(Duration::from_millis(2500));
    let (out, view) = group.run_steps(json!([
        {"id": "list", "uses": "mysql/long-transactions",
         "with": {"server": "primary", "min_seconds": 1}},
        {"id": "kill", "uses": "mysql/kill-connections",
         "with": {"server": "primary", "ids": "${{ steps.list.output.ids }}"}},
    ]));
    let ctx = || format!("{out}\n{}", view.pretty());
    out.expect_code(exit::SUCCEEDED, ctx);
    let listed = &view.step("list").output["transactions"];
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{}", ctx());
    assert_eq!(listed[0]["rows_modified"], 1, "{}", ctx());
    assert_eq!(
        view.step("kill").output["killed"],
        view.step("list").output["ids"],
        "{}",
        ctx()
    );
    let status = holder.wait().unwrap();
    assert!(!status.success(), "the holder's connection was killed");
    // KILL returns before the server has rolled the transaction back.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let open = group
            .pair
            .primary
            .sql("SELECT COUNT(*) FROM information_schema.INNODB_TRX");
        if open == "0\n" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{open} transactions still open\n{}",
            ctx()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    group
        .app(
            &group.pair.primary,
            "UPDATE app.items SET v = 'free' WHERE id = 1",
        )
        .unwrap_or_else(|e| panic!("the row is still locked: {e}\n{}", ctx()));
}

/// A replica drifted without breaking replication (a table only it has): the resync
/// reloads what the primary has, the checksum comparison still sees the extra
/// table, the run fails and rolls back, and writes are resumed: a drifted replica
/// is never called healthy.
#[test]
fn replica_resync_refuses_a_replica_with_an_extra_table() {
    let group = Group::start();
    group
        .pair
        .replica
        .sql("SET SESSION sql_log_bin = 0; CREATE TABLE app.stray (id INT PRIMARY KEY)");
    let mut running = group.spawn_plan("replica-resync.yaml", &group.resync_params());
    let run = running.run_id();
    group.approve(&running, &run, "approve-rebuild");
    let out = running.wait(Duration::from_secs(60));
    let ctx = || format!("{out}\n{}", group.medic.describe_run(&run));
    out.expect_code(exit::ROLLED_BACK, ctx);
    let view = group.medic.show(&run);
    assert_eq!(view.step("verify-checksums").status, "failed", "{}", ctx());
    assert!(
        step_error(&view, "verify-checksums").contains("stray"),
        "the error names the extra table\n{}",
        ctx()
    );
    assert_eq!(view.step("pause-writes").status, "undone", "{}", ctx());
    group.assert_nothing_read_only(&ctx);
}

/// The planned restart: the test restarts each server (by pid, same port) when the
/// plan's approval asks for it; replication is back and nothing was lost.
#[test]
fn safe_restart_restarts_replica_then_primary() {
    let started = Instant::now();
    let group = Group::start();
    let primary_pid = group.pair.primary.pid();
    let replica_pid = group.pair.replica.pid();
    let mut running = group.spawn_plan("safe-restart.yaml", &[]);
    let run = running.run_id();

    group.medic.wait_for_run(
        &run,
        Duration::from_secs(30),
        "a-restart waiting",
        |view| (view.step_status("a-restart") == Some("approval")).then_some(()),
        || running.describe(),
    );
    assert_eq!(
        group
            .pair
            .replica
            .slave_status("Slave_SQL_Running")
            .as_deref(),
        Some("No"),
        "replication stopped before the restart"
    );
    group.pair.replica.restart();
    group.approve(&running, &run, "a-restart");

    group.medic.wait_for_run(
        &run,
        Duration::from_secs(30),
        "primary-restart waiting",
        |view| (view.step_status("primary-restart") == Some("approval")).then_some(()),
        || running.describe(),
    );
    assert_eq!(
        group.variable(&group.pair.primary, "read_only"),
        "1",
        "writes paused before the primary's restart"
    );
    assert!(
        group
            .app(
                &group.pair.primary,
                "INSERT INTO app.items VALUES (4000, 'x')"
            )
            .is_err(),
        "the application cannot write while paused"
    );
    group.pair.primary.restart();
    group.approve(&running, &run, "primary-restart");
    let out = running.wait(Duration::from_secs(60));
    let ctx = || format!("{out}\n{}", group.medic.describe_run(&run));
    out.expect_code(exit::SUCCEEDED, ctx);

    assert_ne!(group.pair.primary.pid(), primary_pid, "{}", ctx());
    assert_ne!(group.pair.replica.pid(), replica_pid, "{}", ctx());
    group.assert_nothing_read_only(&ctx);
    assert_eq!(
        group.variable(&group.pair.replica, "read_only"),
        "1",
        "the replica came back read-only (its config)\n{}",
        ctx()
    );
    group.caught_up();
    assert_eq!(
        group
            .pair
            .replica
            .slave_status("Slave_IO_Running")
            .as_deref(),
        Some("Yes"),
        "{}",
        ctx()
    );
    assert_eq!(
        group.checksums(&group.pair.primary),
        group.checksums(&group.pair.replica),
        "{}",
        ctx()
    );
    eprintln!(
        "safe_restart_restarts_replica_then_primary: {:?}",
        started.elapsed()
    );
}

#[test]
fn wrong_password_is_a_step_error_not_retried_and_not_shown() {
    let wrong = "not-the-admin-password-93kq";
    let group = Group::with_admin_password(wrong);
    let (out, view) = group.run_steps(json!([{
        "id": "status",
        "uses": "mysql/status",
        "with": {"server": "primary"},
        "retry": {"attempts": 3, "backoff": "fixed", "initial": "1s", "max": "1s"},
    }]));
    let ctx = || format!("{out}\n{}", view.pretty());
    out.expect_code(exit::FAILED, ctx);
    assert_eq!(view.step("status").status, "failed", "{}", ctx());
    assert_eq!(
        view.attempts_of("status", false).len(),
        1,
        "not retried\n{}",
        ctx()
    );
    let error = step_error(&view, "status");
    assert!(
        error.contains("primary") && error.to_lowercase().contains("denied"),
        "the error names the connection and the refusal: {error:?}\n{}",
        ctx()
    );
    assert!(
        !out.stdout.contains(wrong)
            && !out.stderr.contains(wrong)
            && !view.json.to_string().contains(wrong),
        "the password is shown\n{}",
        ctx()
    );
    group.assert_nothing_read_only(&ctx);
}

#[test]
fn unreachable_server_is_a_clear_step_error() {
    let group = Group::start();
    let (out, view) = group.run_steps(json!([{
        "id": "status",
        "uses": "mysql/status",
        "with": {"server": "nowhere"},
    }]));
    let ctx = || format!("{out}\n{}", view.pretty());
    out.expect_code(exit::FAILED, ctx);
    let error = step_error(&view, "status");
    assert!(
        error.contains("nowhere"),
        "names the connection: {error:?}\n{}",
        ctx()
    );
    group.assert_nothing_read_only(&ctx);
}

#[test]
fn a_server_that_is_not_a_replica_is_a_clear_step_error() {
    let group = Group::start();
    let (out, view) = group.run_steps(json!([{
        "id": "replicating",
        "uses": "mysql/replication-status",
        "with": {"server": "primary", "require_running": true},
    }]));
    let ctx = || format!("{out}\n{}", view.pretty());
    out.expect_code(exit::FAILED, ctx);
    let error = step_error(&view, "replicating");
    assert!(
        error.contains("primary") && error.contains("not a replica"),
        "{error:?}\n{}",
        ctx()
    );

    let (out, view) = group.run_steps(json!([{
        "id": "wait",
        "uses": "mysql/wait-caught-up",
        "with": {"replica": "primary", "gtid": "0-1-1", "timeout_s": 2},
    }]));
    let ctx = || format!("{out}\n{}", view.pretty());
    out.expect_code(exit::FAILED, ctx);
    let error = step_error(&view, "wait");
    assert!(
        error.contains("`primary`")
            && error.contains("not replicating")
            && error.contains("point-replica"),
        "{error:?}\n{}",
        ctx()
    );
    group.assert_nothing_read_only(&ctx);
}

#[test]
fn a_position_that_never_arrives_fails_at_the_deadline_naming_where_it_got() {
    let group = Group::start();
    let reached = group
        .pair
        .replica
        .sql("SELECT @@global.gtid_slave_pos")
        .trim()
        .to_string();
    let started = Instant::now();
    let (out, view) = group.run_steps(json!([{
        "id": "wait",
        "uses": "mysql/wait-caught-up",
        "with": {"replica": "replica", "gtid": "0-1-999999", "timeout_s": 2},
    }]));
    let ctx = || format!("{out}\n{}", view.pretty());
    out.expect_code(exit::FAILED, ctx);
    assert!(started.elapsed() < Duration::from_secs(20), "{}", ctx());
    let error = step_error(&view, "wait");
    assert!(
        error.contains("0-1-999999") && error.contains(&reached),
        "the error names the position waited for and the one reached ({reached}): {error:?}\n{}",
        ctx()
    );
    group.assert_nothing_read_only(&ctx);
}

/// The replica's server is down: the resync fails in its diagnosis, before the
/// approval, and never pauses writes.
#[test]
fn replica_resync_of_an_unreachable_replica_never_pauses_writes() {
    let group = Group::start();
    group.pair.replica.kill();
    let running = group.spawn_plan("replica-resync.yaml", &group.resync_params());
    let out = running.wait(Duration::from_secs(60));
    let ctx = || out.to_string();
    assert!(
        out.code == exit::FAILED || out.code == exit::ROLLED_BACK,
        "{}",
        ctx()
    );
    let run = out
        .stdout
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_string();
    let view = group.medic.show(&run);
    let ctx = || format!("{out}\n{}", view.pretty());
    assert_eq!(view.step("replica-status").status, "failed", "{}", ctx());
    assert!(
        step_error(&view, "replica-status").contains("`replica`"),
        "names the connection\n{}",
        ctx()
    );
    assert!(
        view.attempts_of("pause-writes", false).is_empty(),
        "writes were never paused\n{}",
        ctx()
    );
    group.assert_nothing_read_only(&ctx);
}

/// A resync that cannot finish (the replication password is wrong, so the replica
/// can never connect) fails at once and rolls back, which resumes writes on the
/// primary.
#[test]
fn replica_resync_that_fails_resumes_writes() {
    let group = Group::start();
    group.break_replica();
    std::fs::write(
        group.medic.data_dir().join("secrets/mysql-repl-password"),
        "wrong-repl-password\n",
    )
    .unwrap();
    let mut params = group.resync_params();
    params.retain(|p| !p.starts_with("catch_up_timeout_s"));
    params.push("catch_up_timeout_s=3".into());
    let mut running = group.spawn_plan("replica-resync.yaml", &params);
    let run = running.run_id();
    group.approve(&running, &run, "approve-rebuild");
    let out = running.wait(Duration::from_secs(90));
    let ctx = || format!("{out}\n{}", group.medic.describe_run(&run));
    assert_ne!(out.code, exit::SUCCEEDED, "{}", ctx());
    let view = group.medic.show(&run);
    assert_eq!(view.step("pause-writes").status, "undone", "{}", ctx());
    // The refused replication login is permanent: one attempt, a clear error.
    assert_eq!(view.step("point-replica").status, "failed", "{}", ctx());
    assert_eq!(
        view.attempts_of("point-replica", false).len(),
        1,
        "{}",
        ctx()
    );
    let error = step_error(&view, "point-replica");
    assert!(
        error.contains("refuses its replication login") && !error.contains("wrong-repl-password"),
        "{error:?}\n{}",
        ctx()
    );
    group.assert_nothing_read_only(&ctx);
}

/// The hourly lag audit (plans/maintenance/mysql-replica-lag-audit.yaml) passes on a
/// healthy pair, and fails at once, naming the replica and its stopped thread, when
/// the replica's SQL thread is stopped; it changes nothing on either server.
#[test]
fn the_replica_lag_audit_passes_on_a_healthy_pair_and_fails_on_a_stopped_replica() {
    let group = Group::start();
    group.caught_up();
    let plan = repo_root().join("plans/maintenance/mysql-replica-lag-audit.yaml");
    let audit = || group.run_file(&plan, &["max_lag_s=30"]);

    let (out, view) = audit();
    out.expect_code(exit::SUCCEEDED, || view.pretty());
    let lag = &view.step("replica-lag").output;
    assert_eq!(lag["replica"], json!(true), "{}", view.pretty());
    assert!(
        lag["seconds_behind"].as_i64().is_some_and(|s| s <= 30),
        "{}",
        view.pretty()
    );

    group.pair.replica.sql("STOP SLAVE SQL_THREAD");
    let (out, view) = audit();
    let ctx = || format!("{out}\n{}", view.pretty());
    out.expect_code(exit::FAILED, ctx);
    assert_eq!(
        view.attempts_of("replica-lag", false).len(),
        1,
        "a stopped thread is not retried\n{}",
        ctx()
    );
    let error = step_error(&view, "replica-lag");
    assert!(
        error.contains("replica") && error.contains("not replicating"),
        "{error}\n{}",
        ctx()
    );
    assert_eq!(
        group
            .pair
            .replica
            .slave_status("Slave_SQL_Running")
            .as_deref(),
        Some("No"),
        "the audit changes nothing"
    );
    group.assert_nothing_read_only(&ctx);
}

/// The nightly backup verification (plans/maintenance/mysql-backup-verify.yaml): the
/// replica's dump restored into a scratch server checks equal table by table, and the
/// replica replicates again afterwards. When the restore fails (the scratch server
/// refuses medic's login), the run rolls back and the replica, stopped for the dump,
/// is replicating again all the same.
#[test]
fn the_backup_verification_restores_into_a_scratch_server_and_leaves_the_replica_running() {
    let group = Group::start();
    group.caught_up();
    let scratch = MariaDb::private();
    let secrets = group.medic.data_dir().join("secrets");
    std::fs::write(secrets.join("mysql-scratch"), format!("{TEST_PASSWORD}\n")).unwrap();
    let toml = group.medic.data_dir().join("medic.toml");
    let mut config = std::fs::read_to_string(&toml).unwrap();
    config.push_str(&format!(
        "\n[sql.scratch]\naddress = \"{}\"\nuser = \"{TEST_USER}\"\npassword_secret = \"mysql-scratch\"\n",
        scratch.address()
    ));
    std::fs::write(&toml, config).unwrap();
    let plan = repo_root().join("plans/maintenance/mysql-backup-verify.yaml");

    let (out, view) = group.run_file(&plan, &[r#"databases=["app"]"#]);
    let ctx = || format!("{out}\n{}", view.pretty());
    out.expect_code(exit::SUCCEEDED, ctx);
    assert_eq!(
        group.checksums(&group.pair.replica),
        group.checksums(&scratch),
        "the scratch copy checks equal to the replica, on the servers themselves"
    );
    assert_eq!(
        group
            .pair
            .replica
            .slave_status("Slave_SQL_Running")
            .as_deref(),
        Some("Yes")
    );
    let artifact = group
        .medic
        .data_dir()
        .join("artifacts")
        .join(&view.id)
        .join("nightly.sql");
    assert!(
        std::fs::metadata(&artifact).is_ok_and(|m| m.len() > 0),
        "{artifact:?}"
    );

    // The scratch server's password is wrong now: restore fails, the run rolls back,
    // and the replica's SQL thread (stopped for the dump) runs again.
    std::fs::write(secrets.join("mysql-scratch"), "not-the-password\n").unwrap();
    let (out, view) = group.run_file(&plan, &[r#"databases=["app"]"#]);
    let ctx = || format!("{out}\n{}", view.pretty());
    out.expect_code(exit::ROLLED_BACK, ctx);
    assert_eq!(view.step("restore-scratch").status, "failed", "{}", ctx());
    assert!(
        view.attempts_of("hold-replica", true).len() == 1,
        "the undo of hold-replica ran once\n{}",
        ctx()
    );
    assert_eq!(
        group
            .pair
            .replica
            .slave_status("Slave_SQL_Running")
            .as_deref(),
        Some("Yes"),
        "the rollback started the replica again\n{}",
        ctx()
    );
}

/// The drill's params against this test's pair (connections `primary`, `replica`).
fn drill_params(group: &Group) -> Vec<String> {
    vec![
        "primary=primary".into(),
        "replica=replica".into(),
        "primary_host=127.0.0.1".into(),
        format!("primary_port={}", group.pair.primary.port),
        format!("repl_user={REPL_USER}"),
        r#"databases=["app"]"#.into(),
        "catch_up_timeout_s=20".into(),
    ]
}

/// The pair is whole again after a drill: both threads run, the tables check equal,
/// the primary takes writes and a new one reaches the replica.
fn assert_pair_recovered(group: &Group, ctx: &dyn Fn() -> String) {
    let (primary, replica) = (&group.pair.primary, &group.pair.replica);
    for thread in ["Slave_IO_Running", "Slave_SQL_Running"] {
        assert_eq!(
            replica.slave_status(thread).as_deref(),
            Some("Yes"),
            "{thread}\n{}\n{}",
            replica.sql("SHOW SLAVE STATUS\\G"),
            ctx()
        );
    }
    assert_eq!(group.variable(primary, "read_only"), "0", "{}", ctx());
    group
        .app(
            primary,
            "INSERT INTO app.items VALUES (6000, 'after the drill')",
        )
        .unwrap_or_else(|e| panic!("the application cannot write: {e}\n{}", ctx()));
    group.caught_up();
    assert_eq!(
        group.checksums(primary),
        group.checksums(replica),
        "{}",
        ctx()
    );
}

/// The quarterly recovery drill (plans/maintenance/mysql-recovery-drill.yaml) on a
/// real pair: the replica really loses its replication (its step reports no replica
/// configuration left), is rebuilt, and the run records once that the recovery met
/// its 15-minute objective, measured from the outage to writes resumed.
#[test]
fn the_quarterly_recovery_drill_rebuilds_the_replica_and_reports_its_objective_met() {
    let group = Group::start();
    let plan = repo_root().join("plans/maintenance/mysql-recovery-drill.yaml");
    let params = drill_params(&group);
    let params: Vec<&str> = params.iter().map(String::as_str).collect();
    let (out, view) = group.run_file(&plan, &params);
    let ctx = || format!("{out}\n{}", view.pretty());
    out.expect_code(exit::SUCCEEDED, ctx);

    // The outage was real: the replica had no replication configuration left.
    assert_eq!(
        view.step("break-replica").output["replica"],
        json!(false),
        "{}",
        ctx()
    );
    assert_pair_recovered(&group, &ctx);
    assert_each_step_once(&view, &ctx);

    let objectives = view.events_of("objective");
    assert_eq!(objectives.len(), 1, "recorded once\n{}", ctx());
    let objective = objectives[0];
    assert_eq!(objective["met"], json!(true), "{}", ctx());
    assert_eq!(objective["within_ms"], json!(15 * 60 * 1000), "{}", ctx());
    // Measured between the two steps' ends, as the run's own step times say.
    let ended = |step: &str| {
        view.json["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == step)
            .and_then(|s| s["finished_at"].as_i64())
            .unwrap_or_else(|| panic!("{step} has no finished_at\n{}", ctx()))
    };
    assert_eq!(
        objective["elapsed_ms"].as_i64(),
        Some(ended("resume-writes") - ended("break-replica")),
        "{}",
        ctx()
    );
    assert!(
        out.stdout
            .contains("ok objective of 15m met: recovered in "),
        "medic run prints the verdict\n{}",
        ctx()
    );
}

/// Registered through the API, the drill declares its quarterly schedule; a run with
/// an objective it cannot meet (1 ms) still rebuilds the replica and succeeds, and
/// says it missed: in its `objective` event and in
/// `medic_run_objectives_total{outcome="missed"}`.
#[test]
fn a_drill_that_recovers_too_slowly_succeeds_and_is_reported_as_missed() {
    let group = Group::start();
    let server = Server::admin(&group.medic);
    let text =
        std::fs::read_to_string(repo_root().join("plans/maintenance/mysql-recovery-drill.yaml"))
            .unwrap()
            .replace("  within: 15m\n", "  within: 1ms\n");
    assert!(text.contains("within: 1ms"));
    let (status, _, body) = server.post("/v1/plans", &[], &json!({ "plan": text }));
    assert_eq!(status, 201, "{body}");

    let (status, schedule) = server.get_json("/v1/schedules/mysql-recovery-drill-quarterly");
    assert_eq!(status, 200, "{schedule}");
    assert_eq!(
        schedule["declared_by"],
        json!("mysql-recovery-drill"),
        "{schedule}"
    );
    let next = schedule["next"].as_array().expect("next fire times");
    assert!(!next.is_empty(), "{schedule}");
    for due in next {
        let due_at = due["due_at"].as_u64().expect("due_at");
        let due = humantime::format_rfc3339_seconds(
            std::time::UNIX_EPOCH + Duration::from_millis(due_at),
        )
        .to_string();
        // The first day of January, April, July or October, at 04:00 UTC.
        assert!(
            [
                "-01-01T04:00:00",
                "-04-01T04:00:00",
                "-07-01T04:00:00",
                "-10-01T04:00:00"
            ]
            .iter()
            .any(|d| due.contains(d)),
            "{due} is not a quarterly due time\n{schedule}"
        );
    }

    let mut params = serde_json::Map::new();
    for p in drill_params(&group) {
        let (k, v) = p.split_once('=').unwrap();
        let v = serde_json::from_str(v).unwrap_or_else(|_| json!(v));
        params.insert(k.to_string(), v);
    }
    let (status, _, created) = server.post(
        "/v1/runs",
        &[],
        &json!({ "plan_name": "mysql-recovery-drill", "params": params }),
    );
    assert_eq!(status, 201, "{created}");
    let run = created["id"].as_str().expect("run id").to_string();
    let view = server.wait_run(&run, "the drill to end", |v| {
        let s = v["run"]["status"].as_str()?;
        matches!(s, "succeeded" | "failed" | "rolled_back").then(|| v.clone())
    });
    let ctx = || server.describe(&run);
    assert_eq!(view["run"]["status"], "succeeded", "{}", ctx());
    assert_pair_recovered(&group, &ctx);

    let objective: Vec<&Value> = view["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "objective")
        .map(|e| &e["data"])
        .collect();
    assert_eq!(objective.len(), 1, "{}", ctx());
    assert_eq!(objective[0]["met"], json!(false), "{}", ctx());
    let summary = objective[0]["summary"].as_str().unwrap_or_default();
    assert!(
        summary.starts_with("objective of 1ms missed: recovery took "),
        "{summary}"
    );

    let (status, _, metrics) = server.get("/metrics");
    assert_eq!(status, 200);
    let metrics = metrics.as_str().expect("metrics are text");
    let scrape = Scrape::parse(metrics).unwrap_or_else(|e| panic!("{e}\n{metrics}"));
    assert_eq!(
        scrape.value(
            "medic_run_objectives_total",
            &[("plan", "mysql-recovery-drill"), ("outcome", "missed")]
        ),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        scrape.value(
            "medic_run_objectives_total",
            &[("plan", "mysql-recovery-drill"), ("outcome", "met")]
        ),
        None,
        "{metrics}"
    );
}
