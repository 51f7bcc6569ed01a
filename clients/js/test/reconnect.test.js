// Reconnection: which close codes reconnect, the backoff, the heartbeat watchdog
// (docs/protocol.md sections 2 and 6).

import assert from "node:assert/strict";
import events from "node:events";
import net from "node:net";
import { test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import WebSocket from "ws";
import { Client } from "../src/index.js";
import { BOUNDED, collect, once, setup, startServer, welcomed } from "../test-support/fake-server.js";

// With the default random() of 0 in the tests a reconnection would start at once, so a
// short wait is enough to see that none does.
const NO_RECONNECT_WAIT = 100;

test("reconnects after the server drops the connection (1006)", async (t) => {
  const { server, client } = await setup(t);
  const connection = await welcomed(server, client);
  const closed = once(client, "close");
  const reconnecting = once(client, "reconnecting");
  connection.ws.terminate();
  assert.deepEqual(await closed, [{ code: 1006, reason: "", willReconnect: true }]);
  assert.equal(client.connected, false);
  assert.deepEqual(await reconnecting, [{ attempt: 0, delay: 0 }]);
  await welcomed(server, client);
  assert.equal(client.connected, true);
});

test("reconnects after every code the protocol marks as reconnect", async (t) => {
  const { server, client } = await setup(t);
  // undefined: a close frame without a code, seen as 1005.
  for (const code of [1001, undefined, 1011, 1012, 1013, 1014, 4000, 4001, 4099]) {
    const connection = await welcomed(server, client);
    const closed = once(client, "close");
    connection.ws.close(code);
    assert.deepEqual(await closed, [{ code: code ?? 1005, reason: "", willReconnect: true }]);
  }
  await server.next();
});

test("does not reconnect after 1000, a refusal or an application's own 4xxx code", async (t) => {
  const server = await startServer();
  t.after(() => server.close());
  for (const code of [1000, 1002, 1003, 1007, 1008, 1009, 1010, 3000, 4100, 4999]) {
    const client = new Client(server.url, { WebSocket, random: () => 0 });
    const connection = await welcomed(server, client);
    const closed = once(client, "close");
    connection.ws.close(code, "bye");
    assert.deepEqual(await closed, [{ code, reason: "bye", willReconnect: false }]);
    assert.equal(client.connected, false);
    assert.throws(() => client.send("x"), { name: "NotConnectedError" });
  }
  await sleep(NO_RECONNECT_WAIT);
  assert.equal(server.count, 10);
});

test("close() ends the connection for good", async (t) => {
  const { server, client } = await setup(t);
  const connection = await welcomed(server, client);
  const events = [];
  client.on("close", (info) => events.push(info));
  client.on("reconnecting", () => assert.fail("reconnecting after close()"));
  client.close(4100, "done here");
  assert.deepEqual(events, [{ code: 4100, reason: "done here", willReconnect: false }]);
  assert.deepEqual(await connection.closed, { code: 4100, reason: "done here" });
  client.close();
  await sleep(NO_RECONNECT_WAIT);
  assert.equal(server.count, 1);
  assert.equal(events.length, 1);
});

test("close() during the backoff wait cancels the reconnection", async (t) => {
  const { server, client } = await setup(t, { random: () => 0.5, backoff: { base: 0.1, cap: 1 } });
  const connection = await welcomed(server, client);
  const reconnecting = once(client, "reconnecting");
  connection.ws.terminate();
  const [{ delay }] = await reconnecting;
  const closed = once(client, "close");
  client.close();
  assert.deepEqual(await closed, [{ code: 1000, reason: "", willReconnect: false }]);
  await sleep(delay * 1000 + NO_RECONNECT_WAIT);
  assert.equal(server.count, 1);
});

/**
 * A server that accepts TCP connections and swallows the upgrade request, never
 * answering it: a stalled network, as the client sees it. `closed` holds, for each
 * connection accepted, a promise of its end.
 */
async function silentServer(t) {
  const sockets = [];
  const closed = [];
  const silent = net.createServer((socket) => {
    sockets.push(socket);
    closed.push(events.once(socket, "close"));
    socket.resume();
  });
  silent.listen(0, "127.0.0.1");
  await events.once(silent, "listening");
  t.after(() => {
    for (const socket of sockets) socket.destroy();
    silent.close();
  });
  return { server: silent, url: `ws://127.0.0.1:${silent.address().port}/`, closed };
}

test("close() while connecting abandons the handshake quietly", async (t) => {
  const silent = await silentServer(t);
  const accepted = events.once(silent.server, "connection");
  const client = new Client(silent.url, { WebSocket });
  const seen = [];
  for (const event of ["open", "close", "reconnecting", "error"]) client.on(event, (info) => seen.push([event, info]));
  await accepted;
  client.close();
  // ws reports the aborted handshake on a later tick, to nobody.
  await sleep(NO_RECONNECT_WAIT);
  assert.deepEqual(seen, [["close", { code: 1000, reason: "", willReconnect: false }]]);
});

test("1012 reconnects within a second whatever the backoff", async (t) => {
  const { server, client } = await setup(t, { random: () => 0.25, backoff: { base: 100, cap: 100 } });
  const connection = await welcomed(server, client);
  const reconnecting = once(client, "reconnecting");
  connection.ws.close(1012);
  assert.deepEqual(await reconnecting, [{ attempt: 0, delay: 0.25 }]);
  await server.next();
});

test("backoff: full jitter under min(cap, base * 2^attempt)", async (t) => {
  const base = 0.01;
  const cap = 0.04;
  const { server, client } = await setup(t, { random: () => 0.5, backoff: { base, cap } });
  const retries = collect(client, "reconnecting", 5);
  // Opened but closed before any welcome: the attempts keep counting.
  for (let i = 0; i < 5; i++) (await server.next()).ws.close(1013);
  const delays = (await retries).map(([{ attempt, delay }]) => [attempt, delay]);
  assert.deepEqual(
    delays,
    [0, 1, 2, 3, 4].map((n) => [n, 0.5 * Math.min(cap, base * 2 ** n)]),
  );
});

test("a welcome does not reset the backoff: a route that closes every connection at once is backed off from", BOUNDED, async (t) => {
  // The server sends its welcome before the route runs, so a route refusing every
  // client (1013, 1011, 4001...) closes right after it.
  const base = 0.01;
  const cap = 0.04;
  const { server, client } = await setup(t, { random: () => 0.5, backoff: { base, cap } });
  const retries = collect(client, "reconnecting", 6);
  for (const code of [1013, 1011, 4001, 1013, 1011, 4001]) (await welcomed(server, client)).ws.close(code);
  assert.deepEqual(
    (await retries).map(([info]) => info),
    [0, 1, 2, 3, 4, 5].map((attempt) => ({ attempt, delay: 0.5 * Math.min(cap, base * 2 ** attempt) })),
  );
});

test("a connection that stays open for stableAfter seconds resets the backoff", BOUNDED, async (t) => {
  const base = 0.01;
  const stableAfter = 0.05;
  const { server, client } = await setup(t, { random: () => 0.5, backoff: { base, cap: 1 }, stableAfter });
  const retries = [];
  client.on("reconnecting", (info) => retries.push(info));
  for (let i = 0; i < 2; i++) {
    const reconnecting = once(client, "reconnecting");
    (await welcomed(server, client)).ws.close(1013);
    await reconnecting;
  }
  const connection = await welcomed(server, client);
  await sleep(stableAfter * 1000 + 20);
  const reconnecting = once(client, "reconnecting");
  connection.ws.close(1013);
  await reconnecting;
  assert.deepEqual(retries, [
    { attempt: 0, delay: 0.5 * base },
    { attempt: 1, delay: 0.5 * base * 2 },
    { attempt: 0, delay: 0.5 * base },
  ]);
});

test("repeated 1012s on connections that do not last back off too", BOUNDED, async (t) => {
  const base = 4;
  const cap = 100;
  const random = () => 0.001;
  const { server, client } = await setup(t, { random, backoff: { base, cap } });
  const retries = collect(client, "reconnecting", 3);
  for (let i = 0; i < 3; i++) (await welcomed(server, client)).ws.close(1012);
  assert.deepEqual(
    (await retries).map(([info]) => info),
    // The first within a second whatever the backoff; then the backoff's own delays.
    [
      { attempt: 0, delay: 0.001 * 1 },
      { attempt: 1, delay: 0.001 * Math.min(cap, base * 2) },
      { attempt: 2, delay: 0.001 * Math.min(cap, base * 4) },
    ],
  );
});

test("stableAfter and openTimeout must be numbers of seconds", () => {
  for (const options of [{ stableAfter: -1 }, { stableAfter: "5" }, { openTimeout: Infinity }, { openTimeout: Number.NaN }]) {
    // Closed at once should it be accepted, so that it does not go on reconnecting.
    assert.throws(() => new Client("ws://127.0.0.1:1/", { WebSocket, ...options }).close(), TypeError, JSON.stringify(options));
  }
});

test("the first retry comes within a second with the default backoff", async (t) => {
  const { server, client } = await setup(t, { random: () => 0.999999 });
  const connection = await welcomed(server, client);
  const reconnecting = once(client, "reconnecting");
  connection.ws.close(1013);
  const [{ delay }] = await reconnecting;
  assert.ok(delay > 0.49 && delay < 0.5, `delay ${delay}`);
});

test("an unreachable server is retried with growing delays", async (t) => {
  const server = await startServer();
  await server.close();
  const client = new Client(server.url, { WebSocket, random: () => 0.5, backoff: { base: 0.01, cap: 1 } });
  t.after(() => client.close());
  const closes = collect(client, "close", 3);
  const retries = collect(client, "reconnecting", 3);
  const errors = collect(client, "error", 3);
  for (const [info] of await closes) assert.deepEqual(info, { code: 1006, reason: "", willReconnect: true });
  assert.deepEqual(
    (await retries).map(([info]) => info),
    [0, 1, 2].map((attempt) => ({ attempt, delay: 0.5 * 0.01 * 2 ** attempt })),
  );
  for (const [error] of await errors) assert.ok(error instanceof Error);
});

test("silence for two heartbeat intervals closes with 4000 and reconnects", async (t) => {
  const heartbeat = 0.1;
  const { server, client } = await setup(t);
  const closed = once(client, "close");
  const connection = await welcomed(server, client, heartbeat);
  const welcomedAt = performance.now();
  // Heartbeats for longer than two intervals keep the connection alive...
  let lastFrameAt = 0;
  for (let i = 0; i < 6; i++) {
    await sleep(heartbeat * 500);
    connection.send({ type: "fastws.heartbeat" });
    lastFrameAt = performance.now();
  }
  // ...and then silence ends it.
  assert.deepEqual(await closed, [{ code: 4000, reason: "heartbeat timeout", willReconnect: true }]);
  const closedAt = performance.now();
  assert.ok(closedAt - welcomedAt >= 6 * heartbeat * 500, "closed while heartbeats came");
  assert.ok(closedAt - lastFrameAt >= 2 * heartbeat * 1000 - 5, "closed before two intervals of silence");
  assert.deepEqual(await connection.closed, { code: 4000, reason: "heartbeat timeout" });
  await welcomed(server, client, heartbeat);
  assert.equal(client.connected, true);
});

test("a heartbeat of 0 arms no watchdog", async (t) => {
  const { server, client } = await setup(t);
  const closes = [];
  client.on("close", (info) => closes.push(info));
  await welcomed(server, client, 0);
  await sleep(NO_RECONNECT_WAIT);
  assert.deepEqual(closes, []);
  assert.equal(client.connected, true);
});

test("a handshake that never completes is abandoned after openTimeout and retried with backoff", BOUNDED, async (t) => {
  const silent = await silentServer(t);
  const openTimeout = 0.05;
  const base = 0.01;
  const started = performance.now();
  const client = new Client(silent.url, { WebSocket, random: () => 0.5, backoff: { base, cap: 1 }, openTimeout });
  t.after(() => client.close());
  const seen = [];
  for (const event of ["open", "close", "reconnecting"]) client.on(event, (info) => seen.push([event, info]));
  const firstClose = once(client, "close").then(() => performance.now());
  const retries = collect(client, "reconnecting", 3);
  await retries;
  assert.ok((await firstClose) - started >= openTimeout * 1000 - 5, "abandoned before openTimeout");
  assert.deepEqual(
    seen.slice(0, 6),
    [0, 1, 2].flatMap((attempt) => [
      ["close", { code: 4000, reason: "open timeout", willReconnect: true }],
      ["reconnecting", { attempt, delay: 0.5 * base * 2 ** attempt }],
    ]),
  );
  // The client dropped each abandoned attempt's TCP connection.
  await Promise.all(silent.closed.slice(0, 3));
});

test("a server that opens but never sends its welcome is abandoned after openTimeout", BOUNDED, async (t) => {
  const base = 0.01;
  const { server, client } = await setup(t, { random: () => 0.5, backoff: { base, cap: 1 }, openTimeout: 0.05 });
  client.on("open", () => assert.fail("open without a welcome"));
  const closes = collect(client, "close", 3);
  const retries = collect(client, "reconnecting", 3);
  const connections = [];
  for (let i = 0; i < 3; i++) connections.push(await server.next());
  for (const [info] of await closes) assert.deepEqual(info, { code: 4000, reason: "open timeout", willReconnect: true });
  // Still counted as attempts: the backoff grows.
  assert.deepEqual(
    (await retries).map(([info]) => info),
    [0, 1, 2].map((attempt) => ({ attempt, delay: 0.5 * base * 2 ** attempt })),
  );
  for (const connection of connections) assert.deepEqual(await connection.closed, { code: 4000, reason: "open timeout" });
  assert.equal(client.connected, false);
});

test("the welcome, or the open of a plain server, stops the open timeout", BOUNDED, async (t) => {
  const openTimeout = 0.25;
  const { server, client } = await setup(t, { openTimeout });
  const closes = [];
  client.on("close", (info) => closes.push(info));
  await welcomed(server, client);
  await sleep(openTimeout * 1000 + 50);
  assert.deepEqual(closes, []);
  assert.equal(client.connected, true);

  class OtherAnswerWebSocket extends WebSocket {
    get protocol() {
      return "legacy";
    }
  }
  const plain = new Client(server.url, { WebSocket: OtherAnswerWebSocket, openTimeout });
  t.after(() => plain.close());
  plain.on("close", (info) => closes.push(info));
  await once(plain, "open");
  await sleep(openTimeout * 1000 + 50);
  assert.deepEqual(closes, []);
  assert.equal(plain.connected, true);
});

test("openTimeout: 0 turns the open timeout off", BOUNDED, async (t) => {
  const silent = await silentServer(t);
  const accepted = events.once(silent.server, "connection");
  const client = new Client(silent.url, { WebSocket, openTimeout: 0 });
  t.after(() => client.close());
  const closes = [];
  client.on("close", (info) => closes.push(info));
  await accepted;
  await sleep(NO_RECONNECT_WAIT);
  assert.deepEqual(closes, []);
});
