"""The rosbridge connection and message decoding, against the loopback rosbridge v2 server."""

from __future__ import annotations

import base64
import logging
import socket
import threading
import time
import tracemalloc

import numpy as np
import pytest

from embodied.deploy.bridge import (
    Bridge,
    BridgeError,
    DecodeError,
    Inputs,
    UnsupportedEncoding,
    decode_compressed_image,
    decode_image,
    encode_image,
    header_stamp,
    make_decoder,
    preprocess_frame,
    ros_time,
    stamp_seconds,
)
from embodied.deploy.profile import RobotProfile, load_profile
from tests.deploy.conftest import reach_data
from tests.deploy.robot import CAMERA, EE, JOINTS
from tests.deploy.rosbridge_server import RosbridgeServer

RGB = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)  # 2 rows, 3 columns


# -- decoding (no network) -------------------------------------------------------------------------
def test_decode_image_encodings_exactly() -> None:
    assert np.array_equal(decode_image(encode_image(RGB, "rgb8")), RGB)
    assert np.array_equal(decode_image(encode_image(RGB, "bgr8")), RGB)
    mono = decode_image(encode_image(RGB, "mono8"))
    assert mono.shape == (2, 3, 3) and np.array_equal(mono[..., 1], RGB[..., 0])
    # rows padded to a 12-byte step (9 bytes of pixels + 3 of padding), data as a list of ints
    padded = np.zeros((2, 12), np.uint8)
    padded[:, :9] = RGB.reshape(2, 9)
    msg = {"height": 2, "width": 3, "encoding": "rgb8", "step": 12, "data": padded.reshape(-1).tolist()}
    assert np.array_equal(decode_image(msg), RGB)
    bgra = np.concatenate([RGB[..., ::-1], np.full((2, 3, 1), 255, np.uint8)], axis=2)
    msg = {"height": 2, "width": 3, "encoding": "bgra8", "data": base64.b64encode(bgra.tobytes()).decode()}
    assert np.array_equal(decode_image(msg), RGB)


def test_decode_image_rejects_bad_messages() -> None:
    with pytest.raises(UnsupportedEncoding, match=r"encoding '16UC1' is not supported; use one of rgb8, bgr8, mono8"):
        decode_image({**encode_image(RGB), "encoding": "16UC1"})
    with pytest.raises(DecodeError, match=r"17 bytes do not hold 2x3 rgb8 rows of step 9"):
        decode_image({**encode_image(RGB), "data": base64.b64encode(bytes(17)).decode()})
    with pytest.raises(DecodeError, match="not valid base64"):
        decode_image({**encode_image(RGB), "data": "***"})
    with pytest.raises(DecodeError, match="missing or bad field"):
        decode_image({"height": 2, "width": 3})


def test_decode_compressed_png_exact_and_jpeg_close() -> None:
    import cv2

    img = np.random.default_rng(0).integers(0, 255, (8, 6, 3), dtype=np.uint8)
    ok, png = cv2.imencode(".png", img[:, :, ::-1])
    assert ok
    out = decode_compressed_image({"format": "png", "data": base64.b64encode(png.tobytes()).decode()})
    assert np.array_equal(out, img)
    flat = np.full((16, 16, 3), (200, 40, 90), np.uint8)
    _, jpg = cv2.imencode(".jpg", flat[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
    out = decode_compressed_image(
        {"format": "rgb8; jpeg compressed bgr8", "data": base64.b64encode(jpg.tobytes()).decode()}
    )
    assert np.abs(out.astype(int) - flat).max() <= 3
    with pytest.raises(UnsupportedEncoding, match="format '16UC1; compressedDepth' is not supported"):
        decode_compressed_image({"format": "16UC1; compressedDepth", "data": ""})
    with pytest.raises(DecodeError, match="4 bytes are not a decodable png image"):
        decode_compressed_image({"format": "png", "data": base64.b64encode(b"abcd").decode()})


def test_ros_time_both_versions() -> None:
    assert stamp_seconds({"secs": 12, "nsecs": 500_000_000}) == 12.5
    assert stamp_seconds({"sec": 3, "nanosec": 250_000_000}) == 3.25
    assert stamp_seconds("x") is None and header_stamp({"data": 1}) is None
    assert ros_time(7.25, 1) == {"secs": 7, "nsecs": 250_000_000}
    assert ros_time(7.25, 2) == {"sec": 7, "nanosec": 250_000_000}


def test_preprocess_crops_centre_then_resizes() -> None:
    wide = np.zeros((4, 8, 3), np.uint8)
    wide[:, 2:6] = 255  # the centre square is white, the sides black
    assert np.array_equal(preprocess_frame(wide, (4, 4)), np.full((4, 4, 3), 255, np.uint8))
    tall = np.zeros((8, 4, 3), np.uint8)
    tall[2:6] = 100
    assert np.array_equal(preprocess_frame(tall, (2, 2)), np.full((2, 2, 3), 100, np.uint8))
    assert preprocess_frame(wide, (4, 8)) is wide


def test_joint_state_decoder_picks_by_name_and_checks_lengths() -> None:
    prof = load_profile("arm7dof")
    dec = make_decoder("joints", prof.topics["joints"], prof)
    names = [f"panda_joint{i}" for i in range(7, 0, -1)] + ["panda_finger_joint1", "panda_finger_joint2"]
    pos = [float(i) for i in range(9)]
    value = dec({"name": names, "position": pos, "velocity": [0.5] * 9, "effort": []})
    wanted = tuple(f"panda_joint{i}" for i in range(1, 8))
    assert value.pick("position", wanted, None).tolist() == [6, 5, 4, 3, 2, 1, 0]
    with pytest.raises(DecodeError, match=r"joints \['panda_finger_joint1'\] missing"):
        dec({"name": names[:7], "position": pos[:7], "velocity": [0.0] * 7})
    with pytest.raises(DecodeError, match=r"8 position values for 9 joints"):
        dec({"name": names, "position": pos[:8], "velocity": [0.0] * 9})


# -- over the wire ---------------------------------------------------------------------------------
def test_subscribe_advertise_publish_and_call_service(server: RosbridgeServer) -> None:
    got: list[dict] = []
    with Bridge(server.url, 0.05).connect(2) as bridge:
        bridge.subscribe("/in", "std_msgs/Float64", got.append)
        bridge.advertise("/out", "std_msgs/Float64")
        assert server.wait_subscribed("/in")
        server.publish("/in", {"data": 1.5})
        assert bridge.publish("/out", {"data": 2.5})
        assert server.wait_messages("/out", 1) == [{"data": 2.5}]
        assert server.wait(lambda: len(got) == 1) and got == [{"data": 1.5}]
        server.advertise_service("/add", lambda args: {"sum": args["a"] + args["b"]})
        assert bridge.call_service("/add", {"a": 2, "b": 3}) == {"sum": 5}
        with pytest.raises(BridgeError, match="service /nope failed: Service /nope does not exist"):
            bridge.call_service("/nope", timeout=1.0)
        with pytest.raises(BridgeError, match="publish on /other before advertise"):
            bridge.publish("/other", {"data": 0})
    ops = server.op_names()
    assert ops[:3] == ["subscribe", "advertise", "publish"] and ops.count("call_service") == 2


def inputs_profile(**update: object) -> RobotProfile:
    return RobotProfile.model_validate({**reach_data(**update), "name": "t"})


def test_base64_images_and_joint_states_arrive_decoded_with_stamps(server: RosbridgeServer) -> None:
    prof = inputs_profile(topics={"corner": {"required": True}})
    with Bridge(server.url, 0.05).connect(2) as bridge:
        inputs = Inputs(bridge, prof)
        assert server.wait_subscribed([CAMERA, JOINTS])
        server.publish(CAMERA, encode_image(RGB, "bgr8", ros=1, stamp=5.5))
        joint = {"name": ["gripper_finger_joint", "j1"], "position": [0.02, 1.0], "velocity": [], "effort": []}
        server.publish(JOINTS, {"header": {"stamp": {"sec": 10, "nanosec": 5}}, **joint})
        assert server.wait(lambda: inputs.latest("corner") is not None and inputs.latest("joints") is not None)
        cam, js = inputs.latest("corner"), inputs.latest("joints")
    assert np.array_equal(cam.value, RGB) and cam.stamp == 5.5
    assert js.stamp == 10 + 5e-9 and js.value.pick("position", ("gripper_finger_joint",), None).tolist() == [0.02]
    assert js.received > cam.received - 1.0


def test_malformed_and_out_of_order_messages_are_ignored_with_a_log_line(
    server: RosbridgeServer, caplog: pytest.LogCaptureFixture
) -> None:
    prof = inputs_profile()
    caplog.set_level(logging.WARNING)
    with Bridge(server.url, 0.05).connect(2) as bridge:
        inputs = Inputs(bridge, prof)
        assert server.wait_subscribed([EE, JOINTS])
        point = lambda t, x: {"header": {"stamp": ros_time(t, 2)}, "point": {"x": x, "y": 0.0, "z": 0.0}}  # noqa: E731
        server.publish(EE, point(2.0, 1.0))
        server.send_raw("{not json", topic=EE)  # garbage frame
        server.send_raw('{"topic": "/x"}', topic=EE)  # no op
        server.send_raw('{"op": "publish", "topic": "/embodied/ee_position"}', topic=EE)  # no msg
        server.publish(EE, {"point": {"x": "far", "y": 0, "z": 0}})  # wrong field type
        server.publish(EE, ["a", "list"])  # not an object
        server.publish(JOINTS, {"name": ["j1"], "position": [0.0], "velocity": [], "effort": []})  # joint missing
        server.publish(EE, point(1.0, 9.0))  # older stamp: out of order
        server.publish(EE, point(3.0, 3.0))
        assert server.wait(lambda: inputs.latest("ee") is not None and inputs.latest("ee").value[0] == 3.0)
        assert bridge.connected
        assert inputs.errors == {"ee": 2, "joints": 1, "goal": 0, "object": 0, "corner": 0}
        assert inputs.out_of_order["ee"] == 1
        assert inputs.mailboxes["ee"].received == 2  # stamps 2.0 and 3.0
    text = caplog.text
    assert "ignored a malformed message on /embodied/ee_position" in text
    assert (
        "ignored a malformed message on /joint_states: /joint_states (sensor_msgs/JointState): "
        "joints ['gripper_finger_joint'] missing" in text
    )
    assert "ignored an out-of-order message on /embodied/ee_position (stamp 1.000000 < 2.000000)" in text
    assert "Message skipped" in text  # roslibpy logs the garbage frames and goes on


def test_reconnects_with_backoff_and_resubscribes(server: RosbridgeServer) -> None:
    got: list[float] = []
    states: list[bool] = []
    with Bridge(server.url, 0.05, 0.2).connect(2) as bridge:
        bridge.add_listener(states.append)
        bridge.subscribe("/in", "std_msgs/Float64", lambda m: got.append(m["data"]))
        bridge.advertise("/out", "std_msgs/Float64")
        assert server.wait(lambda: server.op_names() == ["subscribe", "advertise"])
        server.refuse(True)
        server.drop_clients()
        assert server.wait(lambda: not bridge.connected, 1.0)
        assert not bridge.publish("/out", {"data": 1.0})  # dropped, never replayed later
        bridge.publish_on_reconnect("/out", {"data": -1.0})
        time.sleep(0.3)  # a few refused reconnect attempts
        assert not bridge.connected
        server.refuse(False)
        assert server.wait(lambda: bridge.connected and server.subscribers("/in") == 1, 2.0)
        server.publish("/in", {"data": 7.0})
        assert server.wait(lambda: got == [7.0])
        assert server.wait_messages("/out", 1) == [{"data": -1.0}]
        assert bridge.connects == 2 and bridge.disconnects == 1
    assert states[:2] == [False, True]
    assert server.op_names().count("advertise") == 2  # re-advertised after the reconnect


def test_slow_consumer_keeps_memory_bounded(server: RosbridgeServer) -> None:
    prof = inputs_profile(topics={"corner": {"queue": 4}})
    with Bridge(server.url, 0.05).connect(2) as bridge:
        inputs = Inputs(bridge, prof)
        assert server.wait_subscribed(CAMERA)
        image = encode_image(np.full((64, 64, 3), 7, np.uint8))
        box = inputs.mailboxes["corner"]
        for _ in range(50):
            server.publish(CAMERA, image)
        assert server.wait(lambda: box.received == 50)
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(300):  # nobody drains the mailbox
            server.publish(CAMERA, image)
        assert server.wait(lambda: box.received == 350, 5.0)
        grown = tracemalloc.get_traced_memory()[0] - before
        tracemalloc.stop()
        assert len(box) == 4 and box.dropped == 346
        assert grown < 200_000  # 300 more frames of 12 KB each would be 3.7 MB
        assert [s.seq for s in box.drain()] == [347, 348, 349, 350] and len(box) == 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_bridge_is_a_one_line_error() -> None:
    url = f"ws://127.0.0.1:{free_port()}"
    t0 = time.monotonic()
    with pytest.raises(BridgeError) as err:
        Bridge(url, 0.05).connect(0.3)
    assert time.monotonic() - t0 < 1.5
    assert str(err.value).startswith(f"cannot reach rosbridge at {url} within 0.3 s") and "\n" not in str(err.value)
    assert not [t for t in threading.enumerate() if t.name == "roslibpy-asyncio"]
    with pytest.raises(BridgeError, match=r"--rosbridge must look like ws://HOST:PORT .*got 'http://robot:9090'"):
        Bridge("http://robot:9090")
    assert Bridge("ws://robot").port == 9090
