"""A real network between nodes and their broker, on this machine: one network
namespace per host (``ip netns``), veth pairs, two bridges in the root namespace.

- The client network (``10.N.0.0/24``): the test (in the root namespace, at
  ``.1``) reaches each node there.
- The broker network (``10.N.1.0/24``): each node reaches the broker there,
  through a relay in the root namespace (``.1``) that holds every chunk for
  ``delay`` seconds before passing it on (this kernel has no ``netem``).

Loss is ``iptables -m statistic --mode random`` inside a node's namespace, on
its broker-network interface; a partition is that interface's root end set
down (``ip link set ... down``): the node keeps its clients and loses its
broker. Everything is made with a random tag and removed at the end.
"""

from __future__ import annotations

import asyncio
import os
import random
import secrets
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from .conftest import Node


def _run(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, check=check, timeout=30)


def need_netns() -> None:
    """Skip (fail under CI=true) without root and ``ip netns``."""
    why = None
    if os.geteuid() != 0:
        why = "network namespaces need root"
    elif shutil.which("ip") is None:
        why = "iproute2's ip is not installed"
    else:
        probe = f"fwprobe{secrets.token_hex(2)}"
        done = _run("ip", "netns", "add", probe, check=False)
        if done.returncode != 0:
            why = f"cannot make a network namespace: {done.stderr.strip()}"
        else:
            _run("ip", "netns", "del", probe, check=False)
    if why:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{why}; under CI=true the network tests must run")
        pytest.skip(why)


def iptables() -> str:
    """Debian's iptables, installed (as root, with apt-get) when missing."""
    exe = shutil.which("iptables")
    if exe:
        return exe
    from tests.browser.conftest import _apt_get
    done = _apt_get("install", "-y", "iptables")
    if done.returncode != 0:
        _apt_get("update")
        done = _apt_get("install", "-y", "iptables")
    exe = shutil.which("iptables")
    if exe is None:
        msg = f"could not install Debian's iptables: {done.stdout[-1000:]}{done.stderr[-1000:]}"
        if os.environ.get("CI") == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    return exe


class DelayRelay:
    """A TCP relay that passes each chunk on ``delay`` seconds after it came,
    in order, both ways: latency without netem."""

    def __init__(self, listen: tuple[str, int], target: tuple[str, int], delay: float) -> None:
        self.listen, self.target, self.delay = listen, target, delay
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._server: Any = None
        self._conns: list[asyncio.StreamWriter] = []
        threading.Thread(target=self._main, daemon=True).start()
        self._ready.wait(10)

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)

        async def start() -> None:
            self._server = await asyncio.start_server(self._serve, *self.listen)
            self._ready.set()

        self.loop.run_until_complete(start())
        self.loop.run_forever()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_r, up_w = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self._conns += [writer, up_w]
        await asyncio.gather(self._pipe(reader, up_w), self._pipe(up_r, writer),
                             return_exceptions=True)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        queue: asyncio.Queue = asyncio.Queue()

        async def later() -> None:
            while True:
                due, data = await queue.get()
                wait = due - self.loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                if data is None:
                    writer.close()
                    return
                writer.write(data)

        sender = self.loop.create_task(later())
        try:
            while True:
                data = await reader.read(65536)
                queue.put_nowait((self.loop.time() + self.delay, data or None))
                if not data:
                    break
        except OSError:
            queue.put_nowait((self.loop.time() + self.delay, None))
        await sender

    def close(self) -> None:
        async def stop() -> None:
            if self._server is not None:
                self._server.close()
            for w in self._conns:
                w.close()
            tasks = [t for t in asyncio.all_tasks(self.loop) if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self.loop.stop()
        asyncio.run_coroutine_threadsafe(stop(), self.loop)


class NsNode(Node):
    """A fastws node inside a namespace, reached on its client-network address."""

    def __init__(self, ns: str, ip: str, *args: Any, **kw: Any) -> None:
        kw.setdefault("port", random.randint(20000, 30000))     # its namespace's ports are all free
        super().__init__(*args, **kw)
        self.argv = ["ip", "netns", "exec", ns, *self.argv, "--host", "0.0.0.0"]
        self.ip = ip

    def wait_listening(self, timeout: float = 30) -> None:
        # /proc/net/tcp is the root namespace's: ask the node's address instead.
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"node exited with {self.proc.returncode}:\n{self.log()}")
            try:
                socket.create_connection((self.ip, self.port), timeout=1).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"node did not listen within {timeout} s:\n{self.log()}") \
                        from None
                time.sleep(0.05)

    def url(self, path: str, scheme: str = "ws") -> str:
        return f"{scheme}://{self.ip}:{self.port}{path}"


class Lab:
    """The namespaces, bridges and links of one test (see the module)."""

    def __init__(self, hosts: list[str]) -> None:
        self.tag = secrets.token_hex(2)
        self.net = random.randint(100, 250)
        self.hosts = hosts
        self.ns = {h: f"fw{self.tag}{h}" for h in hosts}
        self.client_ip: dict[str, str] = {}
        self.broker_ip: dict[str, str] = {}
        self._made: list[tuple[str, ...]] = []
        self.relays: list[DelayRelay] = []
        self.procs: list[subprocess.Popen] = []

    @property
    def gateway(self) -> str:
        """The root namespace's address on the broker network (where relays listen)."""
        return f"10.{self.net}.1.1"

    def up(self) -> Lab:
        for i, side in enumerate(("c", "b")):
            br = f"fw{self.tag}{side}"
            _run("ip", "link", "add", br, "type", "bridge")
            self._made.append(("ip", "link", "del", br))
            _run("ip", "addr", "add", f"10.{self.net}.{i}.1/24", "dev", br)
            _run("ip", "link", "set", br, "up")
        for n, host in enumerate(self.hosts, start=2):
            ns = self.ns[host]
            _run("ip", "netns", "add", ns)
            self._made.append(("ip", "netns", "del", ns))
            _run("ip", "-n", ns, "link", "set", "lo", "up")
            sides = ("b",) if host == "broker" else ("c", "b")
            for side in sides:
                outer, inner = f"fw{self.tag}{host[:2]}{side}", f"in{self.tag}{host[:2]}{side}"
                _run("ip", "link", "add", outer, "type", "veth", "peer", "name", inner)
                _run("ip", "link", "set", inner, "netns", ns)
                _run("ip", "link", "set", outer, "master", f"fw{self.tag}{side}", "up")
                subnet = 0 if side == "c" else 1
                ip = f"10.{self.net}.{subnet}.{n}"
                _run("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", inner)
                _run("ip", "-n", ns, "link", "set", inner, "up")
                (self.client_ip if side == "c" else self.broker_ip)[host] = ip
        return self

    def down(self) -> None:
        for relay in self.relays:
            relay.close()
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        for cmd in reversed(self._made):
            _run(*cmd, check=False)

    def spawn(self, host: str, argv: list[str], log: Path) -> subprocess.Popen:
        """Run ``argv`` in ``host``'s namespace (stopped by ``down``)."""
        out = open(log, "ab")
        proc = subprocess.Popen(["ip", "netns", "exec", self.ns[host], *argv], stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.procs.append(proc)
        return proc

    def relay(self, port: int, target_port: int, delay: float) -> int:
        """A delaying relay from the gateway's ``port`` to the broker's ``target_port``."""
        self.relays.append(DelayRelay((self.gateway, port), (self.broker_ip["broker"], target_port),
                                      delay))
        return port

    def node(self, host: str, log: Path, env: dict[str, str], **kw: Any) -> NsNode:
        return NsNode(self.ns[host], self.client_ip[host], log, env, **kw)

    def lose(self, host: str, probability: float) -> None:
        """Drop ``probability`` of the packets both ways on ``host``'s broker link."""
        exe = iptables()
        inner = f"in{self.tag}{host[:2]}b"
        for chain, flag in (("INPUT", "-i"), ("OUTPUT", "-o")):
            _run("ip", "netns", "exec", self.ns[host], exe, "-A", chain, flag, inner, "-m",
                 "statistic", "--mode", "random", "--probability", str(probability), "-j", "DROP")

    def partition(self, host: str, cut: bool) -> None:
        """Cut (or mend) ``host``'s link to the broker network."""
        _run("ip", "link", "set", f"fw{self.tag}{host[:2]}b", "down" if cut else "up")


def wait_port(ip: str, port: int, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection((ip, port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"nothing listens on {ip}:{port}") from None
            time.sleep(0.05)
