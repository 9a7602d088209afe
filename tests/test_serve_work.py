"""The work of one ``drn serve`` request without a server: the deadline, the limits, the model lock
(a stand-in runtime; no framework)."""

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
