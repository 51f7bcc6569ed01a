// Node.js with the npm `ws` package: /echo, /fanout (one room, to all others),
// /room/<name> (that room, to all others) and /chat/<room>?user=<name> (JSON chat:
// {"type":"message","content":...} in, {"user","message","timestamp"} to the others).
// ws has no rooms: a room is a Set of sockets, sent to in a loop, as ws's README does.
// BENCH_COMPRESSION=1: permessage-deflate on with ws's defaults (perMessageDeflate: true).
'use strict';
const http = require('http');
const { WebSocketServer, WebSocket } = require('ws');

const port = Number(process.argv[2]);
const compression = process.env.BENCH_COMPRESSION === '1';
const options = { noServer: true, perMessageDeflate: compression, maxPayload: 1 << 20 };
const echo = new WebSocketServer(options);
const fanout = new WebSocketServer(options);
const rooms = new WebSocketServer(options);
const room = new Set();
const named = new Map();                       // room name -> Set of sockets

echo.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
});

fanout.on('connection', (ws) => {
  room.add(ws);
  ws.on('message', (data, isBinary) => {
    for (const peer of room) {
      if (peer !== ws && peer.readyState === WebSocket.OPEN) peer.send(data, { binary: isBinary });
    }
  });
  ws.on('close', () => room.delete(ws));
});

function relay(members, ws, data, isBinary) {
  for (const peer of members) {
    if (peer !== ws && peer.readyState === WebSocket.OPEN) peer.send(data, { binary: isBinary });
  }
}

// /room/<name> relays every message; /chat/<room> answers chat events with the chat object.
rooms.on('connection', (ws, req, name, user) => {
  let members = named.get(name);
  if (!members) named.set(name, (members = new Set()));
  members.add(ws);
  ws.on('message', (data, isBinary) => {
    if (user === null) {
      relay(members, ws, data, isBinary);
      return;
    }
    if (isBinary) return;
    let event;
    try {
      event = JSON.parse(data.toString());
    } catch {
      return;
    }
    if (!event || event.type !== 'message') return;
    const timestamp = new Date().toISOString();
    const reply = JSON.stringify({ user, message: event.content, timestamp });
    relay(members, ws, reply, false);
  });
  ws.on('close', () => {
    members.delete(ws);
    if (members.size === 0 && named.get(name) === members) named.delete(name);
  });
});

const server = http.createServer((req, res) => {
  res.writeHead(426);
  res.end();
});
server.on('upgrade', (req, socket, head) => {
  const url = new URL(req.url, 'http://localhost');
  const path = url.pathname;
  let wss = path === '/echo' ? echo : path === '/fanout' ? fanout : null;
  let name = null;
  let user = null;
  if (path.startsWith('/room/') && path.length > 6) {
    wss = rooms;
    name = path.slice(6);
  } else if (path.startsWith('/chat/') && path.length > 6) {
    wss = rooms;
    name = path.slice(6);
    user = url.searchParams.get('user') || 'Anonymous';
  }
  if (!wss) {
    socket.destroy();
    return;
  }
  wss.handleUpgrade(req, socket, head, (ws) => wss.emit('connection', ws, req, name, user));
});
// Backlog 4096: thousands of clients connect at once.
server.listen(port, '127.0.0.1', 4096);
