// The JS client (clients/js) in headless Chromium, for
// tests/recovery/test_browser_client.py: opens the page at argv[2] (which runs
// the client and console.logs one JSON object per event it hears) and prints
// each of those objects as a JSON line on stdout, plus {"event": "pageerror"}
// for an uncaught error in the page. The test closes stdin to end the run.
//
//   node browser_client.mjs PAGE_URL CHROMIUM [TIMEOUT_MS]
//
// playwright-core comes from tests/browser/node_modules, through
// tests/browser/chromium.mjs.
import { launch, report, stdinLines } from "../browser/chromium.mjs";

const [url, chromiumPath, timeout = "15000"] = process.argv.slice(2);
const T = Number(timeout);
const nextLine = stdinLines();
let browser = null;
let code = 0;
try {
  browser = await launch(chromiumPath, T);
  const page = await browser.newPage();
  // Before the page loads, so that no event is missed.
  page.on("console", (msg) => {
    const text = msg.text();
    if (msg.type() === "log" && text.startsWith('{"event":')) process.stdout.write(text + "\n");
  });
  page.on("pageerror", (error) => report({ event: "pageerror", error: String(error) }));
  await page.goto(url, { timeout: T });
  await nextLine();     // null at the end of stdin
} catch (err) {
  report({ event: "driver-error", error: String(err && err.stack ? err.stack : err) });
  code = 1;
} finally {
  if (browser !== null) await browser.close().catch(() => {});
  process.exit(code);
}
