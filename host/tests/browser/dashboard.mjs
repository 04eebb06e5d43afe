// Drives the epu dashboard in headless chromium, as a person would:
//   node dashboard.mjs URL TOKEN SCREENSHOT-PREFIX
// It logs in, finds the quickstart domain with 3 running instances, changes preserve_n to 5
// through the form built from the engine's schema and waits until the table and the chart show 5 running, then asks for
// preserve_n=abc and waits for the page's error. It protects an instance and destroys
// another from the instances table, reads the events as sentences (with the raw JSON on
// demand), finds the reasons of a quarantined and of a crash-looping domain in words, resumes
// the quarantined one, and logs out. It takes a screenshot at each stage
// (PREFIX-overview.png, PREFIX-quarantine.png, PREFIX-crash-loop.png), prints what it saw as
// JSON, and exits non-zero at the first thing that does not happen.
import { chromium } from "playwright-core";

const [url, token, prefix] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  // Root in CI has no user namespace for the sandbox; only loopback is used.
  args: ["--no-sandbox", "--disable-gpu", "--no-proxy-server", "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"],
});
const seen = {};
try {
  const page = await browser.newPage({ viewport: { width: 1200, height: 1000 } });
  page.setDefaultTimeout(30000);
  page.on("dialog", (d) => d.accept());
  await page.goto(url);
  await page.fill("#token", "not-the-token");
  await page.click("button[type=submit]");
  await page.waitForSelector("#login-error:has-text('refused')");
  seen.bad_login = await page.textContent("#login-error");

  await page.fill("#token", token);
  await page.click("button[type=submit]");
  await page.waitForSelector("#domains tr[data-domain=workers][data-running='3']");
  seen.before = await page.textContent("#domains tr[data-domain=workers]");
  await page.click("#domains tr[data-domain=workers]");
  await page.waitForFunction(() => JSON.parse(document.querySelector("#chart").dataset.latest || "{}").running === 3);

  // The config form is built from the schema npreserving declares: preserve_n is a number
  // input from 0, holding the domain's 3, with the key's doc line.
  const field = "#config-keys tr[data-key=preserve_n] input";
  await page.waitForSelector(field);
  seen.form_keys = await page.locator("#config-keys tr").evaluateAll((rows) => rows.map((r) => r.dataset.key));
  seen.form_field = await page.locator(field).evaluate((i) => ({ type: i.type, min: i.min, step: i.step, value: i.value }));
  seen.form_row = await page.textContent("#config-keys tr[data-key=preserve_n]");
  seen.form_about = await page.textContent("#config-about");
  await page.fill(field, "5");
  await page.click("#config-apply");
  await page.waitForSelector("#action-ok:has-text('config_version')");
  await page.waitForSelector("#domains tr[data-domain=workers][data-running='5']");
  await page.waitForFunction(() => JSON.parse(document.querySelector("#chart").dataset.latest || "{}").running === 5);
  seen.after = await page.textContent("#domains tr[data-domain=workers]");
  seen.chart = await page.getAttribute("#chart", "data-latest");
  await page.waitForFunction(() => document.querySelector("#chart").dataset.target === "5");
  seen.target = await page.getAttribute("#chart", "data-target");
  await page.waitForFunction(() => JSON.parse(document.querySelector("#chart").dataset.marks || "{}").reconfigure >= 1);
  seen.marks = await page.getAttribute("#chart", "data-marks");

  await page.fill("#reconfigure-input", "preserve_n=abc");
  await page.click("#reconfigure-form button");
  await page.waitForSelector("#action-error:has-text('refused')");
  seen.error = await page.textContent("#action-error");
  seen.events = await page.locator("#events tr").count();

  // The instances: protect the first, destroy the second; a replacement comes up.
  const rows = page.locator("#instances tbody tr[data-state=running]");
  const first = await rows.nth(0).getAttribute("data-instance");
  const second = await rows.nth(1).getAttribute("data-instance");
  seen.instance_row = await rows.nth(0).textContent();
  await page.click(`#instances tr[data-instance=${first}] button.protect`);
  await page.waitForSelector(`#instances tr[data-instance=${first}] button.protect:has-text('Unprotect')`);
  seen.protected = first;
  await page.click(`#instances tr[data-instance=${second}] button.destroy`);
  await page.waitForSelector(`#instances tr[data-instance=${second}]`, { state: "detached" });
  seen.destroyed = second;
  await page.waitForSelector("#domains tr[data-domain=workers][data-running='5']");

  // Events read as sentences; the raw JSON opens on demand.
  const reconfigured = page.locator("#events tr[data-kind=reconfigured] summary").first();
  seen.sentence = await reconfigured.textContent();
  await reconfigured.click();
  seen.raw = await page.locator("#events tr[data-kind=reconfigured] pre").first().textContent();
  seen.destroy_sentence = await page.locator("#events tr[data-kind=destroy-requested] summary").first().textContent();
  seen.history = await page.locator("#history tbody tr").count();
  await page.screenshot({ path: `${prefix}-overview.png`, fullPage: true });

  // A quarantined domain says why, and can be resumed.
  await page.click("#domains tr[data-domain=broken]");
  await page.waitForSelector("#reasons li:has-text('Quarantined')");
  seen.quarantine = await page.textContent("#reasons");
  await page.screenshot({ path: `${prefix}-quarantine.png`, fullPage: true });
  await page.click("#resume");
  await page.waitForSelector("#action-ok:has-text('resumed')");
  seen.resumed = await page.textContent("#action-ok");

  // A crash-looping domain says why, with its workers' last failure.
  await page.click("#domains tr[data-domain=crashy]");
  await page.waitForSelector("#reasons li:has-text('Crash loop')");
  seen.crash_loop = await page.textContent("#reasons");
  await page.screenshot({ path: `${prefix}-crash-loop.png`, fullPage: true });
  seen.runs = await page.locator("#runs tbody tr").count();

  await page.click("#logout");
  await page.waitForSelector("#login:not([hidden])");
  seen.logged_out = await page.textContent("#login-error");
  console.log(JSON.stringify(seen));
} catch (e) {
  console.log(JSON.stringify(seen));
  console.error(e.message);
  process.exitCode = 1;
} finally {
  await browser.close();
}
