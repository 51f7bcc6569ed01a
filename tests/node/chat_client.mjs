// Drives examples/chat.py with Node's `ws` client: two users in one room
// exchange messages, then one leaves. Prints one JSON line per thing a
// client received ({"client", "event", ...}) and exits 0 if every step saw
// what the chat example promises, 1 otherwise (the first mismatch on stderr).
//
// Usage: node chat_client.mjs ws://127.0.0.1:PORT

import WebSocket from 'ws';

const base = process.argv[2];
if (!base) {
  console.error('usage: node chat_client.mjs ws://127.0.0.1:PORT');
  process.exit(2);
}

// A hang guard, not a speed expectation.
const guard = setTimeout(() => {
  console.error('timed out');
  process.exit(1);
}, 15000);

// One client: its received messages wait in a queue until a step takes them.
function open(name, path) {
  const ws = new WebSocket(base + path);
  const queue = [];
  const waiting = [];
  const push = (item) => {
    console.log(JSON.stringify({ client: name, ...item }));
    const w = waiting.shift();
    if (w) w(item); else queue.push(item);
  };
  ws.on('message', (data, isBinary) => {
    push({ event: 'message', binary: isBinary, data: data.toString('utf8') });
  });
  ws.on('close', (code, reason) => push({ event: 'close', code, reason: reason.toString() }));
  ws.on('error', (err) => push({ event: 'error', message: err.message }));
  const next = () => new Promise((resolve) => {
    if (queue.length) resolve(queue.shift()); else waiting.push(resolve);
  });
  const opened = new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', reject);
  });
  return { ws, next, opened };
}

function expect(what, actual, expected) {
  const a = JSON.stringify(actual);
  const e = JSON.stringify(expected);
  if (a !== e) throw new Error(`${what}: expected ${e}, got ${a}`);
}

async function text(client) {
  const item = await client.next();
  expect('event', [item.event, item.binary], ['message', false]);
  return item.data;
}

async function chat(client) {
  const msg = JSON.parse(await text(client));
  expect('keys', Object.keys(msg).sort(), ['message', 'timestamp', 'user']);
  if (Number.isNaN(Date.parse(msg.timestamp))) throw new Error(`bad timestamp ${msg.timestamp}`);
  return [msg.user, msg.message];
}

async function main() {
  const alice = open('alice', '/chat/general?user=Alice');
  await alice.opened;
  const bob = open('bob', '/chat/general?user=Bob');
  await bob.opened;
  expect('join notice', await text(alice), 'Bob joined the room');

  alice.ws.send('hi from node');
  expect('plain message', await chat(bob), ['Alice', 'hi from node']);

  bob.ws.send(JSON.stringify({ type: 'message', content: 'Hello!' }));
  expect('message event', await chat(alice), ['Bob', 'Hello!']);

  const unicode = 'héllo wörld ✓';
  alice.ws.send(unicode);
  expect('unicode', await chat(bob), ['Alice', unicode]);

  bob.ws.send(JSON.stringify({ type: 'join-room', room: 'general' }));
  expect('switch', await text(bob), 'Switched to room: general');

  bob.ws.close(1000, 'bye');
  expect('leave notice', await text(alice), 'Bob left the room');
  const bobClosed = await bob.next();
  expect('bob close', [bobClosed.event, bobClosed.code], ['close', 1000]);

  alice.ws.close();
  const aliceClosed = await alice.next();
  expect('alice close', [aliceClosed.event, aliceClosed.code], ['close', 1005]);
}

main().then(
  () => { clearTimeout(guard); process.exit(0); },
  (err) => { console.error(err.message); process.exit(1); },
);
