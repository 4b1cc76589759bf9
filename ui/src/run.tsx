// A run: its plan's graph with every step colored by state, live through the run's
// event stream; what waits for an operator and what failed at the top; each step's
// attempts, output and error; the event log; and the commands the caller's role allows.
import { useEffect, useRef, useState } from "preact/hooks";
import { can, follow, get, post, type Me, type RunEvent } from "./api";
import { Dag, type DagStep } from "./dag";
import { TERMINAL, type RunSummary } from "./runs";
import { Badge, ErrorBox, Json, Link, duration, time, useTick } from "./util";

interface StepState {
  id: string;
  status: string;
  attempt: number;
  undo_attempt: number;
  until: number | null;
  output: unknown;
  error: string | null;
  started_at: number | null;
  finished_at: number | null;
}

interface Attempt {
  step: string;
  attempt: number;
  undo: boolean;
  status: string;
  params: unknown;
  output: unknown;
  error: string | null;
  started_at: number;
  finished_at: number | null;
}

interface PlanStep {
  id: string;
  needs?: string[];
  uses?: string;
  approval?: { prompt?: string };
}

interface Detail {
  run: RunSummary & { owner: string | null };
  params: Record<string, unknown>;
  steps: StepState[];
  attempts: Attempt[];
  events: RunEvent[];
  plan: { metadata?: { name?: string; description?: string }; steps?: PlanStep[] };
}

export function Run(props: { id: string; me: Me }) {
  const [detail, setDetail] = useState<Detail>();
  const [error, setError] = useState<unknown>();
  const [live, setLive] = useState(false);
  const [selected, setSelected] = useState<string | null>(null);
  // A new stream after a command that may wake a stopped run (retry or skip of a held step).
  const [gen, setGen] = useState(0);
  const pending = useRef<number | null>(null);
  useTick(1000);

  const load = async () => {
    try {
      const d = await get<Detail>(`/v1/runs/${encodeURIComponent(props.id)}`);
      setDetail(d);
      setError(undefined);
      return d;
    } catch (e) {
      setError(e);
      return undefined;
    }
  };

  useEffect(() => {
    let stop = () => {};
    let gone = false;
    load().then((d) => {
      if (!d || gone) return;
      const last = d.events.reduce((m, e) => Math.max(m, e.seq), 0);
      setLive(true);
      stop = follow(
        props.id,
        last,
        () => {
          // Events come in bursts: one read of the run per burst.
          if (pending.current == null)
            pending.current = window.setTimeout(() => {
              pending.current = null;
              load();
            }, 80);
        },
        () => {
          setLive(false);
          load();
        },
      );
    });
    return () => {
      gone = true;
      stop();
      setLive(false);
    };
  }, [props.id, gen]);

  // A stopped (held) run goes on when someone retries or skips, maybe elsewhere: look
  // now and then, and follow its stream again once it runs.
  const status = detail?.run.status;
  useEffect(() => {
    if (live || !status || TERMINAL.includes(status)) return;
    const t = setInterval(async () => {
      const d = await load();
      if (d && d.run.status !== "held") setGen((g) => g + 1);
    }, 3000);
    return () => clearInterval(t);
  }, [live, status]);

  if (!detail) return error ? <ErrorBox error={error} /> : <div class="loading">loading run…</div>;

  const { run } = detail;
  const ended = TERMINAL.includes(run.status);
  const planSteps = detail.plan.steps ?? [];
  const states = new Map(detail.steps.map((s) => [s.id, s]));
  const dagSteps: DagStep[] = planSteps.map((p) => {
    const st = states.get(p.id);
    const note =
      st?.status === "running" && st.attempt > 1
        ? `attempt ${st.attempt}`
        : st?.status === "backoff"
          ? `retry ${st.attempt + 1}`
          : undefined;
    return { id: p.id, needs: p.needs ?? [], kind: p.uses ?? (p.approval ? "approval" : "step"), status: st?.status ?? "pending", note };
  });
  const waiting = detail.steps.filter((s) => s.status === "approval");
  const held = detail.steps.filter((s) => s.status === "held");
  const failed = detail.steps.filter((s) => ["failed", "backoff", "undo_backoff"].includes(s.status) && s.error);
  const end = ended ? run.updated_at : Date.now();

  const command = async (path: string, body?: unknown) => {
    await post(`/v1/runs/${encodeURIComponent(props.id)}${path}`, body ?? {});
    await load();
    setGen((g) => g + 1);
  };

  return (
    <section class="run" data-testid="run" data-status={run.status}>
      <div class="run-head">
        <Badge status={run.status} big />
        <div>
          <h1>
            {run.plan_name}
            {run.plan_version != null && (
              <Link href={`/plans/${encodeURIComponent(run.plan_name)}`} class="muted">
                @{run.plan_version}
              </Link>
            )}
          </h1>
          <div class="facts">
            <span class="mono">{run.id}</span>
            <span>started {time(run.created_at)}</span>
            <span>{ended ? "took" : "running for"} {duration(end - run.created_at)}</span>
            {run.submitted_by && <span>by {run.submitted_by}</span>}
            <span class={`live ${live ? "on" : ""}`} data-testid="live">
              {live ? "● live" : ended ? "ended" : run.status === "held" ? "○ stopped until an operator acts" : "○ reconnecting…"}
            </span>
          </div>
        </div>
        <div class="spacer" />
        {!ended && can(props.me, "operator") && (
          <ConfirmButton class="danger" label="Cancel run" confirm="Cancel this run? Completed steps are undone." onGo={() => command("/cancel")} />
        )}
      </div>
      {run.reason && (
        <div class={`reason ${run.status === "succeeded" ? "" : "bad"}`} data-testid="reason">
          {run.reason}
        </div>
      )}
      <ErrorBox error={error} />

      {waiting.map((s) => (
        <ApprovalBanner key={s.id} run={detail} step={s} me={props.me} onDecide={(verb, comment) => command(`/steps/${encodeURIComponent(s.id)}/${verb}`, { comment })} />
      ))}
      {held.map((s) => (
        <div class="callout held" data-testid={`held-${s.id}`}>
          <h2>
            Held at <span class="mono">{s.id}</span>: waiting for an operator
          </h2>
          {s.error && <pre class="error-text">{s.error}</pre>}
          {can(props.me, "operator") ? (
            <div class="actions">
              <CmdButton label="Retry" onGo={() => command(`/steps/${encodeURIComponent(s.id)}/retry`)} />
              <CmdButton label="Skip" class="ghost" onGo={() => command(`/steps/${encodeURIComponent(s.id)}/skip`)} />
            </div>
          ) : (
            <p class="muted">Retry or skip needs role operator; you are {props.me.role}.</p>
          )}
        </div>
      ))}
      {failed.length > 0 && (
        <div class="callout failed" data-testid="failures">
          <h2>What failed</h2>
          {failed.map((s) => (
            <div class="failure" data-step={s.id}>
              <span class="mono">{s.id}</span>
              <Badge status={s.status} />
              <pre class="error-text">{s.error ?? "(no error text)"}</pre>
            </div>
          ))}
        </div>
      )}

      <h2>Graph</h2>
      <Dag steps={dagSteps} selected={selected} onSelect={(id) => {
        setSelected(id);
        document.getElementById(`step-${id}`)?.scrollIntoView({ behavior: "smooth", block: "start" });
      }} />

      <h2>Steps</h2>
      {planSteps.map((p) => (
        <StepCard
          key={p.id}
          plan={p}
          state={states.get(p.id)}
          attempts={detail.attempts.filter((a) => a.step === p.id)}
          events={detail.events.filter((e) => e.step === p.id)}
          selected={selected === p.id}
        />
      ))}

      {Object.keys(detail.params ?? {}).length > 0 && (
        <>
          <h2>Params</h2>
          <Json value={detail.params} />
        </>
      )}

      <h2>Log</h2>
      <table class="list events" data-testid="events">
        <tbody>
          {detail.events.map((e) => (
            <tr class={`ev-${e.kind}`}>
              <td class="mono muted">{e.seq}</td>
              <td class="mono">{time(e.at)}</td>
              <td>{e.kind.replace(/_/g, " ")}</td>
              <td class="mono">{e.step ?? ""}</td>
              <td class="ev-data">{summary(e)}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </section>
  );
}

function ApprovalBanner(props: { run: Detail; step: StepState; me: Me; onDecide: (verb: "approve" | "reject", comment: string) => Promise<void> }) {
  const [comment, setComment] = useState("");
  const asked = [...props.run.events].reverse().find((e) => e.kind === "approval_requested" && e.step === props.step.id);
  const prompt = asked?.data?.prompt as string | undefined;
  const deadline = asked?.data?.deadline as number | undefined;
  const self = props.run.run.submitted_by === props.me.name;
  return (
    <div class="callout approval" data-testid={`approval-${props.step.id}`}>
      <h2>
        Waiting for approval: <span class="mono">{props.step.id}</span>
      </h2>
      {prompt && <p class="prompt">{prompt}</p>}
      {deadline && <p class="muted">Decided by itself at {time(deadline)} (in {duration(deadline - Date.now())}).</p>}
      {can(props.me, "approver") ? (
        <>
          {self && <p class="muted">You submitted this run: unless the plan allows it, another approver must decide.</p>}
          <input class="comment" placeholder="comment (kept in the run's log)" value={comment} onInput={(e) => setComment((e.target as HTMLInputElement).value)} />
          <div class="actions">
            <CmdButton label="Approve" class="ok" onGo={() => props.onDecide("approve", comment)} />
            <CmdButton label="Reject" class="danger" onGo={() => props.onDecide("reject", comment)} />
          </div>
        </>
      ) : (
        <p class="muted">Approving needs role approver; you are {props.me.role}.</p>
      )}
    </div>
  );
}

function StepCard(props: { plan: PlanStep; state?: StepState; attempts: Attempt[]; events: RunEvent[]; selected: boolean }) {
  const st = props.state;
  const status = st?.status ?? "pending";
  const kind = props.plan.uses ?? (props.plan.approval ? "approval" : "step");
  const p = lastProgress(props.events, props.plan.id)?.data;
  return (
    <div id={`step-${props.plan.id}`} class={`step-card st-${status}${props.selected ? " selected" : ""}`} data-step={props.plan.id} data-status={status}>
      <div class="step-head">
        <Badge status={status} />
        <span class="mono step-id">{props.plan.id}</span>
        <span class="muted">{kind}</span>
        {(props.plan.needs ?? []).length > 0 && <span class="muted">after {props.plan.needs!.join(", ")}</span>}
        <div class="spacer" />
        {st?.started_at && (
          <span class="muted">
            {time(st.started_at)} · {duration((st.finished_at ?? Date.now()) - st.started_at)}
          </span>
        )}
      </div>
      {status === "running" && p && (
        <div class="progress">
          {p.total > 0 && <progress max={p.total} value={p.done} />}
          <span>
            {p.total > 0 ? `${p.done}/${p.total}` : p.done > 0 ? p.done : ""} {p.message}
          </span>
        </div>
      )}
      {st?.error && <pre class="error-text">{st.error}</pre>}
      {st?.output != null && (
        <details open={status === "succeeded" && JSON.stringify(st.output).length < 200}>
          <summary>output</summary>
          <Json value={st.output} />
        </details>
      )}
      {props.attempts.length > 0 && (
        <table class="list attempts">
          <thead>
            <tr>
              <th>Attempt</th>
              <th>State</th>
              <th>Started</th>
              <th>Took</th>
              <th>Error</th>
            </tr>
          </thead>
          <tbody>
            {props.attempts.map((a) => (
              <tr>
                <td>
                  {a.undo ? "undo " : ""}#{a.attempt}
                </td>
                <td>
                  <Badge status={a.status} />
                </td>
                <td>{time(a.started_at)}</td>
                <td>{a.finished_at ? duration(a.finished_at - a.started_at) : "…"}</td>
                <td class="error-cell">{a.error ?? ""}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {props.events.length > 0 && (
        <details class="step-log">
          <summary>log ({props.events.length} events)</summary>
          <table class="list events">
            <tbody>
              {props.events.map((e) => (
                <tr class={`ev-${e.kind}`}>
                  <td class="mono">{time(e.at)}</td>
                  <td>{e.kind.replace(/_/g, " ")}</td>
                  <td class="ev-data">{summary(e)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </details>
      )}
    </div>
  );
}

function lastProgress(events: RunEvent[], step: string): RunEvent | undefined {
  for (let i = events.length - 1; i >= 0; i--) if (events[i].kind === "step_progress" && events[i].step === step) return events[i];
  return undefined;
}

/** One line of an event's data, for the log. */
function summary(e: RunEvent): string {
  const d = e.data ?? {};
  switch (e.kind) {
    case "run_status":
      return [d.status, d.reason].filter(Boolean).join(": ");
    case "attempt_failed":
      return d.error ?? "";
    case "approval_requested":
      return d.prompt ?? "";
    case "approval_decided":
      return `${d.approved ? "approved" : "rejected"}${d.by ? ` by ${d.by}` : ""}${d.comment ? `: ${d.comment}` : ""}`;
    case "step_progress":
      return `${d.done}${d.total ? `/${d.total}` : ""} ${d.message ?? ""}`;
    default: {
      const { step: _s, ...rest } = d;
      const text = JSON.stringify(rest);
      return text === "{}" ? "" : text.length > 160 ? `${text.slice(0, 159)}…` : text;
    }
  }
}

function CmdButton(props: { label: string; class?: string; onGo: () => Promise<void> }) {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>();
  return (
    <span class="cmd">
      <button
        class={props.class}
        disabled={busy}
        onClick={async () => {
          setBusy(true);
          setError(undefined);
          try {
            await props.onGo();
          } catch (e) {
            setError(e);
          } finally {
            setBusy(false);
          }
        }}
      >
        {props.label}
      </button>
      <ErrorBox error={error} />
    </span>
  );
}

function ConfirmButton(props: { label: string; confirm: string; class?: string; onGo: () => Promise<void> }) {
  return <CmdButton label={props.label} class={props.class} onGo={async () => (window.confirm(props.confirm) ? props.onGo() : undefined)} />;
}
