//! KV get and put with check-and-set (GET/PUT /v1/kv/:key?cas=INDEX). Values travel
//! base64 in Consul's JSON; medic's outputs carry them as text (UTF-8, lossy) and base64.

use medic_sdk::{Context, Effect, Failure, Observation, TypedAction};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::agent::{Agent, encode, unexpected};
use crate::base64;

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GetParams {
    /// The agent's HTTP origin, e.g. http://127.0.0.1:8500 (granted in `grants.http`).
    pub address: String,
    /// A secret holding the ACL token, for setups without `[[http.credentials]]`.
    #[serde(default)]
    pub token_secret: Option<String>,
    pub key: String,
}

#[derive(Serialize, JsonSchema, Debug, PartialEq)]
pub struct Entry {
    pub key: String,
    pub exists: bool,
    /// The value as text (invalid UTF-8 replaced); empty when absent.
    pub value: String,
    pub value_base64: String,
    /// The index to pass as `cas` to change exactly this version (0: absent).
    pub modify_index: u64,
    pub flags: u64,
}

#[derive(Deserialize)]
struct Pair {
    #[serde(rename = "Key")]
    key: String,
    #[serde(rename = "Value")]
    value: Option<String>,
    #[serde(rename = "ModifyIndex")]
    modify_index: u64,
    #[serde(rename = "Flags", default)]
    flags: u64,
}

fn key_path(key: &str) -> String {
    format!("/v1/kv/{}", encode(key.trim_start_matches('/'), true))
}

pub fn get(agent: &Agent, key: &str) -> Result<Entry, Failure> {
    let path = key_path(key);
    let reply = agent.call("GET", &path, None)?;
    match reply.status {
        404 => Ok(Entry {
            key: key.to_string(),
            exists: false,
            value: String::new(),
            value_base64: String::new(),
            modify_index: 0,
            flags: 0,
        }),
        200 => {
            let pairs: Vec<Pair> = reply.json("reading the key")?;
            let pair = pairs
                .into_iter()
                .next()
                .ok_or_else(|| Failure::permanent(format!("GET {path}: an empty list")))?;
            let b64 = pair.value.unwrap_or_default();
            let raw = base64::decode(&b64)
                .map_err(|e| Failure::permanent(format!("GET {path}: the value: {e}")))?;
            Ok(Entry {
                key: pair.key,
                exists: true,
                value: String::from_utf8_lossy(&raw).into_owned(),
                value_base64: b64,
                modify_index: pair.modify_index,
                flags: pair.flags,
            })
        }
        _ => Err(unexpected("GET", &path, &reply)),
    }
}

pub struct KvGet;

impl TypedAction for KvGet {
    const NAME: &'static str = "kv-get";
    const EFFECT: Effect = Effect::ReadOnly;
    const DESCRIPTION: &'static str =
        "Reads a key (GET /v1/kv/KEY): value and ModifyIndex (for a later kv-put's cas)";
    type Params = GetParams;
    type Output = Entry;

    fn invoke(_ctx: &Context, p: GetParams) -> Result<Entry, Failure> {
        let agent = Agent::new(&p.address, p.token_secret.as_deref())?;
        get(&agent, &p.key)
    }

    fn observe(_ctx: &Context, _p: GetParams) -> Result<Observation<Entry>, Failure> {
        Ok(Observation::NotDone)
    }
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PutParams {
    /// The agent's HTTP origin, e.g. http://127.0.0.1:8500 (granted in `grants.http`).
    pub address: String,
    /// A secret holding the ACL token, for setups without `[[http.credentials]]`.
    #[serde(default)]
    pub token_secret: Option<String>,
    pub key: String,
    /// The new value (text).
    pub value: String,
    /// Check-and-set: write only if the key's ModifyIndex is still this (0: only if
    /// the key does not exist). Without it the write is unconditional.
    #[serde(default)]
    pub cas: Option<u64>,
}

pub struct KvPut;

impl TypedAction for KvPut {
    const NAME: &'static str = "kv-put";
    const EFFECT: Effect = Effect::Mutating;
    const DESCRIPTION: &'static str = "Writes a key (PUT /v1/kv/KEY), with check-and-set when `cas` is \
         given: a conflict fails the step, naming the index the key has now";
    type Params = PutParams;
    type Output = Entry;

    fn invoke(_ctx: &Context, p: PutParams) -> Result<Entry, Failure> {
        let agent = Agent::new(&p.address, p.token_secret.as_deref())?;
        let mut path = key_path(&p.key);
        if let Some(cas) = p.cas {
            path.push_str(&format!("?cas={cas}"));
        }
        let reply = agent.call("PUT", &path, Some(p.value.clone().into_bytes()))?;
        if reply.status != 200 {
            return Err(unexpected("PUT", &path, &reply));
        }
        let written: bool = reply.json("writing the key")?;
        if !written {
            let now = get(&agent, &p.key)?;
            let state = if now.exists {
                format!("its ModifyIndex is now {}", now.modify_index)
            } else {
                "it does not exist now".to_string()
            };
            return Err(Failure::permanent(format!(
                "check-and-set conflict on key `{}`: expected ModifyIndex {} but {state}; \
                 someone else changed it: read it again (kv-get) and decide",
                p.key,
                p.cas.unwrap_or_default()
            )));
        }
        get(&agent, &p.key)
    }

    /// Done when the key holds the value; not done while it still has the index `cas`
    /// expects (or, without `cas`, any other value); unknown when someone else changed it.
    fn observe(_ctx: &Context, p: PutParams) -> Result<Observation<Entry>, Failure> {
        let agent = Agent::new(&p.address, p.token_secret.as_deref())?;
        let now = get(&agent, &p.key)?;
        if now.exists && now.value == p.value {
            return Ok(Observation::Done(now));
        }
        Ok(match p.cas {
            None => Observation::NotDone,
            Some(cas) if now.modify_index == cas => Observation::NotDone,
            Some(cas) => Observation::Unknown(format!(
                "key `{}` changed since ModifyIndex {cas} (now {}) and does not hold the value: \
                 another writer, or this write followed by another",
                p.key, now.modify_index
            )),
        })
    }
}
