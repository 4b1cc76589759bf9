//! `medic plugin ...` from outside: signatures made with `medic plugin keygen`/`sign`
//! and checked at install (signed, tampered, unknown key, unsigned with and without
//! --allow-unsigned), list/inspect showing the signer and capabilities, the same over
//! --server, and the compiled-component cache in DATA/plugin-cache across processes.

use std::path::{Path, PathBuf};

use medic_tests::{Finished, Medic, Server};
use serde_json::Value;

/// A copy of the built probe.wasm in the scratch dir (so its signature lands there,
/// not beside the shared build).
fn probe_copy(medic: &Medic, name: &str) -> PathBuf {
    let path = medic.dir().join(name);
    std::fs::copy(medic.plugin_dir().join("probe.wasm"), &path).expect("built probe.wasm");
    path
}

/// probe.wasm with one byte of its description changed: the same plugin, other bytes.
fn tamper(path: &Path) {
    let mut bytes = std::fs::read(path).unwrap();
    let at = bytes
        .windows(8)
        .position(|w| w == b"Test and")
        .expect("probe's description");
    bytes[at] = b't';
    std::fs::write(path, bytes).unwrap();
}

/// `medic plugin keygen --name NAME` in the scratch dir; returns the key id.
fn keygen(medic: &Medic, name: &str) -> String {
    let out = medic.run(["plugin", "keygen", "--dir", "keys", "--name", name]);
    out.expect_code(0, String::new);
    let id = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("key "))
        .unwrap_or_else(|| panic!("no key id printed\n{out}"))
        .to_string();
    assert_eq!(id.len(), 16, "{out}");
    id
}

fn key(medic: &Medic, name: &str, ext: &str) -> PathBuf {
    medic.dir().join("keys").join(format!("{name}.{ext}"))
}

fn trust(medic: &Medic, name: &str) {
    let dir = medic.data_dir().join("trusted-keys");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(key(medic, name, "pub"), dir.join(format!("{name}.pub"))).unwrap();
}

fn sign(medic: &Medic, wasm: &Path, name: &str) {
    medic
        .run([
            "plugin".as_ref(),
            "sign".as_ref(),
            wasm.as_os_str(),
            "--secret-key".as_ref(),
            key(medic, name, "key").as_os_str(),
        ])
        .expect_code(0, String::new);
}

/// `medic plugin ARGS` with DATA/plugins as the only plugin dir.
fn plugin(medic: &Medic, args: &[&str]) -> Finished {
    let dir = medic.data_dir().join("plugins");
    let mut all = vec!["plugin"];
    all.extend_from_slice(args);
    medic
        .spawn_command(medic.command_with_plugin_dirs(&[&dir], all))
        .wait(std::time::Duration::from_secs(60))
}

fn installed(medic: &Medic) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(medic.data_dir().join("plugins"))
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn plugin_install_accepts_a_trusted_signature_and_refuses_tampered_unknown_and_unsigned() {
    let medic = Medic::new();
    let acme = keygen(&medic, "acme");
    let stranger = keygen(&medic, "stranger");
    trust(&medic, "acme");

    // Tampered after signing: the signature names the key, the wasm changed.
    let tampered = probe_copy(&medic, "tampered.wasm");
    sign(&medic, &tampered, "acme");
    tamper(&tampered);
    let out = plugin(&medic, &["install", "tampered.wasm"]);
    out.expect_code(2, String::new);
    for needle in ["tampered.wasm.minisig", &acme, "changed after signing"] {
        assert!(out.stderr.contains(needle), "`{needle}` missing\n{out}");
    }

    // Signed by a key the operator does not trust.
    let foreign = probe_copy(&medic, "foreign.wasm");
    sign(&medic, &foreign, "stranger");
    let out = plugin(&medic, &["install", "foreign.wasm"]);
    out.expect_code(2, String::new);
    for needle in [stranger.as_str(), "not a trusted key", "trusted-keys"] {
        assert!(out.stderr.contains(needle), "`{needle}` missing\n{out}");
    }

    // No signature at all.
    probe_copy(&medic, "unsigned.wasm");
    let out = plugin(&medic, &["install", "unsigned.wasm"]);
    out.expect_code(2, String::new);
    for needle in ["unsigned.wasm", "unsigned", "--allow-unsigned"] {
        assert!(out.stderr.contains(needle), "`{needle}` missing\n{out}");
    }
    assert_eq!(
        installed(&medic),
        Vec::<String>::new(),
        "nothing refused is written"
    );

    // Signed by the trusted key, the signature given explicitly.
    let good = probe_copy(&medic, "good.wasm");
    sign(&medic, &good, "acme");
    let sig = medic.dir().join("good.wasm.minisig");
    let out = plugin(
        &medic,
        &["install", "good.wasm", "--signature", sig.to_str().unwrap()],
    );
    out.expect_code(0, String::new);
    assert!(
        out.stdout.contains(&format!("installed, signed by {acme}")),
        "{out}"
    );
    assert_eq!(installed(&medic), ["probe.wasm", "probe.wasm.minisig"]);

    let out = plugin(&medic, &["list"]);
    out.expect_code(0, String::new);
    assert!(out.stdout.contains(&format!("signed by {acme}")), "{out}");
    let out = plugin(&medic, &["inspect", "probe@0.1"]);
    out.expect_code(0, String::new);
    for needle in [
        format!("signed by {acme}"),
        "TCP".to_string(),
        "wasi:sockets/tcp".to_string(),
        "counter-add (mutating)".to_string(),
        "inverse: counter-sub".to_string(),
        "sha256:".to_string(),
    ] {
        assert!(out.stdout.contains(&needle), "`{needle}` missing\n{out}");
    }
    let out = plugin(&medic, &["inspect", "probe@0.2"]);
    out.expect_code(2, String::new);
    assert!(out.stderr.contains("0.1.0"), "{out}");

    // Unsigned, allowed explicitly: installed (the same bytes: unchanged), and the
    // tampered build, unsigned and forced, replaces it and shows as unsigned.
    std::fs::remove_file(medic.dir().join("tampered.wasm.minisig")).unwrap();
    let out = plugin(
        &medic,
        &["install", "tampered.wasm", "--allow-unsigned", "--force"],
    );
    out.expect_code(0, String::new);
    assert!(
        out.stdout.contains("replaced (was 0.1.0), unsigned"),
        "{out}"
    );
    assert_eq!(installed(&medic), ["probe.wasm"], "the old signature went");
    let out = plugin(&medic, &["list", "--json"]);
    let list: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(list[0]["signature"], "unsigned", "{list}");
}

#[test]
fn plugins_are_installed_listed_and_inspected_over_the_server_with_its_trusted_keys() {
    let medic = Medic::new();
    let acme = keygen(&medic, "acme");
    keygen(&medic, "stranger");
    trust(&medic, "acme");
    let dir = medic.data_dir().join("plugins");
    let server = Server::open_with_plugin_dirs(&medic, &[&dir]);

    let foreign = probe_copy(&medic, "foreign.wasm");
    sign(&medic, &foreign, "stranger");
    let out = medic.remote(server.url(), ["plugin", "install", "foreign.wasm"]);
    out.expect_code(2, String::new);
    assert!(out.stderr.contains("not a trusted key"), "{out}");

    let good = probe_copy(&medic, "good.wasm");
    sign(&medic, &good, "acme");
    let out = medic.remote(server.url(), ["plugin", "install", "good.wasm"]);
    out.expect_code(0, String::new);
    assert!(out.stdout.contains(&format!("signed by {acme}")), "{out}");
    assert!(dir.join("probe.wasm.minisig").is_file());

    let out = medic.remote(server.url(), ["plugin", "list"]);
    out.expect_code(0, String::new);
    assert!(out.stdout.contains(&format!("signed by {acme}")), "{out}");
    let out = medic.remote(server.url(), ["plugin", "inspect", "probe", "--json"]);
    out.expect_code(0, String::new);
    let doc: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(doc["signed_by"], acme.as_str(), "{doc}");
    assert!(
        doc["capabilities"]
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c["capability"] == "TCP")),
        "{doc}"
    );
}

/// The compiled components in DATA/plugin-cache (beside them: kept wasm copies).
fn cache_files(medic: &Medic) -> Vec<PathBuf> {
    std::fs::read_dir(medic.data_dir().join("plugin-cache"))
        .map(|d| {
            d.map(|e| e.unwrap().path())
                .filter(|p| p.extension().is_some_and(|x| x == "cwasm"))
                .collect()
        })
        .unwrap_or_default()
}

fn inspect_logged(medic: &Medic) -> Finished {
    let mut cmd = medic.command(["plugin", "inspect", "probe", "--json"]);
    cmd.env("MEDIC_LOG", "medic=info");
    let out = medic
        .spawn_command(cmd)
        .wait(std::time::Duration::from_secs(60));
    out.expect_code(0, String::new);
    out
}

#[test]
fn a_cache_hit_gives_the_same_manifest_and_a_corrupt_cache_file_is_compiled_over() {
    let medic = Medic::new();
    let first = inspect_logged(&medic);
    assert!(first.stderr.contains("compiled, cached"), "{first}");
    let files = cache_files(&medic);
    assert_eq!(files.len(), 1, "{files:?}");

    let second = inspect_logged(&medic);
    assert!(second.stderr.contains("cache hit"), "{second}");
    assert_eq!(
        second.stdout, first.stdout,
        "the same manifest from the cache"
    );

    std::fs::write(&files[0], b"not a compiled component").unwrap();
    let third = inspect_logged(&medic);
    assert!(third.stderr.contains("recompiled"), "{third}");
    assert_eq!(third.stdout, first.stdout);
    assert!(
        std::fs::metadata(&files[0]).unwrap().len() > 1000,
        "the corrupt file was replaced"
    );
    let fourth = inspect_logged(&medic);
    assert!(fourth.stderr.contains("cache hit"), "{fourth}");
}

/// probe.wasm with its manifest's version changed to `version` (same length): another
/// valid build. Every other `0.1.0` in the component is a WIT package version.
fn probe_as_version(medic: &Medic, version: &str, name: &str) -> PathBuf {
    let mut bytes = std::fs::read(medic.plugin_dir().join("probe.wasm")).unwrap();
    let at: Vec<usize> = bytes
        .windows(5)
        .enumerate()
        .filter(|(i, w)| *w == b"0.1.0" && (*i == 0 || bytes[i - 1] != b'@'))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(at.len(), 1, "exactly one manifest version in probe.wasm");
    bytes[at[0]..at[0] + 5].copy_from_slice(version.as_bytes());
    let path = medic.dir().join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn a_run_resumed_after_an_upgrade_keeps_calling_the_build_it_started_with() {
    let medic = Medic::new();
    let target = medic_tests::CounterTarget::start();
    let dir = medic.data_dir().join("plugins");
    probe_copy(&medic, "probe.wasm");
    plugin(&medic, &["install", "probe.wasm", "--allow-unsigned"]).expect_code(0, String::new);

    let args = crate::run_args(&medic_tests::plan("approval.yaml"), &target, &[]);
    let mut running = medic.spawn_command(medic.command_with_plugin_dirs(&[&dir], args));
    let run = running.run_id();
    medic.wait_for_run(
        &run,
        std::time::Duration::from_secs(30),
        "step `approve` waiting for approval",
        |view| (view.step_status("approve") == Some("approval")).then_some(()),
        || running.describe(),
    );
    running.kill();

    // probe 0.2.0 replaces 0.1.0; the plan asks for probe@0.1.
    probe_as_version(&medic, "0.2.0", "probe-0.2.0.wasm");
    plugin(&medic, &["install", "probe-0.2.0.wasm", "--allow-unsigned"])
        .expect_code(0, String::new);
    medic
        .run(["approve", &run, "approve"])
        .expect_code(0, String::new);
    let out = medic
        .spawn_command(medic.command_with_plugin_dirs(&[&dir], ["resume", run.as_str()]))
        .wait(std::time::Duration::from_secs(60));
    let ctx = || crate::context(&medic, &run, &target, &out.to_string());
    out.expect_code(crate::exit::SUCCEEDED, ctx);
    assert_eq!(target.value("after"), 1, "{}", ctx());

    // A new run starts on the installed build, which the plan does not accept.
    let args = crate::run_args(&medic_tests::plan("approval.yaml"), &target, &[]);
    let fresh = medic
        .spawn_command(medic.command_with_plugin_dirs(&[&dir], args))
        .wait(std::time::Duration::from_secs(60));
    fresh.expect_code(crate::exit::INVALID, String::new);
    assert!(fresh.stderr.contains("0.2.0"), "{fresh}");
}
