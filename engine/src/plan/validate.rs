//! Every check a plan must pass before anything runs, and the construction of the
//! validated `Plan` from a document that passed them all. Checks do not stop at the
//! first problem: one malformed step is skipped, the others are still checked.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::LazyLock;
use std::time::Duration;

use jsonschema::Validator;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::diagnostic::{Locations, Report, esc, list};
use super::raw::{
    RawApproval, RawBackoff, RawBreaker, RawCall, RawLimits, RawLock, RawMetadata, RawObjective,
    RawOnTimeout, RawPlugin, RawPolicy, RawStep,
};
use super::template::{self, Site, StepSite};
use super::{
    Approval, ApprovalTimeout, Backoff, Call, Catalog, Diagnostic, FailurePolicy, Grants,
    Objective, Param, Plan, PlanKind, PluginUse, Retry, SCHEMA, Step, StepKind, schema,
};
use super::{Breaker, Limits, LockDecl, LockMode, OnBusy, Safety};
use crate::dag::Dag;

/// The plan schema, parsed and compiled once.
static PLAN_SCHEMA: LazyLock<(Value, Validator)> = LazyLock::new(|| {
    let schema: Value = serde_json::from_str(SCHEMA).expect("plans/plan.schema.json is JSON");
    let validator = schema::compile(&schema).expect("plans/plan.schema.json is a valid schema");
    (schema, validator)
});

const DEFAULT_CONCURRENCY: usize = 8;

/// Checks a parsed document and builds the plan, or returns every problem found.
pub(crate) fn plan(
    file: &str,
    doc: &Value,
    locs: &Locations,
    catalog: Option<&dyn Catalog>,
) -> Result<Plan, Vec<Diagnostic>> {
    let mut r = Report::new(file, doc, locs);
    let (plan_schema, validator) = &*PLAN_SCHEMA;
    for p in schema::check(validator, plan_schema, doc) {
        if p.key {
            r.at_key(&p.pointer, p.message)
        } else {
            r.at(&p.pointer, p.message)
        }
    }
    let Some(root) = doc.as_object() else {
        return Err(r.finish());
    };

    let kind = match root.get("kind").and_then(Value::as_str) {
        Some("MaintenancePlan") => PlanKind::Maintenance,
        _ => PlanKind::Recovery,
    };
    let metadata: Option<RawMetadata> = part(root.get("metadata"));
    let concurrency = root
        .get("concurrency")
        .and_then(Value::as_u64)
        .map_or(DEFAULT_CONCURRENCY, |c| {
            usize::try_from(c).unwrap_or(DEFAULT_CONCURRENCY)
        });
    let on_failure = part::<RawPolicy>(root.get("on_failure"))
        .map(policy)
        .unwrap_or_default();

    let params = params(root.get("params"), &mut r);
    let param_names: Vec<String> = params.iter().map(|p| p.name.clone()).collect();
    let safety = safety(root, &param_names, &mut r);
    let empty = Map::new();
    let step_values: &[Value] = root
        .get("steps")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice);

    // Step ids first: templates in plugin grants are checked against them too.
    let mut index: HashMap<String, usize> = HashMap::new();
    for (i, v) in step_values.iter().enumerate() {
        let Some(id) = v.get("id").and_then(Value::as_str) else {
            continue;
        };
        if let Some(&first) = index.get(id) {
            let at = where_is(&r, &format!("/steps/{first}/id"));
            r.at(
                &format!("/steps/{i}/id"),
                format!(
                    "duplicate step id `{id}`: steps[{first}]{at} has it too; rename one of them"
                ),
            );
        } else {
            index.insert(id.to_string(), i);
        }
    }
    let mut ids_sorted: Vec<String> = index.keys().cloned().collect();
    ids_sorted.sort();

    let (plugins, declared) = plugins(
        root.get("plugins")
            .and_then(Value::as_object)
            .unwrap_or(&empty),
        &param_names,
        &index,
        &mut r,
    );

    let raw: Vec<Option<RawStep>> = step_values.iter().map(|v| part(Some(v))).collect();
    let mut needs: Vec<Vec<usize>> = vec![Vec::new(); step_values.len()];
    for (i, step) in raw.iter().enumerate() {
        let Some(step) = step else { continue };
        for (j, need) in step.needs.iter().enumerate() {
            match index.get(need) {
                Some(&n) if !needs[i].contains(&n) => needs[i].push(n),
                Some(_) => {}
                None => r.at(
                    &format!("/steps/{i}/needs/{j}"),
                    format!(
                        "unknown step `{need}`; expected one of: {}",
                        list(&ids_sorted, 20)
                    ),
                ),
            }
        }
    }
    let dag = match Dag::new(needs.clone()) {
        Ok(dag) => Some(dag),
        Err(cycles) => {
            for cycle in cycles {
                report_cycle(&cycle, &raw, step_values, &mut r);
            }
            None
        }
    };

    let mut steps = Vec::with_capacity(raw.len());
    for (i, step) in raw.iter().enumerate() {
        let Some(step) = step else { continue };
        let mut upstream: Option<Vec<bool>> = None;
        let mut checker = StepChecker {
            i,
            id: &step.id,
            params: &param_names,
            index: &index,
            dag: dag.as_ref(),
            upstream: &mut upstream,
            r: &mut r,
        };
        if let Some(w) = &step.when {
            checker.template(&format!("/steps/{i}/when"), w, true, false);
        }
        if let Some(with) = &step.with {
            checker.strings(
                &format!("/steps/{i}/with"),
                &Value::Object(with.clone()),
                false,
            );
        }
        if let Some(undo) = &step.undo
            && let Some(with) = &undo.with
        {
            checker.strings(
                &format!("/steps/{i}/undo/with"),
                &Value::Object(with.clone()),
                true,
            );
        }
        if let Some(a) = &step.approval {
            checker.template(
                &format!("/steps/{i}/approval/prompt"),
                &a.prompt,
                false,
                false,
            );
        }
        if let Some(built) = build_step(i, step, &needs[i], &declared, &mut r) {
            steps.push(built);
        }
    }

    if let Some(catalog) = catalog {
        check_actions(catalog, &plugins, &steps, &mut r);
    }
    let objective = part::<RawObjective>(root.get("objective"))
        .and_then(|o| objective(&o, &index, &ids_sorted, dag.as_ref(), &mut r));

    if !r.out.is_empty() {
        return Err(r.finish());
    }
    let Some(metadata) = metadata else {
        // Unreachable while the schema and `raw` agree; a diagnostic, not a panic.
        return Err(vec![Diagnostic {
            file: file.to_string(),
            line: None,
            column: None,
            path: "metadata".into(),
            message: "missing or malformed `metadata`".into(),
        }]);
    };
    let canonical = doc.to_string();
    let hash = hex(&Sha256::digest(canonical.as_bytes()));
    let params_schema = params_schema(root.get("params"), &params);
    let declared = metadata.schedules.clone();
    let notify = super::notify::validate(root.get("notify"), &index, &mut r);
    let mut plan = Plan {
        name: metadata.name,
        kind,
        description: metadata.description,
        hash,
        canonical,
        params,
        params_schema,
        plugins,
        steps,
        on_failure,
        concurrency,
        schedules: Vec::new(),
        objective,
        safety,
        notify,
    };
    plan.schedules = schedules(&plan, &declared, &mut r);
    let out = r.finish();
    if !out.is_empty() {
        return Err(out);
    }
    Ok(plan)
}

/// The schedules of `metadata.schedules`: each a schedule spec without `plan` (it is
/// this plan), every field checked as `/v1/schedules` checks it, and its params
/// bound against the plan's params now rather than failing at its first fire.
fn schedules(plan: &Plan, declared: &[Value], r: &mut Report<'_>) -> Vec<crate::schedule::Spec> {
    let mut out: Vec<crate::schedule::Spec> = Vec::new();
    for (i, v) in declared.iter().enumerate() {
        let pointer = format!("/metadata/schedules/{i}");
        let mut body = v.clone();
        if let Some(obj) = body.as_object_mut() {
            obj.insert("plan".into(), Value::String(plan.name.clone()));
        }
        let spec: crate::schedule::Spec = match serde_json::from_value(body) {
            Ok(spec) => spec,
            Err(e) => {
                r.at(&pointer, format!("not a schedule: {e}"));
                continue;
            }
        };
        if let Err(e) = spec.validate() {
            let at = format!("{pointer}/{}", e.field);
            let at = if r.position(&at, false).is_some() {
                at
            } else {
                pointer.clone()
            };
            r.at(&at, e.to_string());
            continue;
        }
        if let Some(first) = out.iter().position(|s| s.name == spec.name) {
            let other = where_is(r, &format!("/metadata/schedules/{first}"));
            r.at(
                &format!("{pointer}/name"),
                format!(
                    "schedule `{}` is declared twice{other}: schedule names are unique",
                    spec.name
                ),
            );
            continue;
        }
        if let Err(e) = super::bind_params(plan, &spec.params) {
            for d in e.0 {
                r.at(
                    &format!("{pointer}/params"),
                    format!("the schedule's params: {}", d.message),
                );
            }
            continue;
        }
        out.push(spec);
    }
    out
}

/// A part of the document as its raw type; `None` if it is malformed (the schema
/// check has already said how).
fn part<T: DeserializeOwned>(v: Option<&Value>) -> Option<T> {
    serde_json::from_value(v?.clone()).ok()
}

/// ` (file:line:col)` of a node, for messages that name a second place.
fn where_is(r: &Report<'_>, pointer: &str) -> String {
    match r.position(pointer, false) {
        Some((line, col)) => format!(" (at {}:{line}:{col})", r.file),
        None => String::new(),
    }
}

fn policy(p: RawPolicy) -> FailurePolicy {
    match p {
        RawPolicy::Abort => FailurePolicy::Abort,
        RawPolicy::Continue => FailurePolicy::Continue,
        RawPolicy::Rollback => FailurePolicy::Rollback,
    }
}

fn params(v: Option<&Value>, r: &mut Report<'_>) -> Vec<Param> {
    let Some(Value::Object(declared)) = v else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (name, schema) in declared {
        let Value::Object(fields) = schema else {
            continue;
        };
        let pointer = format!("/params/{}", esc(name));
        let mut fields = fields.clone();
        let default = fields.remove("default");
        match schema::compile(schema) {
            Err(e) => r.at(
                &pointer,
                format!("invalid JSON Schema for param `{name}`: {e}"),
            ),
            Ok(validator) => {
                if let Some(d) = &default {
                    for p in schema::check(&validator, schema, d) {
                        r.at(
                            &format!("{pointer}/default{}", p.pointer),
                            format!("default does not fit the param's schema: {}", p.message),
                        );
                    }
                }
            }
        }
        out.push(Param {
            name: name.clone(),
            schema: Value::Object(fields),
            default,
        });
    }
    out
}

/// An object schema with the declared params as properties (as written, defaults
/// included), required where there is no default, and nothing else allowed.
fn params_schema(declared: Option<&Value>, params: &[Param]) -> Value {
    let properties: Map<String, Value> = declared
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let required: Vec<&str> = params
        .iter()
        .filter(|p| p.default.is_none())
        .map(|p| p.name.as_str())
        .collect();
    json!({
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": false,
    })
}

fn plugins(
    declared: &Map<String, Value>,
    params: &[String],
    index: &HashMap<String, usize>,
    r: &mut Report<'_>,
) -> (BTreeMap<String, PluginUse>, Vec<String>) {
    let mut out = BTreeMap::new();
    for (alias, v) in declared {
        let pointer = format!("/plugins/{}", esc(alias));
        let Some(raw) = part::<RawPlugin>(Some(v)) else {
            continue;
        };
        let grants = [
            ("connect", &raw.grants.connect),
            ("http", &raw.grants.http),
            ("sql", &raw.grants.sql),
            ("secrets", &raw.grants.secrets),
        ];
        for (field, values) in grants {
            for (j, s) in values.iter().enumerate() {
                let at = format!("{pointer}/grants/{field}/{j}");
                if !template::is_template(s) {
                    if field == "http"
                        && let Err(msg) = crate::plan::origin(s)
                    {
                        r.at(&at, msg);
                    }
                    continue;
                }
                let site = Site {
                    params,
                    steps: index,
                    step: None,
                };
                match template::analyze_as(s, false) {
                    Err(e) => r.at(&at, e),
                    Ok(refs) => template::check_refs(&refs, &site)
                        .into_iter()
                        .for_each(|m| r.at(&at, m)),
                }
            }
        }
        match parse_use(&raw.use_) {
            Ok((name, version)) => {
                let grants = Grants {
                    connect: raw.grants.connect,
                    http: raw.grants.http,
                    sql: raw.grants.sql,
                    secrets: raw.grants.secrets,
                };
                out.insert(
                    alias.clone(),
                    PluginUse {
                        alias: alias.clone(),
                        name,
                        version,
                        grants,
                    },
                );
            }
            Err(msg) => r.at(&format!("{pointer}/use"), msg),
        }
    }
    (out, declared.keys().cloned().collect())
}

/// `NAME@VERSION`, the version a semver requirement.
fn parse_use(s: &str) -> Result<(String, String), String> {
    let Some((name, version)) = s.split_once('@') else {
        return Err(format!(
            "expected `NAME@VERSION`, e.g. `probe@0.1`; found `{s}`"
        ));
    };
    let name_ok = name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !name_ok {
        return Err(format!(
            "invalid plugin name `{name}` in `{s}`: expected lowercase letters, digits, `_` and `-`"
        ));
    }
    if let Err(e) = semver::VersionReq::parse(version) {
        return Err(format!(
            "invalid version requirement `{version}` in `{s}`: {e}; expected e.g. `0.1`, `^1.2` or `=1.2.3`"
        ));
    }
    Ok((name.to_string(), version.to_string()))
}

fn report_cycle(cycle: &[usize], raw: &[Option<RawStep>], values: &[Value], r: &mut Report<'_>) {
    let id = |i: usize| {
        values[i]
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or("?")
            .to_string()
    };
    let mut names: Vec<String> = cycle.iter().map(|&i| id(i)).collect();
    names.push(id(cycle[0]));
    // In dependency order the first step needs the last: point at that need.
    let first = cycle[0];
    let last = id(*cycle.last().expect("a cycle has a step"));
    let j = raw[first]
        .as_ref()
        .and_then(|s| s.needs.iter().position(|n| *n == last));
    let pointer = match j {
        Some(j) => format!("/steps/{first}/needs/{j}"),
        None => format!("/steps/{first}/needs"),
    };
    r.at(
        &pointer,
        format!(
            "steps form a cycle: {}; remove one of these needs",
            names.join(" -> ")
        ),
    );
}

/// Checks the templates of one step.
struct StepChecker<'a, 'r> {
    i: usize,
    id: &'a str,
    params: &'a [String],
    index: &'a HashMap<String, usize>,
    dag: Option<&'a Dag>,
    upstream: &'a mut Option<Vec<bool>>,
    r: &'a mut Report<'r>,
}

impl StepChecker<'_, '_> {
    /// Every template string in `value`, recursively.
    fn strings(&mut self, pointer: &str, value: &Value, allow_self: bool) {
        match value {
            Value::String(s) if template::is_template(s) => {
                self.template(pointer, s, false, allow_self)
            }
            Value::Array(items) => {
                for (j, v) in items.iter().enumerate() {
                    self.strings(&format!("{pointer}/{j}"), v, allow_self);
                }
            }
            Value::Object(map) => {
                for (k, v) in map {
                    self.strings(&format!("{pointer}/{}", esc(k)), v, allow_self);
                }
            }
            _ => {}
        }
    }

    fn template(&mut self, pointer: &str, source: &str, expression: bool, allow_self: bool) {
        let refs = match template::analyze_as(source, expression) {
            Ok(refs) => refs,
            Err(e) => return self.r.at(pointer, e),
        };
        let reads_steps =
            refs.vars.iter().any(|v| v.starts_with("steps.")) || !refs.subscripts.is_empty();
        if reads_steps && self.upstream.is_none() {
            *self.upstream = self.dag.map(|d| d.upstream(self.i));
        }
        let site = Site {
            params: self.params,
            steps: self.index,
            step: Some(StepSite {
                index: self.i,
                id: self.id,
                upstream: self.upstream.as_deref(),
                allow_self,
            }),
        };
        for m in template::check_refs(&refs, &site) {
            self.r.at(pointer, m);
        }
    }
}

/// `objective`: a duration, and steps that exist with `to` downstream of `from`, so
/// the clock can only stop after it started.
fn objective(
    raw: &RawObjective,
    index: &HashMap<String, usize>,
    ids: &[String],
    dag: Option<&Dag>,
    r: &mut Report<'_>,
) -> Option<Objective> {
    let within = duration(Some(&raw.within), "/objective/within", r);
    if within == Some(Duration::ZERO) {
        r.at("/objective/within", "must be longer than 0s".to_string());
    }
    let mut step = |field: &str, id: &Option<String>| -> Result<Option<usize>, ()> {
        let Some(id) = id else { return Ok(None) };
        match index.get(id) {
            Some(&i) => Ok(Some(i)),
            None => {
                r.at(
                    &format!("/objective/{field}"),
                    format!("unknown step `{id}`; expected one of: {}", list(ids, 20)),
                );
                Err(())
            }
        }
    };
    let from = step("from", &raw.from);
    let to = step("to", &raw.to);
    let (Ok(from), Ok(to)) = (from, to) else {
        return None;
    };
    if let (Some(f), Some(t), Some(dag)) = (from, to, dag)
        && !dag.upstream(t)[f]
    {
        r.at(
            "/objective/to",
            format!(
                "step `{}` does not depend on `from` step `{}`, so it may end before the clock starts; \
                 name a step that needs `{}` (directly or through others)",
                raw.to.as_deref().unwrap_or_default(),
                raw.from.as_deref().unwrap_or_default(),
                raw.from.as_deref().unwrap_or_default(),
            ),
        );
        return None;
    }
    Some(Objective {
        within: within.filter(|d| !d.is_zero())?,
        from,
        to,
    })
}

/// `locks`, `on_lock_busy`, `limits` and `breaker` (issue 12's safety rails). Lock
/// names may only use `params` in templates: they are rendered at submission.
fn safety(root: &Map<String, Value>, params: &[String], r: &mut Report<'_>) -> Safety {
    let no_steps = HashMap::new();
    let site = Site {
        params,
        steps: &no_steps,
        step: None,
    };
    let mut out = Safety::default();
    if let Some(locks) = root.get("locks").and_then(Value::as_array) {
        for (i, v) in locks.iter().enumerate() {
            let pointer = format!("/locks/{i}");
            let Some(raw) = part::<RawLock>(Some(v)) else {
                continue;
            };
            let (name, mode) = match raw {
                RawLock::Name(n) => (n, None),
                RawLock::Full { name, mode } => (name, mode),
            };
            let mode = match mode.as_deref() {
                None => LockMode::Exclusive,
                Some(m) => match LockMode::parse(m) {
                    Some(m) => m,
                    None => {
                        r.at(
                            &format!("{pointer}/mode"),
                            format!("unknown lock mode `{m}`: expected `shared` or `exclusive`"),
                        );
                        continue;
                    }
                },
            };
            let problems = match template::analyze_as(&name, false) {
                Ok(refs) => template::check_refs(&refs, &site),
                Err(e) => vec![e],
            };
            if !problems.is_empty() {
                for p in problems {
                    r.at(
                        &pointer,
                        format!("{p} (a lock name is rendered with the run's params when it is submitted)"),
                    );
                }
                continue;
            }
            if let Some(first) = out.locks.iter().position(|l| l.name == name) {
                r.at(
                    &pointer,
                    format!("lock `{name}` is declared twice (also locks[{first}]); keep one"),
                );
                continue;
            }
            out.locks.push(LockDecl { name, mode });
        }
    }
    if let Some(v) = root.get("on_lock_busy").and_then(Value::as_str) {
        out.on_lock_busy = if v == "refuse" {
            OnBusy::Refuse
        } else {
            OnBusy::Wait
        };
    }
    if let Some(l) = part::<RawLimits>(root.get("limits")) {
        out.limits = Limits {
            concurrent_targets: l.concurrent_targets,
            targets_per_hour: l.targets_per_hour,
        };
        if (l.concurrent_targets.is_some() || l.targets_per_hour.is_some()) && out.locks.is_empty()
        {
            r.at(
                "/limits",
                "limits count a run's targets, which are its resolved `locks`; this plan \
                 declares none: add `locks:` (e.g. `- \"mysql/${{ params.cluster }}\"`)"
                    .to_string(),
            );
        }
    }
    if let Some(b) = part::<RawBreaker>(root.get("breaker"))
        && let Some(window) = duration(Some(&b.window), "/breaker/window", r)
    {
        out.breaker = Some(Breaker {
            failures: b.failures,
            window,
        });
    }
    out
}

fn duration(s: Option<&str>, pointer: &str, r: &mut Report<'_>) -> Option<Duration> {
    let s = s?;
    match humantime::parse_duration(s) {
        Ok(d) => Some(d),
        Err(e) => {
            r.at(
                pointer,
                format!("invalid duration `{s}`: {e}; expected e.g. `30s`, `10m` or `1h 30m`"),
            );
            None
        }
    }
}

fn call(
    raw_uses: &str,
    with: Option<&Map<String, Value>>,
    pointer: &str,
    declared: &[String],
    r: &mut Report<'_>,
) -> Option<Call> {
    let (alias, action) = raw_uses.split_once('/')?;
    if !declared.iter().any(|d| d == alias) {
        let known = if declared.is_empty() {
            String::new()
        } else {
            format!("; declared: {}", list(declared, 20))
        };
        r.at(
            &format!("{pointer}/uses"),
            format!("plugin alias `{alias}` is not declared; add it under `plugins:` (e.g. `{alias}: {{ use: NAME@VERSION }}`){known}"),
        );
        return None;
    }
    Some(Call {
        plugin: alias.to_string(),
        action: action.to_string(),
        with: Value::Object(with.cloned().unwrap_or_default()),
    })
}

fn build_step(
    i: usize,
    step: &RawStep,
    needs: &[usize],
    declared: &[String],
    r: &mut Report<'_>,
) -> Option<Step> {
    let base = format!("/steps/{i}");
    let timeout = duration(step.timeout.as_deref(), &format!("{base}/timeout"), r);
    let mut retry = Retry::default();
    if let Some(raw) = &step.retry {
        retry.attempts = raw.attempts.unwrap_or(retry.attempts);
        retry.backoff = match raw.backoff {
            Some(RawBackoff::Fixed) => Backoff::Fixed,
            Some(RawBackoff::Exponential) | None => Backoff::Exponential,
        };
        retry.jitter = raw.jitter.unwrap_or(retry.jitter);
        let initial = duration(raw.initial.as_deref(), &format!("{base}/retry/initial"), r);
        let max = duration(raw.max.as_deref(), &format!("{base}/retry/max"), r);
        retry.initial = initial.unwrap_or(retry.initial);
        retry.max = max.unwrap_or(retry.max);
        if retry.initial > retry.max {
            let at = if initial.is_some() { "initial" } else { "max" };
            r.at(
                &format!("{base}/retry/{at}"),
                format!(
                    "retry.initial ({}) is longer than retry.max ({}); lower `initial` or raise `max`",
                    humantime::format_duration(retry.initial),
                    humantime::format_duration(retry.max)
                ),
            );
        }
    }
    let kind = match (&step.uses, &step.approval) {
        (Some(uses), None) => {
            let main = call(uses, step.with.as_ref(), &base, declared, r);
            let undo = match &step.undo {
                Some(RawCall { uses, with }) => Some(call(
                    uses,
                    with.as_ref(),
                    &format!("{base}/undo"),
                    declared,
                    r,
                )?),
                None => None,
            };
            StepKind::Action { call: main?, undo }
        }
        (
            None,
            Some(RawApproval {
                prompt,
                timeout,
                on_timeout,
                allow_self_approval,
            }),
        ) => StepKind::Approval(Approval {
            prompt: prompt.clone(),
            timeout: duration(timeout.as_deref(), &format!("{base}/approval/timeout"), r),
            on_timeout: match on_timeout {
                Some(RawOnTimeout::Approve) => ApprovalTimeout::Approve,
                Some(RawOnTimeout::Reject) | None => ApprovalTimeout::Reject,
            },
            allow_self_approval: allow_self_approval.unwrap_or(false),
        }),
        // Neither or both: the schema check has said so.
        _ => return None,
    };
    Some(Step {
        id: step.id.clone(),
        needs: needs.to_vec(),
        when: step
            .when
            .as_deref()
            .map(|w| template::unwrap_condition(w).to_string()),
        kind,
        retry,
        timeout,
        on_failure: step.on_failure.map(policy),
    })
}

/// Looks up each action in the catalog and checks its literal `with`.
fn check_actions(
    catalog: &dyn Catalog,
    plugins: &BTreeMap<String, PluginUse>,
    steps: &[Step],
    r: &mut Report<'_>,
) {
    let mut unavailable: HashSet<&str> = HashSet::new();
    let mut looked_up: HashMap<(String, String), Lookup> = HashMap::new();
    // `steps` holds only well-formed steps; find each one's index by id.
    let mut position: HashMap<&str, usize> = HashMap::new();
    let doc = r.doc;
    for (i, v) in doc
        .get("steps")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        if let Some(id) = v.get("id").and_then(Value::as_str) {
            position.entry(id).or_insert(i);
        }
    }
    for step in steps {
        let StepKind::Action { call, undo } = &step.kind else {
            continue;
        };
        let i = position[step.id.as_str()];
        let calls = [
            (format!("/steps/{i}"), Some(call)),
            (format!("/steps/{i}/undo"), undo.as_ref()),
        ];
        for (base, call) in calls {
            let Some(call) = call else { continue };
            let Some(plugin) = plugins.get(&call.plugin) else {
                continue;
            };
            if unavailable.contains(call.plugin.as_str()) {
                continue;
            }
            let key = (call.plugin.clone(), call.action.clone());
            if !looked_up.contains_key(&key) {
                let lookup = match catalog.action(plugin, &call.action) {
                    Err(msg) => {
                        // Said once, at the plugin, not at every step that uses it.
                        unavailable.insert(plugin.alias.as_str());
                        r.at(
                            &format!("/plugins/{}/use", esc(&plugin.alias)),
                            format!("plugin `{}@{}`: {msg}", plugin.name, plugin.version),
                        );
                        continue;
                    }
                    Ok(None) => Lookup::NoSuchAction,
                    Ok(Some(spec)) => match schema::compile(&spec.params_schema) {
                        Ok(v) => Lookup::Found(spec.params_schema, Box::new(v)),
                        Err(e) => Lookup::BadSchema(e),
                    },
                };
                looked_up.insert(key.clone(), lookup);
            }
            match &looked_up[&key] {
                Lookup::NoSuchAction => r.at(
                    &format!("{base}/uses"),
                    format!("plugin `{}@{}` has no action `{}`", plugin.name, plugin.version, call.action),
                ),
                Lookup::BadSchema(e) => r.at(
                    &format!("{base}/uses"),
                    format!(
                        "the params schema of `{}` in plugin `{}` is invalid ({e}); this is a bug in the plugin",
                        call.action, plugin.name
                    ),
                ),
                Lookup::Found(schema, validator) => {
                    for p in schema::check(validator, schema, &call.with) {
                        // A template's value is known only when the step runs.
                        let at_template = !p.key
                            && call.with.pointer(&p.pointer).and_then(Value::as_str).is_some_and(template::is_template);
                        if at_template {
                            continue;
                        }
                        let pointer = format!("{base}/with{}", p.pointer);
                        let message = format!("{} (params of `{}/{}`)", p.message, call.plugin, call.action);
                        if p.key { r.at_key(&pointer, message) } else { r.at(&pointer, message) }
                    }
                }
            }
        }
    }
}

enum Lookup {
    NoSuchAction,
    BadSchema(String),
    Found(Value, Box<Validator>),
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
