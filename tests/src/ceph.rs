//! A real Ceph 16 cluster for the ceph plugin's tests, through `tests/scripts/ceph.sh`
//! (which installs it if missing): one mon, one mgr serving the dashboard's REST API
//! over HTTP, one memstore OSD (`osd.0`), on 127.0.0.1. One cluster per machine
//! (`$MEDIC_CACHE/ceph`), started or reused once per test process (~15 s cold, ~1 s
//! warm). The tests change cluster-wide state (flags, OSD in/out, daemons), so each
//! holds a [`CephLease`]: one test at a time, starting from a cluster with its daemons
//! running, no maintenance flag, `osd.0` in and every placement group active+clean.
//! What the tests assert is read with the `ceph` CLI, not through the plugin.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use serde_json::Value;

/// The maintenance flags a test may leave set; cleared before the next one.
const MAINTENANCE_FLAGS: &[&str] = &[
    "pause",
    "noup",
    "nodown",
    "noout",
    "noin",
    "nobackfill",
    "norebalance",
    "norecover",
    "noscrub",
    "nodeep-scrub",
    "notieragent",
    "nosnaptrim",
];

/// The running cluster.
pub struct Ceph {
    /// `http://127.0.0.1:PORT`, the mgr dashboard's REST API (the plugin's origin).
    pub api: String,
    /// `DIR/ceph.conf`, with client.admin's keyring.
    pub conf: PathBuf,
    dir: PathBuf,
}

/// A test's exclusive use of the shared cluster.
pub struct CephLease {
    pub ceph: &'static Ceph,
    _turn: MutexGuard<'static, ()>,
}

impl std::ops::Deref for CephLease {
    type Target = Ceph;
    fn deref(&self) -> &Ceph {
        self.ceph
    }
}

impl Ceph {
    /// The shared cluster, for this test alone until the lease is dropped; its daemons
    /// running, no maintenance flag set, osd.0 in, every PG active+clean.
    pub fn lease() -> CephLease {
        static SHARED: OnceLock<Ceph> = OnceLock::new();
        static TURN: Mutex<()> = Mutex::new(());
        // A test that failed holding the lease poisons it; the next one resets anyway.
        let turn = TURN.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let ceph = SHARED.get_or_init(|| {
            let dir = match std::env::var_os("MEDIC_CACHE") {
                Some(cache) => PathBuf::from(cache).join("ceph"),
                None => PathBuf::from(std::env::var_os("HOME").expect("HOME is set"))
                    .join(".cache/medic/ceph"),
            };
            let out = run_script(&[], &dir);
            let mut lines = out.lines();
            let api = lines.next().unwrap_or_default().to_string();
            let conf = PathBuf::from(lines.next().unwrap_or_default());
            assert!(
                api.starts_with("http://127.0.0.1:") && conf.is_file(),
                "tests/scripts/ceph.sh printed {out:?}, not the API URL and ceph.conf"
            );
            Ceph { api, conf, dir }
        });
        ceph.reset();
        CephLease { ceph, _turn: turn }
    }

    /// Starts whichever daemon is not running, clears the flags, marks osd.0 in, and
    /// waits until every PG is active+clean.
    fn reset(&self) {
        run_script(&[], &self.dir);
        let set = self.flags();
        for flag in MAINTENANCE_FLAGS {
            let name = if *flag == "pause" { "pauserd" } else { flag };
            if set.iter().any(|f| f == name) {
                self.ceph(&["osd", "unset", flag]);
            }
        }
        if !self.osd(0).1 {
            self.ceph(&["osd", "in", "0"]);
        }
        crate::poll_until(
            Duration::from_secs(90),
            "every placement group active+clean",
            || self.all_clean().then_some(()),
            || self.ceph(&["pg", "stat"]),
        );
        // The mons clear a warning (a flag just unset, an OSD just back) a moment
        // before the mgr, whose view the REST API serves, hears of it.
        let token = self.login_token();
        crate::poll_until(
            Duration::from_secs(60),
            "HEALTH_OK from the mons and from the mgr's REST API",
            || {
                let mons = self.ceph_json(&["health"])["status"] == "HEALTH_OK";
                let mgr =
                    self.api_get("/api/health/minimal", &token)["health"]["status"] == "HEALTH_OK";
                (mons && mgr).then_some(())
            },
            || self.ceph(&["health", "detail"]),
        );
    }

    /// The dashboard user the script created.
    pub fn user(&self) -> &'static str {
        "medic"
    }

    /// That user's password.
    pub fn password(&self) -> String {
        std::fs::read_to_string(self.dir.join("dashboard-password"))
            .expect("the script wrote the dashboard password")
    }

    /// `ceph -c CONF ARGS...` (bounded by `timeout`): its stdout; panics if it fails.
    pub fn ceph(&self, args: &[&str]) -> String {
        let out = Command::new("timeout")
            .arg("30")
            .arg("ceph")
            .arg("-c")
            .arg(&self.conf)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run ceph (Debian: apt-get install -y ceph-common)");
        assert!(
            out.status.success(),
            "ceph {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `ceph ARGS... --format json`, parsed.
    pub fn ceph_json(&self, args: &[&str]) -> Value {
        let out = self.ceph(&[args, &["--format", "json"]].concat());
        serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("ceph {args:?}: not JSON ({e}): {out}"))
    }

    /// The cluster's flags, as `ceph osd dump` lists them (`noout`, `sortbitwise`, ...).
    pub fn flags(&self) -> Vec<String> {
        self.ceph_json(&["osd", "dump"])["flags"]
            .as_str()
            .unwrap_or_default()
            .split(',')
            .filter(|f| !f.is_empty())
            .map(String::from)
            .collect()
    }

    /// `(up, in)` of an OSD from `ceph osd dump`.
    pub fn osd(&self, id: u64) -> (bool, bool) {
        let dump = self.ceph_json(&["osd", "dump"]);
        let osd = dump["osds"]
            .as_array()
            .and_then(|osds| osds.iter().find(|o| o["osd"].as_u64() == Some(id)))
            .unwrap_or_else(|| panic!("osd.{id} is not in `ceph osd dump`: {dump}"));
        (osd["up"] == 1, osd["in"] == 1)
    }

    /// Whether `ceph pg stat` has every PG active+clean.
    pub fn all_clean(&self) -> bool {
        let stat = self.ceph_json(&["pg", "stat"]);
        let summary = &stat["pg_summary"];
        let total = summary["num_pgs"].as_u64().unwrap_or(0);
        let clean: u64 = summary["num_pg_by_state"]
            .as_array()
            .map(|states| {
                states
                    .iter()
                    .filter(|s| s["name"] == "active+clean")
                    .filter_map(|s| s["num"].as_u64())
                    .sum()
            })
            .unwrap_or(0);
        total > 0 && clean == total
    }

    /// The objects of the pool `medic` (`rados ls`): the script wrote `medic-1` ...
    /// `medic-16`.
    pub fn objects(&self) -> Vec<String> {
        let out = Command::new("timeout")
            .arg("30")
            .arg("rados")
            .arg("-c")
            .arg(&self.conf)
            .args(["-p", "medic", "ls"])
            .stdin(Stdio::null())
            .output()
            .expect("run rados (Debian: apt-get install -y ceph-common)");
        assert!(
            out.status.success(),
            "rados ls failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut names: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(String::from)
            .collect();
        names.sort();
        names
    }

    /// Stops the OSD (SIGTERM, as `systemctl stop` does); the next lease or `start`
    /// brings it back with its data.
    pub fn stop_osd(&self) {
        run_script(&["--stop-osd"], &self.dir);
    }

    /// Stops the mgr: the REST API's port refuses connections.
    pub fn stop_mgr(&self) {
        run_script(&["--stop-mgr"], &self.dir);
    }

    /// Starts the daemons that are not running and waits until the cluster is settled.
    pub fn start(&self) {
        run_script(&[], &self.dir);
    }

    /// `GET PATH` of the REST API with a bearer token: the JSON answer.
    pub fn api_get(&self, path: &str, token: &str) -> Value {
        let answer = self.http(
            &format!("GET {path} HTTP/1.1\r\nAuthorization: Bearer {token}\r\n"),
            "",
        );
        serde_json::from_str(&answer)
            .unwrap_or_else(|e| panic!("GET {path} answered {answer:?} ({e})"))
    }

    /// One HTTP/1.1 exchange with the REST API: `head` is the request line and any
    /// headers (each ending in CRLF); the answer's body.
    fn http(&self, head: &str, body: &str) -> String {
        use std::io::{Read, Write};
        let authority = self.api.strip_prefix("http://").expect("an http:// URL");
        let mut stream = std::net::TcpStream::connect(authority).expect("connect to the dashboard");
        write!(
            stream,
            "{head}Host: {authority}\r\nAccept: application/vnd.ceph.api.v1.0+json\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        answer
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or(answer)
    }

    /// A bearer token for the dashboard user (`POST /api/auth`), as an operator would
    /// put in medic.toml's `[[http.credentials]]`.
    pub fn login_token(&self) -> String {
        let body =
            serde_json::json!({"username": self.user(), "password": self.password()}).to_string();
        let answer = self.http("POST /api/auth HTTP/1.1\r\n", &body);
        let v: Value = serde_json::from_str(&answer)
            .unwrap_or_else(|e| panic!("/api/auth answered {answer:?} ({e})"));
        v["token"].as_str().expect("a token").to_string()
    }
}

fn run_script(flags: &[&str], dir: &std::path::Path) -> String {
    let script = crate::repo_root().join("tests/scripts/ceph.sh");
    let out = Command::new("bash")
        .arg(&script)
        .args(flags)
        .arg(dir)
        .stdin(Stdio::null())
        .output()
        .expect("run tests/scripts/ceph.sh");
    assert!(
        out.status.success(),
        "tests/scripts/ceph.sh {flags:?} {} failed: the ceph tests need Ceph 16 \
         (Debian: apt-get install -y ceph-mon ceph-mgr ceph-osd ceph-common ceph-mgr-dashboard)\n{}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
