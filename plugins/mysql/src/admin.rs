//! Server-level actions: `status`, `set-read-only` (pausing and resuming writes),
//! `long-transactions` and `kill-connections`.

use medic_sdk::{Action, Effect, Failure, Observation, Value, json};
use serde::Deserialize;

use crate::dialect::Kind;
use crate::schema::{object, server_param};
use crate::server::Server;
use crate::value::Val;

pub fn actions() -> Vec<Action> {
    vec![
        Action::new("status", Effect::ReadOnly)
            .description(
                "Version, flavor, server_id, read_only, uptime, GTID positions and whether \
                 the server is a replica",
            )
            .params(object(&[("server", server_param())], &["server"]))
            .output(json!({"type": "object", "required": ["server", "flavor", "version", "read_only", "gtid"]})),
        Action::new("set-read-only", Effect::Idempotent)
            .description(
                "Pauses (read_only: true) or resumes (false) writes: @@read_only, plus \
                 @@super_read_only where the server has it (MySQL); super: false keeps it \
                 off, so administrators can still write (a restore). \
                 MariaDB lets users with READ_ONLY ADMIN (root) write regardless.",
            )
            .params(object(
                &[
                    ("server", server_param()),
                    ("read_only", json!({"type": "boolean"})),
                    ("super", json!({"type": "boolean", "default": true})),
                ],
                &["server", "read_only"],
            ))
            .output(json!({"type": "object", "required": ["server", "read_only"]}))
            .inverse("set-read-only"),
        Action::new("long-transactions", Effect::ReadOnly)
            .description(
                "InnoDB transactions open longer than min_seconds, oldest first, with their \
                 connection (information_schema.innodb_trx joined to the processlist)",
            )
            .params(object(
                &[
                    ("server", server_param()),
                    ("min_seconds", json!({"type": "integer", "minimum": 0, "default": 60})),
                ],
                &["server"],
            ))
            .output(json!({"type": "object", "required": ["server", "transactions", "ids"]})),
        Action::new("kill-connections", Effect::Idempotent)
            .description(
                "KILL CONNECTION for each id (their transactions roll back); ids already gone \
                 are reported, never this call's own connection or system threads",
            )
            .params(object(
                &[
                    ("server", server_param()),
                    ("ids", json!({"type": "array", "items": {"type": "integer", "minimum": 1}})),
                ],
                &["server", "ids"],
            ))
            .output(json!({"type": "object", "required": ["server", "killed", "gone", "skipped"]})),
    ]
}

pub fn invoke(action: &str, params: Value) -> Option<Result<Value, Failure>> {
    Some(match action {
        "status" => status(action, params),
        "set-read-only" => set_read_only(action, params),
        "long-transactions" => long_transactions(action, params),
        "kill-connections" => kill_connections(action, params),
        _ => return None,
    })
}

pub fn observe(action: &str, params: Value) -> Option<Result<Observation, Failure>> {
    Some(match action {
        "status" | "long-transactions" => Ok(Observation::NotDone),
        "set-read-only" => observe_read_only(action, params),
        "kill-connections" => observe_kill(action, params),
        _ => return None,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OnServer {
    server: String,
}

fn status(action: &str, params: Value) -> Result<Value, Failure> {
    let p: OnServer = medic_sdk::params(action, params)?;
    let s = Server::new(&p.server);
    let flavor = s.flavor()?;
    let rows = s.query(
        "reading the server's identity",
        "SELECT VERSION() AS version, @@version_comment AS version_comment, @@server_id AS server_id, \
         @@global.read_only AS read_only",
    )?;
    let get = |c: &str| rows.get(0, &[c]).cloned().unwrap_or(Val::Null);
    let uptime = s
        .query("reading the uptime", "SHOW GLOBAL STATUS LIKE 'Uptime'")?
        .get(0, &["Value"])
        .and_then(Val::int);
    let (read_only, super_read_only) = read_only_state(&s)?;
    let gtid = match flavor.kind {
        Kind::MariaDb => json!({
            "binlog": s.text("reading gtid_binlog_pos", "SELECT @@global.gtid_binlog_pos")?,
            "current": s.text("reading gtid_current_pos", "SELECT @@global.gtid_current_pos")?,
            "slave": s.text("reading gtid_slave_pos", "SELECT @@global.gtid_slave_pos")?,
        }),
        Kind::MySql => json!({
            "executed": s.text("reading gtid_executed", "SELECT @@global.gtid_executed")?,
            "purged": s.text("reading gtid_purged", "SELECT @@global.gtid_purged")?,
        }),
    };
    let replica = s.replica_status()?.is_some();
    Ok(json!({
        "server": s.name,
        "flavor": flavor.name(),
        "version": get("version").text(),
        "version_comment": get("version_comment").text(),
        "server_id": get("server_id").int(),
        "read_only": read_only,
        "super_read_only": super_read_only,
        "uptime_s": uptime,
        "gtid": gtid,
        "replica": replica,
    }))
}

/// (@@read_only, @@super_read_only or None where the server has no such variable).
pub(crate) fn read_only_state(s: &Server) -> Result<(bool, Option<bool>), Failure> {
    let ro = s
        .query("reading @@read_only", "SELECT @@global.read_only")?
        .scalar()
        .and_then(Val::flag)
        .unwrap_or(false);
    let sro = s
        .query(
            "looking for super_read_only",
            "SHOW GLOBAL VARIABLES LIKE 'super_read_only'",
        )?
        .get(0, &["Value"])
        .and_then(Val::flag);
    Ok((ro, sro))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReadOnly {
    server: String,
    read_only: bool,
    /// `super` in params: also set super_read_only where the server has it.
    #[serde(default = "yes", rename = "super")]
    with_super: bool,
}

fn yes() -> bool {
    true
}

fn read_only_output(s: &Server, ro: bool, sro: Option<bool>) -> Value {
    json!({"server": s.name, "read_only": ro, "super_read_only": sro})
}

fn set_read_only(action: &str, params: Value) -> Result<Value, Failure> {
    let p: ReadOnly = medic_sdk::params(action, params)?;
    let s = Server::new(&p.server);
    let (_, sro) = read_only_state(&s)?;
    let has_super = sro.is_some();
    if p.read_only {
        if has_super && p.with_super {
            // super_read_only=ON sets read_only too, atomically.
            s.query(
                "pausing writes (super_read_only)",
                "SET GLOBAL super_read_only = ON",
            )?;
        } else {
            s.query("pausing writes (read_only)", "SET GLOBAL read_only = ON")?;
            if has_super {
                // Read-only for applications, writable for administrators (a restore).
                s.query(
                    "letting administrators write (super_read_only)",
                    "SET GLOBAL super_read_only = OFF",
                )?;
            }
        }
    } else {
        if has_super {
            s.query(
                "resuming writes (super_read_only)",
                "SET GLOBAL super_read_only = OFF",
            )?;
        }
        s.query("resuming writes (read_only)", "SET GLOBAL read_only = OFF")?;
    }
    let (ro, sro) = read_only_state(&s)?;
    if ro != p.read_only {
        return Err(s.fail(format!(
            "@@read_only is still {ro} after setting it to {}",
            p.read_only
        )));
    }
    Ok(read_only_output(&s, ro, sro))
}

fn observe_read_only(action: &str, params: Value) -> Result<Observation, Failure> {
    let p: ReadOnly = medic_sdk::params(action, params)?;
    let s = Server::new(&p.server);
    let (ro, sro) = read_only_state(&s)?;
    let super_ok = match (p.read_only, p.with_super, sro) {
        (true, true, Some(on)) => on,
        (true, false, Some(on)) | (false, _, Some(on)) => !on,
        (_, _, None) => true,
    };
    Ok(if ro == p.read_only && super_ok {
        Observation::Done(read_only_output(&s, ro, sro))
    } else {
        Observation::NotDone
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LongTrx {
    server: String,
    #[serde(default = "sixty")]
    min_seconds: u64,
}

fn sixty() -> u64 {
    60
}

fn long_transactions(action: &str, params: Value) -> Result<Value, Failure> {
    let p: LongTrx = medic_sdk::params(action, params)?;
    let s = Server::new(&p.server);
    let rows = s.query_with(
        "listing long transactions",
        "SELECT t.trx_mysql_thread_id AS id, t.trx_id AS trx_id, \
         TIMESTAMPDIFF(SECOND, t.trx_started, NOW()) AS seconds, t.trx_state AS state, \
         t.trx_rows_locked AS rows_locked, t.trx_rows_modified AS rows_modified, \
         p.USER AS user, p.HOST AS host, p.DB AS db, p.COMMAND AS command, \
         LEFT(p.INFO, 300) AS query \
         FROM information_schema.INNODB_TRX t \
         LEFT JOIN information_schema.PROCESSLIST p ON p.ID = t.trx_mysql_thread_id \
         WHERE t.trx_started <= NOW() - INTERVAL ? SECOND ORDER BY t.trx_started",
        &[Val::UInt(p.min_seconds)],
    )?;
    let mut list = Vec::new();
    let mut ids = Vec::new();
    for i in 0..rows.rows.len() {
        let int = |c: &str| rows.get(i, &[c]).and_then(Val::int);
        let text = |c: &str| rows.get(i, &[c]).and_then(Val::text);
        if let Some(id) = int("id") {
            ids.push(id);
        }
        list.push(json!({
            "id": int("id"), "trx_id": text("trx_id"), "seconds": int("seconds"),
            "state": text("state"), "rows_locked": int("rows_locked"),
            "rows_modified": int("rows_modified"), "user": text("user"), "host": text("host"),
            "db": text("db"), "command": text("command"), "query": text("query"),
        }));
    }
    Ok(json!({"server": s.name, "min_seconds": p.min_seconds, "transactions": list, "ids": ids}))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Kill {
    server: String,
    ids: Vec<u64>,
}

/// Connections still present among `ids`, with their user.
fn present(s: &Server, ids: &[u64]) -> Result<Vec<(u64, String)>, Failure> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let list: Vec<String> = ids.iter().map(u64::to_string).collect();
    let rows = s.query(
        "looking up the connections",
        &format!(
            "SELECT ID AS id, USER AS user FROM information_schema.PROCESSLIST WHERE ID IN ({})",
            list.join(",")
        ),
    )?;
    Ok((0..rows.rows.len())
        .filter_map(|i| {
            let id = rows.get(i, &["id"]).and_then(Val::int)?;
            let user = rows
                .get(i, &["user"])
                .and_then(Val::text)
                .unwrap_or_default();
            Some((id as u64, user))
        })
        .collect())
}

fn kill_connections(action: &str, params: Value) -> Result<Value, Failure> {
    let p: Kill = medic_sdk::params(action, params)?;
    let s = Server::new(&p.server);
    let own = s
        .query(
            "reading this call's connection id",
            "SELECT CONNECTION_ID()",
        )?
        .scalar()
        .and_then(Val::int)
        .unwrap_or(0) as u64;
    let alive = present(&s, &p.ids)?;
    let (mut killed, mut gone, mut skipped) = (Vec::new(), Vec::new(), Vec::new());
    for id in &p.ids {
        let Some((_, user)) = alive.iter().find(|(a, _)| a == id) else {
            gone.push(*id);
            continue;
        };
        // Replication and event threads are the server's own, not a client's lock.
        if *id == own || user == "system user" || user == "event_scheduler" {
            skipped.push(*id);
            continue;
        }
        match s.query("killing a connection", &format!("KILL CONNECTION {id}")) {
            Ok(_) => killed.push(*id),
            // 1094: unknown thread id, it ended between the lookup and the kill.
            Err(f) if f.message.contains("(error 1094)") => gone.push(*id),
            Err(f) => return Err(f),
        }
    }
    Ok(json!({"server": s.name, "killed": killed, "gone": gone, "skipped": skipped}))
}

fn observe_kill(action: &str, params: Value) -> Result<Observation, Failure> {
    let p: Kill = medic_sdk::params(action, params)?;
    let s = Server::new(&p.server);
    let alive = present(&s, &p.ids)?;
    let killable: Vec<u64> = alive
        .iter()
        .filter(|(_, u)| u != "system user" && u != "event_scheduler")
        .map(|(id, _)| *id)
        .collect();
    Ok(if killable.is_empty() {
        let gone: Vec<u64> = p
            .ids
            .iter()
            .copied()
            .filter(|i| !alive.iter().any(|(a, _)| a == i))
            .collect();
        let skipped: Vec<u64> = alive.iter().map(|(id, _)| *id).collect();
        Observation::Done(json!({"server": s.name, "killed": [], "gone": gone, "skipped": skipped}))
    } else {
        Observation::NotDone
    })
}
