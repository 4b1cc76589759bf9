// Registered plans: the list, and one plan's graph, source and params form to start a run.
import { useState } from "preact/hooks";
import { parse } from "yaml";
import { can, get, post, type Me } from "./api";
import { Dag } from "./dag";
import { ErrorBox, Link, navigate, time, useLoad } from "./util";

interface PlanSummary {
  name: string;
  latest: number;
  versions: number;
  updated_at: number;
}

export function Plans() {
  const [data, error] = useLoad(() => get<{ plans: PlanSummary[] }>("/v1/plans"), []);
  return (
    <section>
      <h1>Plans</h1>
      <ErrorBox error={error} />
      {data && data.plans.length === 0 && (
        <p class="muted">
          No registered plans. Register one with <code>medic plans register plan.yaml</code>.
        </p>
      )}
      {data && data.plans.length > 0 && (
        <table class="list" data-testid="plans">
          <thead>
            <tr>
              <th>Plan</th>
              <th>Latest</th>
              <th>Versions</th>
              <th>Updated</th>
            </tr>
          </thead>
          <tbody>
            {data.plans.map((p) => (
              <tr>
                <td>
                  <Link href={`/plans/${encodeURIComponent(p.name)}`}>{p.name}</Link>
                </td>
                <td>{p.latest}</td>
                <td>{p.versions}</td>
                <td>{time(p.updated_at)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}

interface ParamSpec {
  type?: string;
  default?: unknown;
  description?: string;
  enum?: unknown[];
}

interface PlanDoc {
  metadata?: { name?: string; description?: string };
  params?: Record<string, ParamSpec>;
  steps?: { id: string; needs?: string[]; uses?: string; approval?: unknown }[];
}

export function Plan(props: { name: string; me: Me }) {
  const base = `/v1/plans/${encodeURIComponent(props.name)}`;
  const [version, setVersion] = useState<number | null>(null);
  const [info, infoError] = useLoad(() => get<{ versions: { version: number; created_at: number }[] }>(base), [props.name]);
  const [src, srcError] = useLoad(
    () => get<{ version: number; source: string; created_at: number }>(`${base}/versions/${version ?? "latest"}`),
    [props.name, version],
  );
  let doc: PlanDoc | undefined;
  let parseError: unknown;
  try {
    doc = src ? (parse(src.source) as PlanDoc) : undefined;
  } catch (e) {
    parseError = e;
  }
  return (
    <section>
      <h1>
        {props.name}
        {src && <span class="muted">@{src.version}</span>}
      </h1>
      {doc?.metadata?.description && <p>{doc.metadata.description}</p>}
      <ErrorBox error={infoError ?? srcError ?? parseError} />
      {info && (
        <p class="versions">
          Versions:{" "}
          {info.versions.map((v) => (
            <button class={`chip ${src?.version === v.version ? "active" : ""}`} onClick={() => setVersion(v.version)} title={time(v.created_at)}>
              {v.version}
            </button>
          ))}{" "}
          <Link href={`/runs?plan=${encodeURIComponent(props.name)}`}>its runs →</Link>
        </p>
      )}
      {doc && (
        <>
          <h2>Graph</h2>
          <Dag steps={(doc.steps ?? []).map((s) => ({ id: s.id, needs: s.needs ?? [], kind: s.uses ?? (s.approval ? "approval" : "step") }))} />
          {can(props.me, "operator") && src && <StartForm name={props.name} version={src.version} params={doc.params ?? {}} />}
          <h2>Source</h2>
          <pre class="source">{src?.source}</pre>
        </>
      )}
    </section>
  );
}

function StartForm(props: { name: string; version: number; params: Record<string, ParamSpec> }) {
  const [values, setValues] = useState<Record<string, string>>({});
  const [error, setError] = useState<unknown>();
  const [busy, setBusy] = useState(false);
  const entries = Object.entries(props.params);
  return (
    <form
      class="start"
      data-testid="start-form"
      onSubmit={async (e) => {
        e.preventDefault();
        setBusy(true);
        setError(undefined);
        try {
          const params: Record<string, unknown> = {};
          for (const [k, spec] of entries) {
            const v = values[k];
            if (v === undefined || v === "") continue;
            params[k] = convert(k, spec, v);
          }
          const r = await post<{ id: string }>("/v1/runs", { plan_name: props.name, plan_version: props.version, params });
          navigate(`/runs/${r.id}`);
        } catch (err) {
          setError(err);
        } finally {
          setBusy(false);
        }
      }}
    >
      <h2>Start a run</h2>
      {entries.length === 0 && <p class="muted">This plan takes no params.</p>}
      {entries.map(([k, spec]) => (
        <label>
          <span class="mono">{k}</span>
          <span class="muted">
            {spec.type ?? "any"}
            {spec.default !== undefined ? `, default ${JSON.stringify(spec.default)}` : ", required"}
          </span>
          {spec.type === "boolean" ? (
            <select name={k} value={values[k] ?? ""} onChange={(e) => setValues({ ...values, [k]: (e.target as HTMLSelectElement).value })}>
              <option value="">{spec.default !== undefined ? `default (${spec.default})` : "choose"}</option>
              <option value="true">true</option>
              <option value="false">false</option>
            </select>
          ) : (
            <input
              name={k}
              value={values[k] ?? ""}
              placeholder={spec.default !== undefined ? String(typeof spec.default === "object" ? JSON.stringify(spec.default) : spec.default) : ""}
              onInput={(e) => setValues({ ...values, [k]: (e.target as HTMLInputElement).value })}
            />
          )}
          {spec.description && <span class="muted">{spec.description}</span>}
        </label>
      ))}
      <button type="submit" disabled={busy}>
        Start run
      </button>
      <ErrorBox error={error} />
    </form>
  );
}

/** A form field's text as the JSON value the param's type asks for; the server checks it. */
function convert(name: string, spec: ParamSpec, v: string): unknown {
  switch (spec.type) {
    case "integer":
    case "number": {
      const n = Number(v);
      if (Number.isNaN(n)) throw new Error(`param ${name}: \`${v}\` is not a number`);
      return n;
    }
    case "boolean":
      return v === "true";
    case "object":
    case "array":
      try {
        return JSON.parse(v);
      } catch {
        throw new Error(`param ${name}: give ${spec.type === "array" ? "an array" : "an object"} as JSON`);
      }
    default:
      return v;
  }
}
