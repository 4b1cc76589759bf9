//! `medic-sdk`: write a medic plugin in Rust. The contract is `sdk/wit/plugin.wit`;
//! this crate binds it for the guest (wasm32 only) and offers two layers over it:
//!
//! - typed actions ([`TypedAction`], [`TypedPlugin`]): serde structs for params and
//!   output, one function per action; the SDK derives the JSON Schemas, builds the
//!   manifest, parses params and routes calls. Start here (`sdk/template/`,
//!   `docs/plugin-guide.md`).
//! - the untyped [`Plugin`] trait: JSON values in and out, the manifest by hand.
//!
//! Besides: [`log`], [`progress`] and [`secret`] (the host interface), [`artifact`]
//! (run artifacts as `std::io` streams) and [`tcp`] (connecting to granted endpoints).
//!
//! ```
//! use medic_sdk::{Actions, Context, Effect, Failure, NoParams, TypedAction, TypedPlugin};
//! use schemars::JsonSchema;
//! use serde::Serialize;
//!
//! #[derive(Serialize, JsonSchema)]
//! struct Greeting {
//!     greeting: String,
//! }
//!
//! struct Greet;
//!
//! impl TypedAction for Greet {
//!     const NAME: &'static str = "greet";
//!     const EFFECT: Effect = Effect::ReadOnly;
//!     type Params = NoParams;
//!     type Output = Greeting;
//!     fn invoke(_ctx: &Context, _: NoParams) -> Result<Greeting, Failure> {
//!         Ok(Greeting { greeting: "hello".into() })
//!     }
//! }
//!
//! struct Hello;
//!
//! impl TypedPlugin for Hello {
//!     const NAME: &'static str = "hello";
//!     const VERSION: &'static str = "0.1.0";
//!     const DESCRIPTION: &'static str = "Says hello";
//!     fn actions() -> Actions {
//!         Actions::new().add::<Greet>()
//!     }
//! }
//!
//! medic_sdk::export_plugin!(Hello);
//! ```

#[cfg(target_arch = "wasm32")]
#[doc(hidden)]
pub mod guest;

pub mod artifact;
mod host;
pub mod http;
pub mod log;
pub mod sql;
pub mod tcp;
mod typed;
mod types;

pub use host::{progress, secret};
pub use typed::{Actions, NoParams, TypedAction, TypedPlugin, parse_params, schema_of};
pub use types::*;
pub use {schemars, serde, serde_json, serde_json::Value, serde_json::json};

/// Why a host service fails in a native build (a plugin's unit tests).
#[cfg(not(target_arch = "wasm32"))]
const NO_HOST: &str = "there is no medic host outside a wasm32 guest (a native test build)";

/// A medic plugin, untyped: JSON in and out, the manifest written by hand. Every
/// [`TypedPlugin`] is one. Every call gets a fresh instance, so there is no `self`: state
/// does not survive from one call to the next.
pub trait Plugin {
    /// Describes the plugin and every action it offers. Read once per process.
    fn manifest() -> Manifest;

    /// Runs `action` with `params` (already validated by medic against the action's
    /// params schema) and returns its output.
    fn invoke(ctx: &Context, action: &str, params: Value) -> Result<Value, Failure>;

    /// Tells whether the effect of `invoke(ctx, action, params)` already holds; medic
    /// asks after a crash left an attempt's outcome unknown. The default cannot tell,
    /// which makes medic hold a mutating step for an operator.
    fn observe(ctx: &Context, action: &str, params: Value) -> Result<Observation, Failure> {
        let _ = (ctx, params);
        Ok(Observation::Unknown(format!(
            "the plugin cannot observe the effect of `{action}`"
        )))
    }

    /// A dry run of `action` (`medic run --dry-run`): must change nothing. Checks the
    /// action's preconditions with reads only and says what `invoke` would do. The
    /// default checks nothing and says so ([`DryRun::unchecked`]).
    fn plan(ctx: &Context, action: &str, params: Value) -> Result<DryRun, Failure> {
        let _ = (ctx, params);
        Ok(DryRun::unchecked(action))
    }
}

/// Exports a [`Plugin`] implementation as the component's `medic:plugin/plugin`
/// world. Use once per plugin crate, at its root.
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            // wit-bindgen's export macro takes an identifier, so name the adapter.
            type MedicPluginExport = $crate::guest::Adapter<$plugin>;
    $crate::__export_plugin_impl!(MedicPluginExport with_types_in $crate::guest::bindings);
        };
    };
}
