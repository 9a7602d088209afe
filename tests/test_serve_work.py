"""The work of one ``drn serve`` request without a server: the deadline, the limits, the model lock
(a stand-in runtime; no framework), and the HTTP guard in front of it (body limit, stalled body, client
gone) on scripted ASGI messages."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from drn_tf.inference.runtime import Runtime
from drn_tf.serve.protocol import parse_v1
from drn_tf.serve.work import Deadline, Limits, RequestError, Upscaler


class SlowNearest(Runtime):
    """x2 nearest neighbour, ``delay`` seconds per pass; records how many passes ran at once."""

    name, scale, receptive_radius = "slow", 2, 2

    def __init__(self, delay: float):
        self.delay, self.running, self.most = delay, 0, 0
        self._count = threading.Lock()

    def run_batch(self, batch):
        with self._count:
            self.running += 1
            self.most = max(self.most, self.running)
        time.sleep(self.delay)
        with self._count:
            self.running -= 1
        x = np.asarray(batch, np.float32) / (255.0 if np.asarray(batch).dtype == np.uint8 else 1.0)
        return x.repeat(2, axis=1).repeat(2, axis=2)


def test_deadline_stops_a_tiled_image_after_a_tile():
    runtime = SlowNearest(0.05)
    up = Upscaler(runtime, Limits(timeout=0.12))
    image = np.zeros((700, 700, 3), np.uint8)  # over 512x512: tiled, 9+ tiles
    t0 = time.monotonic()
    with pytest.raises(RequestError) as caught:
        up.upscale_pixels(image, Deadline(0.12))
    assert caught.value.status == 504 and time.monotonic() - t0 < 0.5


def test_pixel_and_size_limits():
    up = Upscaler(SlowNearest(0), Limits(max_pixels=10_000))
    with pytest.raises(RequestError) as caught:
        up.upscale_pixels(np.zeros((101, 100, 3), np.uint8), Deadline(10))
    assert caught.value.status == 413
    with pytest.raises(RequestError) as caught:
        up.upscale_pixels(np.zeros((1, 5, 3), np.uint8), Deadline(10))
    assert caught.value.status == 400
    np.testing.assert_array_equal(up.upscale_pixels(np.full((4, 3, 3), 7, np.uint8), Deadline(10)),
                                  np.full((8, 6, 3), 7, np.uint8))


def test_one_forward_pass_at_a_time():
    runtime = SlowNearest(0.02)
    up = Upscaler(runtime, Limits())
    threads = [threading.Thread(target=up.upscale_pixels, args=(np.zeros((8, 8, 3), np.uint8), Deadline(30)))
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert runtime.most == 1


def test_batch_limit():
    with pytest.raises(RequestError) as caught:
        parse_v1({"instances": [[[[0, 0, 0]]]] * 3}, max_batch=2)
    assert caught.value.status == 413


def test_a_taken_port_is_refused_before_the_models_load():
    import socket

    from drn_tf.cli.commands.serve import check_address

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ValueError, match="cannot listen on 127.0.0.1"):
            check_address("127.0.0.1", port)
    check_address("127.0.0.1", port)  # free again


def _guarded(app, messages, *, limit=100, body_seconds=5.0, headers=()):
    """Runs ``app`` behind :class:`~drn_tf.serve.server.RequestGuard`, the client's side scripted by
    ``messages`` (ASGI receive messages; None: the client sends nothing more). ``(sent, app's notes)``."""
    import asyncio

    from drn_tf.serve.server import RequestGuard

    sent, notes = [], {}

    async def receive():
        if messages:
            message = messages.pop(0)
            if message is not None:
                return message
        await asyncio.sleep(3600)  # a stalled client

    async def send(message):
        sent.append(message)

    async def run():
        await RequestGuard(lambda *a: app(notes, *a), limit, body_seconds)(
            {"type": "http", "headers": list(headers)}, receive, send)

    asyncio.run(asyncio.wait_for(run(), 30))
    return sent, notes


def _answer(sent):
    import json

    head = dict(sent[0]["headers"])
    return sent[0]["status"], head.get(b"connection"), json.loads(sent[1]["body"])["error"]


async def _read_body(notes, scope, receive, send):
    while True:
        message = await receive()
        if not message.get("more_body"):
            break
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def test_guard_refuses_a_chunked_body_over_the_limit_while_reading():
    chunk = {"type": "http.request", "body": b"x" * 60, "more_body": True}
    status, connection, error = _answer(_guarded(_read_body, [chunk, dict(chunk), dict(chunk)])[0])
    assert (status, connection) == (413, b"close") and "limit of 100 bytes" in error


def test_guard_refuses_a_declared_length_over_the_limit_before_reading():
    status, _, error = _answer(_guarded(_read_body, [], headers=[(b"content-length", b"101")])[0])
    assert status == 413 and "101 bytes" in error


def test_guard_answers_408_to_a_stalled_body():
    messages = [{"type": "http.request", "body": b"{", "more_body": True}, None]
    status, connection, error = _answer(_guarded(_read_body, messages, body_seconds=0.2)[0])
    assert (status, connection) == (408, b"close") and "body not received within 0.2 s" in error


def test_guard_tells_the_work_when_the_client_goes_away():
    import asyncio

    from drn_tf.serve.work import GONE

    async def work(notes, scope, receive, send):
        await receive()  # the whole body
        gone = GONE.get()
        notes["before"] = gone.is_set()
        for _ in range(100):  # the work, until the client has gone
            if gone.is_set():
                break
            await asyncio.sleep(0.01)
        notes["after"] = gone.is_set()

    messages = [{"type": "http.request", "body": b"{}", "more_body": False}, {"type": "http.disconnect"}]
    sent, notes = _guarded(work, messages)
    assert notes == {"before": False, "after": True} and sent == []
    deadline = Deadline(60, threading.Event())
    deadline.gone.set()  # the work's side: it stops at the next check
    with pytest.raises(RequestError) as caught:
        deadline.check()
    assert caught.value.status == 499
