"""The rosbridge connection (roslibpy, ROS 1 and ROS 2 through rosbridge v2) and message decoding.

`Bridge` wraps one roslibpy connection on its asyncio transport: connect with a timeout (an unreachable
bridge is a one-line `BridgeError`), reconnect with exponential backoff, re-advertise and re-subscribe
after every reconnect, never replay stale commands queued while the link was down (a command published
while disconnected is dropped; only an explicit `publish_on_reconnect` message, the hold command, goes
out first when the link returns).

`Inputs` subscribes to a robot profile's topics and keeps, per topic, the latest decoded `Sample` and a
bounded `Mailbox` (oldest messages dropped and counted), so a slow consumer never grows memory.
Malformed and out-of-order messages (header stamp older than the last accepted one) are ignored with a
log line; an unsupported image encoding is remembered as `Inputs.fatal` so commands can refuse to start.

Decoding follows rosbridge's JSON encoding: ``uint8[]`` fields (``sensor_msgs/Image.data``) arrive
base64-encoded; ROS 1 time is ``{secs, nsecs}``, ROS 2 time is ``{sec, nanosec}``.
"""

from __future__ import annotations

import base64
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from embodied.deploy.profile import (
    ARRAY_TYPES,
    COMPRESSED_IMAGE,
    IMAGE,
    JOINT_STATE,
    ODOMETRY,
    POINT_TYPES,
    POSE_FIELDS,
    POSE_TYPES,
    SCALAR_TYPES,
    RobotProfile,
    TopicSpec,
)

LOG = logging.getLogger("embodied.deploy")


class BridgeError(ValueError):
    """The rosbridge cannot be reached, or a request over it failed. One line."""


class DecodeError(ValueError):
    """A message does not have the fields/sizes its type and the profile need (it is ignored)."""


class UnsupportedEncoding(DecodeError):
    """An image encoding this bridge cannot turn into RGB (fatal before the first command)."""


# -- time ------------------------------------------------------------------------------------------
def stamp_seconds(stamp: Any) -> float | None:
    """ROS time as float seconds: ROS 1 ``{secs, nsecs}`` or ROS 2 ``{sec, nanosec}``; None if absent."""
    if not isinstance(stamp, dict):
        return None
    if "sec" in stamp or "nanosec" in stamp:
        return float(stamp.get("sec", 0)) + float(stamp.get("nanosec", 0)) * 1e-9
    if "secs" in stamp or "nsecs" in stamp:
        return float(stamp.get("secs", 0)) + float(stamp.get("nsecs", 0)) * 1e-9
    return None


def header_stamp(msg: dict) -> float | None:
    """The message's ``header.stamp`` in seconds, or None for unstamped messages."""
    header = msg.get("header")
    return stamp_seconds(header.get("stamp")) if isinstance(header, dict) else None


def ros_time(seconds: float, ros: int) -> dict[str, int]:
    """Float seconds as a ROS time dict for ROS 1 (``secs/nsecs``) or ROS 2 (``sec/nanosec``)."""
    secs = int(np.floor(seconds))
    nsecs = min(round((seconds - secs) * 1e9), 999_999_999)
    return {"secs": secs, "nsecs": nsecs} if ros == 1 else {"sec": secs, "nanosec": nsecs}


# -- images ----------------------------------------------------------------------------------------
def _bytes(data: Any, where: str) -> bytes:
    """rosbridge sends uint8[] as base64 text; some bridges/configs send a list of ints."""
    if isinstance(data, str):
        try:
            return base64.b64decode(data, validate=True)
        except (ValueError, TypeError):
            raise DecodeError(f"{where}: 'data' is not valid base64") from None
    if isinstance(data, list):
        try:
            return bytes(data)
        except (ValueError, TypeError):
            raise DecodeError(f"{where}: 'data' is not a list of bytes") from None
    raise DecodeError(f"{where}: 'data' must be base64 text or a list of bytes, got {type(data).__name__}")


_CHANNELS = {"rgb8": 3, "bgr8": 3, "mono8": 1, "rgba8": 4, "bgra8": 4}
SUPPORTED_ENCODINGS = tuple(_CHANNELS)


def decode_image(msg: dict) -> np.ndarray:
    """`sensor_msgs/Image` -> RGB uint8 [H, W, 3].

    Encodings rgb8, bgr8, mono8 (grey repeated on 3 channels), rgba8, bgra8 (alpha dropped); rows may be
    padded (`step` > width x channels). Anything else (16-bit depth, Bayer, YUV) raises UnsupportedEncoding.
    """
    try:
        height, width, encoding = int(msg["height"]), int(msg["width"]), str(msg["encoding"])
        raw = _bytes(msg["data"], "sensor_msgs/Image")
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, DecodeError):
            raise
        raise DecodeError(f"sensor_msgs/Image: missing or bad field {exc}") from None
    if encoding not in _CHANNELS:
        raise UnsupportedEncoding(
            f"sensor_msgs/Image encoding {encoding!r} is not supported; use one of {', '.join(SUPPORTED_ENCODINGS)} "
            "or sensor_msgs/CompressedImage (jpeg/png)"
        )
    ch = _CHANNELS[encoding]
    step = int(msg.get("step") or width * ch)
    if height <= 0 or width <= 0 or step < width * ch or len(raw) < step * height:
        raise DecodeError(
            f"sensor_msgs/Image: {len(raw)} bytes do not hold {height}x{width} {encoding} rows of step {step}"
        )
    img = np.frombuffer(raw, np.uint8, count=step * height).reshape(height, step)[:, : width * ch]
    img = img.reshape(height, width, ch)
    if encoding == "mono8":
        return np.repeat(img, 3, axis=2)
    if encoding in ("bgr8", "bgra8"):
        return np.ascontiguousarray(img[:, :, 2::-1])
    return np.ascontiguousarray(img[:, :, :3])


def decode_compressed_image(msg: dict) -> np.ndarray:
    """`sensor_msgs/CompressedImage` (jpeg or png, as image_transport writes them) -> RGB uint8 [H, W, 3]."""
    import cv2

    fmt = str(msg.get("format", "")).lower()
    if "compresseddepth" in fmt or not any(k in fmt for k in ("jpeg", "jpg", "png")):
        raise UnsupportedEncoding(
            f"sensor_msgs/CompressedImage format {msg.get('format')!r} is not supported; use jpeg or png"
        )
    try:
        raw = _bytes(msg["data"], "sensor_msgs/CompressedImage")
    except KeyError:
        raise DecodeError("sensor_msgs/CompressedImage: missing 'data'") from None
    img = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise DecodeError(f"sensor_msgs/CompressedImage: {len(raw)} bytes are not a decodable {fmt} image")
    return np.ascontiguousarray(img[:, :, ::-1])  # OpenCV decodes to BGR


def encode_image(rgb: np.ndarray, encoding: str = "rgb8", ros: int = 2, stamp: float | None = None) -> dict:
    """An RGB uint8 [H, W, 3] array as a rosbridge `sensor_msgs/Image` dict (base64 data)."""
    h, w = rgb.shape[:2]
    if encoding == "rgb8":
        data = rgb
    elif encoding == "bgr8":
        data = rgb[:, :, ::-1]
    elif encoding == "mono8":
        data = rgb[:, :, 0]
    else:
        raise ValueError(f"encode_image: unsupported encoding {encoding!r}")
    data = np.ascontiguousarray(data)
    return {
        "header": {"stamp": ros_time(time.time() if stamp is None else stamp, ros), "frame_id": "camera"},
        "height": h,
        "width": w,
        "encoding": encoding,
        "is_bigendian": 0,
        "step": int(data.strides[0]),
        "data": base64.b64encode(data.tobytes()).decode("ascii"),
    }


def preprocess_frame(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Centre-crop to the target aspect ratio, then resize to `size` (H, W) with area averaging.

    Cropping (not squashing) keeps object shapes as the simulator's square renders show them.
    Returns uint8 [H, W, 3], the format of simulation frames (`info["frames"][camera]`).
    """
    import cv2

    th, tw = size
    h, w = rgb.shape[:2]
    if (h, w) == (th, tw):
        return rgb
    if h * tw > w * th:  # too tall
        ch = max(1, round(w * th / tw))
        top = (h - ch) // 2
        rgb = rgb[top : top + ch]
    elif h * tw < w * th:  # too wide
        cw = max(1, round(h * tw / th))
        left = (w - cw) // 2
        rgb = rgb[:, left : left + cw]
    interp = cv2.INTER_AREA if rgb.shape[0] >= th else cv2.INTER_LINEAR
    return cv2.resize(np.ascontiguousarray(rgb), (tw, th), interpolation=interp)


# -- vectors ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class JointValues:
    """A decoded `sensor_msgs/JointState`: joint name -> index, and the position/velocity/effort arrays."""

    names: dict[str, int]
    position: np.ndarray
    velocity: np.ndarray
    effort: np.ndarray

    def pick(self, field: str, names: tuple[str, ...] | None, indices: tuple[int, ...] | None) -> np.ndarray:
        values = getattr(self, field)
        idx = [self.names[n] for n in names] if names is not None else list(indices or ())
        return values[idx]


def _floats(value: Any, where: str) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise DecodeError(f"{where} is not a list of numbers") from None
    return arr


def _xyz(d: Any, where: str) -> list[float]:
    if not isinstance(d, dict):
        raise DecodeError(f"{where} missing")
    try:
        return [float(d["x"]), float(d["y"]), float(d["z"])]
    except (KeyError, TypeError, ValueError):
        raise DecodeError(f"{where} needs numeric x, y, z") from None


def make_decoder(key: str, spec: TopicSpec, profile: RobotProfile) -> Callable[[dict], Any]:
    """The decoder of one profile topic. It checks what the profile will read from the message
    (joint names, field lengths, array indices) so a message that decodes is always usable."""
    kind = spec.kind
    where = f"{spec.topic} ({kind})"
    if kind == IMAGE:
        return decode_image
    if kind == COMPRESSED_IMAGE:
        return decode_compressed_image
    segments = [s for s in profile.observation if s.source == key]
    if kind == JOINT_STATE:
        needs: dict[str, set[str]] = {}
        max_index: dict[str, int] = {}
        for seg in segments:
            fld = seg.field or "position"
            needs.setdefault(fld, set()).update(seg.names or ())
            if seg.indices:
                max_index[fld] = max(max_index.get(fld, -1), max(seg.indices))
        for cmd in profile.action.commands if profile.action else ():
            if cmd.measured is not None and cmd.measured.source == key:
                needs.setdefault(cmd.measured.field, set()).update(cmd.measured.names)

        def joint_state(msg: dict) -> JointValues:
            names = msg.get("name")
            if not isinstance(names, list):
                raise DecodeError(f"{where}: 'name' must be a list of joint names")
            arrays = {f: _floats(msg.get(f) or [], f"{where}: '{f}'") for f in ("position", "velocity", "effort")}
            index = {str(n): i for i, n in enumerate(names)}
            for fld, wanted in needs.items():
                if len(arrays[fld]) != len(names):
                    raise DecodeError(f"{where}: {len(arrays[fld])} {fld} values for {len(names)} joints")
                missing = sorted(wanted - set(index))
                if missing:
                    raise DecodeError(f"{where}: joints {missing} missing (message has {names})")
            for fld, top in max_index.items():
                if len(arrays[fld]) <= top:
                    raise DecodeError(f"{where}: {fld} has {len(arrays[fld])} values, profile reads index {top}")
            return JointValues(index, arrays["position"], arrays["velocity"], arrays["effort"])

        return joint_state

    top = max((max(s.indices) for s in segments if s.indices), default=-1)
    if kind in ARRAY_TYPES:

        def array(msg: dict) -> np.ndarray:
            values = _floats(msg.get("data"), f"{where}: 'data'")
            if len(values) <= top:
                raise DecodeError(f"{where}: {len(values)} values, profile reads index {top}")
            return values

        return array
    if kind in SCALAR_TYPES:
        return lambda msg: _floats([msg.get("data")], f"{where}: 'data'")
    if kind in POINT_TYPES:
        inner = "point" if kind.endswith("PointStamped") else "vector" if kind.endswith("Stamped") else None
        return lambda msg: np.asarray(_xyz(msg.get(inner) if inner else msg, f"{where}: xyz"))
    if kind in (*POSE_TYPES, ODOMETRY):

        def pose(msg: dict) -> np.ndarray:
            body = msg.get("pose") if kind != "geometry_msgs/Pose" else msg
            if kind == ODOMETRY and isinstance(body, dict):
                body = body.get("pose")  # nav_msgs/Odometry: pose.pose (with covariance beside it)
            if not isinstance(body, dict):
                raise DecodeError(f"{where}: 'pose' missing")
            q = body.get("orientation")
            if not isinstance(q, dict):
                raise DecodeError(f"{where}: 'orientation' missing")
            try:
                quat = [float(q["x"]), float(q["y"]), float(q["z"]), float(q["w"])]
            except (KeyError, TypeError, ValueError):
                raise DecodeError(f"{where}: orientation needs numeric x, y, z, w") from None
            values = _xyz(body.get("position"), f"{where}: position") + quat
            if kind == ODOMETRY:
                twist = msg.get("twist", {}).get("twist") if isinstance(msg.get("twist"), dict) else None
                if not isinstance(twist, dict):
                    raise DecodeError(f"{where}: 'twist.twist' missing")
                values += _xyz(twist.get("linear"), f"{where}: twist.linear")
                values += _xyz(twist.get("angular"), f"{where}: twist.angular")
            return np.asarray(values)

        return pose
    raise DecodeError(f"{where}: no decoder")  # unreachable: the profile validates types


def segment_values(seg: Any, value: Any, kind: str) -> np.ndarray:
    """Raw values a segment takes from a decoded sample of message type `kind` (before scale/offset)."""
    if isinstance(value, JointValues):
        return value.pick(seg.field or "position", seg.names, seg.indices)
    if kind in (*POSE_TYPES, ODOMETRY):
        a, b = POSE_FIELDS[seg.field or "pose"]
        value = value[a:b]
    return value[list(seg.indices)] if seg.indices is not None else value


# -- samples and mailboxes -------------------------------------------------------------------------
@dataclass(frozen=True)
class Sample:
    """One accepted message: decoded value, receipt time (monotonic and wall), header stamp, count."""

    value: Any
    received: float
    wall: float
    stamp: float | None
    seq: int


class Mailbox:
    """The last `maxlen` samples of a topic (oldest dropped and counted) plus the latest one.

    Consumers that want every message `drain()`; the control loop reads `latest`. Memory is bounded by
    `maxlen` whatever the consumer does.
    """

    def __init__(self, maxlen: int) -> None:
        self._items: deque[Sample] = deque(maxlen=maxlen)
        self._lock = threading.Lock()
        self.latest: Sample | None = None
        self.dropped = 0
        self.received = 0

    def put(self, sample: Sample) -> None:
        with self._lock:
            if len(self._items) == self._items.maxlen:
                self.dropped += 1
            self._items.append(sample)
            self.latest = sample
            self.received += 1

    def drain(self) -> list[Sample]:
        with self._lock:
            items = list(self._items)
            self._items.clear()
            return items

    def __len__(self) -> int:
        return len(self._items)


class _Throttle:
    """Log a repeated warning at most once per `every` seconds, counting the ones skipped."""

    def __init__(self, logger: logging.Logger, every: float = 1.0) -> None:
        self.logger, self.every = logger, every
        self._last: dict[str, float] = {}
        self._skipped: dict[str, int] = {}

    def warning(self, key: str, message: str) -> None:
        now = time.monotonic()
        if now - self._last.get(key, -np.inf) < self.every:
            self._skipped[key] = self._skipped.get(key, 0) + 1
            return
        skipped = self._skipped.pop(key, 0)
        self._last[key] = now
        self.logger.warning("%s%s", message, f" ({skipped} similar since last report)" if skipped else "")


# -- the connection --------------------------------------------------------------------------------
_ACTIVE = 0
_ACTIVE_LOCK = threading.Lock()


def parse_url(url: str) -> tuple[str, int, bool]:
    """``ws://HOST:PORT`` (or wss://) -> (host, port, secure). Port defaults to rosbridge's 9090."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise BridgeError(f"--rosbridge must look like ws://HOST:PORT (e.g. ws://192.168.1.10:9090), got {url!r}")
    try:
        port = parts.port or 9090
    except ValueError:
        raise BridgeError(f"--rosbridge {url!r}: the port is not a number") from None
    return parts.hostname, port, parts.scheme == "wss"


class Bridge:
    """One rosbridge v2 connection through roslibpy (asyncio transport).

    Callbacks (`subscribe` handlers, connection listeners) run on roslibpy's event-loop thread:
    keep them short. Everything else is safe to call from any thread.

    Args:
        url: ``ws://HOST:PORT`` of rosbridge_server (ROS 1 or ROS 2).
        reconnect_initial_s: first reconnect delay after a drop; doubles per failed try.
        reconnect_max_s: largest reconnect delay.
    """

    def __init__(self, url: str, reconnect_initial_s: float = 0.2, reconnect_max_s: float = 5.0) -> None:
        self.url = url
        self.host, self.port, self.secure = parse_url(url)
        self.reconnect_initial_s, self.reconnect_max_s = reconnect_initial_s, reconnect_max_s
        self._lock = threading.RLock()
        self._proto: Any = None
        self._ros: Any = None
        self._subs: dict[str, dict] = {}
        self._handlers: dict[str, Callable[[dict], None]] = {}
        self._adverts: dict[str, dict] = {}
        self._pending: dict[str, dict] = {}
        self._listeners: list[Callable[[bool], None]] = []
        self._ids = 0
        self._ready = threading.Event()
        self._closed_evt = threading.Event()
        self._closing = False
        self._holds_manager = False
        self.connects = 0
        self.disconnects = 0

    # lifecycle
    def connect(self, timeout: float = 5.0) -> Bridge:
        """Open the connection; raise BridgeError (one line) if it is not up within `timeout` seconds."""
        global _ACTIVE
        factory_cls = _factory_class(self.reconnect_initial_s, self.reconnect_max_s)
        ros = _make_ros(self.host, self.port, self.secure, factory_cls)
        with _ACTIVE_LOCK:
            _ACTIVE += 1
        self._holds_manager = True
        self._ros = ros
        ros.factory.on("ready", self._on_ready)
        ros.factory.on("close", self._on_close)
        for topic, handler in self._handlers.items():
            ros.factory.on(topic, handler)
        ros.connect()
        if not self._ready.wait(timeout):
            self.close()
            raise BridgeError(
                f"cannot reach rosbridge at {self.url} within {timeout:g} s; is rosbridge_server running there "
                "(ROS 1: roslaunch rosbridge_server rosbridge_websocket.launch; ROS 2: ros2 launch rosbridge_server "
                "rosbridge_websocket_launch.xml) and the port open?"
            )
        return self

    def close(self, timeout: float = 1.0) -> None:
        """Close the connection (no reconnect) and stop roslibpy's loop thread when no bridge is left."""
        global _ACTIVE
        with self._lock:
            if self._closing:
                return
            self._closing = True
            ros, proto = self._ros, self._proto
        if ros is None:
            return
        ros.factory.stop_reconnecting()
        if proto is not None:
            try:
                proto.send_close()
            except Exception:  # the loop may already be gone; nothing left to close
                LOG.debug("close: send_close failed", exc_info=True)
            self._closed_evt.wait(timeout)
        if self._holds_manager:
            self._holds_manager = False
            with _ACTIVE_LOCK:
                _ACTIVE -= 1
                last = _ACTIVE == 0
            if last:
                ros.factory.manager.terminate()

    def __enter__(self) -> Bridge:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def connected(self) -> bool:
        return self._proto is not None

    def add_listener(self, fn: Callable[[bool], None]) -> None:
        """`fn(connected)` on every connect (True) and disconnect (False), on the loop thread."""
        self._listeners.append(fn)

    # topics
    def _next_id(self, op: str, topic: str) -> str:
        self._ids += 1
        return f"{op}:{topic}:{self._ids}"

    def subscribe(
        self, topic: str, msg_type: str, handler: Callable[[dict], None], queue_length: int = 1, throttle_ms: int = 0
    ) -> None:
        """Call `handler(msg)` for every message on `topic`; re-subscribed after every reconnect.

        `queue_length=1` asks rosbridge to keep only the newest message per client when it cannot send
        fast enough (sensor streams: never act on a backlog).
        """
        with self._lock:
            if topic in self._subs:
                raise BridgeError(f"already subscribed to {topic}")
            message = {
                "op": "subscribe",
                "id": self._next_id("subscribe", topic),
                "topic": topic,
                "type": msg_type,
                "queue_length": queue_length,
                "throttle_rate": throttle_ms,
            }
            self._subs[topic] = message
            self._handlers[topic] = handler
            if self._ros is not None:
                self._ros.factory.on(topic, handler)
            self._send(message)

    def advertise(self, topic: str, msg_type: str) -> None:
        """Declare a topic this client publishes; re-advertised after every reconnect."""
        with self._lock:
            if topic in self._adverts:
                return
            message = {"op": "advertise", "id": self._next_id("advertise", topic), "topic": topic, "type": msg_type}
            self._adverts[topic] = message
            self._send(message)

    def publish(self, topic: str, msg: dict) -> bool:
        """Publish now; returns False (and sends nothing, now or later) when the link is down."""
        with self._lock:
            if topic not in self._adverts:
                raise BridgeError(f"publish on {topic} before advertise")
            return self._send({"op": "publish", "id": self._next_id("publish", topic), "topic": topic, "msg": msg})

    def publish_on_reconnect(self, topic: str, msg: dict) -> None:
        """Send `msg` on `topic` first thing when the link comes back (only the latest per topic is kept)."""
        with self._lock:
            self._pending[topic] = msg

    def call_service(self, name: str, args: dict | None = None, timeout: float = 2.0) -> dict:
        """Call a ROS service through the bridge; BridgeError on failure or timeout."""
        import roslibpy

        if not self.connected:
            raise BridgeError(f"service {name}: not connected to {self.url}")
        service = roslibpy.Service(self._ros, name, "")
        try:
            return dict(service.call(roslibpy.ServiceRequest(args or {}), timeout=timeout))
        except roslibpy.core.ServiceException as exc:
            raise BridgeError(f"service {name} failed: {exc}") from None
        except TimeoutError:
            raise BridgeError(f"service {name}: no response within {timeout:g} s") from None

    # internals
    def _send(self, message: dict) -> bool:
        import roslibpy

        proto = self._proto
        if proto is None:
            return False
        proto.send_ros_message(roslibpy.Message(message))
        return True

    def _on_ready(self, proto: Any) -> None:
        with self._lock:
            if self._closing:  # a connection attempt that finished after close(): end it at once
                proto.send_close()
                return
            self._proto = proto
            self.connects += 1
            for message in (*self._adverts.values(), *self._subs.values()):
                self._send(message)
            pending, self._pending = self._pending, {}
            for topic, msg in pending.items():
                self._send({"op": "publish", "id": self._next_id("publish", topic), "topic": topic, "msg": msg})
        if self.connects > 1:
            LOG.warning("reconnected to rosbridge at %s", self.url)
        self._ready.set()
        for fn in list(self._listeners):
            fn(True)

    def _on_close(self, _proto: Any) -> None:
        with self._lock:
            was = self._proto is not None
            self._proto = None
            if was:
                self.disconnects += 1
        self._closed_evt.set()
        if was and not self._closing:
            LOG.warning("lost the connection to rosbridge at %s; reconnecting with backoff", self.url)
        if was:
            for fn in list(self._listeners):
                fn(False)


def _factory_class(initial: float, maximum: float) -> type:
    """roslibpy's asyncio factory with this bridge's backoff (class attributes of a private subclass,
    so nothing global in roslibpy changes) and a way to stop retrying."""
    from roslibpy.comm.comm_asyncio import AsyncioRosBridgeClientFactory

    class Factory(AsyncioRosBridgeClientFactory):
        initialDelay = initial
        maxDelay = maximum
        factor = 2.0
        jitter = 0.1

        def stop_reconnecting(self) -> None:
            # `_stop` is the flag the asyncio factory checks before every retry.
            self._stop = True

    return Factory


def _make_ros(host: str, port: int, secure: bool, factory_cls: type) -> Any:
    """A `roslibpy.Ros` built on `factory_cls`, not yet connecting (so listeners attach first)."""
    import roslibpy

    ros = roslibpy.Ros.__new__(roslibpy.Ros)
    ros._id_counter = 0
    ros.factory = factory_cls(factory_cls.create_url(host, port, secure), headers=None)
    ros.is_connecting = False
    return ros


# -- a profile's inputs ----------------------------------------------------------------------------
class Inputs:
    """Subscribes to a profile's topics; keeps the latest `Sample` and a bounded `Mailbox` per topic.

    Every accepted message and every connection change notifies `cond`, which control loops wait on.

    Args:
        bridge: a connected (or connecting) `Bridge`.
        profile: the robot profile.
        keys: topic keys to subscribe to (default: all).
    """

    def __init__(self, bridge: Bridge, profile: RobotProfile, keys: list[str] | None = None) -> None:
        self.bridge, self.profile = bridge, profile
        self.keys = list(keys if keys is not None else profile.topics)
        self.cond = threading.Condition()
        self.mailboxes = {k: Mailbox(profile.topics[k].queue) for k in self.keys}
        self.errors: dict[str, int] = dict.fromkeys(self.keys, 0)
        self.out_of_order: dict[str, int] = dict.fromkeys(self.keys, 0)
        self.fatal: UnsupportedEncoding | None = None
        self._seq = dict.fromkeys(self.keys, 0)
        self._last_stamp: dict[str, float] = {}
        self._log = _Throttle(LOG)
        self.connection_events: list[tuple[float, bool]] = []
        bridge.add_listener(self._on_connection)
        for key in self.keys:
            spec = profile.topics[key]
            decoder = make_decoder(key, spec, profile)
            queue_length = 1 if spec.is_image else 5
            bridge.subscribe(spec.topic, spec.type, self._handler(key, decoder), queue_length, spec.throttle_ms)

    def _handler(self, key: str, decoder: Callable[[dict], Any]) -> Callable[[dict], None]:
        topic = self.profile.topics[key].topic

        def handle(msg: dict) -> None:
            received, wall = time.monotonic(), time.time()
            try:
                if not isinstance(msg, dict):
                    raise DecodeError(f"{topic}: message is {type(msg).__name__}, not an object")
                stamp = header_stamp(msg)
                value = decoder(msg)
            except DecodeError as exc:
                self.errors[key] += 1
                if isinstance(exc, UnsupportedEncoding) and self.fatal is None:
                    self.fatal = UnsupportedEncoding(f"{topic}: {exc}")
                self._log.warning(f"bad:{key}", f"ignored a malformed message on {topic}: {exc}")
                with self.cond:
                    self.cond.notify_all()
                return
            except Exception as exc:  # a decoder bug must not kill the loop thread
                self.errors[key] += 1
                self._log.warning(f"bad:{key}", f"ignored a message on {topic}: {type(exc).__name__}: {exc}")
                return
            last = self._last_stamp.get(key)
            if stamp is not None and last is not None and stamp < last:
                self.out_of_order[key] += 1
                self._log.warning(
                    f"order:{key}", f"ignored an out-of-order message on {topic} (stamp {stamp:.6f} < {last:.6f})"
                )
                return
            if stamp is not None:
                self._last_stamp[key] = stamp
            self._seq[key] += 1
            self.mailboxes[key].put(Sample(value, received, wall, stamp, self._seq[key]))
            with self.cond:
                self.cond.notify_all()

        return handle

    def _on_connection(self, up: bool) -> None:
        if not up:
            # Stamps restart with the robot's driver after an outage; order is re-learned from scratch.
            self._last_stamp.clear()
        self.connection_events.append((time.monotonic(), up))
        with self.cond:
            self.cond.notify_all()

    def latest(self, key: str) -> Sample | None:
        return self.mailboxes[key].latest

    def wait_ready(self, keys: list[str], timeout: float) -> None:
        """Block until every topic in `keys` has a message; raise one-line errors for a fatal
        decoding problem (unsupported encoding) or topics still silent after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                if self.fatal is not None:
                    raise self.fatal
                missing = [k for k in keys if self.mailboxes[k].latest is None]
                if not missing:
                    return
                left = deadline - time.monotonic()
                if left <= 0:
                    detail = ", ".join(
                        f"{self.profile.topics[k].topic} ({self.profile.topics[k].type}"
                        + (f", {self.errors[k]} malformed" if self.errors[k] else "")
                        + ")"
                        for k in missing
                    )
                    raise BridgeError(
                        f"no usable message within {timeout:g} s on {detail}; check the topic names "
                        "(ros2 topic list / rostopic list) and types in the profile"
                    )
                self.cond.wait(min(left, 0.05))
