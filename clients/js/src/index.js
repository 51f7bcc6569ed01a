/**
 * fastws-client: a client for fastws servers speaking the `fastws.v1` WebSocket
 * subprotocol (docs/protocol.md in the fastws repository). It reconnects by itself
 * and, on reconnection, asks the server to replay the room messages it missed.
 *
 * @module fastws-client
 */

const PROTOCOL = "fastws.v1";
const PROTOCOL_PREFIX = "fastws.";
const OPEN = 1; // WebSocket.OPEN, spelled out: a WebSocket implementation may not expose it statically

/** Close codes after which the protocol says to reconnect, besides 4000-4099. */
const RECONNECT_CODES = new Set([1001, 1005, 1006, 1011, 1012, 1013, 1014]);
const SERVICE_RESTART = 1012;
const HEARTBEAT_TIMEOUT = { code: 4000, reason: "heartbeat timeout" };
const OPEN_TIMEOUT = { code: 4000, reason: "open timeout" };
/** setTimeout fires at once for a longer delay. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** The server reads at most this many positions, and refuses a longer JSON list whole. */
const MAX_POSITIONS = 64;
const MAX_POSITIONS_BYTES = 4096;

/** The client's own events: a server event by one of these names arrives as "message". */
const OWN_EVENTS = new Set(["message", "open", "close", "recovered", "reconnecting", "error", "gap"]);
/** The server's own events: it never hands them to the application, so emit() refuses them. */
const SERVER_EVENTS = new Set(["open", "close", "error", "ping", "pong", "drain", "recovered"]);

/** RFC 7230 token characters: anything else cannot travel in Sec-WebSocket-Protocol. */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

const utf8 = new TextEncoder();
const ignore = () => {};

/**
 * Thrown by {@link Client#send} and {@link Client#emit} when the client is not
 * connected. The client never queues a message for later: the caller decides whether
 * to drop it, keep it, or wait for the next "open" event.
 */
export class NotConnectedError extends Error {
  /** @param {string} [message] */
  constructor(message = "fastws-client: not connected") {
    super(message);
    this.name = "NotConnectedError";
  }
}

/**
 * A connection to a fastws server that reconnects by itself, keeps each room's
 * position, and recovers missed room messages on reconnection. It starts connecting
 * as soon as it is constructed; see the README for every option and event.
 */
export class Client {
  #url;
  #WebSocket;
  #protocols;
  #recover;
  #base;
  #cap;
  #random;
  #params;
  #stableAfterMs;
  #openTimeoutMs;

  #listeners = new Map();
  /** room -> {epoch, offset}; Map order is recency, oldest first, for the positions token. */
  #positions = new Map();
  /**
   * The rooms the client held a position for when it opened this connection, until the
   * server joins it to them: each join must say how the recovery went.
   */
  #awaitingRecovery = new Set();

  #sock = null;
  #opened = false;
  #plain = false;
  #connected = false;
  #subprotocol = null;
  #closed = false;
  #attempt = 0;
  #retryTimer = null;
  #openTimer = null;
  #connectedAt = 0;
  #heartbeatMs = 0;
  #lastFrame = 0;
  #watchdog = null;

  /**
   * @param {string | URL} url the server's WebSocket URL (`ws:` or `wss:`)
   * @param {object} [options] recover, protocols, WebSocket, backoff, params, random,
   *     stableAfter, openTimeout: see ClientOptions in index.d.ts and the README
   */
  constructor(url, options = {}) {
    const {
      recover = true,
      protocols = [],
      WebSocket = globalThis.WebSocket,
      backoff = {},
      params,
      random = Math.random,
      stableAfter = 5,
      openTimeout = 10,
    } = options;
    if (typeof WebSocket !== "function") {
      throw new TypeError(
        "fastws-client: no WebSocket implementation; on Node 20 pass one: new Client(url, {WebSocket}) with WebSocket from the ws package",
      );
    }
    // Resolving against the page lets a browser app pass a relative URL.
    this.#url = new URL(url, globalThis.location?.href);
    this.#WebSocket = WebSocket;
    this.#protocols = checkProtocols(protocols);
    this.#recover = recover;
    this.#base = backoff.base ?? 0.5;
    this.#cap = backoff.cap ?? 30;
    this.#random = random;
    this.#params = params;
    this.#stableAfterMs = seconds("stableAfter", stableAfter) * 1000;
    this.#openTimeoutMs = Math.min(seconds("openTimeout", openTimeout) * 1000, MAX_TIMER_MS);
    this.#connect();
  }

  /** True from the server's welcome until the connection closes. */
  get connected() {
    return this.#connected;
  }

  /** The application's subprotocol NAME when the server answered `fastws.v1+NAME`, else null. */
  get subprotocol() {
    return this.#subprotocol;
  }

  /**
   * The last position received in each room, oldest update first: a copy, so changing
   * it changes nothing in the client.
   * @returns {Map<string | number, {epoch: string, offset: number}>}
   */
  get positions() {
    return new Map([...this.#positions].map(([room, { epoch, offset }]) => [room, { epoch, offset }]));
  }

  /**
   * Listen to one of the client's events ("message", "open", "close", "recovered",
   * "reconnecting", "gap", "error") or to a server event by its "type".
   * @param {string} event
   * @param {Function} listener
   * @returns {this}
   */
  on(event, listener) {
    checkListener(event, listener);
    let listeners = this.#listeners.get(event);
    if (!listeners) this.#listeners.set(event, (listeners = new Set()));
    listeners.add(listener);
    return this;
  }

  /**
   * Stop calling a listener added with {@link Client#on}.
   * @param {string} event
   * @param {Function} listener
   * @returns {this}
   */
  off(event, listener) {
    const listeners = this.#listeners.get(event);
    // An event type without listeners must go back to "message", so the empty set goes.
    if (listeners?.delete(listener) && listeners.size === 0) this.#listeners.delete(event);
    return this;
  }

  /**
   * Send a message: a string as a text frame, an ArrayBuffer or typed array as a binary
   * frame, anything else as JSON text.
   * @param {unknown} data
   * @throws {NotConnectedError} when not connected: nothing is queued
   */
  send(data) {
    const sock = this.#liveSocket();
    sock.send(encode(data));
  }

  /**
   * Send an event the server's route hands to `ws.on(type, ...)`: `{type, ...payload}`
   * for a plain object payload (its own "type" key is overridden), `{type, data: payload}`
   * otherwise.
   * @param {string} type
   * @param {unknown} [payload]
   * @throws {NotConnectedError} when not connected: nothing is queued
   */
  emit(type, payload) {
    if (typeof type !== "string" || type === "") throw new TypeError("fastws-client: an event type is a non-empty string");
    if (SERVER_EVENTS.has(type)) {
      throw new TypeError(`fastws-client: "${type}" is one of the server's own events; a client cannot raise it`);
    }
    this.send(isPlainObject(payload) ? { ...payload, type } : { type, data: payload });
  }

  /**
   * Close the connection and stop reconnecting, for good. Fires a last "close" event
   * with `willReconnect: false`.
   * @param {number} [code]
   * @param {string} [reason]
   */
  close(code = 1000, reason = "") {
    if (this.#closed) return;
    // First, so that a code the WebSocket refuses throws before the client changes state.
    this.#sock?.close(code, reason);
    this.#closed = true;
    clearTimeout(this.#retryTimer);
    if (this.#sock) this.#release();
    this.#emit("close", { code, reason, willReconnect: false });
  }

  async #connect() {
    try {
      const url = await this.#target();
      if (this.#closed) return;
      this.#attach(new this.#WebSocket(url, this.#offer()));
    } catch (error) {
      // params() failing or the WebSocket constructor refusing is a connection that never
      // opened: the protocol has those retried.
      if (this.#closed) return;
      this.#emit("error", error);
      this.#reconnectLater(false);
    }
  }

  /** The URL with the query parameters params() gives now (fresh credentials, say). */
  async #target() {
    if (!this.#params) return this.#url.href;
    const url = new URL(this.#url);
    for (const [key, value] of new URLSearchParams(await this.#params())) url.searchParams.set(key, value);
    return url.href;
  }

  #offer() {
    const offer = this.#protocols.map((name) => `${PROTOCOL}+${name}`);
    offer.push(PROTOCOL);
    // Every room held, whether its position fits in the token or not: a join that does
    // not report a recovery for one of them must not pass for a seamless one.
    this.#awaitingRecovery = new Set(this.#recover ? this.#positions.keys() : []);
    const token = this.#recover && positionsToken(this.#positions);
    if (token) offer.push(token);
    return offer;
  }

  #attach(sock) {
    sock.binaryType = "arraybuffer";
    sock.onopen = () => this.#onOpen(sock);
    sock.onmessage = (event) => this.#onFrame(event.data);
    sock.onerror = (event) => this.#emit("error", event.error ?? new Error("fastws-client: WebSocket error"));
    sock.onclose = (event) => this.#onClose(event);
    this.#sock = sock;
    this.#opened = false;
    // A stalled network may neither open nor fail the socket, and a server may open it
    // and never welcome: the heartbeat watchdog only starts at the welcome.
    if (this.#openTimeoutMs > 0) this.#openTimer = setTimeout(() => this.#abandon(OPEN_TIMEOUT), this.#openTimeoutMs);
  }

  /** Forget the current socket: none of its later events reaches the client. */
  #release() {
    const sock = this.#sock;
    sock.onopen = sock.onmessage = sock.onclose = null;
    // ws raises an unhandled "error" when close() aborts a handshake still under way.
    sock.onerror = ignore;
    clearTimeout(this.#watchdog);
    clearTimeout(this.#openTimer);
    this.#watchdog = this.#openTimer = null;
    // Only a connection that lasted starts the backoff again: a server sends its welcome
    // before the route runs, and a route that closes every connection at once must not
    // get a tight reconnection loop.
    if (this.#connected && performance.now() - this.#connectedAt >= this.#stableAfterMs) this.#attempt = 0;
    this.#sock = null;
    this.#connected = false;
  }

  #onOpen(sock) {
    this.#opened = true;
    const answer = sock.protocol;
    this.#subprotocol = answer.startsWith(`${PROTOCOL}+`) ? answer.slice(PROTOCOL.length + 1) : null;
    // Without a fastws.v1 answer the server does not speak it: every frame is plain,
    // and no welcome will come.
    this.#plain = answer !== PROTOCOL && this.#subprotocol === null;
    if (this.#plain) this.#ready({ version: null, heartbeat: 0, subprotocol: null });
  }

  #onFrame(data) {
    this.#lastFrame = performance.now();
    try {
      if (typeof data === "string") this.#onText(data);
      else this.#emit("message", new Uint8Array(data), directMeta());
    } catch (error) {
      // A malformed frame (bad base64, say) must not throw inside the WebSocket's own code.
      this.#emit("error", error);
    }
  }

  #onText(text) {
    const object = parseTyped(text);
    if (object && !this.#plain && object.type.startsWith(PROTOCOL_PREFIX)) return this.#onProtocol(object);
    if (object && !OWN_EVENTS.has(object.type) && this.#listeners.has(object.type)) {
      const { type, ...payload } = object;
      return this.#emit(type, payload);
    }
    this.#emit("message", text, directMeta());
  }

  #onProtocol(frame) {
    switch (frame.type) {
      case "fastws.welcome":
        return this.#onWelcome(frame);
      case "fastws.message":
        return this.#onRoomMessage(frame);
      case "fastws.sent":
        // The messages since the last position that we were not sent are our own.
        return this.#advance(frame, false);
      case "fastws.joined":
        return this.#onJoined(frame);
      case "fastws.left":
        return this.#positions.delete(frame.room);
      // Any other type (fastws.heartbeat, or one added later) is ignored, as the
      // protocol requires; its arrival already counted as a sign of life.
    }
  }

  #onWelcome(frame) {
    // A second welcome would arm a second watchdog.
    if (this.#connected) return;
    const { type, ...info } = frame;
    this.#ready({ ...info, subprotocol: this.#subprotocol });
  }

  #ready(info) {
    this.#connected = true;
    this.#connectedAt = performance.now();
    clearTimeout(this.#openTimer);
    this.#openTimer = null;
    this.#heartbeatMs = info.heartbeat > 0 ? info.heartbeat * 1000 : 0;
    if (this.#heartbeatMs > 0) this.#watch(2 * this.#heartbeatMs);
    this.#emit("open", info);
  }

  /**
   * One timer per heartbeat window rather than one per frame: on expiry it looks at
   * when the last frame came and sleeps again for the rest of the window.
   */
  #watch(wait) {
    this.#watchdog = setTimeout(() => {
      const limit = 2 * this.#heartbeatMs;
      const silent = performance.now() - this.#lastFrame;
      if (silent < limit) this.#watch(limit - silent);
      else this.#abandon(HEARTBEAT_TIMEOUT);
    }, wait);
  }

  /** Give a silent connection (or attempt) up at once: its close handshake may never finish. */
  #abandon({ code, reason }) {
    const sock = this.#sock;
    this.#release();
    sock.close(code, reason);
    this.#ended(code, reason, true);
  }

  #onRoomMessage(frame) {
    const meta = { room: frame.room, epoch: frame.epoch ?? null, offset: frame.offset ?? null };
    // Decoded before the position moves: a message that cannot be delivered throws here
    // ("error" event), and the position stays before it so a reconnection asks for it
    // again (and the next message of the room reports it as a gap).
    const data = roomPayload(frame, meta);
    this.#advance(frame);
    this.#emit("message", data, meta);
  }

  /** Record a room message's position, reporting a hole in the offsets of one epoch. */
  #advance({ room, epoch, offset }, checked = true) {
    if (epoch === undefined || offset === undefined) return; // the room keeps no history
    const last = this.#positions.get(room);
    this.#setPosition(room, epoch, offset);
    if (checked && last?.epoch === epoch && offset !== last.offset + 1) {
      this.#emit("gap", { room, epoch, expected: last.offset + 1, got: offset });
    }
  }

  #onJoined(frame) {
    const { room, epoch, offset } = frame;
    // The room's current position replaces whatever the client held, recovered or not;
    // a room without history has no position to hold.
    if (epoch !== undefined && offset !== undefined) this.#setPosition(room, epoch, offset);
    else this.#positions.delete(room);
    const held = this.#awaitingRecovery.delete(room);
    if (typeof frame.recovered === "boolean") {
      this.#emit("recovered", { room, recovered: frame.recovered, missed: frame.missed ?? 0, reason: frame.reason ?? null });
    } else if (held) {
      // The client held a position for the room but the server did not use it: trimmed
      // from the token (past 64 rooms or 4096 bytes), or a server that did not answer.
      // Whatever came in between is lost: say so rather than adopt the new position.
      this.#emit("recovered", { room, recovered: false, missed: 0, reason: "not sent" });
    }
  }

  #setPosition(room, epoch, offset) {
    // Re-inserting moves the room to the end: the Map's order is the recency order.
    this.#positions.delete(room);
    this.#positions.set(room, { epoch, offset });
  }

  #onClose({ code, reason }) {
    // A connection that never opened (refused, unreachable, failed handshake) is retried
    // whatever its code says.
    const retry = !this.#opened || reconnects(code);
    this.#release();
    this.#ended(code, reason, retry);
  }

  #ended(code, reason, retry) {
    if (!retry) this.#closed = true;
    this.#emit("close", { code, reason, willReconnect: retry });
    // A "close" listener may have called close().
    if (retry && !this.#closed) this.#reconnectLater(code === SERVICE_RESTART);
  }

  /**
   * Full jitter: a random wait in [0, min(cap, base * 2^attempt)); after a service
   * restart that ends a lasting connection (attempt 0), in [0, 1 s) whatever the
   * backoff, since the server is expected back at once. A 1012 counts as an attempt
   * like any other, so a server that keeps answering 1012 is backed off from too.
   */
  #reconnectLater(afterRestart) {
    const ceiling = afterRestart && this.#attempt === 0 ? 1 : Math.min(this.#cap, this.#base * 2 ** this.#attempt);
    const delay = this.#random() * ceiling;
    const attempt = this.#attempt++;
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = null;
      this.#connect();
    }, delay * 1000);
    this.#emit("reconnecting", { attempt, delay });
  }

  #liveSocket() {
    // A socket in its closing handshake would drop the frame without a word.
    if (!this.#connected || this.#sock.readyState !== OPEN) throw new NotConnectedError();
    return this.#sock;
  }

  #emit(event, ...args) {
    const listeners = this.#listeners.get(event);
    if (!listeners) return;
    // A copy: a listener may add or remove listeners.
    for (const listener of [...listeners]) {
      try {
        listener.apply(this, args);
      } catch (error) {
        // Rethrown outside the client so a faulty listener neither breaks the client's
        // state nor silences the other listeners, yet is still reported.
        queueMicrotask(() => {
          throw error;
        });
      }
    }
  }
}

function checkProtocols(protocols) {
  if (!Array.isArray(protocols)) throw new TypeError("fastws-client: protocols is an array of subprotocol names");
  for (const name of protocols) {
    if (typeof name !== "string" || !TOKEN.test(name) || name.startsWith(PROTOCOL_PREFIX)) {
      throw new TypeError(`fastws-client: invalid subprotocol name ${JSON.stringify(name)}`);
    }
  }
  // A WebSocket refuses a subprotocol offered twice.
  return [...new Set(protocols)];
}

function checkListener(event, listener) {
  if (typeof event !== "string" || event === "") throw new TypeError("fastws-client: an event name is a non-empty string");
  if (event.startsWith(PROTOCOL_PREFIX)) {
    throw new TypeError(`fastws-client: "${event}" is reserved by the protocol and never delivered`);
  }
  if (typeof listener !== "function") throw new TypeError("fastws-client: a listener is a function");
}

/** A duration option, in seconds: a finite number, 0 or more. */
function seconds(name, value) {
  if (typeof value !== "number" || !Number.isFinite(value) || value < 0) {
    throw new TypeError(`fastws-client: ${name} is a number of seconds, 0 or more`);
  }
  return value;
}

/** Whether the protocol's close-code table says to reconnect. */
function reconnects(code) {
  return RECONNECT_CODES.has(code) || (code >= 4000 && code <= 4099);
}

/**
 * The `fastws.v1.positions.` token: base64url (no padding) of the UTF-8 JSON
 * `[[room, epoch, offset], ...]`, kept to the server's bounds by dropping the least
 * recently updated rooms, since the server refuses an over-long list whole.
 */
function positionsToken(positions) {
  const triples = [...positions].slice(-MAX_POSITIONS).map(([room, { epoch, offset }]) => [room, epoch, offset]);
  let json = utf8.encode(JSON.stringify(triples));
  while (json.length > MAX_POSITIONS_BYTES) {
    triples.shift();
    json = utf8.encode(JSON.stringify(triples));
  }
  return triples.length > 0 ? `${PROTOCOL}.positions.${base64url(json)}` : null;
}

function base64url(bytes) {
  let binary = "";
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary).replace(/=+$/, "").replace(/\+/g, "-").replace(/\//g, "_");
}

function decodeBase64(text) {
  return Uint8Array.from(atob(text), (char) => char.charCodeAt(0));
}

/**
 * A room message's payload in its own type, from whichever of its three fields it has.
 * Throws when it cannot be delivered: none of the three, or a field of the wrong form.
 */
function roomPayload(frame, meta) {
  if ("data" in frame) return frame.data;
  if ("text" in frame) {
    if (typeof frame.text === "string") return frame.text;
    throw undeliverable("its text is not a string", meta);
  }
  if ("bytes" in frame) {
    let cause;
    if (typeof frame.bytes === "string") {
      try {
        return decodeBase64(frame.bytes);
      } catch (error) {
        cause = error;
      }
    }
    throw undeliverable("its bytes are not base64", meta, cause);
  }
  throw undeliverable("it has no data, text or bytes", meta);
}

function undeliverable(why, { room, epoch, offset }, cause) {
  const where = `room ${JSON.stringify(room)}${offset === null ? "" : ` at ${epoch}:${offset}`}`;
  return new TypeError(`fastws-client: undeliverable room message in ${where}: ${why}`, cause && { cause });
}

function directMeta() {
  return { room: null, epoch: null, offset: null };
}

/** The JSON object in a text frame when it has a string "type", else null. */
function parseTyped(text) {
  // Most plain text is not JSON: skip the parse and its exception for it.
  if (!/^\s*\{/.test(text)) return null;
  try {
    const value = JSON.parse(text);
    return typeof value.type === "string" ? value : null;
  } catch {
    return null;
  }
}

function isPlainObject(value) {
  if (typeof value !== "object" || value === null) return false;
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

function encode(data) {
  if (typeof data === "string" || data instanceof ArrayBuffer || ArrayBuffer.isView(data)) return data;
  const json = JSON.stringify(data);
  if (json === undefined) throw new TypeError(`fastws-client: cannot send ${typeof data} as JSON`);
  return json;
}
