//! Schedules and their fires. A fire and the run it creates are one transaction:
//! the `(schedule_id, due_at)` primary key of `schedule_fires` refuses a second fire
//! of a due time, and a crash before COMMIT leaves neither the fire nor the run.

use rusqlite::{Connection, OptionalExtension, params};

use super::{Error, NewRun, Result, RunRow, Store, all, insert_run, sql};
use crate::run::{Ms, RunStatus};

/// A stored schedule; `spec` is the JSON of `schedule::Spec` as validated.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ScheduleRow {
    pub id: i64,
    pub name: String,
    pub spec: serde_json::Value,
    pub enabled: bool,
    /// Every due time up to this is fired or skipped.
    pub after: Ms,
    pub created_at: Ms,
    pub updated_at: Ms,
    /// The run of the latest fire, and whether it is still going.
    pub last_run: Option<String>,
    pub last_run_going: bool,
    /// The plan whose metadata declares it; `None` for one created over the API.
    pub declared_by: Option<String>,
}

/// One handled due time of a schedule.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FireRow {
    pub due_at: Ms,
    /// When it fired (jittered, maybe moved to a window); absent for a skip.
    pub fire_at: Option<Ms>,
    /// `fired`, or the skip reason (`missed`, `coalesced`, `outside-window`, `overlap`).
    pub outcome: String,
    pub run_id: Option<String>,
    pub recorded_at: Ms,
}

/// A due time to fire, with the run it creates.
pub struct NewFire<'a> {
    pub schedule_id: i64,
    pub schedule: &'a str,
    pub due: Ms,
    pub fire_at: Ms,
    pub run: NewRun<'a>,
}

const SELECT: &str = "SELECT s.id, s.name, s.spec, s.enabled, s.after, s.created_at, s.updated_at,
        (SELECT f.run_id FROM schedule_fires f WHERE f.schedule_id = s.id AND f.run_id IS NOT NULL
         ORDER BY f.due_at DESC LIMIT 1) AS last_run, s.declared_by
    FROM schedules s";

fn read_row(conn: &Connection, r: &rusqlite::Row<'_>) -> rusqlite::Result<Result<ScheduleRow>> {
    let spec: String = r.get(2)?;
    let last_run: Option<String> = r.get(7)?;
    let going = match &last_run {
        None => false,
        Some(run) => {
            let status: Option<String> = conn
                .prepare_cached("SELECT status FROM runs WHERE id = ?1")?
                .query_row([run], |r| r.get(0))
                .optional()?;
            status
                .and_then(|s| RunStatus::ALL.iter().find(|x| x.as_str() == s).copied())
                .is_some_and(|s| !s.is_terminal())
        }
    };
    let row = ScheduleRow {
        id: r.get(0)?,
        name: r.get(1)?,
        spec: serde_json::Value::Null,
        enabled: r.get(3)?,
        after: r.get(4)?,
        created_at: r.get(5)?,
        updated_at: r.get(6)?,
        last_run,
        last_run_going: going,
        declared_by: r.get(8)?,
    };
    Ok(match serde_json::from_str(&spec) {
        Ok(spec) => Ok(ScheduleRow { spec, ..row }),
        Err(e) => Err(Error::Corrupt {
            what: "schedule spec",
            detail: e.to_string(),
        }),
    })
}

fn constraint(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _)
        if f.code == rusqlite::ErrorCode::ConstraintViolation)
}

/// Makes the schedules `plan` declares (`(name, spec)`, each spec's `plan` field
/// already `NAME@VERSION`) the stored ones, in the caller's transaction: new names are
/// created with the declared `enabled`, known ones get the new spec but keep their
/// cursor and the operator's pause (unless the declared `enabled` itself changed),
/// and the plan's schedules it no longer declares are removed with their history.
pub(super) fn sync_declared(
    conn: &Connection,
    plan: &str,
    declared: &[(String, serde_json::Value)],
    at: Ms,
) -> Result<()> {
    for (name, spec) in declared {
        let enabled = spec
            .get("enabled")
            .and_then(serde_json::Value::as_bool)
            .unwrap_or(true);
        let existing: Option<(i64, Option<String>, String)> = conn
            .query_row(
                "SELECT id, declared_by, spec FROM schedules WHERE name = ?1",
                [name],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()
            .map_err(sql("reading the declared schedule"))?;
        match existing {
            None => {
                conn.execute(
                    "INSERT INTO schedules (name, spec, enabled, after, created_at, updated_at, declared_by)
                     VALUES (?1, ?2, ?3, ?4, ?4, ?4, ?5)",
                    params![name, spec.to_string(), enabled, at, plan],
                )
                .map_err(sql("creating the declared schedule"))?;
            }
            Some((id, Some(owner), old)) if owner == plan => {
                let was: Option<bool> = serde_json::from_str::<serde_json::Value>(&old)
                    .ok()
                    .and_then(|v| v.get("enabled").and_then(serde_json::Value::as_bool));
                let author_changed = was.unwrap_or(true) != enabled;
                conn.execute(
                    "UPDATE schedules SET spec = ?2, updated_at = ?3,
                       after = CASE WHEN ?4 AND ?5 AND NOT enabled THEN MAX(after, ?3) ELSE after END,
                       enabled = CASE WHEN ?4 THEN ?5 ELSE enabled END
                     WHERE id = ?1",
                    params![id, spec.to_string(), at, author_changed, enabled],
                )
                .map_err(sql("updating the declared schedule"))?;
            }
            Some((_, owner, _)) => {
                return Err(Error::ScheduleNameTaken {
                    plan: plan.to_owned(),
                    name: name.clone(),
                    owner: match owner {
                        Some(other) => format!("declared by plan `{other}`"),
                        None => "created over the API".to_owned(),
                    },
                });
            }
        }
    }
    let keep: Vec<&str> = declared.iter().map(|(n, _)| n.as_str()).collect();
    let mut stmt = conn
        .prepare_cached("SELECT name FROM schedules WHERE declared_by = ?1")
        .map_err(sql("listing the plan's schedules"))?;
    let stored = stmt
        .query_map([plan], |r| r.get::<_, String>(0))
        .map_err(sql("listing the plan's schedules"))?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(sql("listing the plan's schedules"))?;
    for gone in stored.iter().filter(|n| !keep.contains(&n.as_str())) {
        conn.execute("DELETE FROM schedules WHERE name = ?1", [gone])
            .map_err(sql("removing a schedule the plan no longer declares"))?;
    }
    Ok(())
}

impl Store {
    /// Stores a new schedule. Due times up to `after` (normally its creation) never fire.
    pub async fn create_schedule(
        &self,
        name: &str,
        spec: &serde_json::Value,
        enabled: bool,
        after: Ms,
        at: Ms,
    ) -> Result<i64> {
        let (name, spec) = (name.to_owned(), spec.to_string());
        self.writer
            .write(move |conn| {
                conn.execute(
                    "INSERT INTO schedules (name, spec, enabled, after, created_at, updated_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
                    params![name, spec, enabled, after, at],
                )
                .map_err(|e| {
                    if constraint(&e) {
                        Error::ScheduleExists(name.clone())
                    } else {
                        sql("creating the schedule")(e)
                    }
                })?;
                Ok(conn.last_insert_rowid())
            })
            .await
    }

    /// Every schedule, by name.
    pub async fn schedules(&self) -> Result<Vec<ScheduleRow>> {
        self.read(|conn| {
            let mut stmt = conn
                .prepare_cached(&format!("{SELECT} ORDER BY s.name"))
                .map_err(sql("listing schedules"))?;
            let rows = stmt
                .query_map([], |r| read_row(conn, r))
                .map_err(sql("listing schedules"))?;
            let mut out = Vec::new();
            for row in rows {
                out.push(row.map_err(sql("listing schedules"))??);
            }
            Ok(out)
        })
        .await
    }

    pub async fn schedule(&self, name: &str) -> Result<ScheduleRow> {
        let name = name.to_owned();
        self.read(move |conn| {
            conn.query_row(&format!("{SELECT} WHERE s.name = ?1"), [&name], |r| {
                read_row(conn, r)
            })
            .optional()
            .map_err(sql("reading the schedule"))?
            .ok_or(Error::ScheduleNotFound(name))?
        })
        .await
    }

    /// Pauses or resumes a schedule. A resume moves its cursor to `at`: due times
    /// that passed while it was paused do not fire.
    pub async fn set_schedule_enabled(&self, name: &str, enabled: bool, at: Ms) -> Result<()> {
        let name = name.to_owned();
        self.writer
            .write(move |conn| {
                let n = conn
                    .execute(
                        "UPDATE schedules SET
                           after = CASE WHEN ?2 AND NOT enabled THEN MAX(after, ?3) ELSE after END,
                           enabled = ?2, updated_at = ?3
                         WHERE name = ?1",
                        params![name, enabled, at],
                    )
                    .map_err(sql("updating the schedule"))?;
                if n == 0 {
                    return Err(Error::ScheduleNotFound(name));
                }
                Ok(())
            })
            .await
    }

    /// Removes a schedule and its history; the runs it created stay.
    pub async fn delete_schedule(&self, name: &str) -> Result<()> {
        let name = name.to_owned();
        self.writer
            .write(move |conn| {
                let declared: Option<String> = conn
                    .query_row(
                        "SELECT declared_by FROM schedules WHERE name = ?1",
                        [&name],
                        |r| r.get(0),
                    )
                    .optional()
                    .map_err(sql("reading the schedule"))?
                    .flatten();
                if let Some(plan) = declared {
                    return Err(Error::ScheduleDeclared { name, plan });
                }
                let n = conn
                    .execute("DELETE FROM schedules WHERE name = ?1", [&name])
                    .map_err(sql("removing the schedule"))?;
                if n == 0 {
                    return Err(Error::ScheduleNotFound(name));
                }
                Ok(())
            })
            .await
    }

    /// The latest `limit` handled due times of a schedule, newest first.
    pub async fn schedule_history(&self, id: i64, limit: usize) -> Result<Vec<FireRow>> {
        self.read(move |conn| {
            all(
                conn,
                "reading the schedule's history",
                "SELECT due_at, fire_at, outcome, run_id, recorded_at FROM schedule_fires
                 WHERE schedule_id = ?1 ORDER BY due_at DESC LIMIT ?2",
                params![id, limit as i64],
                |r| {
                    Ok(FireRow {
                        due_at: r.get(0)?,
                        fire_at: r.get(1)?,
                        outcome: r.get(2)?,
                        run_id: r.get(3)?,
                        recorded_at: r.get(4)?,
                    })
                },
            )
        })
        .await
    }

    /// Records a fire and creates its run, in one transaction. A due time already
    /// fired (or skipped) is refused with `AlreadyFired`, and no run is created.
    pub async fn fire(&self, fire: NewFire<'_>) -> Result<String> {
        let (id, name, due, fire_at) = (
            fire.schedule_id,
            fire.schedule.to_owned(),
            fire.due,
            fire.fire_at,
        );
        let row = RunRow::from(fire.run);
        self.writer
            .write(move |conn| {
                let at = row.at;
                let run = &row.state.id;
                conn.prepare_cached(
                    "INSERT INTO schedule_fires (schedule_id, due_at, fire_at, outcome, run_id, recorded_at)
                     VALUES (?1, ?2, ?3, 'fired', ?4, ?5)",
                )
                .and_then(|mut s| s.execute(params![id, due, fire_at, run, at]))
                .map_err(|e| {
                    if constraint(&e) {
                        Error::AlreadyFired { schedule: name.clone(), due }
                    } else {
                        sql("recording the schedule's fire")(e)
                    }
                })?;
                let (run, _) = insert_run(conn, &row)?;
                advance(conn, id, due, at)?;
                Ok(run)
            })
            .await
    }

    /// Records skipped due times (with their reasons) and moves the cursor to `after`.
    pub async fn skip_due_times(
        &self,
        schedule_id: i64,
        skips: Vec<(Ms, &'static str)>,
        after: Ms,
        at: Ms,
    ) -> Result<()> {
        self.writer
            .write(move |conn| {
                let mut stmt = conn
                    .prepare_cached(
                        "INSERT OR IGNORE INTO schedule_fires (schedule_id, due_at, fire_at, outcome, run_id, recorded_at)
                         VALUES (?1, ?2, NULL, ?3, NULL, ?4)",
                    )
                    .map_err(sql("recording skipped due times"))?;
                for (due, reason) in skips {
                    stmt.execute(params![schedule_id, due, reason, at])
                        .map_err(sql("recording skipped due times"))?;
                }
                advance(conn, schedule_id, after, at)
            })
            .await
    }
}

fn advance(conn: &Connection, id: i64, after: Ms, at: Ms) -> Result<()> {
    conn.prepare_cached(
        "UPDATE schedules SET after = MAX(after, ?2), updated_at = ?3 WHERE id = ?1",
    )
    .and_then(|mut s| s.execute(params![id, after, at]))
    .map_err(sql("moving the schedule's cursor"))?;
    Ok(())
}
