//! The installed plugins as plan validation sees them (`plan::Catalog`).

use std::collections::HashMap;
use std::sync::Arc;

use crate::plan::{ActionSpec, Catalog, Plan, PluginUse};
use crate::plugin::{Host, Invoker, Manifest};

/// Manifests of the plugins a plan names, loaded up front because validation is
/// synchronous and pure.
pub(super) struct Loaded {
    manifests: HashMap<(String, String), Result<Arc<Manifest>, String>>,
}

impl Loaded {
    pub(super) async fn load(host: &Host, plan: &Plan) -> Loaded {
        let mut manifests = HashMap::new();
        for u in plan.plugins.values() {
            let key = (u.name.clone(), u.version.clone());
            if !manifests.contains_key(&key) {
                let m = host
                    .manifest(&u.name, &u.version)
                    .await
                    .map_err(|e| e.to_string());
                manifests.insert(key, m);
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
