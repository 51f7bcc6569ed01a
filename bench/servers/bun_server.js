// Bun.serve (uWebSockets inside) with its pub/sub: /echo, /fanout (one room, to all
// others), /room/<name> (that room's topic, to all others) and /chat/<room>?user=<name>
// (JSON chat: {"type":"message","content":...} in, {"user","message","timestamp"} out).
// ws.publish reaches every subscriber of the topic except ws itself.
// BENCH_COMPRESSION=1: permessage-deflate on, and every send and publish asks for it.
const port = Number(process.argv[2]);
const compression = process.env.BENCH_COMPRESSION === '1';

Bun.serve({
  hostname: '127.0.0.1',
  port,
  fetch(req, server) {
    const url = new URL(req.url);
    const path = url.pathname;
    let data = null;
    // The topic of a named room is its path, so /room/x and /chat/x are different rooms.
    if (path === '/echo' || path === '/fanout') data = { path, topic: 'all' };
    else if (path.startsWith('/room/') && path.length > 6) data = { path: '/room', topic: path };
    else if (path.startsWith('/chat/') && path.length > 6) {
      data = { path: '/chat', topic: path, user: url.searchParams.get('user') || 'Anonymous' };
    }
    if (data && server.upgrade(req, { data })) return;
    return new Response('Upgrade Required', { status: 426 });
  },
  websocket: {
    perMessageDeflate: compression,
    maxPayloadLength: 1 << 20,
    idleTimeout: 240,
    open(ws) {
      if (ws.data.path !== '/echo') ws.subscribe(ws.data.topic);
    },
    message(ws, message) {
      const { path, topic } = ws.data;
      if (path === '/echo') {
        ws.send(message, compression);
      } else if (path === '/chat') {
        if (typeof message !== 'string') return;
        let event;
        try {
          event = JSON.parse(message);
        } catch {
          return;
        }
        if (!event || event.type !== 'message') return;
        const timestamp = new Date().toISOString();
        const reply = JSON.stringify({ user: ws.data.user, message: event.content, timestamp });
        ws.publish(topic, reply, compression);
      } else {
        ws.publish(topic, message, compression);
      }
    },
  },
});
