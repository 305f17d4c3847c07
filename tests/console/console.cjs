// Drives the live console in headless Debian chromium (playwright-core, no
// browser download) the way an operator would. Run by tests/console_browser.rs:
//   CONSOLE_URL=http://127.0.0.1:P/ CONSOLE_TOKEN=... CONSOLE_MIGRATION=...
//   CONSOLE_SCREENSHOT=target/console.png CHROMIUM=/usr/bin/chromium
//   NODE_PATH=$CUTOVER_PEERS/node/node_modules node tests/console/console.cjs
// Prints one line per step; exits non-zero with the reason (and a
// screenshot next to CONSOLE_SCREENSHOT) on the first failed step.
"use strict";
const { chromium } = require("playwright-core");

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
};
const URL = env("CONSOLE_URL");
const TOKEN = env("CONSOLE_TOKEN");
const MIGRATION = env("CONSOLE_MIGRATION");
const SHOT = env("CONSOLE_SCREENSHOT");
const STEP_TIMEOUT = 15000;

const step = (name, detail = "") => console.log(`step ok: ${name}${detail ? " — " + detail : ""}`);
const fail = (msg) => { throw new Error(msg); };

async function main() {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
      "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"],
    timeout: 30000,
  });
  const context = await browser.newContext({ viewport: { width: 1440, height: 760 }, deviceScaleFactor: 1 });
  const page = await context.newPage();
  page.setDefaultTimeout(STEP_TIMEOUT);
  const external = [];
  page.on("request", (r) => { if (!r.url().startsWith(new globalThis.URL(URL).origin)) external.push(r.url()); });
  const pageErrors = [];
  page.on("pageerror", (e) => pageErrors.push(String(e)));
  try {
    // 1. Without a token the page is refused: 401, a login form, no data.
    const response = await page.goto(URL, { waitUntil: "domcontentloaded" });
    if (response.status() !== 401) fail(`expected 401 without token, got ${response.status()}`);
    await page.locator("#login").waitFor({ state: "visible" });
    if (await page.locator('[data-testid="topic-row"]').count() !== 0) fail("topics visible without token");
    step("refused without token", "HTTP 401, login form shown");

    // 2. A wrong token is refused too.
    await page.fill("#token", "wrong-token");
    await page.click('#login button[type="submit"]');
    await page.locator("#login-error").filter({ hasText: "refused" }).waitFor();
    step("wrong token refused");

    // 3. With the token, the topics appear.
    await page.fill("#token", TOKEN);
    await page.click('#login button[type="submit"]');
    const row = (topic) => page.locator(`[data-testid="topic-row"][data-migration="${MIGRATION}"][data-topic="${topic}"]`);
    await row("sessions").waitFor();
    await row("rest").waitFor();
    const state0 = await row("sessions").locator('[data-testid="state"]').innerText();
    if (state0 !== "dual_write") fail(`sessions should start in dual_write, is ${state0}`);
    step("topics visible with token", `sessions ${state0}`);
    // The shadow-read mismatches of each keyspace have their own column.
    const mismatches = (await row("sessions").locator('[data-testid="shadow-mismatch"]').innerText()).trim();
    if (!/^\d+$/.test(mismatches)) fail(`sessions shows no shadow mismatch count: "${mismatches}"`);
    step("shadow mismatches shown", `sessions ${mismatches}`);

    // 4. Traffic through the proxy moves the source's request rate above 0.
    const source = page.locator(`[data-testid="cluster-row"][data-migration="${MIGRATION}"][data-cluster="old"] [data-testid="req-rate"]`);
    const deadline = Date.now() + STEP_TIMEOUT;
    let rate = 0;
    while (Date.now() < deadline) {
      rate = parseFloat((await source.innerText()).replace(/[^0-9.]/g, "")) || 0;
      if (rate > 0) break;
      await page.waitForTimeout(250);
    }
    if (!(rate > 0)) fail("the source's request rate stayed 0 under traffic");
    step("request rate moves", `${rate}/s on the source`);

    // 5. Advance: the dialog runs the checks first and shows the refusal.
    await row("sessions").locator('button[data-action="advance"]').click();
    const dialog = page.locator("#dialog");
    await dialog.waitFor({ state: "visible" });
    await dialog.locator('[data-testid="not-ready"]').waitFor();
    const failed = dialog.locator('[data-testid="check-row"][data-passed="false"]');
    const nFailed = await failed.count();
    if (nFailed === 0) fail("no failed check shown");
    const first = await failed.first().innerText();
    const reason = await failed.first().locator('[data-testid="check-reason"]').innerText();
    if (!reason.trim()) fail("a failed check has no reason");
    if (!(await page.locator("#dlg-confirm").isDisabled())) fail("confirm must be disabled while checks fail");
    await page.screenshot({ path: SHOT.replace(/\.png$/, "-checks.png") });
    step("advance refused by checks", `${nFailed} failed, e.g. ${first.replace(/\s+/g, " ").trim()}`);

    // 6. Force, confirm: the new state and a forced history row appear.
    await page.check("#dlg-force");
    const confirm = page.locator("#dlg-confirm");
    if (await confirm.isDisabled()) fail("confirm stays disabled after ticking Force");
    const label = await confirm.innerText();
    await confirm.click();
    await row("sessions").locator('[data-testid="state"]').filter({ hasText: /^cutover$/ }).waitFor();
    const epoch = await row("sessions").locator('[data-testid="epoch"]').innerText();
    const history = page.locator(`[data-testid="history-row"][data-migration="${MIGRATION}"][data-topic="sessions"]`).first();
    await history.filter({ hasText: "forced" }).filter({ hasText: "cutover" }).waitFor();
    await dialog.waitFor({ state: "hidden" });
    step("forced advance", `"${label}" → sessions cutover, epoch ${epoch}, history: ${(await history.innerText()).replace(/\s+/g, " ").trim()}`);

    // Let a few more samples land so the sparklines show the split moving.
    await page.waitForTimeout(2500);
    await page.screenshot({ path: SHOT, fullPage: true });
    step("screenshot", SHOT);

    if (external.length) fail(`the page reached beyond the proxy: ${external.join(", ")}`);
    if (pageErrors.length) fail(`script errors: ${pageErrors.join("; ")}`);
  } catch (e) {
    try { await page.screenshot({ path: SHOT.replace(/\.png$/, "-failure.png"), fullPage: true }); } catch (_) { /* best effort */ }
    throw e;
  } finally {
    await browser.close();
  }
}

const watchdog = setTimeout(() => { console.error("console.cjs: overall timeout"); process.exit(3); }, 120000);
main().then(() => { clearTimeout(watchdog); }, (e) => {
  console.error("console.cjs: " + (e && e.stack || e));
  process.exit(1);
});
