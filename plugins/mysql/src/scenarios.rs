//! The actions' logic against a scripted host (`host::fake`): which statements they
//! run in which order, what observe concludes, what failures say. Real servers are
//! the black-box tests' job (issue 15).

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use medic_sdk::{Context, Failure, Observation, Plugin, Value, json};

use crate::Mysql;
use crate::host::fake;
use crate::value::{Rows, SqlError, Val};

type Answer = Result<Rows, SqlError>;

fn ctx() -> Context {
    Context {
        run_id: "r".into(),
        step_id: "s".into(),
        attempt: 1,
        idempotency_key: "r/s/1".into(),
    }
}

fn invoke(action: &str, params: Value) -> Result<Value, Failure> {
    Mysql::invoke(&ctx(), action, params)
}

fn observe(action: &str, params: Value) -> Result<Observation, Failure> {
    Mysql::observe(&ctx(), action, params)
}

fn t(s: &str) -> Val {
    Val::Text(s.into())
}

fn rows(cols: &[&str], vals: Vec<Vec<Val>>) -> Answer {
    Ok(Rows {
        columns: cols.iter().map(|c| c.to_string()).collect(),
        rows: vals,
        affected_rows: 0,
    })
}

fn ok() -> Answer {
    Ok(Rows::default())
}

fn version(v: &str, comment: &str) -> Answer {
    rows(
        &["version", "version_comment"],
        vec![vec![t(v), t(comment)]],
    )
}

fn scalar(v: Val) -> Answer {
    rows(&["x"], vec![vec![v]])
}

/// The statements run, without the version probe.
fn statements() -> Vec<String> {
    fake::log()
        .into_iter()
        .filter(|s| !s.contains("SELECT VERSION()"))
        .collect()
}

#[test]
fn set_read_only_on_mariadb_sets_read_only_and_observe_sees_it() {
    let ro = Rc::new(Cell::new(false));
    let state = ro.clone();
    fake::install(move |_, s, _| match s {
        "SELECT @@global.read_only" => scalar(Val::Int(state.get() as i64)),
        "SHOW GLOBAL VARIABLES LIKE 'super_read_only'" => ok(),
        "SET GLOBAL read_only = ON" => {
            state.set(true);
            ok()
        }
        other => panic!("unexpected statement {other}"),
    });
    let params = json!({"server": "primary", "read_only": true});
    assert_eq!(
        observe("set-read-only", params.clone()),
        Ok(Observation::NotDone)
    );
    let out = invoke("set-read-only", params.clone()).unwrap();
    assert_eq!(
        out,
        json!({"server": "primary", "read_only": true, "super_read_only": null})
    );
    assert!(ro.get());
    assert_eq!(observe("set-read-only", params), Ok(Observation::Done(out)));
}

#[test]
fn set_read_only_on_mysql_can_leave_super_read_only_off_for_a_restore() {
    let (ro, sro) = (Rc::new(Cell::new(true)), Rc::new(Cell::new(true)));
    let (r, s_) = (ro.clone(), sro.clone());
    fake::install(move |_, s, _| match s {
        "SELECT @@global.read_only" => scalar(Val::Int(r.get() as i64)),
        "SHOW GLOBAL VARIABLES LIKE 'super_read_only'" => rows(
            &["Variable_name", "Value"],
            vec![vec![
                t("super_read_only"),
                t(if s_.get() { "ON" } else { "OFF" }),
            ]],
        ),
        "SET GLOBAL read_only = ON" => {
            r.set(true);
            ok()
        }
        "SET GLOBAL super_read_only = OFF" => {
            s_.set(false);
            ok()
        }
        other => panic!("unexpected statement {other}"),
    });
    let admin_only = json!({"server": "replica", "read_only": true, "super": false});
    assert_eq!(
        observe("set-read-only", admin_only.clone()),
        Ok(Observation::NotDone)
    );
    invoke("set-read-only", admin_only.clone()).unwrap();
    assert!(ro.get() && !sro.get());
    assert!(matches!(
        observe("set-read-only", admin_only),
        Ok(Observation::Done(_))
    ));
    // Fully read-only (the default) is not what holds now.
    let full = json!({"server": "replica", "read_only": true});
    assert_eq!(observe("set-read-only", full), Ok(Observation::NotDone));
}

/// A MariaDB replica: (source host, running) or not a replica.
type ReplicaState = Rc<RefCell<Option<(String, bool)>>>;

fn slave_status(state: &ReplicaState, sql_error: &str) -> Answer {
    match &*state.borrow() {
        None => ok(),
        Some((host, running)) => {
            let yn = |b: bool| t(if b { "Yes" } else { "No" });
            rows(
                &[
                    "Master_Host",
                    "Master_Port",
                    "Slave_IO_Running",
                    "Slave_SQL_Running",
                    "Using_Gtid",
                    "Gtid_IO_Pos",
                    "Last_IO_Error",
                    "Last_SQL_Error",
                    "Seconds_Behind_Master",
                ],
                vec![vec![
                    t(host),
                    Val::Int(3306),
                    yn(*running),
                    yn(*running),
                    t("Slave_Pos"),
                    t("0-1-9"),
                    t(""),
                    t(sql_error),
                    Val::Null,
                ]],
            )
        }
    }
}

#[test]
fn point_replica_stops_resets_positions_points_and_starts_in_order() {
    let state: ReplicaState = Rc::new(RefCell::new(Some(("10.0.0.9".into(), true))));
    let st = state.clone();
    fake::install(move |_, s, _| {
        if s.starts_with("SELECT VERSION()") {
            return version("10.11.6-MariaDB-log", "Debian 12");
        }
        if s.starts_with("CHANGE MASTER TO") {
            *st.borrow_mut() = Some(("10.0.0.1".into(), false));
            return ok();
        }
        match s {
            "SHOW SLAVE STATUS" => slave_status(&st, ""),
            "STOP SLAVE" | "START SLAVE" => {
                if let Some((_, running)) = st.borrow_mut().as_mut() {
                    *running = s == "START SLAVE";
                }
                ok()
            }
            "RESET MASTER" | "SET GLOBAL gtid_slave_pos = '0-1-5'" => ok(),
            "SELECT @@global.gtid_slave_pos" => scalar(t("0-1-5")),
            other => panic!("unexpected statement {other}"),
        }
    });
    fake::set_secret("repl-pw", "s3cr'et");
    let params = json!({
        "replica": "replica", "primary_host": "10.0.0.1", "primary_port": 3306,
        "user": "repl", "password_secret": "repl-pw", "gtid": "0-1-5", "reset_binlog": true
    });
    assert_eq!(
        observe("point-replica", params.clone()),
        Ok(Observation::NotDone)
    );
    let out = invoke("point-replica", params.clone()).unwrap();
    assert!(
        !out.to_string().contains("s3cr"),
        "the password leaked: {out}"
    );
    let mutations: Vec<String> = statements()
        .into_iter()
        .filter(|s| !s.contains("SHOW SLAVE STATUS") && !s.contains("SELECT @@"))
        .collect();
    assert_eq!(
        mutations,
        vec![
            "replica: STOP SLAVE".to_string(),
            "replica: RESET MASTER".into(),
            "replica: SET GLOBAL gtid_slave_pos = '0-1-5'".into(),
            "replica: CHANGE MASTER TO MASTER_HOST='10.0.0.1', MASTER_PORT=3306, MASTER_USER='repl', \
             MASTER_PASSWORD='s3cr''et', MASTER_USE_GTID=slave_pos"
                .into(),
            "replica: START SLAVE".into(),
        ]
    );
    assert!(matches!(
        observe("point-replica", params),
        Ok(Observation::Done(_))
    ));
}

#[test]
fn wait_caught_up_deadline_says_where_the_replica_got() {
    let state: ReplicaState = Rc::new(RefCell::new(Some(("10.0.0.1".into(), true))));
    let st = state.clone();
    fake::install(move |_, s, p| {
        if s.starts_with("SELECT VERSION()") {
            return version("10.11.6-MariaDB-log", "");
        }
        match s {
            "SHOW SLAVE STATUS" => slave_status(&st, ""),
            "SELECT @@global.gtid_slave_pos" => scalar(t("0-1-7")),
            "SELECT MASTER_GTID_WAIT(?, ?)" => {
                assert_eq!(p, &[t("0-1-10"), Val::UInt(5)]);
                scalar(Val::Int(-1))
            }
            other => panic!("unexpected statement {other}"),
        }
    });
    let err = invoke(
        "wait-caught-up",
        json!({"replica": "replica", "gtid": "0-1-10", "timeout_s": 5}),
    )
    .unwrap_err();
    assert!(err.retryable);
    for part in [
        "replica `replica` did not reach GTID `0-1-10` within 5s",
        "got to `0-1-7`",
        "3 behind",
    ] {
        assert!(
            err.message.contains(part),
            "{part:?} not in {}",
            err.message
        );
    }
    *state.borrow_mut() = None;
    let err = invoke(
        "wait-caught-up",
        json!({"replica": "replica", "gtid": "0-1-10"}),
    )
    .unwrap_err();
    assert!(!err.retryable);
    assert!(
        err.message.contains("is not replicating from anyone"),
        "{}",
        err.message
    );
    assert!(
        err.message.contains("run point-replica first"),
        "{}",
        err.message
    );
}

#[test]
fn start_replica_fails_with_the_sql_threads_error() {
    let state: ReplicaState = Rc::new(RefCell::new(Some(("10.0.0.1".into(), false))));
    let st = state.clone();
    fake::install(move |_, s, _| {
        if s.starts_with("SELECT VERSION()") {
            return version("10.11.6-MariaDB-log", "");
        }
        match s {
            "SHOW SLAVE STATUS" => slave_status(&st, "Duplicate entry '1' for key 'PRIMARY'"),
            "START SLAVE" => ok(),
            other => panic!("unexpected statement {other}"),
        }
    });
    let err = invoke("start-replica", json!({"server": "replica"})).unwrap_err();
    assert!(!err.retryable);
    assert!(err.message.contains("Duplicate entry"), "{}", err.message);
}

#[test]
fn kill_connections_spares_its_own_and_system_threads() {
    let alive = Rc::new(RefCell::new(vec![
        (10, "medic"),
        (11, "app"),
        (12, "system user"),
    ]));
    let a = alive.clone();
    fake::install(move |_, s, _| {
        if s.starts_with("SELECT ID AS id, USER AS user FROM information_schema.PROCESSLIST") {
            let list = a
                .borrow()
                .iter()
                .map(|&(id, u)| vec![Val::Int(id), t(u)])
                .collect();
            return rows(&["id", "user"], list);
        }
        match s {
            "SELECT CONNECTION_ID()" => scalar(Val::UInt(10)),
            "KILL CONNECTION 11" => {
                a.borrow_mut().retain(|(id, _)| *id != 11);
                ok()
            }
            other => panic!("unexpected statement {other}"),
        }
    });
    let params = json!({"server": "primary", "ids": [10, 11, 12, 13]});
    assert_eq!(
        observe("kill-connections", params.clone()),
        Ok(Observation::NotDone)
    );
    let out = invoke("kill-connections", params.clone()).unwrap();
    assert_eq!(out["killed"], json!([11]));
    assert_eq!(out["gone"], json!([13]));
    assert_eq!(out["skipped"], json!([10, 12]));
    alive.borrow_mut().retain(|(id, _)| *id != 10);
    assert!(matches!(
        observe("kill-connections", params),
        Ok(Observation::Done(_))
    ));
}

const CREATE_T: &str = "CREATE TABLE `t` (\n  `id` int NOT NULL,\n  `s` text,\n  `b` blob,\n  \
                        `g` int GENERATED ALWAYS AS (`id` * 2) VIRTUAL,\n  PRIMARY KEY (`id`)\n) ENGINE=InnoDB";

fn primary_with_three_rows() -> impl FnMut(&str, &str, &[Val]) -> Answer {
    let data = [
        vec![Val::Int(1), t("a;b'c"), Val::Bytes(vec![0, 1])],
        vec![Val::Int(2), Val::Null, Val::Null],
        vec![Val::Int(3), t("x\\y\n"), Val::Bytes(vec![0xff])],
    ];
    move |_, s, p| {
        if s.starts_with("SELECT VERSION()") {
            return version("10.11.6-MariaDB-log", "");
        }
        if s.starts_with("SET ")
            || s == "START TRANSACTION WITH CONSISTENT SNAPSHOT"
            || s == "COMMIT"
        {
            return ok();
        }
        if let Some(rest) = s.strip_prefix("SELECT `id`, `s`, `b` FROM `shop`.`t`") {
            let after = rest
                .split("WHERE `id` > ")
                .nth(1)
                .and_then(|r| r.split(' ').next())
                .map_or(0, |n| n.parse::<i64>().unwrap());
            let limit: usize = rest.rsplit(' ').next().unwrap().parse().unwrap();
            let picked = data
                .iter()
                .filter(|r| r[0].int().unwrap() > after)
                .take(limit)
                .cloned()
                .collect();
            return rows(&["id", "s", "b"], picked);
        }
        match s {
            "SHOW STATUS LIKE 'binlog_snapshot_%'" => rows(
                &["Variable_name", "Value"],
                vec![
                    vec![t("Binlog_snapshot_file"), t("bin.000001")],
                    vec![t("Binlog_snapshot_position"), t("1234")],
                ],
            ),
            "SELECT BINLOG_GTID_POS(?, ?)" => {
                assert_eq!(p, &[t("bin.000001"), Val::Int(1234)]);
                scalar(t("0-1-42"))
            }
            "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?" => {
                rows(&["SCHEMA_NAME"], vec![vec![t("shop")]])
            }
            "SHOW CREATE DATABASE `shop`" => rows(
                &["Database", "Create Database"],
                vec![vec![
                    t("shop"),
                    t("CREATE DATABASE `shop` /*!40100 DEFAULT CHARACTER SET utf8mb4 */"),
                ]],
            ),
            "SHOW CREATE TABLE `shop`.`t`" => {
                rows(&["Table", "Create Table"], vec![vec![t("t"), t(CREATE_T)]])
            }
            _ if s.starts_with("SELECT TABLE_NAME FROM information_schema.TABLES") => {
                rows(&["TABLE_NAME"], vec![vec![t("t")]])
            }
            _ if s.starts_with("SELECT COLUMN_NAME, EXTRA FROM information_schema.COLUMNS") => {
                rows(
                    &["COLUMN_NAME", "EXTRA"],
                    vec![
                        vec![t("id"), t("")],
                        vec![t("s"), t("")],
                        vec![t("b"), t("")],
                        vec![t("g"), t("VIRTUAL GENERATED")],
                    ],
                )
            }
            _ if s.starts_with("SELECT COLUMN_NAME FROM information_schema.KEY_COLUMN_USAGE") => {
                rows(&["COLUMN_NAME"], vec![vec![t("id")]])
            }
            other => panic!("unexpected statement {other}"),
        }
    }
}

#[test]
fn backup_then_restore_replays_the_same_rows_statement_by_statement() {
    fake::install(primary_with_three_rows());
    let out = invoke(
        "backup",
        json!({"server": "primary", "databases": ["shop"], "artifact": "dump.sql", "batch_rows": 2}),
    )
    .unwrap();
    assert_eq!(
        (
            out["tables"].clone(),
            out["rows"].clone(),
            out["gtid"].clone()
        ),
        (json!(1), json!(3), json!("0-1-42"))
    );
    let reads: Vec<String> = statements()
        .into_iter()
        .filter(|s| s.contains("FROM `shop`.`t`"))
        .collect();
    assert_eq!(reads.len(), 2, "{reads:?}");
    assert!(
        reads[1].contains("WHERE `id` > 2 ORDER BY `id` LIMIT 2"),
        "{}",
        reads[1]
    );
    assert_eq!(
        out["bytes"],
        json!(fake::artifact("dump.sql").unwrap().len())
    );

    fake::reinstall(|_, _, _| ok());
    let out = invoke(
        "restore",
        json!({"server": "replica", "artifact": "dump.sql"}),
    )
    .unwrap();
    let run: Vec<String> = statements();
    assert_eq!(
        run,
        vec![
            "replica: SET SESSION sql_log_bin = 0".to_string(),
            "replica: SET NAMES utf8mb4".into(),
            "replica: SET SESSION time_zone = '+00:00'".into(),
            "replica: SET SESSION sql_mode = 'NO_AUTO_VALUE_ON_ZERO'".into(),
            "replica: SET SESSION foreign_key_checks = 0".into(),
            "replica: SET SESSION unique_checks = 0".into(),
            "replica: CREATE DATABASE IF NOT EXISTS `shop` /*!40100 DEFAULT CHARACTER SET utf8mb4 */".into(),
            "replica: USE `shop`".into(),
            "replica: DROP TABLE IF EXISTS `t`".into(),
            format!("replica: {CREATE_T}"),
            "replica: INSERT INTO `t` (`id`,`s`,`b`) VALUES (1,'a;b''c',X'0001'),(2,NULL,NULL)".into(),
            "replica: INSERT INTO `t` (`id`,`s`,`b`) VALUES (3,'x\\\\y\\n',X'ff')".into(),
        ]
    );
    assert_eq!(out["statements"], json!(run.len() - 1));
}

#[test]
fn restore_of_a_truncated_dump_runs_nothing() {
    fake::install(primary_with_three_rows());
    invoke(
        "backup",
        json!({"server": "primary", "databases": ["shop"], "artifact": "d"}),
    )
    .unwrap();
    let whole = fake::artifact("d").unwrap();
    fake::reinstall(|_, _, _| ok());
    fake::put_artifact("d", &whole[..whole.len() - 30]);
    let err = invoke("restore", json!({"server": "replica", "artifact": "d"})).unwrap_err();
    assert!(err.message.contains("incomplete"), "{}", err.message);
    assert!(statements().is_empty(), "{:?}", statements());
    assert!(matches!(
        observe("restore", json!({"server": "replica", "artifact": "d"})),
        Ok(Observation::Unknown(_))
    ));
}

#[test]
fn checksum_compare_fails_naming_the_tables_that_differ() {
    fake::install(|c, s, _| {
        if s.starts_with("SELECT TABLE_SCHEMA, TABLE_NAME FROM information_schema.TABLES") {
            let mut list = vec![vec![t("shop"), t("a")], vec![t("mysql"), t("user")]];
            if c == "replica" {
                list.push(vec![t("shop"), t("extra")]);
            }
            return rows(&["TABLE_SCHEMA", "TABLE_NAME"], list);
        }
        assert_eq!(s, "CHECKSUM TABLE `shop`.`a`, `shop`.`extra` EXTENDED");
        let extra = if c == "replica" {
            Val::Int(7)
        } else {
            Val::Null
        };
        rows(
            &["Table", "Checksum"],
            vec![
                vec![t("shop.a"), Val::Int(99)],
                vec![t("shop.extra"), extra],
            ],
        )
    });
    let err = invoke("checksum-compare", json!({"a": "primary", "b": "replica"})).unwrap_err();
    assert!(
        err.message
            .starts_with("1 of 2 table(s) differ between `primary` and `replica`"),
        "{}",
        err.message
    );
    assert!(err.message.contains("shop.extra"), "{}", err.message);
    let out = invoke(
        "checksum-compare",
        json!({"a": "primary", "b": "replica", "fail_on_mismatch": false}),
    )
    .unwrap();
    assert_eq!(out["equal"], json!(false));
}

/// Plan mode (a dry run) of set-read-only: it reads the state, says what it would
/// change, and runs no statement that writes; an unreachable server is a failed
/// check, not an error.
#[test]
fn a_dry_run_of_set_read_only_only_reads_and_says_what_would_change() {
    fake::install(|_, s, _| match s {
        s if s.contains("SELECT VERSION()") => version("10.11.6-MariaDB", "mariadb.org binary"),
        "SELECT @@global.read_only" => scalar(Val::Int(0)),
        "SHOW GLOBAL VARIABLES LIKE 'super_read_only'" => ok(),
        other => panic!("a dry run ran {other}"),
    });
    let plan = Mysql::plan(
        &ctx(),
        "set-read-only",
        json!({"server": "primary", "read_only": true}),
    )
    .unwrap();
    assert!(plan.checked && plan.ok(), "{plan:?}");
    assert_eq!(
        plan.would,
        "SET GLOBAL read_only = ON on `primary` (now OFF)"
    );
    assert!(
        statements().iter().all(|s| {
            let st = s.split_once(": ").map_or(s.as_str(), |p| p.1);
            st.starts_with("SELECT") || st.starts_with("SHOW")
        }),
        "{:?}",
        statements()
    );

    fake::install(|_, _, _| {
        Err(SqlError {
            message: "connection refused".into(),
            code: None,
            retryable: true,
        })
    });
    let plan = Mysql::plan(&ctx(), "stop-replica", json!({"server": "replica"})).unwrap();
    assert!(!plan.ok(), "{plan:?}");
    assert!(
        plan.checks[0].detail.contains("connection refused"),
        "{plan:?}"
    );
}
