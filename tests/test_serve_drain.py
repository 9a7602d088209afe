"""SIGTERM while ``drn serve`` works on a request: the request is answered, new connections are
refused, and the process exits 0 (its own server process, ``drn_s_x2``, on 127.0.0.1)."""

from __future__ import annotations

import json
import signal
import socket
import threading
import time

import numpy as np
import pytest

from serve_helpers import HOST, b64, png_bytes, request, start_server, stop_server

pytest.importorskip("kserve")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = start_server(tmp_path_factory.mktemp("drain"), "drn_s_x2", "--runtime", "keras", "--grace", "300",
                          "--timeout", "300", "--threads", "1", "--kind", "clean")
    yield server
    stop_server(server)


def _refused(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=1):
            return False
    except OSError:
        return True


def test_sigterm_finishes_the_request_in_flight_and_exits_0(server):
    # eight 384x384 images on one thread: some 80 GFLOP of work, seconds even on a fast CPU
    images = [png_bytes(np.random.default_rng(i).integers(0, 256, (384, 384, 3), dtype=np.uint8)) for i in range(8)]
    body = {"signature_name": "upscale_bytes", "instances": [{"b64": b64(d)} for d in images]}
    answer = {}
    client = threading.Thread(target=lambda: answer.update(result=request(server, "POST", "/v1/models/drn_s_x2:predict", body)))
    client.start()
    time.sleep(0.5)  # the request is being worked on (eight such images take seconds)
    assert client.is_alive(), "the request finished before SIGTERM; the test needs a longer one"
    server.proc.send_signal(signal.SIGTERM)
    port = int(server.url.rsplit(":", 1)[1])
    end = time.monotonic() + 10
    while not _refused(port) and time.monotonic() < end:
        time.sleep(0.1)
    assert _refused(port), "new connections still accepted after SIGTERM"
    assert client.is_alive(), "the request in flight did not outlast the listener"
    client.join(timeout=300)
    status, data = answer["result"]
    assert status == 200, data
    assert len(json.loads(data)["predictions"]) == len(images)
    assert server.proc.wait(timeout=120) == 0, server.tail()
