"""``drn serve`` over real sockets on 127.0.0.1: one server process for the module (``drn_s_x2`` in the
Keras and the int8 LiteRT runtimes, a 1 MB body limit and a 1 MP pixel limit), clients urllib and curl.

Every answer is compared with ``drn upscale``'s output for the same files, model and runtime: the PNG
files of ``upscale_bytes`` byte for byte, the pixels of ``serving_default`` and V2 value for value."""

from __future__ import annotations

import base64
import json
import shutil
import struct
import subprocess
import zlib

import numpy as np
import pytest

from drn_tf.cli.main import main as cli_main
from serve_helpers import (HOST, b64, decode, free_port, png_bytes, raw_exchange, request, spawn_server, stop_server,
                           wait_ready)

pytest.importorskip("kserve")

PRESET = "drn_s_x2"
MODEL, INT8 = "drn_s_x2_keras", "drn_s_x2_litert_int8"  # one model, two runtimes: NAME_RUNTIME
PREDICT = f"/v1/models/{MODEL}:predict"
INFER = f"/v2/models/{MODEL}/infer"


def _inputs(folder) -> dict:
    """Small files of every layout: name -> bytes."""
    rng = np.random.default_rng(7)
    smooth = np.clip(np.add.outer(np.arange(24) * 9, np.arange(32) * 6)[..., None] + [0, 40, 90], 0, 255)
    files = {
        "rgb.png": png_bytes(rng.integers(0, 256, (20, 26, 3), dtype=np.uint8)),
        "photo.jpg": png_bytes(smooth.astype(np.uint8), "JPEG", quality=90),
        "grey.png": png_bytes(rng.integers(0, 256, (18, 22), dtype=np.uint8)),
        "rgba.png": png_bytes(rng.integers(0, 256, (16, 20, 4), dtype=np.uint8)),
        # noise clips int8 activations all over (litert-int8 then runs it in float32): int8's own output
        # needs an image it holds
        "smooth.png": png_bytes(smooth.astype(np.uint8)),
    }
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return files


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """(server, inputs, references): the server starts while ``drn upscale`` makes the references."""
    tmp = tmp_path_factory.mktemp("serve")
    src, ref = tmp / "in", tmp / "ref"
    src.mkdir()
    inputs = _inputs(src)
    server = spawn_server(tmp, PRESET, "--runtime", "keras", "litert-int8", "--max-body-mb", "1", "--max-pixels", "1000000",
                          "--grpc-port", str(free_port()))
    try:
        for runtime in ("keras", "litert-int8"):  # drn upscale's own code, in this process, meanwhile
            assert cli_main(["upscale", str(src), "-o", str(ref / runtime), "--format", "png", "--preset", PRESET,
                             "--runtime", runtime, "-q"]) == 0
        refs = {name: (ref / "keras" / f"{name.rsplit('.', 1)[0]}_x2.png").read_bytes() for name in inputs}
        refs["int8"] = (ref / "litert-int8" / "smooth_x2.png").read_bytes()
        yield wait_ready(server), inputs, refs
    finally:
        stop_server(server)


def _json(status_body):
    status, body = status_body
    return status, json.loads(body)


def test_v1_upscale_bytes_gives_drn_upscale_files(served):
    server, inputs, refs = served
    names = list(inputs)
    status, answer = _json(request(server, "POST", PREDICT, {
        "signature_name": "upscale_bytes", "instances": [{"b64": b64(inputs[n])} for n in names]}))
    assert status == 200, answer
    got = [base64.b64decode(p["b64"]) for p in answer["predictions"]]
    assert got == [refs[n] for n in names]  # PNG, JPEG, grey, RGBA: byte for byte


def test_int8_runtime_gives_drn_upscale_int8_file(served):
    server, inputs, refs = served
    status, answer = _json(request(server, "POST", f"/v1/models/{INT8}:predict", {
        "instances": [{"b64": b64(inputs["smooth.png"])}]}))  # no signature_name: b64 instances are upscale_bytes
    assert status == 200, answer
    png = base64.b64decode(answer["predictions"][0]["b64"])
    assert png == refs["int8"] and png != refs["smooth.png"]  # the int8 model's own output


def test_v1_columnar_named_and_without_content_type(served):
    server, inputs, refs = served
    body = json.dumps({"signature_name": "upscale_bytes", "inputs": {"image_bytes": [{"b64": b64(inputs["rgb.png"])}]}})
    status, answer = _json(request(server, "POST", PREDICT, body.encode(), content_type="application/x-www-form-urlencoded"))
    assert status == 200, answer
    assert base64.b64decode(answer["outputs"][0]["b64"]) == refs["rgb.png"]


def test_v1_uint8_rows_and_columns_give_drn_upscale_pixels(served):
    server, inputs, refs = served
    pixels, expected = decode(inputs["rgb.png"]).tolist(), decode(refs["rgb.png"])
    status, rows = _json(request(server, "POST", PREDICT, {"instances": [pixels]}))
    assert status == 200, rows
    np.testing.assert_array_equal(np.array(rows["predictions"][0], np.uint8), expected)
    status, cols = _json(request(server, "POST", PREDICT, {"signature_name": "serving_default",
                                                          "inputs": {"images": [pixels]}}))
    assert status == 200, cols
    np.testing.assert_array_equal(np.array(cols["outputs"][0], np.uint8), expected)


def test_v2_uint8_and_bytes(served):
    server, inputs, refs = served
    pixels = decode(inputs["rgb.png"])
    status, answer = _json(request(server, "POST", INFER, {"inputs": [
        {"name": "images", "shape": [1, *pixels.shape], "datatype": "UINT8", "data": pixels.reshape(-1).tolist()}]}))
    assert status == 200, answer
    out = answer["outputs"][0]
    assert (out["name"], out["datatype"], out["shape"]) == ("sr_images", "UINT8", [1, 40, 52, 3])
    np.testing.assert_array_equal(np.array(out["data"], np.uint8).reshape(out["shape"])[0], decode(refs["rgb.png"]))
    status, answer = _json(request(server, "POST", INFER, {"inputs": [
        {"name": "image_bytes", "shape": [2], "datatype": "BYTES",
         "data": [b64(inputs["photo.jpg"]), b64(inputs["grey.png"])]}]}))
    assert status == 200, answer
    out = answer["outputs"][0]
    assert (out["name"], out["datatype"], out["shape"]) == ("sr_image_bytes", "BYTES", [2])
    assert [base64.b64decode(d) for d in out["data"]] == [refs["photo.jpg"], refs["grey.png"]]


def test_v2_grpc_uint8_and_bytes(served):
    import grpc
    from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
    from kserve.protocol.grpc.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub

    server, inputs, refs = served
    port = server.proc.args[server.proc.args.index("--grpc-port") + 1]
    tensor = pb.ModelInferRequest.InferInputTensor
    pixels = decode(inputs["rgb.png"])
    with grpc.insecure_channel(f"{HOST}:{port}") as channel:
        stub = GRPCInferenceServiceStub(channel)
        answer = stub.ModelInfer(pb.ModelInferRequest(model_name=MODEL, inputs=[tensor(
            name="images", datatype="UINT8", shape=[1, *pixels.shape])], raw_input_contents=[pixels.tobytes()]), timeout=120)
        out = answer.outputs[0]
        assert (out.name, list(out.shape)) == ("sr_images", [1, 40, 52, 3])
        got = np.frombuffer(answer.raw_output_contents[0], np.uint8).reshape(40, 52, 3)
        np.testing.assert_array_equal(got, decode(refs["rgb.png"]))
        answer = stub.ModelInfer(pb.ModelInferRequest(model_name=MODEL, inputs=[tensor(
            name="image_bytes", datatype="BYTES", shape=[1],
            contents=pb.InferTensorContents(bytes_contents=[inputs["photo.jpg"]]))]), timeout=120)
        assert answer.outputs[0].contents.bytes_contents[0] == refs["photo.jpg"]
        with pytest.raises(grpc.RpcError) as caught:
            stub.ModelInfer(pb.ModelInferRequest(model_name=MODEL, inputs=[tensor(
                name="image_bytes", datatype="BYTES", shape=[1],
                contents=pb.InferTensorContents(bytes_contents=[b"not an image"]))]), timeout=120)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "not an image" in caught.value.details()


def test_kserve_grpc_client_gives_drn_upscale_files_and_pixels(served):
    """KServe's own V2 gRPC client (``kserve.InferenceGRPCClient``), as a KServe user would call the server."""
    import asyncio

    from kserve import InferenceGRPCClient, InferInput, InferRequest

    server, inputs, refs = served
    port = server.proc.args[server.proc.args.index("--grpc-port") + 1]
    pixels = decode(inputs["rgb.png"])

    async def ask():
        client = InferenceGRPCClient(f"{HOST}:{port}", timeout=120)
        try:
            files = await client.infer(InferRequest(model_name=MODEL, infer_inputs=[
                InferInput("image_bytes", [2], "BYTES", [inputs["photo.jpg"], inputs["rgba.png"]])]))
            arrays = await client.infer(InferRequest(model_name=MODEL, infer_inputs=[
                InferInput("images", [1, *pixels.shape], "UINT8", pixels[None].reshape(-1).tolist())]))
            return files, arrays
        finally:
            await client.close()

    files, arrays = asyncio.run(ask())
    assert files.outputs[0].name == "sr_image_bytes"
    assert list(files.outputs[0].data) == [refs["photo.jpg"], refs["rgba.png"]]
    out = arrays.outputs[0]
    assert (out.name, out.datatype, list(out.shape)) == ("sr_images", "UINT8", [1, 40, 52, 3])
    np.testing.assert_array_equal(np.asarray(out.as_numpy()).reshape(40, 52, 3), decode(refs["rgb.png"]))


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_with_tf_serving_bodies(served, tmp_path):
    server, inputs, refs = served
    # the README's 2x2 body, as TF Serving's documentation sends it (curl -d: no JSON content type)
    out = subprocess.run(["curl", "-s", "-m", "60", "-X", "POST", server.url + PREDICT, "-d",
                          '{"instances": [[[[255,0,0],[0,255,0]],[[0,0,255],[255,255,255]]]]}'],
                         capture_output=True, check=True, timeout=90).stdout
    assert np.array(json.loads(out)["predictions"]).shape == (1, 4, 4, 3)
    (tmp_path / "request.json").write_text(json.dumps({"signature_name": "upscale_bytes",
                                                       "instances": [{"b64": b64(inputs["photo.jpg"])}]}))
    out = subprocess.run(["curl", "-s", "-m", "60", "-X", "POST", server.url + PREDICT, "-d", f"@{tmp_path / 'request.json'}"],
                         capture_output=True, check=True, timeout=90).stdout
    assert base64.b64decode(json.loads(out)["predictions"][0]["b64"]) == refs["photo.jpg"]


def _png_header(w: int, h: int) -> bytes:
    """A PNG whose header claims ``w`` x ``h`` pixels (and whose data is a few bytes)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b""))


def _bytes_body(data: bytes) -> dict:
    return {"signature_name": "upscale_bytes", "instances": [{"b64": b64(data)}]}


BAD = {
    "malformed JSON": (PREDICT, b'{"instances": [', 400),
    "float pixels": (PREDICT, {"instances": [[[[0.5, 0.5, 0.5]]]]}, 400),
    "wrong shape": (PREDICT, {"instances": [[[1, 2, 3, 4]]]}, 400),
    "pixels over 255": (PREDICT, {"instances": [[[[300, 0, 0], [0, 0, 0]], [[0, 0, 0], [0, 0, 0]]]]}, 400),
    "b64 of text": (PREDICT, _bytes_body(b"hello, not an image"), 400),
    "not base64": (PREDICT, {"signature_name": "upscale_bytes", "instances": [{"b64": "%%%"}]}, 400),
    "unknown signature": (PREDICT, {"signature_name": "nope", "instances": [[[[0, 0, 0]]]]}, 400),
    "header of 100000x100000": (PREDICT, _bytes_body(_png_header(100_000, 100_000)), 413),
    "over the pixel limit": (PREDICT, _bytes_body(_png_header(1100, 1000)), 413),
    "unknown model": ("/v1/models/drn_s_x2:predict", {"instances": [[[[0, 0, 0]]]]}, 404),
    "V2 malformed": (INFER, b"{", 400),
    "V2 float": (INFER, {"inputs": [{"name": "images", "shape": [1, 1, 3], "datatype": "FP32", "data": [0, 0, 0]}]}, 400),
    "V2 wrong count": (INFER, {"inputs": [{"name": "images", "shape": [2, 2, 3], "datatype": "UINT8", "data": [0] * 9}]}, 400),
}


def test_bad_requests_get_4xx_json_and_the_server_keeps_serving(served):
    server, inputs, refs = served
    truncated = inputs["rgb.png"][: len(inputs["rgb.png"]) // 2]
    cases = dict(BAD, **{"truncated PNG": (PREDICT, _bytes_body(truncated), 400)})
    for what, (path, body, expected) in cases.items():
        status, answer = request(server, "POST", path, body)
        assert status == expected, (what, status, answer)
        assert json.loads(answer)["error"], what
    assert server.proc.poll() is None
    status, answer = _json(request(server, "POST", PREDICT, _bytes_body(inputs["grey.png"])))
    assert status == 200 and base64.b64decode(answer["predictions"][0]["b64"]) == refs["grey.png"]


def test_body_over_the_limit_refused_from_its_header(served):
    server, _, _ = served
    head = (f"POST {PREDICT} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            "Content-Length: 1100000\r\n\r\n").encode()  # the body is never sent: the answer comes first
    status, body = raw_exchange(server, head)
    assert status == 413 and "limit of 1000000 bytes" in json.loads(body)["error"]
    assert request(server, "GET", "/v2/health/ready")[0] == 200


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_body_over_the_limit(served, tmp_path):
    server, _, _ = served
    (tmp_path / "big.json").write_bytes(b" " * 1_100_000)
    out = subprocess.run(["curl", "-s", "-m", "60", "-w", "\n%{http_code}", "-X", "POST", server.url + PREDICT,
                          "-H", "content-type: application/json", "--data-binary", f"@{tmp_path / 'big.json'}"],
                         capture_output=True, timeout=90).stdout.decode()
    body, status = out.rsplit("\n", 1)
    assert status == "413" and json.loads(body)["error"]


def test_health_metrics_and_page(served):
    server, _, _ = served
    assert _json(request(server, "GET", "/v2/health/live"))[0] == 200
    assert _json(request(server, "GET", "/v2/health/ready")) == (200, {"ready": True})
    assert _json(request(server, "GET", f"/v1/models/{MODEL}"))[1]["ready"] is True
    status, metrics = request(server, "GET", "/metrics")
    assert status == 200 and f'request_predict_seconds_count{{model_name="{MODEL}"}}' in metrics.decode()
    status, page = request(server, "GET", "/")
    assert status == 200 and b"<html" in page and b"upscale_bytes" in page
    listing = _json(request(server, "GET", "/ui/models"))[1]
    assert listing["models"] == [{"name": MODEL, "scale": 2, "runtime": "keras", "source": PRESET},
                                 {"name": INT8, "scale": 2, "runtime": "litert-int8", "source": PRESET}]
