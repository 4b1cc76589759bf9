//! A contract fixture of the Consul agent's HTTP API: no Consul agent is installable on
//! this machine (../shared/TEST-SERVERS.md), so the consul plugin is tested against this
//! small server, which answers the endpoints the plugin uses with the request and
//! response shapes of Consul's published HTTP API documentation (each cited below),
//! keeps their state (maintenance flags as checks, services, KV with ModifyIndex, a
//! snapshot of the KV) and records every request (method, path, query, headers, body).
//!
//! Also `call`: a minimal HTTP/1.0 client the tests use to read a target's state the
//! same way against the fixture or a real agent (`CONSUL_HTTP_ADDR`).
//!
//! Shapes, by documentation page (developer.hashicorp.com/consul/api-docs/...):
//! - agent#enable-maintenance-mode: `PUT /v1/agent/maintenance?enable=BOOL&reason=TEXT`,
//!   200 with an empty body; node maintenance is the critical check `_node_maintenance`
//!   ("Node Maintenance Mode", Notes = the reason).
//! - agent/service#enable-maintenance-mode: `PUT /v1/agent/service/maintenance/:service_id
//!   ?enable=BOOL&reason=TEXT`, 200 empty; an unknown ID is 404 ("Unknown service ID");
//!   the check is `_service_maintenance:ID` ("Service Maintenance Mode").
//! - agent/check#list-checks: `GET /v1/agent/checks`, an object CheckID -> check
//!   {Node, CheckID, Name, Status, Notes, Output, ServiceID, ServiceName, ServiceTags}.
//! - agent#read-configuration: `GET /v1/agent/self`, {"Config": {"NodeName", "Datacenter", ..}, ..}.
//! - agent/service#get-service-configuration: `GET /v1/agent/service/:service_id`,
//!   {ID, Service, Tags, Meta, Port, Address, ..}; 404 when unknown.
//! - agent/service#register-service: `PUT /v1/agent/service/register`, JSON body
//!   {ID, Name, Tags, Address, Port, Meta, Check}, 200 empty.
//! - agent/service#deregister-service: `PUT /v1/agent/service/deregister/:service_id`,
//!   200 empty (404 "Unknown service ID" when unknown).
//! - health#list-checks-for-node: `GET /v1/health/node/:node`, an array of checks
//!   {ID, Node, CheckID, Name, Status, Notes, Output, ServiceID, ServiceName, ServiceTags,
//!   Namespace}.
//! - health#list-checks-for-service: `GET /v1/health/checks/:service`, an array of checks.
//! - health#list-service-instances-for-service: `GET /v1/health/service/:service`, an
//!   array of {Node: {ID, Node, Address, Datacenter, ..}, Service: {ID, Service, Tags,
//!   Address, Port, ..}, Checks: [node and service checks]}.
//! - kv#read-key: `GET /v1/kv/:key`, an array of one {CreateIndex, ModifyIndex,
//!   LockIndex, Key, Flags, Value (base64), Session}; 404 with no body when absent.
//! - kv#create-update-key: `PUT /v1/kv/:key?cas=INDEX`, the raw value as body; answers
//!   `true` or `false`. cas=0 writes only if the key does not exist; otherwise only if
//!   ModifyIndex equals it.
//! - snapshot#generate-snapshot: `GET /v1/snapshot`, 200 application/x-gzip, the
//!   snapshot's index in `X-Consul-Index`; snapshot#restore-snapshot: `PUT /v1/snapshot`
//!   with the archive as body, 200 empty. (The fixture's "archive" is its KV as JSON, not
//!   gzip: the plugin treats it as opaque bytes either way.)
//! - status#get-raft-leader: `GET /v1/status/leader`, a JSON string "ip:port" ("" with no
//!   leader); status#list-raft-peers: `GET /v1/status/peers`, an array of "ip:port".
//! - api-docs/api-structure#authentication: the token in `X-Consul-Token`; a missing or
//!   unknown token with a default-deny ACL policy is 403 ("Permission denied" / "ACL not
//!   found").

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

/// One request as the fixture received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: String,
    /// Names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

struct Pair {
    value: Vec<u8>,
    create_index: u64,
    modify_index: u64,
    flags: u64,
}

struct State {
    node: String,
    index: u64,
    /// The token every request must carry (None: ACLs off).
    token: Option<String>,
    node_maintenance: Option<String>,
    service_maintenance: BTreeMap<String, String>,
    /// Registered services by ID: the registration body as sent.
    services: BTreeMap<String, Value>,
    kv: BTreeMap<String, Pair>,
    leader: String,
    peers: Vec<String>,
    /// (method, path prefix, how long): answer such requests only after this long,
    /// their effect already applied (a crash test kills medic meanwhile).
    hold: Option<(String, String, Duration)>,
}

/// The fixture: a thread serving 127.0.0.1:PORT until the process ends.
pub struct ConsulFixture {
    url: String,
    state: Arc<Mutex<State>>,
    requests: Arc<Mutex<Vec<Recorded>>>,
}

pub const FIXTURE_NODE: &str = "medic-fixture-node";

/// The User-Agent of the tests' own requests (`call`), told apart from medic's.
const TEST_AGENT: &str = "medic-tests";

impl ConsulFixture {
    /// An agent on node `medic-fixture-node` with ACLs off.
    pub fn start() -> ConsulFixture {
        ConsulFixture::start_with_token(None)
    }

    /// An agent whose default-deny ACLs accept only `token` (in `X-Consul-Token`).
    pub fn start_with_token(token: Option<&str>) -> ConsulFixture {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the consul fixture");
        let url = format!("http://{}", listener.local_addr().expect("fixture address"));
        let state = Arc::new(Mutex::new(State {
            node: FIXTURE_NODE.into(),
            index: 10,
            token: token.map(str::to_string),
            node_maintenance: None,
            service_maintenance: BTreeMap::new(),
            services: BTreeMap::new(),
            kv: BTreeMap::new(),
            leader: "127.0.0.1:8300".into(),
            peers: vec!["127.0.0.1:8300".into()],
            hold: None,
        }));
        let requests: Arc<Mutex<Vec<Recorded>>> = Arc::default();
        let (s, r) = (state.clone(), requests.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { return };
                let (s, r) = (s.clone(), r.clone());
                std::thread::spawn(move || serve(conn, &s, &r));
            }
        });
        ConsulFixture {
            url,
            state,
            requests,
        }
    }

    /// The origin, e.g. `http://127.0.0.1:41234`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Every request but the tests' own (`call` sends `User-Agent: medic-tests`).
    pub fn requests(&self) -> Vec<Recorded> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.header("user-agent") != Some(TEST_AGENT))
            .cloned()
            .collect()
    }

    /// Applies `method` requests to paths starting with `prefix` at once but answers
    /// them only after `delay`: an effect that landed while medic has no answer yet.
    pub fn hold(&self, method: &str, prefix: &str, delay: Duration) {
        self.state.lock().unwrap().hold = Some((method.into(), prefix.into(), delay));
    }

    /// Sets the leader the fixture reports ("" = no leader).
    pub fn set_leader(&self, leader: &str) {
        self.state.lock().unwrap().leader = leader.to_string();
    }
}

fn serve(conn: TcpStream, state: &Mutex<State>, log: &Mutex<Vec<Recorded>>) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    let Ok(read) = conn.try_clone() else { return };
    let mut reader = BufReader::new(read);
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_string();
    let target = parts.next().unwrap_or_default().to_string();
    let mut headers = Vec::new();
    let mut length = 0usize;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" || h == "\n" {
            break;
        }
        if let Some((k, v)) = h.trim_end().split_once(':') {
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().to_string());
            if k == "content-length" {
                length = v.parse().unwrap_or(0);
            }
            headers.push((k, v));
        }
    }
    let mut body = vec![0u8; length];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_string(), q.to_string()),
        None => (target.clone(), String::new()),
    };
    let request = Recorded {
        method,
        path: decode(&path),
        query,
        headers,
        body,
    };
    log.lock().unwrap().push(request.clone());
    let (status, extra, body, hold) = {
        let mut state = state.lock().unwrap();
        let hold = state.hold.clone().and_then(|(m, prefix, delay)| {
            (m == request.method && request.path.starts_with(&prefix)).then_some(delay)
        });
        let (status, extra, body) = answer(&mut state, &request);
        (status, extra, body, hold)
    };
    if let Some(delay) = hold {
        std::thread::sleep(delay);
    }
    let reason = match status {
        200 => "OK",
        403 => "Forbidden",
        404 => "Not Found",
        _ => "Error",
    };
    let mut head = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-length: {}\r\nconnection: close\r\n",
        body.len()
    );
    for (k, v) in extra {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let mut conn = conn;
    let _ = conn.write_all(head.as_bytes());
    let _ = conn.write_all(&body);
}

type Answer = (u16, Vec<(&'static str, String)>, Vec<u8>);

fn json_answer(v: Value) -> Answer {
    (
        200,
        vec![("content-type", "application/json".into())],
        v.to_string().into_bytes(),
    )
}

fn text(status: u16, body: &str) -> Answer {
    (
        status,
        vec![("content-type", "text/plain".into())],
        body.as_bytes().to_vec(),
    )
}

fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == name).then(|| decode(v))
    })
}

fn check(node: &str, id: &str, name: &str, status: &str, notes: &str, service: &str) -> Value {
    json!({
        "ID": "", "Node": node, "CheckID": id, "Name": name, "Status": status, "Notes": notes,
        "Output": "", "ServiceID": service, "ServiceName": service, "ServiceTags": [],
        "Type": "", "Namespace": "default"
    })
}

impl State {
    fn bump(&mut self) -> u64 {
        self.index += 1;
        self.index
    }

    /// The node's own checks: serfHealth, and `_node_maintenance` while on.
    fn node_checks(&self) -> Vec<Value> {
        let mut checks = vec![check(
            &self.node,
            "serfHealth",
            "Serf Health Status",
            "passing",
            "",
            "",
        )];
        if let Some(reason) = &self.node_maintenance {
            checks.push(check(
                &self.node,
                "_node_maintenance",
                "Node Maintenance Mode",
                "critical",
                reason,
                "",
            ));
        }
        checks
    }

    fn service_checks(&self, id: &str) -> Vec<Value> {
        match self.service_maintenance.get(id) {
            Some(reason) => {
                let mut c = check(
                    &self.node,
                    &format!("_service_maintenance:{id}"),
                    "Service Maintenance Mode",
                    "critical",
                    reason,
                    id,
                );
                c["ServiceName"] = self.services[id]["Name"].clone();
                vec![c]
            }
            None => Vec::new(),
        }
    }

    fn service_view(&self, id: &str) -> Value {
        let s = &self.services[id];
        json!({
            "ID": id, "Service": s["Name"], "Tags": s.get("Tags").cloned().unwrap_or(json!([])),
            "Meta": s.get("Meta").cloned().unwrap_or(json!({})),
            "Port": s.get("Port").cloned().unwrap_or(json!(0)),
            "Address": s.get("Address").cloned().unwrap_or(json!("")),
            "Datacenter": "dc1", "Namespace": "default"
        })
    }

    fn snapshot(&self) -> Vec<u8> {
        let kv: BTreeMap<&String, (String, u64)> = self
            .kv
            .iter()
            .map(|(k, p)| (k, (String::from_utf8_lossy(&p.value).into_owned(), p.flags)))
            .collect();
        let mut blob = b"medic-consul-fixture-snapshot\n".to_vec();
        blob.extend(json!(kv).to_string().into_bytes());
        blob
    }
}

fn answer(state: &mut State, r: &Recorded) -> Answer {
    if let Some(token) = &state.token {
        match r.header("x-consul-token") {
            Some(t) if t == token => {}
            Some(_) => return text(403, "ACL not found"),
            None => return text(403, "Permission denied"),
        }
    }
    let segments: Vec<&str> = r.path.trim_start_matches('/').splitn(4, '/').collect();
    let enable = || query_param(&r.query, "enable").as_deref() == Some("true");
    match (r.method.as_str(), segments.as_slice()) {
        ("PUT", ["v1", "agent", "maintenance"]) => {
            state.node_maintenance = enable().then(|| {
                query_param(&r.query, "reason")
                    .unwrap_or_else(|| "Maintenance mode is enabled for this node".into())
            });
            text(200, "")
        }
        ("PUT", ["v1", "agent", "service", rest]) => {
            if let Some(id) = rest.strip_prefix("maintenance/") {
                if !state.services.contains_key(id) {
                    return text(404, &format!("Unknown service ID {id:?}"));
                }
                if enable() {
                    let reason = query_param(&r.query, "reason")
                        .unwrap_or_else(|| "Maintenance mode is enabled for this service".into());
                    state.service_maintenance.insert(id.to_string(), reason);
                } else {
                    state.service_maintenance.remove(id);
                }
                text(200, "")
            } else if *rest == "register" {
                let Ok(body) = serde_json::from_slice::<Value>(&r.body) else {
                    return text(400, "Request decode failed");
                };
                let Some(name) = body["Name"].as_str() else {
                    return text(400, "Missing service name");
                };
                let id = body["ID"].as_str().unwrap_or(name).to_string();
                state.services.insert(id, body.clone());
                state.bump();
                text(200, "")
            } else if let Some(id) = rest.strip_prefix("deregister/") {
                if state.services.remove(id).is_none() {
                    return text(404, &format!("Unknown service ID {id:?}"));
                }
                state.service_maintenance.remove(id);
                state.bump();
                text(200, "")
            } else {
                text(404, "not found")
            }
        }
        ("GET", ["v1", "agent", "service", id]) => match state.services.contains_key(*id) {
            true => json_answer(state.service_view(id)),
            false => text(404, &format!("unknown service ID: {id}")),
        },
        ("GET", ["v1", "agent", "checks"]) => {
            let mut all = state.node_checks();
            for id in state.services.keys() {
                all.extend(state.service_checks(id));
            }
            let map: serde_json::Map<String, Value> = all
                .into_iter()
                .map(|c| (c["CheckID"].as_str().unwrap().to_string(), c))
                .collect();
            json_answer(Value::Object(map))
        }
        ("GET", ["v1", "agent", "self"]) => json_answer(json!({
            "Config": { "Datacenter": "dc1", "NodeName": state.node, "Server": true },
            "Member": { "Name": state.node, "Addr": "127.0.0.1", "Port": 8301, "Status": 1 }
        })),
        ("GET", ["v1", "health", "node", node]) => {
            if *node != state.node {
                return json_answer(json!([]));
            }
            let mut all = state.node_checks();
            for id in state.services.keys() {
                all.extend(state.service_checks(id));
            }
            json_answer(json!(all))
        }
        ("GET", ["v1", "health", "checks", service]) => {
            let checks: Vec<Value> = state
                .services
                .iter()
                .filter(|(_, s)| s["Name"] == *service)
                .flat_map(|(id, _)| state.service_checks(id))
                .collect();
            json_answer(json!(checks))
        }
        ("GET", ["v1", "health", "service", service]) => {
            let entries: Vec<Value> = state
                .services
                .iter()
                .filter(|(_, s)| s["Name"] == *service)
                .map(|(id, _)| {
                    let mut checks = state.node_checks();
                    checks.extend(state.service_checks(id));
                    json!({
                        "Node": { "ID": "", "Node": state.node, "Address": "127.0.0.1",
                                  "Datacenter": "dc1" },
                        "Service": state.service_view(id),
                        "Checks": checks,
                    })
                })
                .collect();
            json_answer(json!(entries))
        }
        (method, ["v1", "kv", ..]) => {
            let key = r.path.trim_start_matches("/v1/kv/").to_string();
            kv(state, method, &key, r)
        }
        ("GET", ["v1", "snapshot"]) => {
            let blob = state.snapshot();
            (
                200,
                vec![
                    ("content-type", "application/x-gzip".into()),
                    ("x-consul-index", state.index.to_string()),
                ],
                blob,
            )
        }
        ("PUT", ["v1", "snapshot"]) => {
            let Some(json) = r
                .body
                .strip_prefix(b"medic-consul-fixture-snapshot\n".as_slice())
            else {
                return text(500, "failed to read snapshot: not a snapshot archive");
            };
            let Ok(kv) = serde_json::from_slice::<BTreeMap<String, (String, u64)>>(json) else {
                return text(500, "failed to read snapshot: corrupt");
            };
            let index = state.bump();
            state.kv = kv
                .into_iter()
                .map(|(k, (v, flags))| {
                    let pair = Pair {
                        value: v.into_bytes(),
                        create_index: index,
                        modify_index: index,
                        flags,
                    };
                    (k, pair)
                })
                .collect();
            text(200, "")
        }
        ("GET", ["v1", "status", "leader"]) => json_answer(json!(state.leader)),
        ("GET", ["v1", "status", "peers"]) => json_answer(json!(state.peers)),
        _ => text(404, "no such endpoint in the consul fixture"),
    }
}

fn kv(state: &mut State, method: &str, key: &str, r: &Recorded) -> Answer {
    match method {
        "GET" => match state.kv.get(key) {
            None => (
                404,
                vec![("x-consul-index", state.index.to_string())],
                vec![],
            ),
            // kv#read-key: `?raw` answers the value alone.
            Some(p) if query_param(&r.query, "raw").is_some() => (
                200,
                vec![("x-consul-index", p.modify_index.to_string())],
                p.value.clone(),
            ),
            Some(p) => {
                let body = json!([{
                    "CreateIndex": p.create_index, "ModifyIndex": p.modify_index,
                    "LockIndex": 0, "Key": key, "Flags": p.flags,
                    "Value": base64(&p.value), "Session": ""
                }]);
                let mut a = json_answer(body);
                a.1.push(("x-consul-index", p.modify_index.to_string()));
                a
            }
        },
        "PUT" => {
            if let Some(cas) = query_param(&r.query, "cas") {
                let Ok(cas) = cas.parse::<u64>() else {
                    return text(400, "Invalid CAS index");
                };
                let current = state.kv.get(key).map(|p| p.modify_index);
                let ok = match current {
                    None => cas == 0,
                    Some(i) => i == cas,
                };
                if !ok {
                    return json_answer(json!(false));
                }
            }
            let index = state.bump();
            let create_index = state.kv.get(key).map_or(index, |p| p.create_index);
            let pair = Pair {
                value: r.body.clone(),
                create_index,
                modify_index: index,
                flags: 0,
            };
            state.kv.insert(key.to_string(), pair);
            json_answer(json!(true))
        }
        "DELETE" => {
            state.kv.remove(key);
            state.bump();
            json_answer(json!(true))
        }
        _ => text(405, "method not allowed"),
    }
}

fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&text[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
        } else if bytes[i] == b'+' {
            out.push(b' ');
            i += 1;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn base64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// One request to a Consul agent (the fixture or a real one at `base`), with
/// `X-Consul-Token: token` if given: the status and the body. HTTP/1.0, so a real
/// agent answers without chunking.
pub fn call(
    base: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &[u8],
) -> (u16, Vec<u8>) {
    let authority = base
        .strip_prefix("http://")
        .unwrap_or_else(|| panic!("{base}: the tests speak plain http only"))
        .trim_end_matches('/');
    let mut conn = TcpStream::connect(authority)
        .unwrap_or_else(|e| panic!("connecting to the Consul agent at {base}: {e}"));
    conn.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.0\r\nHost: {authority}\r\nUser-Agent: {TEST_AGENT}\r\n\
         content-length: {}\r\n",
        body.len()
    );
    if let Some(t) = token {
        head.push_str(&format!("X-Consul-Token: {t}\r\n"));
    }
    head.push_str("\r\n");
    conn.write_all(head.as_bytes()).unwrap();
    conn.write_all(body).unwrap();
    let mut raw = Vec::new();
    conn.read_to_end(&mut raw)
        .unwrap_or_else(|e| panic!("{method} {base}{path}: {e}"));
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("{method} {base}{path}: no HTTP response"));
    let status_line = String::from_utf8_lossy(&raw[..split]);
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, raw[split + 4..].to_vec())
}
