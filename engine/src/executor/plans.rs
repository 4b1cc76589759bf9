//! Parsed plans by content hash, shared by every run this process drives.
//!
//! A run stores only its plan's hash; the store keeps one canonical text per hash,
//! so the plan a hash names never changes and one parse per process is enough,
//! however many runs use it. Without this, a server taking thousands of
//! submissions a second spent a fifth of its CPU re-parsing the same few plans.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use crate::dag::Dag;
use crate::plan::{self, Diagnostics, Plan};

/// Plans kept at most; the oldest is dropped first. Plans are few (runs share them)
/// and a dropped one is only parsed again.
const CAPACITY: usize = 256;

/// A stored plan, parsed, with its step graph.
pub(super) struct Parsed {
    pub plan: Arc<Plan>,
    pub dag: Arc<Dag>,
}

#[derive(Default)]
pub(super) struct Plans {
    cache: Mutex<Cache>,
}

#[derive(Default)]
struct Cache {
    by_hash: HashMap<String, Arc<Parsed>>,
    /// Hashes in the order they were added, for eviction.
    order: VecDeque<String>,
}

impl Plans {
    /// The plan stored under `hash` (its canonical JSON is `source`), parsed once.
    pub(super) fn get(
        &self,
        run: &str,
        hash: &str,
        source: &str,
    ) -> Result<Arc<Parsed>, Diagnostics> {
        if let Some(p) = self.lock().by_hash.get(hash) {
            return Ok(p.clone());
        }
        // Parsed outside the lock: two runs of a new plan may both parse it, which
        // costs less than making every other run wait.
        let plan = plan::parse(&format!("run {run}"), source, plan::Format::Json, None)?;
        let dag = Dag::new(plan.steps.iter().map(|s| s.needs.clone()).collect())
            .expect("a stored plan was validated acyclic");
        let parsed = Arc::new(Parsed {
            plan: Arc::new(plan),
            dag: Arc::new(dag),
        });
        let mut cache = self.lock();
        if !cache.by_hash.contains_key(hash) {
            if cache.order.len() >= CAPACITY
                && let Some(old) = cache.order.pop_front()
            {
                cache.by_hash.remove(&old);
            }
            cache.order.push_back(hash.to_owned());
            cache.by_hash.insert(hash.to_owned(), parsed.clone());
        }
        Ok(parsed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SOURCE: &str = r#"{"apiVersion":"medic/v1","kind":"RecoveryPlan","metadata":{"name":"p"},"plugins":{"probe":{"use":"probe@0.1"}},"steps":[{"id":"a","uses":"probe/noop"},{"id":"b","needs":["a"],"uses":"probe/noop"}]}"#;

    #[test]
    fn a_plan_is_parsed_once_and_shared() {
        let plans = Plans::default();
        let first = plans.get("r1", "h1", SOURCE).unwrap();
        let second = plans.get("r2", "h1", SOURCE).unwrap();
        assert!(Arc::ptr_eq(&first, &second));
        assert_eq!(first.plan.steps[1].needs, vec![0]);
        assert_eq!(
            *first.plan,
            plan::parse("x", SOURCE, plan::Format::Json, None).unwrap()
        );
    }

    #[test]
    fn a_broken_plan_is_an_error_naming_the_run_and_is_not_kept() {
        let plans = Plans::default();
        let Err(err) = plans.get("r1", "h2", "{") else {
            panic!("`{{` parsed as a plan");
        };
        assert!(err.to_string().contains("run r1"), "{err}");
        assert!(plans.lock().by_hash.is_empty());
    }

    #[test]
    fn the_oldest_plans_go_first_when_full() {
        let plans = Plans::default();
        for i in 0..=CAPACITY {
            plans.get("r", &format!("h{i}"), SOURCE).unwrap();
        }
        let cache = plans.lock();
        assert_eq!(cache.by_hash.len(), CAPACITY);
        assert!(!cache.by_hash.contains_key("h0"));
        assert!(cache.by_hash.contains_key(&format!("h{CAPACITY}")));
    }
}
