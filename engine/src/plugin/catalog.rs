//! The installed plugins as plan validation sees them (`plan::Catalog`), and the
//! full check of a plan against them.

use std::collections::HashMap;
use std::sync::Arc;

use crate::plan::{self, ActionSpec, Catalog, Diagnostics, Format, Plan, PluginUse};
use crate::plugin::{Invoker, Manifest};

/// Manifests of the plugins a plan names, loaded up front because validation is
/// synchronous and pure.
pub(crate) struct Loaded {
    manifests: HashMap<(String, String), Result<Arc<Manifest>, String>>,
}

impl Loaded {
    pub(crate) async fn load(host: &impl Invoker, plan: &Plan) -> Loaded {
        let mut manifests = HashMap::new();
        for u in plan.plugins.values() {
            let key = (u.name.clone(), u.version.clone());
            if let std::collections::hash_map::Entry::Vacant(slot) = manifests.entry(key) {
                slot.insert(
                    host.manifest(&u.name, &u.version)
                        .await
                        .map_err(|e| e.to_string()),
                );
            }
        }
        Loaded { manifests }
    }
}

impl Catalog for Loaded {
    fn action(&self, plugin: &PluginUse, action: &str) -> Result<Option<ActionSpec>, String> {
        let m = self
            .manifests
            .get(&(plugin.name.clone(), plugin.version.clone()))
            .ok_or_else(|| format!("plugin `{}@{}` was not loaded", plugin.name, plugin.version))?
            .as_ref()
            .map_err(Clone::clone)?;
        Ok(m.action(action).map(|a| ActionSpec {
            params_schema: a.params_schema.clone(),
            effect: a.effect,
            inverse: a.inverse.clone(),
        }))
    }
}

/// Parses and validates a plan, checking each step's action and params against the
/// plugins it names: first without plugins (structure, references), then with the
/// manifests of exactly the plugins the plan uses.
pub async fn check_plan(
    host: &impl Invoker,
    file: &str,
    text: &str,
    format: Format,
) -> Result<Plan, Diagnostics> {
    let draft = plan::parse(file, text, format, None)?;
    let catalog = Loaded::load(host, &draft).await;
    plan::parse(file, text, format, Some(&catalog))
}
