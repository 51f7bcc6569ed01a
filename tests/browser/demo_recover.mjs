// Headless Chromium on the demo page while its connection is cut: the page
// (fastws-client) reconnects by itself and recovers, or reloads, what it missed.
//
//   node demo_recover.mjs '<config JSON>'
//
// Config: chromium (path), timeoutMs (every wait), room, mode, and
//   mode "reset": proxied (the demo's URL through a FaultProxy) and direct (the
//     same server's own URL). alice (proxied) and bob (direct) join the room,
//     alice says something; then the driver prints {"at": "ready"} and waits
//     for a line: the test has reset alice's link. Once the page shows it is
//     reconnecting and bob's page shows the server counted alice out, bob says
//     `missed` lines; {"at": "missed"}, and it waits for a line: the test has
//     let the link back. alice's page must then say "reconnected, N missed
//     messages recovered", show bob's lines, count 2 again, and chat again.
//   mode "restart": proxied (a first server, through the proxy) and direct (a
//     second server). alice joins on the first through the proxy and says
//     something; bob joins on the second and says something; {"at": "ready"},
//     and it waits for a line: the test has pointed the proxy at the second
//     server and stopped the first. alice's page must then say "history lost,
//     reloaded" and show the second server's messages in place of the first's.
//
// Prints {"at": ...} lines, then one JSON result line: {ok, alice: [log lines],
// bob: [log lines], missed, error}; exits 1 when something was not as expected.

import { launch, report, stdinLines } from "./chromium.mjs";

const cfg = JSON.parse(process.argv[2]);
const T = cfg.timeoutMs ?? 15000;
const nextLine = stdinLines();
const result = { ok: false, alice: null, bob: null, missed: null, error: null };
let browser = null;
const pages = [];

async function openPage(url, user) {
  const context = await browser.newContext();
  const page = await context.newPage();
  page.setDefaultTimeout(T);
  await page.goto(url, { timeout: T });
  const p = { user, page };
  pages.push(p);
  return p;
}

async function join(p, room) {
  await p.page.fill("#user", p.user);
  await p.page.fill("#room", room);
  await p.page.click("#join button");
  await p.page.waitForFunction(() => !document.getElementById("text").disabled, null, { timeout: T });
}

async function say(p, text) {
  await p.page.fill("#text", text);
  await p.page.click("#send");
}

async function shows(p, needle) {
  await p.page.waitForFunction((n) => document.getElementById("log").textContent.includes(n),
    needle, { timeout: T });
}

async function counts(p, n) {
  await p.page.waitForFunction(([n, room]) => {
    const el = document.getElementById("count");
    return el.dataset.count === String(n) && el.dataset.room === room;
  }, [n, cfg.room], { timeout: T });
}

// The page's log, one entry per line shown, the time stamps left out.
async function logOf(p) {
  return p.page.$$eval("#log div:not(:has(div))",
    (els) => els.map((el) => el.textContent.replace(/^\[[^\]]*\] /, "")).filter((t) => t !== ""));
}

async function goOn(expected) {
  const line = await nextLine();
  if (line !== expected) throw new Error(`the test said ${JSON.stringify(line)}, not ${expected}`);
}

async function resetMode() {
  const alice = await openPage(cfg.proxied, "alice");
  await join(alice, cfg.room);
  const bob = await openPage(cfg.direct, "bob");
  await join(bob, cfg.room);
  await Promise.all([counts(alice, 2), counts(bob, 2)]);
  await say(alice, "before the cut");
  await Promise.all([shows(alice, "alice: before the cut"), shows(bob, "alice: before the cut")]);
  report({ at: "ready" });
  await goOn("cut");

  // The page noticed, and the server did: it counted alice out.
  await alice.page.waitForFunction(
    () => document.getElementById("status").textContent.includes("reconnecting"), null, { timeout: T });
  await Promise.all([shows(bob, "alice left the room"), counts(bob, 1)]);
  for (let i = 1; i <= cfg.missed; i++) {
    await say(bob, `while alice is away ${i}`);
    await shows(bob, `bob: while alice is away ${i}`);
  }
  report({ at: "missed" });
  await goOn("restored");

  await alice.page.waitForFunction(
    () => /reconnected, \d+ missed messages? recovered/.test(document.getElementById("log").textContent),
    null, { timeout: T });
  await Promise.all([counts(alice, 2), counts(bob, 2)]);
  await say(alice, "back again");
  await Promise.all([shows(alice, "alice: back again"), shows(bob, "alice: back again")]);
  result.alice = await logOf(alice);
  result.bob = await logOf(bob);
  const note = result.alice.find((l) => l.startsWith("reconnected, "));
  result.missed = Number(/reconnected, (\d+) missed/.exec(note)[1]);
}

async function restartMode() {
  const alice = await openPage(cfg.proxied, "alice");
  await join(alice, cfg.room);
  await counts(alice, 1);
  await say(alice, "said on the first server");
  await shows(alice, "alice: said on the first server");
  const bob = await openPage(cfg.direct, "bob");
  await join(bob, cfg.room);
  await counts(bob, 1);
  await say(bob, "said on the second server");
  await shows(bob, "bob: said on the second server");
  report({ at: "ready" });
  await goOn("switched");

  await shows(alice, "history lost, reloaded");
  await shows(alice, "bob: said on the second server");
  await Promise.all([counts(alice, 2), counts(bob, 2)]);
  await say(alice, "said after the reload");
  await Promise.all([shows(alice, "alice: said after the reload"),
    shows(bob, "alice: said after the reload")]);
  result.alice = await logOf(alice);
  result.bob = await logOf(bob);
}

try {
  browser = await launch(cfg.chromium, T);
  if (cfg.mode === "reset") await resetMode();
  else if (cfg.mode === "restart") await restartMode();
  else throw new Error(`unknown mode ${cfg.mode}`);
  result.ok = true;
} catch (err) {
  result.error = String(err && err.stack ? err.stack : err);
  // What each page showed when it failed.
  result.pages = {};
  for (const p of pages) {
    result.pages[p.user] = await p.page.evaluate(() => ({
      status: document.getElementById("status").textContent,
      count: document.getElementById("count").textContent,
      log: [...document.querySelectorAll("#log div")].map((el) => el.textContent),
    })).catch((e) => String(e));
  }
} finally {
  if (browser !== null) await browser.close().catch(() => {});
  report(result);
  process.exit(result.ok ? 0 : 1);     // stdin would keep Node running
}
