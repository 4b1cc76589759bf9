//! A `medic` child process whose stdout and stderr are collected by background
//! threads, so a test can wait for a progress line, SIGKILL it at a chosen moment,
//! and still show everything it printed when an assertion fails.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, ExitStatus};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::medic::{Finished, exit_code};
use crate::wait::poll_until;

/// A running `medic`. Dropping it kills the process (only this one: the test's own
/// child, by its handle), so a failing test leaves nothing behind.
pub struct Running {
    child: Child,
    command: String,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<String>>,
    readers: Vec<JoinHandle<()>>,
    status: Option<ExitStatus>,
}

impl Running {
    pub(crate) fn new(mut child: Child, command: String) -> Running {
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut readers = Vec::new();
        if let Some(out) = child.stdout.take() {
            let lines = stdout.clone();
            readers.push(std::thread::spawn(move || {
                for line in BufReader::new(out).lines() {
                    let Ok(line) = line else { return };
                    lines.lock().unwrap().push(line);
                }
            }));
        }
        if let Some(mut err) = child.stderr.take() {
            let text = stderr.clone();
            readers.push(std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                loop {
                    match err.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => text
                            .lock()
                            .unwrap()
                            .push_str(&String::from_utf8_lossy(&buf[..n])),
                    }
                }
            }));
        }
        Running {
            child,
            command,
            stdout,
            stderr,
            readers,
            status: None,
        }
    }

    pub fn stdout_lines(&self) -> Vec<String> {
        self.stdout.lock().unwrap().clone()
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// What the process printed so far, for failure messages.
    pub fn describe(&self) -> String {
        describe(&self.command, &self.stdout_lines(), &self.stderr())
    }

    /// Waits for a stdout line that `matches` picks something out of. Panics if the
    /// process exits first or the timeout passes.
    pub fn wait_for_line<T>(
        &mut self,
        timeout: Duration,
        what: &str,
        mut matches: impl FnMut(&str) -> Option<T>,
    ) -> T {
        let mut exited = None;
        let (command, stdout, stderr) = (
            self.command.clone(),
            self.stdout.clone(),
            self.stderr.clone(),
        );
        let child = &mut self.child;
        let found = poll_until(
            timeout,
            what,
            || {
                if let Some(found) = stdout.lock().unwrap().iter().find_map(|l| matches(l)) {
                    return Some(Some(found));
                }
                if exited.is_none() {
                    exited = child.try_wait().ok().flatten();
                }
                // Exited: let the reader drain, then look once more before giving up.
                exited.map(|_| None)
            },
            || describe(&command, &stdout.lock().unwrap(), &stderr.lock().unwrap()),
        );
        match found {
            Some(found) => found,
            None => {
                self.join_readers();
                if let Some(found) = self.stdout_lines().iter().find_map(|l| matches(l)) {
                    return found;
                }
                panic!(
                    "`{}` exited ({:?}) before printing {what}\n{}",
                    self.command,
                    exited,
                    self.describe()
                )
            }
        }
    }

    /// `medic run` announces its run first: `run <RUN_ID> started ...`.
    pub fn run_id(&mut self) -> String {
        self.wait_for_line(
            Duration::from_secs(30),
            "the `run <RUN_ID> started` line",
            |line| {
                let mut words = line.split_whitespace();
                match (words.next(), words.next(), words.next()) {
                    (Some("run"), Some(id), Some("started" | "started:")) => Some(id.to_string()),
                    _ => None,
                }
            },
        )
    }

    /// The OS process id, e.g. to read its CPU time from `/proc`.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn is_alive(&mut self) -> bool {
        self.status.is_none() && matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGKILL (what `Child::kill` sends on Unix): no chance to clean up, exactly like
    /// a crash or an OOM kill. Returns once the process is reaped, so it can no
    /// longer touch the database or the counter target.
    pub fn kill(mut self) -> Finished {
        if let Err(e) = self.child.kill() {
            // Already exited: the kill point was missed, which the test must hear.
            panic!(
                "could not SIGKILL `{}` ({e}); it exited already?\n{}",
                self.command,
                self.describe()
            );
        }
        self.finish(Duration::from_secs(10))
    }

    /// SIGINT, what Ctrl-C sends; returns once the process has exited.
    pub fn interrupt(self) -> Finished {
        self.signal("INT")
    }

    /// SIGTERM, what a service manager sends to stop it; returns once it has exited.
    pub fn terminate(self) -> Finished {
        self.signal("TERM")
    }

    fn signal(mut self, name: &str) -> Finished {
        // This test's own child, by its pid.
        let pid = self.child.id().to_string();
        let sent = std::process::Command::new("kill")
            .args([&format!("-{name}"), &pid])
            .status();
        assert!(
            sent.as_ref().is_ok_and(|s| s.success()),
            "could not send SIG{name} to `{}` ({sent:?})\n{}",
            self.command,
            self.describe()
        );
        self.finish(Duration::from_secs(10))
    }

    /// Waits for the process to exit by itself.
    pub fn wait(mut self, timeout: Duration) -> Finished {
        self.finish(timeout)
    }

    fn finish(&mut self, timeout: Duration) -> Finished {
        let deadline = Instant::now() + timeout;
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Ok(None) => panic!(
                    "`{}` still running after {timeout:?}\n{}",
                    self.command,
                    self.describe()
                ),
                Err(e) => panic!("waiting for `{}`: {e}", self.command),
            }
        };
        self.status = Some(status);
        self.join_readers();
        Finished {
            command: self.command.clone(),
            code: exit_code(status),
            stdout: self.stdout_lines().join("\n"),
            stderr: self.stderr(),
        }
    }

    fn join_readers(&mut self) {
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn describe(command: &str, stdout: &[String], stderr: &str) -> String {
    format!(
        "--- `{command}` stdout ---\n{}\n--- stderr ---\n{stderr}",
        stdout.join("\n")
    )
}
