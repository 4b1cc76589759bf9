//! Dry runs (`medic run --dry-run`, `POST /v1/runs?dry_run=true`, issue 12): a plan's
//! steps in topological order with their params and templates resolved, each
//! mutating (or idempotent) action asked of its plugin in plan mode (WIT
//! `context.dry-run`: read-only precondition checks, no effect), each read-only
//! action run for real (it has no effect, and later steps' templates may need its
//! output). Nothing is stored: no run, no event, no lock.

use serde_json::{Value, json};

use super::{Error, Executor};
use crate::plan::{self, EffectClass, Plan, StepKind};
use crate::plugin::{Call, CallContext, Invoker};

impl<I: Invoker> Executor<I> {
    /// What a run of `plan` with bound `params` would do, in order. The answer is
    /// `{dry_run, plan, hash, params, locks, ok, steps: [{order, id, kind, uses,
    /// effect, params, would, checked, checks, error}]}`; `ok` is false when a check
    /// failed or a step could not be planned.
    pub async fn dry_run(&self, plan: &Plan, params: Value) -> Result<Value, Error> {
        let locks = plan::resolve_locks(plan, &params)
            .map_err(|e| Error::Locks(format!("plan `{}`: {e}", plan.name)))?;
        let order = file_order(plan);
        let mut scope = json!({ "params": params, "steps": {}, "run": { "id": "dry-run" } });
        let mut steps = Vec::new();
        let mut ok = true;
        for (order, &i) in order.iter().enumerate() {
            let def = &plan.steps[i];
            let mut out = json!({ "order": order + 1, "id": def.id });
            let mut output = Value::Null;
            let mut status = "succeeded";
            if let Some(expr) = &def.when {
                match plan::condition(expr, &scope) {
                    Ok(true) => {}
                    Ok(false) => status = "skipped",
                    Err(e) => {
                        out["when"] = json!(format!(
                            "`{expr}` cannot be decided before the run ({e}); planned as if true"
                        ))
                    }
                }
            }
            match &def.kind {
                _ if status == "skipped" => {
                    out["kind"] = json!("skipped");
                    out["would"] = json!(format!("skip: `when` is false"));
                }
                StepKind::Approval(a) => {
                    out["kind"] = json!("approval");
                    let prompt = plan::render(&Value::String(a.prompt.clone()), &scope)
                        .map(|p| {
                            p.as_str()
                                .map(str::to_owned)
                                .unwrap_or_else(|| p.to_string())
                        })
                        .unwrap_or_else(|_| a.prompt.clone());
                    out["would"] = json!(format!("wait for an approval: {prompt}"));
                }
                StepKind::Action { call, .. } => {
                    out["kind"] = json!("action");
                    out["uses"] = json!(format!("{}/{}", call.plugin, call.action));
                    let using = &plan.plugins[&call.plugin];
                    let effect = match self
                        .inner
                        .invoker
                        .manifest(&using.name, &using.version)
                        .await
                    {
                        Ok(m) => m.action(&call.action).map(|a| a.effect),
                        Err(_) => None,
                    }
                    .unwrap_or(EffectClass::Mutating);
                    out["effect"] = json!(match effect {
                        EffectClass::ReadOnly => "read-only",
                        EffectClass::Idempotent => "idempotent",
                        EffectClass::Mutating => "mutating",
                    });
                    let render_all = |list: &[String]| {
                        list.iter()
                            .map(|g| {
                                plan::render(&Value::String(g.clone()), &scope).map(|v| {
                                    v.as_str()
                                        .map(str::to_owned)
                                        .unwrap_or_else(|| v.to_string())
                                })
                            })
                            .collect::<Result<Vec<_>, _>>()
                    };
                    let rendered = plan::render(&call.with, &scope).and_then(|p| {
                        Ok((
                            p,
                            plan::Grants {
                                connect: render_all(&using.grants.connect)?,
                                http: render_all(&using.grants.http)?,
                                sql: render_all(&using.grants.sql)?,
                                secrets: render_all(&using.grants.secrets)?,
                            },
                        ))
                    });
                    let (params, grants) = match rendered {
                        Ok(v) => v,
                        Err(e) => {
                            ok = false;
                            out["params"] = call.with.clone();
                            out["error"] = json!(format!(
                                "params cannot be resolved before the run: {e} (shown as written; \
                                 a template reading the output of a step that is not read-only \
                                 has no value in a dry run)"
                            ));
                            steps.push(out);
                            scope["steps"][&def.id] = json!({ "status": status, "output": null });
                            continue;
                        }
                    };
                    out["params"] = params.clone();
                    let read_only = effect == EffectClass::ReadOnly;
                    let answer = self
                        .inner
                        .invoker
                        .invoke(Call {
                            plugin: using.name.clone(),
                            version: using.version.clone(),
                            action: call.action.clone(),
                            params,
                            ctx: CallContext {
                                run_id: "dry-run".into(),
                                step_id: def.id.clone(),
                                attempt: 1,
                                idempotency_key: format!("dry-run/{}/1", def.id),
                                dry_run: !read_only,
                            },
                            grants,
                            timeout: def.timeout,
                            progress: None,
                            build: None,
                        })
                        .await;
                    match (answer, read_only) {
                        (Ok(v), true) => {
                            out["would"] = json!("read (ran for real: the action is read-only)");
                            out["checked"] = json!(true);
                            out["output"] = v.clone();
                            output = v;
                        }
                        (Ok(v), false) => {
                            let plan_ok = v["checks"]
                                .as_array()
                                .is_none_or(|c| c.iter().all(|c| c["ok"] != false));
                            ok &= plan_ok;
                            out["would"] = v["would"].clone();
                            out["checked"] = v["checked"].clone();
                            out["checks"] = v["checks"].clone();
                        }
                        (Err(e), _) => {
                            ok = false;
                            out["error"] = json!(e.to_string());
                        }
                    }
                }
            }
            scope["steps"][&def.id] = json!({ "status": status, "output": output });
            steps.push(out);
        }
        Ok(json!({
            "dry_run": true,
            "plan": plan.name,
            "hash": plan.hash,
            "params": params,
            "locks": locks.iter().map(|(n, m)| json!({"name": n, "mode": m.as_str()})).collect::<Vec<_>>(),
            "ok": ok,
            "steps": steps,
        }))
    }
}

/// The steps in an order a run could start them: each after the steps it needs,
/// and otherwise in file order (the smallest ready index first), so the listing reads
/// like the plan.
fn file_order(plan: &Plan) -> Vec<usize> {
    let n = plan.steps.len();
    let mut waiting: Vec<usize> = plan.steps.iter().map(|s| s.needs.len()).collect();
    let mut ready: std::collections::BTreeSet<usize> =
        (0..n).filter(|&i| waiting[i] == 0).collect();
    let mut out = Vec::with_capacity(n);
    while let Some(i) = ready.pop_first() {
        out.push(i);
        for (j, s) in plan.steps.iter().enumerate() {
            if s.needs.contains(&i) {
                waiting[j] -= 1;
                if waiting[j] == 0 {
                    ready.insert(j);
                }
            }
        }
    }
    out
}

/// The lines `medic run --dry-run` prints for a dry run's answer.
pub fn describe(report: &Value) -> Vec<String> {
    let mut lines = vec![format!(
        "dry run of plan `{}`: nothing is changed, no run is recorded",
        report["plan"].as_str().unwrap_or("")
    )];
    if let Some(locks) = report["locks"].as_array().filter(|l| !l.is_empty()) {
        let names: Vec<String> = locks
            .iter()
            .map(|l| {
                format!(
                    "{} ({})",
                    l["name"].as_str().unwrap_or(""),
                    l["mode"].as_str().unwrap_or("")
                )
            })
            .collect();
        lines.push(format!("  locks: {}", names.join(", ")));
    }
    for s in report["steps"].as_array().into_iter().flatten() {
        let uses = s["uses"]
            .as_str()
            .map(|u| format!(" {u}"))
            .unwrap_or_default();
        let effect = s["effect"]
            .as_str()
            .map(|e| format!(" ({e})"))
            .unwrap_or_default();
        lines.push(format!(
            "{:>3}. {}{uses}{effect}",
            s["order"],
            s["id"].as_str().unwrap_or("")
        ));
        if !s["params"].is_null() {
            lines.push(format!("       with: {}", s["params"]));
        }
        if let Some(w) = s["when"].as_str() {
            lines.push(format!("       when: {w}"));
        }
        if let Some(w) = s["would"].as_str() {
            lines.push(format!("       would: {w}"));
        }
        for c in s["checks"].as_array().into_iter().flatten() {
            let mark = if c["ok"] == true { "ok" } else { "FAILED" };
            lines.push(format!(
                "       check {mark}: {}: {}",
                c["what"].as_str().unwrap_or(""),
                c["detail"].as_str().unwrap_or("")
            ));
        }
        if let Some(e) = s["error"].as_str() {
            lines.push(format!("       error: {e}"));
        }
    }
    let unchecked = report["steps"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| s["checked"] == false)
        .count();
    if unchecked > 0 {
        lines.push(format!(
            "note: {unchecked} step(s) could not be checked: their plugin has no plan mode for the action"
        ));
    }
    lines.push(if report["ok"] == true {
        "dry run ok: every check passed".into()
    } else {
        "dry run found problems (see FAILED / error above)".into()
    });
    lines
}
