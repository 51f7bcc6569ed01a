// The JS client (clients/js) under Node, for tests/recovery/test_js_client.py:
// connects to the URL in argv[2] and prints one JSON line per event it hears.
// Room messages carry {"n": N}; the line gives N with its position.
import { createRequire } from "node:module";
import { Client } from "../../clients/js/src/index.js";

// `ws` as installed for the client's own tests (clients/js/node_modules).
const require = createRequire(new URL("../../clients/js/package.json", import.meta.url));
const WebSocket = require("ws");

const out = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");
const client = new Client(process.argv[2], {
  WebSocket,
  recover: true,
  backoff: { base: 0.05, cap: 0.5 },
});
client.on("open", () => out({ event: "open" }));
client.on("message", (data, meta) =>
  out({ event: "message", n: data.n, epoch: meta.epoch, offset: meta.offset }));
client.on("recovered", ({ room, recovered, missed }) =>
  out({ event: "recovered", room, recovered, missed }));
client.on("close", ({ code }) => out({ event: "close", code }));
// The test closes stdin to end the run.
process.stdin.on("end", () => { client.close(); process.exit(0); });
process.stdin.resume();
