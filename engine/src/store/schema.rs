//! The database schema and its migrations (`PRAGMA user_version`).

use rusqlite::Connection;
use rusqlite_migration::{M, Migrations};

/// WAL with `synchronous=FULL`: a commit is on disk when it returns, even after a
/// power loss (NORMAL would only survive a crash of medic itself).
pub(super) fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    // Room for every statement the writer and reader prepare (about 20 each), so
    // none is evicted and re-parsed under load (rusqlite's default is 16).
    conn.set_prepared_statement_cache_capacity(64);
    Ok(())
}

const V1: &str = "
CREATE TABLE plans (
    hash TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    source TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE TABLE runs (
    id TEXT PRIMARY KEY,
    plan_hash TEXT NOT NULL REFERENCES plans(hash),
    plan_name TEXT NOT NULL,
    params TEXT NOT NULL,
    status TEXT NOT NULL,
    stop TEXT,
    reason TEXT,
    owner TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX runs_by_status ON runs(status, created_at);
CREATE TABLE steps (
    run_id TEXT NOT NULL REFERENCES runs(id),
    idx INTEGER NOT NULL,
    step_id TEXT NOT NULL,
    status TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    undo_attempt INTEGER NOT NULL,
    until_ms INTEGER,
    output TEXT,
    error TEXT,
    held_undo INTEGER NOT NULL,
    started_at INTEGER,
    finished_at INTEGER,
    PRIMARY KEY (run_id, idx)
) WITHOUT ROWID;
CREATE TABLE attempts (
    run_id TEXT NOT NULL REFERENCES runs(id),
    step_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    undo INTEGER NOT NULL,
    key TEXT NOT NULL,
    params TEXT NOT NULL,
    status TEXT NOT NULL,
    output TEXT,
    error TEXT,
    started_at INTEGER NOT NULL,
    finished_at INTEGER,
    UNIQUE (run_id, step_id, undo, attempt)
);
CREATE TABLE events (
    run_id TEXT NOT NULL REFERENCES runs(id),
    seq INTEGER NOT NULL,
    at INTEGER NOT NULL,
    kind TEXT NOT NULL,
    step_id TEXT,
    data TEXT NOT NULL,
    PRIMARY KEY (run_id, seq)
) WITHOUT ROWID;
CREATE TABLE commands (
    id INTEGER PRIMARY KEY,
    run_id TEXT NOT NULL REFERENCES runs(id),
    step_id TEXT,
    kind TEXT NOT NULL,
    by TEXT NOT NULL,
    comment TEXT,
    created_at INTEGER NOT NULL,
    consumed_at INTEGER
);
CREATE INDEX open_commands ON commands(run_id) WHERE consumed_at IS NULL;
";

/// Run submissions by `Idempotency-Key`: the same key gives back the same run.
const V2: &str = "
CREATE TABLE submissions (
    key TEXT PRIMARY KEY,
    run_id TEXT NOT NULL REFERENCES runs(id),
    created_at INTEGER NOT NULL
);
";

pub(super) fn migrate(conn: &mut Connection) -> Result<(), rusqlite_migration::Error> {
    Migrations::new(vec![M::up(V1), M::up(V2)]).to_latest(conn)
}
