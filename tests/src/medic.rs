//! The real `medic` binary, invoked the way an operator would: one scratch
//! directory per test holding its database, the built plugins, and commands that
//! either finish (`Finished`) or keep running in the background (`Running`).

use std::ffi::OsStr;
use std::fmt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::process::Running;
use crate::view::RunView;

/// The exit code, or `128 + signal` as a shell reports a killed process.
pub fn exit_code(status: ExitStatus) -> i32 {
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(-1)
}

/// What a finished `medic` command left behind.
#[derive(Clone, Debug)]
pub struct Finished {
    pub command: String,
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Finished {
    /// Panics unless the command exited with `code`, showing its output and `context`.
    pub fn expect_code(&self, code: i32, context: impl FnOnce() -> String) -> &Finished {
        assert_eq!(
            self.code,
            code,
            "`{}` exited {} (expected {code})\n{self}\n{}",
            self.command,
            self.code,
            context()
        );
        self
    }
}

impl fmt::Display for Finished {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "--- `{}` exit {} ---\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.command, self.code, self.stdout, self.stderr
        )
    }
}

/// One test's medic: a scratch directory (the data dir lives inside it) plus the
/// built binary and plugins.
pub struct Medic {
    scratch: TempDir,
    binary: PathBuf,
    plugin_dir: PathBuf,
}

impl Medic {
    pub fn new() -> Medic {
        Medic::with_binary(binary())
    }

    /// Like `new`, with another build of medic (e.g. a baseline to compare against).
    pub fn with_binary(binary: PathBuf) -> Medic {
        assert!(binary.is_file(), "{} is not a file", binary.display());
        let scratch = tempfile::Builder::new()
            .prefix("medic-test-")
            .tempdir()
            .expect("create a scratch directory");
        std::fs::create_dir(scratch.path().join("data")).expect("create the data dir");
        Medic {
            scratch,
            binary,
            plugin_dir: plugin_dir(),
        }
    }

    /// The scratch directory; commands run with it as their working directory.
    pub fn dir(&self) -> &Path {
        self.scratch.path()
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir().join("data")
    }

    /// The medic binary the commands run.
    pub fn binary(&self) -> &Path {
        &self.binary
    }

    pub fn plugin_dir(&self) -> &Path {
        &self.plugin_dir
    }

    /// Writes `contents` to `name` in the scratch directory and returns its path.
    pub fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.dir().join(name);
        std::fs::write(&path, contents).expect("write a scratch file");
        path
    }

    /// A `medic` command with this test's data and plugin dirs given as flags before
    /// the subcommand, and no `MEDIC_*` settings leaking in from the environment.
    pub fn command<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.command_with_plugin_dirs(&[&self.plugin_dir], args)
    }

    /// Like `command`, with `plugin_dirs` (in order; installs go to the first) instead
    /// of the built plugins.
    pub fn command_with_plugin_dirs<I, S>(&self, plugin_dirs: &[&Path], args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = self.bare_command();
        cmd.arg("--data-dir").arg(self.data_dir());
        for dir in plugin_dirs {
            cmd.arg("--plugin-dir").arg(dir);
        }
        cmd.args(args);
        cmd
    }

    /// A `medic` command with nothing set: for tests of the environment variables.
    pub fn bare_command(&self) -> Command {
        let mut cmd = Command::new(&self.binary);
        cmd.current_dir(self.dir())
            .env_remove("MEDIC_DATA_DIR")
            .env_remove("MEDIC_PLUGIN_DIR")
            .env_remove("MEDIC_SERVER")
            .env_remove("MEDIC_TOKEN")
            .env_remove("MEDIC_TRUSTED_KEYS")
            .env_remove("MEDIC_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    /// Runs `medic ARGS...` to completion (within `timeout`).
    pub fn run_with_timeout<I, S>(&self, args: I, timeout: Duration) -> Finished
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.spawn_command(self.command(args)).wait(timeout)
    }

    /// Runs `medic ARGS...` to completion; one minute is far more than any command
    /// of these tests needs, and keeps a hung medic from hanging the suite.
    pub fn run<I, S>(&self, args: I) -> Finished
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.run_with_timeout(args, Duration::from_secs(60))
    }

    /// Starts `medic ARGS...` in the background.
    pub fn spawn<I, S>(&self, args: I) -> Running
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.spawn_command(self.command(args))
    }

    pub fn spawn_command(&self, mut cmd: Command) -> Running {
        let command = describe_command(&cmd);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start `{command}`: {e}"));
        Running::new(child, command)
    }

    /// Where `medic --server` clients of this test keep their (unused) data dir.
    pub fn client_dir(&self) -> PathBuf {
        self.dir().join("client")
    }

    /// `medic --server SERVER ARGS...` as an operator on another machine runs it: a
    /// data dir of its own and no plugins, so nothing it prints can come from the
    /// server's database or plugins.
    pub fn remote_command<I, S>(&self, server: &str, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = self.bare_command();
        cmd.arg("--data-dir")
            .arg(self.client_dir())
            .arg("--server")
            .arg(server)
            .args(args);
        cmd
    }

    /// Runs `medic --server SERVER ARGS...` to completion and checks it never opened
    /// a database of its own.
    pub fn remote<I, S>(&self, server: &str, args: I) -> Finished
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let out = self
            .spawn_command(self.remote_command(server, args))
            .wait(Duration::from_secs(60));
        self.assert_client_has_no_database(&out);
        out
    }

    /// Starts `medic --server SERVER ARGS...` in the background.
    pub fn spawn_remote<I, S>(&self, server: &str, args: I) -> Running
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.spawn_command(self.remote_command(server, args))
    }

    /// A `--server` client that created a database answered from it, not the server.
    pub fn assert_client_has_no_database(&self, out: &Finished) {
        let db = self.client_dir().join("medic.db");
        assert!(
            !db.exists(),
            "`{}` created {}: it must talk to the server only\n{out}",
            out.command,
            db.display()
        );
    }

    /// `medic token create --name NAME --role ROLE`: the token's secret.
    pub fn create_token(&self, name: &str, role: &str) -> String {
        let out = self.run(["token", "create", "--name", name, "--role", role]);
        out.expect_code(0, String::new);
        let secret = out.stdout.trim().to_owned();
        assert!(
            secret.starts_with("medic_") && !secret.contains(char::is_whitespace),
            "`medic token create` should print the secret alone on stdout\n{out}"
        );
        secret
    }

    /// `medic runs show RUN --json`, parsed.
    pub fn show(&self, run: &str) -> RunView {
        self.try_show(run).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Like `show`, but an error (e.g. the run is not in the database yet) is a value.
    pub fn try_show(&self, run: &str) -> Result<RunView, String> {
        let out = self.run(["runs", "show", run, "--json"]);
        if out.code != 0 {
            return Err(format!("`medic runs show` failed\n{out}"));
        }
        RunView::parse(&out.stdout).map_err(|e| format!("{e}\n{out}"))
    }

    /// Polls `runs show` until `check` accepts the run. Panics after `timeout` with
    /// the run's JSON and `context()` (typically the running medic's output).
    pub fn wait_for_run<T>(
        &self,
        run: &str,
        timeout: Duration,
        what: &str,
        mut check: impl FnMut(&RunView) -> Option<T>,
        context: impl Fn() -> String,
    ) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            let last = match self.try_show(run) {
                Ok(view) => {
                    if let Some(found) = check(&view) {
                        return found;
                    }
                    view.pretty()
                }
                Err(e) => e,
            };
            if Instant::now() >= deadline {
                panic!(
                    "timed out after {timeout:?} waiting for run {run}: {what}\n\
                     --- last `runs show` ---\n{last}\n{}",
                    context()
                );
            }
            std::thread::sleep(Duration::from_millis(40));
        }
    }

    /// The run's JSON, or why it could not be read: for failure messages.
    pub fn describe_run(&self, run: &str) -> String {
        match self.try_show(run) {
            Ok(view) => format!("--- run {run} ---\n{}", view.pretty()),
            Err(e) => format!("--- run {run}: {e}"),
        }
    }
}

impl Default for Medic {
    fn default() -> Medic {
        Medic::new()
    }
}

fn describe_command(cmd: &Command) -> String {
    let mut text = String::from("medic");
    for arg in cmd.get_args() {
        text.push(' ');
        text.push_str(&arg.to_string_lossy());
    }
    text
}

/// The `medic` built next to this test binary: tests run from
/// `<target>/release/deps/`, the binary is `<target>/release/medic`.
fn binary() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    // A test binary lives in <target>/<profile>/deps, a harness binary (medic-chaos)
    // in <target>/<profile> beside medic itself.
    let beside = exe.parent().map(|d| d.join("medic"));
    let release = exe
        .parent()
        .and_then(Path::parent)
        .expect("test binary lives in <target>/<profile>/deps");
    let medic = match beside {
        Some(m) if m.is_file() => m,
        _ => release.join("medic"),
    };
    assert!(
        medic.is_file(),
        "{} is missing: build it first: make build (with the same CARGO_TARGET_DIR)",
        medic.display()
    );
    medic
}

fn plugin_dir() -> PathBuf {
    let dist = crate::repo_root().join("plugins/dist");
    assert!(
        dist.join("probe.wasm").is_file(),
        "{} is missing: run make plugins",
        dist.join("probe.wasm").display()
    );
    dist
}
