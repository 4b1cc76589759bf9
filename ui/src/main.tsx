// The web UI of `medic serve`: sign in with a token, then runs, a run's graph live,
// plans, schedules, plugins and the audit log, all through the public REST API.
import { render } from "preact";
import { useEffect, useState } from "preact/hooks";
import { ApiError, get, setToken, token, whenUnauthorized, type Me } from "./api";
import { Link, navigate, useLocation } from "./util";
import { Runs } from "./runs";
import { Run } from "./run";
import { Plan, Plans } from "./plans";
import { Audit, Plugin, Plugins, Schedules } from "./other";
import "./style.css";

function App() {
  const { path, query } = useLocation();
  const [me, setMe] = useState<Me | null>(null);
  const [checked, setChecked] = useState(false);
  const [why, setWhy] = useState<string | null>(null);

  const check = async () => {
    try {
      setMe(await get<Me>("/v1/whoami"));
      setWhy(null);
    } catch (e) {
      setMe(null);
      if (!(e instanceof ApiError && e.status === 401)) setWhy(String((e as Error).message ?? e));
    } finally {
      setChecked(true);
    }
  };

  useEffect(() => {
    whenUnauthorized((msg) => {
      const had = token();
      setToken(null);
      setMe(null);
      setWhy(had ? msg : null);
    });
    check();
  }, []);

  if (!checked) return <div class="loading">connecting to medic…</div>;
  if (!me) return <Login why={why} onIn={check} />;

  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  let page;
  if (parts.length === 0 || (parts[0] === "runs" && parts.length === 1)) page = <Runs query={query} />;
  else if (parts[0] === "runs") page = <Run key={parts[1]} id={parts[1]} me={me} />;
  else if (parts[0] === "plans" && parts.length === 1) page = <Plans />;
  else if (parts[0] === "plans") page = <Plan key={parts[1]} name={parts[1]} me={me} />;
  else if (parts[0] === "schedules") page = <Schedules />;
  else if (parts[0] === "plugins" && parts.length === 1) page = <Plugins />;
  else if (parts[0] === "plugins") page = <Plugin name={parts[1]} />;
  else if (parts[0] === "audit") page = <Audit />;
  else page = <div class="error-box">No such page: {path}</div>;

  const section = parts[0] ?? "runs";
  const tab = (href: string, name: string, text: string) => (
    <Link href={href} class={section === name ? "active" : ""}>
      {text}
    </Link>
  );
  return (
    <>
      <header class="top">
        <Link href="/" class="brand">
          ✚ medic
        </Link>
        <nav>
          {tab("/runs", "runs", "Runs")}
          {tab("/plans", "plans", "Plans")}
          {tab("/schedules", "schedules", "Schedules")}
          {tab("/plugins", "plugins", "Plugins")}
          {me.roles.includes("admin") && tab("/audit", "audit", "Audit")}
        </nav>
        <span class="who" data-testid="who">
          {me.name} · <b>{me.role}</b>
        </span>
        {token() && (
          <button
            class="ghost"
            onClick={() => {
              setToken(null);
              setMe(null);
              navigate("/");
            }}
          >
            Sign out
          </button>
        )}
      </header>
      <main>{page}</main>
    </>
  );
}

function Login(props: { why: string | null; onIn: () => Promise<void> }) {
  const [value, setValue] = useState("");
  const [busy, setBusy] = useState(false);
  return (
    <div class="login">
      <h1>✚ medic</h1>
      <p>
        Sign in with an API token. Make one on medic's host:
        <br />
        <code>medic token create --name NAME --role viewer|operator|approver|admin</code>
      </p>
      <p class="muted">The token is kept in this browser tab's session storage only.</p>
      {props.why && <div class="error-box">{props.why}</div>}
      <form
        onSubmit={async (e) => {
          e.preventDefault();
          setBusy(true);
          setToken(value.trim());
          await props.onIn();
          setBusy(false);
        }}
      >
        <input
          type="password"
          name="token"
          placeholder="medic_…"
          autocomplete="off"
          value={value}
          onInput={(e) => setValue((e.target as HTMLInputElement).value)}
        />
        <button type="submit" disabled={busy || !value.trim()}>
          Sign in
        </button>
      </form>
    </div>
  );
}

render(<App />, document.getElementById("app")!);
