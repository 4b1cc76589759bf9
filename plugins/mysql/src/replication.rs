//! Replication actions: status, stop/start/reset, pointing a replica at a primary by
//! GTID, promotion, waiting for a position, capturing one, and picking the most
//! advanced of several replicas.

use std::time::{Duration, Instant};

use medic_sdk::{Action, Effect, Failure, Observation, Value, json};
use serde::Deserialize;

use crate::dialect::{Flavor, Kind};
use crate::gtid::{Position, compact};
use crate::host;
use crate::render::quote_str;
use crate::schema::{object, server_param};
use crate::server::Server;
use crate::status::ReplicaStatus;
use crate::value::Val;

fn replica_only() -> Value {
    object(&[("server", server_param())], &["server"])
}

pub fn actions() -> Vec<Action> {
    let out = |req: &[&str]| json!({"type": "object", "required": req});
    vec![
        Action::new("replication-status", Effect::ReadOnly)
            .description(
                "IO/SQL thread state, seconds behind, source, GTID positions and last errors; \
                 `replica: false` for a server that replicates from no one (a failure instead \
                 when require_running and the threads are not both running); with max_lag_s, \
                 a failure when the replica is further behind, or its lag is unknown",
            )
            .params(object(
                &[
                    ("server", server_param()),
                    (
                        "require_running",
                        json!({"type": "boolean", "default": false}),
                    ),
                    (
                        "max_lag_s",
                        json!({"type": "integer", "minimum": 0,
                               "description": "fail (retryable) when seconds behind the primary exceed this, or are unknown; implies require_running"}),
                    ),
                ],
                &["server"],
            ))
            .output(out(&["server", "replica"])),
        Action::new("stop-replica", Effect::Idempotent)
            .description("Stops both replication threads (STOP SLAVE / STOP REPLICA)")
            .params(replica_only())
            .output(out(&["server", "replica"]))
            .inverse("start-replica"),
        Action::new("start-replica", Effect::Idempotent)
            .description(
                "Starts both replication threads and waits up to wait_s for them to run; \
                 fails with the thread's last error if one stops",
            )
            .params(object(
                &[
                    ("server", server_param()),
                    (
                        "wait_s",
                        json!({"type": "integer", "minimum": 0, "default": 10}),
                    ),
                ],
                &["server"],
            ))
            .output(out(&["server", "replica"]))
            .inverse("stop-replica"),
        Action::new("reset-replica", Effect::Idempotent)
            .description(
                "RESET SLAVE / RESET REPLICA (relay logs and position); with all: true also \
                 forgets the source. The threads must be stopped first.",
            )
            .params(object(
                &[
                    ("server", server_param()),
                    ("all", json!({"type": "boolean", "default": false})),
                ],
                &["server"],
            ))
            .output(out(&["server", "all"])),
        Action::new("point-replica", Effect::Mutating)
            .description(
                "Stops the replica, optionally sets its GTID position (MariaDB gtid_slave_pos; \
                 MySQL gtid_purged when it has executed nothing), points it at \
                 primary_host:primary_port by GTID (MASTER_USE_GTID=slave_pos / \
                 SOURCE_AUTO_POSITION=1) with the password read from secret password_secret, \
                 and starts it unless start: false. reset_binlog: true first discards the \
                 replica's own binlogs and GTID history (RESET MASTER), as a replica just \
                 rebuilt from a backup needs",
            )
            .params(object(
                &[
                    ("replica", server_param()),
                    ("primary_host", json!({"type": "string", "minLength": 1})),
                    (
                        "primary_port",
                        json!({"type": "integer", "minimum": 1, "maximum": 65535}),
                    ),
                    ("user", json!({"type": "string", "minLength": 1})),
                    ("password_secret", json!({"type": "string", "minLength": 1})),
                    ("gtid", json!({"type": "string"})),
                    ("reset_binlog", json!({"type": "boolean", "default": false})),
                    ("start", json!({"type": "boolean", "default": true})),
                ],
                &[
                    "replica",
                    "primary_host",
                    "primary_port",
                    "user",
                    "password_secret",
                ],
            ))
            .output(out(&[
                "replica",
                "primary_host",
                "primary_port",
                "gtid",
                "started",
            ])),
        Action::new("promote", Effect::Mutating)
            .description(
                "Makes a replica a primary: waits up to drain_timeout_s for its relay log to be \
                 applied, stops and resets it (RESET ... ALL), and turns read_only off",
            )
            .params(object(
                &[
                    ("replica", server_param()),
                    (
                        "drain_timeout_s",
                        json!({"type": "integer", "minimum": 0, "default": 60}),
                    ),
                ],
                &["replica"],
            ))
            .output(out(&["server", "gtid", "read_only"])),
        Action::new("wait-caught-up", Effect::ReadOnly)
            .description(
                "Waits until the replica has applied GTID position gtid (MASTER_GTID_WAIT / \
                 WAIT_FOR_EXECUTED_GTID_SET), at most timeout_s; the failure says where it got",
            )
            .params(object(
                &[
                    ("replica", server_param()),
                    ("gtid", json!({"type": "string"})),
                    (
                        "timeout_s",
                        json!({"type": "integer", "minimum": 0, "default": 300}),
                    ),
                ],
                &["replica", "gtid"],
            ))
            .output(out(&["replica", "gtid", "position"])),
        Action::new("capture-position", Effect::ReadOnly)
            .description(
                "The server's binlog file, offset and GTID position, read consistently under \
                 FLUSH TABLES WITH READ LOCK (held only within this call) unless lock: false",
            )
            .params(object(
                &[
                    ("server", server_param()),
                    ("lock", json!({"type": "boolean", "default": true})),
                ],
                &["server"],
            ))
            .output(out(&["server", "flavor", "gtid"])),
        Action::new("most-advanced", Effect::ReadOnly)
            .description(
                "Of the given servers (unreachable ones skipped), the one whose executed GTID \
                 position contains every other's; fails when positions diverged",
            )
            .params(object(
                &[(
                    "servers",
                    json!({"type": "array", "items": server_param(), "minItems": 1}),
                )],
                &["servers"],
            ))
            .output(out(&["server", "gtid", "positions", "unreachable"])),
    ]
}

pub fn invoke(action: &str, params: Value) -> Option<Result<Value, Failure>> {
    Some(match action {
        "replication-status" => replication_status(action, params),
        "stop-replica" => stop_replica(action, params),
        "start-replica" => start_replica(action, params),
        "reset-replica" => reset_replica(action, params),
        "point-replica" => point_replica(action, params),
        "promote" => promote(action, params),
        "wait-caught-up" => wait_caught_up(action, params),
        "capture-position" => capture_position(action, params),
        "most-advanced" => most_advanced(action, params),
        _ => return None,
    })
}

pub fn observe(action: &str, params: Value) -> Option<Result<Observation, Failure>> {
    Some(match action {
        "replication-status" | "wait-caught-up" | "capture-position" | "most-advanced" => {
            Ok(Observation::NotDone)
        }
        "stop-replica" => observe_threads(action, params, false),
        "start-replica" => observe_threads(action, params, true),
        "reset-replica" => observe_reset(action, params),
        "point-replica" => observe_point(action, params),
        "promote" => observe_promote(action, params),
        _ => return None,
    })
}

/// What the replica has applied: MariaDB `gtid_slave_pos` (what MASTER_GTID_WAIT
/// waits on), MySQL `gtid_executed`.
fn applied(s: &Server, flavor: Flavor) -> Result<String, Failure> {
    let text = match flavor.kind {
        Kind::MariaDb => s.text("reading gtid_slave_pos", "SELECT @@global.gtid_slave_pos")?,
        Kind::MySql => s.text("reading gtid_executed", flavor.executed_gtid())?,
    };
    Ok(compact(&text))
}

fn status_json(s: &Server, st: &ReplicaStatus) -> Result<Value, Failure> {
    let flavor = s.flavor()?;
    let mut out = st.to_json();
    out["server"] = json!(s.name);
    out["gtid"] = match flavor.kind {
        Kind::MariaDb => json!({
            "slave_pos": applied(s, flavor)?,
            "io_pos": st.retrieved_gtid,
        }),
        Kind::MySql => json!({
            "retrieved": st.retrieved_gtid,
            "executed": if st.executed_gtid.is_empty() { applied(s, flavor)? } else { st.executed_gtid.clone() },
        }),
    };
    Ok(out)
}

fn not_a_replica(s: &Server) -> Value {
    json!({
        "server": s.name,
        "replica": false,
        "message": format!("`{}` is not a replica: it replicates from no one", s.name),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StatusParams {
    server: String,
    #[serde(default)]
    require_running: bool,
    #[serde(default)]
    max_lag_s: Option<u64>,
}

fn replication_status(action: &str, params: Value) -> Result<Value, Failure> {
    let p: StatusParams = medic_sdk::params(action, params)?;
    let s = Server::new(&p.server);
    let require_running = p.require_running || p.max_lag_s.is_some();
    let status = s.replica_status()?;
    if let (Some(max), Some(st)) = (p.max_lag_s, &status)
        && st.io_running()
        && st.sql_running
    {
        check_lag(&s.name, st.seconds_behind, max)?;
    }
    match status {
        None if require_running => Err(s.fail("is not a replica: run point-replica first")),
        None => Ok(not_a_replica(&s)),
        Some(st) if require_running && !(st.io_running() && st.sql_running) => {
            Err(Failure::permanent(format!(
                "replica `{}` is not replicating (IO thread: {}, SQL thread running: {}){}",
                s.name,
                st.io_state,
                st.sql_running,
                errors_suffix(&st)
            )))
        }
        Some(st) => status_json(&s, &st),
    }
}

/// A lag audit: `seconds_behind` within `max`. Too far behind is retryable (a replica
/// catching up after a burst passes on a later attempt); an unknown lag fails too,
/// since an audit that cannot see the lag must not pass.
fn check_lag(name: &str, behind: Option<i64>, max: u64) -> Result<(), Failure> {
    match behind {
        Some(b) if b <= max as i64 => Ok(()),
        Some(b) => Err(Failure::retryable(format!(
            "replica `{name}` is {b} s behind its primary, more than max_lag_s = {max}: look \
             for long transactions or load on it (long-transactions), or a slow disk"
        ))),
        None => Err(Failure::retryable(format!(
            "replica `{name}`: its lag is unknown (Seconds_Behind_Master is NULL) although both \
             threads run; try again in a moment"
        ))),
    }
}

fn errors_suffix(st: &ReplicaStatus) -> String {
    let e = st.errors();
    if e.is_empty() {
        String::new()
    } else {
        format!("; last errors: {e}")
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Threads {
    server: String,
    #[serde(default = "ten")]
    wait_s: u64,
}

fn ten() -> u64 {
    10
}

fn stop_replica(action: &str, params: Value) -> Result<Value, Failure> {
    let p: Threads = medic_sdk::params(action, params)?;
    let s = Server::new(&p.server);
    let flavor = s.flavor()?;
    if s.replica_status()?.is_none() {
        return Ok(not_a_replica(&s));
    }
    s.query("stopping replication", &flavor.stop_replica())?;
    let st = s.require_replica("stop")?;
    status_json(&s, &st)
}

fn start_replica(action: &str, params: Value) -> Result<Value, Failure> {
    let p: Threads = medic_sdk::params(action, params)?;
    let s = Server::new(&p.server);
    let flavor = s.flavor()?;
    s.require_replica("start replicating")?;
    s.query("starting replication", &flavor.start_replica())?;
    let st = wait_running(&s, Duration::from_secs(p.wait_s))?;
    status_json(&s, &st)
}

/// Polls until both threads run; a thread stopped with an error fails at once.
fn wait_running(s: &Server, wait: Duration) -> Result<ReplicaStatus, Failure> {
    let start = Instant::now();
    loop {
        let st = s.require_replica("start replicating")?;
        if st.io_running() && st.sql_running {
            return Ok(st);
        }
        if !st.sql_running && !st.last_sql_error.is_empty() {
            return Err(Failure::permanent(format!(
                "replica `{}`: the SQL thread stopped: {}; fix the cause (e.g. rebuild with \
                 replica-resync) and start-replica again",
                s.name, st.last_sql_error
            )));
        }
        if st.io_login_refused() {
            return Err(Failure::permanent(format!(
                "replica `{}`: the primary refuses its replication login: {}; check the \
                 replication user and its password secret, then point-replica again",
                s.name, st.last_io_error
            )));
        }
        if start.elapsed() >= wait {
            return Err(Failure::retryable(format!(
                "replica `{}` did not start replicating within {}s (IO thread: {}, SQL thread \
                 running: {}){}",
                s.name,
                wait.as_secs(),
                st.io_state,
                st.sql_running,
                errors_suffix(&st)
            )));
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn observe_threads(action: &str, params: Value, running: bool) -> Result<Observation, Failure> {
    let p: Threads = medic_sdk::params(action, params)?;
    let s = Server::new(&p.server);
    Ok(match s.replica_status()? {
        None if !running => Observation::Done(not_a_replica(&s)),
        None => Observation::NotDone,
        Some(st) if running && st.io_running() && st.sql_running => {
            Observation::Done(status_json(&s, &st)?)
        }
        Some(st) if !running && st.stopped() => Observation::Done(status_json(&s, &st)?),
        Some(_) => Observation::NotDone,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Reset {
    server: String,
    #[serde(default)]
    all: bool,
}

fn reset_replica(action: &str, params: Value) -> Result<Value, Failure> {
    let p: Reset = medic_sdk::params(action, params)?;
    let s = Server::new(&p.server);
    let flavor = s.flavor()?;
    match s.replica_status()? {
        None if p.all => return Ok(json!({"server": s.name, "all": true, "replica": false})),
        Some(st) if !st.stopped() => {
            return Err(s.fail(format!(
                "its replication threads are running (IO: {}, SQL running: {}): run stop-replica \
                 before reset-replica",
                st.io_state, st.sql_running
            )));
        }
        _ => {}
    }
    s.query("resetting the replica", &flavor.reset_replica(p.all))?;
    Ok(json!({"server": s.name, "all": p.all, "replica": s.replica_status()?.is_some()}))
}

fn observe_reset(action: &str, params: Value) -> Result<Observation, Failure> {
    let p: Reset = medic_sdk::params(action, params)?;
    let s = Server::new(&p.server);
    if !p.all {
        return Ok(Observation::Unknown(
            "a reset without `all` leaves no trace to tell it happened; it is safe to run again"
                .into(),
        ));
    }
    Ok(match s.replica_status()? {
        None => Observation::Done(json!({"server": s.name, "all": true, "replica": false})),
        Some(_) => Observation::NotDone,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Point {
    replica: String,
    primary_host: String,
    primary_port: u16,
    user: String,
    password_secret: String,
    gtid: Option<String>,
    #[serde(default)]
    reset_binlog: bool,
    #[serde(default = "yes")]
    start: bool,
}

fn yes() -> bool {
    true
}

fn point_replica(action: &str, params: Value) -> Result<Value, Failure> {
    let p: Point = medic_sdk::params(action, params)?;
    let s = Server::new(&p.replica);
    let flavor = s.flavor()?;
    let gtid =
        match p.gtid.as_deref().map(str::trim).filter(|g| !g.is_empty()) {
            Some(g) => Some(Position::parse(flavor.kind, g).map_err(|e| {
                Failure::permanent(format!("point-replica `{}`: gtid: {e}", s.name))
            })?),
            None => None,
        };
    let password = host::secret(&p.password_secret).map_err(|e| {
        Failure::permanent(format!(
            "point-replica `{}`: cannot read secret `{}`: {e}",
            s.name, p.password_secret
        ))
    })?;
    if let Some(st) = s.replica_status()?
        && !st.stopped()
    {
        s.query(
            "stopping replication before re-pointing",
            &flavor.stop_replica(),
        )?;
    }
    if p.reset_binlog {
        s.query(
            "discarding the replica's own binlog history",
            flavor.reset_binlog(),
        )?;
    }
    if let Some(g) = &gtid {
        set_position(&s, flavor, g)?;
    }
    s.query(
        "pointing the replica at the primary",
        &flavor.change_source(&p.primary_host, p.primary_port, &p.user, &password),
    )?;
    if p.start {
        s.query("starting replication", &flavor.start_replica())?;
        wait_running(&s, Duration::from_secs(10))?;
    }
    Ok(json!({
        "replica": s.name,
        "primary_host": p.primary_host,
        "primary_port": p.primary_port,
        "gtid": applied(&s, flavor)?,
        "started": p.start,
    }))
}

/// Makes the replica start from `g`: what a restore from a backup taken at `g` needs.
fn set_position(s: &Server, flavor: Flavor, g: &Position) -> Result<(), Failure> {
    match flavor.kind {
        Kind::MariaDb => {
            s.query(
                "setting gtid_slave_pos",
                &format!("SET GLOBAL gtid_slave_pos = {}", quote_str(&g.to_string())),
            )?;
        }
        Kind::MySql => {
            let executed = applied(s, flavor)?;
            let at = Position::parse(flavor.kind, &executed).map_err(|e| s.fail(e))?;
            if at.contains(g) {
                return Ok(());
            }
            if !at.is_empty() {
                return Err(s.fail(format!(
                    "it has executed `{executed}`, which does not contain `{g}`: MySQL can only \
                     take a GTID position on a replica with an empty history: pass \
                     reset_binlog: true for a replica restored from the backup taken at that \
                     position, or omit gtid"
                )));
            }
            s.query(
                "setting gtid_purged",
                &format!("SET GLOBAL gtid_purged = {}", quote_str(&g.to_string())),
            )?;
        }
    }
    Ok(())
}

fn observe_point(action: &str, params: Value) -> Result<Observation, Failure> {
    let p: Point = medic_sdk::params(action, params)?;
    let s = Server::new(&p.replica);
    let flavor = s.flavor()?;
    Ok(match s.replica_status()? {
        Some(st)
            if st.source_host == p.primary_host
                && st.source_port == p.primary_port
                && st.uses_gtid
                && (!p.start || (st.io_running() && st.sql_running)) =>
        {
            Observation::Done(json!({
                "replica": s.name,
                "primary_host": p.primary_host,
                "primary_port": p.primary_port,
                "gtid": applied(&s, flavor)?,
                "started": p.start,
            }))
        }
        _ => Observation::NotDone,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Promote {
    replica: String,
    #[serde(default = "sixty")]
    drain_timeout_s: u64,
}

fn sixty() -> u64 {
    60
}

fn promote(action: &str, params: Value) -> Result<Value, Failure> {
    let p: Promote = medic_sdk::params(action, params)?;
    let s = Server::new(&p.replica);
    let flavor = s.flavor()?;
    let mut was = Value::Null;
    if let Some(st) = s.replica_status()? {
        was = json!(format!("{}:{}", st.source_host, st.source_port));
        // Transactions already fetched into the relay log are applied before the
        // reset throws it away; losing them would lose acknowledged writes.
        if st.sql_running && !st.retrieved_gtid.is_empty() {
            let reached = s
                .query_with(
                    "applying the relay log before promotion",
                    flavor.wait_for_gtid(),
                    &[
                        Val::Text(st.retrieved_gtid.clone()),
                        Val::UInt(p.drain_timeout_s),
                    ],
                )?
                .scalar()
                .and_then(Val::int);
            if reached != Some(0) {
                return Err(Failure::retryable(format!(
                    "replica `{}` did not apply its relay log up to `{}` within {}s (it is at `{}`): \
                     not promoting it, so no fetched transaction is lost",
                    s.name,
                    st.retrieved_gtid,
                    p.drain_timeout_s,
                    applied(&s, flavor)?
                )));
            }
        }
        if !st.sql_running && !st.retrieved_gtid.is_empty() {
            let at = applied(&s, flavor)?;
            let fetched =
                Position::parse(flavor.kind, &st.retrieved_gtid).map_err(|e| s.fail(e))?;
            let applied_pos = Position::parse(flavor.kind, &at).map_err(|e| s.fail(e))?;
            if !applied_pos.contains(&fetched) {
                return Err(Failure::permanent(format!(
                    "replica `{}` fetched transactions it has not applied ({}) and its SQL thread \
                     is stopped{}: promoting it would lose them; fix the cause and start-replica, \
                     or pick another replica",
                    s.name,
                    applied_pos.missing(&fetched),
                    errors_suffix(&st)
                )));
            }
        }
        s.query("stopping replication for promotion", &flavor.stop_replica())?;
        s.query("forgetting the old primary", &flavor.reset_replica(true))?;
    }
    if s.query(
        "looking for super_read_only",
        "SHOW GLOBAL VARIABLES LIKE 'super_read_only'",
    )?
    .rows
    .len()
        == 1
    {
        s.query(
            "resuming writes (super_read_only)",
            "SET GLOBAL super_read_only = OFF",
        )?;
    }
    s.query("resuming writes (read_only)", "SET GLOBAL read_only = OFF")?;
    Ok(json!({
        "server": s.name,
        "gtid": compact(&s.text("reading the new primary's position", flavor.binlog_gtid())?),
        "read_only": false,
        "was_replica_of": was,
    }))
}

fn observe_promote(action: &str, params: Value) -> Result<Observation, Failure> {
    let p: Promote = medic_sdk::params(action, params)?;
    let s = Server::new(&p.replica);
    let flavor = s.flavor()?;
    let ro = s
        .query("reading @@read_only", "SELECT @@global.read_only")?
        .scalar()
        .and_then(Val::flag)
        .unwrap_or(true);
    Ok(if s.replica_status()?.is_none() && !ro {
        Observation::Done(json!({
            "server": s.name,
            "gtid": compact(&s.text("reading the position", flavor.binlog_gtid())?),
            "read_only": false,
            "was_replica_of": null,
        }))
    } else {
        Observation::NotDone
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Wait {
    replica: String,
    gtid: String,
    #[serde(default = "three_hundred")]
    timeout_s: u64,
}

fn three_hundred() -> u64 {
    300
}

fn wait_caught_up(action: &str, params: Value) -> Result<Value, Failure> {
    let p: Wait = medic_sdk::params(action, params)?;
    let s = Server::new(&p.replica);
    let flavor = s.flavor()?;
    let want = Position::parse(flavor.kind, &p.gtid)
        .map_err(|e| Failure::permanent(format!("wait-caught-up `{}`: gtid: {e}", s.name)))?;
    let st = s.require_replica("catch up")?;
    let done = |position: String| json!({"replica": s.name, "gtid": p.gtid, "position": position});
    let at = applied(&s, flavor)?;
    if Position::parse(flavor.kind, &at).is_ok_and(|a| a.contains(&want)) {
        return Ok(done(at));
    }
    if !st.sql_running {
        return Err(Failure::permanent(format!(
            "replica `{}` is at `{at}` and its SQL thread is stopped, so it will never reach \
             `{}`{}: fix the cause and run start-replica",
            s.name,
            p.gtid,
            errors_suffix(&st)
        )));
    }
    let started = Instant::now();
    let result = s
        .query_with(
            "waiting for the replica to catch up",
            flavor.wait_for_gtid(),
            &[Val::Text(p.gtid.clone()), Val::UInt(p.timeout_s)],
        )?
        .scalar()
        .and_then(Val::int);
    let at = applied(&s, flavor)?;
    if result == Some(0) {
        return Ok(done(at));
    }
    let missing = Position::parse(flavor.kind, &at)
        .map(|a| a.missing(&want))
        .unwrap_or_default();
    let st = s.replica_status()?;
    let threads = st.as_ref().map_or("no longer a replica".to_string(), |st| {
        format!(
            "IO thread: {}, SQL thread running: {}{}",
            st.io_state,
            st.sql_running,
            errors_suffix(st)
        )
    });
    Err(Failure::retryable(format!(
        "replica `{}` did not reach GTID `{}` within {}s (waited {}s): it got to `{at}` ({missing}); {threads}",
        s.name,
        p.gtid,
        p.timeout_s,
        started.elapsed().as_secs()
    )))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Capture {
    server: String,
    #[serde(default = "yes")]
    lock: bool,
}

fn capture_position(action: &str, params: Value) -> Result<Value, Failure> {
    let p: Capture = medic_sdk::params(action, params)?;
    let s = Server::new(&p.server);
    let flavor = s.flavor()?;
    if p.lock {
        // Session-scoped: released by UNLOCK below or when the call's session ends.
        s.query(
            "locking tables to read a consistent position",
            "FLUSH TABLES WITH READ LOCK",
        )?;
    }
    let read = || -> Result<Value, Failure> {
        let binlog = s.query("reading the binlog position", flavor.show_binlog_status())?;
        let mut gtid = s.text("reading the GTID position", flavor.binlog_gtid())?;
        if gtid.is_empty() && flavor.kind == Kind::MariaDb {
            gtid = s.text("reading the GTID position", flavor.executed_gtid())?;
        }
        Ok(json!({
            "server": s.name,
            "flavor": flavor.name(),
            "gtid": compact(&gtid),
            "binlog_file": binlog.get(0, &["File"]).and_then(Val::text),
            "binlog_pos": binlog.get(0, &["Position"]).and_then(Val::int),
        }))
    };
    let out = read();
    if p.lock {
        s.query("unlocking tables", "UNLOCK TABLES")?;
    }
    out
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Many {
    servers: Vec<String>,
}

fn most_advanced(action: &str, params: Value) -> Result<Value, Failure> {
    let p: Many = medic_sdk::params(action, params)?;
    let mut positions = Vec::new();
    let mut unreachable = Vec::new();
    for name in &p.servers {
        let s = Server::new(name);
        let read = s.flavor().and_then(|f| {
            let text = compact(&s.text("reading the executed position", f.executed_gtid())?);
            let pos = Position::parse(f.kind, &text).map_err(|e| s.fail(e))?;
            Ok((text, pos))
        });
        match read {
            Ok((text, pos)) => positions.push((name.clone(), text, pos)),
            Err(f) => unreachable.push(json!({"server": name, "error": f.message})),
        }
    }
    let all: serde_json::Map<String, Value> = positions
        .iter()
        .map(|(n, t, _)| (n.clone(), json!(t)))
        .collect();
    let best = pick_most_advanced(
        &positions
            .iter()
            .map(|(n, _, p)| (n.as_str(), p))
            .collect::<Vec<_>>(),
    );
    match best {
        Some(i) => Ok(json!({
            "server": positions[i].0,
            "gtid": positions[i].1,
            "positions": all,
            "unreachable": unreachable,
        })),
        None if positions.is_empty() => Err(Failure::retryable(format!(
            "none of {:?} answered: {}",
            p.servers,
            Value::Array(unreachable)
        ))),
        None => Err(Failure::permanent(format!(
            "the replicas' positions diverged, none contains all others ({}): pick one by hand",
            Value::Object(all)
        ))),
    }
}

/// Index of the first position that contains every other, if any.
pub fn pick_most_advanced(positions: &[(&str, &Position)]) -> Option<usize> {
    positions
        .iter()
        .position(|(_, p)| positions.iter().all(|(_, q)| p.contains(q)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gtid_most_advanced_is_the_one_containing_all_others() {
        let a = Position::parse(Kind::MariaDb, "0-1-10").unwrap();
        let b = Position::parse(Kind::MariaDb, "0-1-12").unwrap();
        let c = Position::parse(Kind::MariaDb, "0-1-11").unwrap();
        assert_eq!(
            pick_most_advanced(&[("a", &a), ("b", &b), ("c", &c)]),
            Some(1)
        );
        let d = Position::parse(Kind::MariaDb, "0-1-5,1-3-4").unwrap();
        assert_eq!(pick_most_advanced(&[("b", &b), ("d", &d)]), None);
        assert_eq!(pick_most_advanced(&[]), None);
    }
}

#[cfg(test)]
mod lag_tests {
    use super::check_lag;

    #[test]
    fn lag_audit_passes_within_the_bound_and_fails_beyond_or_unknown() {
        assert!(check_lag("replica", Some(0), 30).is_ok());
        assert!(check_lag("replica", Some(30), 30).is_ok());
        let over = check_lag("replica", Some(31), 30).unwrap_err();
        assert!(
            over.retryable
                && over.message.contains("31 s behind")
                && over.message.contains("max_lag_s = 30"),
            "{over:?}"
        );
        let unknown = check_lag("replica", None, 30).unwrap_err();
        assert!(unknown.message.contains("unknown"), "{unknown:?}");
    }
}
