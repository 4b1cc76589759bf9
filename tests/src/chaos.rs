//! The chaos harness (issue 8): realistic runs through `medic serve`, SIGKILLed at
//! seeded random moments and restarted, with medic's durable contract checked from
//! outside after every round.
//!
//! Each run of the chaos plan has parallel branches, a retried step, an approval, undo
//! on failure, non-idempotent effects on the counter target (a TCP server of this
//! process that logs every `ADD` with its idempotency key) and a row written into a
//! real MariaDB table. After every kill and restart the harness acts as the operator
//! would (approves waiting steps; resolves a held step by looking at the target:
//! `done` if its effect landed, `retry` if not) and checks:
//! - at most once: no idempotency key applied twice on the counter target, no run
//!   with two `db` rows;
//! - event sequence numbers of every run are 1..=n, without gaps or duplicates;
//! - `PRAGMA integrity_check` of medic's database is `ok`.
//!
//! After the last round it waits for every run to end, then checks exactly once:
//! every run is terminal (or held with a reason), a succeeded run's effects landed
//! once each, a rolled-back run's effects were undone (counters back to 0, its row
//! deleted), and rollbacks completed across restarts.
//!
//! The suite runs a few rounds (`cli::chaos`); `medic-chaos --rounds 1000` runs many
//! and prints the figures RELIABILITY.md quotes. The seed is printed first, and the
//! same seed gives the same plan params and kill delays.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::{CounterTarget, MariaDb, Medic, Server, TEST_PASSWORD, TEST_USER};

/// What one chaos session does.
#[derive(Clone, Debug)]
pub struct Config {
    pub rounds: usize,
    pub seed: u64,
    /// Runs submitted at the start of each round.
    pub runs_per_round: usize,
    /// A kill lands uniformly in `0..=max_kill_ms` after a round's submissions.
    pub max_kill_ms: u64,
    /// Each run's steps hold for up to this long (read-only sleep, and before and
    /// after the counter effect), so kills land inside calls too.
    pub max_hold_ms: u64,
}

impl Config {
    pub fn new(rounds: usize, seed: u64) -> Config {
        Config {
            rounds,
            seed,
            runs_per_round: 3,
            max_kill_ms: 600,
            max_hold_ms: 120,
        }
    }
}

/// What a chaos session found.
#[derive(Debug, Default)]
pub struct Report {
    pub seed: u64,
    pub rounds: usize,
    pub runs: usize,
    /// Step attempts started, over every run (from the runs' own records).
    pub attempts: usize,
    /// Steps that reached a final state (succeeded, failed, skipped, not run).
    pub steps: usize,
    /// Final statuses of the runs.
    pub statuses: BTreeMap<String, usize>,
    /// Holds the harness resolved as an operator: (done, retry).
    pub resolved: (usize, usize),
    /// Every broken promise, with the round it was seen in.
    pub violations: Vec<String>,
    /// From spawning `medic serve` after a kill until it answers again, having taken
    /// its orphaned runs back.
    pub resume: Vec<Duration>,
    pub elapsed: Duration,
}

impl Report {
    /// The figures RELIABILITY.md quotes, one per line.
    pub fn summary(&self) -> String {
        let mut resume = self.resume.clone();
        resume.sort();
        let q = |p: f64| -> String {
            if resume.is_empty() {
                return "-".into();
            }
            let i = ((resume.len() as f64 - 1.0) * p).round() as usize;
            format!("{:.0} ms", resume[i].as_secs_f64() * 1000.0)
        };
        let mut out = String::new();
        let _ = writeln!(out, "seed              {}", self.seed);
        let _ = writeln!(out, "rounds            {}", self.rounds);
        let _ = writeln!(out, "runs              {}", self.runs);
        let _ = writeln!(out, "steps ended       {}", self.steps);
        let _ = writeln!(out, "attempts          {}", self.attempts);
        let _ = writeln!(out, "run statuses      {:?}", self.statuses);
        let _ = writeln!(
            out,
            "holds resolved    {} done (effect had landed), {} retry (it had not)",
            self.resolved.0, self.resolved.1
        );
        let _ = writeln!(out, "violations        {}", self.violations.len());
        let _ = writeln!(
            out,
            "time to resume    median {} p99 {} (n = {})",
            q(0.5),
            q(0.99),
            resume.len()
        );
        let _ = writeln!(out, "elapsed           {:.1} s", self.elapsed.as_secs_f64());
        for v in self.violations.iter().take(50) {
            let _ = writeln!(out, "VIOLATION {v}");
        }
        out
    }
}

/// splitmix64: a small, well-known generator; the harness needs reproducibility, not
/// cryptography.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..=max`.
    pub fn upto(&mut self, max: u64) -> u64 {
        self.next_u64() % (max + 1)
    }

    pub fn chance(&mut self, percent: u64) -> bool {
        self.next_u64() % 100 < percent
    }
}

/// The plan every chaos run follows.
pub const PLAN: &str = r#"# The chaos harness's plan (tests/src/chaos.rs): parallel branches, a retried
# step, a non-idempotent effect on the counter target per branch, a row in a real
# MariaDB table, an optional approval, and undo of all of it on failure.
apiVersion: medic/v1
kind: RecoveryPlan
metadata: { name: chaos }
params:
  target: { type: string }
  tag: { type: string }
  hold_ms: { type: integer, minimum: 0, default: 0 }
  fail_last: { type: boolean, default: false }
  approval: { type: boolean, default: false }
plugins:
  probe:
    use: probe@0.1
    grants:
      connect: ["${{ params.target }}"]
      sql: [chaos]
on_failure: rollback
steps:
  - id: check
    uses: probe/sleep
    with: { ms: "${{ params.hold_ms }}" }

  - id: a
    uses: probe/counter-add
    with:
      address: "${{ params.target }}"
      counter: "${{ params.tag }}-a"
      amount: 10
      delay_before_ms: "${{ params.hold_ms }}"
      delay_after_ms: "${{ params.hold_ms }}"
    undo:
      uses: probe/counter-sub
      with: { address: "${{ params.target }}", counter: "${{ params.tag }}-a", amount: 10 }

  - id: b
    needs: [check]
    uses: probe/counter-add
    with:
      address: "${{ params.target }}"
      counter: "${{ params.tag }}-b"
      amount: 1
      fail_until_attempt: 2
    retry: { attempts: 3, initial: 20ms }
    undo:
      uses: probe/counter-sub
      with:
        address: "${{ params.target }}"
        counter: "${{ params.tag }}-b"
        amount: 1
        delay_before_ms: "${{ params.hold_ms }}"

  - id: db
    needs: [a, b]
    uses: probe/sql-query
    with:
      connection: chaos
      statement: "INSERT INTO effects (run_id, tag, step) VALUES (?, ?, 'db')"
      params: ["${{ run.id }}", "${{ params.tag }}"]
    undo:
      uses: probe/sql-query
      with:
        connection: chaos
        statement: "DELETE FROM effects WHERE tag = ? AND step = 'db'"
        params: ["${{ params.tag }}"]

  - id: gate
    needs: [db]
    when: "params.approval"
    approval:
      prompt: "carry on with ${{ params.tag }}?"
      allow_self_approval: true

  - id: c
    needs: [gate]
    uses: probe/counter-add
    with:
      address: "${{ params.target }}"
      counter: "${{ params.tag }}-c"
      amount: 100
      fail: "${{ params.fail_last }}"
    undo:
      uses: probe/counter-sub
      with: { address: "${{ params.target }}", counter: "${{ params.tag }}-c", amount: 100 }
"#;

/// One submitted run, as the harness knows it.
struct Submitted {
    tag: String,
    body: Value,
    /// `None` until a submission's answer was read (a kill may eat it; the same
    /// Idempotency-Key gets the same run after the restart).
    id: Option<String>,
    fail_last: bool,
    /// Its end was seen and checked; it is not looked at again.
    ended: bool,
}

/// The world a chaos session runs in: medic, its targets, the server and the runs.
pub struct Chaos {
    pub medic: Medic,
    pub target: CounterTarget,
    db: &'static MariaDb,
    database: String,
    listen: String,
    server: Option<Server>,
    runs: Vec<Submitted>,
    report: Report,
    round: usize,
}

impl Chaos {
    /// medic with a `chaos` SQL connection to a fresh database of the shared MariaDB,
    /// the counter target, the chaos plan registered, and `medic serve` started.
    pub fn start(seed: u64) -> Chaos {
        let db = MariaDb::shared();
        let database = db.fresh_database("chaos");
        db.sql(&format!(
            "CREATE TABLE {database}.effects (id BIGINT AUTO_INCREMENT PRIMARY KEY, \
             run_id VARCHAR(64) NOT NULL, tag VARCHAR(64) NOT NULL, step VARCHAR(32) NOT NULL)"
        ));
        let medic = Medic::new();
        let secrets = medic.data_dir().join("secrets");
        std::fs::create_dir_all(&secrets).expect("secrets dir");
        std::fs::write(secrets.join("chaos-db"), format!("{TEST_PASSWORD}\n")).expect("secret");
        std::fs::write(
            medic.data_dir().join("medic.toml"),
            format!(
                "secrets_dir = \"secrets\"\n\n[sql.chaos]\naddress = \"{}\"\nuser = \"{TEST_USER}\"\n\
                 password_secret = \"chaos-db\"\ntls = \"off\"\ndatabase = \"{database}\"\n",
                db.address()
            ),
        )
        .expect("medic.toml");
        let listen = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
            l.local_addr().expect("address").to_string()
        };
        let server = Server::open_at(&medic, &listen);
        let (status, _, body) = server.post("/v1/plans", &[], &json!({ "plan": PLAN }));
        assert_eq!(status, 201, "registering the chaos plan: {body}");
        Chaos {
            medic,
            target: CounterTarget::start(),
            db,
            database,
            listen,
            server: Some(server),
            runs: Vec::new(),
            report: Report {
                seed,
                ..Report::default()
            },
            round: 0,
        }
    }

    fn server(&self) -> &Server {
        self.server.as_ref().expect("medic serve is up")
    }

    /// medic's database file, for `PRAGMA integrity_check`.
    pub fn database_file(&self) -> PathBuf {
        self.medic.data_dir().join("medic.db")
    }

    fn violation(&mut self, what: String) {
        let round = self.round;
        self.report
            .violations
            .push(format!("round {round}: {what}"));
    }

    /// Submits one run with seeded params (a new tag each time).
    pub fn submit(&mut self, rng: &mut Rng, max_hold_ms: u64) {
        let tag = format!("r{}-{}", self.round, self.runs.len());
        let fail_last = rng.chance(30);
        let body = json!({
            "plan_name": "chaos",
            "params": {
                "target": self.target.address(),
                "tag": tag,
                "hold_ms": rng.upto(max_hold_ms),
                "fail_last": fail_last,
                "approval": rng.chance(40),
            }
        });
        self.runs.push(Submitted {
            tag,
            body,
            id: None,
            fail_last,
            ended: false,
        });
        let i = self.runs.len() - 1;
        self.post_run(i);
    }

    /// POST /v1/runs with the run's tag as its Idempotency-Key: after a lost answer,
    /// the same call gets the same run.
    fn post_run(&mut self, i: usize) {
        let (status, _, body) = self.server().post(
            "/v1/runs",
            &[("Idempotency-Key", &self.runs[i].tag)],
            &self.runs[i].body,
        );
        match (status, body["id"].as_str()) {
            (200 | 201, Some(id)) => self.runs[i].id = Some(id.to_owned()),
            _ => {
                let tag = self.runs[i].tag.clone();
                self.violation(format!("submitting {tag}: {status} {body}"))
            }
        }
    }

    /// SIGKILLs `medic serve`, starts it again on the same address, and records how
    /// long it took to answer.
    pub fn kill_and_restart(&mut self) {
        if let Some(server) = self.server.take() {
            let _ = server.running.kill();
        }
        let started = Instant::now();
        let server = Server::open_at(&self.medic, &self.listen);
        self.report.resume.push(started.elapsed());
        self.server = Some(server);
        // Submissions whose answers were lost: ask again, same key.
        for i in 0..self.runs.len() {
            if self.runs[i].id.is_none() {
                self.post_run(i);
            }
        }
    }

    fn view(&self, id: &str) -> Option<Value> {
        let (status, _, body) = self.server().get(&format!("/v1/runs/{id}"));
        (status == 200).then_some(body)
    }

    /// The rows `db` steps wrote for `run`.
    fn db_rows(&self, run: &str) -> usize {
        self.db
            .sql(&format!(
                "SELECT COUNT(*) FROM {}.effects WHERE run_id = '{run}'",
                self.database
            ))
            .trim()
            .parse()
            .unwrap_or(usize::MAX)
    }

    /// One pass over the open runs: does what an operator would for a run that
    /// waits (approves an approval; resolves a held step by looking at the target),
    /// checks what must hold at every moment (at most one `db` row, gapless event
    /// sequence numbers), and checks the effects of each run that has just ended.
    /// Returns how many runs are still open.
    pub fn sweep(&mut self) -> usize {
        let mut open = 0;
        for i in 0..self.runs.len() {
            if self.runs[i].ended {
                continue;
            }
            let Some(id) = self.runs[i].id.clone() else {
                open += 1;
                continue;
            };
            let Some(view) = self.view(&id) else {
                self.violation(format!("run {id} is gone"));
                self.runs[i].ended = true;
                continue;
            };
            self.check_events(&id, &view);
            if self.db_rows(&id) > 1 {
                self.violation(format!("run {id}: its db effect landed more than once"));
            }
            if terminal(&view) {
                self.check_end(i, &view);
                self.runs[i].ended = true;
                continue;
            }
            open += 1;
            for step in view["steps"].as_array().into_iter().flatten() {
                let name = step["id"].as_str().unwrap_or_default().to_owned();
                match step["status"].as_str() {
                    Some("approval") => {
                        let _ = self.server().post(
                            &format!("/v1/runs/{id}/steps/{name}/approve"),
                            &[],
                            &json!({ "comment": "chaos harness" }),
                        );
                    }
                    Some("held") => self.resolve(&id, &name, &view),
                    _ => {}
                }
            }
        }
        open
    }

    /// A held step: its effect landed (done) or not (retry), read off the target.
    fn resolve(&mut self, id: &str, step: &str, view: &Value) {
        let reason = view["steps"]
            .as_array()
            .and_then(|s| s.iter().find(|s| s["id"] == step))
            .and_then(|s| s["error"].as_str())
            .unwrap_or_default()
            .to_owned();
        if reason.is_empty() {
            self.violation(format!("run {id}: step {step} is held without a reason"));
        }
        let undo = reason.contains("its undo");
        let landed = if step == "db" {
            // Forward: the row is there; undo: the row is gone.
            let rows = self.db_rows(id);
            if undo { rows == 0 } else { rows == 1 }
        } else {
            // A counter step: did the attempt in flight apply its key? (medic holds a
            // mutating step whose observe says "not done", since the effect could
            // still land; by now it has, or never will: its process is gone.)
            let key = view["attempts"]
                .as_array()
                .into_iter()
                .flatten()
                .rfind(|a| a["step"] == step && a["undo"].as_bool() == Some(undo))
                .and_then(|a| a["key"].as_str())
                .map(str::to_owned);
            let Some(key) = key else {
                self.violation(format!("run {id}: held step {step} has no attempt"));
                return;
            };
            self.target.times_applied(&key) > 0
        };
        // `done` records the step (or undo) as done without running it again, so a
        // later rollback still undoes a forward step; `retry` runs it again.
        let action = if landed { "done" } else { "retry" };
        let (status, _, body) = self.server().post(
            &format!("/v1/runs/{id}/steps/{step}/{action}"),
            &[],
            &json!({ "comment": format!("chaos harness: effect landed: {landed}") }),
        );
        if status >= 300 {
            self.violation(format!("{action} of {id}/{step}: {status} {body}"));
            return;
        }
        if landed {
            self.report.resolved.0 += 1;
        } else {
            self.report.resolved.1 += 1;
        }
    }

    /// Event sequence numbers of a run are 1..=n (or 0..n): no gap, no duplicate.
    fn check_events(&mut self, id: &str, view: &Value) {
        let seqs: Vec<i64> = view["events"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e["seq"].as_i64())
            .collect();
        let first = seqs.first().copied().unwrap_or(0);
        let gapless = (first == 0 || first == 1)
            && seqs.iter().enumerate().all(|(k, s)| *s == first + k as i64);
        if !gapless {
            self.violation(format!("run {id}: event seqs are not gapless: {seqs:?}"));
        }
    }

    /// The promises about the whole system: no idempotency key applied twice on the
    /// counter target, and a sound database file.
    pub fn check_global(&mut self) {
        let mut seen = BTreeSet::new();
        let mut problems = Vec::new();
        for a in self.target.applied() {
            if !seen.insert(a.key.clone()) {
                problems.push(format!(
                    "counter target: key {} applied twice ({} {})",
                    a.key, a.counter, a.amount
                ));
            }
        }
        match integrity(&self.database_file()) {
            Ok(ok) if ok == "ok" => {}
            Ok(other) => problems.push(format!("integrity_check: {other}")),
            Err(e) => problems.push(format!("integrity_check failed to run: {e}")),
        }
        for p in problems {
            self.violation(p);
        }
    }

    /// Sweeps until every run has ended, or `timeout`; what is still open then is a
    /// violation unless it is held with a reason.
    pub fn drain(&mut self, timeout: Duration, final_drain: bool) {
        let deadline = Instant::now() + timeout;
        while self.sweep() > 0 {
            if Instant::now() > deadline {
                if final_drain {
                    self.report_open();
                }
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn report_open(&mut self) {
        for i in 0..self.runs.len() {
            if self.runs[i].ended {
                continue;
            }
            let Some(id) = self.runs[i].id.clone() else {
                let tag = self.runs[i].tag.clone();
                self.violation(format!("{tag}: never got a run id"));
                continue;
            };
            let view = self.view(&id).unwrap_or_default();
            let (status, reason) = (&view["run"]["status"], &view["run"]["reason"]);
            if status == "held" && reason.as_str().is_some_and(|r| !r.is_empty()) {
                *self.report.statuses.entry("held".into()).or_default() += 1;
                self.report.runs += 1;
                continue;
            }
            self.violation(format!("run {id} did not end: {status} {reason}"));
        }
    }

    /// Exactly once: an ended run's effects, in the targets themselves.
    fn check_end(&mut self, i: usize, view: &Value) {
        let r = &self.runs[i];
        let id = r.id.clone().unwrap_or_default();
        let status = view["run"]["status"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let steps = view["steps"].as_array().cloned().unwrap_or_default();
        self.report.steps += steps
            .iter()
            .filter(|s| {
                matches!(
                    s["status"].as_str(),
                    Some("succeeded" | "failed" | "skipped" | "not_run")
                )
            })
            .count();
        self.report.attempts += view["attempts"].as_array().map_or(0, Vec::len);
        *self.report.statuses.entry(status.clone()).or_default() += 1;
        self.report.runs += 1;
        let value = |c: &str| self.target.value(&format!("{}-{c}", r.tag));
        let counters = (value("a"), value("b"), value("c"));
        let rows = self.db_rows(&id);
        let mut problems = Vec::new();
        match status.as_str() {
            "succeeded" => {
                if r.fail_last {
                    problems.push(format!("run {id} ({}): succeeded though c fails", r.tag));
                }
                if counters != (10, 1, 100) {
                    problems.push(format!(
                        "run {id} ({}): succeeded with counters {counters:?}, expected (10, 1, 100)",
                        r.tag
                    ));
                }
                if rows != 1 {
                    problems.push(format!(
                        "run {id} ({}): succeeded with {rows} db rows",
                        r.tag
                    ));
                }
            }
            "rolled_back" => {
                if counters != (0, 0, 0) {
                    problems.push(format!(
                        "run {id} ({}): rolled back with counters {counters:?}",
                        r.tag
                    ));
                }
                if rows != 0 {
                    problems.push(format!(
                        "run {id} ({}): rolled back with {rows} db rows left",
                        r.tag
                    ));
                }
            }
            other => problems.push(format!("run {id} ({}): ended {other}", r.tag)),
        }
        // Every applied ADD on this run's counters carries one of its attempts' keys.
        let prefix = format!("{}-", r.tag);
        for a in self.target.applied() {
            if a.counter.starts_with(&prefix) && !a.key.starts_with(id.as_str()) {
                problems.push(format!(
                    "run {id}: counter {} changed by key {} of another run",
                    a.counter, a.key
                ));
            }
        }
        for p in problems {
            self.violation(p);
        }
    }

    pub fn finish(mut self, started: Instant) -> Report {
        self.report.rounds = self.round;
        self.report.elapsed = started.elapsed();
        if let Some(server) = self.server.take() {
            let _ = server.running.terminate();
        }
        self.report
    }
}

fn terminal(view: &Value) -> bool {
    matches!(
        view["run"]["status"].as_str(),
        Some("succeeded" | "failed" | "rolled_back" | "cancelled")
    )
}

/// `PRAGMA integrity_check` of a medic database, opened read-only beside the live
/// server (WAL allows a concurrent reader).
pub fn integrity(path: &std::path::Path) -> Result<String, String> {
    let conn = rusqlite::Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| e.to_string())?;
    conn.busy_timeout(Duration::from_secs(5))
        .map_err(|e| e.to_string())?;
    let rows: Vec<String> = conn
        .prepare("PRAGMA integrity_check")
        .and_then(|mut s| {
            s.query_map([], |r| r.get::<_, String>(0))?
                .collect::<Result<Vec<_>, _>>()
        })
        .map_err(|e| e.to_string())?;
    Ok(rows.join("; "))
}

/// A whole session: `cfg.rounds` rounds of submit, wait a seeded moment, SIGKILL,
/// restart, operate and check; then drain and check every run's end.
pub fn run(cfg: &Config) -> Report {
    let started = Instant::now();
    let mut rng = Rng::new(cfg.seed);
    let mut chaos = Chaos::start(cfg.seed);
    for round in 1..=cfg.rounds {
        chaos.round = round;
        for _ in 0..cfg.runs_per_round {
            chaos.submit(&mut rng, cfg.max_hold_ms);
        }
        std::thread::sleep(Duration::from_millis(rng.upto(cfg.max_kill_ms)));
        chaos.kill_and_restart();
        chaos.sweep();
        chaos.check_global();
        // Keep the number of open runs bounded: every 10 rounds, let them end.
        if round % 10 == 0 {
            chaos.drain(Duration::from_secs(20), false);
        }
    }
    chaos.drain(Duration::from_secs(120), true);
    chaos.check_global();
    chaos.finish(started)
}
