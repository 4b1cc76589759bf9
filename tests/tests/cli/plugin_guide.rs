//! docs/plugin-guide.md as an author follows it: its marked shell blocks run verbatim
//! (copy `sdk/template`, build it for wasm32-wasip2, then `medic validate` and
//! `medic run` its plan with the real binary), so the guide cannot drift from what
//! works. The build uses a target dir under the shared cache, warm on reruns.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use medic_tests::{Medic, exit_code, repo_root};
use serde_json::json;

/// The example address in the guide's run block; the test substitutes its own
/// listener's (the only edit it makes to the guide's commands).
const GUIDE_ADDRESS: &str = "127.0.0.1:8000";

/// The body of the ```sh block following `<!-- plugin-guide:NAME -->` in the guide.
fn guide_block(name: &str) -> String {
    let path = repo_root().join("docs/plugin-guide.md");
    let guide = std::fs::read_to_string(&path).expect("read docs/plugin-guide.md");
    let marker = format!("<!-- plugin-guide:{name} -->");
    let after = guide
        .split_once(&marker)
        .unwrap_or_else(|| panic!("{} has no `{marker}` block", path.display()))
        .1;
    let body = after
        .trim_start()
        .strip_prefix("```sh\n")
        .unwrap_or_else(|| panic!("`{marker}` must be followed by a ```sh block"));
    body.split_once("\n```")
        .unwrap_or_else(|| panic!("the `{marker}` block is not closed"))
        .0
        .to_string()
}

/// Where the template's build goes: beside the workspace's own target dir, so its
/// dependencies compile once per machine, not once per test run.
fn template_target_dir() -> PathBuf {
    let base = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME").expect("HOME is set");
            PathBuf::from(home).join(".cache/medic/target")
        });
    base.join("plugin-guide")
}

/// Runs `script` with `bash -euo pipefail` in `dir`, as a reader pastes it.
fn sh(dir: &Path, script: &str, env: &[(&str, &std::ffi::OsStr)], timeout: Duration) -> String {
    let mut cmd = Command::new("bash");
    cmd.args(["-euo", "pipefail", "-c", script])
        .current_dir(dir)
        .env_remove("MEDIC_DATA_DIR")
        .env_remove("MEDIC_PLUGIN_DIR")
        .env_remove("MEDIC_SERVER")
        .env_remove("MEDIC_TOKEN")
        .env_remove("MEDIC_CONFIG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start bash");
    let pid = child.id();
    // A watchdog: a hung build or run must fail the test, not hang the suite.
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        if rx.recv_timeout(timeout).is_err() {
            let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
        }
    });
    let out = child.wait_with_output().expect("wait for bash");
    let _ = tx.send(());
    let _ = watchdog.join();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the guide's commands failed (exit {}):\n{script}\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}",
        exit_code(out.status)
    );
    stdout
}

#[test]
fn the_plugin_guide_builds_the_template_and_medic_runs_it() {
    let medic = Medic::new();
    let repo = repo_root();
    let target_dir = template_target_dir();

    let build = guide_block("build");
    assert!(
        build.contains("cargo build --release --target wasm32-wasip2"),
        "the build block should hold the documented build command:\n{build}"
    );
    sh(
        medic.dir(),
        &build,
        &[
            ("MEDIC", repo.as_os_str()),
            ("CARGO_TARGET_DIR", target_dir.as_os_str()),
        ],
        Duration::from_secs(600),
    );
    let wasm = medic.dir().join("plugins/hello.wasm");
    assert!(
        wasm.is_file(),
        "the build block should leave {}",
        wasm.display()
    );

    // Any TCP server will do for `ping`; the kernel completes the handshake from the
    // backlog, no accept needed.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a listener");
    let address = listener.local_addr().unwrap().to_string();
    let run_block = guide_block("run");
    assert!(
        run_block.contains(GUIDE_ADDRESS),
        "the run block should use {GUIDE_ADDRESS}:\n{run_block}"
    );
    let run_block = run_block.replace(GUIDE_ADDRESS, &address);
    let bin_dir = medic.binary().parent().expect("the binary's directory");
    let path = std::env::join_paths(std::iter::once(bin_dir.to_path_buf()).chain(
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()),
    ))
    .unwrap();
    let data_dir = medic.data_dir();
    let stdout = sh(
        medic.dir(),
        &run_block,
        &[
            ("PATH", path.as_os_str()),
            ("MEDIC_DATA_DIR", data_dir.as_os_str()),
        ],
        Duration::from_secs(120),
    );

    let run = stdout
        .lines()
        .find_map(|l| l.strip_prefix("run ")?.strip_suffix(" succeeded"))
        .unwrap_or_else(|| panic!("`medic run` should end with `run RUN succeeded`:\n{stdout}"))
        .to_string();
    let view = medic.show(&run);
    let ctx = || medic.describe_run(&run);
    assert_eq!(view.status, "succeeded", "{}", ctx());
    let ping = &view.step("reachable").output;
    assert_eq!(ping["address"], json!(address), "{}", ctx());
    assert!(ping["connect_ms"].is_u64(), "{}", ctx());
    let key = format!("{run}/mark/1");
    let note = format!("{key} {address} answered\n");
    assert_eq!(
        view.step("mark").output,
        json!({"name": "maintenance.txt", "key": key, "bytes": note.len()}),
        "{}",
        ctx()
    );
    let artifact = data_dir
        .join("artifacts")
        .join(&run)
        .join("maintenance.txt");
    assert_eq!(
        std::fs::read_to_string(&artifact).expect("the marker artifact"),
        note
    );
    drop(listener);

    // medic enforces the schemas the SDK derived from the template's types.
    let misfit = medic.write(
        "misfit.yaml",
        &std::fs::read_to_string(medic.dir().join("hello/plan.yaml"))
            .unwrap()
            .replace(
                "with: { address: \"${{ params.address }}\" }",
                "with: { address: \"${{ params.address }}\", timeout_ms: soon, colour: red }",
            ),
    );
    let plugins = medic.dir().join("plugins");
    let out = medic
        .spawn_command(medic.command_with_plugin_dirs(
            &[&plugins],
            [
                "validate".as_ref(),
                misfit.as_os_str(),
                "-p".as_ref(),
                "address=127.0.0.1:1".as_ref(),
            ],
        ))
        .wait(Duration::from_secs(60));
    assert_eq!(
        out.code, 2,
        "a step whose `with` does not fit the derived schema\n{out}"
    );
    for field in ["timeout_ms", "colour"] {
        assert!(
            out.stderr.contains(field),
            "the diagnostics should name `{field}`\n{out}"
        );
    }
}
