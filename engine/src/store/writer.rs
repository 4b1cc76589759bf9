//! The single writer thread and its group commit.
//!
//! Each job runs inside a savepoint of the group's transaction, so a job that fails
//! (a constraint, a bad row) is rolled back alone and the others still commit. Every
//! caller hears back only after COMMIT returned: nothing is acknowledged before it is
//! durable. When the group's transaction cannot even begin (another process holds
//! the database locked, the disk is full), no job runs at all: each hears the error.
//!
//! While the database stays locked by another process, later groups wait only
//! briefly for it ([`LOCKED_WAIT`]) instead of the full busy timeout, so callers hear
//! "database is locked" in a fraction of a second rather than queueing behind each
//! other's waits; the first group that begins restores the full wait.

use std::sync::Arc;
use std::time::Duration;

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use super::{Error, Result};

/// Jobs waiting at the moment a group starts are committed together, up to this many.
const MAX_GROUP: usize = 1024;

/// How long a group waits for another process's lock normally (SQLite's busy timeout).
pub(super) const BUSY_WAIT: Duration = Duration::from_secs(10);
/// ... and while the last group found the database locked.
const LOCKED_WAIT: Duration = Duration::from_millis(250);

type Done = Box<dyn FnOnce(Option<Error>) + Send>;
/// Runs on the group's connection, or (`None`) only learns that it will not run.
type Job = Box<dyn FnOnce(Option<&Connection>) -> (bool, Done) + Send>;

#[derive(Clone)]
pub(super) struct Writer {
    tx: mpsc::UnboundedSender<Job>,
}

impl Writer {
    pub(super) fn start(conn: Connection) -> Writer {
        let (tx, rx) = mpsc::unbounded_channel();
        std::thread::Builder::new()
            .name("medic-store-writer".into())
            .spawn(move || run(conn, rx))
            .expect("spawning the store writer thread");
        Writer { tx }
    }

    /// Runs `f` in the next group transaction; resolves after the group commits.
    pub(super) async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let (reply, rx) = oneshot::channel::<Result<T>>();
        let job: Job = Box::new(move |conn| {
            // Not run: the commit error given to `done` is what the caller hears.
            let out = match conn {
                Some(conn) => f(conn),
                None => Err(Error::Closed),
            };
            let ok = out.is_ok();
            let done: Done = Box::new(move |commit_error| {
                let _ = reply.send(match commit_error {
                    Some(e) => Err(e),
                    None => out,
                });
            });
            (ok, done)
        });
        self.tx.send(job).map_err(|_| Error::Closed)?;
        rx.await.map_err(|_| Error::Closed)?
    }
}

fn run(conn: Connection, mut rx: mpsc::UnboundedReceiver<Job>) {
    let mut locked = false;
    while let Some(first) = rx.blocking_recv() {
        let mut jobs = vec![first];
        while jobs.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        if let Err(e) = exec(&conn, "BEGIN IMMEDIATE") {
            if is_locked(&e) && !locked {
                locked = true;
                let _ = conn.busy_timeout(LOCKED_WAIT);
            }
            let e = Arc::new(e);
            for job in jobs {
                let (_, done) = job(None);
                done(Some(Error::Commit(e.clone())));
            }
            continue;
        }
        if locked {
            locked = false;
            let _ = conn.busy_timeout(BUSY_WAIT);
        }
        let mut done = Vec::with_capacity(jobs.len());
        for job in jobs {
            let sp = exec(&conn, "SAVEPOINT job");
            let (ok, d) = job(Some(&conn));
            let end = sp.and_then(|()| {
                if !ok {
                    exec(&conn, "ROLLBACK TO job")?;
                }
                exec(&conn, "RELEASE job")
            });
            done.push((d, end.err()));
        }
        let commit = exec(&conn, "COMMIT");
        let commit = match commit {
            Ok(()) => None,
            Err(e) => {
                let _ = exec(&conn, "ROLLBACK");
                Some(Arc::new(e))
            }
        };
        for (d, savepoint_error) in done {
            let err = match (&commit, savepoint_error) {
                (Some(e), _) => Some(Error::Commit(e.clone())),
                (None, Some(e)) => Some(Error::Commit(Arc::new(e))),
                (None, None) => None,
            };
            d(err);
        }
    }
}

fn is_locked(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

/// One statement of the group's bracketing, prepared once: each job opens and
/// releases a savepoint, and re-parsing that SQL every time showed in profiles.
fn exec(conn: &Connection, statement: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(statement)?.execute([]).map(|_| ())
}
