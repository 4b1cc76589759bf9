// Schedules with their next fire times, plugins with their actions, capabilities and
// the grants registered plans give them, and the audit log.
import { parse } from "yaml";
import { get } from "./api";
import { Badge, ErrorBox, Json, Link, time, useLoad } from "./util";

interface Schedule {
  name: string;
  spec: { plan?: string; cron?: string; timezone?: string; window?: string; overlap?: string; missed?: string };
  enabled: boolean;
  next: { due_at: number; fire_at: number | null }[];
  last_run: string | null;
  declared_by?: string;
}

export function Schedules() {
  const [data, error] = useLoad(() => get<{ schedules: Schedule[] }>("/v1/schedules"), []);
  return (
    <section>
      <h1>Schedules</h1>
      <ErrorBox error={error} />
      {data && data.schedules.length === 0 && <p class="muted">No schedules.</p>}
      {data && data.schedules.length > 0 && (
        <table class="list" data-testid="schedules">
          <thead>
            <tr>
              <th>Schedule</th>
              <th>Plan</th>
              <th>Cron</th>
              <th>Next fire times</th>
              <th>Last run</th>
            </tr>
          </thead>
          <tbody>
            {data.schedules.map((s) => (
              <tr>
                <td>
                  <b>{s.name}</b> {s.enabled ? "" : <Badge status="paused" />}
                  {s.declared_by && <div class="muted">declared by {s.declared_by}</div>}
                </td>
                <td>{s.spec.plan}</td>
                <td>
                  <code>{s.spec.cron}</code>
                  <div class="muted">
                    {s.spec.timezone ?? "UTC"}
                    {s.spec.window ? ` · window ${s.spec.window}` : ""}
                  </div>
                </td>
                <td>
                  {s.next.length === 0 && <span class="muted">none (paused)</span>}
                  {s.next.map((n) => (
                    <div class="mono">
                      {time(n.fire_at ?? n.due_at)}
                      {n.fire_at == null && <span class="muted"> (outside window: skipped)</span>}
                    </div>
                  ))}
                </td>
                <td>{s.last_run ? <Link href={`/runs/${s.last_run}`} class="mono">{s.last_run}</Link> : "—"}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}

interface PluginItem {
  name: string;
  version: string | null;
  description: string | null;
  actions: string[];
  signature: string;
  error?: string;
}

export function Plugins() {
  const [data, error] = useLoad(() => get<{ plugins: PluginItem[] }>("/v1/plugins"), []);
  return (
    <section>
      <h1>Plugins</h1>
      <ErrorBox error={error} />
      {data && data.plugins.length === 0 && <p class="muted">No plugins installed.</p>}
      {data?.plugins.map((p) => (
        <div class="card" data-plugin={p.name}>
          <h2>
            <Link href={`/plugins/${encodeURIComponent(p.name)}`}>{p.name}</Link> <span class="muted">{p.version}</span>
          </h2>
          {p.description && <p>{p.description}</p>}
          {p.error && <pre class="error-text">{p.error}</pre>}
          <p class="muted">{p.signature}</p>
          <div class="chips">
            {p.actions.map((a) => (
              <span class="chip">{a}</span>
            ))}
          </div>
        </div>
      ))}
    </section>
  );
}

interface PluginDoc {
  name: string;
  version: string;
  description: string;
  sha256: string;
  signature: string;
  actions: { name: string; description: string; effect: string; inverse: string | null; params_schema: unknown }[];
  capabilities: { capability: string; interface: string }[];
}

/** The grants each registered plan's latest version gives a plugin. */
async function grants(plugin: string): Promise<{ plan: string; version: number; grants: unknown }[]> {
  const { plans } = await get<{ plans: { name: string }[] }>("/v1/plans");
  const out = [];
  for (const p of plans) {
    const v = await get<{ version: number; source: string }>(`/v1/plans/${encodeURIComponent(p.name)}/versions/latest`);
    try {
      const doc = parse(v.source) as { plugins?: Record<string, { use?: string; grants?: unknown }> };
      for (const [alias, use] of Object.entries(doc.plugins ?? {}))
        if ((use.use ?? alias).split("@")[0] === plugin) out.push({ plan: p.name, version: v.version, grants: use.grants ?? {} });
    } catch {
      // A plan the server accepted but this parser does not: nothing to show for it.
    }
  }
  return out;
}

export function Plugin(props: { name: string }) {
  const [doc, error] = useLoad(() => get<PluginDoc>(`/v1/plugins/${encodeURIComponent(props.name)}`), [props.name]);
  const [given, grantsError] = useLoad(() => grants(props.name), [props.name]);
  return (
    <section>
      <h1>
        {props.name} {doc && <span class="muted">{doc.version}</span>}
      </h1>
      <ErrorBox error={error ?? grantsError} />
      {doc && (
        <>
          <p>{doc.description}</p>
          <p class="muted">
            {doc.signature} · sha256 <span class="mono">{doc.sha256.slice(0, 16)}…</span>
          </p>
          <h2>Actions</h2>
          <table class="list">
            <thead>
              <tr>
                <th>Action</th>
                <th>Effect</th>
                <th>Undone by</th>
                <th>What it does</th>
              </tr>
            </thead>
            <tbody>
              {doc.actions.map((a) => (
                <tr>
                  <td class="mono nowrap">{a.name}</td>
                  <td class="nowrap">
                    <span class={`effect ${a.effect}`}>{a.effect.replace("_", " ")}</span>
                  </td>
                  <td class="mono nowrap">{a.inverse ?? "—"}</td>
                  <td>{a.description}</td>
                </tr>
              ))}
            </tbody>
          </table>
          <h2>Asks for</h2>
          <div class="chips">
            {doc.capabilities.length === 0 && <span class="muted">nothing beyond the WASI basics</span>}
            {[...new Set(doc.capabilities.map((c) => c.capability))].map((cap) => (
              <span class="chip" title={doc.capabilities.filter((c) => c.capability === cap).map((c) => c.interface).join("\n")}>
                {cap}
              </span>
            ))}
          </div>
          <h2>Grants by registered plans</h2>
          <p class="muted">The host grants only what a plan's <code>plugins.NAME.grants</code> allow.</p>
          {given && given.length === 0 && <p class="muted">No registered plan uses it.</p>}
          {given?.map((g) => (
            <div class="card">
              <Link href={`/plans/${encodeURIComponent(g.plan)}`}>
                {g.plan}@{g.version}
              </Link>
              <Json value={g.grants} />
            </div>
          ))}
        </>
      )}
    </section>
  );
}

interface AuditEntry {
  id: number;
  at: number;
  token: string | null;
  role: string | null;
  method: string;
  path: string;
  run_id: string | null;
  step_id: string | null;
  status: number;
}

export function Audit() {
  const [data, error] = useLoad(() => get<{ entries: AuditEntry[] }>("/v1/audit?limit=500"), []);
  return (
    <section>
      <h1>Audit log</h1>
      <ErrorBox error={error} />
      {data && (
        <table class="list" data-testid="audit">
          <thead>
            <tr>
              <th>When</th>
              <th>Token</th>
              <th>Call</th>
              <th>Run</th>
              <th>Status</th>
            </tr>
          </thead>
          <tbody>
            {data.entries.map((e) => (
              <tr>
                <td class="mono">{time(e.at)}</td>
                <td>
                  {e.token ?? <span class="muted">no token</span>} {e.role && <span class="muted">({e.role})</span>}
                </td>
                <td class="mono">
                  {e.method} {e.path}
                </td>
                <td>{e.run_id ? <Link href={`/runs/${e.run_id}`} class="mono">{e.run_id}</Link> : ""}</td>
                <td class={e.status >= 400 ? "bad" : ""}>{e.status}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}
