//! The host's `sql` interface against a real MariaDB (tests/scripts/mariadb.sh):
//! `medic run` of plans whose probe steps query connections declared in a
//! `medic.toml` the test writes. Grants, configuration errors, session sharing, value
//! mapping, retry advice for refused/lost connections and lock waits, the row-set cap,
//! the kill of a statement its call abandoned, and the password never leaving medic.

use std::time::Duration;

use medic_tests::{
    Finished, LIMITED_PASSWORD, LIMITED_USER, MariaDb, Medic, RunView, TEST_PASSWORD, TEST_USER,
    poll_until, sequential_plan,
};
use serde_json::{Value, json};

use crate::exit;

/// One test's medic with a `medic.toml` of SQL connections and a secrets dir.
struct Sql {
    medic: Medic,
}

/// One `[sql.NAME]` section.
struct Connection<'a> {
    name: &'a str,
    address: String,
    user: &'a str,
    /// The secret's name and the password written into it (`None`: no file).
    secret: Option<(&'a str, Option<&'a str>)>,
    database: Option<&'a str>,
    tls: &'a str,
}

impl Sql {
    fn new(connections: &[Connection<'_>]) -> Sql {
        let medic = Medic::new();
        let secrets = medic.data_dir().join("secrets");
        std::fs::create_dir_all(&secrets).unwrap();
        let mut toml = String::from("secrets_dir = \"secrets\"\n");
        for c in connections {
            toml.push_str(&format!(
                "\n[sql.{}]\naddress = \"{}\"\nuser = \"{}\"\n",
                c.name, c.address, c.user
            ));
            if let Some((secret, password)) = c.secret {
                toml.push_str(&format!("password_secret = \"{secret}\"\n"));
                if let Some(password) = password {
                    std::fs::write(secrets.join(secret), format!("{password}\n")).unwrap();
                }
            }
            toml.push_str(&format!("tls = \"{}\"\n", c.tls));
            if let Some(db) = c.database {
                toml.push_str(&format!("database = \"{db}\"\n"));
            }
        }
        std::fs::write(medic.data_dir().join("medic.toml"), toml).unwrap();
        Sql { medic }
    }

    /// Runs a plan of `steps` (probe steps, one after the other) whose probe is
    /// granted the SQL connections `grants`.
    fn run(&self, grants: &[&str], steps: Value) -> (Finished, RunView) {
        let plan = sequential_plan(
            "sql-test",
            json!({"probe": {"use": "probe@0.1", "grants": {"sql": grants}}}),
            steps,
        );
        let path = self
            .medic
            .write("plan.json", &serde_json::to_string_pretty(&plan).unwrap());
        let out = self.medic.run(["run".as_ref(), path.as_os_str()]);
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

    /// Everything medic recorded: the database files (WAL included) as bytes.
    fn database_bytes(&self) -> Vec<u8> {
        let mut all = Vec::new();
        for entry in std::fs::read_dir(self.medic.data_dir()).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if name.starts_with("medic.db") {
                all.extend(std::fs::read(&path).unwrap());
            }
        }
        assert!(!all.is_empty(), "medic wrote no database");
        all
    }

    /// Panics if `secret` appears in what the run printed, its record (`runs show`:
    /// steps, attempts, events) or medic's database files.
    fn assert_nowhere(&self, secret: &str, out: &Finished, view: &RunView) {
        assert!(
            !out.stdout.contains(secret) && !out.stderr.contains(secret),
            "the password is in medic's output\n{out}"
        );
        assert!(
            !view.json.to_string().contains(secret),
            "the password is in the run's record\n{}",
            view.pretty()
        );
        let db = self.database_bytes();
        assert!(
            !db.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "the password is in medic's database files"
        );
    }
}

fn primary<'a>(db: &MariaDb, database: Option<&'a str>) -> Connection<'a> {
    Connection {
        name: "primary",
        address: db.address(),
        user: TEST_USER,
        secret: Some(("mysql-medic", Some(TEST_PASSWORD))),
        database,
        tls: "off",
    }
}

fn query(id: &str, connection: &str, statement: &str, params: Value) -> Value {
    json!({
        "id": id,
        "uses": "probe/sql-query",
        "with": {"connection": connection, "statement": statement, "params": params},
    })
}

/// A quick retry policy: the second attempt after 100 ms.
fn retrying(mut step: Value, attempts: u32) -> Value {
    step["retry"] = json!({"attempts": attempts, "backoff": "fixed", "initial": "100ms", "max": "100ms", "jitter": false});
    step
}

#[test]
fn a_granted_connection_runs_statements_with_params_and_maps_values() {
    let db = MariaDb::shared();
    let name = db.fresh_database("values");
    let sql = Sql::new(&[primary(db, Some(&name))]);
    let (out, view) = sql.run(
        &["primary"],
        json!([
            query(
                "create",
                "primary",
                "CREATE TABLE t (id INT UNSIGNED PRIMARY KEY AUTO_INCREMENT, name VARCHAR(20), \
                 price DECIMAL(6,2), born DATE, raw VARBINARY(4), ratio DOUBLE, delta BIGINT)",
                json!([])
            ),
            query(
                "insert",
                "primary",
                "INSERT INTO t (name, price, born, raw, ratio, delta) VALUES (?, ?, ?, UNHEX('00FF'), ?, ?), (?, NULL, NULL, NULL, NULL, NULL)",
                json!(["héllo", "12.50", "2026-11-23", 0.25, -7, "second"])
            ),
            query(
                "select",
                "primary",
                "SELECT id, name, price, born, raw, ratio, delta FROM t WHERE id >= ? ORDER BY id",
                json!([1])
            ),
            // Without params: the text protocol, typed by column all the same.
            query("select-text", "primary", "SELECT id, name, price, born, raw, ratio, delta FROM t ORDER BY id", json!([])),
        ]),
    );
    out.expect_code(exit::SUCCEEDED, || view.pretty());
    assert_eq!(view.step("insert").output["affected_rows"], 2);
    assert_eq!(view.step("insert").output["last_insert_id"], 1);
    let expected = json!([
        {"id": 1, "name": "héllo", "price": "12.50", "born": "2026-11-23", "raw": [0, 255], "ratio": 0.25, "delta": -7},
        {"id": 2, "name": "second", "price": null, "born": null, "raw": null, "ratio": null, "delta": null},
    ]);
    for step in ["select", "select-text"] {
        let output = &view.step(step).output;
        assert_eq!(
            output["columns"],
            json!(["id", "name", "price", "born", "raw", "ratio", "delta"])
        );
        assert_eq!(output["rows"], expected, "{step}\n{}", view.pretty());
    }
    assert_eq!(
        db.sql(&format!("SELECT name FROM {name}.t WHERE id = 1"))
            .trim(),
        "héllo"
    );
    // The guest was only ever handed the connection's name.
    sql.assert_nowhere(TEST_PASSWORD, &out, &view);
}

#[test]
fn statements_of_one_call_share_a_session_that_ends_with_the_call() {
    let db = MariaDb::shared();
    let sql = Sql::new(&[primary(db, None)]);
    let (out, view) = sql.run(
        &["primary"],
        json!([
            {
                "id": "session",
                "uses": "probe/sql-session",
                "with": {
                    "connection": "primary",
                    // The second holds two result sets: the first is returned, the
            // other drained, and the session goes on.
            "statements": ["SET @x = 41", "SELECT 1 AS a; SELECT 2 AS b", "SELECT @x + 1 AS y, CONNECTION_ID() AS id"],
                }
            },
            query("next-call", "primary", "SELECT @x AS x, CONNECTION_ID() AS id", json!([])),
        ]),
    );
    out.expect_code(exit::SUCCEEDED, || view.pretty());
    let results = &view.step("session").output["results"];
    assert_eq!(results[1]["rows"], json!([{"a": 1}]), "{}", view.pretty());
    let session = &results[2]["rows"][0];
    assert_eq!(session["y"], 42, "{}", view.pretty());
    let next = &view.step("next-call").output["rows"][0];
    assert_eq!(next["x"], Value::Null, "a new call gets a new session");
    assert_ne!(next["id"], session["id"]);
}

#[test]
fn a_session_killed_mid_call_is_not_silently_replaced() {
    let db = MariaDb::shared();
    // The plugin's session is the one connection using this database.
    let name = db.fresh_database("killed");
    let sql = Sql::new(&[primary(db, Some(&name))]);
    let step = json!({
        "id": "session",
        "uses": "probe/sql-session",
        "with": {
            "connection": "primary",
            "statements": ["SET @x = 41", "SELECT @x AS x", "SELECT @x AS x"],
            "pause_ms": 2000,
            "keep_going": true,
        },
    });
    let (out, view) = std::thread::scope(|s| {
        let run = s.spawn(|| sql.run(&["primary"], json!([step])));
        let id = poll_until(
            Duration::from_secs(20),
            "the plugin's session",
            || {
                let id = db.sql(&format!(
                    "SELECT ID FROM information_schema.PROCESSLIST WHERE DB = '{name}'"
                ));
                (!id.trim().is_empty()).then(|| id.trim().to_string())
            },
            String::new,
        );
        db.sql(&format!("KILL {id}"));
        run.join().unwrap()
    });
    out.expect_code(exit::SUCCEEDED, || view.pretty());
    let results = &view.step("session").output["results"];
    // The statement after the kill finds the connection gone...
    assert_eq!(results[1]["retryable"], true, "{results:#}");
    // ...and the next one is not run in a fresh session where @x would be NULL.
    let third = results[2]["error"].as_str().unwrap_or_default();
    assert!(
        third.contains("session was lost") && results[2]["retryable"] == true,
        "{results:#}"
    );
}

#[test]
fn an_ungranted_connection_is_refused_by_name_and_not_retried() {
    let db = MariaDb::shared();
    let sql = Sql::new(&[
        primary(db, None),
        Connection {
            name: "other",
            ..primary(db, None)
        },
    ]);
    let (out, view) = sql.run(
        &["other"],
        json!([retrying(query("q", "primary", "SELECT 1", json!([])), 3)]),
    );
    out.expect_code(exit::FAILED, || view.pretty());
    let failed = view.failures("q");
    assert_eq!(failed.len(), 1, "not retryable: one attempt\n{failed:?}");
    let (_, retryable, error) = &failed[0];
    assert!(!retryable);
    assert!(
        error.contains("SQL connection `primary` is not granted to plugin `probe`")
            && error.contains("grants: { sql: [primary] }"),
        "{error}"
    );
}

#[test]
fn an_unknown_connection_and_a_missing_secret_are_named() {
    let db = MariaDb::shared();
    let sql = Sql::new(&[Connection {
        name: "nosecret",
        secret: Some(("absent-secret", None)),
        ..primary(db, None)
    }]);
    let (out, view) = sql.run(
        &["ghost", "nosecret"],
        json!([
            {"id": "ghost", "uses": "probe/sql-query", "with": {"connection": "ghost", "statement": "SELECT 1"}, "on_failure": "continue"},
            {"id": "nosecret", "uses": "probe/sql-query", "with": {"connection": "nosecret", "statement": "SELECT 1"}},
        ]),
    );
    out.expect_code(exit::FAILED, || view.pretty());
    let ghost = &view.failures("ghost")[0];
    assert!(
        !ghost.1
            && ghost.2.contains("SQL connection `ghost` is not configured")
            && ghost.2.contains("[sql.ghost]"),
        "{ghost:?}"
    );
    let nosecret = &view.failures("nosecret")[0];
    assert!(
        !nosecret.1
            && nosecret.2.contains("`nosecret`")
            && nosecret.2.contains("`absent-secret` is not configured"),
        "{nosecret:?}"
    );
}

#[test]
fn a_wrong_password_is_not_retried_and_never_shown() {
    let db = MariaDb::shared();
    let wrong = "wrong-pw-5e1b-do-not-print";
    let sql = Sql::new(&[Connection {
        secret: Some(("mysql-medic", Some(wrong))),
        ..primary(db, None)
    }]);
    let (out, view) = sql.run(
        &["primary"],
        json!([retrying(query("q", "primary", "SELECT 1", json!([])), 3)]),
    );
    out.expect_code(exit::FAILED, || view.pretty());
    let failed = view.failures("q");
    assert_eq!(failed.len(), 1, "access denied is not retried\n{failed:?}");
    let (_, retryable, error) = &failed[0];
    assert!(!retryable);
    assert!(
        error.contains("error 1045") && error.contains("Access denied"),
        "{error}"
    );
    sql.assert_nowhere(wrong, &out, &view);
}

#[test]
fn a_server_error_keeps_its_code_and_a_refused_connection_is_retryable() {
    let db = MariaDb::shared();
    // A port nothing listens on: bind one, learn its number, close it.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let sql = Sql::new(&[
        Connection {
            name: "down",
            address: format!("127.0.0.1:{closed}"),
            ..primary(db, None)
        },
        Connection {
            name: "limited",
            user: LIMITED_USER,
            secret: Some(("mysql-limited", Some(LIMITED_PASSWORD))),
            ..primary(db, None)
        },
    ]);
    let (out, view) = sql.run(
        &["down", "limited"],
        json!([
            {"id": "denied", "uses": "probe/sql-query", "on_failure": "continue", "retry": {"attempts": 3, "initial": "100ms"},
             "with": {"connection": "limited", "statement": "CREATE DATABASE not_allowed"}},
            retrying(query("down", "down", "SELECT 1", json!([])), 2),
        ]),
    );
    out.expect_code(exit::FAILED, || view.pretty());
    let denied = view.failures("denied");
    assert_eq!(denied.len(), 1, "{denied:?}");
    assert!(
        !denied[0].1 && denied[0].2.contains("error 1044"),
        "{denied:?}"
    );
    let down = view.failures("down");
    assert_eq!(
        down.iter().map(|f| (f.0, f.1)).collect::<Vec<_>>(),
        [(1, true), (2, true)],
        "{down:?}"
    );
    assert!(
        down[0].2.contains("`down`") && down[0].2.contains("connecting"),
        "{down:?}"
    );
}

#[test]
fn a_server_that_never_answers_times_out_connecting_and_is_retryable() {
    // Accepts connections and never sends the server's greeting.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let held = std::thread::spawn(move || {
        // Holds the first connection until medic gives up on it and closes it.
        if let Some(Ok(mut stream)) = listener.incoming().next() {
            let _ = std::io::Read::read(&mut stream, &mut [0u8; 64]);
        }
    });
    let sql = Sql::new(&[Connection {
        name: "mute",
        address,
        ..primary(MariaDb::shared(), None)
    }]);
    let mut step = query("q", "mute", "SELECT 1", json!([]));
    // Longer than the connect timeout (10 s): the connect gives up first.
    step["timeout"] = json!("30s");
    let started = std::time::Instant::now();
    let (out, view) = sql.run(&["mute"], json!([step]));
    let took = started.elapsed();
    out.expect_code(exit::FAILED, || view.pretty());
    let failed = view.failures("q");
    assert!(
        failed[0].1 && failed[0].2.contains("connecting timed out after 10s"),
        "{failed:?}"
    );
    assert!(took < Duration::from_secs(25), "took {took:?}");
    held.join().unwrap();
}

#[test]
fn tls_required_against_a_server_without_tls_fails_without_retry() {
    let db = MariaDb::shared();
    let sql = Sql::new(&[Connection {
        tls: "required",
        ..primary(db, None)
    }]);
    let (out, view) = sql.run(
        &["primary"],
        json!([retrying(query("q", "primary", "SELECT 1", json!([])), 3)]),
    );
    out.expect_code(exit::FAILED, || view.pretty());
    let failed = view.failures("q");
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(
        !failed[0].1 && failed[0].2.contains("SSL"),
        "the server offers no TLS: {failed:?}"
    );
}

#[test]
fn a_lock_wait_timeout_is_retryable() {
    let db = MariaDb::shared();
    let name = db.fresh_database("locks");
    db.sql(&format!(
        "CREATE TABLE {name}.t (id INT PRIMARY KEY, n INT); INSERT INTO {name}.t VALUES (1, 0)"
    ));
    // Holds the row's lock for 8 s; the server waits 2 s for a lock (mariadb.sh).
    let mut holder = db.spawn_sql(&format!(
        "BEGIN; SELECT * FROM {name}.t WHERE id = 1 FOR UPDATE; SELECT SLEEP(8); ROLLBACK"
    ));
    poll_until(
        Duration::from_secs(10),
        "the lock holder's SLEEP",
        || {
            db.sql("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE INFO LIKE 'SELECT SLEEP(8)%'")
                .trim()
                .eq("1")
                .then_some(())
        },
        String::new,
    );
    let sql = Sql::new(&[primary(db, Some(&name))]);
    let (out, view) = sql.run(
        &["primary"],
        json!([query(
            "update",
            "primary",
            "UPDATE t SET n = n + 1 WHERE id = ?",
            json!([1])
        )]),
    );
    let _ = holder.kill();
    let _ = holder.wait();
    out.expect_code(exit::FAILED, || view.pretty());
    let failed = view.failures("update");
    assert!(
        failed[0].1 && failed[0].2.contains("error 1205"),
        "{failed:?}"
    );
}

#[test]
fn a_row_set_beyond_the_cap_is_refused_with_advice() {
    let db = MariaDb::shared();
    // The sequence engine's seq_1_to_N tables exist in every database.
    let name = db.fresh_database("cap");
    let sql = Sql::new(&[primary(db, Some(&name))]);
    // 20 rows of 1 MB each: past the 16 MiB cap.
    let (out, view) = sql.run(
        &["primary"],
        json!([query(
            "big",
            "primary",
            "SELECT seq, REPEAT('x', 1000000) AS filler FROM seq_1_to_20",
            json!([])
        )]),
    );
    out.expect_code(exit::FAILED, || view.pretty());
    let failed = view.failures("big");
    assert!(
        !failed[0].1 && failed[0].2.contains("16 MiB") && failed[0].2.contains("LIMIT"),
        "{failed:?}"
    );
}

#[test]
fn a_killed_server_loses_the_session_and_is_retryable() {
    let db = MariaDb::private();
    let sql = Sql::new(&[primary(&db, None)]);
    // The first statement opens the session; the server dies during the sleep
    // before the second.
    let step = retrying(
        json!({
            "id": "session",
            "uses": "probe/sql-session",
            "with": {"connection": "primary", "statements": ["SET @x = 1", "SELECT @x"], "pause_ms": 3000},
        }),
        2,
    );
    let running = std::thread::scope(|s| {
        let handle = s.spawn(|| sql.run(&["primary"], json!([step])));
        poll_until(
            Duration::from_secs(20),
            "the plugin's session on the private server",
            || {
                db.sql(&format!(
                    "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = '{TEST_USER}'"
                ))
                .trim()
                .eq("1")
                .then_some(())
            },
            String::new,
        );
        db.kill();
        handle.join().unwrap()
    });
    let (out, view) = running;
    out.expect_code(exit::FAILED, || view.pretty());
    let failed = view.failures("session");
    assert_eq!(
        failed.iter().map(|f| (f.0, f.1)).collect::<Vec<_>>(),
        [(1, true), (2, true)],
        "both attempts retryable: the session was lost, then the server refused\n{failed:?}"
    );
    assert!(
        failed[0].2.contains("`primary`") && failed[0].2.contains("the connection"),
        "the first attempt lost its connection: {failed:?}"
    );
}

#[test]
fn a_call_that_times_out_kills_its_statement() {
    let db = MariaDb::shared();
    let sql = Sql::new(&[primary(db, None)]);
    let marker = format!("medic-timeout-{}", std::process::id());
    let mut step = query(
        "slow",
        "primary",
        &format!("SELECT SLEEP(60) AS `{marker}`"),
        json!([]),
    );
    step["timeout"] = json!("2s");
    let (out, view) = sql.run(&["primary"], json!([step]));
    out.expect_code(exit::FAILED, || view.pretty());
    assert!(
        view.failures("slow")[0].2.contains("timed out"),
        "{}",
        view.pretty()
    );
    // Without the kill the server would sleep on for a minute.
    poll_until(
        Duration::from_secs(10),
        "the abandoned statement to be killed",
        || {
            db.sql(&format!(
                "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE INFO LIKE '%{marker}%' AND ID <> CONNECTION_ID()"
            ))
            .trim()
            .eq("0")
            .then_some(())
        },
        || db.sql("SHOW FULL PROCESSLIST"),
    );
}
