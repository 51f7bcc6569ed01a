"""``python -m fastws.demo``: the chat example with a page to try it in a browser.

Open http://127.0.0.1:3000/ in two tabs, pick the same room, and chat. The page
shows how many are in the room across the whole cluster, live; the same app runs
unchanged on several processes::

    fastws fastws.demo:app --workers 2 --backplane redis://127.0.0.1:6379/0

The page talks through the JS client, ``fastws-client`` (``clients/js``; the
package ships a copy, served at ``/fastws-client.js``), which speaks the
``fastws.v1`` subprotocol: when the connection drops the page reconnects by
itself, to the room it is in, and the rooms keep a history (``HISTORY``
messages each), so it recovers the messages it missed and says "reconnected,
N missed messages recovered". When the history cannot serve it (the server
restarted, or it was away too long) it says "history lost, reloaded" and
reloads the room's last messages from ``/rooms/ROOM/history``. With a
backplane the history is the cluster's (kept in Redis), so a page recovers on
whichever node it reconnects to.

How the count reaches every member (``RoomCounts``): the node where someone
joins, leaves, switches rooms or disconnects asks ``app.cluster.room_size``
(its own members exactly, the other nodes' from Redis) and broadcasts
``{"type": "room-size", "room": ..., "count": n}`` to the room; the backplane
carries it to the members on every other node, so a join on node A updates the
pages on node B, and nothing polls while nothing changes.

Presence is eventually consistent: each node writes its counts once per loop
iteration, so when two nodes change a room at the same moment each may count
without the other's change, and pages show whichever count arrives last. With
a backplane a node therefore counts the room again ``SETTLE`` seconds after its
last change there and sends it again if it moved: by then every simultaneous
change is in Redis, so every node's last word is the true size. Every
``REFRESH`` seconds a node recounts the rooms it has members in and sends those
that differ from what it last sent: that catches a node that died without a
word (its presence expires after the backplane's ``presence_ttl``) and a
re-check that read a lagging Redis, at the cost of one repeated count per node
after a change made elsewhere. While Redis is unreachable nothing is sent (the
page keeps its last count); when the link is back every node sends every
room's count. Without a backplane the first count is exact, the only one sent,
and no timer runs.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import functools
import importlib.resources
import itertools
import logging
import weakref
from typing import Any, Coroutine

from fastws import Response, create_app, error_handler, websocket
from fastws.cluster.redis_link import RedisError

__all__ = ["app", "main", "RoomCounts", "room_counts", "SETTLE", "REFRESH", "HISTORY", "RELOAD"]

log = logging.getLogger("fastws.demo")

#: Seconds after the last change in a room before a node counts it again:
#: long enough for every node's presence write of a simultaneous change to
#: reach Redis (they go out within a loop iteration), short enough to look live.
SETTLE = 0.5
#: Seconds between a node's recounts of the rooms it has members in (with a
#: backplane only): what brings the count down when another node dies.
REFRESH = 5.0
#: Messages each room keeps, for a page that reconnects to recover what it
#: missed (and for /rooms/ROOM/history).
HISTORY = 200
#: How many of them /rooms/ROOM/history gives (a page reloading a room).
RELOAD = 50


app = create_app()
app.use(websocket(history_size=HISTORY))
app.use(error_handler())


def _now_iso() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds")


class RoomCounts:
    """Tells every member of a room, on every node, how many are in it.

    One per node (event loop). ``changed(room)`` after a local join or leave
    sends the count to the room; with a backplane a re-check after ``SETTLE``
    seconds and a refresh every ``REFRESH`` seconds send it again when it moved.
    Without a backplane the first count is exact and is the only one sent.
    """

    def __init__(self, app: Any, loop: asyncio.AbstractEventLoop) -> None:
        self.app = app
        self.loop = loop
        # Counts of one node are numbered as they start, so a slow answer from
        # Redis never overwrites a fresher count already sent.
        self._tickets = itertools.count(1)
        self._told: dict[Any, tuple[int, int]] = {}     # room -> (ticket, count) last sent
        self._due: set[Any] = set()                     # rooms whose count runs this iteration
        self._busy: dict[Any, int] = {}                 # room -> counts in flight
        self._rechecks: dict[Any, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task] = set()
        self._refresher: asyncio.Task | None = None

    @property
    def clustered(self) -> bool:
        """True when the app has a backplane: other nodes' counts come from Redis."""
        return self.app.backplane is not None

    def changed(self, room: Any) -> None:
        """Someone joined or left ``room`` here: tell the room its new size."""
        if room not in self._due:
            # Joins and leaves of one loop iteration share one count.
            self._due.add(room)
            self._spawn(room, self._count(room, always=True))
        if self.clustered:
            # Trailing: a burst of changes gets one re-check, after its last.
            handle = self._rechecks.pop(room, None)
            if handle is not None:
                handle.cancel()
            self._rechecks[room] = self.loop.call_later(SETTLE, self._recheck, room)
            if self._refresher is None:
                self._refresher = self.loop.create_task(self._refresh())

    def recount_all(self) -> None:
        """Send every local room its count (after the link to Redis came back:
        counts sent meanwhile may have been lost on the way)."""
        for room in self.app.rooms():
            self.changed(room)

    def close(self) -> None:
        """Stop every timer and count of this node (at shutdown)."""
        for handle in self._rechecks.values():
            handle.cancel()
        self._rechecks.clear()
        if self._refresher is not None:
            self._refresher.cancel()
        for task in list(self._tasks):
            task.cancel()

    def _spawn(self, room: Any, coro: Coroutine[Any, Any, None]) -> None:
        self._busy[room] = self._busy.get(room, 0) + 1
        task = self.loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(lambda t: self._done(room, t))

    def _done(self, room: Any, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        left = self._busy.pop(room, 1) - 1
        if left:
            self._busy[room] = left
        elif room not in self._rechecks and room not in self._due and not self.app.room_size(room):
            # Nothing pending and nobody here: forget the room, or the demo's
            # memory would grow with every room name ever used.
            self._told.pop(room, None)

    def _recheck(self, room: Any) -> None:
        self._rechecks.pop(room, None)
        self._spawn(room, self._count(room, always=False))

    async def _count(self, room: Any, always: bool) -> None:
        if always:
            # One iteration later: this iteration's other joins and leaves are
            # in, and this node's presence write is queued before our queries.
            await asyncio.sleep(0)
            self._due.discard(room)
        ticket = next(self._tickets)
        try:
            n = await self.app.cluster.room_size(room)
        except (RedisError, OSError) as exc:
            # Redis is away (BackplaneError is an OSError): keep the last count
            # shown; recount_all runs when the link is back.
            log.debug("demo: cannot count room %r now: %s", room, exc)
            return
        last = self._told.get(room)
        if last is not None and (last[0] > ticket or (not always and last[1] == n)):
            return
        self._told[room] = (ticket, n)
        self.app.broadcast(room, {"type": "room-size", "room": room, "count": n})

    async def _refresh(self) -> None:
        try:
            while True:
                await asyncio.sleep(REFRESH)
                rooms = self.app.rooms()
                if not rooms:
                    return      # an idle node does not wake up; the next join restarts it
                for room in rooms:
                    if room not in self._due:
                        self._spawn(room, self._count(room, always=False))
        finally:
            self._refresher = None


_counts_by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, RoomCounts] = \
    weakref.WeakKeyDictionary()


def room_counts() -> RoomCounts:
    """The ``RoomCounts`` of the node on the running loop (made on first use)."""
    loop = asyncio.get_running_loop()
    counts = _counts_by_loop.get(loop)
    if counts is None:
        counts = _counts_by_loop[loop] = RoomCounts(app, loop)
    return counts


def _recount_after_outage() -> None:
    room_counts().recount_all()


app.cluster.on("restored", _recount_after_outage)


@app.on_shutdown
def _stop_counting() -> None:
    counts = _counts_by_loop.pop(asyncio.get_running_loop(), None)
    if counts is not None:
        counts.close()


@app.ws("/chat/:room")
def chat(ws, ctx):
    """The seed's chat application, line for line, plus the room's size."""
    # The page reconnects by itself: after a /join it comes back with the room
    # it switched to in ?room=, and joining it there recovers what it missed.
    room = ctx.get_query("room") or ctx.params["room"]
    user = ctx.get_query("user") or "Anonymous"
    state = {"room": room}
    counts = room_counts()
    ws.join(room)
    ws.broadcast(room, f"{user} joined the room")
    counts.changed(room)

    @ws.on("message")
    def on_message(data):
        ws.broadcast_all(state["room"], {"user": user, "message": data, "timestamp": _now_iso()})

    @ws.on("join-room")
    def on_join_room(new_room):
        old = state["room"]
        ws.broadcast(old, f"{user} left the room")
        ws.leave(old)
        ws.join(new_room)
        state["room"] = new_room
        ws.send(f"Switched to room: {new_room}")
        ws.broadcast(new_room, f"{user} joined the room")
        if new_room != old:
            counts.changed(old)
        counts.changed(new_room)

    @ws.on("close")
    def on_close():
        ws.broadcast(state["room"], f"{user} left the room")
        # Leave now rather than after the close handlers, so the count below
        # no longer includes this socket.
        ws.leave(state["room"])
        counts.changed(state["room"])


@app.get("/rooms/:room/info")
def room_info(ctx):
    """How many people are in a room (the seed's HTTP integration)."""
    room = ctx.params["room"]
    return ctx.json({"room": room, "connections": app.room_size(room)})


@app.get("/rooms/:room/history")
async def room_history(ctx):
    """The room's last messages (what a page reloads when its history was
    lost): this process's, or with a backplane the cluster's, in Redis; each
    with its position, and its text as it was sent."""
    room = ctx.params["room"]
    kept = await app.history(room, limit=RELOAD) if app.ws_options.history_size else []
    return ctx.json({"room": room, "messages": [
        {"epoch": m.epoch, "offset": m.offset, "text": m.data}
        for m in kept if isinstance(m.data, str)]})


@functools.lru_cache(maxsize=1)
def client_module() -> bytes:
    """The JS client the page imports: fastws/static/fastws-client.js, a copy
    of clients/js/src/index.js shipped as package data."""
    return importlib.resources.files("fastws").joinpath("static", "fastws-client.js").read_bytes()


@app.get("/fastws-client.js")
def fastws_client(ctx):
    """The JS client, as an ES module."""
    return Response(client_module(), 200, {"Cache-Control": "no-cache"},
                    "text/javascript; charset=utf-8")


@app.get("/")
def index(ctx):
    """The chat page."""
    return ctx.html(PAGE)


PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>fastws chat</title>
<style>
  body { font: 15px system-ui, sans-serif; max-width: 42rem; margin: 2rem auto; padding: 0 1rem; }
  form { display: flex; gap: .5rem; margin: .5rem 0; }
  input { flex: 1; padding: .4rem; }
  #log { border: 1px solid #ccc; border-radius: 6px; height: 24rem; overflow-y: auto; padding: .5rem; }
  .note { color: #777; font-style: italic; }
  .me { color: #0a58ca; }
  #status { font-size: 13px; color: #555; }
  #count { font-size: 13px; color: #555; min-height: 1.2em; }
</style>
</head>
<body>
<h1>fastws chat</h1>
<form id="join">
  <input id="user" placeholder="Your name" required>
  <input id="room" placeholder="Room" value="general" required>
  <button>Join</button>
</form>
<div id="status">Not connected.</div>
<div id="count" data-count="" aria-live="polite"></div>
<div id="log" aria-live="polite"></div>
<form id="say">
  <input id="text" placeholder="Message" autocomplete="off" disabled>
  <button id="send" disabled>Send</button>
</form>
<script type="module">
import { Client, NotConnectedError } from "/fastws-client.js";

let client = null, me = "", room = "";
const $ = (id) => document.getElementById(id);
function line(text, cls, parent = $("log")) {
  const div = document.createElement("div");
  div.textContent = text;
  if (cls) div.className = cls;
  parent.appendChild(div);
  $("log").scrollTop = $("log").scrollHeight;
}
// The room's size across every server of the cluster, as the server last said.
function showCount(count) {
  $("count").dataset.count = count === null ? "" : String(count);
  $("count").dataset.room = count === null ? "" : room;
  $("count").textContent = count === null ? "" :
    `${count} ${count === 1 ? "person" : "people"} in ${room}`;
}
// One message: a chat line, a count, or a note (someone joined, left...).
function show(msg, parent) {
  if (msg && typeof msg === "object" && msg.type === "room-size") {
    // A count for the room just left can still be on its way: skip it.
    if (msg.room === room && parent === undefined) showCount(msg.count);
  } else if (msg && typeof msg === "object" && "user" in msg) {
    const time = new Date(msg.timestamp).toLocaleTimeString();
    line(`[${time}] ${msg.user}: ${msg.message}`, msg.user === me ? "me" : "", parent);
  } else {
    line(typeof msg === "string" ? msg : JSON.stringify(msg), "note", parent);
  }
}
function parsed(text) {
  try { return JSON.parse(text); } catch { return text; }
}
// The history could not be recovered (the server restarted, or the page was
// away too long): show the room's last messages instead of what the log held,
// those up to the position the server joined us at (later ones arrive live).
async function reload(c, name) {
  const at = c.positions.get(name);
  const earlier = document.createElement("div");
  $("log").replaceChildren(earlier);
  line("history lost, reloaded", "note recovery");
  try {
    const res = await fetch(`/rooms/${encodeURIComponent(name)}/history`);
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    for (const m of (await res.json()).messages) {
      if (at && m.epoch === at.epoch && m.offset > at.offset) continue;
      show(parsed(m.text), earlier);
    }
  } catch (err) {
    line(`Could not reload the room's messages: ${err}`, "note");
  }
}
// A server that keeps no history (run with other options): nothing to recover
// or reload.
function noHistory() {
  line("reconnected; the server keeps no history: messages sent meanwhile are not shown",
    "note recovery");
}
$("join").onsubmit = (e) => {
  e.preventDefault();
  const old = client;
  client = null;
  if (old) old.close();
  me = $("user").value.trim();
  room = $("room").value.trim();
  const home = room;
  showCount(null);
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  // fastws-client reconnects by itself, with backoff, and recovers the room's
  // missed messages; after a /join it goes back to the room switched to.
  const c = new Client(
    `${scheme}://${location.host}/chat/${encodeURIComponent(home)}?user=${encodeURIComponent(me)}`,
    { params: () => (room === home ? {} : { room }) });
  client = c;
  let opened = false;
  // Events of a client this page has replaced are not news any more.
  c.on("open", () => {
    if (c !== client) return;
    $("status").textContent = `Connected to room ${room} as ${me}.`;
    $("text").disabled = $("send").disabled = false;
    $("text").focus();
    // Back without a position to recover from: the server keeps no history.
    if (opened && !c.positions.has(room)) noHistory();
    opened = true;
  });
  c.on("message", (data, meta) => {
    if (c !== client) return;
    // A direct message is text as it was sent; a room message's payload is
    // already in its own type.
    show(meta.room === null && typeof data === "string" ? parsed(data) : data);
  });
  c.on("recovered", ({ room: name, recovered, missed, reason }) => {
    if (c !== client) return;
    if (recovered) {
      line(`reconnected, ${missed} missed message${missed === 1 ? "" : "s"} recovered`, "note recovery");
    } else if (reason === "no history") {
      noHistory();
    } else {
      reload(c, name);
    }
  });
  c.on("close", ({ code, willReconnect }) => {
    if (c !== client) return;
    $("status").textContent = willReconnect ? `Disconnected (${code}); reconnecting...` :
      `Disconnected (${code}).`;
    $("text").disabled = $("send").disabled = true;
    showCount(null);
  });
};
$("say").onsubmit = (e) => {
  e.preventDefault();
  const text = $("text").value;
  if (!text || !client) return;
  try {
    if (text.startsWith("/join ")) {
      const next = text.slice(6).trim();
      client.emit("join-room", { room: next });
      // Counts of the room left may still arrive; from now on only the new room's count.
      room = next;
      showCount(null);
      $("status").textContent = `Connected to room ${room} as ${me}.`;
    } else {
      client.emit("message", { content: text });
    }
  } catch (err) {
    if (!(err instanceof NotConnectedError)) throw err;
    line("Not connected: not sent.", "note");
    return;
  }
  $("text").value = "";
};
</script>
<p class="note">Tip: type <code>/join other-room</code> to switch rooms.</p>
</body>
</html>
"""


def main(argv: list[str] | None = None) -> None:
    """Run the demo server (``--host``, ``--port``)."""
    parser = argparse.ArgumentParser(prog="python -m fastws.demo",
                                     description="fastws chat demo: open the page in two tabs.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=3000)
    args = parser.parse_args(argv)
    print(f"fastws chat demo: open http://{args.host}:{args.port}/ in two browser tabs", flush=True)
    app.run(host=args.host, port=args.port)


if __name__ == "__main__":
    main()
