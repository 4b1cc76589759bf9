//! Typed actions: an action is a type with serde structs for its params and output.
//! The SDK derives both JSON Schemas from those types (schemars), builds the manifest,
//! parses params into the struct, serializes the output and routes `invoke` and
//! `observe` by action name, so a plugin has no glue and no match on action strings.

use schemars::{JsonSchema, SchemaGenerator, generate::SchemaSettings};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::{Action, Context, DryRun, Effect, Failure, Manifest, Observation, Plugin};

/// One action of a plugin, written as a type (usually a unit struct).
///
/// ```
/// use medic_sdk::{Context, Effect, Failure, TypedAction};
/// use schemars::JsonSchema;
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Deserialize, JsonSchema)]
/// #[serde(deny_unknown_fields)]
/// struct GreetParams {
///     /// Who to greet.
///     name: String,
/// }
///
/// #[derive(Serialize, JsonSchema)]
/// struct Greeting {
///     greeting: String,
/// }
///
/// struct Greet;
///
/// impl TypedAction for Greet {
///     const NAME: &'static str = "greet";
///     const EFFECT: Effect = Effect::ReadOnly;
///     const DESCRIPTION: &'static str = "Returns a greeting";
///     type Params = GreetParams;
///     type Output = Greeting;
///
///     fn invoke(_ctx: &Context, p: GreetParams) -> Result<Greeting, Failure> {
///         Ok(Greeting { greeting: format!("hello, {}", p.name) })
///     }
/// }
/// ```
pub trait TypedAction: 'static {
    /// The name plans use after the plugin's (`uses: PLUGIN/NAME`).
    const NAME: &'static str;
    /// What calling it does to the world (see [`Effect`]).
    const EFFECT: Effect;
    /// One line for `medic plugin inspect` and the manifest.
    const DESCRIPTION: &'static str = "";
    /// The action (of the same plugin) that undoes this one.
    const INVERSE: Option<&'static str> = None;

    /// The step's `with:`. Derive `Deserialize` and `JsonSchema`; add
    /// `#[serde(deny_unknown_fields)]` so `medic validate` rejects a misspelt field.
    type Params: DeserializeOwned + JsonSchema;
    /// What the step outputs (`steps.ID.output`). Derive `Serialize` and `JsonSchema`.
    type Output: Serialize + JsonSchema;

    /// Runs the action.
    fn invoke(ctx: &Context, params: Self::Params) -> Result<Self::Output, Failure>;

    /// Whether the effect of `invoke(ctx, params)` already holds; medic asks after a
    /// crash left an attempt's outcome unknown. The default cannot tell, which makes
    /// medic hold a mutating step for an operator. Read-only actions should answer
    /// `NotDone` (running them again is safe and the only way to get their output).
    fn observe(ctx: &Context, params: Self::Params) -> Result<Observation<Self::Output>, Failure> {
        let _ = (ctx, params);
        Ok(Observation::Unknown(format!(
            "the plugin cannot observe the effect of `{}`",
            Self::NAME
        )))
    }

    /// A dry run (`medic run --dry-run`): must change nothing. Check the
    /// preconditions with reads only and say what `invoke` would do. A read-only
    /// action is not asked: the SDK runs its `invoke` (it has no effect) and reports
    /// the output. The default for other actions checks nothing and says so.
    fn plan(ctx: &Context, params: Self::Params) -> Result<DryRun, Failure> {
        let _ = (ctx, params);
        Ok(DryRun::unchecked(Self::NAME))
    }
}

/// A plugin made of typed actions. Implementing it is all a plugin needs besides its
/// actions: `export_plugin!(MyPlugin)` exports it (every `TypedPlugin` is a [`Plugin`]).
pub trait TypedPlugin {
    /// The plugin's name: the file medic loads is `NAME.wasm`. `env!("CARGO_CRATE_NAME")`
    /// is the stem of the `.wasm` file cargo builds, so the two always agree.
    const NAME: &'static str;
    /// Semantic version; plans ask for it as `NAME@requirement`.
    const VERSION: &'static str;
    const DESCRIPTION: &'static str;

    /// The actions, e.g. `Actions::new().add::<Status>().add::<Restart>()`.
    fn actions() -> Actions;
}

impl<P: TypedPlugin> Plugin for P {
    fn manifest() -> Manifest {
        P::actions().manifest(P::NAME, P::VERSION, P::DESCRIPTION)
    }

    fn invoke(ctx: &Context, action: &str, params: Value) -> Result<Value, Failure> {
        P::actions().invoke(ctx, action, params)
    }

    fn observe(ctx: &Context, action: &str, params: Value) -> Result<Observation, Failure> {
        P::actions().observe(ctx, action, params)
    }

    fn plan(ctx: &Context, action: &str, params: Value) -> Result<DryRun, Failure> {
        P::actions().plan(ctx, action, params)
    }
}

type PlanFn = fn(&Context, Value) -> Result<DryRun, Failure>;
type InvokeFn = fn(&Context, Value) -> Result<Value, Failure>;
type ObserveFn = fn(&Context, Value) -> Result<Observation, Failure>;

struct Entry {
    name: &'static str,
    /// Schemas are only generated when the manifest is asked for, not on every call.
    describe: fn() -> Action,
    invoke: InvokeFn,
    observe: ObserveFn,
    plan: PlanFn,
}

/// The typed actions of a plugin, by name: builds the manifest and routes calls.
#[derive(Default)]
pub struct Actions {
    entries: Vec<Entry>,
}

impl Actions {
    pub fn new() -> Actions {
        Actions::default()
    }

    /// Adds the action `A`.
    ///
    /// # Panics
    /// When an action of the same name was added already (a bug in the plugin that
    /// its first `manifest` call shows).
    pub fn add<A: TypedAction>(mut self) -> Actions {
        assert!(
            self.entries.iter().all(|e| e.name != A::NAME),
            "action `{}` is added twice: action names must be unique",
            A::NAME
        );
        self.entries.push(Entry {
            name: A::NAME,
            describe: describe::<A>,
            invoke: invoke::<A>,
            observe: observe::<A>,
            plan: plan::<A>,
        });
        self
    }

    /// The manifest listing every action with its derived schemas.
    pub fn manifest(&self, name: &str, version: &str, description: &str) -> Manifest {
        self.entries
            .iter()
            .fold(Manifest::new(name, version, description), |m, e| {
                m.action((e.describe)())
            })
    }

    /// Calls `action` with `params` (JSON): parsed into its params type, its output
    /// serialized.
    pub fn invoke(&self, ctx: &Context, action: &str, params: Value) -> Result<Value, Failure> {
        (self.entry(action)?.invoke)(ctx, params)
    }

    pub fn observe(
        &self,
        ctx: &Context,
        action: &str,
        params: Value,
    ) -> Result<Observation, Failure> {
        (self.entry(action)?.observe)(ctx, params)
    }

    /// A dry run of `action` (see [`TypedAction::plan`]).
    pub fn plan(&self, ctx: &Context, action: &str, params: Value) -> Result<DryRun, Failure> {
        (self.entry(action)?.plan)(ctx, params)
    }

    fn entry(&self, action: &str) -> Result<&Entry, Failure> {
        self.entries
            .iter()
            .find(|e| e.name == action)
            .ok_or_else(|| {
                let known: Vec<&str> = self.entries.iter().map(|e| e.name).collect();
                Failure::permanent(format!(
                    "unknown action `{action}`; this plugin offers: {}",
                    known.join(", ")
                ))
            })
    }
}

fn describe<A: TypedAction>() -> Action {
    let mut action = Action::new(A::NAME, A::EFFECT)
        .description(A::DESCRIPTION)
        .params(schema_of::<A::Params>())
        .output(schema_of::<A::Output>());
    action.inverse = A::INVERSE.map(str::to_string);
    action
}

fn invoke<A: TypedAction>(ctx: &Context, params: Value) -> Result<Value, Failure> {
    let params = parse_params::<A::Params>(A::NAME, params)?;
    to_output(A::NAME, &A::invoke(ctx, params)?)
}

fn observe<A: TypedAction>(ctx: &Context, params: Value) -> Result<Observation, Failure> {
    let params = parse_params::<A::Params>(A::NAME, params)?;
    Ok(match A::observe(ctx, params)? {
        Observation::Done(output) => Observation::Done(to_output(A::NAME, &output)?),
        Observation::NotDone => Observation::NotDone,
        Observation::Unknown(why) => Observation::Unknown(why),
    })
}

fn plan<A: TypedAction>(ctx: &Context, params: Value) -> Result<DryRun, Failure> {
    let params = parse_params::<A::Params>(A::NAME, params)?;
    if A::EFFECT == Effect::ReadOnly {
        let output = to_output(A::NAME, &A::invoke(ctx, params)?)?;
        return Ok(DryRun::would(format!(
            "read (ran for real, read-only): {output}"
        )));
    }
    A::plan(ctx, params)
}

/// The JSON Schema of `T` as medic reads it: draft 2020-12, everything inline except
/// recursive types (`$defs`), without the `$schema` and `title` noise.
pub fn schema_of<T: JsonSchema>() -> Value {
    let mut settings = SchemaSettings::draft2020_12();
    settings.meta_schema = None;
    settings.inline_subschemas = true;
    let schema = SchemaGenerator::new(settings).into_root_schema_for::<T>();
    let mut value = schema.to_value();
    if let Some(object) = value.as_object_mut() {
        object.remove("title");
    }
    value
}

/// Parses an action's params into its params type. medic validates params against
/// the derived schema before calling, so this fails only when a plugin's types and
/// its published schema disagree, or when a plugin is called by hand; the message
/// names the action and the path of the field that does not fit.
pub fn parse_params<T: DeserializeOwned>(action: &str, params: Value) -> Result<T, Failure> {
    serde_path_to_error::deserialize(params).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let at = if path == "." {
            String::new()
        } else {
            format!(" at `{path}`")
        };
        Failure::permanent(format!(
            "params of action `{action}` do not fit{at}: {inner}"
        ))
    })
}

fn to_output<T: Serialize>(action: &str, output: &T) -> Result<Value, Failure> {
    serde_json::to_value(output).map_err(|e| {
        Failure::permanent(format!(
            "the output of action `{action}` cannot be serialized to JSON: {e}"
        ))
    })
}

/// Params of an action that takes none: `{}` only.
#[derive(Debug, Clone, Default, serde::Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NoParams {}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use serde::Deserialize;
    use serde_json::json;

    use super::*;

    thread_local! {
        static CALLS: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
    }

    #[derive(Debug, Deserialize, JsonSchema)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct BumpParams {
        /// Which counter.
        counter: String,
        amount: i64,
        #[serde(default)]
        dry_run: bool,
        target: Target,
    }

    #[derive(Debug, Deserialize, JsonSchema)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)] // only its schema and its parsing are tested
    struct Target {
        address: String,
    }

    #[derive(Debug, Serialize, JsonSchema)]
    struct BumpOutput {
        value: i64,
    }

    struct Bump;

    impl TypedAction for Bump {
        const NAME: &'static str = "bump";
        const EFFECT: Effect = Effect::Mutating;
        const DESCRIPTION: &'static str = "Adds to a counter";
        const INVERSE: Option<&'static str> = Some("unbump");
        type Params = BumpParams;
        type Output = BumpOutput;

        fn invoke(ctx: &Context, p: BumpParams) -> Result<BumpOutput, Failure> {
            CALLS.with(|c| {
                c.borrow_mut()
                    .push(format!("bump {} {}", p.counter, ctx.attempt))
            });
            Ok(BumpOutput { value: p.amount })
        }

        fn observe(_ctx: &Context, p: BumpParams) -> Result<Observation<BumpOutput>, Failure> {
            Ok(if p.dry_run {
                Observation::NotDone
            } else {
                Observation::Done(BumpOutput {
                    value: p.amount * 10,
                })
            })
        }
    }

    struct Status;

    impl TypedAction for Status {
        const NAME: &'static str = "status";
        const EFFECT: Effect = Effect::ReadOnly;
        type Params = NoParams;
        type Output = Value;

        fn invoke(_ctx: &Context, _p: NoParams) -> Result<Value, Failure> {
            Ok(json!({"ok": true}))
        }
    }

    struct Demo;

    impl TypedPlugin for Demo {
        const NAME: &'static str = "demo";
        const VERSION: &'static str = "1.2.3";
        const DESCRIPTION: &'static str = "A demo";
        fn actions() -> Actions {
            Actions::new().add::<Bump>().add::<Status>()
        }
    }

    fn ctx() -> Context {
        Context {
            run_id: "r".into(),
            step_id: "s".into(),
            attempt: 2,
            idempotency_key: "r/s/2".into(),
        }
    }

    #[test]
    fn the_manifest_lists_each_action_with_schemas_derived_from_its_types() {
        let m = <Demo as Plugin>::manifest();
        assert_eq!((m.name.as_str(), m.version.as_str()), ("demo", "1.2.3"));
        assert_eq!(m.description, "A demo");
        let names: Vec<&str> = m.actions.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["bump", "status"]);

        let bump = &m.actions[0];
        assert_eq!(bump.effect, Effect::Mutating);
        assert_eq!(bump.inverse.as_deref(), Some("unbump"));
        assert_eq!(bump.description, "Adds to a counter");
        let p = &bump.params_schema;
        assert_eq!(p["type"], "object");
        assert_eq!(p["additionalProperties"], false, "{p:#}");
        // `dry_run` has a serde default, so it is not required.
        assert_eq!(
            p["required"],
            json!(["counter", "amount", "target"]),
            "{p:#}"
        );
        assert_eq!(p["properties"]["counter"]["type"], "string");
        assert_eq!(p["properties"]["counter"]["description"], "Which counter.");
        assert_eq!(p["properties"]["amount"]["type"], "integer");
        assert_eq!(p["properties"]["dry_run"]["type"], "boolean");
        assert!(
            p.get("$schema").is_none() && p.get("title").is_none(),
            "{p:#}"
        );
        assert_eq!(bump.output_schema["properties"]["value"]["type"], "integer");
        assert_eq!(bump.output_schema["required"], json!(["value"]));

        let status = &m.actions[1];
        assert_eq!(status.effect, Effect::ReadOnly);
        assert_eq!(status.inverse, None);
        assert_eq!(status.params_schema["type"], "object");
        assert_eq!(status.params_schema["additionalProperties"], false);
    }

    #[test]
    fn invoke_routes_by_name_parses_params_and_serializes_the_output() {
        let out = <Demo as Plugin>::invoke(
            &ctx(),
            "bump",
            json!({"counter": "c", "amount": 5, "target": {"address": "127.0.0.1:1"}}),
        )
        .unwrap();
        assert_eq!(out, json!({"value": 5}));
        assert_eq!(CALLS.with(|c| c.borrow().clone()), ["bump c 2"]);
        let out = <Demo as Plugin>::invoke(&ctx(), "status", json!({})).unwrap();
        assert_eq!(out, json!({"ok": true}));
    }

    #[test]
    fn a_dry_run_never_invokes_a_mutating_action_by_default_and_runs_a_read_only_one() {
        CALLS.with(|c| c.borrow_mut().clear());
        let plan = <Demo as Plugin>::plan(
            &ctx(),
            "bump",
            json!({"counter": "c", "amount": 5, "target": {"address": "127.0.0.1:1"}}),
        )
        .unwrap();
        assert!(!plan.checked, "{plan:?}");
        assert!(plan.would.contains("no plan mode"), "{plan:?}");
        assert!(CALLS.with(|c| c.borrow().is_empty()), "bump must not run");
        let plan = <Demo as Plugin>::plan(&ctx(), "status", json!({})).unwrap();
        assert!(
            plan.checked && plan.would.contains(r#"{"ok":true}"#),
            "{plan:?}"
        );
        assert!(<Demo as Plugin>::plan(&ctx(), "nope", json!({})).is_err());
    }

    #[test]
    fn params_that_do_not_fit_name_the_action_and_the_field() {
        let err = <Demo as Plugin>::invoke(
            &ctx(),
            "bump",
            json!({"counter": "c", "amount": "five", "target": {"address": "x"}}),
        )
        .unwrap_err();
        assert!(!err.retryable);
        assert!(
            err.message
                .starts_with("params of action `bump` do not fit at `amount`: invalid type"),
            "{}",
            err.message
        );

        let err = <Demo as Plugin>::invoke(
            &ctx(),
            "bump",
            json!({"counter": "c", "amount": 1, "target": {"adress": "x"}}),
        )
        .unwrap_err();
        assert!(
            err.message.contains("action `bump`")
                && err
                    .message
                    .contains("at `target.adress`: unknown field `adress`"),
            "{}",
            err.message
        );

        let err = <Demo as Plugin>::invoke(&ctx(), "bump", json!({"counter": "c"})).unwrap_err();
        assert!(
            err.message.contains("action `bump`") && err.message.contains("missing field `amount`"),
            "{}",
            err.message
        );

        let err = <Demo as Plugin>::invoke(&ctx(), "status", json!({"x": 1})).unwrap_err();
        assert!(err.message.contains("action `status`"), "{}", err.message);
    }

    #[test]
    fn an_unknown_action_is_a_permanent_failure_listing_the_known_ones() {
        let err = <Demo as Plugin>::invoke(&ctx(), "explode", json!({})).unwrap_err();
        assert!(!err.retryable);
        assert_eq!(
            err.message,
            "unknown action `explode`; this plugin offers: bump, status"
        );
        let err = <Demo as Plugin>::observe(&ctx(), "explode", json!({})).unwrap_err();
        assert!(err.message.starts_with("unknown action `explode`"));
    }

    #[test]
    fn observe_serializes_a_typed_observation_and_defaults_to_unknown() {
        let params = json!({"counter": "c", "amount": 3, "target": {"address": "a"}});
        let seen = <Demo as Plugin>::observe(&ctx(), "bump", params.clone()).unwrap();
        assert_eq!(seen, Observation::Done(json!({"value": 30})));
        let mut dry = params;
        dry["dry_run"] = json!(true);
        let seen = <Demo as Plugin>::observe(&ctx(), "bump", dry).unwrap();
        assert_eq!(seen, Observation::NotDone);
        let seen = <Demo as Plugin>::observe(&ctx(), "status", json!({})).unwrap();
        assert_eq!(
            seen,
            Observation::Unknown("the plugin cannot observe the effect of `status`".into())
        );
    }

    #[test]
    #[should_panic(expected = "action `bump` is added twice")]
    fn an_action_added_twice_is_refused() {
        let _ = Actions::new().add::<Bump>().add::<Bump>();
    }
}
