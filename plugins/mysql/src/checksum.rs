//! `checksum-compare`: CHECKSUM TABLE ... EXTENDED on two servers, table by table.

use medic_sdk::{Action, Effect, Failure, Observation, Value, json};
use serde::Deserialize;

use crate::render::qualified;
use crate::schema::{object, server_param};
use crate::server::Server;
use crate::value::Val;

const SYSTEM: &[&str] = &["mysql", "information_schema", "performance_schema", "sys"];
/// Tables per CHECKSUM TABLE statement.
const BATCH: usize = 50;

pub fn actions() -> Vec<Action> {
    vec![
        Action::new("checksum-compare", Effect::ReadOnly)
            .description(
                "Compares CHECKSUM TABLE ... EXTENDED of the same tables on servers a and b: \
                 `tables` (`db.table`), else every base table of `databases`, else of all \
                 non-system databases (on either server). Fails on a mismatch or a table \
                 missing on one side unless fail_on_mismatch: false.",
            )
            .params(object(
                &[
                    ("a", server_param()),
                    ("b", server_param()),
                    ("tables", json!({"type": "array", "items": {"type": "string", "pattern": "^[^.]+\\..+$"}})),
                    ("databases", json!({"type": "array", "items": {"type": "string", "minLength": 1}})),
                    ("fail_on_mismatch", json!({"type": "boolean", "default": true})),
                ],
                &["a", "b"],
            ))
            .output(json!({"type": "object", "required": ["a", "b", "tables", "equal", "mismatches"]})),
    ]
}

pub fn invoke(action: &str, params: Value) -> Option<Result<Value, Failure>> {
    Some(match action {
        "checksum-compare" => compare(action, params),
        _ => return None,
    })
}

pub fn observe(action: &str, _params: Value) -> Option<Result<Observation, Failure>> {
    Some(match action {
        "checksum-compare" => Ok(Observation::NotDone),
        _ => return None,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    a: String,
    b: String,
    tables: Option<Vec<String>>,
    databases: Option<Vec<String>>,
    #[serde(default = "yes")]
    fail_on_mismatch: bool,
}

fn yes() -> bool {
    true
}

/// `db.table` split at the first dot.
pub fn split_table(name: &str) -> Option<(String, String)> {
    let (db, t) = name.split_once('.')?;
    (!db.is_empty() && !t.is_empty()).then(|| (db.to_string(), t.to_string()))
}

fn base_tables(s: &Server, databases: Option<&[String]>) -> Result<Vec<(String, String)>, Failure> {
    let rows = s.query(
        "listing the tables",
        "SELECT TABLE_SCHEMA, TABLE_NAME FROM information_schema.TABLES WHERE TABLE_TYPE = 'BASE TABLE'",
    )?;
    Ok(rows
        .rows
        .iter()
        .filter_map(|r| Some((r.first()?.text()?, r.get(1)?.text()?)))
        .filter(|(db, _)| match databases {
            Some(dbs) => dbs.iter().any(|d| d == db),
            None => !SYSTEM.contains(&db.to_ascii_lowercase().as_str()),
        })
        .collect())
}

/// Checksums of `tables` in order; `None` where the table does not exist.
fn checksums(s: &Server, tables: &[(String, String)]) -> Result<Vec<Option<String>>, Failure> {
    let mut out = Vec::with_capacity(tables.len());
    for part in tables.chunks(BATCH) {
        let names = part
            .iter()
            .map(|(d, t)| qualified(d, t))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| s.fail(e))?;
        let rows = s.query(
            "checksumming tables",
            &format!("CHECKSUM TABLE {} EXTENDED", names.join(", ")),
        )?;
        if rows.rows.len() != part.len() {
            return Err(s.fail(format!(
                "CHECKSUM TABLE returned {} rows for {} tables",
                rows.rows.len(),
                part.len()
            )));
        }
        for i in 0..rows.rows.len() {
            out.push(rows.get(i, &["Checksum"]).and_then(Val::text));
        }
    }
    Ok(out)
}

fn compare(action: &str, params: Value) -> Result<Value, Failure> {
    let p: Params = medic_sdk::params(action, params)?;
    let (a, b) = (Server::new(&p.a), Server::new(&p.b));
    let mut tables: Vec<(String, String)> = match &p.tables {
        Some(list) => list
            .iter()
            .map(|t| {
                split_table(t)
                    .ok_or_else(|| Failure::permanent(format!("`{t}` is not `database.table`")))
            })
            .collect::<Result<_, _>>()?,
        None => {
            let mut all = base_tables(&a, p.databases.as_deref())?;
            all.extend(base_tables(&b, p.databases.as_deref())?);
            all
        }
    };
    tables.sort();
    tables.dedup();
    let (ca, cb) = (checksums(&a, &tables)?, checksums(&b, &tables)?);
    let mismatches = mismatches(&tables, &ca, &cb);
    let equal = mismatches.is_empty();
    if !equal && p.fail_on_mismatch {
        return Err(Failure::permanent(format!(
            "{} of {} table(s) differ between `{}` and `{}`: {}",
            mismatches.len(),
            tables.len(),
            a.name,
            b.name,
            Value::Array(mismatches)
        )));
    }
    Ok(
        json!({"a": a.name, "b": b.name, "tables": tables.len(), "equal": equal, "mismatches": mismatches}),
    )
}

/// Tables whose checksums differ, or that exist on one side only.
pub fn mismatches(
    tables: &[(String, String)],
    a: &[Option<String>],
    b: &[Option<String>],
) -> Vec<Value> {
    tables
        .iter()
        .zip(a.iter().zip(b))
        .filter(|(_, (x, y))| x != y || x.is_none())
        .map(|((d, t), (x, y))| json!({"table": format!("{d}.{t}"), "a": x, "b": y}))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_mismatches_include_differences_and_missing_tables() {
        let tables = vec![
            ("d".to_string(), "t1".to_string()),
            ("d".into(), "t2".into()),
            ("d".into(), "t3".into()),
        ];
        let a = vec![Some("1".to_string()), Some("2".into()), None];
        let b = vec![Some("1".to_string()), Some("3".into()), None];
        let m = mismatches(&tables, &a, &b);
        assert_eq!(m.len(), 2);
        assert_eq!(m[0]["table"], "d.t2");
        assert_eq!(m[1]["a"], Value::Null);
    }

    #[test]
    fn checksum_table_names_split_at_the_first_dot() {
        assert_eq!(
            split_table("shop.orders.v2"),
            Some(("shop".into(), "orders.v2".into()))
        );
        assert_eq!(split_table("orders"), None);
        assert_eq!(split_table(".x"), None);
    }
}
