// Node's `ws` client with permessage-deflate against a fastws echo route.
// Sends text and binary messages, small and large, whole and fragmented,
// each waiting for its echo, and prints one JSON line per step:
//   {"event": "open", "extensions": <the server's Sec-WebSocket-Extensions or null>}
//   {"event": "echo", "name", "binary", "size", "ok", "sent_wire", "recv_wire"}
//   {"event": "close", "code"}
// sent_wire / recv_wire are the TCP bytes the client wrote and read for that
// exchange (frame headers included), so the test can tell whether each
// direction went compressed. Exits 0 when every echo came back intact.
//
// Usage: node compression_client.mjs ws://127.0.0.1:PORT/echo 'PERMESSAGE_DEFLATE_JSON'
// where the JSON is ws's perMessageDeflate option (an object, or false).

import WebSocket from 'ws';

const [url, optionsJson] = process.argv.slice(2);
if (!url || optionsJson === undefined) {
  console.error("usage: node compression_client.mjs URL 'PERMESSAGE_DEFLATE_JSON'");
  process.exit(2);
}
const perMessageDeflate = JSON.parse(optionsJson);

// A hang guard, not a speed expectation.
const guard = setTimeout(() => {
  console.error('timed out');
  process.exit(1);
}, 30000);

// Deterministic pseudo-random bytes (no seedable RNG in Node's core):
// incompressible, so deflate cannot shrink them.
function noise(n, seed) {
  const out = Buffer.alloc(n);
  let x = seed >>> 0;
  for (let i = 0; i < n; i++) {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    out[i] = x >>> 24;
  }
  return out;
}

// Chat-like JSON text of about n bytes, with non-ASCII characters so
// fragment boundaries can fall inside a UTF-8 sequence.
function chat(n, seed) {
  const words = ['hello', 'lunch', 'déploy', 'review', 'the', 'a', 'to', 'tomorrow', 'ok ✓', 'thanks'];
  const rng = noise(n, seed);
  const items = [];
  let size = 0;
  for (let i = 0; size < n; i++) {
    const text = Array.from({ length: 10 }, (_, j) => words[rng[(i * 10 + j) % n] % words.length]).join(' ');
    const item = JSON.stringify({ type: 'message', user: `user${rng[i % n]}`, id: i, text });
    items.push(item);
    size += Buffer.byteLength(item) + 1;
  }
  return '[' + items.join(',') + ']';
}

// [name, payload, binary, number of fragments]
const STEPS = [
  ['text_small', 'héllo ✓', false, 1],
  ['binary_small', Buffer.from([0, 1, 2, 3, 250, 251, 252, 253, 254, 255]), true, 1],
  ['text_100k', chat(100 * 1024, 1), false, 1],
  ['binary_100k_noise', noise(100 * 1024, 2), true, 1],
  ['binary_1m', Buffer.from(chat(1024 * 1024, 3)), true, 1],
  ['text_100k_fragmented', chat(100 * 1024, 4), false, 3],
  ['binary_1m_fragmented', Buffer.from(chat(1024 * 1024, 5)), true, 4],
  // The same message twice in a row: with context takeover the second
  // refers to the first.
  ['text_10k', chat(10 * 1024, 6), false, 1],
  ['text_10k_again', chat(10 * 1024, 6), false, 1],
  ['text_small_again', 'héllo ✓', false, 1],
];

const ws = new WebSocket(url, { perMessageDeflate });
let extensions = null;
ws.on('upgrade', (res) => { extensions = res.headers['sec-websocket-extensions'] ?? null; });

const incoming = [];
const waiting = [];
ws.on('message', (data, isBinary) => {
  const item = { data, isBinary };
  const w = waiting.shift();
  if (w) w(item); else incoming.push(item);
});
const nextMessage = () => new Promise((resolve) => {
  if (incoming.length) resolve(incoming.shift()); else waiting.push(resolve);
});
const closed = new Promise((resolve) => ws.on('close', (code) => resolve(code)));
ws.on('error', (err) => {
  console.log(JSON.stringify({ event: 'error', message: err.message }));
  process.exit(1);
});

function send(payload, binary, fragments) {
  if (fragments === 1) {
    ws.send(payload, { binary });
    return;
  }
  // Byte-level cuts: for text they may split a multi-byte character.
  const bytes = Buffer.isBuffer(payload) ? payload : Buffer.from(payload, 'utf8');
  const step = Math.ceil(bytes.length / fragments);
  for (let i = 0; i < fragments; i++) {
    const part = bytes.subarray(i * step, Math.min((i + 1) * step, bytes.length));
    ws.send(part, { binary, fin: i === fragments - 1 });
  }
}

await new Promise((resolve, reject) => {
  ws.once('open', resolve);
  ws.once('error', reject);
});
console.log(JSON.stringify({ event: 'open', extensions }));

let allOk = true;
for (const [name, payload, binary, fragments] of STEPS) {
  const sock = ws._socket;
  const written = sock.bytesWritten;
  const read = sock.bytesRead;
  send(payload, binary, fragments);
  const echo = await nextMessage();
  const expected = Buffer.isBuffer(payload) ? payload : Buffer.from(payload, 'utf8');
  const ok = echo.isBinary === binary && Buffer.compare(echo.data, expected) === 0;
  allOk &&= ok;
  console.log(JSON.stringify({
    event: 'echo', name, binary, size: expected.length, ok,
    sent_wire: sock.bytesWritten - written, recv_wire: sock.bytesRead - read,
  }));
}

ws.close(1000);
console.log(JSON.stringify({ event: 'close', code: await closed }));
clearTimeout(guard);
process.exit(allOk ? 0 : 1);
