"""``python -m fastws.demo``: the chat example with a page to try it in a browser.

Open http://127.0.0.1:3000/ in two tabs, pick the same room, and chat.
"""

from __future__ import annotations

import argparse
import datetime

from fastws import create_app, error_handler, websocket

__all__ = ["app", "main"]

app = create_app()
app.use(websocket())
app.use(error_handler())


def _now_iso() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds")


@app.ws("/chat/:room")
def chat(ws, ctx):
    """The seed's chat application, line for line."""
    room = ctx.params["room"]
    user = ctx.get_query("user") or "Anonymous"
    state = {"room": room}
    ws.join(room)
    ws.broadcast(room, f"{user} joined the room")

    @ws.on("message")
    def on_message(data):
        ws.broadcast_all(state["room"], {"user": user, "message": data, "timestamp": _now_iso()})

    @ws.on("join-room")
    def on_join_room(new_room):
        ws.broadcast(state["room"], f"{user} left the room")
        ws.leave(state["room"])
        ws.join(new_room)
        state["room"] = new_room
        ws.send(f"Switched to room: {new_room}")
        ws.broadcast(new_room, f"{user} joined the room")

    @ws.on("close")
    def on_close():
        ws.broadcast(state["room"], f"{user} left the room")


@app.get("/rooms/:room/info")
def room_info(ctx):
    """How many people are in a room (the seed's HTTP integration)."""
    room = ctx.params["room"]
    return ctx.json({"room": room, "connections": app.room_size(room)})


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
<div id="log" aria-live="polite"></div>
<form id="say">
  <input id="text" placeholder="Message" autocomplete="off" disabled>
  <button id="send" disabled>Send</button>
</form>
<script>
let ws = null, me = "";
const $ = (id) => document.getElementById(id);
function line(text, cls) {
  const div = document.createElement("div");
  div.textContent = text;
  if (cls) div.className = cls;
  $("log").appendChild(div);
  $("log").scrollTop = $("log").scrollHeight;
}
$("join").onsubmit = (e) => {
  e.preventDefault();
  if (ws) ws.close();
  me = $("user").value.trim();
  const room = encodeURIComponent($("room").value.trim());
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  ws = new WebSocket(`${scheme}://${location.host}/chat/${room}?user=${encodeURIComponent(me)}`);
  ws.onopen = () => {
    $("status").textContent = `Connected to room ${decodeURIComponent(room)} as ${me}.`;
    $("text").disabled = $("send").disabled = false;
    $("text").focus();
  };
  ws.onmessage = (event) => {
    let msg;
    try { msg = JSON.parse(event.data); } catch { msg = null; }
    if (msg && typeof msg === "object" && "user" in msg) {
      const time = new Date(msg.timestamp).toLocaleTimeString();
      line(`[${time}] ${msg.user}: ${msg.message}`, msg.user === me ? "me" : "");
    } else {
      line(event.data, "note");
    }
  };
  ws.onclose = (event) => {
    $("status").textContent = `Disconnected (${event.code}).`;
    $("text").disabled = $("send").disabled = true;
  };
};
$("say").onsubmit = (e) => {
  e.preventDefault();
  const text = $("text").value;
  if (!text || !ws || ws.readyState !== WebSocket.OPEN) return;
  if (text.startsWith("/join ")) {
    ws.send(JSON.stringify({type: "join-room", room: text.slice(6).trim()}));
  } else {
    ws.send(JSON.stringify({type: "message", content: text}));
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
