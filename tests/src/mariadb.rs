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
        let out = Command::new(client())
            .arg("--no-defaults")
            .arg(format!(
                "--socket={}",
                self.dir.join("mariadbd.sock").display()
            ))
            .args(["-uroot", "--batch", "--skip-column-names", "-e", statements])
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
            self.private.is_some(),
            "only a test's private MariaDB may be killed"
        );
        let pid = std::fs::read_to_string(self.dir.join("mariadbd.pid"))
            .expect("read the private MariaDB's pid file");
        let status = Command::new("kill")
            .args(["-KILL", pid.trim()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -KILL {pid} failed");
    }
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
