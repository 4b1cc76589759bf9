// The runs list: newest first, filtered by state, plan and time, refreshed while open.
import { useEffect, useState } from "preact/hooks";
import { get } from "./api";
import { Badge, ErrorBox, Link, duration, navigate, time, useLoad } from "./util";

export interface RunSummary {
  id: string;
  plan_name: string;
  plan_version: number | null;
  status: string;
  reason: string | null;
  submitted_by: string | null;
  created_at: number;
  updated_at: number;
}

const STATUSES = ["running", "rolling_back", "held", "succeeded", "failed", "rolled_back", "cancelled"];
export const TERMINAL = ["succeeded", "failed", "rolled_back", "cancelled"];

export function Runs(props: { query: URLSearchParams }) {
  const status = props.query.get("status") ?? "";
  const plan = props.query.get("plan") ?? "";
  const since = props.query.get("since") ?? "";
  const [planInput, setPlanInput] = useState(plan);
  const qs = new URLSearchParams();
  if (status) qs.set("status", status);
  if (plan) qs.set("plan", plan);
  if (since) qs.set("since", new Date(since).toISOString());
  qs.set("limit", "200");
  const [data, error, reload] = useLoad(() => get<{ runs: RunSummary[] }>(`/v1/runs?${qs}`), [qs.toString()]);
  useEffect(() => {
    const t = setInterval(reload, 3000);
    return () => clearInterval(t);
  }, [qs.toString()]);

  const setFilter = (k: string, v: string) => {
    const q = new URLSearchParams(props.query);
    if (v) q.set(k, v);
    else q.delete(k);
    const s = q.toString();
    navigate(`/runs${s ? `?${s}` : ""}`);
  };

  return (
    <section>
      <h1>Runs</h1>
      <form
        class="filters"
        onSubmit={(e) => {
          e.preventDefault();
          setFilter("plan", planInput.trim());
        }}
      >
        <label>
          State
          <select name="status" value={status} onChange={(e) => setFilter("status", (e.target as HTMLSelectElement).value)}>
            <option value="">any</option>
            {STATUSES.map((s) => (
              <option value={s}>{s}</option>
            ))}
          </select>
        </label>
        <label>
          Plan
          <input name="plan" value={planInput} placeholder="plan name" onInput={(e) => setPlanInput((e.target as HTMLInputElement).value)} />
        </label>
        <label>
          Since
          <input type="datetime-local" name="since" value={since} onChange={(e) => setFilter("since", (e.target as HTMLInputElement).value)} />
        </label>
        <button type="submit">Filter</button>
      </form>
      <ErrorBox error={error} />
      {data && data.runs.length === 0 && <p class="muted">No runs match.</p>}
      {data && data.runs.length > 0 && (
        <table class="list" data-testid="runs">
          <thead>
            <tr>
              <th>State</th>
              <th>Plan</th>
              <th>Run</th>
              <th>Started</th>
              <th>Duration</th>
              <th>By</th>
            </tr>
          </thead>
          <tbody>
            {data.runs.map((r) => (
              <tr data-run={r.id}>
                <td>
                  <Badge status={r.status} />
                </td>
                <td>
                  {r.plan_name}
                  {r.plan_version != null && <span class="muted">@{r.plan_version}</span>}
                </td>
                <td>
                  <Link href={`/runs/${r.id}`} class="mono">
                    {r.id}
                  </Link>
                </td>
                <td>{time(r.created_at)}</td>
                <td>{duration((TERMINAL.includes(r.status) ? r.updated_at : Date.now()) - r.created_at)}</td>
                <td>{r.submitted_by ?? "—"}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}
