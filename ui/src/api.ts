// The REST API of `medic serve`, as the UI uses it: the bearer token kept for the
// browser session, problem+json errors turned into readable messages, and a run's
// event stream read over fetch (EventSource cannot send an Authorization header).
import { createParser, type EventSourceMessage } from "eventsource-parser";

const TOKEN_KEY = "medic.token";

export function token(): string | null {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function setToken(t: string | null) {
  if (t) sessionStorage.setItem(TOKEN_KEY, t);
  else sessionStorage.removeItem(TOKEN_KEY);
}

/** A refused or failed call, with the problem document's words. */
export class ApiError extends Error {
  constructor(
    public status: number,
    message: string,
    public problem?: Problem,
  ) {
    super(message);
  }
}

export interface Problem {
  title?: string;
  status?: number;
  detail?: string;
  errors?: { path: string; line?: number; column?: number; message: string }[];
  required_role?: string;
}

/** Called when the server says the token is missing or no longer valid. */
let onUnauthorized: (why: string) => void = () => {};
export function whenUnauthorized(f: (why: string) => void) {
  onUnauthorized = f;
}

function headers(extra?: Record<string, string>): Record<string, string> {
  const h: Record<string, string> = { ...extra };
  const t = token();
  if (t) h["Authorization"] = `Bearer ${t}`;
  return h;
}

async function problemOf(resp: Response): Promise<ApiError> {
  let problem: Problem | undefined;
  try {
    problem = await resp.json();
  } catch {
    problem = undefined;
  }
  const errors = (problem?.errors ?? [])
    .map((e) => `${e.path}${e.line ? ` (${e.line}:${e.column})` : ""}: ${e.message}`)
    .join("\n");
  const msg =
    `${resp.status} ${problem?.title ?? resp.statusText}` +
    (problem?.detail ? `: ${problem.detail}` : "") +
    (errors ? `\n${errors}` : "");
  return new ApiError(resp.status, msg, problem);
}

export async function call<T>(method: string, path: string, body?: unknown): Promise<T> {
  const init: RequestInit = { method, headers: headers() };
  if (body !== undefined) {
    init.headers = headers({ "content-type": "application/json" });
    init.body = JSON.stringify(body);
  }
  let resp: Response;
  try {
    resp = await fetch(path, init);
  } catch (e) {
    throw new ApiError(0, `medic does not answer (${method} ${path}): ${e}`);
  }
  if (!resp.ok) {
    const err = await problemOf(resp);
    if (resp.status === 401) onUnauthorized(err.message);
    throw err;
  }
  if (resp.status === 202 || resp.status === 204) return undefined as T;
  const text = await resp.text();
  return (text ? JSON.parse(text) : undefined) as T;
}

export const get = <T>(path: string) => call<T>("GET", path);
export const post = <T>(path: string, body?: unknown) => call<T>("POST", path, body);

/** What `GET /v1/whoami` says of the caller. */
export interface Me {
  name: string;
  role: string;
  roles: string[];
}

export const can = (me: Me | null, role: string) => !!me && me.roles.includes(role);

export interface RunEvent {
  seq: number;
  at: number;
  kind: string;
  step: string | null;
  data: any;
}

/**
 * Follows `GET /v1/runs/{id}/events` after `after`, calling `onEvent` for each event,
 * and `onEnd` when the server ends the stream (the run ended or is held). Reconnects
 * with Last-Event-ID when the connection drops. Returns a function that stops it.
 */
export function follow(
  run: string,
  after: number,
  onEvent: (e: RunEvent) => void,
  onEnd: () => void,
): () => void {
  const ctl = new AbortController();
  let last = after;
  (async () => {
    for (let tries = 0; !ctl.signal.aborted; tries++) {
      try {
        const h = headers({ accept: "text/event-stream" });
        if (last > 0) h["Last-Event-ID"] = String(last);
        const resp = await fetch(`/v1/runs/${encodeURIComponent(run)}/events`, {
          headers: h,
          signal: ctl.signal,
        });
        if (!resp.ok || !resp.body) {
          const err = await problemOf(resp);
          if (resp.status === 401) onUnauthorized(err.message);
          if (resp.status < 500) return;
          throw err;
        }
        tries = 0;
        const parser = createParser({
          onEvent(m: EventSourceMessage) {
            const e = JSON.parse(m.data) as RunEvent;
            last = Math.max(last, e.seq);
            onEvent(e);
          },
        });
        const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          parser.feed(value);
        }
        onEnd();
        return;
      } catch {
        if (ctl.signal.aborted) return;
        await new Promise((r) => setTimeout(r, Math.min(5000, 250 * 2 ** tries)));
      }
    }
  })();
  return () => ctl.abort();
}
