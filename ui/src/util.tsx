// Small pieces every page uses: navigation inside /ui/, times, state badges, JSON.
import type { ComponentChildren } from "preact";
import { useEffect, useState } from "preact/hooks";
import { label } from "./dag";

export const BASE = "/ui";

/** Goes to `path` (inside the app: "/runs/ID") without reloading. */
export function navigate(path: string) {
  history.pushState(null, "", BASE + path);
  dispatchEvent(new PopStateEvent("popstate"));
}

/** The app's current path and query ("/runs/ID", "?status=failed"). */
export function useLocation(): { path: string; query: URLSearchParams } {
  const read = () => ({
    path: location.pathname.replace(/^\/ui/, "") || "/",
    query: new URLSearchParams(location.search),
  });
  const [loc, setLoc] = useState(read);
  useEffect(() => {
    const f = () => setLoc(read());
    addEventListener("popstate", f);
    return () => removeEventListener("popstate", f);
  }, []);
  return loc;
}

export function Link(props: { href: string; class?: string; children: ComponentChildren }) {
  return (
    <a
      href={BASE + props.href}
      class={props.class}
      onClick={(e) => {
        if (e.ctrlKey || e.metaKey || e.shiftKey || e.button !== 0) return;
        e.preventDefault();
        navigate(props.href);
      }}
    >
      {props.children}
    </a>
  );
}

const pad = (n: number) => String(n).padStart(2, "0");

/** A Unix-ms time in the browser's zone: 2026-11-23 22:40:12. */
export function time(ms: number | null | undefined): string {
  if (!ms) return "—";
  const d = new Date(ms);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

export function duration(ms: number | null | undefined): string {
  if (ms == null || ms < 0) return "—";
  if (ms < 1000) return `${ms} ms`;
  const s = Math.round(ms / 1000);
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${pad(s % 60)}s`;
  return `${Math.floor(m / 60)}h ${pad(m % 60)}m`;
}

/** Re-renders every `ms`, for durations of things still going. */
export function useTick(ms: number) {
  const [, set] = useState(0);
  useEffect(() => {
    const t = setInterval(() => set((n) => n + 1), ms);
    return () => clearInterval(t);
  }, [ms]);
}

export function Badge(props: { status: string; big?: boolean }) {
  return (
    <span class={`badge st-${props.status}${props.big ? " big" : ""}`} data-status={props.status}>
      {label(props.status)}
    </span>
  );
}

export function Json(props: { value: unknown }) {
  return <pre class="json">{JSON.stringify(props.value, null, 2)}</pre>;
}

export function ErrorBox(props: { error: unknown }) {
  if (!props.error) return null;
  const msg = props.error instanceof Error ? props.error.message : String(props.error);
  return (
    <div class="error-box" role="alert">
      {msg}
    </div>
  );
}

/** Loads `f` now and whenever `deps` change: [value, error, reload]. */
export function useLoad<T>(f: () => Promise<T>, deps: unknown[]): [T | undefined, unknown, () => void] {
  const [value, setValue] = useState<T>();
  const [error, setError] = useState<unknown>();
  const [n, setN] = useState(0);
  useEffect(() => {
    let live = true;
    f().then(
      (v) => live && (setValue(v), setError(undefined)),
      (e) => live && setError(e),
    );
    return () => {
      live = false;
    };
  }, [...deps, n]);
  return [value, error, () => setN((x) => x + 1)];
}
