//! The database schema and its migrations (`PRAGMA user_version`).

use rusqlite::Connection;
use rusqlite_migration::{M, Migrations};

/// WAL with `synchronous=FULL`: a commit is on disk when it returns, even after a
/// power loss (NORMAL would only survive a crash of medic itself).
pub(super) fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.busy_timeout(super::writer::BUSY_WAIT)?;
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

/// Auth of `medic serve`: API tokens (only the sha256 of each secret is kept), the
/// audit log of mutating calls, and who submitted each run. A revoked token keeps its
/// row, so audit entries still name it; its name can be given to a new token.
const V3_AUTH: &str = "
CREATE TABLE tokens (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    role TEXT NOT NULL,
    hash TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    last_used_at INTEGER,
    revoked_at INTEGER
);
CREATE UNIQUE INDEX tokens_live_name ON tokens(name) WHERE revoked_at IS NULL;
CREATE TABLE audit (
    id INTEGER PRIMARY KEY,
    at INTEGER NOT NULL,
    token TEXT,
    role TEXT,
    method TEXT NOT NULL,
    path TEXT NOT NULL,
    run_id TEXT,
    step_id TEXT,
    status INTEGER NOT NULL
);
ALTER TABLE runs ADD COLUMN submitted_by TEXT;
";

/// The plan registry (`POST /v1/plans`): numbered versions per plan name, each with
/// the text as the operator wrote it (the canonical JSON stays in `plans`, keyed by
/// hash, as runs need it). A run submitted by name records which version it ran.
const V4_PLAN_REGISTRY: &str = "
CREATE TABLE plan_versions (
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    hash TEXT NOT NULL REFERENCES plans(hash),
    source TEXT NOT NULL,
    format TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (name, version)
) WITHOUT ROWID;
ALTER TABLE runs ADD COLUMN plan_version INTEGER;
CREATE INDEX runs_by_plan ON runs(plan_name, created_at);
CREATE INDEX runs_by_created ON runs(created_at);
";

/// Preventive maintenance schedules. `after` is the decision cursor: every due time
/// up to it is fired or skipped (or predates the schedule or its last resume).
/// `schedule_fires` keeps one row per schedule and due time, fired or skipped: the
/// primary key is what makes a due time fire at most once, and a fired row is
/// written in the same transaction as the run it created.
const V5_SCHEDULES: &str = "
CREATE TABLE schedules (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    spec TEXT NOT NULL,
    enabled INTEGER NOT NULL,
    after INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE TABLE schedule_fires (
    schedule_id INTEGER NOT NULL REFERENCES schedules(id) ON DELETE CASCADE,
    due_at INTEGER NOT NULL,
    fire_at INTEGER,
    outcome TEXT NOT NULL,
    run_id TEXT,
    recorded_at INTEGER NOT NULL,
    PRIMARY KEY (schedule_id, due_at)
) WITHOUT ROWID;
";

/// Schedules a plan declares in its metadata: `declared_by` names the plan, and
/// registering a version of it creates, updates and removes them (`plans.rs`).
const V6_DECLARED_SCHEDULES: &str = "
ALTER TABLE schedules ADD COLUMN declared_by TEXT;
CREATE INDEX schedules_declared_by ON schedules(declared_by) WHERE declared_by IS NOT NULL;
";

/// The exact plugin builds (sha256 of each component) a run started with, so it
/// keeps calling them after an install of another build (per-run pinning).
const V7_RUN_PLUGINS: &str = "
CREATE TABLE run_plugins (
    run_id TEXT NOT NULL REFERENCES runs(id),
    plugin TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    PRIMARY KEY (run_id, plugin)
) WITHOUT ROWID;
";

/// Safety rails (issue 12). `run_locks`: one row per run and lock name, requested
/// when the run is created (`granted_at` NULL) and granted all at once; deleted in
/// the transaction that makes the run terminal. `target_grants`: when each run
/// started on each target, for the per-hour caps. `breakers`: a plan's breaker
/// (config from its latest submission; open while `opened_at` is set). `audit.reason`:
/// the mandatory reason of a break-glass call.
const V8_SAFETY: &str = "
CREATE TABLE run_locks (
    run_id TEXT NOT NULL REFERENCES runs(id),
    name TEXT NOT NULL,
    mode TEXT NOT NULL,
    requested_at INTEGER NOT NULL,
    granted_at INTEGER,
    PRIMARY KEY (run_id, name)
) WITHOUT ROWID;
CREATE INDEX run_locks_by_name ON run_locks(name);
CREATE TABLE target_grants (
    run_id TEXT NOT NULL REFERENCES runs(id),
    plan_name TEXT NOT NULL,
    target TEXT NOT NULL,
    at INTEGER NOT NULL
);
CREATE INDEX target_grants_by_at ON target_grants(at);
CREATE TABLE breakers (
    plan_name TEXT PRIMARY KEY,
    failures INTEGER NOT NULL,
    window_ms INTEGER NOT NULL,
    opened_at INTEGER,
    failed_runs INTEGER,
    reset_at INTEGER,
    reset_by TEXT,
    reset_reason TEXT
);
ALTER TABLE audit ADD COLUMN reason TEXT;
";

/// The operations loop (`ops`). `alert_runs`: one row per firing alert (fingerprint
/// and `startsAt`) and the run it started, written in the run's own transaction, so
/// a replayed webhook never starts a second run. `notifications`: the outbox, one row
/// per notification and channel, written in the transaction of the run event that
/// caused it and delivered (with retries) by `medic serve`. `run_escalations`: the
/// severity tiers a run reached, at most once per tier; `closed_at` once the tiers'
/// channels were told the run ended.
const V9_OPS: &str = "
CREATE TABLE alert_runs (
    fingerprint TEXT NOT NULL,
    starts_at TEXT NOT NULL,
    rule TEXT NOT NULL,
    run_id TEXT NOT NULL REFERENCES runs(id),
    labels TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    resolved_at INTEGER,
    resolution TEXT,
    PRIMARY KEY (fingerprint, starts_at)
) WITHOUT ROWID;
CREATE INDEX alert_runs_by_run ON alert_runs(run_id);
CREATE TABLE notifications (
    id INTEGER PRIMARY KEY,
    run_id TEXT NOT NULL REFERENCES runs(id),
    event TEXT NOT NULL,
    step_id TEXT,
    channel TEXT NOT NULL,
    body TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_at INTEGER NOT NULL,
    delivered_at INTEGER,
    gave_up_at INTEGER,
    last_error TEXT
);
CREATE INDEX notifications_due ON notifications(next_at)
    WHERE delivered_at IS NULL AND gave_up_at IS NULL;
CREATE INDEX notifications_by_run ON notifications(run_id);
CREATE TABLE run_escalations (
    run_id TEXT NOT NULL REFERENCES runs(id),
    tier INTEGER NOT NULL,
    severity TEXT NOT NULL,
    at INTEGER NOT NULL,
    closed_at INTEGER,
    PRIMARY KEY (run_id, tier)
) WITHOUT ROWID;
";

pub(super) fn migrate(conn: &mut Connection) -> Result<(), rusqlite_migration::Error> {
    Migrations::new(vec![
        M::up(V1),
        M::up(V2),
        M::up(V3_AUTH),
        M::up(V4_PLAN_REGISTRY),
        M::up(V5_SCHEDULES),
        M::up(V6_DECLARED_SCHEDULES),
        M::up(V7_RUN_PLUGINS),
        M::up(V8_SAFETY),
        M::up(V9_OPS),
    ])
    .to_latest(conn)
}
