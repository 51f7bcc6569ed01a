// Bun.serve (uWebSockets inside) with its pub/sub: /echo and /fanout (one room, to all others).
// BENCH_COMPRESSION=1: permessage-deflate on, and every send and publish asks for it.
const port = Number(process.argv[2]);
const compression = process.env.BENCH_COMPRESSION === '1';

Bun.serve({
  hostname: '127.0.0.1',
  port,
  fetch(req, server) {
    const path = new URL(req.url).pathname;
    if ((path === '/echo' || path === '/fanout') && server.upgrade(req, { data: { path } })) return;
    return new Response('Upgrade Required', { status: 426 });
  },
  websocket: {
    perMessageDeflate: compression,
    maxPayloadLength: 1 << 20,
    idleTimeout: 240,
    open(ws) {
      if (ws.data.path === '/fanout') ws.subscribe('all');
    },
    message(ws, message) {
      // ws.publish reaches every subscriber except ws itself.
      if (ws.data.path === '/echo') ws.send(message, compression);
      else ws.publish('all', message, compression);
    },
  },
});
