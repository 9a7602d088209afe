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


def start_server(tmp: Path, *args: str, ready_within: float = 180.0, env: dict | None = None) -> Server:
    """``drn serve ARGS`` on a free port; returns once ``/v2/health/ready`` answers (bounded wait)."""
    return wait_ready(spawn_server(tmp, *args, env=env), ready_within)


def spawn_server(tmp: Path, *args: str, env: dict | None = None) -> Server:
    """``drn serve ARGS`` on a free port, started (not yet ready); ``env``: more environment variables."""
    port = free_port()
    log = tmp / f"serve_{port}.log"
    env = dict(os.environ, PYTHONUNBUFFERED="1", **(env or {}))
    with open(log, "wb") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "drn_tf.cli", "serve", *args, "--port", str(port)],
                                stdout=fh, stderr=subprocess.STDOUT, cwd=tmp, env=env)
    return Server(f"http://{HOST}:{port}", proc, log)


def wait_ready(server: Server, ready_within: float = 180.0) -> Server:
    proc = server.proc
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


def raw_exchange(server: Server, head: bytes, timeout: float = 30.0) -> tuple[int, bytes]:
    """Send ``head`` (request line and headers, no body) on a plain socket; ``(status, body)`` of the answer."""
    port = int(server.url.rsplit(":", 1)[1])
    with socket.create_connection((HOST, port), timeout=timeout) as s:
        s.sendall(head)
        data = b""
        while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < _length(data):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    status = int(data.split(b" ", 2)[1])
    return status, data.split(b"\r\n\r\n", 1)[1]


def _length(data: bytes) -> int:
    for line in data.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 1 << 30


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
