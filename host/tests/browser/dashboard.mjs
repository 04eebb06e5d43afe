// Drives the epu dashboard in headless chromium, as a person would:
//   node dashboard.mjs URL TOKEN SCREENSHOT.png
// It logs in, finds the quickstart domain with 3 running instances, changes preserve_n to 5
// through the page and waits until the table and the chart show 5 running, then asks for
// preserve_n=abc and waits for the page's error. It prints what it saw as JSON, and exits
// non-zero at the first thing that does not happen.
import { chromium } from "playwright-core";

const [url, token, screenshot] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  // Root in CI has no user namespace for the sandbox; only loopback is used.
  args: ["--no-sandbox", "--disable-gpu", "--no-proxy-server", "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"],
});
const seen = {};
try {
  const page = await browser.newPage({ viewport: { width: 1100, height: 900 } });
  page.setDefaultTimeout(30000);
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

  await page.fill("#reconfigure-input", "preserve_n=5");
  await page.click("#reconfigure-form button");
  await page.waitForSelector("#action-ok:has-text('config_version')");
  await page.waitForSelector("#domains tr[data-domain=workers][data-running='5']");
  await page.waitForFunction(() => JSON.parse(document.querySelector("#chart").dataset.latest || "{}").running === 5);
  seen.after = await page.textContent("#domains tr[data-domain=workers]");
  seen.chart = await page.getAttribute("#chart", "data-latest");

  await page.fill("#reconfigure-input", "preserve_n=abc");
  await page.click("#reconfigure-form button");
  await page.waitForSelector("#action-error:has-text('refused')");
  seen.error = await page.textContent("#action-error");
  seen.events = await page.locator("#events tr").count();
  await page.screenshot({ path: screenshot, fullPage: true });
  console.log(JSON.stringify(seen));
} catch (e) {
  console.log(JSON.stringify(seen));
  console.error(e.message);
  process.exitCode = 1;
} finally {
  await browser.close();
}
