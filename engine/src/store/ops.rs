//! The operations loop's tables: alerts and the runs they started (dedup by
//! fingerprint, in the run's own transaction), the notification outbox, and the
//! severity tiers runs reached.

use rusqlite::{Connection, OptionalExtension, params};
use serde_json::Value;

use super::{Error, NewRun, Result, RunRow, Store, all, insert_run, json, sql};
use crate::run::Ms;

/// A notification to send on one channel; `body` is its JSON form (what a `json`
/// channel gets, and what a template renders from).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Notice {
    pub event: String,
    pub step: Option<String>,
    pub channel: String,
    pub body: Value,
}

/// One row of the outbox.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct NotificationRow {
    pub id: i64,
    pub run_id: String,
    pub event: String,
    pub step: Option<String>,
    pub channel: String,
    pub body: Value,
    pub created_at: Ms,
    pub attempts: u32,
    pub next_at: Ms,
    pub delivered_at: Option<Ms>,
    pub gave_up_at: Option<Ms>,
    pub last_error: Option<String>,
}

/// A firing alert's run, to create unless the alert already has one.
pub struct NewAlertRun<'a> {
    pub fingerprint: &'a str,
    pub starts_at: &'a str,
    pub rule: &'a str,
    pub labels: &'a Value,
    pub run: NewRun<'a>,
}

/// What a firing alert did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AlertFired {
    Started(String),
    /// The alert (this firing, or an earlier one whose run still goes) has this run.
    Duplicate(String),
}

/// An alert and the run it started.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct AlertRunRow {
    pub fingerprint: String,
    pub starts_at: String,
    pub rule: String,
    pub run_id: String,
    pub labels: Value,
    pub received_at: Ms,
    pub resolved_at: Option<Ms>,
    /// What was done when it resolved: `cancel`, `annotate`, `ignore`.
    pub resolution: Option<String>,
    /// The run's status when read.
    pub run_status: String,
}

/// A severity tier a run reached.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct EscalationRow {
    pub tier: u32,
    pub severity: String,
    pub at: Ms,
}

/// A run that ended after it escalated, whose tiers were not told yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndedEscalation {
    pub id: String,
    pub plan_hash: String,
    pub status: String,
    pub reason: Option<String>,
    /// The tiers it reached.
    pub tiers: Vec<u32>,
}

/// An unfinished run, as the escalation loop sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingRun {
    pub id: String,
    pub plan_hash: String,
    pub created_at: Ms,
    /// How many tiers it reached so far.
    pub tiers: u32,
}

const TERMINAL: &str = "('succeeded', 'failed', 'rolled_back', 'cancelled')";

/// Puts notifications into the outbox, in the caller's transaction; due at once.
pub(super) fn enqueue(conn: &Connection, run: &str, notices: &[Notice], at: Ms) -> Result<()> {
    if notices.is_empty() {
        return Ok(());
    }
    let mut stmt = conn
        .prepare_cached(
            "INSERT INTO notifications (run_id, event, step_id, channel, body, created_at, next_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
        )
        .map_err(sql("queueing notifications"))?;
    for n in notices {
        stmt.execute(params![
            run,
            n.event,
            n.step,
            n.channel,
            n.body.to_string(),
            at
        ])
        .map_err(sql("queueing notifications"))?;
    }
    Ok(())
}

fn alert_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(AlertRunRow, String)> {
    Ok((
        AlertRunRow {
            fingerprint: r.get(0)?,
            starts_at: r.get(1)?,
            rule: r.get(2)?,
            run_id: r.get(3)?,
            labels: Value::Null,
            received_at: r.get(5)?,
            resolved_at: r.get(6)?,
            resolution: r.get(7)?,
            run_status: r.get(8)?,
        },
        r.get(4)?,
    ))
}

const ALERT_SELECT: &str = "SELECT a.fingerprint, a.starts_at, a.rule, a.run_id, a.labels,
        a.received_at, a.resolved_at, a.resolution, r.status
    FROM alert_runs a JOIN runs r ON r.id = a.run_id";

fn alert_rows(rows: Vec<(AlertRunRow, String)>) -> Result<Vec<AlertRunRow>> {
    rows.into_iter()
        .map(|(row, labels)| {
            Ok(AlertRunRow {
                labels: json(&labels, "alert labels")?,
                ..row
            })
        })
        .collect()
}

fn notification_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(NotificationRow, String)> {
    Ok((
        NotificationRow {
            id: r.get(0)?,
            run_id: r.get(1)?,
            event: r.get(2)?,
            step: r.get(3)?,
            channel: r.get(4)?,
            body: Value::Null,
            created_at: r.get(6)?,
            attempts: r.get(7)?,
            next_at: r.get(8)?,
            delivered_at: r.get(9)?,
            gave_up_at: r.get(10)?,
            last_error: r.get(11)?,
        },
        r.get(5)?,
    ))
}

const NOTIFICATION_SELECT: &str = "SELECT id, run_id, event, step_id, channel, body, created_at,
        attempts, next_at, delivered_at, gave_up_at, last_error FROM notifications";

fn notification_rows(rows: Vec<(NotificationRow, String)>) -> Result<Vec<NotificationRow>> {
    rows.into_iter()
        .map(|(row, body)| {
            Ok(NotificationRow {
                body: json(&body, "notification body")?,
                ..row
            })
        })
        .collect()
}

impl Store {
    /// Creates the run of a firing alert and records the alert with it, in one
    /// transaction, unless the alert has a run already: the same firing (fingerprint
    /// and `startsAt`, as a repeated or replayed webhook sends it) or an earlier
    /// firing of the fingerprint whose run is still going.
    pub async fn alert_fire(&self, new: NewAlertRun<'_>) -> Result<AlertFired> {
        let (fingerprint, starts_at, rule, labels) = (
            new.fingerprint.to_owned(),
            new.starts_at.to_owned(),
            new.rule.to_owned(),
            new.labels.to_string(),
        );
        let row = RunRow::from(new.run);
        self.writer
            .write(move |conn| {
                let existing: Option<String> = conn
                    .prepare_cached(&format!(
                        "SELECT a.run_id FROM alert_runs a JOIN runs r ON r.id = a.run_id
                         WHERE a.fingerprint = ?1 AND (a.starts_at = ?2 OR r.status NOT IN {TERMINAL})
                         ORDER BY a.received_at DESC LIMIT 1"
                    ))
                    .and_then(|mut s| {
                        s.query_row(params![fingerprint, starts_at], |r| r.get(0))
                            .optional()
                    })
                    .map_err(sql("looking up the alert's run"))?;
                if let Some(run) = existing {
                    return Ok(AlertFired::Duplicate(run));
                }
                let (run, _) = insert_run(conn, &row)?;
                conn.prepare_cached(
                    "INSERT INTO alert_runs (fingerprint, starts_at, rule, run_id, labels, received_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )
                .and_then(|mut s| {
                    s.execute(params![fingerprint, starts_at, rule, run, labels, row.at])
                })
                .map_err(sql("recording the alert's run"))?;
                Ok(AlertFired::Started(run))
            })
            .await
    }

    /// Marks every unresolved firing of `fingerprint` resolved with `resolution`;
    /// returns the rows it marked (with their runs' status).
    pub async fn resolve_alert(
        &self,
        fingerprint: &str,
        resolution: &str,
        at: Ms,
    ) -> Result<Vec<AlertRunRow>> {
        let (fingerprint, resolution) = (fingerprint.to_owned(), resolution.to_owned());
        self.writer
            .write(move |conn| {
                let rows = all(
                    conn,
                    "reading the alert's runs",
                    &format!("{ALERT_SELECT} WHERE a.fingerprint = ?1 AND a.resolved_at IS NULL"),
                    [&fingerprint],
                    alert_row,
                )?;
                conn.execute(
                    "UPDATE alert_runs SET resolved_at = ?2, resolution = ?3
                     WHERE fingerprint = ?1 AND resolved_at IS NULL",
                    params![fingerprint, at, resolution],
                )
                .map_err(sql("recording the alert's resolution"))?;
                alert_rows(rows).map(|rows| {
                    rows.into_iter()
                        .map(|r| AlertRunRow {
                            resolved_at: Some(at),
                            resolution: Some(resolution.clone()),
                            ..r
                        })
                        .collect()
                })
            })
            .await
    }

    /// The alerts that started `run` (at most one, unless replayed into it).
    pub async fn alerts_of_run(&self, run: &str) -> Result<Vec<AlertRunRow>> {
        let run = run.to_owned();
        self.read(move |conn| {
            let rows = all(
                conn,
                "reading the run's alerts",
                &format!("{ALERT_SELECT} WHERE a.run_id = ?1 ORDER BY a.received_at"),
                [&run],
                alert_row,
            )?;
            alert_rows(rows)
        })
        .await
    }

    /// Notifications due for a delivery attempt at `now`, oldest first.
    pub async fn due_notifications(&self, now: Ms, limit: usize) -> Result<Vec<NotificationRow>> {
        self.read(move |conn| {
            let rows = all(
                conn,
                "reading due notifications",
                &format!(
                    "{NOTIFICATION_SELECT} WHERE delivered_at IS NULL AND gave_up_at IS NULL
                     AND next_at <= ?1 ORDER BY next_at, id LIMIT ?2"
                ),
                params![now, limit as i64],
                notification_row,
            )?;
            notification_rows(rows)
        })
        .await
    }

    /// Every notification of a run, in the order they were queued.
    pub async fn notifications(&self, run: &str) -> Result<Vec<NotificationRow>> {
        let run = run.to_owned();
        self.read(move |conn| {
            let rows = all(
                conn,
                "reading the run's notifications",
                &format!("{NOTIFICATION_SELECT} WHERE run_id = ?1 ORDER BY id"),
                [&run],
                notification_row,
            )?;
            notification_rows(rows)
        })
        .await
    }

    /// Takes notification `id` for one delivery attempt: moves its `next_at` from
    /// `due` (as read) to `until`, so no other medic process on this database sends
    /// it meanwhile. Returns false if another process took it first.
    pub async fn claim_notification(&self, id: i64, due: Ms, until: Ms) -> Result<bool> {
        self.writer
            .write(move |conn| {
                let n = conn
                    .prepare_cached(
                        "UPDATE notifications SET next_at = ?3
                         WHERE id = ?1 AND next_at = ?2 AND delivered_at IS NULL AND gave_up_at IS NULL",
                    )
                    .and_then(|mut s| s.execute(params![id, due, until]))
                    .map_err(sql("claiming a notification"))?;
                Ok(n == 1)
            })
            .await
    }

    /// Records a delivery attempt: delivered (`error` None), to be retried at
    /// `retry_at`, or given up (an error and no `retry_at`).
    pub async fn notification_attempted(
        &self,
        id: i64,
        error: Option<String>,
        retry_at: Option<Ms>,
        at: Ms,
    ) -> Result<()> {
        self.writer
            .write(move |conn| {
                conn.prepare_cached(
                    "UPDATE notifications SET attempts = attempts + 1, last_error = COALESCE(?2, last_error),
                       delivered_at = CASE WHEN ?2 IS NULL THEN ?4 END,
                       gave_up_at = CASE WHEN ?2 IS NOT NULL AND ?3 IS NULL THEN ?4 END,
                       next_at = COALESCE(?3, next_at)
                     WHERE id = ?1",
                )
                .and_then(|mut s| s.execute(params![id, error, retry_at, at]))
                .map_err(sql("recording a notification's delivery"))?;
                Ok(())
            })
            .await
    }

    /// Unfinished runs with how many severity tiers each reached.
    pub async fn pending_runs(&self) -> Result<Vec<PendingRun>> {
        self.read(|conn| {
            all(
                conn,
                "listing unfinished runs for escalation",
                &format!(
                    "SELECT r.id, r.plan_hash, r.created_at,
                       (SELECT COUNT(*) FROM run_escalations e WHERE e.run_id = r.id)
                     FROM runs r WHERE r.status NOT IN {TERMINAL} ORDER BY r.created_at"
                ),
                [],
                |r| {
                    Ok(PendingRun {
                        id: r.get(0)?,
                        plan_hash: r.get(1)?,
                        created_at: r.get(2)?,
                        tiers: r.get(3)?,
                    })
                },
            )
        })
        .await
    }

    /// The canonical JSON of the stored plan `hash`.
    pub async fn plan_source(&self, hash: &str) -> Result<String> {
        let hash = hash.to_owned();
        self.read(move |conn| {
            conn.query_row("SELECT source FROM plans WHERE hash = ?1", [&hash], |r| {
                r.get(0)
            })
            .optional()
            .map_err(sql("reading a stored plan"))?
            .ok_or_else(|| Error::Corrupt {
                what: "stored plan",
                detail: format!("no plan with hash {hash}"),
            })
        })
        .await
    }

    /// Marks `run` escalated to tier `tier` and queues its notifications, in one
    /// transaction, unless the run reached that tier already or has finished.
    /// Returns whether it escalated now.
    pub async fn escalate(
        &self,
        run: &str,
        tier: u32,
        severity: &str,
        notices: Vec<Notice>,
        at: Ms,
    ) -> Result<bool> {
        let (run, severity) = (run.to_owned(), severity.to_owned());
        self.writer
            .write(move |conn| {
                let n = conn
                    .prepare_cached(&format!(
                        "INSERT OR IGNORE INTO run_escalations (run_id, tier, severity, at)
                         SELECT id, ?2, ?3, ?4 FROM runs WHERE id = ?1 AND status NOT IN {TERMINAL}"
                    ))
                    .and_then(|mut s| s.execute(params![run, tier, severity, at]))
                    .map_err(sql("recording the run's escalation"))?;
                if n == 1 {
                    enqueue(conn, &run, &notices, at)?;
                }
                Ok(n == 1)
            })
            .await
    }

    /// Runs that ended after escalating and whose tiers' channels were not told.
    pub async fn ended_escalations(&self) -> Result<Vec<EndedEscalation>> {
        self.read(|conn| {
            let rows = all(
                conn,
                "listing ended escalated runs",
                &format!(
                    "SELECT r.id, r.plan_hash, r.status, r.reason, e.tier
                     FROM run_escalations e JOIN runs r ON r.id = e.run_id
                     WHERE e.closed_at IS NULL AND r.status IN {TERMINAL}
                     ORDER BY r.id, e.tier"
                ),
                [],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, Option<String>>(3)?,
                        r.get::<_, u32>(4)?,
                    ))
                },
            )?;
            let mut out: Vec<EndedEscalation> = Vec::new();
            for (id, plan_hash, status, reason, tier) in rows {
                match out.last_mut() {
                    Some(last) if last.id == id => last.tiers.push(tier),
                    _ => out.push(EndedEscalation {
                        id,
                        plan_hash,
                        status,
                        reason,
                        tiers: vec![tier],
                    }),
                }
            }
            Ok(out)
        })
        .await
    }

    /// Records that `run`'s tiers were told it ended and queues those notices, in one
    /// transaction, unless that was done already. Returns whether it was done now.
    pub async fn close_escalation(&self, run: &str, notices: Vec<Notice>, at: Ms) -> Result<bool> {
        let run = run.to_owned();
        self.writer
            .write(move |conn| {
                let n = conn
                    .prepare_cached(
                        "UPDATE run_escalations SET closed_at = ?2 WHERE run_id = ?1 AND closed_at IS NULL",
                    )
                    .and_then(|mut s| s.execute(params![run, at]))
                    .map_err(sql("closing the run's escalation"))?;
                if n > 0 {
                    enqueue(conn, &run, &notices, at)?;
                }
                Ok(n > 0)
            })
            .await
    }

    /// The severity tiers `run` reached, in order.
    pub async fn escalations(&self, run: &str) -> Result<Vec<EscalationRow>> {
        let run = run.to_owned();
        self.read(move |conn| read_escalations(conn, &run)).await
    }
}

/// The severity tiers `run` reached, in order (also part of `Store::detail`).
pub(super) fn read_escalations(conn: &Connection, run: &str) -> Result<Vec<EscalationRow>> {
    all(
        conn,
        "reading the run's escalations",
        "SELECT tier, severity, at FROM run_escalations WHERE run_id = ?1 ORDER BY tier",
        [run],
        |r| {
            Ok(EscalationRow {
                tier: r.get(0)?,
                severity: r.get(1)?,
                at: r.get(2)?,
            })
        },
    )
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::run::{RunState, RunStatus};
    use crate::store::Batch;

    fn new_run<'a>(state: &'a RunState, at: Ms) -> NewRun<'a> {
        NewRun {
            guard: Default::default(),
            plan_name: "p",
            plan_hash: "h1",
            plan_source: "{}",
            step_ids: vec!["a"],
            state,
            owner: Some("n1"),
            plan_version: Some(1),
            submitted_by: Some("alert:r"),
            idempotency_key: None,
            at,
            plugin_builds: vec![],
        }
    }

    async fn fire(store: &Store, id: &str, starts_at: &str) -> AlertFired {
        let state = RunState::new(id.into(), json!({}), 1);
        store
            .alert_fire(NewAlertRun {
                fingerprint: "fp1",
                starts_at,
                rule: "r",
                labels: &json!({"alertname": "X"}),
                run: new_run(&state, 10),
            })
            .await
            .unwrap()
    }

    async fn finish(store: &Store, run: &str) {
        store
            .commit(Batch {
                run_id: run.into(),
                run: Some((RunStatus::Succeeded, None, None)),
                at: 20,
                ..Batch::default()
            })
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn one_run_per_firing_and_none_while_one_goes_across_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("medic.db");
        let store = Store::open(&path).unwrap();
        assert_eq!(
            fire(&store, "r1", "t0").await,
            AlertFired::Started("r1".into())
        );
        // The same firing again, and a new firing while r1 goes: no run.
        assert_eq!(
            fire(&store, "r2", "t0").await,
            AlertFired::Duplicate("r1".into())
        );
        assert_eq!(
            fire(&store, "r2", "t1").await,
            AlertFired::Duplicate("r1".into())
        );
        assert!(matches!(
            store.load_run("r2").await,
            Err(Error::RunNotFound(_))
        ));
        drop(store);
        let store = Store::open(&path).unwrap();
        assert_eq!(
            fire(&store, "r2", "t0").await,
            AlertFired::Duplicate("r1".into())
        );
        // Once r1 has ended, its own firing still never runs again; a new one does.
        finish(&store, "r1").await;
        assert_eq!(
            fire(&store, "r2", "t0").await,
            AlertFired::Duplicate("r1".into())
        );
        assert_eq!(
            fire(&store, "r2", "t1").await,
            AlertFired::Started("r2".into())
        );

        let resolved = store.resolve_alert("fp1", "annotate", 30).await.unwrap();
        let runs: Vec<&str> = resolved.iter().map(|r| r.run_id.as_str()).collect();
        assert_eq!(runs, ["r1", "r2"]);
        assert!(
            store
                .resolve_alert("fp1", "annotate", 31)
                .await
                .unwrap()
                .is_empty()
        );
        let of = store.alerts_of_run("r2").await.unwrap();
        assert_eq!(of[0].resolved_at, Some(30));
        assert_eq!(of[0].resolution.as_deref(), Some("annotate"));
        assert_eq!(of[0].labels, json!({"alertname": "X"}));
    }

    #[tokio::test]
    async fn notices_commit_with_their_batch_and_deliveries_retry_then_end() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("medic.db")).unwrap();
        let state = RunState::new("r1".into(), json!({}), 1);
        store.create_run(new_run(&state, 10)).await.unwrap();
        let notice = |channel: &str| Notice {
            event: "started".into(),
            step: None,
            channel: channel.into(),
            body: json!({"message": "hi"}),
        };
        store
            .commit(Batch {
                run_id: "r1".into(),
                at: 100,
                notices: vec![notice("a"), notice("b")],
                ..Batch::default()
            })
            .await
            .unwrap();
        let due = store.due_notifications(100, 10).await.unwrap();
        assert_eq!(due.len(), 2);
        assert_eq!(due[0].body, json!({"message": "hi"}));
        assert!(store.due_notifications(99, 10).await.unwrap().is_empty());
        let (a, b) = (due[0].id, due[1].id);
        // A claim holds a notification back from other senders until it lapses.
        assert!(store.claim_notification(a, 100, 200).await.unwrap());
        assert!(!store.claim_notification(a, 100, 200).await.unwrap());
        assert!(
            store
                .due_notifications(199, 10)
                .await
                .unwrap()
                .iter()
                .all(|n| n.id != a)
        );
        // a: failed, retried at 500; b: delivered.
        store
            .notification_attempted(a, Some("500".into()), Some(500), 110)
            .await
            .unwrap();
        store
            .notification_attempted(b, None, None, 110)
            .await
            .unwrap();
        assert!(store.due_notifications(499, 10).await.unwrap().is_empty());
        assert_eq!(store.due_notifications(500, 10).await.unwrap()[0].id, a);
        // a: failed for good.
        store
            .notification_attempted(a, Some("refused".into()), None, 510)
            .await
            .unwrap();
        assert!(
            store
                .due_notifications(10_000, 10)
                .await
                .unwrap()
                .is_empty()
        );
        let all = store.notifications("r1").await.unwrap();
        assert_eq!((all[0].attempts, all[0].gave_up_at), (2, Some(510)));
        assert_eq!(all[0].last_error.as_deref(), Some("refused"));
        assert_eq!((all[1].attempts, all[1].delivered_at), (1, Some(110)));
    }

    #[tokio::test]
    async fn a_tier_escalates_once_and_never_a_finished_run() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("medic.db")).unwrap();
        for id in ["r1", "r2"] {
            let state = RunState::new(id.into(), json!({}), 1);
            store.create_run(new_run(&state, 10)).await.unwrap();
        }
        let n = || {
            vec![Notice {
                event: "escalated".into(),
                channel: "lead".into(),
                ..Notice::default()
            }]
        };
        assert!(store.escalate("r1", 0, "sev2", n(), 50).await.unwrap());
        assert!(!store.escalate("r1", 0, "sev2", n(), 60).await.unwrap());
        assert_eq!(store.notifications("r1").await.unwrap().len(), 1);
        let pending = store.pending_runs().await.unwrap();
        assert_eq!(pending[0].tiers, 1);
        assert_eq!(pending[1].tiers, 0);
        finish(&store, "r2").await;
        assert!(!store.escalate("r2", 0, "sev2", n(), 60).await.unwrap());
        assert!(store.notifications("r2").await.unwrap().is_empty());

        assert_eq!(store.pending_runs().await.unwrap().len(), 1);
        assert_eq!(
            store.escalations("r1").await.unwrap(),
            vec![EscalationRow {
                tier: 0,
                severity: "sev2".into(),
                at: 50
            }]
        );
        assert!(
            store.ended_escalations().await.unwrap().is_empty(),
            "r2 never escalated"
        );
        // Once r1 ends, its tiers are told once.
        assert!(store.escalate("r1", 1, "sev1", n(), 70).await.unwrap());
        finish(&store, "r1").await;
        let ended = store.ended_escalations().await.unwrap();
        assert_eq!(ended.len(), 1);
        assert_eq!(
            (ended[0].id.as_str(), ended[0].status.as_str()),
            ("r1", "succeeded")
        );
        assert_eq!(ended[0].tiers, [0, 1]);
        assert!(store.close_escalation("r1", n(), 80).await.unwrap());
        assert!(!store.close_escalation("r1", n(), 90).await.unwrap());
        assert!(store.ended_escalations().await.unwrap().is_empty());
        assert_eq!(store.notifications("r1").await.unwrap().len(), 3);
    }
}
