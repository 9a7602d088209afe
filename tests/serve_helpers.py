"""Starting ``drn serve`` as a subprocess on 127.0.0.1 and talking to it, for the serving tests."""

from __future__ import annotations

import base64
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np

HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


@dataclass
class Server:
    url: str
    proc: subprocess.Popen
    log: Path

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]


def start_server(tmp: Path, *args: str, ready_within: float = 180.0) -> Server:
    """``drn serve ARGS`` on a free port; returns once ``/v2/health/ready`` answers (bounded wait)."""
    port = free_port()
    log = tmp / f"serve_{port}.log"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    with open(log, "wb") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "drn_tf.cli", "serve", *args, "--port", str(port)],
                                stdout=fh, stderr=subprocess.STDOUT, cwd=tmp, env=env)
    server = Server(f"http://{HOST}:{port}", proc, log)
    end = time.monotonic() + ready_within
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"drn serve exited with {proc.returncode}:\n{server.tail()}")
        try:
            if request(server, "GET", "/v2/health/ready", timeout=2)[0] == 200:
                return server
        except OSError:
            pass
        time.sleep(0.5)
    stop_server(server)
    raise RuntimeError(f"drn serve not ready within {ready_within} s:\n{server.tail()}")


def stop_server(server: Server) -> None:
    if server.proc.poll() is None:
        server.proc.send_signal(signal.SIGTERM)
        try:
            server.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.proc.kill()
            server.proc.wait(timeout=10)


def request(server: Server, method: str, path: str, body=None, *, timeout: float = 120.0,
            content_type: str = "application/json") -> tuple[int, bytes]:
    """``(status, body)``; error statuses are returned, not raised."""
    data = json.dumps(body).encode() if isinstance(body, (dict, list)) else body
    req = urllib.request.Request(server.url + path, data=data, method=method,
                                 headers={"content-type": content_type} if data is not None else {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def png_bytes(array: np.ndarray, fmt: str = "PNG", **kwargs) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, fmt, **kwargs)
    return buf.getvalue()


def decode(data: bytes) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im)
