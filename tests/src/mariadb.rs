//! A real MariaDB for the tests of the `sql` interface, through
//! `tests/scripts/mariadb.sh` (which installs it if missing): one shared instance per
//! machine, started or reused once per test process, plus private instances for tests
//! that kill their server. Each test works in a database of its own.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

use tempfile::TempDir;

/// The account with every privilege (the script creates it).
pub const TEST_USER: &str = "medic_test";
pub const TEST_PASSWORD: &str = "medic-test-pw-7f3a";
/// The account that may only SELECT from `medic_limited.*`.
pub const LIMITED_USER: &str = "medic_limited";
pub const LIMITED_PASSWORD: &str = "medic-limited-pw-2c9e";

/// A running MariaDB on 127.0.0.1.
pub struct MariaDb {
    pub port: u16,
    dir: PathBuf,
    /// Set for a private instance: stopped and removed with it.
    private: Option<TempDir>,
    /// A member of a `MariaDbPair`: may be killed, stopped with the pair.
    in_pair: bool,
}

impl MariaDb {
    /// The machine's shared instance, started (or found running) on first use.
    pub fn shared() -> &'static MariaDb {
        static SHARED: OnceLock<MariaDb> = OnceLock::new();
        SHARED.get_or_init(|| {
            let dir = match std::env::var_os("MEDIC_CACHE") {
                Some(cache) => PathBuf::from(cache).join("mariadb"),
                None => PathBuf::from(std::env::var_os("HOME").expect("HOME is set"))
                    .join(".cache/medic/mariadb"),
            };
            let port = start(&dir);
            MariaDb {
                port,
                dir,
                private: None,
                in_pair: false,
            }
        })
    }

    /// An instance of this test's own, for tests that kill it; stopped on drop.
    pub fn private() -> MariaDb {
        let scratch = tempfile::Builder::new()
            .prefix("medic-mariadb-")
            .tempdir()
            .expect("create a directory for a private MariaDB");
        let dir = scratch.path().to_path_buf();
        let port = start(&dir);
        MariaDb {
            port,
            dir,
            private: Some(scratch),
            in_pair: false,
        }
    }

    /// `127.0.0.1:PORT`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// A database no other test uses, created empty.
    pub fn fresh_database(&self, label: &str) -> String {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "t_{label}_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        self.sql(&format!(
            "DROP DATABASE IF EXISTS {name}; CREATE DATABASE {name}"
        ));
        name
    }

    /// Runs `statements` as root over the socket with the `mariadb` client and
    /// returns its tab-separated output (no column names).
    pub fn sql(&self, statements: &str) -> String {
        self.root_sql(statements, "--skip-column-names")
    }

    fn root_sql(&self, statements: &str, names: &str) -> String {
        let out = Command::new(client())
            .arg("--no-defaults")
            .arg(format!(
                "--socket={}",
                self.dir.join("mariadbd.sock").display()
            ))
            .args(["-uroot", "--batch", names, "-e", statements])
            .stdin(Stdio::null())
            .output()
            .expect("run the mariadb client");
        assert!(
            out.status.success(),
            "mariadb -e {statements:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Starts the `mariadb` client with `statements` in the background (e.g. to
    /// hold a lock while a test runs).
    pub fn spawn_sql(&self, statements: &str) -> std::process::Child {
        Command::new(client())
            .arg("--no-defaults")
            .arg(format!(
                "--socket={}",
                self.dir.join("mariadbd.sock").display()
            ))
            .args(["-uroot", "--batch", "-e", statements])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the mariadb client")
    }

    /// SIGKILLs a private instance's server (the pid in its pid file).
    pub fn kill(&self) {
        assert!(
            self.private.is_some() || self.in_pair,
            "only a test's private MariaDB may be killed"
        );
        let pid = self.pid();
        let status = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -KILL {pid} failed");
    }
}

impl MariaDb {
    /// Stops a pair member's server by its pid (as a clean shutdown) and starts it
    /// again on the same port, as an operator's restart does.
    pub fn restart(&self) {
        assert!(self.in_pair, "only a pair member is restarted");
        let stopped = Command::new("bash")
            .arg(script())
            .arg("--stop")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .status()
            .expect("run tests/scripts/mariadb.sh --stop");
        assert!(
            stopped.success(),
            "mariadb.sh --stop {} failed",
            self.dir.display()
        );
        let port = start(&self.dir);
        assert_eq!(port, self.port, "the restarted server kept its port");
    }

    /// The server's pid (from its pid file).
    pub fn pid(&self) -> u32 {
        let pid = std::fs::read_to_string(self.dir.join("mariadbd.pid"))
            .expect("read the MariaDB's pid file");
        pid.trim().parse().expect("a pid in the pid file")
    }

    /// Runs `statements` over TCP as `user` (e.g. a limited application user, whom
    /// `read_only` stops, unlike root): the output, or the client's error message.
    pub fn sql_as(&self, user: &str, password: &str, statements: &str) -> Result<String, String> {
        let out = Command::new(client())
            .arg("--no-defaults")
            .args([
                "-h127.0.0.1",
                &format!("-P{}", self.port),
                &format!("-u{user}"),
            ])
            .arg(format!("-p{password}"))
            .args(["--batch", "--skip-column-names", "-e", statements])
            .stdin(Stdio::null())
            .output()
            .expect("run the mariadb client");
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// One value of `SHOW SLAVE STATUS` (`None`: not a replica).
    pub fn slave_status(&self, field: &str) -> Option<String> {
        let out = self.root_sql("SHOW SLAVE STATUS\\G", "--column-names");
        let mut any = false;
        for line in out.lines() {
            any = true;
            if let Some((name, value)) = line.split_once(':')
                && name.trim() == field
            {
                return Some(value.trim().to_string());
            }
        }
        any.then(String::new)
    }
}

/// The application user of a `MariaDbPair` (writes to `app.*` only; `read_only`
/// stops it).
pub const APP_USER: &str = "app";
pub const APP_PASSWORD: &str = "medic-app-pw-5e18";
/// The administrative user the plans connect as (ALL on *.*).
pub const ADMIN_USER: &str = "medic";
pub const ADMIN_PASSWORD: &str = "medic-admin-pw-41d2";
/// The replication user on the primary.
pub const REPL_USER: &str = "repl";
pub const REPL_PASSWORD: &str = "medic-repl-pw-9b07";

/// A test's own GTID-replicated primary and replica (tests/scripts/mariadb-pair.sh),
/// both stopped when it is dropped, so tests that break replication or kill a
/// server cannot disturb each other.
pub struct MariaDbPair {
    pub primary: MariaDb,
    pub replica: MariaDb,
    scratch: TempDir,
}

impl MariaDbPair {
    pub fn start() -> MariaDbPair {
        let scratch = tempfile::Builder::new()
            .prefix("medic-mariadb-pair-")
            .tempdir()
            .expect("create a directory for a MariaDB pair");
        let out = Command::new("bash")
            .arg(crate::repo_root().join("tests/scripts/mariadb-pair.sh"))
            .arg(scratch.path())
            .stdin(Stdio::null())
            .output()
            .expect("run tests/scripts/mariadb-pair.sh");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() {
            // Whichever server did start must not outlive the failed test.
            stop_pair(scratch.path());
        }
        assert!(
            out.status.success(),
            "tests/scripts/mariadb-pair.sh failed: the mysql tests need MariaDB \
             (Debian: apt-get install -y mariadb-server mariadb-client)\n{stderr}"
        );
        let ports: Vec<u16> = stdout
            .split_whitespace()
            .map(|p| p.parse().expect("a port"))
            .collect();
        let [primary, replica] = ports[..] else {
            panic!("tests/scripts/mariadb-pair.sh printed {stdout:?}, not two ports\n{stderr}")
        };
        let member = |port, side: &str| MariaDb {
            port,
            dir: scratch.path().join(side),
            private: None,
            in_pair: true,
        };
        MariaDbPair {
            primary: member(primary, "primary"),
            replica: member(replica, "replica"),
            scratch,
        }
    }
}

impl Drop for MariaDbPair {
    fn drop(&mut self) {
        stop_pair(self.scratch.path());
    }
}

fn stop_pair(dir: &Path) {
    let _ = Command::new("bash")
        .arg(crate::repo_root().join("tests/scripts/mariadb-pair.sh"))
        .arg("--stop")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        if self.private.is_some() {
            let _ = Command::new("bash")
                .arg(script())
                .arg("--stop")
                .arg(&self.dir)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

fn script() -> PathBuf {
    crate::repo_root().join("tests/scripts/mariadb.sh")
}

fn client() -> &'static str {
    "mariadb"
}

/// Runs the script for `dir`; its only stdout line is the port.
fn start(dir: &Path) -> u16 {
    let out = Command::new("bash")
        .arg(script())
        .arg(dir)
        .stdin(Stdio::null())
        .output()
        .expect("run tests/scripts/mariadb.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "tests/scripts/mariadb.sh {} failed: the sql tests need a MariaDB server \
         (Debian: apt-get install -y mariadb-server mariadb-client)\n{stderr}",
        dir.display()
    );
    stdout.trim().parse().unwrap_or_else(|_| {
        panic!("tests/scripts/mariadb.sh printed {stdout:?}, not a port\n{stderr}")
    })
}
