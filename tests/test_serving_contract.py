"""The SavedModel's serving contract, checked with TF Serving's own client library.

No model server runs here (no Docker), so the server side is played by
:func:`serve_predict`, which does what TensorFlow Serving's Predict does: look
up the signature by ``model_spec.signature_name`` (empty: ``serving_default``),
check the request's input names against the SignatureDef,
``tf.make_ndarray`` each TensorProto, run the signature, and put every output
back with ``tf.make_tensor_proto``. The client side is the real
``tensorflow-serving-api``: ``PredictRequest`` / ``PredictResponse`` protos
(serialised and parsed, as on the wire) and, in one test, the generated gRPC
``PredictionServiceStub`` talking to that stand-in over a loopback socket.
``saved_model_cli run`` (TensorFlow's tool) runs both signatures, and the REST
JSON bodies shown in README.md are parsed and applied by :func:`rest_predict`,
a small converter written from TF Serving's documented JSON mapping
(row "instances" / columnar "inputs", ``{"b64": ...}`` for binary strings,
``_bytes``-suffixed string outputs answered as ``{"b64": ...}``).
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import subprocess
import sys
from concurrent import futures

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest
from PIL import Image

if os.environ.get("CI"):
    import tensorflow_serving  # noqa: F401  (CI installs the test extra: it must run there)
else:
    pytest.importorskip("tensorflow_serving", reason="tensorflow-serving-api not installed (pip install -e '.[test]')")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc  # noqa: E402

from drn_tf.export import common as EC  # noqa: E402
from drn_tf.export import savedmodel as ES  # noqa: E402

from paths import ROOT  # noqa: E402
MODEL_NAME = "drn"


@pytest.fixture(scope="module")
def model(fresh_drn_s):
    keras.utils.set_random_seed(11)
    return fresh_drn_s(2)


@pytest.fixture(scope="module")
def version_dir(model, tmp_path_factory):
    return ES.export_saved_model(model, tmp_path_factory.mktemp("serving") / MODEL_NAME)


@pytest.fixture(scope="module")
def loaded(version_dir):
    return tf.saved_model.load(str(version_dir))


def keras_uint8(model, images: np.ndarray) -> np.ndarray:
    """The Keras model's answer for a uint8 batch, rounded as the signature rounds."""
    y = np.asarray(model(images.astype(np.float32) / 255.0, training=False))
    return np.floor(np.clip(y, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def png_bytes(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


def decode_png(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        assert im.format == "PNG"
        return np.asarray(im.convert("RGB"))


def assert_within_one_level(got: np.ndarray, want: np.ndarray):
    assert got.shape == want.shape and got.dtype == want.dtype == np.uint8
    assert np.abs(got.astype(int) - want.astype(int)).max() <= 1


# ---------------------------------------------------------------- the server's part


def serve_predict(loaded, request: predict_pb2.PredictRequest) -> predict_pb2.PredictResponse:
    """What TF Serving's Predict does with a PredictRequest (see the module doc)."""
    name = request.model_spec.signature_name or "serving_default"
    if name not in loaded.signatures:
        raise KeyError(f"Serving signature name: {name!r} not found in signature def")
    fn = loaded.signatures[name]
    expected = fn.structured_input_signature[1]
    if set(request.inputs) != set(expected):
        raise ValueError(f"input names {sorted(request.inputs)} do not match the signature's {sorted(expected)}")
    feeds = {}
    for key, proto in request.inputs.items():
        if proto.dtype != expected[key].dtype.as_datatype_enum:
            raise ValueError(f"input {key}: dtype {proto.dtype} where the signature wants {expected[key].dtype}")
        feeds[key] = tf.constant(tf.make_ndarray(proto), dtype=expected[key].dtype)
    outputs = fn(**feeds)
    response = predict_pb2.PredictResponse()
    response.model_spec.name = request.model_spec.name
    response.model_spec.signature_name = name
    for key, value in outputs.items():
        response.outputs[key].CopyFrom(tf.make_tensor_proto(value.numpy()))
    return response


def over_the_wire(message):
    """Serialise and parse, as gRPC does."""
    copy = type(message)()
    copy.ParseFromString(message.SerializeToString())
    return copy


def make_request(signature: str, **inputs) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL_NAME
    request.model_spec.signature_name = signature
    for key, value in inputs.items():
        request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
    return request


# ---------------------------------------------------------------- the SignatureDefs clients see


def test_signature_defs_are_what_clients_are_told(version_dir):
    """saved_model.pb's SignatureDefs (what TF Serving's GetModelMetadata returns and
    checks requests against): the names, dtypes and shapes README.md documents."""
    from tensorflow.python.tools import saved_model_utils

    sigs = saved_model_utils.get_meta_graph_def(str(version_dir), "serve").signature_def
    assert {"serving_default", EC.BYTES_SIGNATURE} <= set(sigs)

    def spec(info):
        return tf.dtypes.as_dtype(info.dtype), [d.size for d in info.tensor_shape.dim]

    default = sigs["serving_default"]
    assert list(default.inputs) == [EC.SERVING_INPUT] and list(default.outputs) == [EC.SERVING_OUTPUT]
    assert spec(default.inputs[EC.SERVING_INPUT]) == (tf.uint8, [-1, -1, -1, 3])
    assert spec(default.outputs[EC.SERVING_OUTPUT]) == (tf.uint8, [-1, -1, -1, 3])
    raw = sigs[EC.BYTES_SIGNATURE]
    assert list(raw.inputs) == [EC.BYTES_INPUT] and list(raw.outputs) == [EC.BYTES_OUTPUT]
    assert spec(raw.inputs[EC.BYTES_INPUT]) == (tf.string, [-1])
    assert spec(raw.outputs[EC.BYTES_OUTPUT]) == (tf.string, [-1])
    assert EC.BYTES_INPUT.endswith("_bytes") and EC.BYTES_OUTPUT.endswith("_bytes")  # REST's b64 rule


# ---------------------------------------------------------------- PredictRequest / PredictResponse


def test_predict_request_serving_default(model, loaded, rng):
    images = rng.integers(0, 256, (2, 13, 17, 3), dtype=np.uint8)
    request = over_the_wire(make_request("serving_default", images=images))
    assert request.inputs["images"].dtype == tf.uint8.as_datatype_enum
    assert [d.size for d in request.inputs["images"].tensor_shape.dim] == [2, 13, 17, 3]
    response = over_the_wire(serve_predict(loaded, request))
    assert response.model_spec.signature_name == "serving_default" and list(response.outputs) == ["sr_images"]
    out = tf.make_ndarray(response.outputs["sr_images"])
    assert_within_one_level(out, keras_uint8(model, images))
    # an empty signature_name means serving_default, as in TF Serving
    empty = over_the_wire(make_request("", images=images[:1]))
    np.testing.assert_array_equal(tf.make_ndarray(serve_predict(loaded, empty).outputs["sr_images"]), out[:1])
    # a request the server must refuse: wrong input name, wrong dtype
    with pytest.raises(ValueError, match="input names"):
        serve_predict(loaded, make_request("serving_default", image=images))
    with pytest.raises(ValueError, match="dtype"):
        serve_predict(loaded, make_request("serving_default", images=images.astype(np.float32)))


def test_predict_request_upscale_bytes(model, loaded, rng):
    a = rng.integers(0, 256, (11, 9, 3), dtype=np.uint8)
    grey = rng.integers(0, 256, (8, 10), dtype=np.uint8)
    files = [png_bytes(a), png_bytes(grey)]
    request = over_the_wire(make_request(EC.BYTES_SIGNATURE, image_bytes=np.array(files, dtype=object)))
    assert request.inputs["image_bytes"].dtype == tf.string.as_datatype_enum
    assert list(request.inputs["image_bytes"].string_val) == files
    response = over_the_wire(serve_predict(loaded, request))
    out = tf.make_ndarray(response.outputs["sr_image_bytes"])
    assert out.shape == (2,)
    assert_within_one_level(decode_png(out[0]), keras_uint8(model, a[None])[0])
    # grey files come back as RGB (decode_image with 3 channels)
    assert_within_one_level(decode_png(out[1]), keras_uint8(model, np.repeat(grey[..., None], 3, -1)[None])[0])


def test_grpc_stub_against_a_loopback_stand_in(model, loaded, rng):
    """The generated PredictionServiceStub, over a real gRPC channel on 127.0.0.1,
    against a PredictionServiceServicer that answers with serve_predict."""
    import grpc

    class Servicer(prediction_service_pb2_grpc.PredictionServiceServicer):
        def Predict(self, request, context):  # noqa: N802 - the generated name
            return serve_predict(loaded, request)

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(Servicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            images = rng.integers(0, 256, (1, 10, 12, 3), dtype=np.uint8)
            response = stub.Predict(make_request("serving_default", images=images), timeout=60)
            assert_within_one_level(tf.make_ndarray(response.outputs["sr_images"]), keras_uint8(model, images))
            response = stub.Predict(
                make_request(EC.BYTES_SIGNATURE, image_bytes=np.array([png_bytes(images[0])], dtype=object)), timeout=60
            )
            (data,) = tf.make_ndarray(response.outputs["sr_image_bytes"])
            assert_within_one_level(decode_png(data), keras_uint8(model, images)[0])
    finally:
        server.stop(None)


# ---------------------------------------------------------------- saved_model_cli


def _saved_model_cli(*args) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "tensorflow.python.tools.saved_model_cli", "run", *map(str, args)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.mark.slow
def test_saved_model_cli_runs_both_signatures(model, version_dir, tmp_path, rng):
    images = rng.integers(0, 256, (1, 9, 14, 3), dtype=np.uint8)
    np.save(tmp_path / "images.npy", images)
    np.save(tmp_path / "files.npy", np.array([png_bytes(images[0])], dtype=object))
    common = ["--dir", version_dir, "--tag_set", "serve"]
    _saved_model_cli(*common, "--signature_def", "serving_default", "--inputs", f"images={tmp_path / 'images.npy'}",
                     "--outdir", tmp_path / "o1")
    out = np.load(tmp_path / "o1" / "sr_images.npy")
    assert_within_one_level(out, keras_uint8(model, images))
    _saved_model_cli(*common, "--signature_def", EC.BYTES_SIGNATURE,
                     "--inputs", f"image_bytes={tmp_path / 'files.npy'}", "--outdir", tmp_path / "o2")
    (data,) = np.load(tmp_path / "o2" / "sr_image_bytes.npy", allow_pickle=True)
    np.testing.assert_array_equal(decode_png(data), out[0])  # both signatures: the same pixels
    # README's 2x2 example as a Python literal (--input_exprs)
    readme = [b for b in readme_bodies() if "instances" in b and "signature_name" not in b][0]
    expr = json.dumps(readme["instances"]).replace(" ", "")
    _saved_model_cli(*common, "--signature_def", "serving_default", "--input_exprs", f"images={expr}",
                     "--outdir", tmp_path / "o3")
    tiny = np.array(readme["instances"], dtype=np.uint8)
    np.testing.assert_array_equal(np.load(tmp_path / "o3" / "sr_images.npy"), keras_uint8(model, tiny))


# ---------------------------------------------------------------- REST JSON (TF Serving's mapping)


def _is_b64(v) -> bool:
    return isinstance(v, dict) and set(v) == {"b64"}


def _json_value(v):
    if _is_b64(v):
        return base64.b64decode(v["b64"])
    if isinstance(v, list):
        return [_json_value(x) for x in v]
    return v


def _to_array(value, spec) -> np.ndarray:
    value = _json_value(value)
    if spec.dtype == tf.string:
        return np.array(value, dtype=object)
    arr = np.array(value)
    if spec.dtype.is_integer and not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"expected integers for a {spec.dtype.name} input")
    info = np.iinfo(spec.dtype.as_numpy_dtype) if spec.dtype.is_integer else None
    if info is not None and (arr.min() < info.min or arr.max() > info.max):
        raise ValueError(f"value out of range for {spec.dtype.name}")
    return arr.astype(spec.dtype.as_numpy_dtype)


def _to_json(value, name: str):
    value = np.asarray(value, dtype=object if isinstance(value, bytes) else None)
    if value.dtype == object:
        items = list(value.reshape(-1))
        if name.endswith("_bytes"):
            items = [{"b64": base64.b64encode(v).decode("ascii")} for v in items]
        else:
            items = [v.decode("utf-8") for v in items]
        return np.array(items, dtype=object).reshape(value.shape).tolist()
    return value.tolist()


def rest_predict(loaded, body: dict) -> dict:
    """A REST ``:predict`` body -> the JSON answer, by TF Serving's documented mapping:
    row format ``instances`` (a list, one entry per example; a bare value when the
    signature has one input, else an object of named inputs) -> ``predictions``;
    columnar ``inputs`` (a value or an object of named, batched values) -> ``outputs``;
    ``{"b64": ...}`` is a binary string; string outputs named ``*_bytes`` come back
    as ``{"b64": ...}``. Goes through a PredictRequest, as the server does."""
    name = body.get("signature_name", "serving_default")
    specs = loaded.signatures[name].structured_input_signature[1]
    names = list(specs)
    if ("instances" in body) == ("inputs" in body):
        raise ValueError("exactly one of 'instances' and 'inputs' is required")
    if "instances" in body:
        rows = body["instances"]
        named = all(isinstance(r, dict) and not _is_b64(r) for r in rows)
        columns = {n: [r[n] for r in rows] for n in names} if named else {names[0]: rows}
        if not named and len(names) != 1:
            raise ValueError("instances must be objects of named inputs when the signature has several")
    else:
        value = body["inputs"]
        columns = value if isinstance(value, dict) and not _is_b64(value) else {names[0]: value}
    request = make_request(name, **{k: _to_array(v, specs[k]) for k, v in columns.items()})
    response = over_the_wire(serve_predict(loaded, over_the_wire(request)))
    outputs = {k: tf.make_ndarray(v) for k, v in response.outputs.items()}
    if "instances" in body:
        batch = len(body["instances"])
        if len(outputs) == 1:
            ((key, value),) = outputs.items()
            return {"predictions": [_to_json(value[i], key) for i in range(batch)]}
        return {"predictions": [{k: _to_json(v[i], k) for k, v in outputs.items()} for i in range(batch)]}
    if len(outputs) == 1:
        ((key, value),) = outputs.items()
        return {"outputs": _to_json(value, key)}
    return {"outputs": {k: _to_json(v, k) for k, v in outputs.items()}}


def readme_bodies(photo_b64: str = "") -> list[dict]:
    """The JSON request bodies of README.md's TF Serving section: each ``-d '...'``
    body and the ``echo "..." > request.json`` template (with the base64 of a
    photo substituted for ``$(base64 -w0 photo.jpg)``)."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("**TF Serving.**"): text.index("**Apache Beam.**")]
    bodies = [json.loads(m) for m in re.findall(r"-d '(\{.*?\})'\s*$", section, flags=re.M)]
    for template in re.findall(r'^echo "(.*)" > request\.json$', section, flags=re.M):
        filled = re.sub(r"\$\(base64 -w0 [^)]*\)", photo_b64, template).replace('\\"', '"')
        bodies.append(json.loads(filled))
    return bodies


def test_readme_rest_bodies(model, loaded, rng):
    photo = rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)
    bodies = readme_bodies(base64.b64encode(png_bytes(photo)).decode("ascii"))
    rows = [b for b in bodies if "instances" in b and b.get("signature_name", "serving_default") == "serving_default"]
    columnar = [b for b in bodies if "inputs" in b]
    encoded = [b for b in bodies if b.get("signature_name") == EC.BYTES_SIGNATURE]
    assert len(rows) == 1 and len(columnar) == 1 and len(encoded) == 1, bodies

    # row format: one 2x2 image -> "predictions": one 4x4x3 image
    answer = json.loads(json.dumps(rest_predict(loaded, rows[0])))
    tiny = np.array(rows[0]["instances"], dtype=np.uint8)
    assert tiny.shape == (1, 2, 2, 3)
    got = np.array(answer["predictions"], dtype=np.uint8)
    assert got.shape == (1, 4, 4, 3)
    assert_within_one_level(got, keras_uint8(model, tiny))
    # columnar format: the same image, the same answer under "outputs"
    answer_c = json.loads(json.dumps(rest_predict(loaded, columnar[0])))
    np.testing.assert_array_equal(np.array(answer_c["outputs"], dtype=np.uint8), got)

    # encoded image: README's client line reads predictions[0]["b64"] as a PNG
    answer_b = json.loads(json.dumps(rest_predict(loaded, encoded[0])))
    data = base64.b64decode(answer_b["predictions"][0]["b64"])
    assert_within_one_level(decode_png(data), keras_uint8(model, photo[None])[0])
    # the bytes signature in columnar form, and refusals the server would give
    answer_bc = rest_predict(loaded, {"signature_name": EC.BYTES_SIGNATURE, "inputs": [{"b64": encoded[0]["instances"][0]["b64"]}]})
    assert base64.b64decode(answer_bc["outputs"][0]["b64"]) == data
    with pytest.raises(ValueError, match="out of range"):
        rest_predict(loaded, {"instances": [[[[256, 0, 0]]]]})
    with pytest.raises(ValueError, match="exactly one"):
        rest_predict(loaded, {"instances": [], "inputs": []})
