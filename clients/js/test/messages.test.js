// Frames from the server (docs/protocol.md section 2), positions (section 4), and what
// the client sends (section 3).

import assert from "node:assert/strict";
import { test } from "node:test";
import WebSocket from "ws";
import { NotConnectedError } from "../src/index.js";
import { BOUNDED, collect, once, setup, sync, welcomed } from "../test-support/fake-server.js";

const DIRECT = { room: null, epoch: null, offset: null };

test("room messages carry their payload in its own type, and their room and position", async (t) => {
  const { server, client } = await setup(t);
  const connection = await welcomed(server, client);
  const messages = collect(client, "message", 4);
  connection.send({ type: "fastws.message", room: "chat", epoch: "e1", offset: 1, data: { text: "hi", n: [1, 2] } });
  connection.send({ type: "fastws.message", room: "chat", epoch: "e1", offset: 2, text: "plain words" });
  connection.send({ type: "fastws.message", room: 7, epoch: "e2", offset: 9, bytes: Buffer.from([0, 1, 254, 255]).toString("base64") });
  connection.send({ type: "fastws.message", room: "no-history", data: 3.5 });
  assert.deepEqual(await messages, [
    [{ text: "hi", n: [1, 2] }, { room: "chat", epoch: "e1", offset: 1 }],
    ["plain words", { room: "chat", epoch: "e1", offset: 2 }],
    [new Uint8Array([0, 1, 254, 255]), { room: 7, epoch: "e2", offset: 9 }],
    [3.5, { room: "no-history", epoch: null, offset: null }],
  ]);
  assert.deepEqual(
    client.positions,
    new Map([
      ["chat", { epoch: "e1", offset: 2 }],
      [7, { epoch: "e2", offset: 9 }],
    ]),
  );
});

test("direct frames arrive as sent: text as a string, binary as a Uint8Array", async (t) => {
  const { server, client } = await setup(t);
  const connection = await welcomed(server, client);
  const messages = collect(client, "message", 4);
  connection.send("hello");
  connection.send(new Uint8Array([9, 8, 7]));
  connection.send('{"type": "unheard", "x": 1}');
  connection.send("[1, 2]");
  assert.deepEqual(await messages, [
    ["hello", DIRECT],
    [new Uint8Array([9, 8, 7]), DIRECT],
    ['{"type": "unheard", "x": 1}', DIRECT],
    ["[1, 2]", DIRECT],
  ]);
});

test("a server event goes to its listeners, without its type", async (t) => {
  const { server, client } = await setup(t);
  const connection = await welcomed(server, client);
  const notified = once(client, "notification");
  const unexpected = () => assert.fail("event delivered as a message");
  client.on("message", unexpected);
  connection.send({ type: "notification", message: "Update available", level: 2 });
  assert.deepEqual(await notified, [{ message: "Update available", level: 2 }]);
  client.off("message", unexpected);

  // Once its last listener is gone, the event is a message again.
  const listener = () => assert.fail("removed listener called");
  client.on("notification", listener).off("notification", listener);
  const message = once(client, "message");
  connection.send({ type: "notification", message: "again" });
  assert.deepEqual(await message, ['{"type":"notification","message":"again"}', DIRECT]);
});

test("a server event named like one of the client's own events arrives as a message", async (t) => {
  const { server, client } = await setup(t);
  const connection = await welcomed(server, client);
  const closes = [];
  client.on("close", (info) => closes.push(info));
  const message = once(client, "message");
  connection.send({ type: "close", now: true });
  assert.deepEqual(await message, ['{"type":"close","now":true}', DIRECT]);
  assert.deepEqual(closes, []);
});

test("listening to a fastws.* name is refused", async (t) => {
  const { client } = await setup(t);
  assert.throws(() => client.on("fastws.message", () => {}), TypeError);
  assert.throws(() => client.on("message", "not a function"), TypeError);
});

test("unknown fastws.* frames, and unknown fields, are ignored", async (t) => {
  const { server, client } = await setup(t);
  const connection = await welcomed(server, client);
  const message = once(client, "message");
  connection.send({ type: "fastws.future", room: "chat", data: "must not show" });
  connection.send({ type: "fastws.heartbeat" });
  connection.send({ type: "fastws.message", room: "chat", epoch: "e", offset: 1, text: "shown", flavour: "new" });
  assert.deepEqual(await message, ["shown", { room: "chat", epoch: "e", offset: 1 }]);
});

test("a room message that cannot be decoded fires error, is not delivered, and does not move the position", BOUNDED, async (t) => {
  const { server, client } = await setup(t);
  const connection = await welcomed(server, client);
  const errors = [];
  const delivered = [];
  const gaps = [];
  client.on("error", (error) => errors.push(error));
  client.on("message", (data, meta) => meta.room && delivered.push(data));
  client.on("gap", (gap) => gaps.push(gap));
  connection.send({ type: "fastws.joined", room: "chat", epoch: "e", offset: 1 });
  const at = { type: "fastws.message", room: "chat", epoch: "e", offset: 2 };
  connection.send({ ...at, bytes: "not base64!" });
  connection.send({ ...at, bytes: null });
  connection.send({ ...at, text: 5 });
  // None of data, text, bytes: nothing to deliver.
  connection.send({ ...at, payload: "unknown field" });
  await sync(connection, client);
  assert.equal(errors.length, 4);
  for (const error of errors) {
    assert.ok(error instanceof TypeError, String(error));
    assert.match(error.message, /room "chat" at e:2/);
  }
  assert.deepEqual(delivered, []);
  assert.deepEqual(gaps, []);
  assert.deepEqual(client.positions.get("chat"), { epoch: "e", offset: 1 });

  // A reconnection asks for the message again.
  connection.ws.close(1001);
  const next = await server.next();
  assert.deepEqual(next.positions, [["chat", "e", 1]]);
});

test("the next room message after an undecodable one reports the hole as a gap", BOUNDED, async (t) => {
  const { server, client } = await setup(t);
  const connection = await welcomed(server, client);
  const gaps = [];
  client.on("error", () => {});
  client.on("gap", (gap) => gaps.push(gap));
  connection.send({ type: "fastws.joined", room: "chat", epoch: "e", offset: 1 });
  connection.send({ type: "fastws.message", room: "chat", epoch: "e", offset: 2, bytes: "%%%%" });
  const message = once(client, "message");
  connection.send({ type: "fastws.message", room: "chat", epoch: "e", offset: 3, text: "ok" });
  assert.deepEqual(await message, ["ok", { room: "chat", epoch: "e", offset: 3 }]);
  assert.deepEqual(gaps, [{ room: "chat", epoch: "e", expected: 2, got: 3 }]);
  assert.deepEqual(client.positions.get("chat"), { epoch: "e", offset: 3 });
});

test("fastws.sent advances the position, past the client's own messages; a hole in one epoch's offsets fires gap", async (t) => {
  const { server, client } = await setup(t);
  const connection = await welcomed(server, client);
  const gaps = [];
  const offsets = [];
  client.on("gap", (gap) => gaps.push(gap));
  client.on("message", (data, meta) => meta.room && offsets.push(meta.offset));
  connection.send({ type: "fastws.joined", room: "chat", epoch: "e", offset: 10 });
  connection.send({ type: "fastws.sent", room: "chat", epoch: "e", offset: 11 });
  await sync(connection, client);
  assert.deepEqual(client.positions.get("chat"), { epoch: "e", offset: 11 });
  // One notice may cover several of the client's own messages: not a gap.
  connection.send({ type: "fastws.sent", room: "chat", epoch: "e", offset: 13 });
  connection.send({ type: "fastws.sent", room: "chat", epoch: "e", offset: 14 });
  await sync(connection, client);
  assert.deepEqual(client.positions.get("chat"), { epoch: "e", offset: 14 });
  assert.deepEqual(gaps, []);

  connection.send({ type: "fastws.message", room: "chat", epoch: "e", offset: 15, data: 1 });
  connection.send({ type: "fastws.message", room: "chat", epoch: "e", offset: 17, data: 2 });
  // A new epoch restarts the offsets: not a gap.
  connection.send({ type: "fastws.message", room: "chat", epoch: "f", offset: 1, data: 3 });
  await sync(connection, client);
  assert.deepEqual(gaps, [{ room: "chat", epoch: "e", expected: 16, got: 17 }]);
  // Delivered all the same.
  assert.deepEqual(offsets, [15, 17, 1]);
  assert.deepEqual(client.positions.get("chat"), { epoch: "f", offset: 1 });
});

test("fastws.joined sets the position and reports recovery; fastws.left drops the position", async (t) => {
  const { server, client } = await setup(t);
  const connection = await welcomed(server, client);
  const outcomes = [];
  client.on("recovered", (outcome) => outcomes.push(outcome));
  connection.send({ type: "fastws.joined", room: "a", epoch: "e", offset: 5 });
  connection.send({ type: "fastws.joined", room: "b", epoch: "e", offset: 8, recovered: true, missed: 3 });
  connection.send({
    type: "fastws.joined",
    room: "c",
    epoch: "new",
    offset: 40,
    recovered: false,
    missed: 0,
    reason: "epoch changed",
  });
  await sync(connection, client);
  assert.deepEqual(outcomes, [
    { room: "b", recovered: true, missed: 3, reason: null },
    { room: "c", recovered: false, missed: 0, reason: "epoch changed" },
  ]);
  assert.deepEqual(
    client.positions,
    new Map([
      ["a", { epoch: "e", offset: 5 }],
      ["b", { epoch: "e", offset: 8 }],
      ["c", { epoch: "new", offset: 40 }],
    ]),
  );

  connection.send({ type: "fastws.left", room: "a" });
  // Joined again to a room that no longer keeps history: no position to hold.
  connection.send({ type: "fastws.joined", room: "b" });
  await sync(connection, client);
  assert.deepEqual([...client.positions.keys()], ["c"]);
});

test("positions is a copy", async (t) => {
  const { server, client } = await setup(t);
  const connection = await welcomed(server, client);
  connection.send({ type: "fastws.joined", room: "a", epoch: "e", offset: 5 });
  await sync(connection, client);
  client.positions.get("a").offset = 99;
  client.positions.delete("a");
  assert.deepEqual(client.positions.get("a"), { epoch: "e", offset: 5 });
});

test("an answer other than fastws.v1 makes every frame a plain message", async (t) => {
  // WebSockets refuse an answer that was not offered, and all the client offers are
  // fastws.v1 tokens: the test fakes what the client would see of another answer.
  class OtherAnswerWebSocket extends WebSocket {
    get protocol() {
      return "legacy";
    }
  }
  const { server, client } = await setup(t, { WebSocket: OtherAnswerWebSocket });
  const opened = once(client, "open");
  const connection = await server.next();
  assert.deepEqual(await opened, [{ version: null, heartbeat: 0, subprotocol: null }]);
  assert.equal(client.connected, true);

  const message = once(client, "message");
  const frame = '{"type":"fastws.message","room":"r","epoch":"e","offset":1,"data":1}';
  connection.send(frame);
  assert.deepEqual(await message, [frame, DIRECT]);
  assert.equal(client.positions.size, 0);
});

test("send picks the frame type by value; emit sends an event object", async (t) => {
  const { server, client } = await setup(t);
  const connection = await welcomed(server, client);
  client.send("words");
  client.send(new Uint8Array([1, 2]));
  client.send(new Uint16Array([0x0403]).buffer);
  client.send({ a: 1 });
  client.send(5);
  client.emit("chat", { text: "hi" });
  client.emit("chat", [1, 2]);
  client.emit("chat", { type: "ignored", n: 1 });
  client.emit("poke");
  const received = [];
  for (let i = 0; i < 9; i++) received.push(await connection.received());
  assert.deepEqual(received, [
    "words",
    new Uint8Array([1, 2]),
    new Uint8Array([3, 4]),
    '{"a":1}',
    "5",
    '{"text":"hi","type":"chat"}',
    '{"type":"chat","data":[1,2]}',
    '{"type":"chat","n":1}',
    '{"type":"poke"}',
  ]);
  assert.throws(() => client.send(undefined), TypeError);
});

test("emit refuses the server's own event names", async (t) => {
  const { server, client } = await setup(t);
  await welcomed(server, client);
  for (const type of ["open", "close", "error", "ping", "pong", "drain", "recovered", ""]) {
    assert.throws(() => client.emit(type, {}), TypeError, type);
  }
});

test("send and emit throw NotConnectedError while not connected", async (t) => {
  const { server, client } = await setup(t);
  const isNotConnected = (error) => error instanceof NotConnectedError && error instanceof Error && error.name === "NotConnectedError";
  // Connecting, but no welcome yet.
  assert.equal(client.connected, false);
  assert.throws(() => client.send("early"), isNotConnected);
  assert.throws(() => client.emit("chat", {}), isNotConnected);

  const connection = await welcomed(server, client);
  client.send("on time");
  assert.equal(await connection.received(), "on time");

  client.close();
  assert.equal(client.connected, false);
  assert.throws(() => client.send("late"), isNotConnected);
});

test("no frame of a socket reaches the client after close()", async (t) => {
  const { server, client } = await setup(t);
  const connection = await server.next();
  client.on("open", () => client.close());
  client.on("message", (data) => assert.fail(`late frame delivered: ${data}`));
  // Sent together, so the client holds the second frame when it closes on the first.
  connection.welcome();
  connection.send({ type: "fastws.message", room: "r", epoch: "e", offset: 1, text: "late" });
  connection.send("late too");
  // The server sees the socket close only after the client has read both frames.
  assert.deepEqual(await connection.closed, { code: 1000, reason: "" });
  assert.equal(client.positions.size, 0);
});
