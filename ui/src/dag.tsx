// A plan's steps drawn as a graph: dagre lays it out (left to right, along `needs`),
// SVG draws it, each step colored by its state in the run.
import dagre from "@dagrejs/dagre";
import { useMemo } from "preact/hooks";

export interface DagStep {
  id: string;
  needs: string[];
  /** `probe/sleep`, or `approval`. */
  kind: string;
  /** The step's state in a run (none: a plan's graph). */
  status?: string;
  /** A short second line: the attempt, or why it waits. */
  note?: string;
}

const NODE_W = 190;
const NODE_H = 64;

export function Dag(props: {
  steps: DagStep[];
  selected?: string | null;
  onSelect?: (id: string) => void;
}) {
  const layout = useMemo(() => {
    const g = new dagre.graphlib.Graph();
    g.setGraph({ rankdir: "LR", nodesep: 24, ranksep: 56, marginx: 12, marginy: 12 });
    g.setDefaultEdgeLabel(() => ({}));
    for (const s of props.steps) g.setNode(s.id, { width: NODE_W, height: NODE_H });
    for (const s of props.steps)
      for (const n of s.needs) if (g.hasNode(n)) g.setEdge(n, s.id);
    dagre.layout(g);
    const graph = g.graph();
    return {
      width: (graph.width ?? 0) + 2,
      height: (graph.height ?? 0) + 2,
      nodes: new Map(props.steps.map((s) => [s.id, g.node(s.id)])),
      edges: g.edges().map((e) => ({ from: e.v, to: e.w, points: g.edge(e).points })),
    };
    // The layout depends only on the graph's shape, not on the states.
  }, [props.steps.map((s) => `${s.id}<${s.needs.join(",")}`).join(";")]);

  const byId = new Map(props.steps.map((s) => [s.id, s]));
  return (
    <div class="dag-wrap">
      <svg
        class="dag"
        width={layout.width}
        height={layout.height}
        viewBox={`0 0 ${layout.width} ${layout.height}`}
        role="img"
        aria-label="the plan's steps and their dependencies"
      >
        <defs>
          <marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse">
            <path d="M 0 0 L 10 5 L 0 10 z" class="dag-arrow" />
          </marker>
        </defs>
        {layout.edges.map((e) => {
          const to = byId.get(e.to);
          const done = to?.status && to.status !== "pending";
          return (
            <path
              key={`${e.from}->${e.to}`}
              class={`dag-edge${done ? " reached" : ""}`}
              d={e.points.map((p: { x: number; y: number }, i: number) => `${i ? "L" : "M"}${p.x},${p.y}`).join(" ")}
              marker-end="url(#arrow)"
            />
          );
        })}
        {props.steps.map((s) => {
          const n = layout.nodes.get(s.id);
          if (!n) return null;
          const x = n.x - NODE_W / 2;
          const y = n.y - NODE_H / 2;
          const status = s.status ?? "plan";
          return (
            <g
              key={s.id}
              class={`dag-node st-${status}${props.selected === s.id ? " selected" : ""}`}
              data-step={s.id}
              data-status={status}
              transform={`translate(${x},${y})`}
              onClick={() => props.onSelect?.(s.id)}
            >
              <title>{`${s.id}: ${s.status ?? s.kind}`}</title>
              <rect width={NODE_W} height={NODE_H} rx="10" />
              <text x="12" y="24" class="dag-id">
                {clip(s.id, 20)}
              </text>
              <text x="12" y="46" class="dag-sub">
                {clip(s.status ? `${label(s.status)}${s.note ? ` · ${s.note}` : ""}` : s.kind, 26)}
              </text>
            </g>
          );
        })}
      </svg>
    </div>
  );
}

function clip(s: string, n: number) {
  return s.length > n ? `${s.slice(0, n - 1)}…` : s;
}

/** How a state reads on screen. */
export function label(status: string): string {
  switch (status) {
    case "approval":
      return "waiting for approval";
    case "not_run":
      return "not run";
    case "rolling_back":
      return "rolling back";
    case "rolled_back":
      return "rolled back";
    case "undo_backoff":
      return "undo backoff";
    default:
      return status;
  }
}
