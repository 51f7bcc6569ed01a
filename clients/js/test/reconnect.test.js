// Reconnection: which close codes reconnect, the backoff, the heartbeat watchdog
// (docs/protocol.md sections 2 and 6).

import assert from "node:assert/strict";
import events from "node:events";
import net from "node:net";
import { test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import WebSocket from "ws";
import { Client } from "../src/index.js";
import { collect, once, setup, startServer, welcomed } from "../test-support/fake-server.js";

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

test("close() while connecting abandons the handshake quietly", async (t) => {
  // A server that accepts TCP connections and never answers the upgrade request.
  const sockets = [];
  const silent = net.createServer((socket) => sockets.push(socket));
  silent.listen(0, "127.0.0.1");
  await events.once(silent, "listening");
  t.after(() => {
    for (const socket of sockets) socket.destroy();
    silent.close();
  });
  const accepted = events.once(silent, "connection");
  const client = new Client(`ws://127.0.0.1:${silent.address().port}/`, { WebSocket });
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

test("backoff: full jitter under min(cap, base * 2^attempt), reset by a welcome", async (t) => {
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

  const connection = await welcomed(server, client);
  const reconnecting = once(client, "reconnecting");
  connection.ws.close(1013);
  assert.deepEqual(await reconnecting, [{ attempt: 0, delay: 0.5 * base }]);
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
