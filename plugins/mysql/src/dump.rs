//! Logical backup into a run artifact and restore from one. A dump is SQL text: a
//! header line, session settings, per database `CREATE DATABASE IF NOT EXISTS` and
//! `USE`, per table `DROP TABLE IF EXISTS`, `SHOW CREATE TABLE` and batched INSERTs,
//! then a trailer line; restore refuses an artifact without both (a half-written dump).

use medic_sdk::{Action, Effect, Failure, Observation, Value, json};
use serde::Deserialize;

use crate::dialect::Kind;
use crate::host;
use crate::render::{self, qualified, quote_ident, quote_str};
use crate::schema::{object, server_param};
use crate::server::Server;
use crate::split::Splitter;
use crate::value::Val;

pub const HEADER: &str = "-- medic mysql dump v1";
pub const TRAILER: &str = "-- medic dump complete";
/// Bytes per `artifact-append` / `artifact-read`.
const CHUNK: usize = 1 << 20;

/// The session settings a dump is written and read under: UTC timestamps, utf8mb4,
/// backslash escapes on (no NO_BACKSLASH_ESCAPES), explicit zeros in AUTO_INCREMENT
/// columns kept, constraint checks off while tables fill.
const SESSION: &[&str] = &[
    "SET NAMES utf8mb4",
    "SET SESSION time_zone = '+00:00'",
    "SET SESSION sql_mode = 'NO_AUTO_VALUE_ON_ZERO'",
    "SET SESSION foreign_key_checks = 0",
    "SET SESSION unique_checks = 0",
];

fn artifact_param() -> Value {
    json!({"type": "string", "pattern": "^[A-Za-z0-9._-]+$", "maxLength": 128})
}

pub fn actions() -> Vec<Action> {
    vec![
        Action::new("backup", Effect::Idempotent)
            .description(
                "Logical dump of the named databases' base tables (definitions and rows; not \
                 views, routines, triggers or events) into run artifact `artifact`, from one \
                 consistent snapshot, with the GTID position it corresponds to",
            )
            .params(object(
                &[
                    ("server", server_param()),
                    ("databases", json!({"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 1})),
                    ("artifact", artifact_param()),
                    ("batch_rows", json!({"type": "integer", "minimum": 1, "maximum": 100000, "default": 1000})),
                ],
                &["server", "databases", "artifact"],
            ))
            .output(json!({"type": "object", "required": ["artifact", "bytes", "tables", "gtid"]})),
        Action::new("restore", Effect::Mutating)
            .description(
                "Executes a dump made by `backup` (run artifact `artifact`) statement by statement: \
                 its tables are dropped and recreated. Not written to the binlog unless \
                 write_binlog: true (a replica being rebuilt must not log it).",
            )
            .params(object(
                &[
                    ("server", server_param()),
                    ("artifact", artifact_param()),
                    ("write_binlog", json!({"type": "boolean", "default": false})),
                ],
                &["server", "artifact"],
            ))
            .output(json!({"type": "object", "required": ["server", "artifact", "statements", "bytes"]})),
    ]
}

pub fn invoke(action: &str, params: Value) -> Option<Result<Value, Failure>> {
    Some(match action {
        "backup" => backup(action, params),
        "restore" => restore(action, params),
        _ => return None,
    })
}

pub fn observe(action: &str, _params: Value) -> Option<Result<Observation, Failure>> {
    Some(match action {
        // A backup only writes its own artifact, afresh on every attempt: run it again.
        "backup" => Ok(Observation::NotDone),
        "restore" => Ok(Observation::Unknown(
            "a restore leaves no marker on the server, and a partial one looks like a whole one: \
             check the tables (checksum-compare) and retry or skip the step"
                .into(),
        )),
        _ => return None,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Backup {
    server: String,
    databases: Vec<String>,
    artifact: String,
    #[serde(default = "thousand")]
    batch_rows: u64,
}

fn thousand() -> u64 {
    1000
}

/// Buffers dump text and appends it to the artifact a chunk at a time.
struct Out<'a> {
    artifact: &'a str,
    buf: Vec<u8>,
    bytes: u64,
}

impl Out<'_> {
    fn write(&mut self, text: &str) -> Result<(), Failure> {
        self.buf.extend_from_slice(text.as_bytes());
        if self.buf.len() >= CHUNK {
            self.flush()
        } else {
            Ok(())
        }
    }

    fn flush(&mut self) -> Result<(), Failure> {
        if self.buf.is_empty() && self.bytes > 0 {
            return Ok(());
        }
        self.bytes = host::artifact_append(self.artifact, &self.buf).map_err(|e| {
            Failure::retryable(format!("writing artifact `{}`: {e}", self.artifact))
        })?;
        self.buf.clear();
        Ok(())
    }
}

fn backup(action: &str, params: Value) -> Result<Value, Failure> {
    let p: Backup = medic_sdk::params(action, params)?;
    let s = Server::new(&p.server);
    let flavor = s.flavor()?;
    // Names, UTC and a sql_mode without ANSI_QUOTES (so SHOW CREATE quotes with backticks).
    for stmt in SESSION.iter().take(3) {
        s.query("preparing the backup session", stmt)?;
    }
    s.query(
        "preparing the backup session",
        "SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ",
    )?;
    let gtid = match flavor.kind {
        Kind::MariaDb => {
            s.query(
                "opening a consistent snapshot",
                "START TRANSACTION WITH CONSISTENT SNAPSHOT",
            )?;
            // MariaDB reports the binlog position of the snapshot itself: no lock needed.
            let st = s.query(
                "reading the snapshot's binlog position",
                "SHOW STATUS LIKE 'binlog_snapshot_%'",
            )?;
            let find = |name: &str| {
                (0..st.rows.len())
                    .find(|&i| {
                        st.get(i, &["Variable_name"])
                            .and_then(Val::text)
                            .is_some_and(|n| n.eq_ignore_ascii_case(name))
                    })
                    .and_then(|i| st.get(i, &["Value"]).cloned())
            };
            match (
                find("Binlog_snapshot_file").and_then(|v| v.text()),
                find("Binlog_snapshot_position").and_then(|v| v.int()),
            ) {
                (Some(file), Some(pos)) if !file.is_empty() => s
                    .query_with(
                        "reading the snapshot's GTID position",
                        "SELECT BINLOG_GTID_POS(?, ?)",
                        &[Val::Text(file), Val::Int(pos)],
                    )?
                    .scalar()
                    .and_then(Val::text)
                    .unwrap_or_default(),
                _ => s.text("reading the GTID position", flavor.executed_gtid())?,
            }
        }
        Kind::MySql => {
            s.query(
                "locking tables for a consistent snapshot",
                "FLUSH TABLES WITH READ LOCK",
            )?;
            s.query(
                "opening a consistent snapshot",
                "START TRANSACTION WITH CONSISTENT SNAPSHOT",
            )?;
            let g = s.text(
                "reading the snapshot's GTID position",
                flavor.executed_gtid(),
            )?;
            s.query("unlocking tables", "UNLOCK TABLES")?;
            g
        }
    };

    // gtid_executed wraps its lines; the header is a one-line comment.
    let gtid = crate::gtid::compact(&gtid);

    let mut tables = Vec::new();
    for db in &p.databases {
        let exists = s.query_with(
            "looking up the database",
            "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?",
            &[Val::Text(db.clone())],
        )?;
        if exists.rows.is_empty() {
            return Err(s.fail(format!("has no database `{db}` to back up")));
        }
        let rows = s.query_with(
            "listing the tables",
            "SELECT TABLE_NAME FROM information_schema.TABLES \
             WHERE TABLE_SCHEMA = ? AND TABLE_TYPE = 'BASE TABLE' ORDER BY TABLE_NAME",
            &[Val::Text(db.clone())],
        )?;
        for r in &rows.rows {
            if let Some(t) = r.first().and_then(Val::text) {
                tables.push((db.clone(), t));
            }
        }
    }

    let mut out = Out {
        artifact: &p.artifact,
        buf: Vec::new(),
        bytes: 0,
    };
    out.write(&format!(
        "{HEADER} of `{}` ({} {}.{}.{}) at gtid {gtid}\n",
        s.name.replace('\n', " "),
        flavor.name(),
        flavor.version.0,
        flavor.version.1,
        flavor.version.2
    ))?;
    for stmt in SESSION {
        out.write(&format!("{stmt};\n"))?;
    }
    let mut total_rows = 0u64;
    let mut current_db = None;
    for (i, (db, table)) in tables.iter().enumerate() {
        if current_db != Some(db) {
            let create = s.query(
                "reading the database definition",
                &format!(
                    "SHOW CREATE DATABASE {}",
                    quote_ident(db).map_err(|e| s.fail(e))?
                ),
            )?;
            let text = create
                .get(0, &["Create Database"])
                .and_then(Val::text)
                .unwrap_or_default();
            let quoted = quote_ident(db).map_err(|e| s.fail(e))?;
            out.write(&format!(
                "{};\nUSE {quoted};\n",
                if_not_exists(&text, &quoted)
            ))?;
            current_db = Some(db);
        }
        host::progress(
            i as u64,
            tables.len() as u64,
            &format!("backing up `{db}`.`{table}`"),
        );
        total_rows += dump_table(&s, &mut out, db, table, p.batch_rows)?;
    }
    for db in &p.databases {
        if !tables.iter().any(|(d, _)| d == db) {
            // An empty database is still recreated.
            let q = quote_ident(db).map_err(|e| s.fail(e))?;
            out.write(&format!("CREATE DATABASE IF NOT EXISTS {q};\n"))?;
        }
    }
    out.write(&format!(
        "{TRAILER}: {} tables, {total_rows} rows\n",
        tables.len()
    ))?;
    out.flush()?;
    s.query("closing the snapshot", "COMMIT")?;
    Ok(json!({
        "server": s.name,
        "artifact": p.artifact,
        "bytes": out.bytes,
        "tables": tables.len(),
        "rows": total_rows,
        "gtid": gtid,
        "databases": p.databases,
    }))
}

/// `CREATE DATABASE `d` ...` as `CREATE DATABASE IF NOT EXISTS `d` ...`; `quoted` (the
/// database's quoted name) when the server gave no definition.
pub fn if_not_exists(create: &str, quoted: &str) -> String {
    let prefix = "CREATE DATABASE ";
    match create.strip_prefix(prefix) {
        _ if create.trim().is_empty() => format!("{prefix}IF NOT EXISTS {quoted}"),
        Some(rest) if !rest.starts_with("IF NOT EXISTS") => format!("{prefix}IF NOT EXISTS {rest}"),
        _ => create.to_string(),
    }
}

/// Writes one table's definition and rows; returns the row count.
fn dump_table(
    s: &Server,
    out: &mut Out,
    db: &str,
    table: &str,
    batch: u64,
) -> Result<u64, Failure> {
    let bad = |e: String| s.fail(e);
    let name = qualified(db, table).map_err(bad)?;
    let create = s.query(
        "reading the table definition",
        &format!("SHOW CREATE TABLE {name}"),
    )?;
    let ddl = create
        .get(0, &["Create Table"])
        .and_then(Val::text)
        .ok_or_else(|| s.fail(format!("SHOW CREATE TABLE {name} returned no definition")))?;
    out.write(&format!(
        "\n-- table {name}\nDROP TABLE IF EXISTS {};\n{ddl};\n",
        quote_ident(table).map_err(bad)?
    ))?;

    let cols = s.query_with(
        "reading the columns",
        "SELECT COLUMN_NAME, EXTRA FROM information_schema.COLUMNS \
         WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION",
        &[Val::Text(db.into()), Val::Text(table.into())],
    )?;
    // Generated columns are computed again on insert and refuse values.
    let columns: Vec<String> = cols
        .rows
        .iter()
        .filter(|r| !is_generated(&r.get(1).and_then(Val::text).unwrap_or_default()))
        .filter_map(|r| r.first().and_then(Val::text))
        .collect();
    let pk = s.query_with(
        "reading the primary key",
        "SELECT COLUMN_NAME FROM information_schema.KEY_COLUMN_USAGE \
         WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND CONSTRAINT_NAME = 'PRIMARY' \
         ORDER BY ORDINAL_POSITION",
        &[Val::Text(db.into()), Val::Text(table.into())],
    )?;
    let pk: Vec<String> = pk
        .rows
        .iter()
        .filter_map(|r| r.first().and_then(Val::text))
        .collect();
    let key_idx: Option<Vec<usize>> = if pk.is_empty() {
        None
    } else {
        pk.iter()
            .map(|k| columns.iter().position(|c| c == k))
            .collect()
    };
    let select_list = columns
        .iter()
        .map(|c| quote_ident(c))
        .collect::<Result<Vec<_>, _>>()
        .map_err(bad)?
        .join(", ");
    let purpose = format!("reading rows of {name}");
    let mut count = 0u64;
    match key_idx {
        // Keyset pagination in primary key order: each batch starts after the last key.
        Some(idx) => {
            let order = pk
                .iter()
                .map(|k| quote_ident(k))
                .collect::<Result<Vec<_>, _>>()
                .map_err(bad)?;
            let mut after: Option<Vec<Val>> = None;
            loop {
                let cond = match &after {
                    None => String::new(),
                    Some(key) => format!(" WHERE {}", keyset_condition(&order, key).map_err(bad)?),
                };
                let rows = s.query(
                    &purpose,
                    &format!(
                        "SELECT {select_list} FROM {name}{cond} ORDER BY {} LIMIT {batch}",
                        order.join(", ")
                    ),
                )?;
                if rows.rows.is_empty() {
                    break;
                }
                out.write(&render::insert(table, &columns, &rows.rows).map_err(bad)?)?;
                count += rows.rows.len() as u64;
                let last = rows.rows.last().expect("non-empty");
                after = Some(idx.iter().map(|&i| last[i].clone()).collect());
                if (rows.rows.len() as u64) < batch {
                    break;
                }
            }
        }
        // No primary key: one read (the snapshot keeps it consistent), written in batches.
        None => {
            let rows = s.query(&purpose, &format!("SELECT {select_list} FROM {name}"))?;
            for part in rows.rows.chunks(batch as usize) {
                out.write(&render::insert(table, &columns, part).map_err(bad)?)?;
            }
            count = rows.rows.len() as u64;
        }
    }
    Ok(count)
}

/// Whether information_schema's EXTRA marks a computed column, which refuses values.
/// MySQL's `DEFAULT_GENERATED` (an expression default) is an ordinary column.
pub fn is_generated(extra: &str) -> bool {
    let e = extra.to_ascii_uppercase();
    e.contains("VIRTUAL GENERATED")
        || e.contains("STORED GENERATED")
        || e.contains("PERSISTENT GENERATED")
}

/// `k > v` or `(k1, k2) > (v1, v2)`. Key text is compared as text (not as a hex
/// literal) so the column's collation orders it the same way as ORDER BY.
pub fn keyset_condition(order: &[String], key: &[Val]) -> Result<String, String> {
    let lits = key
        .iter()
        .map(|v| match v {
            Val::Bytes(b) => match std::str::from_utf8(b) {
                Ok(t) => Ok(quote_str(t)),
                Err(_) => render::literal(v),
            },
            v => render::literal(v),
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(if order.len() == 1 {
        format!("{} > {}", order[0], lits[0])
    } else {
        format!("({}) > ({})", order.join(", "), lits.join(", "))
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Restore {
    server: String,
    artifact: String,
    #[serde(default)]
    write_binlog: bool,
}

fn read_chunk(artifact: &str, offset: u64) -> Result<Vec<u8>, Failure> {
    host::artifact_read(artifact, offset, CHUNK as u32).map_err(|e| {
        Failure::permanent(format!(
            "reading artifact `{artifact}`: {e}: run backup first"
        ))
    })
}

/// Reads the artifact through once: its size, and whether it is a whole dump.
fn check_artifact(artifact: &str) -> Result<u64, Failure> {
    let mut offset = 0u64;
    let mut head = Vec::new();
    let mut tail: Vec<u8> = Vec::new();
    loop {
        let chunk = read_chunk(artifact, offset)?;
        if chunk.is_empty() {
            break;
        }
        offset += chunk.len() as u64;
        if head.len() < HEADER.len() {
            head.extend_from_slice(&chunk[..chunk.len().min(HEADER.len())]);
        }
        tail.extend_from_slice(&chunk);
        let keep = tail.len().saturating_sub(256);
        tail.drain(..keep);
    }
    whole_dump(artifact, &head, &tail)?;
    Ok(offset)
}

/// A dump starts with the header and its last line is the trailer.
pub fn whole_dump(artifact: &str, head: &[u8], tail: &[u8]) -> Result<(), Failure> {
    if !head.starts_with(HEADER.as_bytes()) {
        return Err(Failure::permanent(format!(
            "artifact `{artifact}` is not a dump made by the mysql plugin's backup"
        )));
    }
    let tail = String::from_utf8_lossy(tail);
    let last = tail.trim_end().rsplit('\n').next().unwrap_or_default();
    if !last.starts_with(TRAILER) {
        return Err(Failure::permanent(format!(
            "artifact `{artifact}` is incomplete (no trailer line): the backup did not finish; run backup again"
        )));
    }
    Ok(())
}

fn restore(action: &str, params: Value) -> Result<Value, Failure> {
    let p: Restore = medic_sdk::params(action, params)?;
    let s = Server::new(&p.server);
    let size = check_artifact(&p.artifact)?;
    if !p.write_binlog {
        s.query(
            "keeping the restore out of the binlog",
            "SET SESSION sql_log_bin = 0",
        )?;
    }
    let mut splitter = Splitter::default();
    let mut offset = 0u64;
    let mut statements = 0u64;
    let run = |stmt: &str, n: u64| -> Result<(), Failure> {
        let head: String = stmt.chars().take(60).collect();
        s.query(&format!("restoring statement {n} (`{head}`)"), stmt)
            .map(|_| ())
    };
    loop {
        let chunk = read_chunk(&p.artifact, offset)?;
        if chunk.is_empty() {
            break;
        }
        offset += chunk.len() as u64;
        for stmt in splitter.push(&chunk).map_err(|e| s.fail(e))? {
            statements += 1;
            run(&stmt, statements)?;
        }
        host::progress(offset, size, &format!("restoring `{}`", p.artifact));
    }
    if let Some(stmt) = splitter.finish().map_err(|e| s.fail(e))? {
        statements += 1;
        run(&stmt, statements)?;
    }
    Ok(json!({"server": s.name, "artifact": p.artifact, "statements": statements, "bytes": offset}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_keyset_conditions_compare_text_keys_as_text() {
        let one = keyset_condition(&["`id`".into()], &[Val::Int(42)]).unwrap();
        assert_eq!(one, "`id` > 42");
        let two = keyset_condition(
            &["`a`".into(), "`b`".into()],
            &[Val::Bytes(b"x'y".to_vec()), Val::Bytes(vec![0xff])],
        )
        .unwrap();
        assert_eq!(two, "(`a`, `b`) > ('x''y', X'ff')");
    }

    #[test]
    fn insert_skips_only_computed_columns() {
        assert!(is_generated("VIRTUAL GENERATED"));
        assert!(is_generated("STORED GENERATED"));
        assert!(!is_generated(
            "DEFAULT_GENERATED on update CURRENT_TIMESTAMP"
        ));
        assert!(!is_generated("auto_increment"));
        assert!(!is_generated(""));
    }

    #[test]
    fn restore_refuses_foreign_or_truncated_artifacts() {
        let head = format!("{HEADER} of `p`\n");
        let whole = format!("INSERT ...;\n{TRAILER}: 1 tables, 2 rows\n");
        assert!(whole_dump("a", head.as_bytes(), whole.as_bytes()).is_ok());
        let cut = whole_dump("a", head.as_bytes(), b"INSERT INTO t VALUES (1),(").unwrap_err();
        assert!(cut.message.contains("incomplete"), "{}", cut.message);
        assert!(whole_dump("a", b"DROP DATABASE x;", whole.as_bytes()).is_err());
    }

    #[test]
    fn restore_create_database_becomes_if_not_exists() {
        assert_eq!(
            if_not_exists(
                "CREATE DATABASE `d` /*!40100 DEFAULT CHARACTER SET utf8mb4 */",
                "`d`"
            ),
            "CREATE DATABASE IF NOT EXISTS `d` /*!40100 DEFAULT CHARACTER SET utf8mb4 */"
        );
        assert_eq!(
            if_not_exists("CREATE DATABASE IF NOT EXISTS `d`", "`d`"),
            "CREATE DATABASE IF NOT EXISTS `d`"
        );
        assert_eq!(
            if_not_exists("", "`d`"),
            "CREATE DATABASE IF NOT EXISTS `d`"
        );
    }

    #[test]
    fn restore_splits_a_rendered_dump_back_into_its_statements() {
        let cols = vec!["id".to_string(), "s".into()];
        let rows = vec![vec![Val::Int(1), Val::Text("a;b\\'--c\n".into())]];
        let insert = render::insert("t", &cols, &rows).unwrap();
        let dump = format!("{HEADER}\nUSE `d`;\n{insert}{TRAILER}\n");
        let mut sp = Splitter::default();
        let mut got = sp.push(dump.as_bytes()).unwrap();
        got.extend(sp.finish().unwrap());
        assert_eq!(
            got,
            vec![
                "USE `d`".to_string(),
                insert.trim_end().trim_end_matches(';').to_string()
            ]
        );
    }
}
