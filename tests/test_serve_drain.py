"""SIGTERM while ``drn serve`` works: every request in flight (several HTTP requests under load, or a
V2 gRPC call) is answered in full, new connections and calls are refused meanwhile, the process exits 0
and leaves no temporary file (its own server process, ``drn_s_x2`` on one thread, on 127.0.0.1, with
``TMPDIR`` a folder of the test's)."""

from __future__ import annotations

import base64
import json
import signal
import socket
import threading
import time

import numpy as np
import pytest

from serve_helpers import HOST, b64, decode, free_port, png_bytes, request, spawn_server, stop_server, wait_ready

pytest.importorskip("kserve")

pytestmark = pytest.mark.slow

PRESET = "drn_s_x2"
SERVE = (PRESET, "--runtime", "keras", "--kind", "clean", "--grace", "300", "--timeout", "300", "--threads", "1")


def _images(count: int, side: int, seed: int) -> list:
    rng = np.random.default_rng(seed)
    return [png_bytes(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)) for _ in range(count)]


def _refused(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=1):
            return False
    except OSError:
        return True


def _wait_until(test, within: float = 10.0) -> bool:
    end = time.monotonic() + within
    while not test() and time.monotonic() < end:
        time.sleep(0.1)
    return test()


def _port(server) -> int:
    return int(server.url.rsplit(":", 1)[1])


@pytest.fixture
def tmpdir(tmp_path):
    """The server's TMPDIR: it must be empty again when the server has exited."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    return folder


def test_sigterm_under_load_answers_every_request_in_flight_and_exits_0(tmp_path, tmpdir):
    server = wait_ready(spawn_server(tmp_path, *SERVE, env={"TMPDIR": str(tmpdir)}))
    try:
        # four clients at once, three 384x384 images each, on one thread: tens of GFLOP, seconds on any CPU;
        # two requests are worked on, two wait in line: all four are in flight
        bodies = [{"signature_name": "upscale_bytes", "instances": [{"b64": b64(d)} for d in _images(3, 384, seed)]}
                  for seed in range(4)]
        answers: dict = {}
        clients = [threading.Thread(target=lambda i=i: answers.update(
            {i: request(server, "POST", f"/v1/models/{PRESET}:predict", bodies[i], timeout=600)})) for i in range(4)]
        for client in clients:
            client.start()
        time.sleep(1.0)  # every connection accepted, the first requests being worked on
        assert all(c.is_alive() for c in clients), "a request finished before SIGTERM; the test needs longer ones"
        server.proc.send_signal(signal.SIGTERM)
        assert _wait_until(lambda: _refused(_port(server))), "new connections still accepted after SIGTERM"
        assert any(c.is_alive() for c in clients), "the requests in flight did not outlast the listener"
        for client in clients:
            client.join(timeout=600)
        for i in range(4):
            status, data = answers[i]
            assert status == 200, data
            sizes = [decode(base64.b64decode(p["b64"])).shape for p in json.loads(data)["predictions"]]
            assert sizes == [(768, 768, 3)] * 3
        assert server.proc.wait(timeout=120) == 0, server.tail()
        assert sorted(p.name for p in tmpdir.iterdir()) == []
    finally:
        stop_server(server)


def test_sigterm_during_a_grpc_call_answers_it_and_refuses_new_calls(tmp_path, tmpdir):
    import grpc
    from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
    from kserve.protocol.grpc.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub

    from drn_tf.cli.main import main as cli_main

    grpc_port = free_port()
    server = spawn_server(tmp_path, *SERVE, "--grpc-port", str(grpc_port), env={"TMPDIR": str(tmpdir)})
    try:
        src, ref = tmp_path / "in", tmp_path / "ref"
        src.mkdir()
        files = _images(3, 384, 11)  # an answer of some 5 MB: over gRPC's default 4 MB for a message
        for i, data in enumerate(files):
            (src / f"{i}.png").write_bytes(data)
        # drn upscale's files, made in this process while the server starts
        assert cli_main(["upscale", str(src), "-o", str(ref), "--format", "png", "--preset", PRESET,
                         "--runtime", "keras", "--kind", "clean", "-q"]) == 0
        expected = [(ref / f"{i}_x2.png").read_bytes() for i in range(len(files))]
        wait_ready(server)
        tensor = pb.ModelInferRequest.InferInputTensor
        call = pb.ModelInferRequest(model_name=PRESET, inputs=[tensor(
            name="image_bytes", datatype="BYTES", shape=[len(files)], contents=pb.InferTensorContents(bytes_contents=files))])
        with grpc.insecure_channel(f"{HOST}:{grpc_port}", options=[("grpc.max_receive_message_length", 64 << 20)]) as channel:
            in_flight = GRPCInferenceServiceStub(channel).ModelInfer.future(call, timeout=600)
            time.sleep(1.0)
            assert not in_flight.done(), "the call finished before SIGTERM; the test needs a longer one"
            server.proc.send_signal(signal.SIGTERM)

            def new_call_refused() -> bool:
                with grpc.insecure_channel(f"{HOST}:{grpc_port}") as other:
                    try:
                        GRPCInferenceServiceStub(other).ServerReady(pb.ServerReadyRequest(), timeout=2)
                    except grpc.RpcError as exc:
                        return exc.code() == grpc.StatusCode.UNAVAILABLE
                return False

            assert _wait_until(new_call_refused), "new gRPC calls still taken after SIGTERM"
            assert _wait_until(lambda: _refused(_port(server))), "new HTTP connections still accepted after SIGTERM"
            assert not in_flight.done(), "the call in flight did not outlast the refusals"
            answer = in_flight.result(timeout=600)
        assert answer.outputs[0].name == "sr_image_bytes"
        assert list(answer.outputs[0].contents.bytes_contents) == expected  # drn upscale's files, byte for byte
        assert server.proc.wait(timeout=120) == 0, server.tail()
        assert sorted(p.name for p in tmpdir.iterdir()) == []
    finally:
        stop_server(server)
