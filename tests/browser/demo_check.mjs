// Headless Chromium (Debian's, driven by playwright-core) on the fastws demo page.
//
//   node demo_check.mjs '<config JSON>'
//
// Config: chromium (path), room and other (room names), timeoutMs (every wait),
// and either
//   mode "sequential", pages [{url, user}, ...]: the pages join the room one
//     after another, each checking the count that join makes (1, 2, 3, ...);
//   mode "spread", url, burst, maxBursts, log: pages join the room `burst` at
//     a time, all at once, until the server's log shows that they landed on at
//     least two worker processes (at most maxBursts bursts). The log lines are
//     written with the format "%(process)d %(name)s: %(message)s" (set by the
//     test), so an access line names the worker that answered each upgrade.
// Then: the first page says something and every other page must show it; a
// page switches to the other room with "/join"; a page closes. After each step
// every page must show the room's size across the cluster.
//
// Prints one JSON line: {ok, steps: [{name, want, got}], chat, workers, error}
// and exits 1 when something was not as expected.

import { readFileSync } from "node:fs";
import { launch as launchChromium } from "./chromium.mjs";

const cfg = JSON.parse(process.argv[2]);
const T = cfg.timeoutMs ?? 15000;
const result = { ok: false, steps: [], chat: null, workers: {}, error: null };
let browser = null;

async function launch() {
  return launchChromium(cfg.chromium, T);
}

// Each page gets a browser context of its own, as separate people would: no
// shared connections, storage or cache between them.
async function openPage(url, user) {
  const context = await browser.newContext();
  const page = await context.newPage();
  page.setDefaultTimeout(T);
  await page.goto(url, { timeout: T });
  return { user, page, context, room: null, open: true };
}

async function join(p, room) {
  await p.page.fill("#user", p.user);
  await p.page.fill("#room", room);
  await p.page.click("#join button");
  p.room = room;
}

async function connected(p) {
  await p.page.waitForFunction(() => !document.getElementById("text").disabled, null, { timeout: T });
}

async function shownCount(p) {
  return p.page.$eval("#count", (el) => ({ count: el.dataset.count, room: el.dataset.room }));
}

// Wait until every page in `want` (user -> count) shows that count for its room.
async function expectCounts(name, pages, want) {
  const step = { name, want, got: {} };
  result.steps.push(step);
  try {
    await Promise.all(pages.map((p) => p.page.waitForFunction(
      ([n, room]) => {
        const el = document.getElementById("count");
        return el.dataset.count === String(n) && el.dataset.room === room;
      },
      [want[p.user], p.room], { timeout: T })));
  } finally {
    for (const p of pages) {
      const shown = await shownCount(p).catch((e) => ({ error: String(e) }));
      step.got[p.user] = shown.count === undefined ? shown : Number(shown.count);
    }
  }
}

function wantAll(pages, n) {
  return Object.fromEntries(pages.map((p) => [p.user, n]));
}

// user -> pid of the worker that answered its upgrade, from the server's log.
function workersOf(pages) {
  const text = readFileSync(cfg.log, "utf8");
  const found = {};
  const line = /^(\d+) fastws\.access: .*"WebSocket \/chat\/([^?"]+)\?user=([^"&\s]+)" 101/;
  for (const l of text.split("\n")) {
    const m = line.exec(l);
    if (m && decodeURIComponent(m[2]) === cfg.room) found[decodeURIComponent(m[3])] = Number(m[1]);
  }
  return Object.fromEntries(pages.map((p) => [p.user, found[p.user] ?? null]));
}

async function joinSequentially() {
  const pages = [];
  for (const [i, spec] of cfg.pages.entries()) {
    const p = await openPage(spec.url, spec.user);
    pages.push(p);
    await join(p, cfg.room);
    await connected(p);
    await expectCounts(`join ${i + 1}`, pages, wantAll(pages, pages.length));
  }
  return pages;
}

async function joinInBursts() {
  const pages = [];
  for (let burst = 0; burst < cfg.maxBursts; burst++) {
    const fresh = await Promise.all(Array.from({ length: cfg.burst },
      (_, i) => openPage(cfg.url, `b${burst}p${i}`)));
    pages.push(...fresh);
    // All at once, as a crowd arrives: the joins race on the two workers.
    await Promise.all(fresh.map((p) => join(p, cfg.room)));
    await Promise.all(fresh.map(connected));
    await expectCounts(`burst ${burst + 1}`, pages, wantAll(pages, pages.length));
    result.workers = workersOf(pages);
    if (new Set(Object.values(result.workers).filter((w) => w !== null)).size >= 2) return pages;
  }
  throw new Error(`after ${cfg.maxBursts} bursts every page is on one worker: ` +
    JSON.stringify(result.workers));
}

async function main() {
  browser = await launch();
  const pages = cfg.mode === "spread" ? await joinInBursts() : await joinSequentially();
  const n = pages.length;
  const [first, ...others] = pages;
  // With workers, the pages that switch and close are on another worker than
  // the first page, which keeps watching: their leaves must cross over.
  const far = cfg.mode === "spread"
    ? others.filter((p) => result.workers[p.user] !== result.workers[first.user])
    : [];
  const rest = others.filter((p) => !far.includes(p));
  const [switcher, closer] = cfg.mode === "spread"
    ? [far[0], far[1] ?? rest[rest.length - 1]]
    : [others[others.length - 1], others[0]];

  const text = `hello from ${first.user}`;
  await first.page.fill("#text", text);
  await first.page.click("#send");
  await Promise.all(others.map((p) => p.page.waitForFunction(
    (needle) => document.getElementById("log").textContent.includes(needle),
    `${first.user}: ${text}`, { timeout: T })));
  result.chat = { from: first.user, seenBy: others.map((p) => p.user) };

  await switcher.page.fill("#text", `/join ${cfg.other}`);
  await switcher.page.click("#send");
  switcher.room = cfg.other;
  await switcher.page.waitForFunction(
    (note) => document.getElementById("log").textContent.includes(note),
    `Switched to room: ${cfg.other}`, { timeout: T });
  const stayed = pages.filter((p) => p !== switcher);
  await expectCounts("switch", pages, { ...wantAll(stayed, n - 1), [switcher.user]: 1 });

  await closer.context.close();
  closer.open = false;
  const left = stayed.filter((p) => p !== closer);
  await expectCounts("close", left, wantAll(left, n - 2));
  result.roles = { switcher: switcher.user, closer: closer.user, watcher: first.user };
  result.ok = true;
}

try {
  await main();
} catch (err) {
  result.error = String(err && err.stack ? err.stack : err);
} finally {
  if (browser !== null) await browser.close().catch(() => {});
  console.log(JSON.stringify(result));
  process.exitCode = result.ok ? 0 : 1;
}
