"""``drn serve``'s time bounds on a real server (``drn_s_x2`` on one thread, ``--timeout 8``, on 127.0.0.1):
a request over the timeout gets a 504 JSON error (DEADLINE_EXCEEDED over gRPC, through KServe's gRPC
client), a client that stalls while sending its headers or its body gets a 408 (one that connects and
sends nothing is disconnected) and does not hold up anyone else, and
a request whose client goes away mid-way (connection closed, gRPC call cancelled) is abandoned at the
next tile. After each, the next request is answered."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import socket
import time

import numpy as np
import pytest

from serve_helpers import HOST, b64, decode, free_port, png_bytes, request, start_server, stop_server

pytest.importorskip("kserve")

pytestmark = pytest.mark.slow

PRESET = "drn_s_x2"
PREDICT = f"/v1/models/{PRESET}:predict"
TIMEOUT = 8  # seconds; the big image below is minutes of work on one thread, a small one a fraction of a second


def _big() -> bytes:
    """2000x2000 pixels (under the default pixel limit): tiled, 80+ tiles; a smooth picture, a small file."""
    ramp = np.add.outer(np.arange(2000) // 8, np.arange(2000) // 8) % 256
    return png_bytes(np.stack([ramp, ramp[::-1], ramp.T], axis=-1).astype(np.uint8))


SMALL = png_bytes(np.random.default_rng(5).integers(0, 256, (24, 20, 3), dtype=np.uint8))


def _body(data: bytes) -> dict:
    return {"signature_name": "upscale_bytes", "instances": [{"b64": b64(data)}]}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    grpc_port = free_port()
    server = start_server(tmp_path_factory.mktemp("limits"), PRESET, "--runtime", "keras", "--kind", "clean",
                          "--threads", "1", "--timeout", str(TIMEOUT), "--grpc-port", str(grpc_port))
    server.grpc_port = grpc_port
    request(server, "POST", PREDICT, _body(SMALL))  # the first pass builds the model's graph: not timed here
    yield server
    stop_server(server)


def _small_is_answered(server) -> None:
    status, answer = request(server, "POST", PREDICT, _body(SMALL))
    assert status == 200, answer
    assert decode(base64.b64decode(json.loads(answer)["predictions"][0]["b64"])).shape == (48, 40, 3)


def test_over_the_timeout_504_json_then_served(server):
    big = _big()
    status, answer = request(server, "POST", PREDICT, _body(big), timeout=600)
    assert status == 504, answer
    assert f"longer than the {TIMEOUT} s limit" in json.loads(answer)["error"]
    _small_is_answered(server)

    # the same over gRPC, with KServe's own client: DEADLINE_EXCEEDED, the same message
    import grpc
    from kserve import InferenceGRPCClient, InferInput, InferRequest

    async def infer(data: bytes):
        client = InferenceGRPCClient(f"{HOST}:{server.grpc_port}", timeout=600,
                                     channel_args=[("grpc.max_receive_message_length", 64 << 20)])
        try:
            return await client.infer(InferRequest(model_name=PRESET, infer_inputs=[
                InferInput("image_bytes", [1], "BYTES", [data])]))
        finally:
            await client.close()

    with pytest.raises(grpc.RpcError) as caught:
        asyncio.run(infer(big))
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert f"longer than the {TIMEOUT} s limit" in caught.value.details()
    answer = asyncio.run(infer(SMALL))
    assert decode(answer.outputs[0].data[0]).shape == (48, 40, 3)


HEAD = f"POST {PREDICT} HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\n"


@pytest.mark.parametrize("sent, what", [(HEAD + "Content-Length: 1000\r\n\r\n{\"instances\": [", "body"),
                                        (HEAD, "headers"), ("", "headers")],
                         ids=["stalled body", "stalled headers", "silent connection"])
def test_a_stalled_client_is_bounded_and_holds_no_one_up(server, sent, what):
    port = int(server.url.rsplit(":", 1)[1])
    with socket.create_connection((HOST, port), timeout=TIMEOUT + 60) as slow:
        slow.sendall(sent.encode())  # and then nothing
        t0 = time.monotonic()
        _small_is_answered(server)  # meanwhile, others are served
        data = b""
        while chunk := slow.recv(65536):  # the server answers, then closes the connection
            data += chunk
        waited = time.monotonic() - t0
    assert waited < TIMEOUT + 30  # bounded by the timeout, not by the client
    if not sent:  # a connection that never started a request is closed without an answer
        assert data == b""
    else:  # a request started: a 408 with a JSON error
        head, _, body = data.partition(b"\r\n\r\n")
        assert head.split(b" ", 2)[1] == b"408", data
        assert f"request {what} not received within {TIMEOUT} s" in json.loads(body)["error"]
    _small_is_answered(server)


def _abandoned(server) -> int:
    return len(re.findall(r"the client went away; the request was abandoned", server.log.read_text(errors="replace")))


def test_a_request_whose_client_leaves_is_abandoned(server):
    before = _abandoned(server)
    # HTTP: the client gives up after a second and closes its connection
    with pytest.raises(OSError):  # socket.timeout
        request(server, "POST", PREDICT, _body(_big()), timeout=1.0)
    end = time.monotonic() + 120
    while _abandoned(server) == before and time.monotonic() < end:
        time.sleep(0.2)
    assert _abandoned(server) == before + 1, server.tail()  # stopped at a tile, not at the timeout (a 504)
    _small_is_answered(server)

    # gRPC: the call cancelled by its client
    import grpc
    from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
    from kserve.protocol.grpc.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub

    tensor = pb.ModelInferRequest.InferInputTensor
    with grpc.insecure_channel(f"{HOST}:{server.grpc_port}") as channel:
        call = GRPCInferenceServiceStub(channel).ModelInfer.future(pb.ModelInferRequest(model_name=PRESET, inputs=[
            tensor(name="image_bytes", datatype="BYTES", shape=[1],
                   contents=pb.InferTensorContents(bytes_contents=[_big()]))]), timeout=600)
        time.sleep(1.0)
        assert call.cancel()
    end = time.monotonic() + 120
    while _abandoned(server) == before + 1 and time.monotonic() < end:
        time.sleep(0.2)
    assert _abandoned(server) == before + 2, server.tail()
    _small_is_answered(server)
