// End-to-end test of the web UI in headless Chromium (Debian's `chromium`, driven by
// playwright-core), against a `medic serve` someone else started — the Rust test
// tests/tests/cli/ui.rs does, with the plans tests/plans/ui-*.yaml registered:
//
//   MEDIC_URL              http://127.0.0.1:PORT of `medic serve` (tokens required)
//   MEDIC_OPERATOR_TOKEN   a token with role operator: starts the runs
//   MEDIC_APPROVER_TOKEN   a token with role approver: approves (not the submitter)
//   MEDIC_ADMIN_TOKEN      a token with role admin: reads the audit log
//   MEDIC_SCHEDULE         the name of a schedule of ui-safe-restart the server has
//   MEDIC_RETRY_RUN        a run held at its step bump-a, whose effect did not happen
//   MEDIC_SKIP_RUN         another such run
//   MEDIC_CHROMIUM         the browser (default /usr/bin/chromium)
//   MEDIC_SCREENSHOTS      if set, the dir the run page's screenshots are written to
//
// The operator signs in, starts ui-safe-restart from its plan page, and watches its
// graph go from running to waiting for approval without reloading; the approver signs
// in in another tab and approves; the operator's page sees the run succeed. Then a
// run of ui-replica-failover fails and its page shows the error without a click.
// Exits 0 when all of it held, 1 with what did not.
import { mkdtempSync, rmSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

const env = (name, fallback) => {
  const v = process.env[name] ?? fallback;
  if (v === undefined) {
    console.error(`ui/e2e/run.mjs: set ${name} (see the comment at the top of this file)`);
    process.exit(2);
  }
  return v;
};
const BASE = env("MEDIC_URL");
const OPERATOR = env("MEDIC_OPERATOR_TOKEN");
const APPROVER = env("MEDIC_APPROVER_TOKEN");
const ADMIN = env("MEDIC_ADMIN_TOKEN");
const SCHEDULE = env("MEDIC_SCHEDULE");
const RETRY = env("MEDIC_RETRY_RUN");
const SKIP = env("MEDIC_SKIP_RUN");
const CHROMIUM = env("MEDIC_CHROMIUM", "/usr/bin/chromium");
const SHOTS = process.env.MEDIC_SCREENSHOTS;
const TIMEOUT = 30_000;
const VIEWPORT = { width: 1360, height: 940 };

const started = Date.now();
const say = (msg) => console.log(`[${((Date.now() - started) / 1000).toFixed(1)}s] ${msg}`);
function check(cond, msg) {
  if (!cond) throw new Error(msg);
}

const profile = mkdtempSync(join(tmpdir(), "medic-ui-e2e-"));
const browser = await chromium.launchPersistentContext(profile, {
  executablePath: CHROMIUM,
  headless: true,
  viewport: VIEWPORT,
  deviceScaleFactor: 1,
  colorScheme: "dark",
  timezoneId: "UTC",
  args: [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
});
browser.setDefaultTimeout(TIMEOUT);

/** Every browser-side error fails the test: a UI that throws is broken. */
const pageErrors = [];
function watch(page, who) {
  page.on("pageerror", (e) => pageErrors.push(`${who}: ${e.message}`));
  page.on("console", (m) => {
    if (m.type() === "error" && !/status of 40[13]/.test(m.text())) pageErrors.push(`${who} console: ${m.text()}`);
  });
}

async function signIn(page, token, who) {
  await page.goto(`${BASE}/`);
  // `/` redirects to the app, which asks for a token first.
  await page.locator("input[name=token]").waitFor();
  check(page.url().startsWith(`${BASE}/ui/`), `/ should redirect to /ui/, is at ${page.url()}`);
  await page.fill("input[name=token]", token);
  await page.click("button[type=submit]");
  await page.locator("[data-testid=who]").waitFor();
  const who_text = await page.textContent("[data-testid=who]");
  check(who_text.includes(who), `signed in as ${who} expected, the header says ${who_text}`);
}

const nodeStatus = (page, step) => page.getAttribute(`svg.dag g[data-step="${step}"]`, "data-status");
const waitNode = (page, step, status) =>
  page.waitForSelector(`svg.dag g[data-step="${step}"][data-status="${status}"]`).catch(async (e) => {
    throw new Error(`step ${step} never showed ${status} in the graph (it shows ${await nodeStatus(page, step)}): ${e.message}`);
  });
const runStatus = (page) => page.getAttribute("[data-testid=run]", "data-status");
const waitRun = (page, status) =>
  page.waitForSelector(`[data-testid=run][data-status="${status}"]`).catch(async (e) => {
    throw new Error(`the run page never showed ${status} (it shows ${await runStatus(page)}): ${e.message}`);
  });

async function shot(page, name) {
  if (!SHOTS) return;
  mkdirSync(SHOTS, { recursive: true });
  await page.mouse.move(0, 0);
  await page.screenshot({ path: join(SHOTS, name), fullPage: false, animations: "disabled" });
  say(`screenshot ${join(SHOTS, name)}`);
}

/** Starts a run of `plan` from its plan page, with `params`; returns the run's id. */
async function startFromPlanPage(page, plan, params) {
  await page.click("header nav >> text=Plans");
  await page.click(`[data-testid=plans] >> text=${plan}`);
  await page.locator("[data-testid=start-form]").waitFor();
  check((await page.locator("svg.dag g.dag-node").count()) > 0, `plan ${plan}: its graph has no steps`);
  for (const [k, v] of Object.entries(params)) await page.fill(`[data-testid=start-form] [name="${k}"]`, String(v));
  await page.click("[data-testid=start-form] button[type=submit]");
  await page.waitForURL(/\/ui\/runs\/[^/]+$/);
  return page.url().split("/").pop();
}

/** The plan page of `plan`, for its screenshot. */
async function startFromPlanPageShot(page, plan) {
  await page.click("header nav >> text=Plans");
  await page.click(`[data-testid=plans] >> text=${plan}`);
  await page.locator("[data-testid=start-form]").waitFor();
  await shot(page, "plan.png");
}

let failed = false;
try {
  // --- A wrong token is refused on the login page. ---
  const op = await browser.newPage();
  watch(op, "operator");
  await op.goto(`${BASE}/ui/`);
  await op.fill("input[name=token]", "medic_not-a-token");
  await op.click("button[type=submit]");
  const refusal = await op.locator(".login .error-box").textContent();
  check(/401/.test(refusal) && /unknown or revoked/.test(refusal), `a bad token should be refused with the server's words, got: ${refusal}`);
  say("a bad token is refused on the login page");

  // --- The operator starts the approval plan from its plan page. ---
  await signIn(op, OPERATOR, "operator");
  const run = await startFromPlanPage(op, "ui-safe-restart", { settle_ms: 2500 });
  say(`operator started run ${run} from the plan page`);

  // Live: the page was loaded once; every change from here on comes from the stream.
  await waitNode(op, "snapshot-metadata", "running");
  await waitNode(op, "diagnose", "succeeded");
  check((await op.textContent("[data-testid=live]")).includes("live"), "the run page should say it follows the stream");
  await shot(op, "run-running.png");
  say("the graph shows snapshot-metadata running");

  await op.evaluate(() => {
    window.__sameDocument = true;
  });
  await waitNode(op, "approve-restart", "approval");
  await waitRun(op, "running");
  const banner = op.locator("[data-testid=approval-approve-restart]");
  await banner.waitFor();
  const opBanner = await banner.textContent();
  check(opBanner.includes("data-node-3 drained. Restart it?"), `the approval prompt should be shown, got: ${opBanner}`);
  check(opBanner.includes("needs role approver"), `an operator is told approving needs an approver, got: ${opBanner}`);
  check((await banner.locator("button", { hasText: "Approve" }).count()) === 0, "an operator must not get an Approve button");
  say("the operator's page shows the approval prompt, without an Approve button");

  // --- The approver, in another tab, approves. ---
  const ap = await browser.newPage();
  watch(ap, "approver");
  await signIn(ap, APPROVER, "approver");
  await ap.goto(`${BASE}/ui/runs/${run}`);
  const apBanner = ap.locator("[data-testid=approval-approve-restart]");
  await apBanner.locator("button", { hasText: "Approve" }).waitFor();
  await shot(ap, "run-waiting-approval.png");
  await apBanner.locator("input.comment").fill("snapshot checked, go");
  await apBanner.locator("button", { hasText: "Approve" }).click();
  say("the approver approved");
  // A tab in the background gets few animation frames, which Playwright's actions wait for.
  await op.bringToFront();

  // --- The operator's page, never reloaded, sees the run through. ---
  for (const step of ["approve-restart", "restart", "verify"]) await waitNode(op, step, "succeeded");
  await waitRun(op, "succeeded");
  check(await op.evaluate(() => window.__sameDocument === true), "the operator's page reloaded; it should have updated live");
  const log = await op.textContent("[data-testid=events]");
  check(log.includes("approved by bob: snapshot checked, go"), `the log should show who approved and why, got: ${log.slice(0, 2000)}`);
  check((await op.locator("[data-testid=approval-approve-restart]").count()) === 0, "the approval banner should be gone once decided");
  say("the operator's page saw every step succeed, live");

  // --- A failure is shown with its error, without a click. ---
  const bad = await startFromPlanPage(op, "ui-replica-failover", {});
  say(`operator started run ${bad}`);
  await waitRun(op, "failed");
  await waitNode(op, "check-replica-lag", "failed");
  await waitNode(op, "promote-replica", "not_run");
  const failures = await op.locator("[data-testid=failures]").textContent();
  const error = "counter-add on counter `replica-lag` failed as asked";
  check(failures.includes("check-replica-lag") && failures.includes(error), `the failure callout should name the step and its error, got: ${failures}`);
  const stepError = await op.locator('.step-card[data-step="check-replica-lag"] .error-text').textContent();
  check(stepError.includes(error), `the failed step's card should show its error, got: ${stepError}`);
  await shot(op, "run-failed.png");
  say(`the failed run shows: ${stepError.trim()}`);

  // --- Held steps: Retry and Skip, and the page follows each run again to its end. ---
  for (const [run, verb, after] of [
    [RETRY, "Retry", "succeeded"],
    [SKIP, "Skip", "skipped"],
  ]) {
    await op.goto(`${BASE}/ui/runs/${run}`);
    await waitRun(op, "held");
    const heldBox = op.locator("[data-testid=held-bump-a]");
    await heldBox.waitFor();
    // Its stream ends at once (the run is held): the page says it waits for an operator.
    await op.locator("[data-testid=live]", { hasText: "stopped until an operator acts" }).waitFor();
    await heldBox.locator("button", { hasText: verb }).click();
    await waitNode(op, "bump-a", after);
    await waitRun(op, "succeeded");
    say(`${verb} on the held step ran the run through, followed live`);
  }

  // --- Reject, by the approver: the run fails at its approval step. ---
  const rejected = await startFromPlanPage(op, "ui-safe-restart", { settle_ms: 0 });
  await waitNode(op, "approve-restart", "approval");
  await ap.bringToFront();
  await ap.goto(`${BASE}/ui/runs/${rejected}`);
  await ap.locator("[data-testid=approval-approve-restart] button", { hasText: "Reject" }).click();
  await op.bringToFront();
  await waitRun(op, "failed");
  await waitNode(op, "approve-restart", "failed");
  say(`the approver's Reject failed run ${rejected}`);

  // --- Cancel, confirmed in a dialog. ---
  const doomed = await startFromPlanPage(op, "ui-safe-restart", { settle_ms: 0 });
  await waitNode(op, "approve-restart", "approval");
  op.once("dialog", (d) => d.accept());
  await op.click("button:has-text('Cancel run')");
  await waitRun(op, "cancelled");
  check((await nodeStatus(op, "restart")) === "not_run", `after a cancel, restart should not run (shows ${await nodeStatus(op, "restart")})`);
  say(`Cancel ended run ${doomed}`);

  // --- The runs list filters by state. ---
  await op.goto(`${BASE}/ui/runs?status=failed`);
  await op.locator(`[data-testid=runs] tr[data-run="${bad}"]`).waitFor();
  check((await op.locator(`[data-testid=runs] tr[data-run="${run}"]`).count()) === 0, "the failed filter should leave out the succeeded run");
  say("the runs list filters by state");
  await op.click("header nav >> text=Runs");
  await op.locator(`[data-testid=runs] tr[data-run="${run}"]`).waitFor();
  await shot(op, "runs.png");
  await startFromPlanPageShot(op, "ui-safe-restart");

  // --- Schedules, plugins and the audit log, as an admin in the other tab. ---
  await ap.bringToFront();
  await ap.click("text=Sign out");
  await signIn(ap, ADMIN, "admin");
  await ap.click("header nav >> text=Schedules");
  const schedule = ap.locator("[data-testid=schedules] tr", { hasText: SCHEDULE });
  await schedule.waitFor();
  const fires = await schedule.locator("td:nth-child(4) .mono").count();
  check(fires === 5, `the schedule should list its next 5 fire times, shows ${fires}`);
  say("the schedules page lists the next fire times");

  await ap.click("header nav >> text=Plugins");
  await ap.locator('[data-plugin="probe"] .chip', { hasText: "counter-add" }).waitFor();
  await ap.click('[data-plugin="probe"] h2 a');
  await ap.locator("td.mono", { hasText: "counter-sub" }).first().waitFor();
  const grants = ap.locator(".card", { hasText: "ui-replica-failover@1" });
  await grants.waitFor();
  check((await grants.textContent()).includes("\"connect\""), `the probe page should show the grants plans give it, got: ${await grants.textContent()}`);
  say("the plugin page shows its actions and the grants plans give it");

  await ap.click("header nav >> text=Audit");
  const approval = ap.locator("[data-testid=audit] tr", { hasText: `POST /v1/runs/${run}/steps/approve-restart/approve` });
  await approval.waitFor();
  const row = await approval.textContent();
  check(row.includes("bob") && row.includes("202"), `the audit log should show bob's approval (202), got: ${row}`);
  say("the audit log shows bob's approval");

  check(pageErrors.length === 0, `the browser reported errors:\n${pageErrors.join("\n")}`);
  say("all checks held");
} catch (e) {
  failed = true;
  console.error(`ui/e2e/run.mjs FAILED: ${e.stack ?? e}`);
  if (pageErrors.length) console.error(`browser errors:\n${pageErrors.join("\n")}`);
  for (const [i, page] of browser.pages().entries()) {
    try {
      const path = join(profile, `..`, `medic-ui-e2e-failure-${i}.png`);
      await page.screenshot({ path });
      console.error(`page ${i} (${page.url()}) is in ${path}`);
    } catch {}
  }
} finally {
  await browser.close();
  rmSync(profile, { recursive: true, force: true });
}
process.exit(failed ? 1 : 0);
