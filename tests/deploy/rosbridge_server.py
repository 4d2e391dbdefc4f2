"""A loopback server speaking the rosbridge v2 JSON protocol over WebSocket, for tests and benchmarks.

It stands in for `rosbridge_server` (ROS 1 or ROS 2): clients `advertise`, `publish`, `subscribe`,
`unsubscribe` and `call_service`; the test side plays the robot through `publish` (to subscribed
clients), reads what clients published with `messages`/`wait_messages`, registers services with
`advertise_service`, and breaks things on purpose: `send_raw` (malformed frames), `drop_clients`
(the connection drops) and `refuse` (the bridge is down, reconnects fail).

Built on Autobahn's asyncio WebSocket server (already installed with roslibpy), on its own event
loop thread; `stop()` closes every connection and joins the thread. Listens on 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from autobahn.asyncio.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.types import ConnectionDeny


class _Protocol(WebSocketServerProtocol):
    server: RosbridgeServer

    def onConnect(self, request: Any) -> None:
        if self.factory.server.refusing:
            raise ConnectionDeny(503, "rosbridge refusing connections (test)")

    def onOpen(self) -> None:
        self.factory.server._opened(self)

    def onClose(self, wasClean: bool, code: Any, reason: Any) -> None:
        self.factory.server._closed(self)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.factory.server._handle(self, payload)


class RosbridgeServer:
    """rosbridge v2 over WebSocket on 127.0.0.1 (ephemeral port unless `port` is given).

    Attributes:
        url: ``ws://127.0.0.1:PORT`` once started.
        ops: every op received, in order, as (receive time `time.time()`, parsed message).
    """

    def __init__(self, port: int = 0) -> None:
        self.port = port
        self.refusing = False
        self.ops: list[tuple[float, dict]] = []
        self._clients: set[_Protocol] = set()
        self._subs: dict[str, dict[_Protocol, set[str]]] = defaultdict(dict)
        self._services: dict[str, Callable[[dict], dict]] = {}
        self._published: dict[str, list[tuple[float, dict]]] = defaultdict(list)
        self._cond = threading.Condition()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.base_events.Server | None = None
        self.connections = 0

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> RosbridgeServer:
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), name="rosbridge-test-server", daemon=True)
        self._thread.start()
        if not ready.wait(5):
            raise RuntimeError("loopback rosbridge server did not start")
        return self

    def _run(self, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        factory = WebSocketServerFactory("ws://127.0.0.1", loop=loop)
        factory.protocol = _Protocol
        factory.server = self  # type: ignore[attr-defined]
        factory.setProtocolOptions(autoPingInterval=0, closeHandshakeTimeout=1, openHandshakeTimeout=2)
        self._server = loop.run_until_complete(loop.create_server(factory, "127.0.0.1", self.port, reuse_address=True))
        self.port = self._server.sockets[0].getsockname()[1]
        ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    def stop(self) -> None:
        """Close every connection and the listening socket; join the loop thread."""
        loop = self._loop
        if loop is None or self._thread is None:
            return

        async def shutdown() -> None:
            assert self._server is not None
            self._server.close()
            for proto in list(self._clients):
                proto.transport.abort()
            await asyncio.sleep(0)
            loop.stop()

        loop.call_soon_threadsafe(lambda: loop.create_task(shutdown()))
        self._thread.join(5)
        self._loop = self._thread = None

    def __enter__(self) -> RosbridgeServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    # -- the robot side (called from the test thread) -----------------------------------------
    def publish(self, topic: str, msg: dict) -> None:
        """Send `msg` to every client subscribed to `topic` (as rosbridge relays a ROS message)."""
        self.send_raw(json.dumps({"op": "publish", "topic": topic, "msg": msg}), topic=topic)

    def send_raw(self, text: str | bytes, topic: str | None = None) -> None:
        """Send a text frame as-is to the subscribers of `topic` (or to every client when None)."""
        payload = text.encode() if isinstance(text, str) else text
        loop = self._loop
        assert loop is not None, "server not started"

        def send() -> None:
            targets = list(self._subs.get(topic, {})) if topic is not None else list(self._clients)
            for proto in targets:
                if proto in self._clients:
                    proto.sendMessage(payload, isBinary=False)

        loop.call_soon_threadsafe(send)

    def sync(self, timeout: float = 2.0) -> None:
        """Wait until everything queued on the server loop so far has run (sends are flushed to sockets)."""
        done = threading.Event()
        assert self._loop is not None
        self._loop.call_soon_threadsafe(done.set)
        done.wait(timeout)

    def advertise_service(self, name: str, handler: Callable[[dict], dict]) -> None:
        """Answer `call_service` for `name` with `handler(args) -> values`."""
        self._services[name] = handler

    def drop_clients(self) -> None:
        """Abort every client connection (no close handshake): the link to the robot dropped."""
        loop = self._loop
        assert loop is not None

        def drop() -> None:
            for proto in list(self._clients):
                proto.transport.abort()

        loop.call_soon_threadsafe(drop)

    def refuse(self, on: bool = True) -> None:
        """Refuse (True) or accept (False) new connections; existing ones are kept."""
        self.refusing = on

    # -- inspection ----------------------------------------------------------------------------
    def messages(self, topic: str) -> list[dict]:
        """Messages clients published on `topic`, in arrival order."""
        with self._cond:
            return [m for _, m in self._published.get(topic, [])]

    def timed_messages(self, topic: str) -> list[tuple[float, dict]]:
        """(arrival time `time.time()`, message) for `topic`."""
        with self._cond:
            return list(self._published.get(topic, []))

    def published_topics(self) -> list[str]:
        with self._cond:
            return sorted(t for t, msgs in self._published.items() if msgs)

    def op_names(self) -> list[str]:
        with self._cond:
            return [m.get("op", "?") for _, m in self.ops]

    def subscribers(self, topic: str) -> int:
        with self._cond:
            return len(self._subs.get(topic, {}))

    @property
    def clients(self) -> int:
        with self._cond:
            return len(self._clients)

    def wait(self, predicate: Callable[[], bool], timeout: float = 2.0) -> bool:
        """Block until `predicate()` holds (re-checked on every server event) or `timeout` passes."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.05))
        return True

    def wait_subscribed(self, topics: str | list[str], timeout: float = 2.0) -> bool:
        names = [topics] if isinstance(topics, str) else topics
        return self.wait(lambda: all(self._subs.get(t) for t in names), timeout)

    def wait_messages(self, topic: str, n: int, timeout: float = 2.0) -> list[dict]:
        self.wait(lambda: len(self._published.get(topic, [])) >= n, timeout)
        return self.messages(topic)

    # -- protocol (server loop thread) ---------------------------------------------------------
    def _opened(self, proto: _Protocol) -> None:
        with self._cond:
            self._clients.add(proto)
            self.connections += 1
            self._cond.notify_all()

    def _closed(self, proto: _Protocol) -> None:
        with self._cond:
            self._clients.discard(proto)
            for subs in self._subs.values():
                subs.pop(proto, None)
            self._cond.notify_all()

    def _handle(self, proto: _Protocol, payload: bytes) -> None:
        try:
            msg = json.loads(payload)
            op = msg["op"]
        except (ValueError, KeyError, TypeError):
            return
        now = time.time()
        reply: dict | None = None
        with self._cond:
            self.ops.append((now, msg))
            if op == "subscribe":
                self._subs[msg["topic"]].setdefault(proto, set()).add(msg.get("id", ""))
            elif op == "unsubscribe":
                self._subs.get(msg["topic"], {}).pop(proto, None)
            elif op == "publish":
                self._published[msg["topic"]].append((now, msg["msg"]))
            elif op == "call_service":
                reply = self._service_reply(msg)
            self._cond.notify_all()
        if op == "publish":  # relay to subscribers, as rosbridge does through ROS
            out = json.dumps({"op": "publish", "topic": msg["topic"], "msg": msg["msg"]}).encode()
            for target in list(self._subs.get(msg["topic"], {})):
                target.sendMessage(out, isBinary=False)
        if reply is not None:
            proto.sendMessage(json.dumps(reply).encode(), isBinary=False)

    def _service_reply(self, msg: dict) -> dict:
        name = msg.get("service", "")
        base = {"op": "service_response", "service": name, "id": msg.get("id")}
        handler = self._services.get(name)
        if handler is None:
            return {**base, "result": False, "values": f"Service {name} does not exist"}
        try:
            return {**base, "result": True, "values": handler(msg.get("args", {}))}
        except Exception as exc:  # a failing handler is a failed call, as in rosbridge
            return {**base, "result": False, "values": str(exc)}
