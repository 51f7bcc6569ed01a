// The opening handshake: subprotocol tokens offered and answered, and the positions
// token a reconnecting client offers (docs/protocol.md sections 1 and 4).

import assert from "node:assert/strict";
import { test } from "node:test";
import WebSocket from "ws";
import { Client } from "../src/index.js";
import { BOUNDED, once, setup, startServer, sync, welcomed } from "../test-support/fake-server.js";

const TOKEN_CHARS = /^fastws\.v1\.positions\.[A-Za-z0-9_-]+$/;

/** Drop the connection in an orderly way and return the client's next one. */
async function reconnect(server, connection) {
  connection.ws.close(1001);
  return server.next();
}

test("offers fastws.v1+NAME for each subprotocol, then fastws.v1, and reports the one answered", async (t) => {
  const { server, client } = await setup(t, {
    server: { subprotocols: ["chat.v2", "chat"] },
    protocols: ["chat", "chat.v2"],
  });
  const connection = await server.next();
  assert.deepEqual(connection.offered, ["fastws.v1+chat", "fastws.v1+chat.v2", "fastws.v1"]);
  const opened = once(client, "open");
  connection.welcome(20);
  assert.deepEqual(await opened, [{ version: 1, heartbeat: 20, subprotocol: "chat.v2" }]);
  assert.equal(client.subprotocol, "chat.v2");
  assert.equal(client.connected, true);
});

test("a plain fastws.v1 answer leaves no application subprotocol", async (t) => {
  const { server, client } = await setup(t, { protocols: ["chat"] });
  await welcomed(server, client);
  assert.equal(client.subprotocol, null);
  assert.equal(client.connected, true);
});

test("a first connection offers no positions token", async (t) => {
  const { server } = await setup(t);
  const connection = await server.next();
  assert.deepEqual(connection.offered, ["fastws.v1"]);
});

test("a reconnecting client offers every room's position, as base64url of UTF-8 JSON", async (t) => {
  const { server, client } = await setup(t);
  const connection = await welcomed(server, client);
  connection.send({ type: "fastws.joined", room: "chat", epoch: "e1", offset: 4 });
  connection.send({ type: "fastws.message", room: "café ☕ 日本", epoch: "e2", offset: 7, text: "x" });
  connection.send({ type: "fastws.message", room: 42, epoch: "e3", offset: 1, data: null });
  await sync(connection, client);

  const next = await reconnect(server, connection);
  assert.match(next.positionsToken, TOKEN_CHARS);
  assert.deepEqual(next.offered.slice(0, 1), ["fastws.v1"]);
  assert.deepEqual(next.positions, [
    ["chat", "e1", 4],
    ["café ☕ 日本", "e2", 7],
    [42, "e3", 1],
  ]);
});

test("the positions token keeps the 64 most recently updated rooms", async (t) => {
  const { server, client } = await setup(t);
  const connection = await welcomed(server, client);
  for (let i = 0; i < 70; i++) connection.send({ type: "fastws.joined", room: `r${i}`, epoch: "e", offset: i });
  // Updating r0 again makes it the most recent.
  connection.send({ type: "fastws.sent", room: "r0", epoch: "e", offset: 1 });
  await sync(connection, client);

  const next = await reconnect(server, connection);
  const expected = [];
  for (let i = 7; i < 70; i++) expected.push([`r${i}`, "e", i]);
  expected.push(["r0", "e", 1]);
  assert.deepEqual(next.positions, expected);
});

test("the positions token drops the oldest rooms until its JSON fits in 4096 bytes", async (t) => {
  const { server, client } = await setup(t);
  const connection = await welcomed(server, client);
  // 400 three-byte characters: 1200 bytes but 400 characters, so counting characters
  // instead of bytes would keep every room.
  const rooms = Array.from({ length: 6 }, (_, i) => `${i}${"日".repeat(400)}`);
  for (const room of rooms) connection.send({ type: "fastws.joined", room, epoch: "e", offset: 1 });
  await sync(connection, client);

  const next = await reconnect(server, connection);
  assert.deepEqual(
    next.positions,
    rooms.slice(3).map((room) => [room, "e", 1]),
  );
  const json = Buffer.from(next.positionsToken.slice("fastws.v1.positions.".length), "base64url");
  assert.ok(json.length <= 4096);
});

test("a room whose position was held but not recovered is reported recovered: false, \"not sent\"", BOUNDED, async (t) => {
  const { server, client } = await setup(t);
  const connection = await welcomed(server, client);
  for (let i = 0; i < 70; i++) connection.send({ type: "fastws.joined", room: `r${i}`, epoch: "e", offset: i });
  await sync(connection, client);

  const next = await reconnect(server, connection);
  // r0 to r5 did not fit in the token.
  assert.deepEqual(next.positions[0], ["r6", "e", 6]);
  const outcomes = [];
  client.on("recovered", (outcome) => outcomes.push(outcome));
  const opened = once(client, "open");
  next.welcome();
  await opened;
  // Left out of the token: the server joins it without a recovery outcome.
  next.send({ type: "fastws.joined", room: "r0", epoch: "e", offset: 100 });
  // In the token, and answered.
  next.send({ type: "fastws.joined", room: "r10", epoch: "e", offset: 10, recovered: true, missed: 0 });
  // In the token, yet answered without an outcome (not a conforming server).
  next.send({ type: "fastws.joined", room: "r20", epoch: "e", offset: 25 });
  // Joined again in the same connection, and a room the client held no position for.
  next.send({ type: "fastws.left", room: "r0" });
  next.send({ type: "fastws.joined", room: "r0", epoch: "e", offset: 101 });
  next.send({ type: "fastws.joined", room: "new", epoch: "e", offset: 1 });
  await sync(next, client);
  assert.deepEqual(outcomes, [
    { room: "r0", recovered: false, missed: 0, reason: "not sent" },
    { room: "r10", recovered: true, missed: 0, reason: null },
    { room: "r20", recovered: false, missed: 0, reason: "not sent" },
  ]);
  assert.deepEqual(client.positions.get("r0"), { epoch: "e", offset: 101 });
  assert.deepEqual(client.positions.get("r20"), { epoch: "e", offset: 25 });
});

test("a room too large for the token is reported \"not sent\" when joined again", BOUNDED, async (t) => {
  const { server, client } = await setup(t);
  const connection = await welcomed(server, client);
  const room = "x".repeat(5000);
  connection.send({ type: "fastws.joined", room, epoch: "e", offset: 3 });
  await sync(connection, client);

  const next = await reconnect(server, connection);
  assert.deepEqual(next.offered, ["fastws.v1"]);
  const opened = once(client, "open");
  next.welcome();
  await opened;
  const recovered = once(client, "recovered");
  next.send({ type: "fastws.joined", room, epoch: "e", offset: 9 });
  assert.deepEqual(await recovered, [{ room, recovered: false, missed: 0, reason: "not sent" }]);
});

test("recover: false offers no positions, and reports no recovery", BOUNDED, async (t) => {
  const { server, client } = await setup(t, { recover: false });
  const connection = await welcomed(server, client);
  connection.send({ type: "fastws.joined", room: "chat", epoch: "e1", offset: 4 });
  await sync(connection, client);

  const next = await reconnect(server, connection);
  assert.deepEqual(next.offered, ["fastws.v1"]);
  assert.deepEqual([...client.positions], [["chat", { epoch: "e1", offset: 4 }]]);
  client.on("recovered", (outcome) => assert.fail(`recovered: ${JSON.stringify(outcome)}`));
  const opened = once(client, "open");
  next.welcome();
  await opened;
  next.send({ type: "fastws.joined", room: "chat", epoch: "e1", offset: 9 });
  await sync(next, client);
  assert.deepEqual([...client.positions], [["chat", { epoch: "e1", offset: 9 }]]);
});

test("params() sets query parameters afresh for each connection", async (t) => {
  let issued = 0;
  const { server, client } = await setup(t, {
    params: async () => ({ token: `t${++issued}` }),
  });
  const connection = await welcomed(server, client);
  assert.equal(connection.path, "/ws?token=t1");
  // 4001: the credentials expired; the client reconnects with fresh ones.
  connection.ws.close(4001, "expired");
  const next = await server.next();
  assert.equal(next.path, "/ws?token=t2");
});

test("a failing params() is reported as an error and retried", async (t) => {
  const server = await startServer();
  let calls = 0;
  const client = new Client(server.url, {
    WebSocket,
    random: () => 0,
    params: () => {
      calls += 1;
      if (calls === 1) throw new Error("token service down");
      return { token: "ok" };
    },
  });
  t.after(async () => {
    client.close();
    await server.close();
  });
  // Listening right after construction: params() runs once the constructor has returned.
  const [[error], [retry]] = await Promise.all([once(client, "error"), once(client, "reconnecting")]);
  assert.equal(error.message, "token service down");
  assert.equal(retry.attempt, 0);
  const connection = await server.next();
  assert.equal(connection.path, "/ws?token=ok");
});
