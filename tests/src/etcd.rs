//! A real etcd for the etcd plugin's tests, through `tests/scripts/etcd.sh` (which
//! installs it if missing): a private single member per test (~0.5 s to start, so
//! no test sees another's keys, alarms or auth), and learners joined to it. Answers
//! are compared with `etcdctl`'s own.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;
use tempfile::TempDir;

/// A running etcd member on 127.0.0.1.
pub struct Etcd {
    /// `http://127.0.0.1:PORT`, the client URL (and the v3 JSON gateway).
    pub url: String,
    dir: PathBuf,
    /// Set for a private member: stopped and removed with it.
    private: Option<TempDir>,
}

impl Etcd {
    /// A member of this test's own; stopped on drop.
    pub fn private() -> Etcd {
        let scratch = tempfile::Builder::new()
            .prefix("medic-etcd-")
            .tempdir()
            .expect("create a directory for a private etcd");
        let dir = scratch.path().to_path_buf();
        let url = start(&dir);
        Etcd {
            url,
            dir,
            private: Some(scratch),
        }
    }

    /// A second member of this member's cluster, added as a learner and started
    /// (`etcd.sh --join`); stopped on drop.
    pub fn learner(&self) -> Etcd {
        let scratch = tempfile::Builder::new()
            .prefix("medic-etcd-learner-")
            .tempdir()
            .expect("create a directory for a learner");
        let dir = scratch.path().to_path_buf();
        let url = run_script(&["--join", &self.url], &dir).trim().to_string();
        Etcd {
            url,
            dir,
            private: Some(scratch),
        }
    }

    /// Turns etcd's auth on (user `root`, role `root`) and returns a token for root
    /// from the gateway's `/v3/auth/authenticate`.
    pub fn enable_auth(&self) -> String {
        self.ctl(&["user", "add", "root:medic-root-pw"]);
        self.ctl(&["user", "grant-role", "root", "root"]);
        self.ctl(&["auth", "enable"]);
        let body = r#"{"name":"root","password":"medic-root-pw"}"#;
        let answer = http_post(&self.url, "/v3/auth/authenticate", body);
        let answer: Value = serde_json::from_str(&answer)
            .unwrap_or_else(|e| panic!("authenticate answered {answer:?} ({e})"));
        answer["token"].as_str().expect("a token").to_string()
    }

    /// `etcdctl --endpoints URL ARGS... -w json`, parsed.
    pub fn ctl_json(&self, args: &[&str]) -> Value {
        let out = self.ctl(&[args, &["-w", "json"]].concat());
        serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("etcdctl {args:?}: not JSON ({e}): {out}"))
    }

    /// `etcdctl --endpoints URL ARGS...`: its stdout; panics if it fails.
    pub fn ctl(&self, args: &[&str]) -> String {
        let out = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .arg("--endpoints")
            .arg(&self.url)
            .arg("--command-timeout=10s")
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run etcdctl (Debian: apt-get install -y etcd-client)");
        assert!(
            out.status.success(),
            "etcdctl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `etcdctl put KEY` with the value on stdin (values too long for an argument).
    pub fn put(&self, key: &str, value: &[u8]) {
        use std::io::Write;
        let mut child = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .arg("--endpoints")
            .arg(&self.url)
            .args(["put", key])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run etcdctl (Debian: apt-get install -y etcd-client)");
        child.stdin.take().unwrap().write_all(value).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "etcdctl put {key} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Stops a private member (the pid in its pid file) and waits until it is gone.
    pub fn stop(&self) {
        assert!(
            self.private.is_some(),
            "only a test's private etcd may be stopped"
        );
        run_script(&["--stop"], &self.dir);
    }

    /// Starts a stopped private member again: the script brings it back on the same
    /// ports with its data, as an operator's restart does.
    pub fn start_again(&self) {
        assert!(
            self.private.is_some(),
            "only a test's private etcd may be restarted"
        );
        let url = start(&self.dir);
        assert_eq!(
            url, self.url,
            "the restarted member came back on another client URL"
        );
    }
}

impl Drop for Etcd {
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

/// `etcdctl snapshot status FILE -w json`: what etcd's own tool reads in a snapshot
/// file (`hash`, `revision`, `totalKey`, `totalSize`); panics if it refuses the file.
pub fn etcd_snapshot_status(file: &Path) -> Value {
    let out = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args(["snapshot", "status"])
        .arg(file)
        .args(["-w", "json"])
        .stdin(Stdio::null())
        .output()
        .expect("run etcdctl (Debian: apt-get install -y etcd-client)");
    assert!(
        out.status.success(),
        "etcdctl snapshot status {} refused the file: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("etcdctl snapshot status printed JSON")
}

/// `POST URL PATH` with a JSON body over plain HTTP/1.1: the body of the answer.
fn http_post(url: &str, path: &str, body: &str) -> String {
    use std::io::{Read, Write};
    let authority = url.strip_prefix("http://").expect("an http:// URL");
    let mut stream = std::net::TcpStream::connect(authority).expect("connect to etcd");
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: {authority}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or(answer)
}

fn script() -> PathBuf {
    crate::repo_root().join("tests/scripts/etcd.sh")
}

fn run_script(flags: &[&str], dir: &Path) -> String {
    let out = Command::new("bash")
        .arg(script())
        .args(flags)
        .arg(dir)
        .stdin(Stdio::null())
        .output()
        .expect("run tests/scripts/etcd.sh");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "tests/scripts/etcd.sh {flags:?} {} failed: the etcd tests need etcd 3.4+ \
         (Debian: apt-get install -y etcd-server etcd-client)\n{}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Runs the script for `dir`; its only stdout line is the client URL.
fn start(dir: &Path) -> String {
    let url = run_script(&[], dir).trim().to_string();
    assert!(
        url.starts_with("http://127.0.0.1:"),
        "tests/scripts/etcd.sh printed {url:?}, not a client URL"
    );
    url
}
