//! `store` is the only module with SQL. It keeps plans (content-hashed), runs, step
//! state, attempts, the append-only event log per run and the operator command inbox
//! in SQLite (WAL, `synchronous=FULL`). All writes go through one writer thread that
//! commits the jobs waiting at that moment in one transaction (group commit): many
//! runs share one fsync, and no caller hears "done" before its commit is durable.
//! Nothing here blocks the tokio runtime.

mod auth;
mod ops;
mod plans;
mod safety;
mod schedules;
mod schema;
mod writer;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OptionalExtension, params};
use serde_json::Value;

use crate::run::{Entry, Ms, RunState, RunStatus, StepState, StepStatus, Stop};
use writer::Writer;

pub use auth::{AuditEntry, AuditRow, TokenRow};
pub use ops::{
    AlertFired, AlertRunRow, EndedEscalation, EscalationRow, NewAlertRun, Notice, NotificationRow,
    PendingRun,
};
pub use plans::{PlanSummary, PlanVersion, RegisterPlan, Registered};
pub use safety::{Acquired, BreakerRow, Caps, Grant, Guard, LockRow};
pub use schedules::{FireRow, NewFire, ScheduleRow};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("opening the database {path}: {source}")]
    Open {
        path: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error("migrating the database {path} to the current schema: {source}")]
    Migrate {
        path: String,
        #[source]
        source: rusqlite_migration::Error,
    },
    #[error("{context}: {source}")]
    Sql {
        context: &'static str,
        #[source]
        source: rusqlite::Error,
    },
    /// The commit of a group failed; every job in it shares this error.
    #[error("committing to the database: {0}")]
    Commit(#[source] Arc<rusqlite::Error>),
    #[error("run `{0}` not found")]
    RunNotFound(String),
    /// No plan of that name is registered, or it has no such version; the message
    /// says which versions there are.
    #[error("{0}")]
    PlanNotFound(String),
    /// A new run's id is already used (ids carry 24 random bits per millisecond, so
    /// this is rare but possible under load); the caller picks another id.
    #[error("a run with id `{0}` exists already")]
    RunIdTaken(String),
    #[error("the database holds a value medic cannot read ({what}): {detail}")]
    Corrupt { what: &'static str, detail: String },
    #[error("the store's writer thread has stopped")]
    Closed,
    #[error(
        "a token named `{0}` exists already; pick another name, or revoke it first (`medic token revoke {0}`)"
    )]
    TokenExists(String),
    #[error(
        "a schedule named `{0}` exists already; pick another name, or remove it first (`medic schedule rm {0}`)"
    )]
    ScheduleExists(String),
    #[error("no schedule named `{0}`; `medic schedule list` shows them")]
    ScheduleNotFound(String),
    /// The schedule belongs to a plan's metadata: only a new version of the plan
    /// removes it.
    #[error(
        "schedule `{name}` is declared by plan `{plan}`: remove it from the plan's \
         metadata.schedules and register a new version, or pause it (`medic schedule pause {name}`)"
    )]
    ScheduleDeclared { name: String, plan: String },
    /// A plan declares a schedule whose name another schedule holds.
    #[error(
        "plan `{plan}` declares schedule `{name}`, but a schedule of that name exists \
         ({owner}): rename the plan's schedule, or remove the other one first"
    )]
    ScheduleNameTaken {
        plan: String,
        name: String,
        /// `created over the API` or `declared by plan X`.
        owner: String,
    },
    /// The due time was fired already (by this or an earlier process): nothing new
    /// was created.
    #[error("schedule `{schedule}` already fired for due time {due}")]
    AlreadyFired { schedule: String, due: Ms },
    #[error("no live token named `{0}`; `medic token list` shows them")]
    TokenNotFound(String),
    /// A new run's locks or limits refuse it now (`on_lock_busy: refuse`) or ever.
    #[error("the run was refused: {reason}; {hint}")]
    Busy { reason: String, hint: String },
    /// The plan's circuit breaker is open: no new run of it starts.
    #[error(
        "the circuit breaker of plan `{plan}` is open: {failed} runs of it failed within its \
         window (opened at {opened_at} ms since the epoch); no new run of it starts until an \
         admin resets it: `medic breaker reset {plan} --reason TEXT` or \
         POST /v1/breakers/{plan}/reset"
    )]
    BreakerOpen {
        plan: String,
        failed: u32,
        opened_at: Ms,
    },
    #[error(
        "plan `{0}` has no circuit breaker (none of its runs declared `breaker:`); `medic breaker list` shows them"
    )]
    BreakerNotFound(String),
}

fn sql(context: &'static str) -> impl FnOnce(rusqlite::Error) -> Error {
    move |source| Error::Sql { context, source }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A run as listed.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RunSummary {
    pub id: String,
    pub plan_name: String,
    /// The registered version the run was submitted by (`None`: an inline plan).
    pub plan_version: Option<u32>,
    pub plan_hash: String,
    pub status: RunStatus,
    pub reason: Option<String>,
    pub owner: Option<String>,
    /// The API token (its name) that submitted the run; none for `medic run`.
    pub submitted_by: Option<String>,
    pub created_at: Ms,
    pub updated_at: Ms,
}

/// Everything needed to go on with a run.
#[derive(Debug, Clone)]
pub struct StoredRun {
    pub summary: RunSummary,
    /// The plan's canonical JSON.
    pub plan_source: String,
    pub state: RunState,
    /// Sequence number the next event gets.
    pub next_seq: i64,
    /// The plugin builds the run started with: plugin name -> sha256 of its
    /// component (empty for runs created before builds were recorded).
    pub plugin_builds: BTreeMap<String, String>,
}

/// One row of a run's event log.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct EventRow {
    pub seq: i64,
    pub at: Ms,
    pub kind: String,
    pub step: Option<String>,
    pub data: Value,
}

/// One attempt of a step's action or undo.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct AttemptRow {
    pub step: String,
    pub attempt: u32,
    pub undo: bool,
    pub key: String,
    pub params: Value,
    pub status: String,
    pub output: Option<Value>,
    pub error: Option<String>,
    pub started_at: Ms,
    pub finished_at: Option<Ms>,
}

/// An operator's command for a run, waiting for the process that owns the run.
#[derive(Debug, Clone, PartialEq)]
pub struct Command {
    pub id: i64,
    pub run_id: String,
    pub step: Option<String>,
    /// `approve`, `reject`, `cancel`, `retry` or `skip`.
    pub kind: String,
    pub by: String,
    pub comment: Option<String>,
}

/// The records of one or more transitions of one run, committed together.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    pub run_id: String,
    /// The run's new status, stop and reason, if they changed.
    pub run: Option<(RunStatus, Option<Stop>, Option<String>)>,
    pub steps: Vec<(usize, String, StepState)>,
    /// Log entries with their sequence numbers.
    pub events: Vec<(i64, Entry)>,
    /// Inbox commands this batch applied.
    pub consumed: Vec<i64>,
    pub at: Ms,
    /// Notifications its events cause, into the outbox in the same transaction.
    pub notices: Vec<Notice>,
}

/// A new run: its plan, its initial state and its first log entries.
pub struct NewRun<'a> {
    pub plan_name: &'a str,
    /// The registered version submitted by name; `None` for an inline plan.
    pub plan_version: Option<u32>,
    pub plan_hash: &'a str,
    pub plan_source: &'a str,
    pub step_ids: Vec<&'a str>,
    pub state: &'a RunState,
    pub owner: Option<&'a str>,
    /// The name of the API token that submitted the run.
    pub submitted_by: Option<&'a str>,
    /// A client's `Idempotency-Key`: if a run was already created under it, that run
    /// is returned instead of creating another.
    pub idempotency_key: Option<&'a str>,
    pub at: Ms,
    /// The plugin builds the run starts with: (plugin name, sha256 of its component).
    pub plugin_builds: Vec<(String, String)>,
    /// Locks, caps and breaker of the run (default: none).
    pub guard: Guard,
}

/// Which runs `list_runs` returns: every filter given must hold.
#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    pub status: Option<RunStatus>,
    /// The plan's name (`metadata.name`), whether submitted inline or by name.
    pub plan: Option<String>,
    /// Created at or after this time.
    pub since: Option<Ms>,
    /// Created before this time.
    pub until: Option<Ms>,
    pub limit: usize,
}

/// The handle to medic's database; cheap to clone.
#[derive(Clone)]
pub struct Store {
    writer: Writer,
    reader: Arc<Mutex<Connection>>,
}

impl Error {
    /// Why the database cannot be written just now, and what clears it, when the
    /// cause is outside medic and passes (a full disk, another process's lock, an
    /// I/O error): the caller may try again later, and nothing was stored half-way
    /// (each write is one transaction). `None` for every other error.
    pub fn unavailable(&self) -> Option<&'static str> {
        let source = match self {
            Error::Sql { source, .. } => source,
            Error::Commit(source) => source.as_ref(),
            _ => return None,
        };
        let rusqlite::Error::SqliteFailure(e, _) = source else {
            return None;
        };
        use rusqlite::ErrorCode as C;
        match e.code {
            C::DiskFull => Some(
                "the disk under medic's data dir is full (database or disk is full): free space there",
            ),
            C::DatabaseBusy | C::DatabaseLocked => Some(
                "another process holds medic's database locked (database is locked): end it \
                 (a backup or an open sqlite3 session?)",
            ),
            C::SystemIoFailure => Some(
                "the disk under medic's data dir failed a read or write (disk I/O error): check it",
            ),
            _ => None,
        }
    }
}

impl Store {
    /// Opens (creating and migrating if needed) the database at `path`.
    pub fn open(path: &Path) -> Result<Store> {
        let shown = path.display().to_string();
        let open = || {
            let conn = Connection::open(path).map_err(|source| Error::Open {
                path: shown.clone(),
                source,
            })?;
            schema::configure(&conn).map_err(|source| Error::Open {
                path: shown.clone(),
                source,
            })?;
            Ok::<_, Error>(conn)
        };
        let mut conn = open()?;
        schema::migrate(&mut conn).map_err(|source| Error::Migrate {
            path: shown.clone(),
            source,
        })?;
        // Locks belong to unfinished runs only; they are released in the same
        // transaction that ends a run, so this finds nothing unless the database
        // was edited by hand. Re-derived at every start all the same.
        conn.execute(
            &format!(
                "DELETE FROM run_locks WHERE run_id IN (SELECT id FROM runs WHERE status IN {})",
                safety::TERMINAL
            ),
            [],
        )
        .map_err(|source| Error::Open {
            path: shown.clone(),
            source,
        })?;
        let reader = open()?;
        Ok(Store {
            writer: Writer::start(conn),
            reader: Arc::new(Mutex::new(reader)),
        })
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let reader = self.reader.clone();
        tokio::task::spawn_blocking(move || {
            let conn = reader.lock().unwrap_or_else(|p| p.into_inner());
            f(&conn)
        })
        .await
        .map_err(|_| Error::Closed)?
    }

    /// Stores the plan (once per content hash) and creates the run, in one transaction.
    /// Returns the id of the run created, or of the run an earlier submission with the
    /// same idempotency key created (then `false`).
    pub async fn create_run(&self, new: NewRun<'_>) -> Result<(String, bool)> {
        let row = RunRow::from(new);
        self.writer.write(move |conn| insert_run(conn, &row)).await
    }

    /// Commits the records of a run's transitions. Returns once they are durable.
    pub async fn commit(&self, batch: Batch) -> Result<()> {
        self.writer.write(move |conn| apply(conn, &batch)).await
    }

    /// Loads a run with its plan and state.
    pub async fn load_run(&self, id: &str) -> Result<StoredRun> {
        let id = id.to_owned();
        self.read(move |conn| read_run(conn, &id)).await
    }

    /// Step ids and states of a run, in plan order.
    pub async fn steps(&self, run: &str) -> Result<Vec<(String, StepState)>> {
        let run = run.to_owned();
        self.read(move |conn| read_steps(conn, &run)).await
    }

    /// Runs that pass `filter`, newest first, at most `filter.limit`.
    pub async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunSummary>> {
        let f = filter.clone();
        self.read(move |conn| {
            let rows = all(
                conn,
                "listing runs",
                &format!(
                    "SELECT {RUN_COLUMNS} FROM runs r
                     WHERE (?1 IS NULL OR r.status = ?1) AND (?2 IS NULL OR r.plan_name = ?2)
                       AND (?3 IS NULL OR r.created_at >= ?3) AND (?4 IS NULL OR r.created_at < ?4)
                     ORDER BY r.created_at DESC, r.id DESC LIMIT ?5"
                ),
                params![
                    f.status.map(|s| s.as_str()),
                    f.plan,
                    f.since,
                    f.until,
                    f.limit as i64
                ],
                summary,
            )?;
            rows.into_iter().collect()
        })
        .await
    }

    /// How many runs are in each status (every status, zeros included).
    pub async fn count_runs(&self) -> Result<Vec<(RunStatus, u64)>> {
        self.read(|conn| {
            let rows = all(
                conn,
                "counting runs by status",
                "SELECT status, COUNT(*) FROM runs GROUP BY status",
                [],
                |row| Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?)),
            )?;
            let mut counts: Vec<(RunStatus, u64)> =
                RunStatus::ALL.iter().map(|s| (*s, 0)).collect();
            for (status, n) in rows {
                let status = RunStatus::parse(&status).ok_or(Error::Corrupt {
                    what: "run status",
                    detail: status,
                })?;
                if let Some(c) = counts.iter_mut().find(|(s, _)| *s == status) {
                    c.1 = n as u64;
                }
            }
            Ok(counts)
        })
        .await
    }

    /// Runs that are not terminal, with their owner.
    pub async fn unfinished_runs(&self) -> Result<Vec<RunSummary>> {
        self.read(|conn| {
            let rows = all(
                conn,
                "listing unfinished runs",
                &format!(
                    "SELECT {RUN_COLUMNS} FROM runs r
                     WHERE r.status NOT IN ('succeeded', 'failed', 'rolled_back', 'cancelled')
                     ORDER BY r.created_at"
                ),
                [],
                summary,
            )?;
            rows.into_iter().collect()
        })
        .await
    }

    /// Takes ownership of a run if it is owned by `expected` (None: by nobody).
    /// Returns whether this caller now owns it.
    pub async fn claim(&self, run: &str, owner: &str, expected: Option<&str>) -> Result<bool> {
        let (run, owner, expected) = (
            run.to_owned(),
            owner.to_owned(),
            expected.map(str::to_owned),
        );
        self.writer
            .write(move |conn| {
                let n = conn
                    .execute(
                        "UPDATE runs SET owner = ?2 WHERE id = ?1 AND owner IS ?3",
                        params![run, owner, expected],
                    )
                    .map_err(sql("claiming the run"))?;
                Ok(n == 1)
            })
            .await
    }

    /// The run's event log after `after` (sequence numbers start at 1).
    pub async fn events(&self, run: &str, after: i64) -> Result<Vec<EventRow>> {
        let run = run.to_owned();
        self.read(move |conn| read_events(conn, &run, after)).await
    }

    /// Every attempt of a run, in the order they started.
    pub async fn attempts(&self, run: &str) -> Result<Vec<AttemptRow>> {
        let run = run.to_owned();
        self.read(move |conn| read_attempts(conn, &run)).await
    }

    /// The view of a run that `medic runs show --json` and `GET /v1/runs/{id}` give:
    /// summary, params, steps, attempts, events and the plan it runs (canonical JSON:
    /// its steps' `needs` are the graph). Read in one transaction, so the
    /// parts agree with each other, and in one trip to the reader thread.
    pub async fn detail(&self, run: &str) -> Result<Value> {
        let run = run.to_owned();
        self.read(move |conn| {
            let tx = conn
                .unchecked_transaction()
                .map_err(sql("starting a read of the run"))?;
            let stored = read_run(&tx, &run)?;
            let steps = read_steps(&tx, &run)?;
            let attempts = read_attempts(&tx, &run)?;
            let events = read_events(&tx, &run, 0)?;
            let escalations = ops::read_escalations(&tx, &run)?;
            tx.finish().map_err(sql("ending a read of the run"))?;
            // The plan it runs, so a reader can draw its graph (an inline plan has no
            // other way to it).
            let plan: Value =
                serde_json::from_str(&stored.plan_source).map_err(|e| Error::Corrupt {
                    what: "run's plan",
                    detail: format!("run {run}: the stored plan is not JSON: {e}"),
                })?;
            let steps: Vec<Value> = steps
                .into_iter()
                .map(|(id, s)| {
                    serde_json::json!({
                        "id": id,
                        "status": s.status.as_str(),
                        "attempt": s.attempt,
                        "undo_attempt": s.undo_attempt,
                        "until": s.until,
                        "output": s.output,
                        "error": s.error,
                        "started_at": s.started_at,
                        "finished_at": s.finished_at,
                    })
                })
                .collect();
            Ok(serde_json::json!({
                "run": stored.summary,
                "params": stored.state.params,
                "steps": steps,
                "attempts": attempts,
                "events": events,
                "plan": plan,
                // The severity tiers the run escalated to (`ops`), in order.
                "escalations": escalations,
            }))
        })
        .await
    }

    /// Leaves a command for the process that owns the run (or the next `resume`).
    pub async fn post_command(
        &self,
        run: &str,
        step: Option<&str>,
        kind: &str,
        by: &str,
        comment: Option<&str>,
        at: Ms,
    ) -> Result<i64> {
        let v = (
            run.to_owned(),
            step.map(str::to_owned),
            kind.to_owned(),
            by.to_owned(),
            comment.map(str::to_owned),
        );
        self.writer
            .write(move |conn| {
                conn.execute(
                    "INSERT INTO commands (run_id, step_id, kind, by, comment, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![v.0, v.1, v.2, v.3, v.4, at],
                )
                .map_err(sql("posting the command"))?;
                Ok(conn.last_insert_rowid())
            })
            .await
    }

    /// Commands for `run` not yet applied, oldest first.
    pub async fn open_commands(&self, run: &str) -> Result<Vec<Command>> {
        let run = run.to_owned();
        self.read(move |conn| {
            let rows = all(
                conn,
                "reading commands",
                "SELECT id, run_id, step_id, kind, by, comment FROM commands
                     WHERE run_id = ?1 AND consumed_at IS NULL ORDER BY id",
                [&run],
                |row| {
                    Ok(Command {
                        id: row.get(0)?,
                        run_id: row.get(1)?,
                        step: row.get(2)?,
                        kind: row.get(3)?,
                        by: row.get(4)?,
                        comment: row.get(5)?,
                    })
                },
            )?;
            Ok(rows)
        })
        .await
    }
}

/// A run with its plan and state (what `Store::load_run` gives).
/// A `NewRun` owned, to move into the writer thread.
pub(crate) struct RunRow {
    plan: (String, String, String),
    state: RunState,
    ids: Vec<String>,
    owner: Option<String>,
    submitted_by: Option<String>,
    key: Option<String>,
    version: Option<u32>,
    at: Ms,
    builds: Vec<(String, String)>,
    guard: Guard,
}

impl From<NewRun<'_>> for RunRow {
    fn from(new: NewRun<'_>) -> RunRow {
        RunRow {
            plan: (
                new.plan_hash.to_owned(),
                new.plan_name.to_owned(),
                new.plan_source.to_owned(),
            ),
            state: new.state.clone(),
            ids: new.step_ids.iter().map(|s| s.to_string()).collect(),
            owner: new.owner.map(str::to_owned),
            submitted_by: new.submitted_by.map(str::to_owned),
            key: new.idempotency_key.map(str::to_owned),
            version: new.plan_version,
            at: new.at,
            builds: new.plugin_builds,
            guard: new.guard,
        }
    }
}

/// The inserts of a new run, inside the caller's transaction: the plan (once per
/// hash), the run, its steps and its idempotency key. Shared by `create_run` and a
/// schedule's fire, which records the fire in the same transaction.
fn insert_run(conn: &Connection, row: &RunRow) -> Result<(String, bool)> {
    let RunRow {
        plan,
        state,
        ids,
        owner,
        submitted_by,
        key,
        version,
        at,
        builds,
        guard,
    } = row;
    // Cached statements: a busy server creates runs by the thousand, and
    // parsing these four statements each time showed in its profile.
    if let Some(key) = &key {
        let existing: Option<String> = conn
            .prepare_cached("SELECT run_id FROM submissions WHERE key = ?1")
            .and_then(|mut s| s.query_row([key], |r| r.get(0)).optional())
            .map_err(sql("looking up the idempotency key"))?;
        if let Some(run) = existing {
            return Ok((run, false));
        }
    }
    conn.prepare_cached(
        "INSERT OR IGNORE INTO plans (hash, name, source, created_at) VALUES (?1, ?2, ?3, ?4)",
    )
    .and_then(|mut s| s.execute(params![plan.0, plan.1, plan.2, at]))
    .map_err(sql("storing the plan"))?;
    conn.prepare_cached(
        "INSERT INTO runs (id, plan_hash, plan_name, plan_version, params, status, stop, reason, owner, submitted_by, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, NULL, NULL, ?7, ?8, ?9, ?9)",
    )
    .and_then(|mut s| {
        s.execute(params![state.id, plan.0, plan.1, version, state.params.to_string(), state.status.as_str(), owner, submitted_by, at])
    })
    .map_err(|e| match &e {
        rusqlite::Error::SqliteFailure(f, _)
            if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY =>
        {
            Error::RunIdTaken(state.id.clone())
        }
        _ => sql("creating the run")(e),
    })?;
    let mut stmt = conn
        .prepare_cached(STEP_UPSERT)
        .map_err(sql("creating the run's steps"))?;
    for (i, (id, s)) in ids.iter().zip(&state.steps).enumerate() {
        write_step(&mut stmt, &state.id, i, id, s)?;
    }
    for (plugin, sha256) in builds {
        conn.prepare_cached("INSERT INTO run_plugins (run_id, plugin, sha256) VALUES (?1, ?2, ?3)")
            .and_then(|mut s| s.execute(params![state.id, plugin, sha256]))
            .map_err(sql("recording the run's plugin builds"))?;
    }
    if let Some(key) = &key {
        conn.prepare_cached(
            "INSERT INTO submissions (key, run_id, created_at) VALUES (?1, ?2, ?3)",
        )
        .and_then(|mut s| s.execute(params![key, state.id, at]))
        .map_err(sql("recording the idempotency key"))?;
    }
    safety::guard_new_run(conn, &state.id, &plan.1, guard, *at)?;
    Ok((state.id.clone(), true))
}

fn read_run(conn: &Connection, id: &str) -> Result<StoredRun> {
    let row = conn
        .prepare_cached(&format!(
            "SELECT {RUN_COLUMNS}, r.params, r.stop, p.source,
                (SELECT COALESCE(MAX(seq), 0) + 1 FROM events e WHERE e.run_id = r.id)
             FROM runs r JOIN plans p ON p.hash = r.plan_hash WHERE r.id = ?1"
        ))
        .and_then(|mut stmt| {
            stmt.query_row([id], |row| {
                Ok((
                    summary(row)?,
                    row.get::<_, String>(RUN_COLUMN_COUNT)?,
                    row.get::<_, Option<String>>(RUN_COLUMN_COUNT + 1)?,
                    row.get::<_, String>(RUN_COLUMN_COUNT + 2)?,
                    row.get::<_, i64>(RUN_COLUMN_COUNT + 3)?,
                ))
            })
            .optional()
        })
        .map_err(sql("reading the run"))?
        .ok_or_else(|| Error::RunNotFound(id.to_owned()))?;
    let (summary, params, stop, plan_source, next_seq) = row;
    let summary = summary?;
    let params: Value = serde_json::from_str(&params).map_err(|e| Error::Corrupt {
        what: "run params",
        detail: e.to_string(),
    })?;
    let stop = stop.as_deref().map(parse_stop).transpose()?;
    let steps = read_steps(conn, id)?.into_iter().map(|(_, s)| s).collect();
    let state = RunState::restore(
        id.to_owned(),
        summary.status,
        summary.reason.clone(),
        stop,
        params,
        steps,
    );
    let plugin_builds = conn
        .prepare_cached("SELECT plugin, sha256 FROM run_plugins WHERE run_id = ?1")
        .and_then(|mut s| {
            s.query_map([id], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })?
            .collect::<rusqlite::Result<BTreeMap<_, _>>>()
        })
        .map_err(sql("reading the run's plugin builds"))?;
    Ok(StoredRun {
        summary,
        plan_source,
        state,
        next_seq,
        plugin_builds,
    })
}

fn read_events(conn: &Connection, run: &str, after: i64) -> Result<Vec<EventRow>> {
    let query = "SELECT seq, at, kind, step_id, data FROM events
                 WHERE run_id = ?1 AND seq > ?2 ORDER BY seq";
    let rows = all(conn, "reading events", query, params![run, after], |row| {
        Ok((
            row.get(0)?,
            row.get(1)?,
            row.get(2)?,
            row.get(3)?,
            row.get::<_, String>(4)?,
        ))
    })?;
    rows.into_iter()
        .map(|(seq, at, kind, step, data)| {
            Ok(EventRow {
                seq,
                at,
                kind,
                step,
                data: json(&data, "event data")?,
            })
        })
        .collect()
}

fn read_attempts(conn: &Connection, run: &str) -> Result<Vec<AttemptRow>> {
    let query = "SELECT step_id, attempt, undo, key, params, status, output, error,
                 started_at, finished_at
             FROM attempts WHERE run_id = ?1 ORDER BY started_at, rowid";
    let rows = all(conn, "reading attempts", query, [run], |row| {
        Ok((
            row.get::<_, String>(0)?,
            row.get::<_, u32>(1)?,
            row.get::<_, bool>(2)?,
            row.get::<_, String>(3)?,
            row.get::<_, String>(4)?,
            row.get::<_, String>(5)?,
            row.get::<_, Option<String>>(6)?,
            row.get::<_, Option<String>>(7)?,
            row.get::<_, Ms>(8)?,
            row.get::<_, Option<Ms>>(9)?,
        ))
    })?;
    rows.into_iter()
        .map(
            |(step, attempt, undo, key, params, status, output, error, started_at, finished_at)| {
                Ok(AttemptRow {
                    step,
                    attempt,
                    undo,
                    key,
                    params: json(&params, "attempt params")?,
                    status,
                    output: output
                        .as_deref()
                        .map(|o| json(o, "attempt output"))
                        .transpose()?,
                    error,
                    started_at,
                    finished_at,
                })
            },
        )
        .collect()
}

/// The machine's own limit, for benchmarks: the latency of each of `n` single-row
/// commits to a fresh database in `dir`, at the synchronous level medic uses.
pub fn measure_commit_latency(dir: &Path, n: usize) -> Result<Vec<std::time::Duration>> {
    let path = dir.join("commit-floor.db");
    let conn = Connection::open(&path).map_err(|source| Error::Open {
        path: path.display().to_string(),
        source,
    })?;
    schema::configure(&conn).map_err(sql("configuring the probe database"))?;
    conn.execute_batch("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)")
        .map_err(sql("creating the probe table"))?;
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let start = std::time::Instant::now();
        conn.execute("INSERT INTO t (v) VALUES (?1)", [format!("row {i}")])
            .map_err(sql("committing a probe row"))?;
        out.push(start.elapsed());
    }
    Ok(out)
}

const RUN_COLUMNS: &str = "r.id, r.plan_name, r.plan_hash, r.status, r.reason, r.owner, r.created_at, r.updated_at, r.submitted_by, r.plan_version";
/// How many columns [`RUN_COLUMNS`] selects: a query's own columns come after them.
const RUN_COLUMN_COUNT: usize = 10;

fn summary(row: &rusqlite::Row<'_>) -> rusqlite::Result<Result<RunSummary>> {
    let status: String = row.get(3)?;
    Ok(match RunStatus::parse(&status) {
        Some(status) => Ok(RunSummary {
            id: row.get(0)?,
            plan_name: row.get(1)?,
            plan_version: row.get(9)?,
            plan_hash: row.get(2)?,
            status,
            reason: row.get(4)?,
            owner: row.get(5)?,
            submitted_by: row.get(8)?,
            created_at: row.get(6)?,
            updated_at: row.get(7)?,
        }),
        None => Err(Error::Corrupt {
            what: "run status",
            detail: status,
        }),
    })
}

/// Every row of a query, mapped; the one place reads prepare, query and collect.
fn all<T>(
    conn: &Connection,
    context: &'static str,
    query: &str,
    params: impl rusqlite::Params,
    map: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> Result<Vec<T>> {
    let mut stmt = conn.prepare_cached(query).map_err(sql(context))?;
    let rows = stmt.query_map(params, map).map_err(sql(context))?;
    rows.collect::<rusqlite::Result<Vec<T>>>()
        .map_err(sql(context))
}

fn json(text: &str, what: &'static str) -> Result<Value> {
    serde_json::from_str(text).map_err(|e| Error::Corrupt {
        what,
        detail: e.to_string(),
    })
}

fn parse_stop(s: &str) -> Result<Stop> {
    match s {
        "abort" => Ok(Stop::Abort),
        "rollback" => Ok(Stop::Rollback),
        "cancel" => Ok(Stop::Cancel),
        other => Err(Error::Corrupt {
            what: "run stop",
            detail: other.into(),
        }),
    }
}

fn stop_str(s: Stop) -> &'static str {
    match s {
        Stop::Abort => "abort",
        Stop::Rollback => "rollback",
        Stop::Cancel => "cancel",
    }
}

const STEP_UPSERT: &str = "INSERT OR REPLACE INTO steps
    (run_id, idx, step_id, status, attempt, undo_attempt, until_ms, output, error, held_undo, started_at, finished_at)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)";

fn write_step(
    stmt: &mut rusqlite::CachedStatement<'_>,
    run: &str,
    idx: usize,
    id: &str,
    s: &StepState,
) -> Result<()> {
    stmt.execute(params![
        run,
        idx as i64,
        id,
        s.status.as_str(),
        s.attempt,
        s.undo_attempt,
        s.until,
        s.output.as_ref().map(Value::to_string),
        s.error,
        s.held_undo,
        s.started_at,
        s.finished_at,
    ])
    .map_err(sql("writing step state"))?;
    Ok(())
}

fn read_steps(conn: &Connection, run: &str) -> Result<Vec<(String, StepState)>> {
    let query = "SELECT step_id, status, attempt, undo_attempt, until_ms, output, error, held_undo,
                 started_at, finished_at
             FROM steps WHERE run_id = ?1 ORDER BY idx";
    let rows = all(conn, "reading steps", query, [run], |row| {
        Ok((
            row.get::<_, String>(0)?,
            row.get::<_, String>(1)?,
            row.get::<_, u32>(2)?,
            row.get::<_, u32>(3)?,
            row.get::<_, Option<Ms>>(4)?,
            row.get::<_, Option<String>>(5)?,
            row.get::<_, Option<String>>(6)?,
            row.get::<_, bool>(7)?,
            row.get::<_, Option<Ms>>(8)?,
            row.get::<_, Option<Ms>>(9)?,
        ))
    })?;
    rows.into_iter()
        .map(
            |(
                id,
                status,
                attempt,
                undo_attempt,
                until,
                output,
                error,
                held_undo,
                started_at,
                finished_at,
            )| {
                let status = StepStatus::parse(&status).ok_or(Error::Corrupt {
                    what: "step status",
                    detail: status,
                })?;
                let output = output
                    .as_deref()
                    .map(|o| json(o, "step output"))
                    .transpose()?;
                Ok((
                    id,
                    StepState {
                        status,
                        attempt,
                        undo_attempt,
                        until,
                        output,
                        error,
                        held_undo,
                        started_at,
                        finished_at,
                    },
                ))
            },
        )
        .collect()
}

/// Writes one batch: run row, step rows, events, attempt rows derived from the
/// events, consumed commands.
fn apply(conn: &Connection, b: &Batch) -> Result<()> {
    if let Some((status, stop, reason)) = &b.run {
        conn.prepare_cached(
            "UPDATE runs SET status = ?2, stop = ?3, reason = ?4, updated_at = ?5 WHERE id = ?1",
        )
        .and_then(|mut s| {
            s.execute(params![
                b.run_id,
                status.as_str(),
                stop.map(stop_str),
                reason,
                b.at
            ])
        })
        .map_err(sql("updating the run"))?;
        if status.is_terminal() {
            safety::on_terminal(conn, &b.run_id, *status, b.at)?;
        }
    }
    if !b.steps.is_empty() {
        let mut stmt = conn
            .prepare_cached(STEP_UPSERT)
            .map_err(sql("writing step state"))?;
        for (idx, id, s) in &b.steps {
            write_step(&mut stmt, &b.run_id, *idx, id, s)?;
        }
    }
    let mut ev = conn
        .prepare_cached("INSERT INTO events (run_id, seq, at, kind, step_id, data) VALUES (?1, ?2, ?3, ?4, ?5, ?6)")
        .map_err(sql("appending events"))?;
    for (seq, e) in &b.events {
        let data = serde_json::to_string(e).expect("log entries serialize");
        ev.execute(params![b.run_id, seq, b.at, e.kind(), e.step(), data])
            .map_err(sql("appending events"))?;
        match e {
            Entry::AttemptStarted {
                step,
                attempt,
                undo,
                key,
                params,
            } => {
                conn.prepare_cached(
                    "INSERT INTO attempts (run_id, step_id, attempt, undo, key, params, status, started_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'started', ?7)",
                )
                .and_then(|mut s| s.execute(params![b.run_id, step, attempt, undo, key, params.to_string(), b.at]))
                .map_err(sql("recording a started attempt"))?;
            }
            Entry::AttemptSucceeded {
                step,
                attempt,
                undo,
                output,
            } => finish_attempt(
                conn,
                &b.run_id,
                step,
                *attempt,
                *undo,
                "succeeded",
                Some(output.to_string()),
                None,
                b.at,
            )?,
            Entry::AttemptFailed {
                step,
                attempt,
                undo,
                error,
                ..
            } => finish_attempt(
                conn,
                &b.run_id,
                step,
                *attempt,
                *undo,
                "failed",
                None,
                Some(error),
                b.at,
            )?,
            _ => {}
        }
    }
    for id in &b.consumed {
        conn.prepare_cached("UPDATE commands SET consumed_at = ?2 WHERE id = ?1")
            .and_then(|mut s| s.execute(params![id, b.at]))
            .map_err(sql("consuming a command"))?;
    }
    ops::enqueue(conn, &b.run_id, &b.notices, b.at)?;
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn finish_attempt(
    conn: &Connection,
    run: &str,
    step: &str,
    attempt: u32,
    undo: bool,
    status: &str,
    output: Option<String>,
    error: Option<&String>,
    at: Ms,
) -> Result<()> {
    conn.prepare_cached(
        "UPDATE attempts SET status = ?5, output = ?6, error = ?7, finished_at = ?8
         WHERE run_id = ?1 AND step_id = ?2 AND attempt = ?3 AND undo = ?4",
    )
    .and_then(|mut s| s.execute(params![run, step, attempt, undo, status, output, error, at]))
    .map_err(sql("recording a finished attempt"))?;
    Ok(())
}

#[cfg(test)]
mod tests;
