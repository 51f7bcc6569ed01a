// Types for fastws-client: a client for fastws servers speaking the fastws.v1
// WebSocket subprotocol, with reconnection and recovery of missed room messages.

/** A value JSON can carry. */
export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };

/** A room's name: a string, or an integer for an application that numbers its rooms. */
export type Room = string | number;

/** Where the client stopped in a room: it has received every message up to `offset` of `epoch`. */
export interface Position {
  epoch: string;
  offset: number;
}

/**
 * What a message is: a JSON value (a room message's `data`), a string (a room message's
 * `text`, or a direct text frame), or bytes (a room message's `bytes`, or a direct
 * binary frame).
 */
export type MessageData = JsonValue | Uint8Array;

/** Where a message comes from: all null for a direct message. */
export interface MessageMeta {
  /** The room of a room message; null for a direct message. */
  room: Room | null;
  /** The message's epoch; null for a direct message or a room that keeps no history. */
  epoch: string | null;
  /** The message's offset in its epoch; null for a direct message or a room that keeps no history. */
  offset: number | null;
}

/** The server's `fastws.welcome`, less its type, plus the subprotocol answered. */
export interface OpenInfo {
  /** The protocol version; null when the server does not speak fastws.v1 (plain mode). */
  version: number | null;
  /** The server's heartbeat interval in seconds; 0 for none. */
  heartbeat: number;
  /** Why the server did not read the positions offered: "malformed" or "too large". */
  positions?: string;
  /** The application subprotocol NAME answered as `fastws.v1+NAME`, or null. */
  subprotocol: string | null;
  /** Fields a later server may add. */
  [field: string]: unknown;
}

export interface CloseInfo {
  /**
   * The close code: 1006 when the connection dropped or never opened; 4000 when the
   * client gave it up itself (reason "heartbeat timeout", or "open timeout" when no
   * welcome came within `openTimeout`).
   */
  code: number;
  reason: string;
  /** False on the last close event: the client stopped for good. */
  willReconnect: boolean;
}

export interface ReconnectingInfo {
  /** Consecutive retries before this one: 0 for the first. */
  attempt: number;
  /** Seconds until the client connects again. */
  delay: number;
}

/**
 * The outcome of a room's recovery: from a `fastws.joined` that carries one, or, with
 * reason "not sent", from a `fastws.joined` without one for a room the client held a
 * position for when it connected.
 */
export interface RecoveredInfo {
  room: Room;
  /** True when every missed message was replayed, just before this event. */
  recovered: boolean;
  /** How many messages were replayed. */
  missed: number;
  /**
   * Why the room could not be recovered; null when it was. The server's reasons:
   * "epoch changed", "too old", "no history", "bad position", "not read", "history
   * moved on", "unavailable". The client's own: "not sent", when the server joined a room
   * the client held a position for without a recovery outcome: its position was left out
   * of the positions token (past 64 rooms or 4096 bytes), or the server did not answer
   * for it.
   */
  reason: string | null;
}

/** A room message whose offset does not follow the previous one of the same epoch. */
export interface GapInfo {
  room: Room;
  epoch: string;
  /** The offset that should have come. */
  expected: number;
  /** The offset that came. */
  got: number;
}

/** The client's own events and their listeners. */
export interface ClientEventMap {
  message: (data: MessageData, meta: MessageMeta) => void;
  open: (info: OpenInfo) => void;
  close: (info: CloseInfo) => void;
  reconnecting: (info: ReconnectingInfo) => void;
  recovered: (info: RecoveredInfo) => void;
  gap: (info: GapInfo) => void;
  error: (error: unknown) => void;
}

/** A server event: its JSON object less "type". */
export type EventPayload = { [key: string]: JsonValue };

/** A server event's name: any string but the client's own events. */
export type ServerEventName<K extends string> = K extends keyof ClientEventMap ? never : K;

/**
 * The part of the standard WebSocket the client uses; the browser's and the `ws`
 * package's fit. Loosely typed: their event and data types differ.
 */
export interface WebSocketLike {
  readonly protocol: string;
  readonly readyState: number;
  binaryType: string;
  onopen: ((event: any) => void) | null;
  onmessage: ((event: any) => void) | null;
  onerror: ((event: any) => void) | null;
  onclose: ((event: any) => void) | null;
  send(data: any): void;
  close(code?: number, reason?: string): void;
}

export type WebSocketConstructor = new (url: string, protocols: string[]) => WebSocketLike;

/** Query parameters, in any form `URLSearchParams` accepts. */
export type Params = Record<string, string> | URLSearchParams | string[][] | string;

export interface ClientOptions {
  /** Offer the rooms' positions on reconnection so the server replays missed messages. Default true. */
  recover?: boolean;
  /** The application's own subprotocols, offered as `fastws.v1+NAME`, in preference order. */
  protocols?: string[];
  /** The WebSocket class; default `globalThis.WebSocket`. Required on Node 20: the `ws` package's. */
  WebSocket?: WebSocketConstructor;
  /** Reconnection backoff in seconds: a retry waits a random time in [0, min(cap, base * 2^attempt)). */
  backoff?: { base?: number; cap?: number };
  /** Query parameters added to the URL on every connection (fresh credentials, say). */
  params?: () => Params | Promise<Params>;
  /** The random source of the backoff jitter, in [0, 1). Default Math.random. */
  random?: () => number;
  /**
   * Seconds a connection must stay open, from its welcome, for the backoff to start again
   * from attempt 0 when it closes. Default 5; 0 resets at every welcome.
   */
  stableAfter?: number;
  /**
   * Seconds a connection attempt may take to get the server's welcome (a plain server's
   * open) before the client gives it up (close event: 4000, "open timeout") and retries
   * with backoff. Default 10; 0 turns it off. `params()` is not counted.
   */
  openTimeout?: number;
}

/** Thrown by send() and emit() when the client is not connected: nothing is queued. */
export class NotConnectedError extends Error {
  constructor(message?: string);
  name: "NotConnectedError";
}

/** A connection to a fastws server; it connects as soon as it is constructed. */
export class Client {
  constructor(url: string | URL, options?: ClientOptions);

  /** True from the server's welcome until the connection closes. */
  readonly connected: boolean;
  /** The application subprotocol NAME answered as `fastws.v1+NAME`, or null. */
  readonly subprotocol: string | null;
  /** The last position received in each room, oldest update first (a copy). */
  readonly positions: Map<Room, Position>;

  /** Listen to one of the client's own events. */
  on<E extends keyof ClientEventMap>(event: E, listener: ClientEventMap[E]): this;
  /**
   * Listen to a server event by its type: the listener gets the event object less its
   * "type". A server event named like one of the client's own events arrives as "message".
   */
  on<T = EventPayload, K extends string = string>(event: ServerEventName<K>, listener: (payload: T) => void): this;

  off<E extends keyof ClientEventMap>(event: E, listener: ClientEventMap[E]): this;
  off<T = EventPayload, K extends string = string>(event: ServerEventName<K>, listener: (payload: T) => void): this;

  /**
   * Send a string as a text frame, an ArrayBuffer or typed array as a binary frame,
   * anything else as JSON text.
   * @throws {NotConnectedError} when not connected
   */
  send(data: string | ArrayBuffer | ArrayBufferView | JsonValue | object): void;

  /**
   * Send the event `{type, ...payload}` for a plain object payload, `{type, data: payload}` otherwise.
   * @throws {NotConnectedError} when not connected
   * @throws {TypeError} for an empty type or one of the server's own events
   */
  emit(type: string, payload?: unknown): void;

  /** Close the connection and stop reconnecting, for good. */
  close(code?: number, reason?: string): void;
}
