//! `medic-sdk`: write a medic plugin as a plain Rust type. The contract is
//! `sdk/wit/plugin.wit`; this crate binds it for the guest (wasm32 only) and offers a
//! typed layer over it: JSON values instead of JSON text, and one trait to implement.
//!
//! ```
//! use medic_sdk::{Action, Context, Effect, Failure, Manifest, Observation, Plugin, Value, json};
//!
//! struct Hello;
//!
//! impl Plugin for Hello {
//!     fn manifest() -> Manifest {
//!         Manifest::new("hello", "0.1.0", "Says hello")
//!             .action(Action::new("greet", Effect::ReadOnly).description("Returns a greeting"))
//!     }
//!     fn invoke(_ctx: &Context, action: &str, _params: Value) -> Result<Value, Failure> {
//!         match action {
//!             "greet" => Ok(json!({"greeting": "hello"})),
//!             other => Err(Failure::unknown_action(other)),
//!         }
//!     }
//! }
//!
//! medic_sdk::export_plugin!(Hello);
//! ```

#[cfg(target_arch = "wasm32")]
#[doc(hidden)]
pub mod guest;
pub mod http;
pub mod log;
pub mod sql;
mod types;

pub use serde_json::{self, Value, json};
pub use types::*;

/// A medic plugin. Every call gets a fresh instance, so there is no `self`: state
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
