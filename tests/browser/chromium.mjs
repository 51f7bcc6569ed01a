// Debian's Chromium, headless, driven by playwright-core (installed in
// tests/browser/node_modules by conftest.py's `node` fixture): shared by the
// drivers here and by tests/recovery/browser_client.mjs, which imports this
// file so that "playwright-core" resolves from tests/browser.

import { chromium } from "playwright-core";

// A fresh profile per launch (playwright-core makes a temporary one), no
// network services of Chromium's own, nothing that needs a GPU or a sandbox.
export async function launch(executablePath, timeoutMs) {
  return chromium.launch({
    executablePath,
    headless: true,
    timeout: timeoutMs * 2,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
      "--disable-dev-shm-usage"],
  });
}

// Lines read from stdin, one at a time: how a Python test tells a driver to go
// on (after cutting or restoring a link, say). null once stdin has ended.
export function stdinLines() {
  let buffer = "";
  let ended = false;
  const lines = [];
  const waiting = [];
  const settle = () => {
    while (waiting.length && (lines.length || ended)) waiting.shift()(lines.length ? lines.shift() : null);
  };
  process.stdin.setEncoding("utf8");
  process.stdin.on("data", (chunk) => {
    buffer += chunk;
    let i;
    while ((i = buffer.indexOf("\n")) >= 0) {
      lines.push(buffer.slice(0, i));
      buffer = buffer.slice(i + 1);
    }
    settle();
  });
  process.stdin.on("end", () => { ended = true; settle(); });
  return () => new Promise((resolve) => { waiting.push(resolve); settle(); });
}

// One JSON line on stdout, for the Python side.
export function report(obj) {
  process.stdout.write(JSON.stringify(obj) + "\n");
}
