//! The installed plugins as plan validation sees them (`plan::Catalog`), the full
//! check of a plan against them, and the plans that passed it.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

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
/// manifests of exactly the plugins the plan uses. A text that passed before against
/// the manifests the invoker still has is not checked again (see `CheckedPlans`).
pub async fn check_plan(
    host: &impl Invoker,
    file: &str,
    text: &str,
    format: Format,
) -> Result<Plan, Diagnostics> {
    let checked = host.checked_plans();
    if let Some(kept) = checked.and_then(|c| c.get(format, text))
        && kept.still_current(host).await
    {
        return Ok(kept.plan);
    }
    let draft = plan::parse(file, text, format, None)?;
    let catalog = Loaded::load(host, &draft).await;
    let plan = plan::parse(file, text, format, Some(&catalog))?;
    if let Some(c) = checked {
        let against = catalog
            .manifests
            .into_iter()
            .filter_map(|((name, version), m)| Some((name, version, m.ok()?)))
            .collect();
        c.insert(
            format,
            text,
            Kept {
                plan: plan.clone(),
                against,
            },
        );
    }
    Ok(plan)
}

/// Plan texts that passed `check_plan` against an invoker's plugins, with the plan
/// each gave. Callers submit the same few plans over and over with different
/// params; checking one costs two parses, the plan schema and each action's params
/// schema, a sizeable part of what a submission costs.
///
/// The outcome of a check depends on nothing but the text, its format and the
/// manifests of the plugins it names (the file name appears only in diagnostics).
/// So a kept plan is used only while the invoker still gives, for each of those
/// plugins, the very manifest it was checked against (the same `Arc`): installing a
/// plugin anew, or a plugin that no longer loads, means checking again. Failures are
/// not kept: a missing plugin may be installed later.
#[derive(Default)]
pub struct CheckedPlans {
    cache: Mutex<Checked>,
}

/// A plan that passed, and the manifests it passed against: (name, version
/// requirement, manifest) per plugin it names.
#[derive(Clone)]
pub(super) struct Kept {
    pub(super) plan: Plan,
    pub(super) against: Vec<(String, String, Arc<Manifest>)>,
}

impl Kept {
    /// Whether every plugin the plan names still has the manifest it was checked against.
    async fn still_current(&self, host: &impl Invoker) -> bool {
        for (name, version, manifest) in &self.against {
            match host.manifest(name, version).await {
                Ok(now) if Arc::ptr_eq(&now, manifest) => {}
                _ => return false,
            }
        }
        true
    }
}

#[derive(Default)]
struct Checked {
    /// By format, then by the text itself (not a digest: equal keys are equal texts).
    by_text: HashMap<Format, HashMap<String, Kept>>,
    /// Keys in the order they were added, for eviction.
    order: VecDeque<(Format, String)>,
    /// Bytes of text held.
    bytes: usize,
}

/// Kept at most: the oldest entries go first. A dropped plan is only checked again.
const CHECKED_PLANS: usize = 256;
const CHECKED_BYTES: usize = 8 << 20;

impl CheckedPlans {
    pub(super) fn get(&self, format: Format, text: &str) -> Option<Kept> {
        self.lock().by_text.get(&format)?.get(text).cloned()
    }

    /// Keeps (or replaces: the plugins may have changed since) the plan of `text`.
    pub(super) fn insert(&self, format: Format, text: &str, kept: Kept) {
        if text.len() > CHECKED_BYTES / 8 {
            return;
        }
        let mut c = self.lock();
        if let Some(slot) = c.by_text.get_mut(&format).and_then(|m| m.get_mut(text)) {
            *slot = kept;
            return;
        }
        while c.order.len() >= CHECKED_PLANS || c.bytes + text.len() > CHECKED_BYTES {
            let Some((f, old)) = c.order.pop_front() else {
                break;
            };
            c.bytes -= old.len();
            if let Some(m) = c.by_text.get_mut(&f) {
                m.remove(&old);
            }
        }
        c.bytes += text.len();
        c.order.push_back((format, text.to_owned()));
        c.by_text
            .entry(format)
            .or_default()
            .insert(text.to_owned(), kept);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Checked> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }
}
