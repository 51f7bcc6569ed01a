// A fake fastws server for the tests: it answers the handshake as docs/protocol.md
// section 1 says, decodes the positions token, and lets each test script the frames.
// It lives outside test/ because node --test runs every file under a test/ folder.

import WebSocket, { WebSocketServer } from "ws";
import { Client } from "../src/index.js";

const PROTOCOL = "fastws.v1";
const POSITIONS = `${PROTOCOL}.positions.`;

/** Start a server on a free port; `subprotocols` is the application's list, in its preference order. */
export async function startServer({ subprotocols = [] } = {}) {
  const wss = new WebSocketServer({
    port: 0,
    handleProtocols: (offered) => chooseProtocol([...offered], subprotocols),
  });
  await new Promise((resolve) => wss.once("listening", resolve));
  return new FakeServer(wss);
}

function chooseProtocol(offered, subprotocols) {
  const named = subprotocols.find((name) => offered.includes(`${PROTOCOL}+${name}`));
  if (named) return `${PROTOCOL}+${named}`;
  return offered.includes(PROTOCOL) ? PROTOCOL : false;
}

class FakeServer {
  #pending = [];
  #waiting = [];

  constructor(wss) {
    this.wss = wss;
    this.url = `ws://127.0.0.1:${wss.address().port}/ws`;
    this.count = 0;
    wss.on("connection", (ws, request) => {
      this.count += 1;
      this.#deliver(new Connection(ws, request));
    });
  }

  /** The next connection the server accepts (or the oldest one not yet taken). */
  next() {
    if (this.#pending.length > 0) return Promise.resolve(this.#pending.shift());
    return new Promise((resolve) => this.#waiting.push(resolve));
  }

  #deliver(connection) {
    const waiter = this.#waiting.shift();
    if (waiter) waiter(connection);
    else this.#pending.push(connection);
  }

  async close() {
    for (const ws of this.wss.clients) ws.terminate();
    await new Promise((resolve) => this.wss.close(resolve));
  }
}

class Connection {
  #messages = [];
  #waiting = [];

  constructor(ws, request) {
    this.ws = ws;
    this.path = request.url;
    this.offered = (request.headers["sec-websocket-protocol"] ?? "").split(",").map((token) => token.trim());
    this.positionsToken = this.offered.find((token) => token.startsWith(POSITIONS)) ?? null;
    this.closed = new Promise((resolve) => ws.once("close", (code, reason) => resolve({ code, reason: reason.toString() })));
    ws.on("message", (data, isBinary) => this.#deliver(isBinary ? new Uint8Array(data) : data.toString()));
  }

  /** The positions the client offered, decoded, or null when it offered none. */
  get positions() {
    if (this.positionsToken === null) return null;
    return JSON.parse(Buffer.from(this.positionsToken.slice(POSITIONS.length), "base64url").toString("utf8"));
  }

  /** The next message the client sent: a string for text, a Uint8Array for binary. */
  received() {
    if (this.#messages.length > 0) return Promise.resolve(this.#messages.shift());
    return new Promise((resolve) => this.#waiting.push(resolve));
  }

  #deliver(message) {
    const waiter = this.#waiting.shift();
    if (waiter) waiter(message);
    else this.#messages.push(message);
  }

  send(frame) {
    this.ws.send(typeof frame === "string" || frame instanceof Uint8Array ? frame : JSON.stringify(frame));
  }

  welcome(heartbeat = 0, extra = {}) {
    this.send({ type: "fastws.welcome", version: 1, heartbeat, ...extra });
  }
}

/**
 * node:test options for a test that awaits an event a faulty client may never fire:
 * it fails after a while instead of hanging the run.
 */
export const BOUNDED = { timeout: 5000 };

/**
 * A server and a client connecting to it, both closed when the test ends. The client
 * reconnects at once unless the test passes its own `random`.
 */
export async function setup(t, { server: serverOptions, ...clientOptions } = {}) {
  const server = await startServer(serverOptions);
  const client = new Client(server.url, { WebSocket, random: () => 0, ...clientOptions });
  t.after(async () => {
    client.close();
    await server.close();
  });
  return { server, client };
}

/** Open the next connection with a welcome and wait until the client has it. */
export async function welcomed(server, client, heartbeat = 0) {
  const connection = await server.next();
  const opened = once(client, "open");
  connection.welcome(heartbeat);
  await opened;
  return connection;
}

let syncs = 0;

/** Wait until the client has handled every frame the connection sent so far. */
export async function sync(connection, client) {
  const marker = `sync-${++syncs}`;
  const seen = new Promise((resolve) => {
    const listener = (data) => {
      if (data !== marker) return;
      client.off("message", listener);
      resolve();
    };
    client.on("message", listener);
  });
  connection.send(marker);
  await seen;
}

/** Resolve with the arguments of the next `event` the client fires. */
export function once(client, event) {
  return new Promise((resolve) => {
    const listener = (...args) => {
      client.off(event, listener);
      resolve(args);
    };
    client.on(event, listener);
  });
}

/** Resolve with the arguments of the next `count` `event`s the client fires. */
export function collect(client, event, count) {
  const seen = [];
  return new Promise((resolve) => {
    const listener = (...args) => {
      seen.push(args);
      if (seen.length < count) return;
      client.off(event, listener);
      resolve(seen);
    };
    client.on(event, listener);
  });
}
