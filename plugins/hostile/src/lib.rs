//! `hostile`: a test fixture, never a plugin to install. Each action tries to get
//! out of medic's sandbox or past its limits the way a buggy or malicious plugin
//! would: host files, ungranted ports, a busy loop, runaway memory, a huge output, a
//! panic, an ungranted secret. `tests/tests/cli/hostile.rs` checks that medic turns
//! each into a clear step error and keeps serving. HTTP is in `hostile-http`: its
//! `wasi:http` import must not keep this one from loading on a host without it.

use std::io::Read;
use std::net::{SocketAddr, TcpStream};

use medic_sdk::{Actions, Context, Effect, Failure, TypedAction, TypedPlugin};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

struct Hostile;

impl TypedPlugin for Hostile {
    const NAME: &'static str = env!("CARGO_CRATE_NAME");
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str = "Test fixture: tries to break the sandbox and the limits";

    fn actions() -> Actions {
        Actions::new()
            .add::<ReadFile>()
            .add::<Connect>()
            .add::<Spin>()
            .add::<Alloc>()
            .add::<BigOutput>()
            .add::<Panic>()
            .add::<Secret>()
    }
}

medic_sdk::export_plugin!(Hostile);

/// What an action got away with, if the host let it.
#[derive(Serialize, JsonSchema)]
pub struct Escaped {
    pub escaped: String,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PathParams {
    pub path: String,
}

/// Reads a host file with std::fs (the guest has no preopened directories).
pub struct ReadFile;

impl TypedAction for ReadFile {
    const NAME: &'static str = "read-file";
    const EFFECT: Effect = Effect::ReadOnly;
    type Params = PathParams;
    type Output = Escaped;

    fn invoke(_ctx: &Context, p: PathParams) -> Result<Escaped, Failure> {
        let mut text = String::new();
        std::fs::File::open(&p.path)
            .and_then(|mut f| f.read_to_string(&mut text))
            .map_err(|e| Failure::permanent(format!("reading {}: {e}", p.path)))?;
        Ok(Escaped { escaped: text })
    }
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AddressParams {
    /// `ip:port`.
    pub address: String,
}

/// Connects with std::net directly (not the SDK helper), to an address it parses
/// itself.
pub struct Connect;

impl TypedAction for Connect {
    const NAME: &'static str = "connect";
    const EFFECT: Effect = Effect::ReadOnly;
    type Params = AddressParams;
    type Output = Escaped;

    fn invoke(_ctx: &Context, p: AddressParams) -> Result<Escaped, Failure> {
        let addr: SocketAddr = p
            .address
            .parse()
            .map_err(|e| Failure::permanent(format!("`{}`: {e}", p.address)))?;
        TcpStream::connect(addr)
            .map_err(|e| Failure::permanent(format!("connecting to {addr}: {e}")))?;
        Ok(Escaped {
            escaped: format!("connected to {addr}"),
        })
    }
}

/// Loops forever without a host call: only an interrupt can stop it.
pub struct Spin;

impl TypedAction for Spin {
    const NAME: &'static str = "spin";
    const EFFECT: Effect = Effect::ReadOnly;
    type Params = medic_sdk::NoParams;
    type Output = Escaped;

    fn invoke(_ctx: &Context, _p: medic_sdk::NoParams) -> Result<Escaped, Failure> {
        let mut x: u64 = 1;
        loop {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
    }
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SizeParams {
    pub mib: usize,
}

/// Allocates and touches `mib` MiB.
pub struct Alloc;

impl TypedAction for Alloc {
    const NAME: &'static str = "alloc";
    const EFFECT: Effect = Effect::ReadOnly;
    type Params = SizeParams;
    type Output = Escaped;

    fn invoke(_ctx: &Context, p: SizeParams) -> Result<Escaped, Failure> {
        let mut block = vec![0u8; p.mib << 20];
        for i in (0..block.len()).step_by(4096) {
            block[i] = 1;
        }
        std::hint::black_box(&block);
        Ok(Escaped {
            escaped: format!("{} MiB", p.mib),
        })
    }
}

/// Returns an output of `mib` MiB.
pub struct BigOutput;

impl TypedAction for BigOutput {
    const NAME: &'static str = "big-output";
    const EFFECT: Effect = Effect::ReadOnly;
    type Params = SizeParams;
    type Output = Escaped;

    fn invoke(_ctx: &Context, p: SizeParams) -> Result<Escaped, Failure> {
        Ok(Escaped {
            escaped: "x".repeat(p.mib << 20),
        })
    }
}

/// Panics (a trap of the instance).
pub struct Panic;

impl TypedAction for Panic {
    const NAME: &'static str = "panic";
    const EFFECT: Effect = Effect::ReadOnly;
    type Params = medic_sdk::NoParams;
    type Output = Escaped;

    fn invoke(_ctx: &Context, _p: medic_sdk::NoParams) -> Result<Escaped, Failure> {
        panic!("hostile plugin panics on purpose");
    }
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NameParams {
    pub name: String,
}

/// Reads a secret through the host interface (the SDK wrapper).
pub struct Secret;

impl TypedAction for Secret {
    const NAME: &'static str = "secret";
    const EFFECT: Effect = Effect::ReadOnly;
    type Params = NameParams;
    type Output = Escaped;

    fn invoke(_ctx: &Context, p: NameParams) -> Result<Escaped, Failure> {
        let value = medic_sdk::secret(&p.name)?;
        Ok(Escaped { escaped: value })
    }
}
