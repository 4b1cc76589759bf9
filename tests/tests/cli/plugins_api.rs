//! Plugins over HTTP: list, inspect, and install into a `medic serve` whose only
//! plugin dir starts empty, so every plugin it knows came through the API. The
//! install policy is checked from outside: the file in the dir and what runs use.

use std::path::Path;

use medic_tests::{CounterTarget, Medic, Server};
use serde_json::{Value, json};

use crate::api::counters_body;

fn probe_bytes(medic: &Medic) -> Vec<u8> {
    std::fs::read(medic.plugin_dir().join("probe.wasm")).expect("built probe.wasm")
}

/// probe.wasm with its manifest's version `0.1.0` changed to `version` (same length):
/// a second, valid build of the plugin. Every other `0.1.0` in the component is a WIT
/// package version (`@0.1.0`) and stays.
fn probe_as_version(medic: &Medic, version: &str) -> Vec<u8> {
    let mut bytes = probe_bytes(medic);
    let at: Vec<usize> = bytes
        .windows(5)
        .enumerate()
        .filter(|(i, w)| *w == b"0.1.0" && (*i == 0 || bytes[i - 1] != b'@'))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(at.len(), 1, "exactly one manifest version in probe.wasm");
    assert_eq!(version.len(), 5);
    bytes[at[0]..at[0] + 5].copy_from_slice(version.as_bytes());
    bytes
}

fn install(server: &Server, query: &str, bytes: &[u8]) -> (u16, Value) {
    let (status, _, body) =
        server.post_bytes(&format!("/v1/plugins{query}"), "application/wasm", bytes);
    (status, body)
}

fn installed_version(server: &Server) -> Value {
    let (status, _, doc) = server.get("/v1/plugins/probe");
    assert_eq!(status, 200, "{doc}");
    doc["version"].clone()
}

fn files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("plugin dir")
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn a_plugin_installed_over_http_is_listed_inspected_and_used_without_a_restart() {
    let medic = Medic::new();
    let target = CounterTarget::start();
    let dir = medic.data_dir().join("plugins");
    let server = Server::admin_with_plugin_dirs(&medic, &[&dir]);

    let (_, _, list) = server.get("/v1/plugins");
    assert_eq!(list["plugins"], json!([]), "{list}");
    let (status, _, _) = server.get("/v1/plugins/probe");
    assert_eq!(status, 404);
    let (status, _, problem) = server.post("/v1/runs", &[], &counters_body(&target, &[]));
    assert_eq!(status, 422, "no probe yet: {problem}");

    let (status, _, problem) = server.post_bytes("/v1/plugins", "text/plain", b"hello");
    assert_eq!(status, 415, "{problem}");
    for garbage in [&b"hello"[..], b"\0asm\x01\0\0\0 truncated"] {
        let (status, problem) = install(&server, "?allow_unsigned=true", garbage);
        assert_eq!(status, 422, "{problem}");
        assert_eq!(problem["title"], "Not a medic plugin", "{problem}");
    }

    let probe = probe_bytes(&medic);
    let (status, installed) = install(&server, "?allow_unsigned=true", &probe);
    assert_eq!(status, 201, "{installed}");
    assert_eq!(
        (
            &installed["name"],
            &installed["version"],
            &installed["outcome"]
        ),
        (&json!("probe"), &json!("0.1.0"), &json!("installed")),
        "{installed}"
    );
    assert_eq!(
        std::fs::read(dir.join("probe.wasm")).expect("written to the first plugin dir"),
        probe
    );

    let (_, _, list) = server.get("/v1/plugins");
    let listed = &list["plugins"][0];
    assert_eq!(
        (&listed["name"], &listed["version"]),
        (&json!("probe"), &json!("0.1.0")),
        "{list}"
    );
    assert!(
        listed["actions"]
            .as_array()
            .is_some_and(|a| a.contains(&json!("counter-add"))),
        "{list}"
    );
    let (_, _, doc) = server.get("/v1/plugins/probe");
    let add = doc["actions"]
        .as_array()
        .expect("actions")
        .iter()
        .find(|a| a["name"] == "counter-add")
        .cloned()
        .unwrap_or_else(|| panic!("{doc}"));
    assert_eq!(
        (&add["effect"], &add["inverse"]),
        (&json!("mutating"), &json!("counter-sub")),
        "{add}"
    );
    assert!(add["description"].as_str().is_some_and(|d| !d.is_empty()));
    assert_eq!(add["params_schema"]["type"], "object", "{add}");

    // The running server uses it at once.
    let (status, _, created) = server.post("/v1/runs", &[], &counters_body(&target, &[]));
    assert_eq!(status, 201, "{created}");
    server.wait_status(created["id"].as_str().unwrap(), "succeeded");
    assert_eq!(target.value("c"), 100);

    let (status, same) = install(&server, "?allow_unsigned=true", &probe);
    assert_eq!(
        (status, &same["outcome"]),
        (200, &json!("unchanged")),
        "{same}"
    );
}

#[test]
fn installing_over_a_plugin_upgrades_and_refuses_a_downgrade_unless_forced() {
    let medic = Medic::new();
    let dir = medic.data_dir().join("plugins");
    let server = Server::admin_with_plugin_dirs(&medic, &[&dir]);
    let v010 = probe_bytes(&medic);
    assert_eq!(install(&server, "?allow_unsigned=true", &v010).0, 201);

    let (status, up) = install(
        &server,
        "?allow_unsigned=true",
        &probe_as_version(&medic, "0.2.0"),
    );
    assert_eq!(status, 201, "{up}");
    assert_eq!(
        (&up["outcome"], &up["previous"], &up["version"]),
        (&json!("upgraded"), &json!("0.1.0"), &json!("0.2.0")),
        "{up}"
    );
    assert_eq!(installed_version(&server), "0.2.0");

    let (status, problem) = install(&server, "?allow_unsigned=true", &v010);
    assert_eq!(status, 409, "a downgrade is refused: {problem}");
    assert!(
        problem["detail"]
            .as_str()
            .is_some_and(|d| d.contains("downgrade") && d.contains("0.2.0")),
        "{problem}"
    );
    let (status, same) = install(
        &server,
        "?allow_unsigned=true",
        &probe_as_version(&medic, "0.2.0"),
    );
    assert_eq!(status, 200, "the identical 0.2.0 build again: {same}");
    // Another build under the same version: a version should name one build.
    let mut rebuilt = probe_as_version(&medic, "0.2.0");
    let at = rebuilt
        .windows(8)
        .position(|w| w == b"Test and")
        .expect("probe's description");
    rebuilt[at] = b't';
    let (status, problem) = install(&server, "?allow_unsigned=true", &rebuilt);
    assert_eq!(status, 409, "{problem}");
    assert!(
        problem["detail"]
            .as_str()
            .is_some_and(|d| d.contains("replace")),
        "{problem}"
    );
    assert_eq!(installed_version(&server), "0.2.0", "nothing changed");

    let (status, forced) = install(&server, "?force=true&allow_unsigned=true", &v010);
    assert_eq!(status, 201, "{forced}");
    assert_eq!(
        (&forced["outcome"], &forced["previous"]),
        (&json!("replaced"), &json!("0.2.0")),
        "{forced}"
    );
    assert_eq!(installed_version(&server), "0.1.0");
    assert_eq!(std::fs::read(dir.join("probe.wasm")).unwrap(), v010);
    assert_eq!(files(&dir), ["probe.wasm"], "no temporary files left");
}

#[test]
fn an_unsigned_or_badly_signed_upload_is_refused_with_what_to_do() {
    let medic = Medic::new();
    let dir = medic.data_dir().join("plugins");
    let server = Server::admin_with_plugin_dirs(&medic, &[&dir]);
    let probe = probe_bytes(&medic);

    let (status, problem) = install(&server, "", &probe);
    assert_eq!(status, 403, "unsigned without allow_unsigned: {problem}");
    assert!(
        problem["detail"]
            .as_str()
            .is_some_and(|d| d.contains("unsigned") && d.contains("allow_unsigned=true")),
        "{problem}"
    );
    let (status, _, problem) = server.post_bytes_with(
        "/v1/plugins",
        "application/wasm",
        &[("Medic-Signature", "not base64!")],
        &probe,
    );
    assert_eq!(status, 400, "{problem}");
    // "hello" in base64: decodes, but is no .minisig.
    let (status, _, problem) = server.post_bytes_with(
        "/v1/plugins",
        "application/wasm",
        &[("Medic-Signature", "aGVsbG8=")],
        &probe,
    );
    assert_eq!(status, 403, "{problem}");
    assert!(
        problem["detail"].as_str().is_some_and(
            |d| d.contains("Medic-Signature") && d.contains("not a minisign signature")
        ),
        "{problem}"
    );
    assert!(
        !dir.join("probe.wasm").exists(),
        "nothing refused is written"
    );
}

/// A file in a plugin dir that is not a component (a half-copied upgrade, say) is the
/// operator's to fix: inspecting it is a 422 naming the file and why, never a 500,
/// and the server goes on serving the plugins that do load.
#[test]
fn a_plugin_file_that_does_not_load_is_a_problem_naming_it_not_a_server_error() {
    let medic = Medic::new();
    let dir = medic.data_dir().join("plugins");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("broken.wasm"), b"\0asm not really a component").unwrap();
    std::fs::write(dir.join("probe.wasm"), probe_bytes(&medic)).unwrap();
    let server = Server::admin_with_plugin_dirs(&medic, &[&dir]);

    let (status, broken) = server.get_json("/v1/plugins/broken");
    assert_eq!(status, 422, "{broken}");
    assert_eq!(broken["title"], json!("Plugin does not load"), "{broken}");
    let detail = broken["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("broken.wasm") && detail.contains("compiling"),
        "{broken}"
    );

    let (status, probe) = server.get_json("/v1/plugins/probe");
    assert_eq!(status, 200, "{probe}");
}
