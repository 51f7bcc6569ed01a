// Node.js with the npm `ws` package: /echo and /fanout (one room, to all others).
// BENCH_COMPRESSION=1: permessage-deflate on with ws's defaults (perMessageDeflate: true).
'use strict';
const http = require('http');
const { WebSocketServer, WebSocket } = require('ws');

const port = Number(process.argv[2]);
const compression = process.env.BENCH_COMPRESSION === '1';
const options = { noServer: true, perMessageDeflate: compression, maxPayload: 1 << 20 };
const echo = new WebSocketServer(options);
const fanout = new WebSocketServer(options);
const room = new Set();

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

const server = http.createServer((req, res) => {
  res.writeHead(426);
  res.end();
});
server.on('upgrade', (req, socket, head) => {
  const wss = req.url === '/echo' ? echo : req.url === '/fanout' ? fanout : null;
  if (!wss) {
    socket.destroy();
    return;
  }
  wss.handleUpgrade(req, socket, head, (ws) => wss.emit('connection', ws, req));
});
// Backlog 4096: thousands of clients connect at once.
server.listen(port, '127.0.0.1', 4096);
