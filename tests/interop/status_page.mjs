// Drives the status page in headless Chromium: log in with the admin token, see a
// provider turn connected, subscribe in the "try it" panel and see a published
// event arrive live there and in "recent events"; on a second gateway sharing the
// database, see the provider shown as held by the first. Prints a JSON verdict.
import { chromium } from "playwright-core";

// The provider to watch, and the control call that makes its upstream connect.
const [base, adminToken, screenshot, provider, startPath, startBody, otherBase] = process.argv.slice(2);
const auth = { Authorization: "Bearer " + adminToken, "Content-Type": "application/json" };
const post = (path, body) => fetch(base + path, { method: "POST", headers: auth, body: JSON.stringify(body) })
  .then((r) => { if (!r.ok) throw new Error(path + " answered " + r.status); return r.json(); });

const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const errors = [];
const verdict = { steps: [] };
try {
  const page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
  page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });
  page.on("pageerror", (e) => errors.push(String(e)));
  const step = async (name, work) => { await work(); verdict.steps.push(name); };

  await step("loaded", () => page.goto(base + "/", { waitUntil: "load" }));
  await step("provider disconnected", () =>
    page.waitForSelector(`[data-provider="${provider}"][data-state="disconnected"]`, { timeout: 5000 }));
  await step("logged in", async () => {
    await page.fill("#admin-token", adminToken);
    await page.click('#login button[type="submit"]');
  });
  await step("provider connected", async () => {
    await post(startPath, JSON.parse(startBody));
    await page.waitForSelector(`[data-provider="${provider}"][data-state="connected"]`, { timeout: 15000 });
  });
  await step("token expiry shown", async () => {
    const row = await page.waitForSelector(`[data-provider="${provider}"][data-token="expires-soon"]`, { timeout: 5000 });
    verdict.providerText = await row.textContent();
  });
  await step("subscribed", async () => {
    await page.fill("#try-room", "demo:status");
    await page.click("#try-connect");
    await page.waitForFunction(() => document.getElementById("try-state").textContent === "subscribed to demo:status", null, { timeout: 5000 });
  });
  await step("client counted", () => page.waitForFunction(
    () => [...document.querySelectorAll("#rooms tbody tr")].some((tr) => tr.cells[0].textContent === "demo:status"),
    null, { timeout: 5000 }));
  await step("event live", async () => {
    await post("/api/publish", { rooms: ["demo:status"], event: "order:created",
                                  payload: { order: 1001, password: "hunter2-do-not-show" } });
    await page.waitForFunction(() => [...document.querySelectorAll("#try-events li")]
      .some((li) => li.textContent.startsWith("order:created @demo:status")), null, { timeout: 5000 });
  });
  await step("event recent", () => page.waitForFunction(() => [...document.querySelectorAll("#recent tbody tr")]
    .some((tr) => tr.cells[1].textContent === "order:created"), null, { timeout: 5000 }));
  await step("held elsewhere", async () => {
    const other = await browser.newPage();
    await other.goto(otherBase + "/", { waitUntil: "load" });
    const row = await other.waitForSelector(`[data-provider="${provider}"][data-state="elsewhere"]`, { timeout: 5000 });
    verdict.elsewhereText = await row.textContent();
    await other.close();
  });
  verdict.recentText = await page.textContent("#recent");
  verdict.pageText = await page.textContent("body");
  await page.screenshot({ path: screenshot, fullPage: true });
} catch (e) {
  verdict.failure = String(e);
} finally {
  verdict.errors = errors;
  await browser.close();
}
process.stdout.write(JSON.stringify(verdict) + "\n");
